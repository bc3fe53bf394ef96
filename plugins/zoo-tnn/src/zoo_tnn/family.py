"""The ``tnn`` family object handed to the zoo core (entry point ``zoo.families: tnn``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence

from zoo.family import Family
from zoo.import_hooks import call_after_import
from zoo_tnn import __version__
from zoo_tnn.naming import resolve

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo.registry.schema import ModelEntry


def build_backbone(backbone: str, num_classes: Optional[int] = None, in_chans: Optional[int] = None,
                **kwargs: Any) -> "nn.Module":
    """A dense backbone (plugin CIFAR/MNIST backbones or any timm model, not pretrained)."""
    from zoo_tnn import backbones

    return backbones.build_backbone(backbone, num_classes=num_classes, in_chans=in_chans, **kwargs)


def build_tnn(
    backbone: str,
    decomposition: str,
    rate: Optional[float] = None,
    rank: Optional[int] = None,
    m: Optional[int] = None,
    num_classes: Optional[int] = None,
    in_chans: Optional[int] = None,
    skip_first: bool = True,
    skip_classifier: bool = True,
    exclude: Sequence[str] = (),
    on_infeasible: str = "rank1",
    rate_of: str = "layers",
    backbone_args: Optional[Dict[str, Any]] = None,
    **timm_kwargs: Any,
) -> "nn.Module":
    """``backbone`` with its layers replaced by ``decomposition`` tensorial layers (random init).

    ``rate`` is a fraction of each tensorised layer's dense parameters (``rate_of="layers"``) or of the whole dense
    model's (``rate_of="model"``, what a ``-all`` name asks for with ``skip_first=skip_classifier=False``); see
    :func:`zoo_tnn.tensorize`. ``timm_kwargs`` (``drop_rate``, ``drop_path_rate``, ``global_pool``, ...) go to the
    backbone's constructor, as ``backbone_args`` do."""
    from zoo_tnn.tensorize import tensorize

    register_fx_leaves()
    model = build_backbone(backbone, num_classes=num_classes, in_chans=in_chans, **{**(backbone_args or {}),
                                                                               **timm_kwargs})
    return tensorize(model, decomposition, rate, rank=rank, m=m, skip_first=skip_first,
                     skip_classifier=skip_classifier, exclude=exclude, on_infeasible=on_infeasible, rate_of=rate_of)


def register_fx_leaves() -> None:
    """Make tensorial layers leaves of timm's FX tracing (``timm.models.create_feature_extractor``): their
    ``forward`` chooses a contraction path per input shape, which symbolic tracing cannot follow.

    Only FX tracing through timm needs this, so a model on a plugin backbone (LeNet-5, the CIFAR ResNets) does not
    import timm for it (a second or more of CPU): the registration runs now if timm is imported, else right after
    ``import timm`` (:mod:`zoo.import_hooks`)."""
    call_after_import("timm", _register_fx_leaves_now)


def _register_fx_leaves_now() -> None:
    from timm.layers import register_notrace_module

    from zoo_tnn.layers import _Tensorial

    register_notrace_module(_Tensorial)


RATE_OF_TEXT = {"layers": "tensorised layers (layer_rate)", "model": "whole model (whole_model_ratio)"}


def summary(model: "nn.Module", entry: "ModelEntry") -> Mapping[str, Any]:
    """The two compression numbers, each under its own name, and each layer's fate.

    ``layer_rate``: parameters of the tensorised layers / their dense parameters (what a name's rate sets);
    ``whole_model_ratio``: all parameters / the dense backbone's (``dense_backbone_parameters``); the layers kept
    dense, normalisation and biases count there too. ``requested_rate`` is the rate the name or builder asked for and
    ``requested_rate_applies_to`` which of the two it bounds."""
    from zoo_tnn.tensorize import compression_report

    rep = compression_report(model)
    rows: Dict[str, Any] = {
        "dense_backbone_parameters": rep["dense_params"],
        "layer_rate": round(rep["layer_rate"], 6),
        "whole_model_ratio": round(rep["whole_model_ratio"], 6),
        "parameters_outside_tensorial_layers": rep["params"] - rep["tensorial_params"],
    }
    cfg = getattr(model, "tnn_config", None)
    if cfg:
        rows["decomposition"] = cfg["decomposition"]
        rows["requested_rate"] = cfg["rate"]
        rows["requested_rate_applies_to"] = RATE_OF_TEXT[cfg.get("rate_of", "layers")]
    rows["layers"] = {
        r["name"]: (f"{r['status']} rank={r['rank']} rate={r['rate']:.4f}" if r["rank"] is not None else r["status"])
        for r in rep["layers"]
    }
    notes = sorted({r["status"] for r in rep["layers"] if r["status"].startswith("dense:grouped")})
    if notes:
        rows["note"] = "grouped/depthwise convolutions kept dense (the decomposition does not support groups)"
    if any(r["status"] == "rank1" for r in rep["layers"]):
        rows["note_rank1"] = "some layers cannot reach the target rate even at rank 1; they use rank 1"
    return rows


FAMILY = Family(
    name="tnn",
    builders={"tnn": build_tnn, "backbone": build_backbone},
    registry=Path(__file__).parent / "registry.yaml",
    resolve=resolve,
    summary=summary,
    version=__version__,
    extras={"grammar": [  # shown by `zoo list PATTERN` (names the grammar builds are not listed)
        {"pattern": "{backbone}-{decomposition}-{rate}pct", "example": {"backbone": "resnet18", "decomposition": "mtt",
                                                                        "rate": "7"},
         "about": "any timm or CIFAR backbone; decompositions: zoo_tnn.list_decompositions(); the rate of the "
                  "tensorised layers (the first conv and the classifier stay dense)"},
        {"pattern": "{backbone}-{decomposition}-{rate}pct-all", "example": {"backbone": "resnet18",
                                                                            "decomposition": "mtt", "rate": "1"},
         "about": "every conv and linear layer tensorised; the rate of the whole model"},
        {"pattern": "{timm_model}", "example": {"timm_model": "resnet18"}, "about": "timm's dense model"},
    ]},
)
