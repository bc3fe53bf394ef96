"""zoo-arma: ARMA layers and networks (dissertation chapter 6) as a ``zoo`` family plugin.

Light on import: the public names are loaded on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ARMAConv2d": "layer",
    "armaize": "armaize",
    "erf": "erf",
    "erf_radius": "erf",
    "segmentation_metrics": "metrics",
    "UNet": "unet",
    "ConvLSTMNet": "lstm",
    "NonLocalBlock2d": "nonlocal_block",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo_arma' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
