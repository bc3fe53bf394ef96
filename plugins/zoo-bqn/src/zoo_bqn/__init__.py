"""Bayesian quantized networks (BQNs, dissertation chapter 5) for the spectral zoo.

Kept light: import :mod:`zoo_bqn.layers`, :mod:`zoo_bqn.network` or :mod:`zoo_bqn.models` explicitly.
"""

__version__ = "0.1.0"
