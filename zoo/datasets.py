"""The small real data sets of the data folder (:func:`zoo.paths.data_dir`), as tensors, with seeded disjoint splits.

- ``mnist()``: the official 10,000 MNIST test images (the only MNIST images available here) — uint8 (N, 1, 28, 28);
- ``cifar10()``: the 10,000 CIFAR-10 test images — uint8 (N, 3, 32, 32);
- ``isic_dir()``: the folder of 93 ISIC lesion images + masks (``images/``, ``masks/``).

``split(n, holdout, seed)`` gives the disjoint (train, held-out) index sets every recipe and script uses.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from zoo.errors import DataError
from zoo.paths import data_dir


def read_idx(path: Path) -> torch.Tensor:
    """A (gzipped) IDX file of unsigned bytes as a uint8 tensor of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path}: expected an IDX file of unsigned bytes (magic 0x0000 0x08), got {zero:#06x} {dtype:#04x}")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: {len(data)} bytes, too short for a {ndim}-dimensional IDX header")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{path}: header declares shape {shape} ({int(np.prod(shape))} bytes) but {len(body)} follow")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path} not found: set ZOO_DATA to the folder holding the data sets")
    return path


def mnist(root: Optional[Path] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """MNIST t10k images uint8 (10000, 1, 28, 28) and labels int64 (10000,)."""
    folder = Path(root) if root is not None else data_dir() / "mnist"
    images = read_idx(_require(folder / "t10k-images-idx3-ubyte.gz")).unsqueeze(1)
    labels = read_idx(_require(folder / "t10k-labels-idx1-ubyte.gz")).long()
    return images, labels


def cifar10(root: Optional[Path] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 test images uint8 (10000, 3, 32, 32) and labels int64 (10000,)."""
    folder = Path(root) if root is not None else data_dir() / "cifar10_test"
    with np.load(_require(folder / "cifar10_test.npz"), allow_pickle=False) as data:
        images = torch.from_numpy(np.ascontiguousarray(data["images"].transpose(0, 3, 1, 2)))
        labels = torch.from_numpy(data["labels"].astype(np.int64))
    return images, labels


def isic_dir(root: Optional[Path] = None) -> Path:
    """Folder with ``images/`` and ``masks/`` of the ISIC 2018 sample."""
    return _require(Path(root) if root is not None else data_dir() / "isic2018_sample")


def split(n: int, holdout: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train, held-out) indices of ``range(n)`` from a seeded permutation; ``holdout`` go to the second."""
    if not 0 < holdout < n:
        raise DataError(f"holdout must be between 1 and {n - 1}, got {holdout}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[holdout:], perm[:holdout]
