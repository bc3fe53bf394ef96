"""docs/plugins.md stays true: its example family, installed as written, works through zoo.create."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import zoo
import zoo.registry
from tests.conftest import install_dist

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_guide_example_family(site_dir):
    toml = blocks("toml")[0]
    entry_point = re.search(r'\[project.entry-points."zoo.families"\]\n(\w+) = "([\w.:]+)"', toml)
    assert entry_point is not None
    family_py, registry_yaml = blocks("python")[0], blocks("yaml")[0]
    install_dist(site_dir, "zoo-toy", "zoo_toy",
                 {"__init__.py": "", "family.py": family_py, "registry.yaml": registry_yaml},
                 f"[zoo.families]\n{entry_point[1]} = {entry_point[2]}\n")
    zoo.registry.refresh()
    assert zoo.list_models("toynet-*") == ["toynet-cifar10"]
    model = zoo.create("toynet-cifar10", num_classes=5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    assert zoo.create("toynet-w32").stem.out_channels == 32
