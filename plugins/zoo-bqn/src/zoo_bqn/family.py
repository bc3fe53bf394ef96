"""The ``bqn`` family handed to the zoo core (entry point ``zoo.families: bqn``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable

import torch
from torch import nn

from zoo.family import Family
from zoo.import_hooks import call_after_import
from zoo_bqn import __version__


def register_fx_leaves() -> None:
    """Make the BQN layers leaves of timm's FX tracing (``timm.models.create_feature_extractor``): they pass
    distributions (:mod:`zoo_bqn.dist`) and dispatch on their type, which symbolic tracing cannot follow.

    Only FX tracing through timm needs this, so timm is not imported for it: the registration runs now if timm is
    imported, else right after ``import timm`` (:mod:`zoo.import_hooks`)."""
    call_after_import("timm", _register_fx_leaves_now)


def _register_fx_leaves_now() -> None:
    try:
        from timm.layers import register_notrace_module
    except ImportError:  # timm is optional for this family
        return
    from zoo_bqn.layers import AvgPoolDFT, BayesConv2d, BayesLinear, ChannelMix, Flatten, QuantAct, Residual

    for cls in (BayesLinear, BayesConv2d, QuantAct, AvgPoolDFT, Residual, Flatten, ChannelMix):
        register_notrace_module(cls)


def build_bqn_mlp(**kwargs: Any) -> nn.Module:
    from zoo_bqn.models import bqn_mlp

    register_fx_leaves()
    return bqn_mlp(**kwargs)


def build_bqn_cnn(**kwargs: Any) -> nn.Module:
    from zoo_bqn.models import bqn_cnn

    register_fx_leaves()
    return bqn_cnn(**kwargs)


def training_step(model: nn.Module, batch: Any, entry: Any) -> torch.Tensor:
    """Negative alternative ELBO of Eq. (5.15) per example, with the model's lambda (prior_weight) and N."""
    from zoo_bqn.objective import alt_elbo_loss

    x, y = batch
    return alt_elbo_loss(model, x, y, model.prior_weight, model.num_train)


def evaluate(model: nn.Module, batches: Iterable[Any], entry: Any) -> Dict[str, float]:
    """Held-out NLL (nats), error (fraction) and ECE (15 bins) of analytic inference, as the MNIST demo measures
    them (``zoo_bqn.train.predict`` over all held-out images, ``zoo_bqn.metrics.all_metrics``)."""
    from zoo_bqn.metrics import all_metrics
    from zoo_bqn.train import predict

    pairs = list(batches)
    x, y = torch.cat([b[0] for b in pairs]), torch.cat([b[1] for b in pairs])
    model.eval()
    return all_metrics(predict(lambda xb: model(xb, mode="ai"), x), y)


def summary(model: nn.Module, entry: Any) -> Dict[str, Any]:
    """Rows for ``zoo create NAME --summary``."""
    from zoo_bqn.layers import BayesWeighted

    layers = [m for m in model.modules() if isinstance(m, BayesWeighted)]
    rows: Dict[str, Any] = {
        "categorical_weights": model.num_weights(),
        "weight_levels": list(layers[0].level_values) if layers else [],
        "prior_weight": model.prior_weight,  # lambda of Eq. (5.15)
        "softmax_scale": round(float(model.scale.detach()), 4),
        "evaluation_mode": model.mode,
    }
    if model.num_classes > 0:
        rows["map_qnn_bytes"] = model.export().size_bytes()  # the exported MAP QNN
    return rows


FAMILY = Family(
    name="bqn",
    builders={"bqn_mlp": build_bqn_mlp, "bqn_cnn": build_bqn_cnn},
    registry=Path(__file__).parent / "registry.yaml",
    training_step=training_step,
    summary=summary,
    evaluate=evaluate,
    version=__version__,
)
