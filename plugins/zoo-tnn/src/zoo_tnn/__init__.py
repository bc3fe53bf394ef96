"""zoo-tnn: tensorial neural networks (Chapter 2 of the dissertation) for the spectral zoo.

Light on import: torch/timm-heavy modules load on first attribute access.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "TensorialConv2d": "zoo_tnn.layers",
    "TensorialLinear": "zoo_tnn.layers",
    "tensorize": "zoo_tnn.tensorize",
    "compression_report": "zoo_tnn.tensorize",
    "compress": "zoo_tnn.compress",
    "fit_network": "zoo_tnn.fit",
    "network_for_rate": "zoo_tnn.rank",
    "get_decomposition": "zoo_tnn.decompositions",
    "list_decompositions": "zoo_tnn.decompositions",
    "register_decomposition": "zoo_tnn.decompositions",
    "Decomposition": "zoo_tnn.decompositions",
    "build_backbone": "zoo_tnn.backbones",
    "LeNet5": "zoo_tnn.backbones",
    "CifarResNet": "zoo_tnn.backbones",
    "CifarResNet34": "zoo_tnn.backbones",
    "WideResNet": "zoo_tnn.backbones",
    "CifarVGG16": "zoo_tnn.backbones",
}

__all__ = sorted(_LAZY) + ["__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
