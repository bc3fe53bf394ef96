"""Initialisations of SC-Fac layers (dissertation 7.7.2, Proposition 7.2, Table 7.5).

Every method draws the factor ranks ``N_l`` uniformly from ``{1, ..., C}`` (shared by the pair
``U^(l), U^(-l)``), samples ``U^(l)`` (``l > 0``) from the Haar measure and sets ``U^(-l) = Q U^(l)``,
so each pair cancels and the layer starts as the orthogonal matrix ``Q`` at the kernel centre.
The methods differ only in ``Q``:

* ``identical``: ``Q = I``;
* ``permutation`` (default): a uniformly random permutation matrix;
* ``uniform``: Haar-distributed orthogonal;
* ``torus``: ``expm`` of a block-diagonal skew matrix with angles ~ U(-pi, pi) (geotorch's torus init).
"""

from __future__ import annotations

from typing import Tuple

import torch
from geotorch.so import torus_init_, uniform_init_
from torch import Tensor

INITS: Tuple[str, ...] = ("uniform", "torus", "permutation", "identical")


def centre_matrices(kind: str, batch: Tuple[int, ...], c: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``Q`` matrices of shape ``batch + (c, c)`` for initialisation ``kind`` (one of :data:`INITS`)."""
    shape = tuple(batch) + (c, c)
    if kind == "identical":
        return torch.eye(c, dtype=dtype).expand(shape).clone()
    if kind == "permutation":
        n = int(torch.tensor(batch).prod().item()) if batch else 1
        perms = torch.stack([torch.randperm(c) for _ in range(n)]) if n else torch.empty(0, c, dtype=torch.long)
        eye = torch.eye(c, dtype=dtype)
        return eye[perms].reshape(shape)
    if kind == "uniform":
        return uniform_init_(torch.empty(shape, dtype=dtype))
    if kind == "torus":
        return torus_init_(torch.empty(shape, dtype=dtype))
    raise ValueError(f"unknown initialisation {kind!r}; expected one of {', '.join(INITS)}")


def random_ranks(batch: Tuple[int, ...], c: int) -> Tensor:
    """Ranks ``N_l`` drawn uniformly from ``{1, ..., c}``, shape ``batch`` (int64)."""
    return torch.randint(1, c + 1, tuple(batch))
