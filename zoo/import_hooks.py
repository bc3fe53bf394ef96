"""Run code right after a module is imported (or now, if it already is), without importing it ourselves.

``import zoo`` registers its names in timm once timm is imported, and families register timm's FX leaves the same
way: one finder on ``sys.meta_path`` serves every callback, and leaves when none is pending."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, Callable, Dict, List

Callback = Callable[[], None]

_pending: Dict[str, List[Callback]] = {}


def call_after_import(module: str, callback: Callback) -> None:
    """Call ``callback()`` once ``module`` (a top-level name such as ``"timm"``) has been imported: now if it is,
    else right after its import finishes. The same callback is registered once; an exception it raises becomes a
    warning and never breaks the import."""
    if module in sys.modules:
        _call(callback, module)
        return
    callbacks = _pending.setdefault(module, [])
    if callback not in callbacks:
        callbacks.append(callback)
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


def _call(callback: Callback, module: str) -> None:
    try:
        callback()
    except Exception as exc:  # noqa: BLE001 - a plugin's hook must not break the user's import
        warnings.warn(f"{getattr(callback, '__qualname__', callback)!s} after import {module} failed: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of a module with pending callbacks so they run after its body has executed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        callbacks = _pending.pop(fullname, None)
        if callbacks is None:
            return None
        if not _pending:
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterImport)]
        spec = importlib.util.find_spec(fullname)  # the real finders: this one no longer claims the name
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_call(module: Any) -> None:
            exec_module(module)
            for callback in callbacks:
                _call(callback, fullname)

        loader.exec_module = exec_then_call  # type: ignore[method-assign]
        return spec
