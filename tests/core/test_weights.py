"""Pretrained weights: bundled files, sha256 checks, head/in_chans adaptation, HF cache, save/load round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import WeightsError, ZooError
from zoo.hub.files import sha256_of

REGISTRY_WITH_WEIGHTS = """
models:
  toynet-small:
    family: toy
    builder: toy_net
    args: {{width: 4}}
    dataset: noise
    input: {{shape: [2, 8, 8], num_classes: 3, classifier: head, first_conv: stem}}
    weights: {{hf_hub_id: spectral-zoo/toynet-small, revision: main, sha256: '{sha}', bundled: {bundled},
              metrics: {{top1: 0.5}}, data: random noise}}
  toynet-bare:
    family: toy
    builder: toy_net
    dataset: noise
    input: {{shape: [2, 8, 8], num_classes: 3}}
"""


def reference_state(seed: int = 0) -> dict:
    from toyfam.family import ToyNet

    torch.manual_seed(seed)
    return {k: v.clone() for k, v in ToyNet(width=4).state_dict().items()}


@pytest.fixture
def published(toy_family):
    """The toy family with published weights bundled beside its registry fragment."""
    site = toy_family.site
    zoo.create("toynet-small")  # imports toyfam so reference_state can build the network
    state = reference_state()
    weights = site / "toyfam" / "weights" / "toynet-small.safetensors"
    weights.parent.mkdir()
    save_file(state, str(weights))
    toy_family(REGISTRY_WITH_WEIGHTS.format(sha=sha256_of(weights), bundled="weights/toynet-small.safetensors"))
    return state, weights


def test_bundled_weights_load_exactly(published):
    state, weights = published
    model = zoo.create("toynet-small", pretrained=True)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value)
    assert model.pretrained_cfg["weights_source"] == f"bundled:{weights}"
    assert zoo.list_models(pretrained=True, family="toy") == ["toynet-small"]


def test_new_num_classes_drops_only_the_head(published, caplog):
    state, _ = published
    with caplog.at_level("INFO", logger="zoo"):
        model = zoo.create("toynet-small", pretrained=True, num_classes=5)
    assert model.head.out_features == 5 and torch.equal(model.stem.weight, state["stem.weight"])
    assert any("dropped pretrained classifier head" in r.message for r in caplog.records)
    assert model.pretrained_cfg["num_classes"] == 5


def test_in_chans_adapts_first_conv_like_timm(published):
    state, _ = published
    model = zoo.create("toynet-small", pretrained=True, in_chans=1)
    assert torch.allclose(model.stem.weight[:, 0], state["stem.weight"].sum(1))


def test_wrong_sha_raises_naming_both_digests(published):
    _, weights = published
    save_file(reference_state(seed=1), str(weights))
    with pytest.raises(WeightsError, match=r"sha256 is [0-9a-f]{64}, the registry expects [0-9a-f]{64}"):
        zoo.create("toynet-small", pretrained=True)


def test_corrupted_file_is_rejected(published):
    _, weights = published
    weights.write_bytes(weights.read_bytes()[:100])
    # the message's content, not the test's temporary folder (named after this test: "...corrupted...")
    with pytest.raises(WeightsError, match=r"is corrupted or not the published file: sha256 is [0-9a-f]{64}, the "
                                           r"registry expects [0-9a-f]{64}"):
        zoo.create("toynet-small", pretrained=True)


def test_checkpoint_path_and_mismatched_keys(published, tmp_path):
    state, _ = published
    good = tmp_path / "good.safetensors"
    save_file(state, str(good))
    assert torch.equal(zoo.create("toynet-small", checkpoint_path=good).stem.bias, state["stem.bias"])
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state.items() if k != "stem.bias"}, str(partial))
    with pytest.raises(WeightsError, match=r"missing keys \['stem.bias'\]"):
        zoo.create("toynet-small", checkpoint_path=partial)
    wrong = tmp_path / "wrong.safetensors"
    save_file({**state, "stem.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(WeightsError, match="do not fit"):
        zoo.create("toynet-small", checkpoint_path=wrong)
    pickle = tmp_path / "model.pth"
    torch.save(state, pickle)
    with pytest.raises(WeightsError, match="only .safetensors"):
        zoo.create("toynet-small", checkpoint_path=pickle)


def test_pretrained_without_weights_says_so_and_lists_models(published):
    with pytest.raises(WeightsError, match=r"'toynet-bare' has no published weights.*zoo train toynet-bare --data.*toynet-small"):
        zoo.create("toynet-bare", pretrained=True)


def test_save_pretrained_round_trips_through_local_dir(published, tmp_path):
    model = zoo.create("toynet-small", pretrained=True, num_classes=4, width=4)
    out = zoo.save_pretrained(model, tmp_path / "export", metrics={"top1": 0.75}, data="noise")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["input"]["num_classes"] == 4 and config["metrics"] == {"top1": 0.75}
    assert "top1" in (out / "README.md").read_text() and "## Training data" in (out / "README.md").read_text()
    again = zoo.create(f"local-dir:{out}", pretrained=True)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    arch_only = zoo.create(f"local-dir:{out}")
    assert arch_only.head.out_features == 4
    with pytest.raises(ZooError, match="not a folder"):
        zoo.create(f"local-dir:{tmp_path / 'nowhere'}")


def _hf_cache(root: Path, repo: str, files: dict[str, bytes], rev: str = "0123456789abcdef0123456789abcdef01234567"):
    """A hand-built Hugging Face cache: models--org--name/refs/main (no newline) + snapshots/<rev>/files."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def _run_offline(site: Path, cache: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_hf_cache_offline_and_empty_cache_message(published, tmp_path):
    state, weights = published
    data = weights.read_bytes()
    weights.unlink()  # no bundled copy: must come from the Hugging Face cache
    cache = tmp_path / "hf"
    _hf_cache(cache, "spectral-zoo/toynet-small", {"model.safetensors": data})
    code = ("import zoo, torch; m = zoo.create('toynet-small', pretrained=True); "
            "print(m.pretrained_cfg['weights_source']); print(float(m.stem.weight.sum()))")
    site = weights.parents[2]
    done = _run_offline(site, cache, code)
    assert done.returncode == 0, done.stderr
    source, total = done.stdout.split()
    assert source == "hf-cache:spectral-zoo/toynet-small@main"
    assert abs(float(total) - float(state["stem.weight"].sum())) < 1e-5
    empty = _run_offline(site, tmp_path / "empty", code)
    assert empty.returncode != 0 and "HF_HUB_OFFLINE is set" in empty.stderr and "not in the Hugging Face cache" in empty.stderr


def test_hf_hub_prefix_rebuilds_from_cached_folder(published, tmp_path):
    model = zoo.create("toynet-small", pretrained=True)
    out = zoo.save_pretrained(model, tmp_path / "export")
    cache = tmp_path / "hf"
    _hf_cache(cache, "org/toy", {n: (out / n).read_bytes() for n in ("config.json", "model.safetensors")})
    code = "import zoo; m = zoo.create('hf-hub:org/toy', pretrained=True); print(m.pretrained_cfg['architecture'])"
    done = _run_offline(published[1].parents[2], cache, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "toynet-small"
