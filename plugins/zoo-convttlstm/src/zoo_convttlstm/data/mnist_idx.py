"""Reading the official MNIST IDX files (optionally gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Union

import numpy as np


def read_idx_images(path: Union[str, Path]) -> np.ndarray:
    """uint8 images (N, rows, cols) from an IDX3 file (magic 2051); raises ValueError on malformed files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MNIST image file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 16:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an IDX3 header (16 bytes)")
    magic, n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051:
        raise ValueError(f"{path}: IDX magic {magic}, expected 2051 (unsigned-byte 3-D images)")
    if len(raw) != 16 + n * rows * cols:
        raise ValueError(f"{path}: header says {n}x{rows}x{cols} images ({16 + n * rows * cols} bytes), file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def default_mnist_images() -> Path:
    """The shared MNIST test images (``zoo.paths.shared_data_dir() / 'mnist'``)."""
    from zoo.paths import shared_data_dir

    return shared_data_dir() / "mnist" / "t10k-images-idx3-ubyte.gz"
