"""Plugin discovery: lazy imports, broken plugins, a throwaway family used through zoo.create."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import zoo
from zoo import plugins, registry
from zoo.errors import PluginError, UnknownModelError, ZooError
from tests.conftest import install_dist


def test_throwaway_family_is_discovered_and_builds(toy_family):
    assert "toy" in plugins.family_names()
    assert "toyfam.family" not in sys.modules  # discovery alone imports nothing
    assert zoo.list_models("toynet-*") == ["toynet-2", "toynet-10", "toynet-small"]
    assert "toyfam.family" not in sys.modules  # listing reads the fragment without importing the plugin
    model = zoo.create("toynet-small")
    assert "toyfam.family" in sys.modules
    assert model(torch.zeros(5, 2, 8, 8)).shape == (5, 3)
    cfg = model.pretrained_cfg
    assert cfg["family"] == "toy" and cfg["architecture"] == "toynet-small" and cfg["input_size"] == (2, 8, 8)
    assert cfg["mean"] == [0.5, 0.5] and cfg["classifier"] == "head" and cfg["weights_source"] is None


def test_create_overrides_and_classifier_api(toy_family):
    model = zoo.create("toynet-small", num_classes=7, width=6)
    assert model.get_classifier().out_features == 7 and model.stem.out_channels == 6
    model.reset_classifier(2)
    assert model(torch.zeros(1, 2, 8, 8)).shape == (1, 2)
    assert zoo.create("toynet-small", in_chans=5).stem.in_channels == 5


def test_name_grammar_creates_but_is_not_listed(toy_family):
    model = zoo.create("toynet-w9")
    assert model.stem.out_channels == 9 and model.pretrained_cfg["architecture"] == "toynet-w9"
    assert "toynet-w9" not in zoo.list_models()
    assert zoo.model_info("toynet-w9").source == "<name grammar of family 'toy'>"


def test_unknown_name_suggests_three_close_names(toy_family):
    with pytest.raises(UnknownModelError) as err:
        zoo.create("toynet-smal")
    assert err.value.suggestions[0] == "toynet-small" and len(err.value.suggestions) == 3
    assert "did you mean 'toynet-small'" in str(err.value)
    assert isinstance(err.value, KeyError)


@pytest.mark.parametrize("name", ["weights/model.safetensors", "model.pth", "./toynet-small"])
def test_bare_paths_are_rejected_with_a_hint(toy_family, name):
    with pytest.raises(ZooError, match="local-dir:"):
        zoo.create(name)


def test_missing_builder_names_entry_and_builders(toy_family):
    toy_family("""
    models:
      toynet-bad:
        family: toy
        builder: nope
        dataset: noise
        input: {shape: [2, 8, 8], num_classes: 3}
    """)
    with pytest.raises(PluginError, match=r"'toynet-bad' .*no builder 'nope' \(builders: toy_net\)"):
        zoo.create("toynet-bad")


def test_broken_plugin_warns_once_and_others_keep_working(toy_family):
    site = toy_family.site
    install_dist(site, "toy-broken", "toybroken", {"__init__.py": "", "family.py": "import does_not_exist\n"},
                 "[zoo.families]\ntoybroken = toybroken.family:FAMILY\n")
    registry.refresh()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = {r["name"]: r for r in zoo.list_families()}
        zoo.list_families()
    messages = [str(w.message) for w in caught if "toybroken" in str(w.message)]
    assert len(messages) == 1 and "No module named 'does_not_exist'" in messages[0]
    assert rows["toybroken"]["status"] == "error" and "does_not_exist" in rows["toybroken"]["error"]
    assert rows["toy"]["status"] == "loaded" and rows["toy"]["version"] == "0.1.0"
    assert zoo.create("toynet-small") is not None
    with pytest.raises(PluginError, match="toybroken.*failed to load"):
        plugins.get_family("toybroken")


def test_entry_point_that_is_not_a_family_is_reported(toy_family):
    install_dist(toy_family.site, "toy-wrong", "toywrong", {"__init__.py": "", "family.py": "FAMILY = 3\n"},
                 "[zoo.families]\ntoywrong = toywrong.family:FAMILY\n")
    registry.refresh()
    with pytest.warns(RuntimeWarning, match="expected zoo.family.Family"):
        with pytest.raises(PluginError):
            plugins.get_family("toywrong")


def test_import_zoo_is_cheap():
    code = ("import sys, zoo; zoo.__version__; "
            "bad = [m for m in ('torch', 'timm', 'zoo_tnn', 'zoo_bqn', 'zoo_arma', 'zoo_scfac', 'zoo_convttlstm') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
