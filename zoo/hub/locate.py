"""Find the weights file of a registry entry: bundled, Hugging Face cache, then download."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple

from zoo.errors import WeightsError
from zoo.hub.files import sha256_of
from zoo.registry.schema import ModelEntry, Weights


def _no_weights_message(entry: ModelEntry) -> str:
    from zoo.registry.resolve import entries

    have = sorted(entries(pretrained=True))
    listing = ", ".join(have) if have else "none are installed"
    return (f"model {entry.name!r} has no published weights. Train them with `zoo train {entry.name} --data DIR "
            f"--output OUT` (where its family ships a recipe for it, zoo.recipes.load_recipe({entry.name!r}) names the "
            f"data and schedule of the published weights), then load them with "
            f"zoo.create('local-dir:OUT/best', pretrained=True) or "
            f"checkpoint_path='.../model.safetensors'. Models with weights: {listing}")


def locate_weights(entry: ModelEntry) -> Tuple[Path, str]:
    """Path of the verified weights file of ``entry`` and where it came from.

    Order: bundled inside the plugin package; the Hugging Face cache; ``hf_hub_download``
    (honours ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE``). The file's sha256 must equal the registry's.
    """
    weights = entry.weights
    if weights is None:
        raise WeightsError(_no_weights_message(entry))
    if weights.bundled is not None and entry.source:
        bundled = Path(entry.source).parent / weights.bundled
        if bundled.is_file():
            return verify(bundled, weights, entry.name), f"bundled:{bundled}"
    path, origin = _from_hub(entry.name, weights)
    return verify(path, weights, entry.name), origin


def _from_hub(name: str, weights: Weights) -> Tuple[Path, str]:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    cached = huggingface_hub.try_to_load_from_cache(weights.hf_hub_id, weights.filename, revision=weights.revision)
    if isinstance(cached, str):
        return Path(cached), f"hf-cache:{weights.hf_hub_id}@{weights.revision}"
    try:
        path = huggingface_hub.hf_hub_download(weights.hf_hub_id, weights.filename, revision=weights.revision)
    except LocalEntryNotFoundError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
        raise WeightsError(
            f"weights of {name!r} ({weights.hf_hub_id}/{weights.filename}@{weights.revision}) are not in the "
            f"Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}) and {why}. Download them once online, "
            f"or copy them into the cache, or pass checkpoint_path=...") from exc
    except Exception as exc:  # network errors, missing repos, auth
        raise WeightsError(f"could not download weights of {name!r} from {weights.hf_hub_id}: {exc}") from exc
    return Path(path), f"hf-hub:{weights.hf_hub_id}@{weights.revision}"


def verify(path: Path, weights: Weights, name: str) -> Path:
    """Check ``path`` against the registry's sha256; raise naming both digests on a mismatch."""
    actual = sha256_of(path)
    if actual != weights.sha256:
        raise WeightsError(f"weights file {path} of {name!r} is corrupted or not the published file: sha256 is "
                           f"{actual}, the registry expects {weights.sha256}. Delete it and download again.")
    return path


def locate_timm_weights(architecture: str) -> Tuple[Path, str]:
    """timm's published safetensors weights of a plain timm model, from the Hugging Face cache or the Hub.

    They carry no zoo sha256 (timm publishes none); only a safetensors file is accepted."""
    import huggingface_hub
    import timm

    cfg = timm.get_pretrained_cfg(architecture)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        raise WeightsError(f"timm publishes no Hugging Face weights for {architecture!r} (only a URL or none), and "
                           f"the zoo loads only safetensors files; pass checkpoint_path='.../model.safetensors'")
    repo_id, _, revision = repo.partition("@")
    filename = "model.safetensors"
    try:
        path = huggingface_hub.hf_hub_download(repo_id, filename, revision=revision or None)
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "HF_HUB_OFFLINE is set" if offline else f"the Hub could not be reached ({type(exc).__name__})"
        raise WeightsError(
            f"timm's pretrained weights of {architecture!r} ({repo_id}/{filename}) are not in the Hugging Face cache "
            f"({huggingface_hub.constants.HF_HUB_CACHE}) and {why}. Download them once online (e.g. "
            f"timm.create_model({architecture!r}, pretrained=True)), or pass checkpoint_path=..., or create the "
            f"model with pretrained=False") from None
    return Path(path), f"hf-hub:{repo_id}"
