"""zoo-bqn: Bayesian quantized networks (BQNs, dissertation chapter 5) for the spectral zoo.

Light on import: the public names (the layer and network classes, their builders) load on first access.
"""

from __future__ import annotations

from zoo.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "BayesLinear": ".layers",
    "BayesConv2d": ".layers",
    "QuantAct": ".layers",
    "ChannelMix": ".layers",
    "BQNClassifier": ".network",
    "bqn_mlp": ".models",
    "bqn_cnn": ".models",
    "alt_elbo_loss": ".objective",
}

__all__ = sorted(_LAZY) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
