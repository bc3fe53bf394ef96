"""push_to_hub without a network: huggingface_hub.HfApi replaced by a recorder of what would be uploaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import zoo
from zoo.cli import main
from zoo.errors import ZooError


class FakeApi:
    """Records ``create_repo`` / ``upload_folder`` calls and the uploaded files (read at upload time)."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, {"private": private, "exist_ok": exist_ok}))

    def upload_folder(self, repo_id, folder_path, commit_message):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, {"commit_message": commit_message, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi.calls


def uploaded(calls, repo_id):
    assert [c[:2] for c in calls] == [("create_repo", repo_id), ("upload_folder", repo_id)]
    assert calls[0][2] == {"private": False, "exist_ok": True}
    files = calls[1][2]["files"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    return files, json.loads(files["config.json"]), files["README.md"].decode()


def test_push_to_hub_uploads_weights_config_and_card(hub, rgb_toy, tmp_path):
    model = zoo.create(rgb_toy)
    url = zoo.push_to_hub(model, "org/toynet-rgb", metrics={"top1": 91.25}, data="three colour classes")
    assert url == "https://huggingface.co/org/toynet-rgb/commit/abc"
    files, config, card = uploaded(hub, "org/toynet-rgb")
    assert config["name"] == "toynet-rgb" and config["metrics"] == {"top1": 91.25}
    assert "| top1 | 91.25 | — |" in card and "three colour classes" in card
    (tmp_path / "w.safetensors").write_bytes(files["model.safetensors"])
    state = load_file(str(tmp_path / "w.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_zoo_train_push_to_hub_uploads_the_best_epoch(hub, rgb_toy, colour_data, tmp_path, capsys):
    train, val = colour_data
    out = tmp_path / "run"
    code = main(["train", rgb_toy, "--data", str(train), "--val-data", str(val), "--output", str(out),
                 "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--no-augment", "--push-to-hub", "me/colours"])
    assert code == 0 and "https://huggingface.co/me/colours/commit/abc" in capsys.readouterr().out
    files, config, card = uploaded(hub, "me/colours")
    assert files == {p.name: p.read_bytes() for p in (out / "best").iterdir()}
    best = max(json.loads(line)["val_acc"] for line in (out / "metrics.jsonl").read_text().splitlines())
    assert config["metrics"]["val_acc"] == best and f"| val_acc | {best:.4g} |" in card


def test_train_py_push_to_hub_records_the_repo_as_hf_hub_id(hub, toy_family, tmp_path, capsys, shared_data):
    from tests.training.test_recipes import MNIST_TOY, run_script

    registry = toy_family(MNIST_TOY)
    recipe = tmp_path / "toynet-mnist.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": "toynet-mnist", "data": {"source": "mnist", "holdout": 300, "seed": 1, "limit": 600},
        "finetune": {"epochs": 1, "lr": 0.02, "batch_size": 64, "augment": False, "progress": False}}))
    run_script("train.py", str(recipe), "--output", str(tmp_path / "runs"), "--publish", "--push-to-hub",
               "lab/toynet-mnist", "--report-dir", str(tmp_path / "reports"), capsys=capsys)
    files, config, card = uploaded(hub, "lab/toynet-mnist")
    weights = yaml.safe_load(registry.read_text())["models"]["toynet-mnist"]["weights"]
    assert weights["hf_hub_id"] == "lab/toynet-mnist"
    assert config["metrics"] == pytest.approx(weights["metrics"], abs=1e-6) and "top1" in config["metrics"]
    assert "held-out 300" in config["data"] and "## Metrics" in card


def test_push_folder_to_hub_needs_a_saved_folder(hub, tmp_path):
    from zoo.hub.pretrained import push_folder_to_hub

    with pytest.raises(ZooError, match=r"has no model.safetensors \+ config.json; expected a folder written by"):
        push_folder_to_hub(tmp_path, "org/x")
    assert hub == []
