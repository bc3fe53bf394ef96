"""``zoo.ModelConfig``: one frozen object for what a built model is, read and written through ``pretrained_cfg``."""

from __future__ import annotations

import dataclasses

import pytest

import zoo
from zoo.errors import ZooError
from zoo.model_config import ModelConfig


@pytest.fixture(scope="module")
def lenet():
    return zoo.create("lenet5")


@pytest.fixture(scope="module")
def timm_backed():
    return zoo.create("resnet18-mtt-10pct")


def test_pretrained_cfg_is_the_config_dict(lenet, timm_backed) -> None:
    """The attached dict is ``to_dict()`` of the config read back from it, and timm's alias is the same dict."""
    for model in (lenet, timm_backed):
        config = ModelConfig.of(model)
        assert config.to_dict() == model.pretrained_cfg
        assert ModelConfig.from_dict(config.to_dict()) == config
        assert model.default_cfg is model.pretrained_cfg


def test_config_is_frozen(lenet) -> None:
    config = ModelConfig.of(lenet)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.weights_source = "elsewhere"
    with pytest.raises(TypeError):
        config.build_kwargs["in_chans"] = 3
    with pytest.raises(TypeError):
        config.timm["crop_pct"] = 0.5


def test_entry_and_derived_fields(timm_backed) -> None:
    """timm's keys come from the entry; the dense backbone's weight location and notes are never carried."""
    config = ModelConfig.of(timm_backed)
    cfg = timm_backed.pretrained_cfg
    assert config.entry.name == cfg["architecture"] == "resnet18-mtt-10pct"
    assert tuple(config.entry.input.shape) == cfg["input_size"]
    assert cfg["num_classes"] == config.entry.input.num_classes == timm_backed.num_classes
    assert not {"hf_hub_id", "url", "file", "license", "tag"} & {k for k, v in cfg.items() if v}
    assert cfg["crop_pct"] == config.timm["crop_pct"]  # the backbone's preprocessing is kept
    assert cfg["weights_source"] is None and config.weights_source is None


def test_new_head_and_input_channels() -> None:
    """num_classes / in_chans given to create are the config's: class names of the old head are dropped, per-channel
    statistics no longer apply, and in_chans becomes a build argument."""
    model = zoo.create("resnet32-mtt-10pct", num_classes=7, in_chans=1)
    config = ModelConfig.of(model)
    assert config.entry.input.num_classes == 7 == model.pretrained_cfg["num_classes"]
    assert config.entry.input.shape[0] == 1 and config.entry.input.mean is None
    assert config.build_kwargs["in_chans"] == 1
    same = ModelConfig.of(zoo.create("resnet32-mtt-10pct", in_chans=3))
    assert same.entry.input.mean is not None  # the same channel count keeps its statistics


def test_with_num_classes_drops_what_described_the_old_head(lenet) -> None:
    config = dataclasses.replace(ModelConfig.of(lenet), label_names=tuple("abcdefghij"),
                                 training={"epochs": 1}, timm={"label_descriptions": {"a": "A"}})
    assert config.with_num_classes(10) is config
    changed = config.with_num_classes(3)
    assert changed.entry.input.num_classes == 3
    assert changed.label_names is None and changed.training is None and "label_descriptions" not in changed.timm
    assert config.entry.input.num_classes == 10  # the original is unchanged


def test_label_names_must_fit_the_head(lenet) -> None:
    with pytest.raises(ZooError, match="3 label_names for a head of 10 classes"):
        dataclasses.replace(ModelConfig.of(lenet), label_names=("a", "b", "c"))
    cfg = {**lenet.pretrained_cfg, "label_names": ["a", "b"]}  # names of another head (edited by hand)
    assert ModelConfig.from_dict(cfg).label_names is None


def test_not_a_zoo_config_is_refused(lenet) -> None:
    with pytest.raises(ZooError, match="save_pretrained needs a model made by zoo.create"):
        ModelConfig.from_dict({"architecture": "resnet18"}, what="save_pretrained")
    with pytest.raises(ZooError, match="num_classes is 5 but input.num_classes is 10"):
        ModelConfig.from_dict({**lenet.pretrained_cfg, "num_classes": 5})


def test_saved_folder_round_trip(lenet, tmp_path) -> None:
    """A folder's class names and preprocessing come back as the same config, weights source aside."""
    config = dataclasses.replace(ModelConfig.of(lenet), label_names=tuple(f"digit {i}" for i in range(10)),
                                 timm={**ModelConfig.of(lenet).timm, "crop_pct": 1.0, "interpolation": "bilinear"})
    model = zoo.create("lenet5")
    config.attach(model)
    zoo.save_pretrained(model, tmp_path / "saved")
    loaded = ModelConfig.of(zoo.create(f"local-dir:{tmp_path / 'saved'}", pretrained=True))
    assert loaded.label_names == config.label_names
    assert loaded.timm["crop_pct"] == 1.0 and loaded.timm["interpolation"] == "bilinear"
    same = {"source", "weights"}  # a folder records its own weights (config.json sha256), not the registry's entry
    assert loaded.entry.model_dump(exclude=same) == config.entry.model_dump(exclude=same)
    assert loaded.weights_source == f"local-dir:{tmp_path / 'saved'}"
