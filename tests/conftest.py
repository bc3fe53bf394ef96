"""Shared fixtures: the data folder and throwaway family plugins installed on sys.path.

The tests read the checkout's ``../shared/data`` unless ``$ZOO_DATA`` names another folder."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

import zoo.registry
from zoo.paths import data_dir

os.environ.setdefault("ZOO_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))  # subprocesses too

# One intra-op thread for the whole suite: its tensors are tiny, and on the 2-core CI machine thread hand-offs
# dominate (100 small rfft2 round trips: 7 s on 2 threads under load, 0.03 s on one).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of small real data sets (``$ZOO_DATA``, set below to the checkout's ``../shared/data``)."""
    root = data_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"shared data folder {root} is missing (set ZOO_DATA)")
    return root


def install_dist(site: Path, dist: str, package: str, files: dict[str, str], entry_points: str) -> None:
    """Write a real installed distribution (``*.dist-info`` with ``entry_points.txt``) into ``site``."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for rel, text in files.items():
        path = site / package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def site_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on ``sys.path`` for throwaway distributions; removed (and plugins rediscovered) afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    zoo.registry.refresh()
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.split(".")[0].startswith(("toy", "zoo_toy"))]:
        del sys.modules[name]
    zoo.registry.refresh()


TOY_FAMILY = '''
from pathlib import Path

import torch
from torch import nn

from zoo.family import Family


class ToyNet(nn.Module):
    """conv (in_chans -> 4) -> global average -> linear head (4 -> num_classes)."""

    def __init__(self, num_classes: int = 3, in_chans: int = 2, width: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.stem(x).mean((2, 3)))

    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes: int):
        self.head = nn.Linear(self.head.in_features, num_classes)


def toy_net(**kwargs):
    return ToyNet(**kwargs)


def resolve(name):
    if name.startswith("toynet-w") and name[8:].isdigit():
        return dict(builder="toy_net", args={"width": int(name[8:])}, dataset="noise",
                    input={"shape": [2, 8, 8], "num_classes": 3, "classifier": "head", "first_conv": "stem"})
    return None


FAMILY = Family(name="toy", builders={"toy_net": toy_net}, registry=Path(__file__).parent / "registry.yaml",
                resolve=resolve, version="0.1.0")
'''

TOY_REGISTRY = '''
models:
  toynet-small:
    family: toy
    builder: toy_net
    args: {width: 4}
    dataset: noise
    input: {shape: [2, 8, 8], mean: [0.5, 0.5], std: [0.25, 0.25], num_classes: 3, classifier: head, first_conv: stem}
    reference: {section: "1", metrics: {top1: 50.0}}
    tags: [toy]
  toynet-10:
    family: toy
    builder: toy_net
    args: {width: 10}
    dataset: noise
    input: {shape: [2, 8, 8], num_classes: 3, classifier: head, first_conv: stem}
  toynet-2:
    family: toy
    builder: toy_net
    args: {width: 2}
    dataset: noise
    input: {shape: [2, 8, 8], num_classes: 3, classifier: head, first_conv: stem}
'''

# a second family that reuses the toy builder (plugin-isolation tests and scripts/bench_trust.py)
OTHER_FAMILY = '''
from pathlib import Path

from zoo.family import Family
from toyfam.family import toy_net

{body}

FAMILY = Family(name="{name}", builders={{"toy_net": toy_net}}, registry={registry}, resolve={resolve},
                version="0.2.0")
'''

OTHER_REGISTRY = """
models:
  toytwo-a:
    family: toytwo
    builder: toy_net
    dataset: noise
    input: {shape: [2, 8, 8], num_classes: 3}
"""


@pytest.fixture
def toy_family(site_dir: Path) -> Callable[..., Path]:
    """Install the ``toy`` family; returns a function to (re)write its registry fragment."""
    install_dist(site_dir, "toy-family", "toyfam", {"__init__.py": "", "family.py": TOY_FAMILY,
                                                    "registry.yaml": TOY_REGISTRY},
                 "[zoo.families]\ntoy = toyfam.family:FAMILY\n")
    zoo.registry.refresh()

    def write_registry(text: str) -> Path:
        path = site_dir / "toyfam" / "registry.yaml"
        path.write_text(textwrap.dedent(text))
        zoo.registry.refresh()
        return path

    write_registry.site = site_dir  # type: ignore[attr-defined]
    return write_registry
