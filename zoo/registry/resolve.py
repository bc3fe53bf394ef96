"""Name lookup: registry entries first, then each family's name grammar; close-match suggestions."""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from zoo import plugins
from zoo.errors import PluginError, RegistryError, UnknownModelError
from zoo.registry.loader import load_registry, parse_entry
from zoo.registry.schema import ModelEntry


def natural_key(name: str) -> List[Tuple[int, float, str]]:
    """Sort key putting ``resnet2`` before ``resnet10`` and ``0.5pct`` before ``1pct``."""
    return [(0, float(tok), "") if re.fullmatch(r"\d+(\.\d+)?", tok) else (1, 0.0, tok)
            for tok in re.split(r"(\d+(?:\.\d+)?)", name) if tok]


def suggestions(name: str, candidates: Iterable[str], n: int = 3) -> List[str]:
    """The ``n`` candidates most similar to ``name``."""
    scored = sorted(candidates, key=lambda c: (-difflib.SequenceMatcher(None, name, c).ratio(), c))
    return scored[:n]


def find_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``, or one synthesised by a family's grammar."""
    registry = load_registry()
    if name in registry:
        return registry[name]
    for rec in plugins.records():
        if rec.status == "error":
            continue
        try:
            family = plugins.get_family(rec.name)
        except PluginError:
            continue
        if family.resolve is None:
            continue
        fields = family.resolve(name)
        if fields is not None:
            fields = {"family": family.name, **fields}
            return parse_entry(name, fields, source=f"<name grammar of family {family.name!r}>")  # type: ignore[arg-type]
    raise UnknownModelError(name, suggestions(name, registry))


def filter_names(names: Iterable[str], filter: Union[str, Sequence[str]] = "*",
                 exclude: Union[str, Sequence[str], None] = None) -> List[str]:
    """Names matching any of the fnmatch patterns in ``filter`` and none in ``exclude``, naturally sorted."""
    include = [filter] if isinstance(filter, str) else list(filter)
    excl = [exclude] if isinstance(exclude, str) else list(exclude or [])
    out = [n for n in names
           if any(fnmatch.fnmatchcase(n, p) for p in include) and not any(fnmatch.fnmatchcase(n, p) for p in excl)]
    return sorted(out, key=natural_key)


def entries(family: Optional[str] = None, pretrained: bool = False) -> Dict[str, ModelEntry]:
    """Registry entries, optionally of one family and/or with published weights."""
    registry = load_registry()
    if family is not None and family not in plugins.family_names():
        raise RegistryError(f"unknown family {family!r} (installed: {', '.join(plugins.family_names())})")
    return {n: e for n, e in registry.items()
            if (family is None or e.family == family) and (not pretrained or e.weights is not None)}
