"""The ``arma`` family handed to the zoo core (entry point ``zoo.families: arma``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from zoo.family import Family

from . import __version__


def build_unet(**kwargs: Any) -> nn.Module:
    """U-Net / ARMA U-Net / non-local variants for binary segmentation: (B, 3, H, W) -> (B, 1, H, W) logits."""
    from .unet import UNet

    return UNet(**kwargs)


def build_convlstm(**kwargs: Any) -> nn.Module:
    """Conv-LSTM / ARMA-LSTM video predictor: (B, T, C, H, W) -> (B, future_frames, C, H, W)."""
    from .lstm import ConvLSTMNet

    return ConvLSTMNet(**kwargs)


def training_step(model: nn.Module, batch: Any, entry: Any) -> torch.Tensor:
    """Segmentation: BCE on logits vs {0,1} masks (6.5.3). Video: L1 + L2 on the predicted future frames."""
    inputs, targets = batch
    if entry.task == "segmentation":
        return F.binary_cross_entropy_with_logits(model(inputs), targets.to(inputs.dtype))
    if entry.task == "video-prediction":
        pred = model(inputs, future_frames=targets.shape[1])
        return F.l1_loss(pred, targets) + F.mse_loss(pred, targets)
    raise ValueError(f"arma family has no training step for task {entry.task!r} (model {entry.name!r})")


def summary(model: nn.Module, entry: Any) -> Mapping[str, Any]:
    """ARMA layer count, AR parameter count, and the dissertation's printed parameter count if any."""
    from .layer import ARMAConv2d

    arma = [m for m in model.modules() if isinstance(m, ARMAConv2d)]
    rows: Dict[str, Any] = {
        "arma_layers": len(arma),
        "ar_parameters": sum(m.ar_params.numel() for m in arma),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    ref = getattr(entry, "reference", None)
    if ref is not None and "params_m" in ref.metrics:
        rows["dissertation_params_m"] = ref.metrics["params_m"]
    return rows


BUILD_ARGS = (
    "in_chans", "num_classes", "width", "arma", "ar_kernel_size", "ar_padding", "nonlocal_blocks",  # UNet
    "hidden", "layers", "skips", "kernel_size", "dilation", "future_frames",  # ConvLSTMNet (+ in_chans, arma, ar_*)
)
"""Every constructor argument of ``UNet`` and ``ConvLSTMNet``: the builders take ``**kwargs``, so the core learns
from this list which arguments a folder written by ``zoo.save_pretrained`` may set (``tests/arma/test_in_chans.py``
checks it against the two signatures)."""

FAMILY = Family(
    name="arma",
    builders={"unet": build_unet, "convlstm": build_convlstm},
    registry=Path(__file__).parent / "registry.yaml",
    training_step=training_step,
    summary=summary,
    version=__version__,
    extras={"build_args": BUILD_ARGS},
)
