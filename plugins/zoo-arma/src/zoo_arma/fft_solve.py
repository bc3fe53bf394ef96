"""The circular AR solve ``A * y = t`` with the separable inverse transfer function in closed form.

With ``A_hat(w1, w2) = prod_q F_q(w1) * prod_q G_q(w2)`` (see :mod:`zoo_arma.ar`) the inverse is separable too,
``1 / A_hat = R(w1) C(w2)`` with ``R = prod_q 1 / F_q`` on the ``H`` DFT frequencies and ``C = prod_q 1 / G_q`` on
the ``W`` ones, built once per call from ``(T, 2, Q, max(H, W))`` numbers and shared by the whole batch. The
solve is ``y = t + irfft2(rfft2(t) m)`` with ``m = R C - 1``, so an identity filter (``m = 0``) returns ``t`` bit
for bit; the backward is Theorem 6.4 in the frequency domain: ``dL/dt`` is the transposed solve (multiplier
``conj(m)``) and the gradient of ``m`` is ``rfft2(dL/dy) conj(rfft2(t))`` summed over the batch, contracted to
``(T, H)`` and ``(T, W)`` and mapped to the factor taps. Two paths:

* **Pairs** (batch >= 2, the training case): samples ``j`` and ``j + B/2`` go into one complex map
  ``z = t[j] + i t[j + B/2]``. The same real filter acts on both, which is complex-linear in ``z``, so
  ``y[j] + i y[j + B/2] = z + ifft2(fft2(z) m)`` with ``m`` on the full ``(H, W)`` grid: one full-size complex
  transform serves two samples, each a single multi-dimensional library call on contiguous memory. Per direction:
  one interleaving pass, ``fft2``, one in-place product, ``ifft2``, one de-interleaving pass that adds the
  identity term, run in blocks of about ``CPU_CHUNK_BYTES`` on the CPU so that the temporaries are reused from
  the heap; the only full-size buffers are the result and ``conj(fft2(z))`` (the size of ``t``, saved for
  backward). Backward: the same with ``conj(m)`` for ``dL/dt``, and ``dL/dm`` accumulated in place over the
  pairs.
* **Real** (batch 1): ``rfft2`` / ``irfft2`` with ``m`` on the rfft grid, and the backward straight to the
  factor taps in closed form. On the CPU ``irfft2`` of a large batch is the slow transform (the library runs it as
  a complex pass over the rows and a real one over the columns, each behind a transposing copy), which is why
  batches take the pairs path; for one sample its tensors stay in cache and this path is the faster one.

Both zero-pad at the bottom/right inside the transform (``s=``) when the solve size exceeds ``t``'s.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["separable_ar_solve"]


@functools.lru_cache(maxsize=64)
def _grid(size: Tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(cos w, sin w)`` as ``(2, 1, n, 2)`` at ``w = 2 pi k / H'`` (row 0) and ``2 pi k / W'`` (row 1), ``k < n``,
    ``n = max(H', W')``: the full DFT grids of the rows and of the columns (the real path uses the first
    ``W'//2+1`` columns), plus an unused tail. Cached per size, dtype and device (built outside inference mode so
    that any later call may use it)."""
    hp, wp = size
    with torch.inference_mode(False), torch.no_grad():
        k = torch.arange(max(hp, wp), dtype=torch.float64)
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


def _axis_responses(sd: Tensor, size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """``R = prod_q 1 / F_q`` on the ``H'`` row frequencies and ``C = prod_q 1 / G_q`` on the ``W'`` column ones:
    complex ``(T, H')`` and ``(T, W')``, by ordinary autograd ops on ``O(T Q (H' + W'))`` numbers."""
    hp, wp = size
    cs = _grid(size, sd.dtype, sd.device)
    inv_f = torch.reciprocal(torch.view_as_complex(sd[..., None, :] * cs) + 1.0)  # (T, 2, Q, n)
    resp = inv_f[:, :, 0]
    for q in range(1, inv_f.shape[2]):
        resp = resp * inv_f[:, :, q]
    return resp[:, 0, :hp], resp[:, 1, :wp]


# Block size of the pairs path on the CPU, in bytes of complex data per block: small enough that each block's
# temporaries come back from the heap (glibc maps blocks above 32 MiB afresh on every allocation, page faults and
# all: 20-65 ms per full-size buffer at batch 8 and 128-224 px here) and mostly stay in cache from one step to
# the next, large enough that the per-block calls do not count. 0.5-2 MiB measured alike; 1/4 MiB slower, and
# one block (no blocking) up to 1.4x slower at 224 px.
CPU_CHUNK_BYTES = 2**20


def _chunks(pairs: int, channels: int, plane_bytes: int, target: float):
    """``(pair slice, channel slice)`` blocks covering ``(pairs, channels)`` planes of ``plane_bytes`` each, about
    ``target`` bytes per block: whole pairs when one pair's channels fit, else channel ranges of one pair."""
    per_pair = channels * plane_bytes
    if per_pair <= target:
        step = max(1, int(target // per_pair))
        for j in range(0, pairs, step):
            yield slice(j, min(j + step, pairs)), slice(None)
    else:
        step = max(1, int(target // plane_bytes))
        for j in range(pairs):
            for k in range(0, channels, step):
                yield slice(j, j + 1), slice(k, min(k + step, channels))


class _PairSolve(torch.autograd.Function):
    """``y[j] + i y[j + B/2] = z + crop(ifft2(fft2(z, s) D))`` with ``z = t[j] + i t[j + B/2]`` (odd ``B``: a zero
    imaginary part in the last pair): the same real filter on both samples is complex-linear in ``z``, so one
    full-size complex transform serves two samples and no spectrum needs reversing. ``D = R (x) C - 1`` on the
    full ``(H', W')`` grid, ``r`` ``(T, H')`` and ``c`` ``(T, W')`` complex; ``s = (H', W')`` zero-pads inside the
    transform. Two transforms per direction, run block by block (:func:`_chunks`; one block off the CPU), so that
    the only full-size buffers are the result and, when the filter needs a gradient, ``conj(fft2(z))`` (the size of
    ``t``), saved for backward."""

    @staticmethod
    def forward(ctx, t: Tensor, r: Tensor, c: Tensor, size: Tuple[int, int]) -> Tensor:  # type: ignore[override]
        b, ch, h, w = t.shape
        h2 = (b + 1) // 2
        d = torch.mul(r[:, :, None], c[:, None, :]).sub_(1.0)
        need_filter = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        y = torch.empty(t.shape, dtype=t.dtype, device=t.device)
        saved = torch.empty((h2, ch) + size, dtype=d.dtype, device=t.device) if need_filter else None
        for js, cs in _blocks(t, size, d):
            first, second, js2 = _pair_block(t, js, cs, h2)
            zf = torch.fft.fft2(torch.complex(first, second), s=size)
            if saved is not None:
                torch.conj_physical(zf, out=saved[js, cs])
            _unpair_add_block(torch.fft.ifft2(zf.mul_(d[cs])), t, y, js, js2, cs)
        ctx.save_for_backward(r, c, *((saved,) if need_filter else ()))
        ctx.size = size
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):  # type: ignore[override]
        r, c = ctx.saved_tensors[:2]
        size = ctx.size
        h2 = (g.shape[0] + 1) // 2
        need_filter = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        saved = ctx.saved_tensors[2] if need_filter else None
        d_conj = torch.mul(r[:, :, None], c[:, None, :]).sub_(1.0).conj_physical_()
        grad_d = torch.zeros_like(d_conj) if need_filter else None
        grad_t = torch.empty(g.shape, dtype=g.dtype, device=g.device) if ctx.needs_input_grad[0] else None
        for js, cs in _blocks(g, size, d_conj):
            first, second, js2 = _pair_block(g, js, cs, h2)
            gf = torch.fft.fft2(torch.complex(first, second), s=size)
            if saved is not None:  # dL/dD = sum over pairs of fft2(dL/dy paired) conj(fft2(z)) / (H' W')
                acc = grad_d[cs]
                for i in range(gf.shape[0]):
                    acc.addcmul_(gf[i], saved[js.start + i, cs])
            if grad_t is not None:  # the transposed solve (Theorem 6.4): multiplier conj(D)
                _unpair_add_block(torch.fft.ifft2(gf.mul_(d_conj[cs])), g, grad_t, js, js2, cs)
        grad_r = grad_c = None
        if need_filter:  # the 1 / (H' W') of dL/dD applied to the (T, H') and (T, W') contractions
            scale = 1.0 / (size[0] * size[1])
            grad_r = torch.bmm(grad_d, c.conj_physical()[:, :, None])[..., 0].mul_(scale)
            grad_c = torch.bmm(r.conj_physical()[:, None, :], grad_d)[:, 0].mul_(scale)
        return grad_t, grad_r, grad_c, None


def _blocks(x: Tensor, size: Tuple[int, int], d: Tensor):
    """The blocks of the pairs path for ``x`` ``(B, T, H, W)``: :func:`_chunks` on the CPU, one block elsewhere."""
    pairs, channels = (x.shape[0] + 1) // 2, x.shape[1]
    target = CPU_CHUNK_BYTES if x.device.type == "cpu" else math.inf
    return _chunks(pairs, channels, size[0] * size[1] * d.element_size(), target)


def _pair_block(x: Tensor, js: slice, cs: slice, h2: int) -> Tuple[Tensor, Tensor, slice]:
    """Real and imaginary parts of the pairs ``js`` (channels ``cs``): ``x[js]`` and ``x[js + h2]`` (zeros past
    the batch), and the slice of the second samples."""
    js2 = slice(js.start + h2, min(js.stop + h2, x.shape[0]))
    first, second = x[js, cs], x[js2, cs]
    if second.shape[0] < first.shape[0]:
        second = torch.cat([second, second.new_zeros((first.shape[0] - second.shape[0],) + tuple(second.shape[1:]))])
    return first, second, js2


def _unpair_add_block(out: Tensor, x: Tensor, y: Tensor, js: slice, js2: slice, cs: slice) -> None:
    """``y[js] = x[js] + Re out`` and ``y[js2] = x[js2] + Im out`` (``out`` cropped to ``x``'s spatial size)."""
    parts = torch.view_as_real(out)[..., : x.shape[-2], : x.shape[-1], :]
    torch.add(parts[..., 0], x[js, cs], out=y[js, cs])
    n2 = js2.stop - js2.start
    if n2 > 0:
        torch.add(parts[:n2, ..., 1], x[js2, cs], out=y[js2, cs])


def separable_ar_solve(t: Tensor, sd: Tensor, size: Tuple[int, int], path: Optional[str] = None) -> Tensor:
    """Solve ``A * y = t`` circularly on an ``size = (H', W')`` grid (``t`` zero-padded bottom/right, ``y`` cropped).

    Args:
        t: ``(B, T, H, W)`` real, ``H <= H'``, ``W <= W'``.
        sd: ``(T, 2, Q, 2)``: per channel, axis (rows, columns) and factor, ``(f_-1 + f_1, f_1 - f_-1)``; same
            dtype as ``t``.
        path: ``"pairs"`` (two samples per complex transform) or ``"real"`` (``rfft2`` / ``irfft2``); default
            ``"pairs"`` for a batch of two or more, else ``"real"``. Both give the same result up to rounding.
    Returns:
        ``(B, T, H, W)``.
    Raises:
        ValueError: ``min(H', W') < 2Q+1`` (the grid cannot hold the kernel without aliasing).
    """
    size = (int(size[0]), int(size[1]))
    span = 2 * sd.shape[2] + 1
    if min(size) < span:
        raise ValueError(f"the circular solve of a {span}x{span} AR kernel (Q={sd.shape[2]}) needs a grid of at least "
                         f"{span}x{span}, got {size[0]}x{size[1]}: a smaller grid aliases the kernel's taps "
                         f"(zoo_arma.ar.ar_solve skips the AR part there)")
    if path is None:
        path = "pairs" if t.shape[0] >= 2 else "real"
    if path == "pairs":
        r, c = _axis_responses(sd, size)
        return _PairSolve.apply(t, r, c, size)
    if path == "real":
        return _SeparableSolve.apply(t, sd, size)
    raise ValueError(f"unknown path {path!r}: expected 'pairs' or 'real'")
