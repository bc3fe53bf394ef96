"""The circular AR solve ``A * y = t`` with the separable inverse transfer function in closed form.

With ``A_hat(w1, w2) = prod_q F_q(w1) * prod_q G_q(w2)`` (see :mod:`zoo_arma.ar`) the inverse is separable too,
``1 / A_hat = R(w1) C(w2)`` with ``R = prod_q 1 / F_q`` on the ``H`` DFT frequencies and ``C = prod_q 1 / G_q`` on
the ``W//2+1`` rfft ones, built from ``(T, 2, Q, max(H, W//2+1))`` numbers per call; the only
``(T, H, W//2+1)`` tensor is the multiplier ``m = R C - 1`` (no 2-D transfer function, no 2-D division).
The solve is ``y = t + irfft2(rfft2(t) m)``: an identity filter (``m = 0``) returns ``t`` bit for bit.
The backward is Theorem 6.4 in the frequency domain: ``dL/dt`` is the transposed solve (multiplier
``conj(m)``) and the gradient of ``R`` and ``C`` is a contraction of ``rfft2(dL/dy) conj(rfft2(t))`` reduced to
``(T, H)`` and ``(T, W//2+1)``, mapped to the factor taps in closed form. Four FFTs in all.
"""

from __future__ import annotations

import functools
import math
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["separable_ar_solve"]


@functools.lru_cache(maxsize=64)
def _grid(size: Tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(cos w, sin w)`` as ``(2, 1, n, 2)`` at ``w = 2 pi k / H'`` (row 0) and ``2 pi k / W'`` (row 1), ``k < n``,
    ``n = max(H', W'//2+1)``: the full DFT grid of the rows and the rfft grid of the columns, plus an unused
    tail. Cached per size, dtype and device (built outside inference mode so that any later call may use it)."""
    hp, wp = size
    with torch.inference_mode(False), torch.no_grad():
        k = torch.arange(max(hp, wp // 2 + 1), dtype=torch.float64)
        w = torch.stack([k * (2.0 * math.pi / hp), k * (2.0 * math.pi / wp)])[:, None, :]
        return torch.stack([torch.cos(w), torch.sin(w)], dim=-1).to(device, dtype)


@functools.lru_cache(maxsize=64)
def _column_weight(size: Tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(W'//2+1,)`` weights of ``dL/dm`` on the rfft grid, ``c / (H' W')``: interior columns stand for two
    bins (``c = 2``), the DC and (even ``W'``) Nyquist columns for one. Cached like :func:`_grid`."""
    hp, wp = size
    with torch.inference_mode(False), torch.no_grad():
        weight = torch.full((wp // 2 + 1,), 2.0 / (hp * wp), dtype=torch.float64)
        weight[0] = 1.0 / (hp * wp)
        if wp % 2 == 0:
            weight[-1] = 1.0 / (hp * wp)
        return weight.to(device, dtype)


def _inverse_factors(sd: Tensor, cs: Tensor) -> Tensor:
    """``1 / F_q(w)`` with ``F_q = 1 + s_q cos w + i d_q sin w`` for both axes at once: ``sd`` ``(T, 2, Q, 2)``
    and ``cs = _grid(...)`` -> complex ``(T, 2, Q, n)``. ``|F_q| >= 1 - rho > 0`` by the re-parameterization."""
    return torch.view_as_complex(sd[..., None, :] * cs).add_(1.0).reciprocal_()


def _multiplier(r: Tensor, c: Tensor) -> Tensor:
    """``m = R (outer) C - 1``: complex ``(T, H')``, ``(T, W'//2+1)`` -> ``(T, H', W'//2+1)``."""
    return torch.mul(r[:, :, None], c[:, None, :]).sub_(1.0)


class _SeparableSolve(torch.autograd.Function):
    """``y = t + crop(irfft2(rfft2(t, s) (R C - 1), s))`` for ``t`` ``(B, T, H, W)`` and factor coordinates
    ``sd`` ``(T, 2 axes, Q, 2)`` = ``(f_-1 + f_1, f_1 - f_-1)``; ``s = (H', W')`` is the circular solve size
    (``>= (H, W)``, the input zero-padded at the bottom/right and the output cropped back).
    Saves ``conj(rfft2(t))`` (about the size of ``t``) only when ``sd`` needs a gradient, else ``O(T (H' + W'))``."""

    @staticmethod
    def forward(ctx, t: Tensor, sd: Tensor, size: Tuple[int, int]) -> Tensor:  # type: ignore[override]
        h, w = t.shape[-2:]
        hp, wp = size
        inv_f = _inverse_factors(sd, _grid(size, sd.dtype, sd.device))  # (T, 2, Q, n)
        resp = inv_f.prod(dim=2)  # (T, 2, n): R on row 0 (first H'), C on row 1 (first W'//2+1)
        r, c = resp[:, 0, :hp], resp[:, 1, : wp // 2 + 1]
        t_hat = torch.fft.rfft2(t, s=size)
        m = _multiplier(r, c)
        need_sd = ctx.needs_input_grad[1]
        if not need_sd:  # fewest (B, T, H', W'//2+1) buffers: the product goes into one of its factors
            z = t_hat.mul_(m)
        elif t.shape[0] == 1:
            z = m.mul_(t_hat[0]).unsqueeze(0)
        else:
            z = t_hat * m
        y = torch.fft.irfft2(z, s=size)
        y = y.add_(t) if (hp, wp) == (h, w) else y[..., :h, :w] + t
        # the backward needs conj(rfft2(t)): conjugate in place now instead of allocating a copy then
        ctx.save_for_backward(resp, *((t_hat.conj_physical_(), inv_f) if need_sd else ()))
        ctx.size = size
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):  # type: ignore[override]
        resp = ctx.saved_tensors[0]
        hp, wp = ctx.size
        h, w = g.shape[-2:]
        r, c = resp[:, 0, :hp], resp[:, 1, : wp // 2 + 1]
        g_hat = torch.fft.rfft2(g, s=ctx.size)
        grad_t = grad_sd = None
        if ctx.needs_input_grad[1]:
            t_hat_conj, inv_f = ctx.saved_tensors[1:]
            prod = g_hat * t_hat_conj  # (B, T, H', W'//2+1)
            grad_m = prod.sum(0) if prod.shape[0] > 1 else prod[0]
            weight = _column_weight(ctx.size, g.dtype, g.device)
            # dL/dR = sum_w dL/dm conj(C), dL/dC = sum_h dL/dm conj(R), as (1 x n) @ (n x n') products.
            grad_resp = torch.zeros_like(resp)
            grad_resp[:, 0, :hp] = torch.bmm((c.conj() * weight)[:, None, :], grad_m.transpose(1, 2))[:, 0]
            grad_resp[:, 1, : wp // 2 + 1] = torch.bmm(r.conj()[:, None, :], grad_m)[:, 0] * weight
            # R = prod_q 1/F_q: dR/ds_q = -R cos / F_q, dR/dd_q = -i R sin / F_q; dL/dp = Re(sum_w g conj(dR/dp)),
            # i.e. dL/ds_q = -sum_w Re(v) cos w and dL/dd_q = -sum_w Im(v) sin w with v = g conj(R / F_q).
            v = grad_resp[:, :, None, :] * (resp[:, :, None, :] * inv_f).conj()
            grad_sd = (torch.view_as_real(v) * _grid(ctx.size, g.dtype, g.device)).sum(-2).neg_()
        if ctx.needs_input_grad[0]:
            gt = torch.fft.irfft2(g_hat.mul_(_multiplier(r.conj(), c.conj())), s=ctx.size)
            grad_t = gt.add_(g) if (hp, wp) == (h, w) else gt[..., :h, :w] + g
        return grad_t, grad_sd, None


def separable_ar_solve(t: Tensor, sd: Tensor, size: Tuple[int, int]) -> Tensor:
    """Solve ``A * y = t`` circularly on an ``size = (H', W')`` grid (``t`` zero-padded bottom/right, ``y`` cropped).

    Args:
        t: ``(B, T, H, W)`` real, ``H <= H'``, ``W <= W'``.
        sd: ``(T, 2, Q, 2)``: per channel, axis (rows, columns) and factor, ``(f_-1 + f_1, f_1 - f_-1)``; same
            dtype as ``t``.
    Returns:
        ``(B, T, H, W)``.
    """
    return _SeparableSolve.apply(t, sd, tuple(size))
