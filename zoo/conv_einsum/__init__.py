"""conv_einsum: einsum extended with multi-way convolutions, an optimal sequencer and checkpointing.

Public: ``conv_einsum``, ``conv_einsum_path``, ``conv_einsum_expression`` (compiled for fixed shapes, as
opt_einsum's ``contract_expression``), ``ConvEinsumOptions`` (the options as one hashable object),
``register_path_method`` / ``path_methods`` (the path-method table), ``ConvPathOptimizer`` (an opt_einsum
PathOptimizer), ``ConvEinsumError``, ``PathInfo``, ``clear_plan_cache``, ``set_autotune`` / ``autotune_enabled``
(make optimize="auto" measure). See docs/conv_einsum.md.
"""

import sys as _sys
import types as _types

from .api import ConvEinsumExpression, conv_einsum, conv_einsum_expression, conv_einsum_path
from .measure import autotune_enabled, set_autotune
from .options import ConvEinsumOptions
from .parse import ConvEinsumError
from .plan import PathInfo, clear_plan_cache
from .sequencer import ConvPathOptimizer, get_path_method, path_methods, register_path_method, unregister_path_method

__all__ = ["conv_einsum", "conv_einsum_path", "conv_einsum_expression", "ConvEinsumExpression", "ConvEinsumOptions",
           "ConvEinsumError", "ConvPathOptimizer", "PathInfo", "clear_plan_cache", "set_autotune", "autotune_enabled",
           "register_path_method", "unregister_path_method", "get_path_method", "path_methods"]


class _CallablePackage(_types.ModuleType):
    """``zoo.conv_einsum`` names both this package and its main function; calling the package calls the function.

    (Importing ``zoo.conv_einsum.*`` rebinds the attribute ``zoo.conv_einsum`` to the package, so the package
    itself must stay callable for ``zoo.conv_einsum(equation, *operands)`` to keep working.)
    """

    def __call__(self, *args, **kwargs):
        return conv_einsum(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
