"""conv_einsum: einsum extended with multi-way convolutions, an optimal sequencer and checkpointing.

Public: ``conv_einsum``, ``conv_einsum_path``, ``ConvEinsumError``, ``PathInfo``. See docs/conv_einsum.md.
"""

from .api import conv_einsum, conv_einsum_path
from .parse import ConvEinsumError
from .plan import PathInfo, clear_plan_cache

__all__ = ["conv_einsum", "conv_einsum_path", "ConvEinsumError", "PathInfo", "clear_plan_cache"]
