"""zoo-scfac: SC-Fac, separable complete factorization of paraunitary systems (dissertation chapter 7):
exactly orthogonal convolutions and 1-Lipschitz networks for the spectral zoo.

Light on import: the public names (the layer and network classes, their builders) load on first access.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "OrthoConv1d": ".layers",
    "OrthoConv2d": ".layers",
    "OrthoConvTranspose1d": ".layers",
    "OrthoConvTranspose2d": ".layers",
    "OrthoLinear": ".layers",
    "LipschitzBlock": ".networks",
    "LipschitzWideResNet": ".networks",
    "LipschitzResNet9": ".networks",
    "LipschitzKWLarge": ".networks",
    "ResidualFlow": ".flow",
}

__all__ = sorted(_LAZY) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
