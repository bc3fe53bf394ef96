"""zoo: a plugin-based PyTorch model zoo for spectral and tensorial networks.

``import zoo`` is cheap: it imports neither torch models nor plugins; each public name
is imported on first access. It installs a one-shot hook that registers the zoo's model names in timm's registry
once timm is imported (see :mod:`zoo.timm_compat`; ``ZOO_NO_TIMM_HOOK=1`` disables it).
"""

from __future__ import annotations

from zoo.lazy import lazy_exports
from zoo.version import __version__

_LAZY = {
    "create": "zoo.api",
    "list_models": "zoo.api",
    "model_info": "zoo.api",
    "list_families": "zoo.api",
    "save_pretrained": "zoo.hub.pretrained",
    "push_to_hub": "zoo.hub.pretrained",
    "conv_einsum": "zoo.conv_einsum",
    "conv_einsum_path": "zoo.conv_einsum",
    "conv_einsum_expression": "zoo.conv_einsum",
    "summarize": "zoo.summary",
    "finetune": "zoo.training",
    "Family": "zoo.family",
    "ModelConfig": "zoo.model_config",
    "ZooError": "zoo.errors",
    "UnknownModelError": "zoo.errors",
    "RegistryError": "zoo.errors",
    "PluginError": "zoo.errors",
    "WeightsError": "zoo.errors",
    "BuildError": "zoo.errors",
    "register_timm": "zoo.timm_compat",
}

__all__ = sorted(_LAZY) + ["__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


from zoo.timm_compat import install_import_hook as _install_timm_hook  # noqa: E402

_install_timm_hook()  # zoo names in timm's registry once timm is imported (zoo.timm_compat)
