"""Fixtures for training tests: an RGB toy model and tiny image-folder data sets written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RGB_REGISTRY = """
models:
  toynet-rgb:
    family: toy
    builder: toy_net
    args: {width: 6, in_chans: 3}
    dataset: colours
    input: {shape: [3, 8, 8], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], num_classes: 3, classifier: head,
            first_conv: stem}
"""


def write_colour_folder(root: Path, per_class: int, seed: int, classes=("red", "green", "blue")) -> Path:
    """Class ``c`` images are noisy 8x8 pictures dominated by colour channel ``c`` (a learnable task)."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, size=(8, 8, 3))
            pixels[..., index] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def rgb_toy(toy_family):
    toy_family(RGB_REGISTRY)
    return "toynet-rgb"


@pytest.fixture
def colour_data(tmp_path: Path):
    return (write_colour_folder(tmp_path / "train", 16, seed=0), write_colour_folder(tmp_path / "val", 6, seed=1))
