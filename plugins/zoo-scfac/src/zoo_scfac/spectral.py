"""Singular values of convolution operators, used to measure orthogonality.

* :func:`circular_singular_values`: Sedghi et al. (2019): a stride-1 circular convolution on an
  ``n x n`` grid is block-diagonalised by the 2-D DFT; its singular values are those of the ``T x S``
  matrices ``sum_ij w[:, :, i, j] exp(-2 pi j (u i + v j) / n)`` at the ``n^2`` frequencies.
* :func:`dense_singular_values`: singular values of any (affine) layer's linear part on a fixed input
  shape, from its dense matrix (for tiny shapes: strided, zero-padded, whole blocks).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def dilate_kernel(kernel: Tensor, dilation: int) -> Tensor:
    """Insert ``dilation - 1`` zeros between taps: ``(T, S, K, K) -> (T, S, D(K-1)+1, D(K-1)+1)``."""
    if dilation == 1:
        return kernel
    t, s, k1, k2 = kernel.shape
    out = kernel.new_zeros(t, s, dilation * (k1 - 1) + 1, dilation * (k2 - 1) + 1)
    out[:, :, ::dilation, ::dilation] = kernel
    return out


def circular_singular_values(kernel: Tensor, n: int, dilation: int = 1) -> Tensor:
    """All singular values of the stride-1 circular convolution with ``kernel`` ``(T, S, K, K)`` on ``n x n``.

    Returns a flat tensor of ``n * n * min(T, S)`` values (the operator's non-trivial spectrum).
    """
    w = dilate_kernel(kernel, dilation)
    if w.shape[-1] > n or w.shape[-2] > n:
        raise ValueError(f"kernel extent {tuple(w.shape[-2:])} exceeds the grid {n} x {n}")
    spectrum = torch.fft.fft2(w, s=(n, n))  # (T, S, n, n)
    mats = spectrum.permute(2, 3, 0, 1)  # (n, n, T, S)
    return torch.linalg.svdvals(mats).reshape(-1)


def dense_matrix(fn: Callable[[Tensor], Tensor], input_shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
    """Matrix ``A`` (out_dim x in_dim) of the linear part of ``fn`` at one input shape (no batch dim)."""
    d = 1
    for s in input_shape:
        d *= int(s)
    with torch.no_grad():
        zero = fn(torch.zeros((1,) + tuple(input_shape), dtype=dtype))
        basis = torch.eye(d, dtype=dtype).reshape((d,) + tuple(input_shape))
        out = fn(basis) - zero
    return out.reshape(d, -1).T


def dense_singular_values(fn: Callable[[Tensor], Tensor], input_shape: Sequence[int],
                          dtype: torch.dtype = torch.float64) -> Tensor:
    """Singular values (descending) of the linear part of ``fn`` on ``input_shape`` (e.g. ``(C, H, W)``)."""
    return torch.linalg.svdvals(dense_matrix(fn, input_shape, dtype))


def orthogonality_error(values: Tensor) -> float:
    """``max |sigma - 1|`` over the given singular values."""
    return float((values - 1).abs().max())
