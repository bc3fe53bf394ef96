"""config.json of a local-dir: / hf-hub: folder is untrusted: validated against an allow-list, parsed strictly,
and its weights are checked against the sha256 it records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from zoo.errors import WeightsError, ZooError


@pytest.fixture
def folder(toy_family, tmp_path) -> Path:
    """A folder written by save_pretrained for the toy family."""
    return zoo.save_pretrained(zoo.create("toynet-small"), tmp_path / "model")


def _edit(folder: Path, **changes) -> Path:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return path


def _refused(name: str, *needles: str) -> str:
    with pytest.raises(ZooError) as info:
        zoo.create(name, pretrained=True)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("key, value", [
    ("pretrained_file", "/etc/passwd"),
    ("checkpoint_path", "/tmp/evil.pth"),
    ("pretrained_cfg_overlay", {"file": "/etc/passwd"}),
    ("pretrained", True),
])
def test_build_kwargs_that_make_timm_read_files_are_refused(folder, key, value):
    path = _edit(folder, build_kwargs={key: value})
    _refused(f"local-dir:{folder}", str(path), f"build_kwargs.{key} is not allowed")


def test_timm_never_sees_a_forbidden_nested_option(toy_family, tmp_path, monkeypatch):
    """The tnn family hands backbone_args to timm.create_model: a file option nested there is refused first."""
    import timm

    reached = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: reached.append(k) or torch.nn.Linear(1, 1))
    folder = tmp_path / "tnn"
    folder.mkdir()
    config = {"name": "resnet18-mtt-10pct", "family": "tnn", "builder": "tnn", "dataset": "imagenet-1k",
              "args": {"backbone": "resnet18", "decomposition": "mtt", "rate": 0.1,
                       "backbone_args": {"pretrained": True, "pretrained_cfg_overlay": {"file": "/etc/passwd"}}},
              "input": {"shape": [3, 224, 224], "num_classes": 1000}}
    (folder / "config.json").write_text(json.dumps(config))
    _refused(f"local-dir:{folder}", "args.backbone_args.pretrained is not allowed")
    assert reached == []


def test_unknown_build_argument_and_path_like_values_are_refused(folder):
    _edit(folder, build_kwargs={"evil_option": 1})
    _refused(f"local-dir:{folder}", "build_kwargs.evil_option is not a known build argument", "width")
    _edit(folder, build_kwargs={}, args={"width": "hf-hub:attacker/repo"})
    _refused(f"local-dir:{folder}", "args.width", "may not be paths, URLs or hub names")
    _edit(folder, args={"width": 4}, weights={"sha256": "0" * 64})
    _refused(f"local-dir:{folder}", "weights", "Extra inputs are not permitted")


@pytest.mark.parametrize("content, expected", [
    (b"[1, 2, 3]", "holds a JSON list; expected a JSON object"),
    ('{"name": "caf\xe9"}'.encode("latin-1"), "is not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "nested too deeply"),
    (b'{"metrics": {"top1": NaN}}', "NaN is not a valid JSON number"),
    (b'{"metrics": {"top1": 1e999}}', "overflows to inf"),
    (b'{"name": ', "is not valid JSON"),
    (b" " * (2 << 20), "larger than the"),
])
def test_malformed_config_json_is_a_clear_error(folder, content, expected):
    (folder / "config.json").write_bytes(content)
    _refused(f"local-dir:{folder}", str(folder / "config.json"), expected)


def test_folder_weights_carry_their_sha256_and_a_mismatch_is_refused(folder):
    config = json.loads((folder / "config.json").read_text())
    from zoo.hub.files import sha256_of

    assert config["weights_sha256"] == sha256_of(folder / "model.safetensors")
    state = load_file(str(folder / "model.safetensors"))
    state["stem.bias"] = state["stem.bias"] + 1  # a valid safetensors file, but not the saved one
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError) as info:
        zoo.create(f"local-dir:{folder}", pretrained=True)
    assert "config.json expects" in str(info.value) and config["weights_sha256"] in str(info.value)
    zoo.create(f"local-dir:{folder}")  # the architecture alone reads no weights


def test_folder_saved_without_sha256_loads_with_a_warning(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(RuntimeWarning, match="records no weights_sha256"):
        model = zoo.create(f"local-dir:{folder}", pretrained=True)
    assert model.stem.weight.shape[0] == 4


def test_non_finite_metrics_are_left_out_so_the_folder_loads_back(toy_family, tmp_path):
    with pytest.warns(RuntimeWarning, match=r"metrics \['nll'\] are not finite"):
        out = zoo.save_pretrained(zoo.create("toynet-small"), tmp_path / "m", metrics={"nll": float("nan"), "top1": 1})
    assert zoo.create(f"local-dir:{out}", pretrained=True).pretrained_cfg["architecture"] == "toynet-small"


def test_save_pretrained_refuses_a_config_it_could_not_load_back(toy_family, tmp_path):
    model = zoo.create("toynet-small")
    model.pretrained_cfg["build_kwargs"] = {"evil_option": 1}
    with pytest.raises(ZooError, match=r"(?s)could not be loaded back.*build_kwargs\.evil_option.*build_args"):
        zoo.save_pretrained(model, tmp_path / "m")
    model.pretrained_cfg["build_kwargs"] = {"width": object()}
    with pytest.raises(ZooError, match="is not JSON data"):
        zoo.save_pretrained(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_real_nested_build_arguments_round_trip(tmp_path):
    from zoo.hub.config import allowed_build_args

    assert {"backbone_args", "drop_path_rate", "rate"} <= allowed_build_args("tnn", "tnn")
    model = zoo.create("convttlstm-mnist-small")  # args with a nested cell_kwargs mapping
    out = zoo.save_pretrained(model, tmp_path / "video")
    again = zoo.create(f"local-dir:{out}", pretrained=True)
    assert again.pretrained_cfg["args"]["cell_kwargs"] == model.pretrained_cfg["args"]["cell_kwargs"]
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
