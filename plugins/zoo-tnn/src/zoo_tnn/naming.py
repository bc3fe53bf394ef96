"""The name grammar ``{backbone}-{decomposition}-{rate}pct[-all]`` (e.g. ``resnet50-mcp-0.5pct``).

Without a suffix the rate is the *layer rate*: every layer but the first convolution and the classifier is
tensorised at ``rate`` of its dense parameters (the dissertation's setting, Section 2.7.1), and the whole model
keeps more (ResNet-50 at 1 %: 9.1 % of the dense parameters, the classifier alone is 8 %). With ``-all`` the rate is
the *whole-model ratio*: every convolution and linear layer is tensorised, the first and the classifier included, at
the largest common layer rate whose model has at most ``rate`` of the dense model's parameters.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional

from zoo.errors import ZooError

_NAME = re.compile(r"^(?P<backbone>[a-z0-9_.]+)-(?P<dec>[a-z][a-z0-9_]*)-(?P<rate>\d+(?:\.\d+)?)pct"
                   r"(?:-(?P<suffix>[a-z0-9_.-]+))?$")
WHOLE_MODEL = "all"
"""The suffix that makes a name's rate the whole-model ratio (every layer tensorised)."""
WHOLE_MODEL_ARGS: Dict[str, Any] = {"skip_first": False, "skip_classifier": False, "rate_of": "model"}
"""Builder arguments a ``-all`` name adds."""
GRAMMAR = "{backbone}-{decomposition}-{rate}pct[-all]"

MNIST = {"shape": [1, 28, 28], "mean": [0.1307], "std": [0.3081], "num_classes": 10}
CIFAR10 = {"shape": [3, 32, 32], "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616], "num_classes": 10}
CIFAR100 = {"shape": [3, 32, 32], "mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762], "num_classes": 100}

PLUGIN_DATA: Dict[str, tuple[str, Dict[str, Any], str, str]] = {
    # backbone: (dataset, input, classifier, first conv)
    "lenet5": ("mnist", MNIST, "fc3", "conv1"),
    "resnet20": ("cifar10", CIFAR10, "fc", "conv1"),
    "resnet32": ("cifar10", CIFAR10, "fc", "conv1"),
    "resnet56": ("cifar10", CIFAR10, "fc", "conv1"),
    "wrn16_2": ("cifar100", CIFAR100, "fc", "conv1"),
    "wrn28_10": ("cifar100", CIFAR100, "fc", "conv1"),
    "wrn28_10_cifar10": ("cifar10", CIFAR10, "fc", "conv1"),
    "resnet34_cifar": ("cifar10", CIFAR10, "fc", "conv1"),
    "vgg16_cifar": ("cifar10", CIFAR10, "fc", "features.0"),
}


class NameGrammarError(ZooError, ValueError):
    """A ``{backbone}-{decomposition}-{rate}pct[-all]`` name with a known backbone but a bad decomposition, rate or
    suffix."""


@dataclass(frozen=True)
class ParsedName:
    backbone: str
    decomposition: str
    rate: float  # fraction, 0.005 for "0.5pct"
    rate_text: str
    suffix: Optional[str] = None  # the text after "pct-", None without one

    @property
    def whole_model(self) -> bool:
        """Whether the rate is the whole-model ratio (``-all``) rather than the layer rate."""
        return self.suffix == WHOLE_MODEL


def parse_name(name: str) -> Optional[ParsedName]:
    """Split a grammar name; ``None`` when ``name`` does not have the ``a-b-Npct[-suffix]`` shape."""
    match = _NAME.match(name)
    if not match:
        return None
    pct = float(match["rate"])
    return ParsedName(match["backbone"], match["dec"], round(pct / 100.0, 12), match["rate"], match["suffix"])


def backbone_input(backbone: str) -> tuple[str, Dict[str, Any]]:
    """Dataset name and the ``input`` block of a backbone (timm's pretrained config for timm models)."""
    if backbone in PLUGIN_DATA:
        dataset, spec, head, first = PLUGIN_DATA[backbone]
        return dataset, {**copy.deepcopy(spec), "classifier": head, "first_conv": first}
    import timm

    cfg = timm.get_pretrained_cfg(backbone)
    if cfg is None:
        return "imagenet-1k", {"shape": [3, 224, 224], "num_classes": 1000}
    spec: Dict[str, Any] = {"shape": list(cfg.input_size), "mean": list(cfg.mean), "std": list(cfg.std),
                            "num_classes": int(cfg.num_classes or 1000)}
    if isinstance(cfg.classifier, str):
        spec["classifier"] = cfg.classifier
    if isinstance(cfg.first_conv, str):
        spec["first_conv"] = cfg.first_conv
    return "imagenet-1k", spec


def entry_fields(backbone: str, decomposition: str, rate: float, rate_text: str,
                 whole_model: bool = False) -> Dict[str, Any]:
    """Registry-entry fields of ``{backbone}-{decomposition}-{rate}pct`` (``-all`` if ``whole_model``; no
    reference metrics)."""
    dataset, spec = backbone_input(backbone)
    args: Dict[str, Any] = {"backbone": backbone, "decomposition": decomposition, "rate": rate}
    if whole_model:
        args.update(WHOLE_MODEL_ARGS)
        about = (f"{backbone} with every convolution and linear layer (the first conv and the classifier included) "
                 f"as {decomposition} tensorial layers at one layer rate, the largest that keeps the whole model "
                 f"within {rate_text}% of the dense model's parameters")
    else:
        about = (f"{backbone} with every layer but the first conv and the classifier as {decomposition} "
                 f"tensorial layers at {rate_text}% of their dense parameters")
    return {
        "family": "tnn",
        "builder": "tnn",
        "args": args,
        "task": "classification",
        "dataset": dataset,
        "input": spec,
        "tags": ["tensorial", decomposition] + (["whole-model-rate"] if whole_model else []),
        "description": about,
    }


def dense_timm_fields(name: str) -> Dict[str, Any]:
    """Registry-entry fields of timm's dense model ``name`` (built by timm, not pretrained unless asked)."""
    dataset, spec = backbone_input(name)
    return {
        "family": "tnn",
        "builder": "backbone",
        "args": {"backbone": name},
        "task": "classification",
        "dataset": dataset,
        "input": spec,
        "tags": ["dense", "timm-dense"],
        "description": f"timm's dense {name}, the reference its tensorial versions are compared with",
    }


def resolve(name: str) -> Optional[Dict[str, Any]]:
    """Entry fields for a grammar name whose backbone and decomposition exist, or for a plain timm model name
    (timm's dense model), else ``None``."""
    from zoo_tnn.backbones import is_backbone, is_timm_model

    parsed = parse_name(name)
    if parsed is None:
        return dense_timm_fields(name) if is_timm_model(name) else None
    from zoo_tnn.decompositions import list_decompositions

    if not is_backbone(parsed.backbone):
        return None
    if parsed.suffix is not None and not parsed.whole_model:
        base = f"{parsed.backbone}-{parsed.decomposition}-{parsed.rate_text}pct"
        raise NameGrammarError(
            f"{name!r}: unknown suffix '-{parsed.suffix}'; names are {GRAMMAR}: {base!r} (the rate of the "
            f"tensorised layers) or '{base}-{WHOLE_MODEL}' (every layer tensorised, the rate of the whole model)"
        )
    known = list_decompositions()
    if parsed.decomposition not in known:
        raise NameGrammarError(
            f"{name!r}: unknown decomposition {parsed.decomposition!r}; expected one of {', '.join(known)} "
            f"(names are {GRAMMAR})"
        )
    if not 0.0 < parsed.rate <= 1.0:
        raise NameGrammarError(f"{name!r}: rate {parsed.rate_text}pct is outside (0, 100] pct")
    return entry_fields(parsed.backbone, parsed.decomposition, parsed.rate, parsed.rate_text, parsed.whole_model)
