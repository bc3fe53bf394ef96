"""Discovery of family plugins through the ``zoo.families`` entry-point group.

Discovery reads entry points only; a family's code is imported on first use, and a family
that fails to import (even by raising SystemExit) is reported (one warning) without affecting the others.
A second entry point with a family name already taken is warned about and ignored.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

from zoo.errors import PluginError
from zoo.family import Family

if sys.version_info >= (3, 10):
    from importlib.metadata import EntryPoint, entry_points
else:  # pragma: no cover - exercised on Python 3.9 only
    from importlib_metadata import EntryPoint, entry_points

GROUP = "zoo.families"


@dataclass
class FamilyRecord:
    """What is known about an installed family, before and after importing it."""

    name: str
    entry_point: EntryPoint
    family: Optional[Family] = None
    error: Optional[str] = None

    @property
    def distribution(self) -> str:
        return _dist_name(self.entry_point)

    @property
    def version(self) -> str:
        if self.family is not None:
            return self.family.version
        dist = getattr(self.entry_point, "dist", None)
        return dist.version if dist is not None else "?"

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "loaded" if self.family is not None else "available"

    @property
    def package(self) -> str:
        """Top-level package of the entry point's module (``zoo_tnn`` for ``zoo_tnn.family:FAMILY``)."""
        return self.entry_point.value.split(":")[0].split(".")[0]

    def package_dir(self) -> Optional[Path]:
        """The folder of the family's top-level package, located without importing it."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0])

    def registry_path(self) -> Optional[Path]:
        """``<package>/registry.yaml``, located without importing the package."""
        folder = self.package_dir()
        path = folder / "registry.yaml" if folder is not None else None
        return path if path is not None and path.is_file() else None

    def recipes_dir(self) -> Optional[Path]:
        """``<package>/recipes``, the family's training recipes (see :mod:`zoo.recipes`), if it ships any."""
        folder = self.package_dir()
        path = folder / "recipes" if folder is not None else None
        return path if path is not None and path.is_dir() else None


_lock = threading.RLock()


@lru_cache(maxsize=1)
def _records() -> Dict[str, FamilyRecord]:
    """The first entry point of each family name on ``sys.path``; a later one of another distribution or module
    is warned about and ignored (never silently shadows the first)."""
    records: Dict[str, FamilyRecord] = {}
    for ep in entry_points(group=GROUP):
        first = records.get(ep.name)
        if first is None:
            records[ep.name] = FamilyRecord(ep.name, ep)
        elif (_dist_name(first.entry_point), first.entry_point.value) != (_dist_name(ep), ep.value):
            warnings.warn(f"zoo family {ep.name!r} is provided twice: by {_dist_name(first.entry_point)} "
                          f"({first.entry_point.value}) and by {_dist_name(ep)} ({ep.value}); using the first, "
                          f"ignoring the second (uninstall one of them)", RuntimeWarning, stacklevel=3)
    return records  # (the same distribution seen twice on sys.path is the same family)


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "?"


def clear_cache() -> None:
    """Forget discovered plugins; :func:`zoo.registry.refresh` also forgets the registry read from them."""
    _records.cache_clear()


def family_names() -> List[str]:
    """Names of every installed family, imported or not."""
    return sorted(_records())


def records() -> List[FamilyRecord]:
    """Every installed family, in name order (nothing is imported)."""
    return [_records()[n] for n in family_names()]


def get_family(name: str) -> Family:
    """Import (once) and return the family called ``name``."""
    with _lock:
        recs = _records()
        if name not in recs:
            raise PluginError(f"family {name!r} is not installed (installed: {', '.join(sorted(recs)) or 'none'})")
        rec = recs[name]
        if rec.family is None and rec.error is None:
            _load(rec)
        if rec.error is not None:
            raise PluginError(f"family {name!r} ({rec.distribution}) failed to load: {rec.error}")
        assert rec.family is not None
        return rec.family


def load_all() -> List[FamilyRecord]:
    """Import every family; broken ones are recorded and warned about, never raised."""
    with _lock:
        for rec in records():
            if rec.family is None and rec.error is None:
                _load(rec)
        return records()


def _load(rec: FamilyRecord) -> None:
    try:
        obj = rec.entry_point.load()
    except (Exception, SystemExit) as exc:  # a broken plugin must not break the others (nor exit the process)
        rec.error = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"zoo family plugin {rec.name!r} ({rec.entry_point.value}) failed to import: {rec.error}",
                      RuntimeWarning, stacklevel=3)
        return
    if not isinstance(obj, Family):
        rec.error = f"entry point {rec.entry_point.value} is a {type(obj).__name__}, expected zoo.family.Family"
    elif obj.name != rec.name:
        rec.error = f"entry point is named {rec.name!r} but the Family object is named {obj.name!r}"
    elif obj.registry is not None and _resolved(rec.registry_path()) != _resolved(Path(obj.registry)):
        rec.error = (f"Family.registry must be {rec.package}/registry.yaml (read without importing the plugin), "
                     f"got {obj.registry}")
    if rec.error is not None:
        warnings.warn(f"zoo family plugin {rec.name!r}: {rec.error}", RuntimeWarning, stacklevel=3)
        return
    rec.family = obj


def _resolved(path: Optional[Path]) -> Optional[Path]:
    return path.resolve() if path is not None else None
