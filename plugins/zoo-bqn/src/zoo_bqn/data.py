"""MNIST from the repository's shared data folder (official t10k IDX files only) and the augmentation of 5.4.1.

There is no MNIST train-images file in the shared folder, so the 10,000 official test images are split into
disjoint train / held-out parts with a fixed seed (:func:`mnist_split`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import torch

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def load_mnist_t10k(root: Optional[Path] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official 10,000 MNIST test images, normalised float32 (N, 1, 28, 28), and labels int64 (N,)."""
    from zoo.datasets import mnist

    images, labels = mnist(root)
    return images.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD), labels


def mnist_split(n_train: int = 8000, seed: int = 0, root: Optional[Path] = None):
    """Disjoint (x_train, y_train, x_test, y_test) from a seeded permutation of the 10,000 t10k images."""
    x, y = load_mnist_t10k(root)
    if not 0 < n_train < x.shape[0]:
        raise ValueError(f"n_train must be in (0, {x.shape[0]}), got {n_train}")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image (B, C, H, W) by an integer offset in [-max_shift, max_shift]^2, filling with the
    background value (the image minimum)."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    fill = float(x.min())
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, value=fill)
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    return torch.stack([padded[i, :, offs[i, 0]: offs[i, 0] + h, offs[i, 1]: offs[i, 1] + w] for i in range(b)])


def recipe_data(cfg: Mapping[str, Any], holdout: int, seed: int = 0, limit: Optional[int] = None):
    """The demo's split as a recipe data source (``python:zoo_bqn.data:recipe_data``): (train, held-out,
    description), the held-out part being the last ``holdout`` images of :func:`mnist_split`'s permutation."""
    from torch.utils.data import TensorDataset

    total = 10_000
    xtr, ytr, xte, yte = mnist_split(total - holdout, seed=seed)
    if limit is not None:
        xtr, ytr = xtr[:limit], ytr[:limit]
    text = (f"MNIST t10k (official test images) split with seed {seed} into {len(ytr):,} train / {len(yte):,} "
            f"held-out, disjoint (zoo_bqn.data.mnist_split, as scripts/demo_bqn_mnist.py)")
    return TensorDataset(xtr, ytr), TensorDataset(xte, yte), text
