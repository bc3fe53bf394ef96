"""Where a model name leads: its registry entry, saved build arguments and (when asked) its verified weights file.

A name is a registry or family-grammar name, ``local-dir:DIR`` (a folder written by ``zoo.save_pretrained`` or by
timm) or ``hf-hub:ORG/REPO[@REV]`` (the same, fetched through ``huggingface_hub``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from zoo.errors import WeightsError, ZooError
from zoo.registry.schema import ModelEntry

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"


@dataclass(frozen=True)
class ModelSource:
    """What ``zoo.create`` builds and loads for a name.

    Attributes:
        entry: the registry entry (a saved folder's carries its class names, preprocessing and training record).
        build_kwargs: builder arguments a saved folder recorded, on top of ``entry.args``.
        weights: the weights file, verified against its sha256 where one is recorded; ``None`` when not asked for.
        origin: where ``weights`` came from (``bundled:PATH``, ``hf-cache:ID@REV``, ``hf-hub:ID@REV``, the name).
    """

    entry: ModelEntry
    build_kwargs: Dict[str, Any] = field(default_factory=dict)
    weights: Optional[Path] = None
    origin: Optional[str] = None


def resolve_source(name: str, pretrained: bool) -> ModelSource:
    """The :class:`ModelSource` of ``name``; with ``pretrained`` its weights are located and verified first, so a
    missing or corrupted file is reported before anything is built."""
    from zoo.hub.pretrained import read_folder
    from zoo.registry.resolve import find_entry

    if name.startswith(LOCAL_DIR):
        directory = Path(name[len(LOCAL_DIR):]).expanduser()
        if not directory.is_dir():
            raise ZooError(f"{name}: {directory} is not a folder (expected one written by zoo.save_pretrained)")
        entry, weights, kwargs = read_folder(directory, pretrained)
        return ModelSource(entry, kwargs, weights, name if weights is not None else None)
    if name.startswith(HF_HUB):
        entry, weights, kwargs = read_folder(_download_hub_folder(name[len(HF_HUB):], pretrained), pretrained)
        return ModelSource(entry, kwargs, weights, name if weights is not None else None)
    if os.sep in name or "/" in name or name.endswith((".safetensors", ".pth", ".pt", ".bin")):
        raise ZooError(f"{name!r} looks like a path, not a model name: use zoo.create('local-dir:{name}') for a folder "
                       f"written by save_pretrained, 'hf-hub:ORG/REPO' for the Hub, or checkpoint_path= for a file")
    entry = find_entry(name)
    if not pretrained:
        return ModelSource(entry)
    from zoo.hub.locate import locate_timm_weights, locate_weights

    dense = entry.timm_dense_name()
    path, origin = locate_timm_weights(dense) if dense and entry.weights is None else locate_weights(entry)
    return ModelSource(entry, {}, path, origin)


def _download_hub_folder(spec: str, pretrained: bool) -> Path:
    """The local folder (in the Hugging Face cache) of ``ORG/REPO[@REV]``'s config, and weights when asked."""
    import huggingface_hub

    from zoo.hub.pretrained import CONFIG_NAME, WEIGHTS_NAME, check_repo_id

    repo_id, _, revision = spec.partition("@")
    check_repo_id(repo_id)  # a malformed id is the user's typo, not a network problem
    check_revision(spec, revision)
    files = [CONFIG_NAME] + ([WEIGHTS_NAME] if pretrained else [])
    try:
        paths = [huggingface_hub.hf_hub_download(repo_id, f, revision=revision or None) for f in files]
    except Exception as exc:
        raise WeightsError(f"could not fetch {files} of hf-hub:{spec} (offline: set no HF_HUB_OFFLINE, or put the "
                           f"files in the Hugging Face cache): {exc}") from exc
    return Path(paths[0]).parent


_REVISION = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def check_revision(spec: str, revision: str) -> None:
    """Refuse a revision after ``@`` that no branch, tag or commit can be named (git's ref rules: no ``..``, no
    empty part, no spaces or ``~^:?*[\\``), before anything is contacted."""
    if revision and (not _REVISION.fullmatch(revision) or ".." in revision or revision.endswith((".", ".lock"))):
        raise ZooError(f"hf-hub:{spec}: {revision!r} is not a revision (expected a branch, tag or commit id after "
                       f"@, such as main, v1.0 or a commit hash)")
