"""The MNIST digits the Moving-MNIST-2 generator uses, read with the core's IDX reader."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from zoo.datasets import read_idx
from zoo.errors import DataError


def read_idx_images(path: Union[str, Path]) -> np.ndarray:
    """uint8 images (N, rows, cols) from an IDX file of 3-D unsigned bytes; raises ``DataError`` otherwise."""
    images = read_idx(Path(path))
    if images.dim() != 3:
        raise DataError(f"{path}: IDX file holds a {images.dim()}-D array {tuple(images.shape)}, expected (N, rows, cols) images")
    return images.numpy()


def default_mnist_images() -> Path:
    """The MNIST test images (``zoo.paths.data_dir() / 'mnist'``)."""
    from zoo.paths import data_dir

    return data_dir() / "mnist" / "t10k-images-idx3-ubyte.gz"
