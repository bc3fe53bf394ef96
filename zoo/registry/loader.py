"""Reading, validating and merging registry files.

The core ``registry.yaml`` ships inside the ``zoo`` package; each family plugin may ship a fragment
``<package>/registry.yaml``. Every file has one top-level key, ``models``, mapping model names to the
fields of :class:`~zoo.registry.schema.ModelEntry`.
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import yaml
from pydantic import ValidationError

from zoo.errors import RegistryError
from zoo.registry.schema import ModelEntry

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when built: ~5x faster, same result

CORE_REGISTRY = Path(__file__).resolve().parents[1] / "registry.yaml"

_lock = threading.Lock()


def _format_validation(name: str, source: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<entry>"
        given = e.get("input")
        given_txt = f" (given: {given!r})" if not isinstance(given, dict) else ""
        lines.append(f"  {name}.{field}: {e['msg']}{given_txt}")
    return f"invalid registry entry {name!r} in {source}:\n" + "\n".join(lines)


def parse_file(path: Path) -> List[ModelEntry]:
    """Validate one registry file; every error names the file, the entry and the field."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)
    except FileNotFoundError:
        raise RegistryError(f"registry file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise RegistryError(f"registry file {path} is not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) != {"models"} or not isinstance(data["models"], (dict, type(None))):
        raise RegistryError(f"registry file {path} must have exactly one top-level key 'models' mapping names "
                            f"to entries; found keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    entries = []
    for name, fields in (data["models"] or {}).items():
        entries.append(parse_entry(str(name), fields, path))
    return entries


def parse_entry(name: str, fields: Any, source: Path) -> ModelEntry:
    """Validate one entry's fields (a mapping) into a :class:`ModelEntry`."""
    if not isinstance(fields, Mapping):
        raise RegistryError(f"registry entry {name!r} in {source} must be a mapping, got {type(fields).__name__}")
    if "name" in fields and fields["name"] != name:
        raise RegistryError(f"registry entry {name!r} in {source} has a different name field {fields['name']!r}")
    try:
        return ModelEntry(**{**fields, "name": name, "source": str(source)})
    except ValidationError as err:
        raise RegistryError(_format_validation(name, source, err)) from None


def merge(files: Iterable[Tuple[Path, List[ModelEntry]]], families: Iterable[str]) -> Dict[str, ModelEntry]:
    """Merge parsed files; a name defined twice or an unknown family is an error."""
    known = set(families)
    merged: Dict[str, ModelEntry] = {}
    for path, entries in files:
        for entry in entries:
            if entry.name in merged:
                raise RegistryError(f"model {entry.name!r} is defined twice: in {merged[entry.name].source} "
                                    f"and in {path}")
            if entry.family not in known:
                raise RegistryError(f"registry entry {entry.name!r} in {path}: field 'family' names {entry.family!r}, "
                                    f"which is not installed (installed families: {', '.join(sorted(known)) or 'none'})")
            merged[entry.name] = entry
    return merged


def registry_files() -> List[Path]:
    """The core registry, then every installed family's fragment (found without importing plugins)."""
    from zoo import plugins

    files = [CORE_REGISTRY] if CORE_REGISTRY.is_file() else []
    for rec in plugins.records():
        path = rec.registry_path()
        if path is not None:
            files.append(path)
    return files


@lru_cache(maxsize=1)
def load_registry() -> Dict[str, ModelEntry]:
    """All registry entries by name (cached; :func:`clear_cache` after installing a plugin).

    The core registry must be valid. A family's fragment that is not (bad YAML, a schema error, an entry of
    another or an unknown family) is left out whole with one warning, and a name a fragment defines again is
    kept from the first file (core, then families by name) with one warning: one broken plugin never hides the
    other families' models."""
    from zoo import plugins

    with _lock:
        _fragment_errors.clear()
        families = plugins.family_names()
        merged = merge([(CORE_REGISTRY, parse_file(CORE_REGISTRY))] if CORE_REGISTRY.is_file() else [], families)
        for rec in plugins.records():
            path = rec.registry_path()
            if path is None:
                continue
            try:
                entries = parse_fragment(path, rec.name)
            except RegistryError as exc:
                _fragment_errors[rec.name] = str(exc)
                _warn(f"registry fragment of family {rec.name!r} ({rec.distribution}) is ignored, its models "
                      f"are unavailable: {exc}")
                continue
            for entry in entries:
                if entry.name in merged:
                    _warn(f"model {entry.name!r} is defined twice: in {merged[entry.name].source} and in {path}; "
                          f"keeping the first")
                else:
                    merged[entry.name] = entry
        return merged


_fragment_errors: Dict[str, str] = {}  # family -> why its fragment was left out (by the last load_registry)


def fragment_error(family: str) -> Optional[str]:
    """Why ``family``'s registry fragment was left out, or ``None`` when it was read."""
    load_registry()
    return _fragment_errors.get(family)


def parse_fragment(path: Path, family: str) -> List[ModelEntry]:
    """Validate the registry fragment of ``family``: a valid registry file whose entries are all of ``family``."""
    entries = parse_file(path)
    foreign = sorted({e.family for e in entries} - {family})
    if foreign:
        names = [e.name for e in entries if e.family != family][:3]
        raise RegistryError(f"{path} belongs to family {family!r} but entries {names} name family "
                            f"{foreign[0]!r}; a fragment may only define its own family's models")
    return entries


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def clear_cache() -> None:
    load_registry.cache_clear()
