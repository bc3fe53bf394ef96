"""The tnn family through the zoo core: registry, name grammar, create/list, summary, save/load, plugins."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.registry.schema import ModelEntry
from zoo_tnn import family as fam
from zoo_tnn.decompositions import get_decomposition, list_decompositions, refresh
from zoo_tnn.layers import TensorialConv2d, _Tensorial
from zoo_tnn.naming import NameGrammarError, resolve

REGISTRY = Path(fam.__file__).parent / "registry.yaml"
EXT = Path(__file__).parent / "ext_blockterm"


def _models() -> dict:
    return yaml.safe_load(REGISTRY.read_text())["models"]


def test_every_registry_entry_validates() -> None:
    models = _models()
    for name, fields in models.items():
        entry = ModelEntry(name=name, **fields)
        assert entry.family == "tnn"
        if entry.builder == "tnn":
            parsed = resolve(name)
            assert parsed is not None and parsed["args"] == fields["args"], name


def test_registry_rows_cover_the_dissertation_tables() -> None:
    models = _models()
    r50 = {n for n in models if n.startswith("resnet50-")}
    expected = {f"resnet50-{d}-{p}pct" for d in ("mcp", "mtt", "mtr") for p in ("0.5", "1", "2", "5", "10", "20", "50")}
    expected |= {f"resnet50-{d}-{p}pct" for d in ("cp", "tt", "tr") for p in ("1", "2", "5", "10", "20", "50")}
    assert r50 == expected
    r32 = {n for n in models if n.startswith("resnet32-")}
    assert r32 == {f"resnet32-{d}-{p}pct" for d in ("cp", "tk", "tt", "svd", "mcp", "mtk", "mtt")
                   for p in (2, 5, 10, 20, 40)} | {"resnet32-mtr-10pct"}  # mTR: issue 15's student, no table row
    assert {f"wrn28_10-mtt-{p}pct" for p in ("0.33", "0.5", "0.66", "1")} <= set(models)
    # spot checks against the tables
    assert models["resnet32-mcp-10pct"]["reference"]["metrics"]["top1_seq_kd"] == 91.28  # Table 2.3
    assert models["resnet32-cp-10pct"]["reference"]["metrics"]["top1_e2e_kd"] == 86.93  # Table 2.3
    assert models["resnet50-mtr-10pct"]["reference"]["metrics"]["top1_scratch"] == 75.01  # Table 2.8
    assert models["wrn28_10-mtt-0.33pct"]["args"]["rate"] == pytest.approx(0.0033)


def test_list_models_and_create_through_the_core() -> None:
    names = zoo.list_models("resnet50-*")
    assert len(names) == 39 and "resnet50-mcp-0.5pct" in names
    model = zoo.create("resnet32-mtt-5pct")
    assert any(isinstance(m, TensorialConv2d) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    rows = zoo.summarize(model, flops=False)
    assert rows["dense_backbone_parameters"] == 464154  # ResNet-32 (option A): 0.46 M
    assert rows["whole_model_ratio"] == pytest.approx(rows["parameters"] / 464154, abs=1e-6)
    assert rows["requested_rate"] == 0.05 and rows["requested_rate_applies_to"].startswith("tensorised layers")
    assert rows["layers"]["conv1"] == "dense:first" and rows["layers"]["fc"] == "dense:classifier"
    assert rows["layers"]["layer1.0.conv1"].startswith("tensorized rank=")
    model = zoo.create("resnet32-mcp-10pct", num_classes=7)
    assert model.get_classifier().out_features == 7
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_name_grammar() -> None:
    f = resolve("convnext_tiny-mtt-10pct")
    assert f is not None and f["args"] == {"backbone": "convnext_tiny", "decomposition": "mtt", "rate": 0.1}
    assert f["input"]["shape"] == [3, 224, 224] and f["dataset"] == "imagenet-1k"
    assert resolve("resnet50-mcp-0.5pct")["args"]["rate"] == 0.005  # type: ignore[index]
    assert resolve("lenet5-tk-12.5pct")["input"]["shape"] == [1, 28, 28]  # type: ignore[index]
    assert resolve("not_a_backbone-mcp-5pct") is None and resolve("not_a_timm_model") is None
    dense = resolve("resnet50")  # a plain timm name: timm's dense model (issue 20, item 3)
    assert dense is not None and dense["builder"] == "backbone" and dense["args"] == {"backbone": "resnet50"}
    with pytest.raises(NameGrammarError, match="unknown decomposition 'zz'.*mtt"):
        resolve("resnet50-zz-5pct")
    with pytest.raises(NameGrammarError, match=r"outside \(0, 100\]"):
        resolve("resnet50-mcp-0pct")
    with pytest.raises(NameGrammarError, match="unknown decomposition"):
        zoo.create("resnet18-nope-5pct")
    model = zoo.create("resnet18-mtr-1.5pct")
    assert model.tnn_config["rate"] == 0.015 and model.tnn_config["decomposition"] == "mtr"


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.create("lenet5-mcp-10pct").eval()
    x = torch.randn(4, 1, 28, 28)
    ref = model(x)
    zoo.save_pretrained(model, tmp_path / "m")
    again = zoo.create(f"local-dir:{tmp_path / 'm'}", pretrained=True).eval()
    assert any(isinstance(m, _Tensorial) for m in again.modules())
    torch.testing.assert_close(again(x), ref)
    other = zoo.create("lenet5-mcp-10pct", checkpoint_path=tmp_path / "m" / "model.safetensors").eval()
    torch.testing.assert_close(other(x), ref)


def test_third_party_decomposition_package(tmp_path: Path) -> None:
    target, source = tmp_path / "site", tmp_path / "ext"  # build from a copy: nothing is written into the repo
    shutil.copytree(EXT, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--target", str(target), str(source)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    refresh()
    try:
        assert "bt" in list_decompositions()
        assert type(get_decomposition("bt")).__module__ == "zoo_tnn_blockterm"
        model = zoo.create("resnet32-bt-10pct")
        layer = model.layer2[0].conv1
        assert isinstance(layer, TensorialConv2d) and layer.decomposition == "bt"
        assert layer.rate <= 0.1
        x = torch.randn(2, 16, 8, 8)
        torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(x, layer.weight, stride=2, padding=1),
                                   rtol=1e-4, atol=1e-5)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        # Layer-Decomp works for a plugin decomposition too (random start + ALS)
        conv = torch.nn.Conv2d(8, 8, 3, bias=False).double()
        lay = TensorialConv2d.from_dense(conv, "bt", rank=8, init="decomp", sweeps=30)
        assert lay.fit_error < 1e-6  # rank (8, 8) Tucker blocks can represent any 8x8x3x3 kernel
    finally:
        sys.path.remove(str(target))
        for mod in [m for m in sys.modules if m.startswith("zoo_tnn_blockterm")]:
            del sys.modules[mod]
        importlib.invalidate_caches()
        refresh()
    assert "bt" not in list_decompositions()


@pytest.mark.parametrize("name", ["lenet5", "lenet5-mcp-5pct", "lenet5-mcp-10pct"])
def test_bundled_mnist_weights_reproduce_their_recorded_accuracy(name: str) -> None:
    from zoo.datasets import mnist, split

    entry = zoo.model_info(name)
    assert entry.weights is not None and entry.weights.bundled == f"weights/{name}.safetensors"
    model = zoo.create(name, pretrained=True).eval()
    images, labels = mnist()
    _, held = split(len(images), 2000, 0)
    x = (images[held].float() / 255.0 - 0.1307) / 0.3081
    with torch.no_grad():
        top1 = 100.0 * float((model(x).argmax(-1) == labels[held]).float().mean())
    assert top1 == pytest.approx(entry.weights.metrics["top1"], abs=0.01)
    if name != "lenet5":
        assert zoo.summarize(model, flops=False)["whole_model_ratio"] < 0.12
