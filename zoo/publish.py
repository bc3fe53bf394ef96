"""Recording trained weights in a registry fragment: bundle the file, write sha256, metrics and data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Optional

import yaml

from zoo.errors import RegistryError
from zoo.hub.files import atomic_path, sha256_of
from zoo.registry.loader import clear_cache, parse_file
from zoo.registry.schema import ModelEntry


def record_weights(entry: ModelEntry, weights_file: Path, metrics: Mapping[str, float], data: str,
                   bundle: bool = True, hf_hub_id: Optional[str] = None) -> Path:
    """Set ``entry``'s ``weights:`` block in the registry file it came from; returns that file.

    With ``bundle``, the safetensors file is copied to ``weights/NAME.safetensors`` beside the registry file so
    ``pretrained=True`` works offline. The YAML (with its leading comment block) is rewritten atomically and
    re-validated before it replaces the old one.
    """
    registry = Path(entry.source)
    if not registry.is_file():
        raise RegistryError(f"{entry.name!r} comes from {entry.source}, not a registry file that can be updated")
    original = registry.read_text(encoding="utf-8")
    document = yaml.safe_load(original)
    if entry.name not in (document.get("models") or {}):
        raise RegistryError(f"{entry.name!r} is not defined in {registry}")
    block = {"hf_hub_id": hf_hub_id or f"spectral-zoo/{entry.name}", "revision": "main",
             "filename": "model.safetensors", "sha256": sha256_of(weights_file)}
    if bundle:
        relative = f"weights/{entry.name}.safetensors"
        with atomic_path(registry.parent / relative) as tmp:
            shutil.copyfile(weights_file, tmp)
        block["bundled"] = relative
    block["metrics"] = {k: round(float(v), 6) for k, v in metrics.items()}
    block["data"] = data
    document["models"][entry.name]["weights"] = block
    header = "".join(line for line in original.splitlines(keepends=True)[:_header_length(original)])
    text = header + yaml.safe_dump(document, sort_keys=False, width=120)
    with atomic_path(registry) as tmp:  # validate the new file before it replaces the old one
        tmp.write_text(text, encoding="utf-8")
        parse_file(tmp)
    clear_cache()
    return registry


def _header_length(text: str) -> int:
    """Number of leading comment / blank lines (kept when the file is rewritten)."""
    count = 0
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        count += 1
    return count
