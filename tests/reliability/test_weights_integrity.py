"""Every way weights enter the zoo rejects a file that is not the published one, and the error says so by its
content (the two digests), never by a path that happens to match: bundled, Hugging Face cache, download,
``local-dir:`` and ``checkpoint_path=``."""

from __future__ import annotations

import pytest
from safetensors.torch import save_file

import zoo
from tests.core.test_weights import published, reference_state  # noqa: F401  (fixture)
from zoo.errors import WeightsError
from zoo.hub.files import sha256_of


def _tampered(tmp_path, published_state):
    """Valid safetensors with other values: only the sha256 tells it from the published file."""
    path = tmp_path / "tampered" / "model.safetensors"
    path.parent.mkdir()
    save_file({k: v + 1 for k, v in published_state.items()}, str(path))
    return path


def _digests(expected: str, actual: str, by: str = "the registry") -> str:
    return f"sha256 is {actual}, {by} expects {expected}"


def test_bundled_weights_with_other_content_are_rejected(published):
    state, weights = published
    expected = sha256_of(weights)
    weights.write_bytes(weights.read_bytes()[:-1] + b" ")  # one byte changed, still the same size
    with pytest.raises(WeightsError) as error:
        zoo.create("toynet-small", pretrained=True)
    assert _digests(expected, sha256_of(weights)) in str(error.value) and "corrupted" in str(error.value)


@pytest.mark.parametrize("route", ["hf-cache", "download"])
def test_hub_weights_with_other_content_are_rejected(published, tmp_path, monkeypatch, route):
    import huggingface_hub

    state, weights = published
    expected = sha256_of(weights)
    weights.unlink()  # not bundled: the weights come from the Hub
    tampered = _tampered(tmp_path, state)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda *a, **k: str(tampered) if route == "hf-cache" else None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(tampered))
    with pytest.raises(WeightsError) as error:
        zoo.create("toynet-small", pretrained=True)
    assert _digests(expected, sha256_of(tampered)) in str(error.value)


def test_local_dir_weights_with_other_content_are_rejected(published, tmp_path):
    state, _ = published
    folder = zoo.save_pretrained(zoo.create("toynet-small", pretrained=True), tmp_path / "saved")
    expected = sha256_of(folder / "model.safetensors")
    save_file({k: v + 1 for k, v in state.items()}, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError) as error:
        zoo.create(f"local-dir:{folder}", pretrained=True)
    assert _digests(expected, sha256_of(folder / "model.safetensors"), by="config.json") in str(error.value)


def test_checkpoint_path_that_is_not_safetensors_content_is_rejected(published, tmp_path):
    state, weights = published
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(WeightsError, match=r"is not a readable safetensors file: .+"):
        zoo.create("toynet-small", checkpoint_path=broken)
