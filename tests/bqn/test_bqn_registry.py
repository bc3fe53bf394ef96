"""Registry fragment, family object, builders and timm-style classifier semantics."""

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.registry.schema import ModelEntry
from zoo_bqn.family import FAMILY
from zoo_bqn.network import BQNClassifier

REGISTRY = Path(FAMILY.registry)
ENTRIES = yaml.safe_load(REGISTRY.read_text())["models"]
NAMES = ["bqn-mlp-mnist", "bqn-cnn-mnist", "bqn-mlp-fmnist", "bqn-cnn-fmnist", "bqn-mlp-kmnist", "bqn-cnn-kmnist",
         "bqn-cnn-cifar10"]
TABLE_5_1 = {"bqn-mlp-mnist": (0.1300, 0.0249), "bqn-cnn-mnist": (0.0418, 0.0085),
             "bqn-mlp-kmnist": (0.4577, 0.1341), "bqn-cnn-kmnist": (0.2955, 0.0995),
             "bqn-mlp-fmnist": (0.4173, 0.0999), "bqn-cnn-fmnist": (0.2095, 0.0465),
             "bqn-cnn-cifar10": (0.5306, 0.1374)}


def test_every_entry_validates_and_cites_table_5_1():
    assert sorted(ENTRIES) == sorted(NAMES)
    for name, fields in ENTRIES.items():
        entry = ModelEntry(name=name, **fields)
        assert entry.family == "bqn" and entry.builder in FAMILY.builders
        assert entry.reference.table == "5.1"
        nll, err = TABLE_5_1[name]
        assert entry.reference.metrics == pytest.approx({"nll": nll, "error": err})


def test_family_object():
    assert FAMILY.name == "bqn" and callable(FAMILY.training_step) and callable(FAMILY.summary)
    assert set(FAMILY.builders) == {"bqn_mlp", "bqn_cnn"}


@pytest.mark.parametrize("name", NAMES)
def test_builders_build_registry_architectures(name):
    fields = ENTRIES[name]
    model = FAMILY.builder(fields["builder"])(num_classes=10, **fields["args"])
    assert isinstance(model, BQNClassifier)
    if name == "bqn-cnn-cifar10":  # residual blocks: categorical shortcuts and pooled sums of them
        assert model.head.in_features == 128 * 4 * 4
    x = torch.randn(2, *fields["input"]["shape"])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert (out.exp().sum(1) <= 1 + 1e-5).all()


def test_timm_classifier_semantics_and_modes():
    model = FAMILY.builder("bqn_mlp")(num_classes=10, img_size=8, hidden=[12])
    x = torch.randn(3, 1, 8, 8)
    assert model.get_classifier() is model.head
    model.reset_classifier(4)
    with torch.no_grad():
        for mode in ("ai", "mc", "map"):
            assert model(x, mode=mode).shape == (3, 4)
        model.set_mode("map")
        assert torch.equal(model(x), model(x, mode="map"))
        model.reset_classifier(0)
        assert model(x, mode="ai").shape == (3, 12) and model(x, mode="map").shape == (3, 12)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.set_mode("sampling")
    with pytest.raises(ValueError, match="samples"):
        model.set_mode("mc", samples=0)
    three = FAMILY.builder("bqn_cnn")(num_classes=10, in_chans=3, img_size=8, channels=[2], kernel_size=3)
    assert three.features[0].in_channels == 3


def test_training_step_and_summary():
    model = zoo.create("bqn-mlp-mnist")
    entry = zoo.model_info("bqn-mlp-mnist")
    batch = (torch.randn(4, 1, 28, 28), torch.tensor([1, 2, 3, 4]))
    loss = FAMILY.training_step(model, batch, entry)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    rows = FAMILY.summary(model, entry)
    assert rows["categorical_weights"] == 784 * 256 + 256 * 256 + 256 * 10
    assert rows["map_qnn_bytes"] == rows["categorical_weights"] // 8 + 4


@pytest.mark.parametrize("name", [n for n in NAMES if ENTRIES[n].get("weights")])
def test_bundled_weights(name, shared_data):
    weights = ENTRIES[name]["weights"]
    path = REGISTRY.parent / weights["bundled"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == weights["sha256"]
    assert path.stat().st_size < 8 * 2 ** 20
    model = zoo.create(name, pretrained=True)
    from zoo_bqn.data import mnist_split
    from zoo_bqn.metrics import all_metrics

    _, _, xte, yte = mnist_split(8000, seed=0, root=shared_data / "mnist")
    with torch.no_grad():
        logp = torch.cat([model(xte[i: i + 500]) for i in range(0, 1000, 500)])
    got = all_metrics(logp, yte[:1000])
    # the registry's metrics are over all 2,000 held-out images; half of them must be in the same range
    assert got["error"] < 2 * weights["metrics"]["error"] + 0.02
    assert got["nll"] < 2 * weights["metrics"]["nll"] + 0.05
