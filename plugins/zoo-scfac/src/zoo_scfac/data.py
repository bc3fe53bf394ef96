"""Loaders for the shared small data sets (``zoo.paths.shared_data_dir()``), as float tensors in ``[0, 1]``."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor


def _root(root: Optional[Path]) -> Path:
    if root is not None:
        return Path(root)
    from zoo.paths import shared_data_dir

    return shared_data_dir()


def load_cifar10_test(root: Optional[Path] = None) -> Tuple[Tensor, Tensor]:
    """The 10,000 CIFAR-10 test images ``(N, 3, 32, 32)`` float32 in ``[0, 1]`` and labels ``(N,)`` int64."""
    path = _root(root) / "cifar10_test" / "cifar10_test.npz"
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 test set not found at {path} (set ZOO_SHARED_DATA)")
    with np.load(path) as d:
        x = torch.from_numpy(d["images"]).permute(0, 3, 1, 2).float().div_(255)
        y = torch.from_numpy(d["labels"].astype(np.int64))
    return x.contiguous(), y


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist_test(root: Optional[Path] = None) -> Tuple[Tensor, Tensor]:
    """The 10,000 MNIST test images ``(N, 1, 28, 28)`` float32 in ``[0, 1]`` and labels ``(N,)`` int64."""
    folder = _root(root) / "mnist"
    x = torch.from_numpy(_idx(folder / "t10k-images-idx3-ubyte.gz").copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    return x, y


def holdout_split(n: int, n_holdout: int, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A seeded permutation split of ``range(n)`` into (train indices, held-out indices)."""
    if not 0 < n_holdout < n:
        raise ValueError(f"n_holdout must be in (0, {n}), got {n_holdout}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_holdout:], perm[:n_holdout]
