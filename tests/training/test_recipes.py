"""scripts/train.py + scripts/evaluate.py on real MNIST images: train, publish into the registry, reproduce."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import yaml

import zoo
from zoo import datasets
from zoo.errors import ZooError
from zoo.recipes import load_recipe

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

MNIST_TOY = """
# header comment kept when the weights are recorded
models:
  toynet-mnist:
    family: toy
    builder: toy_net
    args: {width: 16, in_chans: 1}
    dataset: mnist
    input: {shape: [1, 28, 28], mean: [0.1307], std: [0.3081], num_classes: 10, classifier: head, first_conv: stem}
"""


def run_script(name: str, *argv: str, capsys) -> str:
    old = sys.argv
    sys.argv = [name, *argv]
    try:
        runpy.run_path(str(SCRIPTS / name), run_name="__main__")
    except SystemExit as stop:
        assert stop.code in (0, None), capsys.readouterr().err
    finally:
        sys.argv = old
    return capsys.readouterr().out


def test_train_publish_evaluate_round_trip(toy_family, tmp_path, capsys, shared_data):
    registry = toy_family(MNIST_TOY)
    recipe = tmp_path / "toynet-mnist.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": "toynet-mnist", "data": {"source": "mnist", "holdout": 500, "seed": 1, "limit": 1500},
        "finetune": {"epochs": 2, "lr": 0.02, "batch_size": 64, "augment": False, "progress": False}}))
    out = run_script("train.py", str(recipe), "--output", str(tmp_path / "runs"), "--publish",
                     "--report-dir", str(tmp_path / "reports"), capsys=capsys)
    report = json.loads(out[:out.rindex("}") + 1])
    assert 10.0 < report["metrics"]["top1"] <= 100.0 and report["metrics"]["nll"] > 0
    assert "1,500 of the 10,000 MNIST test images" in report["data"] and "held-out 500" in report["data"]
    assert registry.read_text().startswith("\n# header comment kept when the weights are recorded\nmodels:")
    weights = yaml.safe_load(registry.read_text())["models"]["toynet-mnist"]["weights"]
    assert weights["bundled"] == "weights/toynet-mnist.safetensors" and len(weights["sha256"]) == 64
    assert weights["metrics"]["top1"] == pytest.approx(report["metrics"]["top1"], abs=1e-6)
    assert zoo.list_models("toynet-mnist", pretrained=True) == ["toynet-mnist"]
    history = json.loads((tmp_path / "reports" / "toynet-mnist.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    out = run_script("evaluate.py", "toynet-mnist", "--recipe", str(recipe), "--check", capsys=capsys)
    measured = json.loads(out)["measured"]
    assert measured["top1"] == pytest.approx(weights["metrics"]["top1"], abs=1e-4)


def test_split_is_disjoint_and_seeded(shared_data):
    train, held = datasets.split(10_000, 2000, seed=3)
    assert len(set(train.tolist()) & set(held.tolist())) == 0 and len(train) + len(held) == 10_000
    assert datasets.split(10_000, 2000, seed=3)[1].tolist() == held.tolist()
    images, labels = datasets.mnist()
    assert images.shape == (10_000, 1, 28, 28) and labels.bincount().min() > 800
    images, labels = datasets.cifar10()
    assert images.shape == (10_000, 3, 32, 32) and set(labels.unique().tolist()) == set(range(10))


def test_read_idx_round_trip_and_errors(tmp_path):
    import gzip
    import struct

    import torch

    from zoo.errors import DataError

    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2, 3, 4) + bytes(range(24)))
    assert torch.equal(datasets.read_idx(path), torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4))
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 5) + b"abc")
    with pytest.raises(DataError, match=r"bad-idx1-ubyte: header declares shape \(5,\) \(5 bytes\) but 3 follow"):
        datasets.read_idx(bad)
    floats = tmp_path / "f-idx1-ubyte"
    floats.write_bytes(struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 1) + b"abcd")
    with pytest.raises(DataError, match="unsigned bytes"):
        datasets.read_idx(floats)


def test_bad_recipes(tmp_path):
    with pytest.raises(ZooError, match="no recipe 'nope'"):
        load_recipe("nope", folders=[tmp_path])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\ndata: {source: mnist, holdout: -1}\n")
    with pytest.raises(ZooError, match=r"data.holdout"):
        load_recipe(str(bad))


def test_every_shipped_recipe_validates_and_names_a_model_of_its_family():
    """Each family ships the recipes of its own models (``<package>/recipes``), variants in subfolders."""
    from zoo import plugins
    from zoo.training.trainer import FinetuneConfig

    shipped = {rec.name: rec.recipes_dir() for rec in plugins.records() if rec.recipes_dir() is not None}
    assert set(shipped) >= {"arma", "bqn", "convttlstm", "sc-fac", "tnn"}
    for family, folder in shipped.items():
        for path in sorted(folder.rglob("*.yaml")):
            recipe = load_recipe(str(path))
            variant = path.parent != folder
            if "*" in recipe.model:  # a pattern recipe covers registry models that have no recipe of their own
                names = zoo.list_models(recipe.model)
                assert names and all(load_recipe(n).model == n for n in names), path
            else:
                assert variant or recipe.model == path.stem, path
                assert zoo.model_info(recipe.model).family == family, path
            if variant:
                assert load_recipe(str(path.relative_to(folder).with_suffix(""))) == recipe
            FinetuneConfig(**recipe.finetune)  # every option is a real trainer option


@pytest.mark.parametrize("name,needs", [("resnet50-mtt-1pct", "IMAGENET_DIR"), ("convttlstm-kth", "KTH_DIR"), ("convlstm-kth", "KTH_DIR"),
                                        ("armaunet-isic", "ISIC2018_DIR"), ("sc-fac-wrn22", "CIFAR10_DIR")])
def test_out_of_reach_models_have_a_recipe_and_say_how_to_get_weights(name, needs, monkeypatch):
    from zoo.errors import WeightsError
    from zoo.recipes import build_data

    recipe = load_recipe(name)
    assert recipe.model == name and recipe.finetune["epochs"] >= 50 and recipe.produced_by is None
    assert zoo.model_info(name).weights is None
    with pytest.raises(WeightsError) as err:
        zoo.create(name, pretrained=True)
    message = str(err.value)
    assert f"has no published weights. Train them with `zoo train {name} --data DIR" in message
    assert f"zoo.recipes.load_recipe({name!r})" in message
    assert "zoo.create('local-dir:OUT/best', pretrained=True)" in message and "checkpoint_path=" in message
    monkeypatch.delenv(needs, raising=False)
    with pytest.raises(ZooError, match=needs):
        build_data(recipe, {})  # the missing data is reported before the model's input settings are read


def test_folder_recipe_says_which_variable_to_set(tmp_path, monkeypatch):
    from zoo.recipes import build_data

    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "missing"))
    recipe = load_recipe("sc-fac-wrn22")
    with pytest.raises(ZooError, match=r"missing.train does not exist \(set the environment variables"):
        build_data(recipe, zoo.create("sc-fac-wrn10-1-cifar10-small").pretrained_cfg)
