"""Separable autoregressive (AR) filters and their frequency-domain solve (dissertation 6.3.3-6.3.4).

Conventions (used everywhere in this package):

* A length-3 factor ``f = (f_-1, f_0, f_1)`` with ``f_0 = 1`` acts on a signal ``y`` by correlation,
  ``(f * y)[i] = f_-1 y[i-1] + y[i] + f_1 y[i+1]``; its transfer function is
  ``F(w) = 1 + f_-1 e^{-iw} + f_1 e^{iw}``.
* The AR filter of output channel ``t`` is separable (Def. 6.5): ``A[:, :, t] = F_t (outer) G_t`` with
  ``F_t = f^(1) * ... * f^(Q)`` along the rows (height) and ``G_t = g^(1) * ... * g^(Q)`` along the columns
  (width), so it is ``(2Q+1) x (2Q+1)`` and ``A_hat(w1, w2) = prod_q F_q(w1) * prod_q G_q(w2)``.
* Re-parameterization (Theorem 6.7, Fig. 6.4): each factor pair ``(f_-1, f_1)`` is a 45-degree rotation of
  two tanh-squashed parameters ``(alpha, beta)``::

      [f_-1]            [ 1  -1] [rho * tanh(alpha)]           f_-1 + f_1 = rho * tanh(alpha)
      [f_1 ]  =  1/2 *  [ 1   1] [rho * tanh(beta) ]    i.e.   f_1 - f_-1 = rho * tanh(beta)

  so ``|f_-1| + |f_1| = rho * max(|tanh alpha|, |tanh beta|) < 1 = f_0`` for every real parameter value:
  the stability condition (6.8) holds and ``|F(w)| >= 1 - |f_-1 + f_1| >= 1 - rho > 0`` on the unit circle.
  ``rho = 1 - margin`` (default margin ``1e-2``) keeps the bound away from 0 in floating point, where
  ``tanh`` saturates to exactly 1; it caps the reachable AR coefficient ``a`` of Theorem 6.3 at ``rho``.
  (The printed (6.9) leaves one coordinate unsquashed; with it ``f_-1 + f_1`` can reach ``+-sqrt(2)`` and
  ``F`` can vanish, so both coordinates are squashed here, as the stability claim of Theorem 6.7 requires.)

The solve is circular (periodic boundary): ``y = irfft2(rfft2(t) / A_hat)``, computed by
:mod:`zoo_arma.fft_solve` as ``y = t + irfft2(rfft2(t) * (1 / A_hat - 1))`` with the separable ``1 / A_hat`` in
closed form, so that an identity filter (all parameters 0) returns ``t`` bit-for-bit while the gradient with
respect to the AR parameters still flows.

Small maps: a circular solve on an ``n``-point grid with ``n < 2Q+1`` folds the taps at offsets ``k`` and
``k - n`` onto one another, i.e. it solves with a different (aliased) filter. Like the official ARMA-Networks code,
:func:`ar_solve` therefore applies the AR part only where the solve grid holds the whole ``(2Q+1) x (2Q+1)``
kernel (:func:`ar_fits`) and returns the moving-average output unchanged otherwise. The AR parameters then get an
exact zero gradient from that call (the official code leaves them out of the graph, a ``None`` gradient), so that
``DistributedDataParallel`` finds every parameter used when a network's deepest maps are small.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fft_solve import separable_ar_solve

__all__ = [
    "DEFAULT_MARGIN",
    "factor_coefficients",
    "factor_coordinates",
    "parameters_from_coefficients",
    "filter_1d",
    "filter_2d",
    "transfer_function",
    "ar_fits",
    "ar_solve",
    "ar_apply",
]

DEFAULT_MARGIN = 1e-2


def _check_params(params: Tensor) -> None:
    if params.dim() != 4 or params.shape[1] != 2 or params.shape[3] != 2:
        raise ValueError(
            f"expected AR parameters of shape (channels, 2 axes, Q factors, 2), got {tuple(params.shape)}"
        )


def factor_coefficients(params: Tensor, margin: float = DEFAULT_MARGIN) -> Tuple[Tensor, Tensor]:
    """Length-3 factor taps from unconstrained parameters (Theorem 6.7).

    Args:
        params: ``(T, 2, Q, 2)``: channel, axis (0 = rows/height ``f``, 1 = columns/width ``g``), factor,
            (alpha, beta).
        margin: ``rho = 1 - margin``.
    Returns:
        ``(minus, plus)``, each ``(T, 2, Q)``: the taps ``f_-1`` and ``f_1`` (``f_0 = 1``).
    """
    sd = factor_coordinates(params, margin)
    s, d = sd[..., 0], sd[..., 1]
    return 0.5 * (s - d), 0.5 * (s + d)


def factor_coordinates(params: Tensor, margin: float = DEFAULT_MARGIN) -> Tensor:
    """``(T, 2, Q, 2)`` parameters -> ``(T, 2, Q, 2)`` rotated taps ``(f_-1 + f_1, f_1 - f_-1) = rho * tanh(params)``."""
    _check_params(params)
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    return (1.0 - margin) * torch.tanh(params)


def parameters_from_coefficients(minus: Tensor, plus: Tensor, margin: float = DEFAULT_MARGIN) -> Tensor:
    """Inverse of :func:`factor_coefficients`: ``(T, 2, Q)`` taps -> ``(T, 2, Q, 2)`` parameters.

    Raises ``ValueError`` when a pair is outside the reachable region ``|f_-1 + f_1|, |f_1 - f_-1| < rho``.
    """
    rho = 1.0 - margin
    s, d = (minus + plus) / rho, (plus - minus) / rho
    worst = torch.maximum(s.abs(), d.abs()).max().item() if s.numel() else 0.0
    if worst >= 1.0:
        raise ValueError(
            f"AR taps need |f_-1 + f_1| < {rho} and |f_1 - f_-1| < {rho} (margin {margin}); got a pair reaching {worst * rho:.4g}"
        )
    return torch.stack([torch.atanh(s), torch.atanh(d)], dim=-1)


def filter_1d(minus: Tensor, plus: Tensor) -> Tensor:
    """Compose Q length-3 factors into one 1-D filter.

    Args:
        minus, plus: ``(..., Q)`` taps ``f_-1``, ``f_1``.
    Returns:
        ``(..., 2Q+1)`` taps at offsets ``-Q..Q`` (the convolution ``f^(1) * ... * f^(Q)``).
    """
    out = torch.ones(minus.shape[:-1] + (1,), dtype=minus.dtype, device=minus.device)
    for q in range(minus.shape[-1]):
        fac = torch.stack([minus[..., q], torch.ones_like(minus[..., q]), plus[..., q]], dim=-1)
        n = out.shape[-1]
        new = torch.zeros(out.shape[:-1] + (n + 2,), dtype=out.dtype, device=out.device)
        for k in range(3):  # polynomial product: offsets add
            new = new + F.pad(out * fac[..., k : k + 1], (k, 2 - k))
        out = new
    return out


def filter_2d(params: Tensor, margin: float = DEFAULT_MARGIN) -> Tensor:
    """The full separable AR kernel ``A[:, :, t]`` as ``(T, 2Q+1, 2Q+1)`` taps at offsets ``-Q..Q``.

    ``(A * y)[i, j] = sum_{k,l} A[k, l] y[i+k, j+l]`` (correlation, like ``nn.Conv2d``).
    """
    minus, plus = factor_coefficients(params, margin)
    rows, cols = filter_1d(minus[:, 0], plus[:, 0]), filter_1d(minus[:, 1], plus[:, 1])
    return rows[:, :, None] * cols[:, None, :]


def _factor_response(minus: Tensor, plus: Tensor, n: int, onesided: bool) -> Tensor:
    """``prod_q (1 + f_-1 e^{-iw} + f_1 e^{iw})`` on the DFT grid ``w = 2 pi k / n``: ``(T, n or n//2+1)``."""
    m = n // 2 + 1 if onesided else n
    w = torch.arange(m, dtype=minus.dtype, device=minus.device) * (2.0 * math.pi / n)
    cos, sin = torch.cos(w), torch.sin(w)
    s = (minus + plus)[..., None]  # (T, Q, 1)
    d = (plus - minus)[..., None]
    # 1 + f_-1 (cos - i sin) + f_1 (cos + i sin) = (1 + s cos) + i d sin; exactly 1 when s = d = 0.
    fac = torch.complex(1.0 + s * cos, d * sin)
    return torch.prod(fac, dim=-2)


def transfer_function(params: Tensor, size: Tuple[int, int], margin: float = DEFAULT_MARGIN, onesided: bool = True) -> Tensor:
    """``A_hat`` on the ``rfft2`` grid of an ``H x W`` image: complex ``(T, H, W//2+1)`` (``W`` if not onesided)."""
    _check_params(params)
    h, w = size
    minus, plus = factor_coefficients(params, margin)
    rows = _factor_response(minus[:, 0], plus[:, 0], h, onesided=False)
    cols = _factor_response(minus[:, 1], plus[:, 1], w, onesided=onesided)
    return rows[:, :, None] * cols[:, None, :]


def ar_fits(size: Tuple[int, int], order: int, padding: int = 0) -> bool:
    """Whether a ``(2Q+1) x (2Q+1)`` AR kernel (``Q = order``) fits the circular solve grid of an ``H x W`` map
    (``size``) with ``padding`` zeros on every side: ``min(H, W) + 2 padding >= 2Q + 1``.

    With ``padding = 0`` this is the official code's test (the AR part is skipped on a map smaller than
    ``2Q+1`` along either side); a padded grid large enough for the kernel is solved without aliasing.
    """
    return min(int(size[0]), int(size[1])) + 2 * int(padding) >= 2 * int(order) + 1


def ar_solve(t: Tensor, params: Tensor, margin: float = DEFAULT_MARGIN, padding: int = 0) -> Tensor:
    """Solve ``A * y = t`` per channel in the frequency domain; ``t`` unchanged where the kernel does not fit.

    Args:
        t: ``(B, T, H, W)`` moving-average output.
        params: ``(T, 2, Q, 2)`` AR parameters.
        padding: zeros added on every side before the (circular) solve and cropped after, so that the
            impulse response has ``padding`` pixels to decay before it wraps around; 0 = purely circular.
            (Circular shifts commute with the solve, so the ``2 * padding`` zeros go to the bottom/right
            inside the FFT instead of being padded onto ``t``.)
    Returns:
        ``(B, T, H, W)`` solution ``y``, same dtype as ``t`` (half precision is solved in float32). When the
        ``(2Q+1) x (2Q+1)`` kernel does not fit the ``(H + 2 padding) x (W + 2 padding)`` grid
        (:func:`ar_fits`), ``t`` unchanged: the AR part is skipped, as in the official code (``params`` get a
        zero gradient).
    """
    if t.dim() != 4 or t.shape[1] != params.shape[0]:
        raise ValueError(f"expected t of shape (B, {params.shape[0]}, H, W), got {tuple(t.shape)}")
    if params.shape[2] == 0:
        return t
    if not ar_fits(t.shape[-2:], params.shape[2], padding):
        return _skipped(t, params)
    dtype = t.dtype
    work = t.float() if dtype in (torch.float16, torch.bfloat16) else t
    sd = factor_coordinates(params.to(work.dtype), margin)
    h, w = work.shape[-2:]
    return separable_ar_solve(work, sd, (h + 2 * padding, w + 2 * padding)).to(dtype)


def _skipped(t: Tensor, params: Tensor) -> Tensor:
    """``t`` unchanged, with a zero gradient for ``params`` when autograd records (``t + 0 * sum(params)``: the same
    values, ``-0.0`` aside); ``t`` itself otherwise."""
    if torch.is_grad_enabled() and params.requires_grad:
        return t + params.sum().mul(0.0).to(t.dtype)
    return t


def ar_apply(y: Tensor, params: Tensor, margin: float = DEFAULT_MARGIN) -> Tensor:
    """Apply the AR filter circularly in the spatial domain, ``(A * y)``: ``(B, T, H, W) -> (B, T, H, W)``.

    Independent of the FFT path (a depthwise ``conv2d`` with circular padding); used to check the solve.
    """
    kernel = filter_2d(params, margin).to(y.dtype)
    q = kernel.shape[-1] // 2
    if q == 0:
        return y
    padded = F.pad(y, (q, q, q, q), mode="circular")
    return F.conv2d(padded, kernel[:, None], groups=y.shape[1])
