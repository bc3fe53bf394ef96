"""Matrix exponential by scaling and squaring of a degree-18 Taylor polynomial, differentiated by autograd.

``exp(A) = T(A / 2^s)^(2^s)`` with ``s`` the smallest integer that brings the 1-norm (the largest one over
the batch) to at most ``1``, where the Taylor remainder ``sum_{k > 18} 1 / k! < 1e-17`` is below float64
rounding. The polynomial is evaluated with the Paterson-Stockmeyer scheme (7 matrix products), so the
forward pass costs ``7 + s`` batched products and the autograd backward pass twice that.
``torch.linalg.matrix_exp`` has a similar forward pass, but its backward pass exponentiates a
``2n x 2n`` block matrix (8x the flops of each product, and more squarings): about 10x slower in
training. This is the map geotorch's ``SO`` applies to skew-symmetric matrices (``triv``).
Under ``torch.export`` the squaring count (a Python int read from the data) cannot be traced: :func:`expm` then
calls ``torch.linalg.matrix_exp`` (one ATen op; same values to rounding), so exported programs carry no
data-dependent guard.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

DEGREE = 18
BLOCK = 4  # Paterson-Stockmeyer block: powers I, X, X^2, X^3 and Horner steps in X^4
THETA = 1.0  # 1-norm after scaling; remainder <= sum_{k > DEGREE} THETA^k / k! < 1e-17
_COEFFS = tuple(1.0 / math.factorial(k) for k in range(DEGREE + 1))


def squarings(a: Tensor) -> int:
    """Number ``s >= 0`` of squarings so that every ``(..., n, n)`` matrix of ``a / 2^s`` has 1-norm <= ``THETA``."""
    if a.numel() == 0:
        return 0
    norm = float(a.detach().abs().sum(-2).amax())
    if not math.isfinite(norm):
        raise ValueError(f"expected finite matrices, got 1-norm {norm}")
    return max(0, math.ceil(math.log2(norm / THETA))) if norm > THETA else 0


def taylor(x: Tensor) -> Tensor:
    """Degree-``DEGREE`` Taylor polynomial of ``exp`` at ``(b, n, n)`` ``x`` (Paterson-Stockmeyer, 7 products)."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand_as(x)
    x2 = x @ x
    powers = torch.stack((eye, x, x2, x2 @ x))  # (BLOCK, b, n, n)
    step = x2 @ x2
    blocks = torch.tensordot(_block_coefficients(x), powers, dims=1).unbind(0)  # sum_i x^i / (BLOCK j + i)!
    out = blocks[-1]
    for block in reversed(blocks[:-1]):
        out = torch.baddbmm(block, out, step)
    return out


def _block_coefficients(like: Tensor) -> Tensor:
    """``(ceil((DEGREE + 1) / BLOCK), BLOCK)`` Taylor coefficients ``1 / (BLOCK j + i)!`` (0 beyond ``DEGREE``)."""
    return _coefficients_on(like.dtype, like.device)


@functools.lru_cache(maxsize=None)
def _coefficients_on(dtype: torch.dtype, device: torch.device) -> Tensor:
    rows = -(-(DEGREE + 1) // BLOCK)
    coeffs = [[_COEFFS[BLOCK * j + i] if BLOCK * j + i <= DEGREE else 0.0 for i in range(BLOCK)] for j in range(rows)]
    return torch.tensor(coeffs, dtype=dtype, device=device)


def expm(a: Tensor) -> Tensor:
    """``exp(a)`` of ``(..., n, n)`` matrices, accurate to the dtype's rounding (relative to ``exp(||a||)``)."""
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"expected square matrices (..., n, n), got shape {tuple(a.shape)}")
    if torch.compiler.is_exporting():  # the number of squarings is data-dependent: torch.export takes the one op
        return torch.linalg.matrix_exp(a)
    s = squarings(a)
    out = taylor(a.reshape(-1, *a.shape[-2:]) * 2.0 ** -s)
    for _ in range(s):
        out = out @ out
    return out.reshape(a.shape)
