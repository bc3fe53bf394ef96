"""Decomposition plugins: built-ins plus the ``zoo.decompositions`` entry-point group.

A third-party package adds one with::

    [project.entry-points."zoo.decompositions"]
    bt = "my_pkg:BLOCK_TERM"     # a Decomposition subclass or instance whose .name is "bt"
"""

from __future__ import annotations

import re
import threading
from importlib.metadata import entry_points
from typing import Dict, List

from zoo_tnn.decompositions.base import (
    Decomposition,
    Factor,
    Layout,
    Mode,
    TensorNetwork,
    build_network,
)
from zoo_tnn.decompositions.builtin import BUILTINS

GROUP = "zoo.decompositions"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_lock = threading.RLock()
_registered: Dict[str, Decomposition] = {}
_external: Dict[str, Decomposition] | None = None

__all__ = [
    "Decomposition",
    "Factor",
    "Layout",
    "Mode",
    "TensorNetwork",
    "build_network",
    "get_decomposition",
    "list_decompositions",
    "register_decomposition",
    "refresh",
]


def _as_instance(obj: object, where: str) -> Decomposition:
    if isinstance(obj, type) and issubclass(obj, Decomposition):
        obj = obj()
    if not isinstance(obj, Decomposition):
        raise TypeError(f"{where} must be a zoo_tnn Decomposition subclass or instance, got {type(obj).__name__}")
    if not _NAME.match(obj.name or ""):
        raise ValueError(f"{where}: decomposition names are lowercase [a-z][a-z0-9_]*, got {obj.name!r}")
    return obj


def _load_external() -> Dict[str, Decomposition]:
    global _external
    with _lock:
        if _external is None:
            found: Dict[str, Decomposition] = {}
            for ep in entry_points(group=GROUP):
                if ep.name in BUILTINS or ep.name in found:
                    continue
                dec = _as_instance(ep.load(), f"entry point {ep.name!r} ({ep.value})")
                if dec.name != ep.name:
                    raise ValueError(f"entry point {ep.name!r} ({ep.value}) provides a decomposition named {dec.name!r}")
                found[ep.name] = dec
            _external = found
        return _external


def refresh() -> None:
    """Forget discovered entry points (call after installing a decomposition package at runtime)."""
    global _external
    with _lock:
        _external = None


def register_decomposition(dec: Decomposition | type) -> Decomposition:
    """Register a decomposition in this process (same effect as an entry point)."""
    inst = _as_instance(dec, "register_decomposition()")
    if inst.name in BUILTINS:
        raise ValueError(f"{inst.name!r} is a built-in decomposition and cannot be replaced")
    with _lock:
        _registered[inst.name] = inst
    return inst


def list_decompositions() -> List[str]:
    """Names of every available decomposition (built-in first, then plugins)."""
    extra = sorted(set(_registered) | set(_load_external()))
    return list(BUILTINS) + [n for n in extra if n not in BUILTINS]


def get_decomposition(name: str | Decomposition) -> Decomposition:
    """The decomposition called ``name`` (case-insensitive), or a ``KeyError`` listing the known ones."""
    if isinstance(name, Decomposition):
        return name
    key = str(name).lower()
    if key in BUILTINS:
        return BUILTINS[key]
    if key in _registered:
        return _registered[key]
    ext = _load_external()
    if key in ext:
        return ext[key]
    raise KeyError(f"unknown decomposition {name!r}; expected one of: {', '.join(list_decompositions())}")
