"""The family through the core: zoo.create, training_step, summary, (bundled weights when present)."""

from __future__ import annotations

import hashlib
from importlib.resources import files

import pytest
import torch
import yaml

import zoo
from zoo.registry.schema import ModelEntry
from zoo_scfac.family import FAMILY, training_step
from zoo_scfac.robust import multiclass_hinge_loss

SMALL = dict(widen_factor=1, base_channels=(4, 8, 8), kernel_size=3)


def test_create_through_the_core():
    model = zoo.create("sc-fac-wrn10", **SMALL)
    assert model.pretrained_cfg["architecture"] == "sc-fac-wrn10"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert zoo.create("sc-fac-wrn10", num_classes=3, **SMALL)(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    names = zoo.list_models("sc-fac*")
    assert {"sc-fac-wrn22", "sc-fac-wrn10", "sc-fac-wrn34", "sc-fac-resnet9", "sc-fac-kwlarge"} <= set(names)


def test_training_step_is_the_hinge_loss_and_trains():
    torch.manual_seed(0)
    model = zoo.create("sc-fac-wrn10", hinge_margin=0.2, **SMALL)
    entry = zoo.model_info("sc-fac-wrn10")
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = training_step(model, (x, y), entry)
    assert torch.allclose(loss, multiclass_hinge_loss(model(x), y, 0.2))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert FAMILY.after_step is None  # geotorch keeps the factors orthogonal without re-projection


def test_summary_rows():
    model = zoo.create("sc-fac-wrn10", **SMALL)
    rows = FAMILY.summary(model, zoo.model_info("sc-fac-wrn10"))
    assert rows["orthogonal_convs"] == 1 + 3 * 2 + 1  # stem, 3 blocks x 2 convs, one 4 -> 8 shortcut
    assert rows["orthogonal_linears"] == 1 and rows["lipschitz_bound"] == 1.0
    assert rows["kernel_sizes"] == [1, 3]


def _bundled(task: str):
    data = yaml.safe_load(files("zoo_scfac").joinpath("registry.yaml").read_text())
    return {k: v for k, v in data["models"].items() if v.get("weights") and v.get("task", "classification") == task}


def _checked_entry(name: str, task: str) -> ModelEntry:
    entry = ModelEntry(name=name, **_bundled(task)[name])
    path = files("zoo_scfac").joinpath(entry.weights.bundled)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.weights.sha256
    assert path.stat().st_size < 5e6
    return entry


@pytest.mark.parametrize("name", sorted(_bundled("classification")))
def test_bundled_classifiers_load_and_match_their_hash(name):
    entry = _checked_entry(name, "classification")
    model = zoo.create(name, pretrained=True).eval()
    fresh = zoo.create(name).eval()
    x = torch.rand(2, *entry.input.shape)
    assert not torch.allclose(model(x), fresh(x))
    assert {"clean_acc", "certified_acc", "pgd_acc"} <= set(entry.weights.metrics)


@pytest.mark.parametrize("name", sorted(_bundled("generative")))
def test_bundled_flows_load_and_match_their_hash(name):
    entry = _checked_entry(name, "generative")
    model = zoo.create(name, pretrained=True).eval()
    pixels = torch.randint(0, 256, (2, *entry.input.shape)).float()
    bpd = model.bits_per_dim(pixels, torch.Generator().manual_seed(0))
    fresh = zoo.create(name).eval().bits_per_dim(pixels, torch.Generator().manual_seed(0))
    assert torch.isfinite(bpd).all() and not torch.allclose(bpd, fresh)
    assert "bits_per_dim" in entry.weights.metrics
