"""zoo.publish, the one writer of registry fragments: entries and weights blocks land validated, atomically, with
the file's comment header kept; the weights load back through zoo.create(pretrained=True)."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml

import zoo
from zoo.errors import RegistryError
from zoo.publish import add_entries, record_state_dict

FIELDS = {"family": "toy", "builder": "toy_net", "args": {"width": 5}, "dataset": "noise",
          "input": {"shape": [2, 8, 8], "num_classes": 3, "classifier": "head", "first_conv": "stem"}}


def test_add_entry_then_record_state_dict_round_trips(toy_family):
    registry = toy_family("# toy fragment -- kept on rewrite\n" + (toy_family.site / "toyfam" / "registry.yaml")
                          .read_text())
    add_entries(registry, {"toynet-5": FIELDS})
    assert zoo.model_info("toynet-5").weights is None
    trained = zoo.create("toynet-5")
    record_state_dict(zoo.model_info("toynet-5"), trained.state_dict(), {"top1": 61.23456789}, "noise, 3 epochs",
                      metadata={"script": "test"})
    text = registry.read_text()
    assert text.startswith("# toy fragment -- kept on rewrite\n")
    block = yaml.safe_load(text)["models"]["toynet-5"]["weights"]
    bundled = registry.parent / block["bundled"]
    assert block["sha256"] == hashlib.sha256(bundled.read_bytes()).hexdigest()
    assert block["metrics"] == {"top1": 61.234568} and block["data"] == "noise, 3 epochs"
    loaded = zoo.create("toynet-5", pretrained=True)
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert set(yaml.safe_load(text)["models"]) == {"toynet-small", "toynet-10", "toynet-2", "toynet-5"}


def test_an_invalid_entry_leaves_the_fragment_untouched(toy_family):
    registry = toy_family.site / "toyfam" / "registry.yaml"
    before = registry.read_text()
    with pytest.raises(RegistryError, match="toynet-bad"):
        add_entries(registry, {"toynet-bad": {**FIELDS, "builder": 3}})
    assert registry.read_text() == before
    assert sorted(p.name for p in registry.parent.iterdir() if p.name.startswith(".")) == []  # no temp file left
    with pytest.raises(RegistryError, match="not defined"):
        record_state_dict(zoo.model_info("toynet-small").model_copy(update={"name": "toynet-gone"}), {}, {}, "x",
                          bundle=False)
    assert registry.read_text() == before


def test_only_zoo_publish_writes_registry_yaml():
    """Scripts and plugin tools add entries and weights through zoo.publish, never by dumping YAML themselves."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [*root.glob("scripts/*.py"), *root.glob("plugins/*/tools/*.py"), *root.glob("plugins/*/src/**/*.py"),
               *(p for p in root.glob("zoo/**/*.py") if p.name != "publish.py")]
    writers = [str(p.relative_to(root)) for p in sources
               if re.search(r"yaml\.(safe_)?dump\(\s*(\{\s*\"models\"|reg|doc|document)", p.read_text())]
    assert sources and writers == []
