"""Findings of the adversarial battery (scripts/bench_trust.py, benchmarks/trust.md), each a clear error now:
weights whose dtype or values `load_state_dict` would take silently, a config.json that says one key twice or a
negative class count, sizes that exhaust memory while building, non-string names, a truthy string for
`pretrained`, feature indices out of range, a revision that names nothing, a decompression bomb among the
training images, and training data with a single class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import zoo
from zoo.errors import DataError, WeightsError, ZooError
from zoo.training.data import ImageClassificationData


@pytest.fixture(scope="module")
def lenet_state() -> dict:
    return {k: v.clone() for k, v in zoo.create("lenet5", pretrained=True).state_dict().items()}


def _file(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    return path


# -- weights --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_or_boolean_weights_are_refused_not_cast(tmp_path, lenet_state, dtype):
    path = _file(tmp_path, {k: (v > 0 if dtype is torch.bool else v.to(dtype)) for k, v in lenet_state.items()})
    with pytest.raises(WeightsError) as error:
        zoo.create("lenet5", checkpoint_path=path)
    message = str(error.value)
    assert f"has dtype {dtype}" in message and "the model's is torch.float32" in message
    assert "expected floating-point weights" in message


def test_half_and_double_weights_still_load_as_float32(tmp_path, lenet_state):
    for dtype in (torch.float16, torch.float64):
        state = {k: v.to(dtype) for k, v in lenet_state.items()}
        model = zoo.create("lenet5", checkpoint_path=_file(tmp_path, state))
        for key, value in model.state_dict().items():
            assert value.dtype == torch.float32 and torch.equal(value, state[key].float())


@pytest.mark.parametrize("value, count", [(float("nan"), 1), (float("inf"), 3), (float("-inf"), 150)])
def test_non_finite_parameters_are_refused(tmp_path, lenet_state, value, count):
    weight = lenet_state["conv1.weight"].clone()
    weight.view(-1)[:count] = value
    path = _file(tmp_path, {**lenet_state, "conv1.weight": weight})
    with pytest.raises(WeightsError) as error:
        zoo.create("lenet5", checkpoint_path=path)
    assert f"conv1.weight holds {count} NaN or infinite value(s) of {weight.numel()}" in str(error.value)


# -- config.json ----------------------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path) -> Path:
    folder = tmp_path / "saved"
    zoo.save_pretrained(zoo.create("lenet5"), folder)
    return folder


def test_a_key_given_twice_in_config_json_is_refused(saved):
    text = (saved / "config.json").read_text()
    (saved / "config.json").write_text(text.rstrip().rstrip("}") + ', "name": "other"}\n')
    with pytest.raises(ZooError) as error:
        zoo.create(f"local-dir:{saved}")
    assert "key 'name' appears twice in one object" in str(error.value) and "config.json" in str(error.value)


def test_a_negative_class_count_in_config_json_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["input"]["num_classes"] = config["num_classes"] = config["pretrained_cfg"]["num_classes"] = -4
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError) as error:
        zoo.create(f"local-dir:{saved}")
    assert "input.num_classes: expected a number of classes >= 0, got -4" in str(error.value)


# -- create() -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, size", [(dict(num_classes=10 ** 12), "num_classes=1000000000000"),
                                          (dict(in_chans=10 ** 12), "in_chans=1000000000000")])
def test_a_size_that_exhausts_memory_is_a_zoo_error_naming_it(kwargs, size):
    with pytest.raises(ZooError) as error:
        zoo.create("lenet5", **kwargs)
    assert "building 'lenet5' ran out of memory" in str(error.value) and size in str(error.value)


@pytest.mark.parametrize("name", [None, 5, b"lenet5", ["lenet5"]])
def test_a_name_that_is_not_a_string_is_refused(name):
    for call in (zoo.create, zoo.model_info):
        with pytest.raises(ZooError) as error:
            call(name)
        assert "a model name must be a str" in str(error.value) and type(name).__name__ in str(error.value)


@pytest.mark.parametrize("kwargs", [dict(filter=5), dict(filter=["lenet*", None]), dict(exclude=3)])
def test_list_models_refuses_patterns_that_are_not_strings(kwargs):
    with pytest.raises(ZooError, match="must be an fnmatch pattern"):
        zoo.list_models(**kwargs)
    assert zoo.list_models("lenet5", exclude=None) == ["lenet5"]


def test_pretrained_must_be_a_boolean(lenet_state):
    with pytest.raises(ZooError, match=r"pretrained must be True or False, got 'no' \(str\)"):
        zoo.create("lenet5", pretrained="no")
    model = zoo.create("lenet5", pretrained=np.bool_(True))  # NumPy's booleans are booleans
    assert all(torch.equal(v, lenet_state[k]) for k, v in model.state_dict().items())


def test_checkpoint_path_must_be_a_path():
    with pytest.raises(ZooError, match=r"checkpoint_path must be the path of a .safetensors file .*got 123 \(int\)"):
        zoo.create("lenet5", checkpoint_path=123)


@pytest.mark.parametrize("indices, bad", [([9], "[9]"), ([0, -4], "[-4]"), ([1.0], "[1.0]"), ([], "none")])
def test_out_indices_outside_the_feature_maps_are_refused(indices, bad):
    with pytest.raises(ZooError) as error:
        zoo.create("lenet5", features_only=True, out_indices=indices)
    assert "expected feature-map indices in [-3, 2] (3 maps in feature_info)" in str(error.value)
    assert str(error.value).endswith(f"got {bad}")
    features = zoo.create("lenet5", features_only=True, out_indices=[-1])(torch.zeros(1, 1, 28, 28))
    assert [f.shape for f in features] == [(1, 16, 5, 5)]


@pytest.mark.parametrize("revision", ["../../x", "main/", "a b", "a:b", "x.lock"])
def test_a_hub_revision_that_names_nothing_is_refused_before_the_hub_is_asked(monkeypatch, revision):
    import huggingface_hub

    def must_not_download(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", must_not_download)
    with pytest.raises(ZooError) as error:
        zoo.create(f"hf-hub:org/model@{revision}")
    assert f"{revision!r} is not a revision" in str(error.value)


# -- training data --------------------------------------------------------------------------------------------------

def test_a_decompression_bomb_is_skipped_as_unreadable(tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name / "small.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)  # 8x8 is fine, 40x40 = 1600 > 2 x 700 is a bomb
    with pytest.warns(RuntimeWarning, match=r"skipping unreadable image .*bomb.png: Image size \(1600 pixels\)"):
        data = ImageClassificationData(tmp_path, transform=lambda x: x, channels=1)
    assert [p.name for p in data.skipped] == ["bomb.png"] and len(data) == 2


def test_training_data_with_one_class_is_refused_before_training(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((28, 28), 50 * i, np.uint8)).save(tmp_path / "data" / "cat" / f"{i}.png")
    for num_classes in (None, 2):
        with pytest.raises(ZooError) as error:
            zoo.finetune("lenet5", tmp_path / "data", num_classes=num_classes, epochs=1, progress=False,
                         output_dir=str(tmp_path / "run"))
        assert "has 1 class (cat): a classifier learns nothing from one class" in str(error.value)
    assert not (tmp_path / "run").exists()
    (tmp_path / "ids.csv").write_text("".join(f"data/cat/{i}.png,0\n" for i in range(3)))
    with pytest.raises(ZooError, match=r"has 1 class \(class ids 0..0\).*--num-classes N >= 2"):
        zoo.finetune("lenet5", tmp_path / "ids.csv", epochs=1, progress=False)
    result = zoo.finetune("lenet5", tmp_path / "ids.csv", num_classes=2, epochs=1, progress=False, batch_size=4,
                          device="cpu")  # class ids: a head for ids the data does not show is allowed
    assert len(result.history) == 1


def test_empty_npz_arrays_are_a_data_error(tmp_path):
    from zoo.training.tensor_data import load_npz_folder

    np.savez(tmp_path / "part.npz", images=np.zeros((0, 1, 28, 28), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(DataError, match=r"the .npz files hold no images \(every 'images' array is empty\)"):
        load_npz_folder(tmp_path)


# -- save and push --------------------------------------------------------------------------------------------------

def test_save_pretrained_refuses_a_file_in_the_way_and_keeps_it(tmp_path):
    model = zoo.create("lenet5")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    for target in (precious, precious / "out"):
        with pytest.raises(ZooError) as error:
            zoo.save_pretrained(model, target)
        assert f"cannot write into {target}: {precious} is a file, not a folder" in str(error.value)
    assert precious.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_save_pretrained_write_failures_are_zoo_errors(tmp_path):
    with pytest.raises(ZooError, match=r"save_pretrained cannot write into /proc/zoo-battery: No such file"):
        zoo.save_pretrained(zoo.create("lenet5"), "/proc/zoo-battery")
    with pytest.raises(ZooError, match=r"save_pretrained needs a directory \(str or path\), got None \(NoneType\)"):
        zoo.save_pretrained(zoo.create("lenet5"), None)


def test_save_pretrained_refuses_a_metric_that_is_not_a_number(tmp_path):
    with pytest.raises(ZooError, match=r"metrics\['top1'\] must be a number, got 'high' \(str\)"):
        zoo.save_pretrained(zoo.create("lenet5"), tmp_path / "out", metrics={"top1": "high"})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("repo_id", [None, 5])
def test_a_repository_id_that_is_not_a_string_is_refused_before_the_hub(tmp_path, repo_id):
    from zoo.hub.pretrained import push_folder_to_hub

    folder = zoo.save_pretrained(zoo.create("lenet5"), tmp_path / "out")
    with pytest.raises(ZooError) as error:
        push_folder_to_hub(folder, repo_id)
    assert f"{repo_id!r} is not a Hugging Face repository id (expected a str ORG/NAME" in str(error.value)


def test_a_builder_refusing_an_argument_is_a_zoo_error_naming_the_model() -> None:
    """A family builder's own ValueError reaches the user as a BuildError (still a ValueError) that names the model
    and builder, with the builder's message, chained to the original."""
    with pytest.raises(zoo.BuildError, match=r"'lenet5-cp-10pct' \(family 'tnn', builder 'tnn'\) cannot be built "
                                             r"with these arguments: rate must be in \(0, 1\]") as info:
        zoo.create("lenet5-cp-10pct", rate=5.0)
    assert isinstance(info.value, ValueError) and isinstance(info.value.__cause__, ValueError)


def test_an_argument_the_builder_fixes_is_refused_by_name() -> None:
    """resnet32's builder sets the depth from the name: depth=7 is a clear error, not 'got multiple values'."""
    with pytest.raises(zoo.ZooError, match=r"'resnet32' .* fixes depth itself, so depth=7 cannot be given"):
        zoo.create("resnet32", depth=7)
