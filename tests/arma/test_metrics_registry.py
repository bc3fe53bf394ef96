"""Segmentation metrics (6.5.3), the ISIC loader, the registry fragment and the family hooks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.registry.schema import ModelEntry
from zoo_arma.family import FAMILY, summary, training_step
from zoo_arma.metrics import confusion_counts, segmentation_metrics

REGISTRY = Path(__file__).resolve().parents[2] / "plugins" / "zoo-arma" / "src" / "zoo_arma" / "registry.yaml"
REQUIRED = ["armaunet-isic", "unet-isic", "nl-armaunet-isic", "nl-unet-isic", "armalstm-mnist", "convlstm3-mnist",
            "convlstm5-mnist", "dilated-armalstm-mnist"]


def test_metrics_closed_form_on_a_hand_example():
    # 2 images of 2x3: TP=3, TN=5, FP=2, FN=2
    target = torch.tensor([[[1, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 0, 1]]])
    pred = torch.tensor([[[0.9, 0.2, 0.7], [0.1, 0.0, 0.6]], [[0.8, 0.4, 0.3], [0.55, 0.1, 0.2]]])
    assert confusion_counts(pred, target) == {"TP": 3, "TN": 5, "FP": 2, "FN": 2}
    m = segmentation_metrics(pred, target)
    se, pc = 3 / 5, 3 / 5
    expected = {"ACC": 8 / 12, "SE": se, "SP": 5 / 7, "PC": pc, "F1": 2 * pc * se / (pc + se), "JS": 3 / 7}
    for k, v in expected.items():
        assert math.isclose(m[k], v, rel_tol=1e-12), k
    # F1 is the Dice coefficient 2TP / (2TP + FP + FN); JS = |GT & SR| / |GT | SR|
    assert math.isclose(m["F1"], 6 / 10)
    sr, gt = pred > 0.5, target.bool()
    assert math.isclose(m["JS"], (sr & gt).sum().item() / (sr | gt).sum().item())
    per = segmentation_metrics(pred, target, per_image=True)
    first, second = segmentation_metrics(pred[0], target[0]), segmentation_metrics(pred[1], target[1])
    assert math.isclose(per["SE"], (first["SE"] + second["SE"]) / 2)


def test_metrics_edge_cases_and_errors():
    empty = torch.zeros(1, 4, 4)
    m = segmentation_metrics(empty, empty)
    assert m["ACC"] == 1.0 and m["SP"] == 1.0 and math.isnan(m["SE"]) and math.isnan(m["JS"])
    perfect = segmentation_metrics(torch.ones(3, 3, dtype=torch.bool), torch.ones(3, 3))
    assert all(perfect[k] == 1.0 for k in ("ACC", "SE", "PC", "F1", "JS")) and math.isnan(perfect["SP"])
    with pytest.raises(ValueError, match="same shape"):
        segmentation_metrics(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        segmentation_metrics(torch.zeros(2, 2), torch.full((2, 2), 255, dtype=torch.uint8))


def test_registry_fragment_validates_and_covers_the_issue():
    models = yaml.safe_load(REGISTRY.read_text())["models"]
    for name in REQUIRED:
        assert name in models
    for name, fields in models.items():
        entry = ModelEntry(name=name, **fields)
        assert entry.family == "arma" and entry.builder in FAMILY.builders
        assert entry.reference is not None and entry.reference.table in {"6.2", "6.3"}
        if entry.weights is not None:
            path = REGISTRY.parent / entry.weights.bundled
            import hashlib

            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.weights.sha256
            assert path.stat().st_size < 5_000_000
            assert set(entry.weights.metrics) == {"ACC", "SE", "SP", "PC", "F1", "JS"}


@pytest.mark.parametrize("name", ["unet-isic-small", "armaunet-isic-small", "nl-armaunet-isic"])
def test_create_segmentation_models_through_the_core(name):
    if name.startswith("nl-"):
        with torch.device("meta"):
            model = zoo.create(name)
        assert sum(p.numel() for p in model.parameters()) == 37_182_785
        return
    model = zoo.create(name).eval()
    out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 1, 32, 32)
    entry = zoo.model_info(name)
    loss = training_step(model.train(), (torch.randn(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()), entry)
    assert loss.ndim == 0 and loss.item() > 0
    rows = summary(model, entry)
    assert rows["arma_layers"] == (22 if "arma" in name else 0)


def test_pretrained_small_unets_load_bundled_weights():
    for name in ("unet-isic-small", "armaunet-isic-small"):
        if zoo.model_info(name).weights is None:
            pytest.fail(f"{name} has no trained weights: run scripts/demo_arma_isic.py --write-weights")
        model = zoo.create(name, pretrained=True)
        assert model.pretrained_cfg["weights_source"] is not None


@pytest.mark.parametrize("name,expected", [("convlstm3-mnist", 887_489), ("armalstm-mnist", 893_633),
                                           ("dilated-armalstm-mnist", 893_633), ("convlstm5-mnist", 2_462_401)])
def test_create_video_models_through_the_core(name, expected):
    model = zoo.create(name)
    assert sum(p.numel() for p in model.parameters()) == expected
    entry = zoo.model_info(name)
    assert entry.reference.metrics["params_m"] == pytest.approx(int(expected / 1000) / 1000)  # printed, truncated
    if name == "armalstm-mnist":
        small = zoo.create(name, hidden=2, layers=2, skips=[[1, 2]])
        batch = (torch.rand(1, 3, 1, 8, 8), torch.rand(1, 2, 1, 8, 8))
        loss = training_step(small, batch, entry)
        loss.backward()
        assert loss.item() > 0 and small.cells[0].gates.ar_params.grad is not None


def test_isic_loader_and_split():
    from zoo_arma import isic

    try:
        folder = isic.isic_folder()
    except FileNotFoundError as exc:
        pytest.fail(f"shared ISIC sample missing: {exc}")
    x, y, ids = isic.load_isic()
    assert x.shape == (93, 3, 128, 128) and y.shape == (93, 1, 128, 128) and len(ids) == 93
    assert set(torch.unique(y).tolist()) == {0.0, 1.0} and -1.0 <= x.min() and x.max() <= 1.0
    tr, va, te = isic.split_indices(93)
    assert (len(tr), len(va), len(te)) == (65, 9, 19) and not set(tr) & set(te) and not set(va) & set(te)
    assert folder.name == "isic2018_sample"
