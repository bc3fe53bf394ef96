"""Weights the zoo writes are a function of the tensors and the metadata alone: safetensors writes its
``__metadata__`` in a random key order (safetensors#584), which would give the same weights a new sha256 on every
save (and a registry diff on every re-publish)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import zoo
from zoo.hub.state import write_safetensors

STATE = {"layer.weight": torch.randn(3, 5), "index": torch.arange(7), "half": torch.randn(2, dtype=torch.float16),
         "scalar": torch.tensor(1.5)}
META = {f"key{i}": f"value {i}" for i in range(12)} | {"café": "naïve ✓"}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_tensors_and_metadata_give_the_same_bytes(tmp_path):
    # 13 metadata keys: safetensors' own save_file gives 8 different files here almost surely
    paths = [tmp_path / f"{i}.safetensors" for i in range(8)]
    for path in paths:
        write_safetensors(STATE, path, META)
    assert len({_digest(p) for p in paths}) == 1
    loaded = load_file(str(paths[0]))
    assert loaded.keys() == STATE.keys() and all(torch.equal(loaded[k], STATE[k]) for k in STATE)
    assert all(loaded[k].dtype == STATE[k].dtype for k in STATE)
    with safe_open(str(paths[0]), "pt") as f:
        assert f.metadata() == META
    header_size = int.from_bytes(paths[0].read_bytes()[:8], "little")
    assert header_size % 8 == 0  # the data stays 8-byte aligned


@pytest.mark.parametrize("state", [{}, {"x": torch.zeros(2)}])
@pytest.mark.parametrize("metadata", [{}, {"format": "pt"}])
def test_empty_state_and_metadata_are_valid_files(tmp_path, state, metadata):
    write_safetensors(state, tmp_path / "w.safetensors", metadata)
    assert load_file(str(tmp_path / "w.safetensors")).keys() == state.keys()
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert (f.metadata() or {}) == metadata


def test_save_pretrained_twice_gives_one_sha256(tmp_path):
    model = zoo.create("lenet5")
    first = zoo.save_pretrained(model, tmp_path / "a")
    second = zoo.save_pretrained(model, tmp_path / "b")
    assert _digest(first / "model.safetensors") == _digest(second / "model.safetensors")
