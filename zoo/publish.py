"""The one way producers (scripts/train.py, the demo scripts) write a registry fragment: add an entry, record
trained weights (bundle the file, write sha256, metrics and data). Every rewrite keeps the file's comment header,
is validated before it replaces the old file, and is atomic."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import yaml

from zoo.errors import RegistryError
from zoo.hub.files import atomic_path, sha256_of
from zoo.registry.loader import clear_cache, parse_file
from zoo.registry.schema import ModelEntry


def add_entries(registry: Path, entries: Mapping[str, Mapping[str, Any]], keep_weights: bool = False) -> Path:
    """Add models ``{name: fields}`` (``family``, ``builder``, ``args``, ...) to the registry fragment
    ``registry``, replacing entries of those names; without weights (record them with :func:`record_weights`)
    unless ``keep_weights`` keeps the ``weights:`` block of an entry being replaced."""
    registry = Path(registry)
    if not registry.is_file():
        raise RegistryError(f"no registry file {registry} to add {', '.join(map(repr, entries))} to")

    def add(models: Dict[str, Any]) -> None:
        for name, fields in entries.items():
            old = (models.get(name) or {}).get("weights") if keep_weights else None
            models[name] = {**fields, "weights": old}

    _rewrite(registry, add)
    return registry


def record_weights(entry: ModelEntry, weights_file: Path, metrics: Mapping[str, float], data: str,
                   bundle: bool = True, hf_hub_id: Optional[str] = None) -> Path:
    """Set ``entry``'s ``weights:`` block in the registry file it came from; returns that file.

    With ``bundle``, the safetensors file is copied to ``weights/NAME.safetensors`` beside the registry file so
    ``pretrained=True`` works offline.
    """
    registry = Path(entry.source)
    if not registry.is_file():
        raise RegistryError(f"{entry.name!r} comes from {entry.source}, not a registry file that can be updated")
    block: Dict[str, Any] = {"hf_hub_id": hf_hub_id or f"spectral-zoo/{entry.name}", "revision": "main",
                             "filename": "model.safetensors", "sha256": sha256_of(weights_file)}
    if bundle:
        relative = f"weights/{entry.name}.safetensors"
        with atomic_path(registry.parent / relative) as tmp:
            shutil.copyfile(weights_file, tmp)
        block["bundled"] = relative
    block["metrics"] = {k: round(float(v), 6) for k, v in metrics.items()}
    block["data"] = data

    def set_weights(models: Dict[str, Any]) -> None:
        if entry.name not in models:
            raise RegistryError(f"{entry.name!r} is not defined in {registry}")
        models[entry.name]["weights"] = block

    _rewrite(registry, set_weights)
    return registry


def record_state_dict(entry: ModelEntry, state_dict: Mapping[str, Any], metrics: Mapping[str, float], data: str,
                      bundle: bool = True, hf_hub_id: Optional[str] = None,
                      metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Save ``state_dict`` (tensors) as safetensors and record it as ``entry``'s weights (:func:`record_weights`)."""
    import tempfile

    from zoo.hub.state import write_safetensors

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        write_safetensors({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, path, dict(metadata or {}))
        return record_weights(entry, path, metrics, data, bundle=bundle, hf_hub_id=hf_hub_id)


def _rewrite(registry: Path, change: Callable[[Dict[str, Any]], None]) -> None:
    """Apply ``change`` to the ``models`` mapping of ``registry`` and write the file back (leading comment block
    kept) atomically, after validating the new text."""
    original = registry.read_text(encoding="utf-8")
    document = yaml.safe_load(original) or {}
    models = document.setdefault("models", {})
    if not isinstance(models, dict):
        raise RegistryError(f"{registry}: 'models' must be a mapping of names to entries")
    change(models)
    header = "".join(line for line in original.splitlines(keepends=True)[:_header_length(original)])
    text = header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)
    with atomic_path(registry) as tmp:  # validate the new file before it replaces the old one
        tmp.write_text(text, encoding="utf-8")
        parse_file(tmp)
    clear_cache()


def _header_length(text: str) -> int:
    """Number of leading comment / blank lines (kept when the file is rewritten)."""
    count = 0
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        count += 1
    return count
