"""The ``sc-fac`` family handed to the zoo core (entry point ``zoo.families: sc-fac``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

import torch
from torch import nn

from zoo.family import Family
from zoo.import_hooks import call_after_import

from . import __version__

DEFAULT_HINGE_MARGIN = 0.1


def register_fx_leaves() -> None:
    """Make the SC-Fac layers, GroupSort, SubtractMean and InputMix leaves of timm's FX tracing
    (``timm.models.create_feature_extractor``): they check shapes and cache kernels in ``forward``.

    Only FX tracing through timm needs this, so timm is not imported for it (about a second of CPU): the
    registration runs now if timm is imported, else right after ``import timm`` (:mod:`zoo.import_hooks`)."""
    call_after_import("timm", _register_fx_leaves_now)


def _register_fx_leaves_now() -> None:
    try:
        from timm.layers import register_notrace_module
    except ImportError:  # timm is optional for this family
        return
    from .layers import OrthoLinear, _OrthoConvNd
    from .lipschitz import GroupSort, InputMix, SubtractMean

    for cls in (_OrthoConvNd, OrthoLinear, GroupSort, SubtractMean, InputMix):
        register_notrace_module(cls)


def build_lipschitz_wrn(**kwargs: Any) -> nn.Module:
    """Lipschitz WideResNet (depth 6n+4, widen factor, skip add/concat/none): (B, C, H, W) in [0, 1] -> logits."""
    from .networks import LipschitzWideResNet

    register_fx_leaves()
    return LipschitzWideResNet(**kwargs)


def build_resnet9(**kwargs: Any) -> nn.Module:
    """Lipschitz ResNet9: (B, C, 32k, 32k) in [0, 1] -> logits."""
    from .networks import LipschitzResNet9

    register_fx_leaves()
    return LipschitzResNet9(**kwargs)


def build_kwlarge(**kwargs: Any) -> nn.Module:
    """Lipschitz KW-Large: (B, C, H, W) in [0, 1] -> logits."""
    from .networks import LipschitzKWLarge

    register_fx_leaves()
    return LipschitzKWLarge(**kwargs)


def build_resflow(**kwargs: Any) -> nn.Module:
    """SC-Fac Residual Flow (7.7.3): forward (B, C, H, W) in [0, 1] -> (z (B, D), logdet (B,)); log_prob, sample.
    timm's ``in_chans`` sets C of ``in_shape``."""
    from .flow import ResidualFlow

    if "in_chans" in kwargs:
        kwargs["in_shape"] = (kwargs.pop("in_chans"), *kwargs.get("in_shape", (1, 28, 28))[1:])
    return ResidualFlow(**kwargs)


def _pixels(batch: Any) -> torch.Tensor:
    """8-bit pixel values (0..255) of a batch of images in [0, 1] (``(x, ...)`` tuples or a bare tensor)."""
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    return (images * 255.0).round().clamp(0.0, 255.0)


def training_step(model: nn.Module, batch: Any, entry: Any) -> torch.Tensor:
    """Classifiers: multi-class hinge loss with margin ``model.hinge_margin`` (else ``entry.args['hinge_margin']``,
    else 0.1). Flows (task ``generative``): mean bits/dim of the images, in [0, 1], with uniform dequantization."""
    from .robust import multiclass_hinge_loss

    if entry is not None and entry.task == "generative":
        return model.bits_per_dim(_pixels(batch)).mean()
    inputs, targets = batch
    margin = getattr(model, "hinge_margin", None)
    if margin is None:
        margin = (entry.args or {}).get("hinge_margin", DEFAULT_HINGE_MARGIN) if entry is not None else DEFAULT_HINGE_MARGIN
    return multiclass_hinge_loss(model(inputs), targets, float(margin))


def summary(model: nn.Module, entry: Any) -> Mapping[str, Any]:
    """Orthogonal layer counts, SC-Fac factor parameters vs dense kernel sizes, and the Lipschitz bound."""
    from .layers import OrthoLinear, _OrthoConvNd
    from .robust import model_lipschitz_bound

    convs = [m for m in model.modules() if isinstance(m, _OrthoConvNd)]
    linears = [m for m in model.modules() if isinstance(m, OrthoLinear)]
    dense = sum(m.out_channels * (m.in_channels // m.groups) * m.kernel_size ** m.ndim for m in convs)
    factors = sum(p.numel() for m in convs for p in (m.q.parameters() if m.u is None else
                                                     list(m.q.parameters()) + list(m.u.parameters())))
    rows: Dict[str, Any] = {
        "orthogonal_convs": len(convs),
        "orthogonal_linears": len(linears),
        "kernel_sizes": sorted({m.kernel_size for m in convs}),
        "dense_kernel_params": dense,
        "sc_fac_factor_params": factors,
        "lipschitz_bound": model_lipschitz_bound(model),
        "hinge_margin": getattr(model, "hinge_margin", None),
    }
    return rows


def evaluate(model: nn.Module, batches: Any, entry: Any) -> Mapping[str, float]:
    """Classifiers: held-out clean, certified (eps = 36/255, the model's Lipschitz bound) and L2-PGD accuracy in percent.
    Flows: held-out mean bits/dim and its standard error with :func:`zoo_scfac.flow.held_out_bits_per_dim`'s
    recorded estimator (all held-out images in order, batches of 100, 8 exact log-det terms, seed 1)."""
    from .robust import EPS_CIFAR, evaluate_robustness

    if entry.task == "generative":
        from .flow import held_out_bits_per_dim

        return held_out_bits_per_dim(model, torch.cat([_pixels(b) for b in batches]))
    pairs = list(batches)
    x, y = torch.cat([b[0] for b in pairs]), torch.cat([b[1] for b in pairs])
    return evaluate_robustness(model, x, y, eps=EPS_CIFAR, pgd_steps=10)


FAMILY = Family(
    name="sc-fac",
    builders={"lipschitz_wrn": build_lipschitz_wrn, "resnet9": build_resnet9, "kwlarge": build_kwlarge,
              "resflow": build_resflow},
    registry=Path(__file__).parent / "registry.yaml",
    training_step=training_step,
    after_step=None,  # geotorch keeps Q and U exactly orthogonal: no re-projection needed
    summary=summary,
    evaluate=evaluate,
    version=__version__,
)
