"""Light packages: public names imported on first access (the core's and every family plugin's ``__init__``)."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, List, Mapping, Tuple


def lazy_exports(package: str, names: Mapping[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` map to the module defining each (absolute,
    or relative to ``package`` when it starts with ``.``); a name is imported on first access, then cached in the
    package. Use as ``__getattr__, __dir__ = lazy_exports(__name__, _LAZY)``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> List[str]:
        return sorted(names) + ["__version__"]

    return __getattr__, __dir__
