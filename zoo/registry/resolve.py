"""Name lookup: registry entries first, then each family's name grammar; close-match suggestions."""

from __future__ import annotations

import difflib
import fnmatch
import re
import threading
import uuid
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from zoo import plugins
from zoo.errors import PluginError, RegistryError, UnknownModelError, ZooError
from zoo.family import Family
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
    """The registry entry for ``name``, or one synthesised by a family's grammar.

    Registry names always win. Otherwise every family's name grammar is asked; one that raises, returns
    something other than a mapping, or claims a made-up name (a grammar that owns every name) is ignored with one
    warning, and a name two grammars claim is an error naming both: a plugin cannot hijack other names."""
    registry = load_registry()
    if name in registry:
        return registry[name]
    claims, refusals = [], []
    for family in _grammars():
        try:
            fields = _ask(family, name)
        except ZooError as exc:  # the grammar recognises the name and says what is wrong with it
            refusals.append(exc)
            continue
        if fields is not None:
            claims.append((family, fields))
    if len(claims) > 1:
        raise PluginError(f"model name {name!r} is claimed by the name grammars of families "
                          f"{', '.join(repr(f.name) for f, _ in claims)}; uninstall one of them or use a registry name")
    if claims:
        family, fields = claims[0]
        return parse_entry(name, {**fields, "family": family.name},
                           source=f"<name grammar of family {family.name!r}>")  # type: ignore[arg-type]
    if refusals:
        raise refusals[0]
    raise UnknownModelError(name, suggestions(name, registry))


_checked: Dict[str, bool] = {}  # family name -> whether its grammar may be used (checked once)
_warned: Dict[str, bool] = {}   # family name -> whether its grammar's misbehaviour was warned about
_lock = threading.RLock()


def clear_cache() -> None:
    """Forget which families' grammars were checked and warned about (after installing a plugin)."""
    with _lock:
        _checked.clear()
        _warned.clear()


def _grammars() -> List[Family]:
    """The families whose name grammar is usable: importable, with a ``resolve`` that does not claim any name."""
    usable = []
    for rec in plugins.records():
        if rec.status == "error":
            continue
        try:
            family = plugins.get_family(rec.name)
        except PluginError:
            continue
        if family.resolve is None:
            continue
        with _lock:
            if family.name not in _checked:
                _checked[family.name] = _owns_only_some_names(family)
        if _checked[family.name]:
            usable.append(family)
    return usable


def _owns_only_some_names(family: Family) -> bool:
    """Whether ``family``'s grammar leaves a made-up name alone; one that claims (or refuses) it would take other
    families' names and typos, and is ignored with one warning."""
    probe = f"not-a-model-{uuid.uuid4().hex}"
    try:
        if _ask(family, probe) is None:
            return True
        answer = "claims"
    except ZooError:
        answer = "refuses"
    warnings.warn(f"the name grammar of family {family.name!r} {answer} the made-up name {probe!r}, so it would "
                  f"take other families' names and typos: it is ignored (the family's registry models still work)",
                  RuntimeWarning, stacklevel=5)
    return False


def _ask(family: Family, name: str) -> Optional[Mapping[str, Any]]:
    """``family.resolve(name)``; a :class:`ZooError` (the grammar's message about a name it recognises) is raised,
    any other exception (even SystemExit) or a malformed answer is warned about (once per family) and counts as
    no claim."""
    try:
        fields = family.resolve(name)  # type: ignore[misc]
    except ZooError:
        raise
    except (Exception, SystemExit) as exc:
        _warn_once(family, f"the name grammar of family {family.name!r} raised {type(exc).__name__}: {exc} "
                           f"(for {name!r}); treated as not matching")
        return None
    if fields is None:
        return None
    if not isinstance(fields, Mapping):
        _warn_once(family, f"the name grammar of family {family.name!r} returned a {type(fields).__name__} for "
                           f"{name!r}, expected a mapping of registry fields or None; treated as not matching")
        return None
    if fields.get("family", family.name) != family.name:
        _warn_once(family, f"the name grammar of family {family.name!r} returned an entry of family "
                           f"{fields['family']!r} for {name!r}; a family resolves only its own models")
        return None
    return fields


def _warn_once(family: Family, message: str) -> None:
    if not _warned.get(family.name):
        _warned[family.name] = True
        warnings.warn(message, RuntimeWarning, stacklevel=5)


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
