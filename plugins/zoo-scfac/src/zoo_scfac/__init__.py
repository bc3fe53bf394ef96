"""SC-Fac: separable complete factorization of paraunitary systems (dissertation chapter 7).

Kept light: import the layers from :mod:`zoo_scfac.layers`, the networks from
:mod:`zoo_scfac.networks` and the robustness tools from :mod:`zoo_scfac.robust`.
"""

__version__ = "0.1.0"
