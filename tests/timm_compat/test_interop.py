"""timm interoperability both ways (issue 20, items 2 and 3).

``timm.create_model`` on zoo names and on folders written by ``zoo.save_pretrained`` (local and through a
simulated Hub), ``zoo.create`` on timm-format folders and on plain timm names, timm's keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import timm
import torch

import zoo
from zoo.errors import WeightsError, ZooError

_WEIGHT_LOCATIONS = {"url", "hf_hub_id", "hf_hub_filename", "file", "state_dict", "source"}


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: tuple[int, ...]) -> None:
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_timm_knows_zoo_names() -> None:
    """After ``import zoo``, the registry names are timm models (the README's example)."""
    assert timm.is_model("resnet50-mtt-1pct") and "resnet32-mtt-10pct" in timm.list_models("resnet32-*")
    model = timm.create_model("resnet50-mtt-1pct", num_classes=10)
    assert model.pretrained_cfg["architecture"] == "resnet50-mtt-1pct" and model.num_classes == 10
    assert model.default_cfg is model.pretrained_cfg


def test_timm_dotted_zoo_name() -> None:
    """timm reads text after '.' as a pretrained tag; the zoo dispatches it back to the full name."""
    model = timm.create_model("resnet50-mtt-0.5pct", num_classes=10)
    assert model.pretrained_cfg["architecture"] == "resnet50-mtt-0.5pct"
    with pytest.raises(ZooError, match="resnet50-mtt-0.5pct"):
        timm.create_model("resnet50-mtt-0.7pct")


def test_register_grammar_name() -> None:
    """Names of a family's grammar are registered on demand; timm's own names are never overridden."""
    assert not timm.is_model("resnet18-mtt-7pct")
    assert zoo.register_timm(["resnet18-mtt-7pct", "resnet18"]) == ["resnet18-mtt-7pct"]
    model = timm.create_model("resnet18-mtt-7pct", num_classes=3)
    assert model.pretrained_cfg["args"]["rate"] == 0.07
    assert type(timm.create_model("resnet18")).__module__.startswith("timm.")


def test_saved_config_has_timm_fields(tmp_path: Path) -> None:
    """config.json: timm's architecture / num_classes / num_features / global_pool / pretrained_cfg, no weight
    location (never the dense backbone's weights)."""
    model = zoo.create("resnet18-mtt-10pct", num_classes=4, drop_rate=0.1)
    zoo.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["name"] == "resnet18-mtt-10pct"  # a grammar name: timm builds it through the zoo's folder entrypoint
    assert config["architecture"] == config["pretrained_cfg"]["architecture"] == "spectral_zoo_folder"
    assert config["num_classes"] == 4 and config["num_features"] == 512 and config["global_pool"] == "avg"
    assert config["model_args"] == {"drop_rate": 0.1}
    cfg = config["pretrained_cfg"]
    assert cfg["num_classes"] == 4 and cfg["input_size"] == [3, 224, 224] and cfg["classifier"] == "fc"
    assert not _WEIGHT_LOCATIONS & set(cfg) and "tag" not in cfg


@pytest.mark.parametrize("name,size", [("resnet32-mtt-10pct", (3, 32, 32)), ("lenet5", (1, 28, 28))])
def test_timm_loads_zoo_folder(tmp_path: Path, name: str, size: tuple[int, ...]) -> None:
    """timm.create_model('local-dir:...') rebuilds a saved zoo model with its weights."""
    model = zoo.create(name, num_classes=5)
    zoo.save_pretrained(model, tmp_path)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert loaded.num_classes == 5 and loaded.pretrained_cfg["architecture"] == name
    _same_outputs(model, loaded, size)


def test_timm_loads_a_grammar_name_folder_without_registration(tmp_path: Path) -> None:
    """A folder of a name the tnn grammar makes on demand (not in timm's registry) records the zoo's generic
    folder entrypoint as its timm architecture, so timm loads it with no register_timm call; the zoo still reads
    the zoo name."""
    from zoo.timm_adapters import FOLDER_ARCHITECTURE

    name = "lenet5-mtt-7pct"
    assert not timm.is_model(name) and name not in zoo.list_models()
    model = zoo.create(name, num_classes=4)
    zoo.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == config["pretrained_cfg"]["architecture"] == FOLDER_ARCHITECTURE
    assert config["name"] == name
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert loaded.pretrained_cfg["architecture"] == name and loaded.num_classes == 4
    _same_outputs(model, loaded, (1, 28, 28))
    assert zoo.model_info(f"local-dir:{tmp_path}").name == name
    with pytest.raises(ZooError, match="builds a folder saved by zoo.save_pretrained"):
        timm.create_model(FOLDER_ARCHITECTURE)


def test_timm_loads_zoo_dense_folder_natively(tmp_path: Path) -> None:
    """A zoo-saved plain timm model is a timm folder: timm builds it with its own entrypoint."""
    model = zoo.create("resnet18", num_classes=3)
    zoo.save_pretrained(model, tmp_path)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert type(loaded).__module__.startswith("timm.")
    _same_outputs(model, loaded, (3, 32, 32))


def test_timm_loads_zoo_folder_from_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """timm.create_model('hf-hub:ORG/NAME') on a pushed zoo folder (the Hub simulated by a local folder)."""
    import huggingface_hub
    import timm.models._hub as timm_hub

    model = zoo.create("resnet32-mtt-10pct", num_classes=6)
    zoo.save_pretrained(model, tmp_path)

    def download(repo_id: str, filename: str, *args: Any, **kwargs: Any) -> str:
        assert repo_id == "org/resnet32-mtt-10pct"
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(timm_hub, "hf_hub_download", download)
    loaded = timm.create_model("hf-hub:org/resnet32-mtt-10pct", pretrained=True)
    assert loaded.num_classes == 6
    _same_outputs(model, loaded, (3, 32, 32))


def test_zoo_reads_timm_folder(tmp_path: Path) -> None:
    """zoo.create('local-dir:...') on a folder timm wrote (save_for_hf): architecture, classes, weights."""
    from timm.models import save_for_hf

    reference = timm.create_model("resnet18", num_classes=5)
    save_for_hf(reference, tmp_path, safe_serialization=True)
    with pytest.warns(RuntimeWarning, match="no sha256"):
        model = zoo.create(f"local-dir:{tmp_path}", pretrained=True)
    assert model.num_classes == 5 and model.pretrained_cfg["input"]["mean"] == [0.485, 0.456, 0.406]
    _same_outputs(reference, model, (3, 32, 32))


def test_zoo_refuses_pickled_timm_folder(tmp_path: Path) -> None:
    from timm.models import save_for_hf

    save_for_hf(timm.create_model("resnet18", num_classes=5), tmp_path, safe_serialization=False)
    with pytest.raises(ZooError, match="pytorch_model.bin: pickled weights are never loaded"):
        zoo.create(f"local-dir:{tmp_path}", pretrained=True)


def _edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("changes,message", [
    ({"pretrained_cfg": {"url": "https://example.com/resnet.pth"}}, "pretrained_cfg: .*url may not be set"),
    ({"pretrained_cfg": {"hf_hub_id": "timm/resnet32"}}, "hf_hub_id may not be set"),
    ({"pretrained_cfg": {"unknown_key": 1}}, "pretrained_cfg.unknown_key"),
    ({"architecture": "resnet50"}, "architecture 'resnet50' differs from name"),
    ({"num_classes": 7}, "num_classes 7 differs"),
    ({"model_args": {"checkpoint_path": "x"}}, "model_args.checkpoint_path is not allowed"),
])
def test_saved_config_timm_fields_checked(tmp_path: Path, changes: dict, message: str) -> None:
    """The strict schema covers timm's fields too."""
    zoo.save_pretrained(zoo.create("resnet32-mtt-10pct"), tmp_path)
    _edit_config(tmp_path, **changes)
    with pytest.raises(ZooError, match=message):
        zoo.create(f"local-dir:{tmp_path}")


def test_plain_timm_name() -> None:
    """zoo.create('resnet18'): timm's dense model, not pretrained; its cfg keeps timm's own hub id."""
    model = zoo.create("resnet18", num_classes=10)
    assert type(model).__module__.startswith("timm.") and model.num_classes == 10
    assert model.pretrained_cfg["hf_hub_id"] == "timm/resnet18.a1_in1k" and model.pretrained_cfg["weights_source"] is None
    assert model.default_cfg is model.pretrained_cfg


def test_plain_timm_name_pretrained_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="timm's pretrained weights of 'resnet18'.*HF_HUB_OFFLINE is set"):
        zoo.create("resnet18", pretrained=True)


def test_compressed_cfg_has_no_dense_weights() -> None:
    """A tensorial model's pretrained_cfg never points at the dense backbone's weights."""
    cfg = zoo.create("resnet18-mtt-10pct").pretrained_cfg
    assert not _WEIGHT_LOCATIONS & {k for k, v in cfg.items() if v} and "tag" not in cfg
    assert cfg["crop_pct"] == 0.95  # timm's data settings stay


def test_timm_kwargs_pass_through() -> None:
    model = zoo.create("resnet18-mtt-10pct", drop_rate=0.25, drop_path_rate=0.1, global_pool="max")
    assert model.drop_rate == 0.25 and model.global_pool.pool_type == "max"
    assert any(type(m).__name__ == "DropPath" for m in model.modules())
    features = zoo.create("resnet18-mtt-10pct", features_only=True, out_indices=(2, 3))
    maps = features(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [128, 256] == features.feature_info.channels()


def test_timm_kwargs_clear_errors() -> None:
    with pytest.raises(ZooError, match=r"'resnet32' .* does not accept drop_path_rate=0.1"):
        zoo.create("resnet32", drop_path_rate=0.1)
    with pytest.raises(ZooError, match="BQNClassifier declares no feature_info"):  # an MLP has no feature maps
        zoo.create("bqn-mlp-mnist", features_only=True)
    with pytest.raises(ZooError, match="out_indices=.* applies with features_only=True"):
        zoo.create("resnet18-mtt-10pct", out_indices=(1,))


@pytest.mark.parametrize("code,expected", [
    ("import zoo, timm", "True"),                       # the import hook registers when timm is imported
    ("import timm, zoo", "True"),                       # timm first: registered at import zoo
    ("import os; os.environ['ZOO_NO_TIMM_HOOK'] = '1'; import zoo, timm", "False"),
])
def test_import_hook(code: str, expected: str) -> None:
    """A fresh interpreter: zoo names reach timm's registry in either import order, unless disabled."""
    import subprocess
    import sys

    script = f"{code}; print(timm.is_model('resnet50-mtt-1pct'))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected
