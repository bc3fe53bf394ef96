"""zoo-arma: ARMA layers and networks (dissertation chapter 6) as a ``zoo`` family plugin.

Light on import: the public names are loaded on first attribute access.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "ARMAConv2d": ".layer",
    "armaize": ".armaize",
    "erf": ".erf",
    "erf_radius": ".erf",
    "segmentation_metrics": ".metrics",
    "UNet": ".unet",
    "ConvLSTMNet": ".lstm",
    "NonLocalBlock2d": ".nonlocal_block",
}

__all__ = sorted(_LAZY) + ["__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
