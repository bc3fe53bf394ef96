"""Baseline orthogonal convolutions for the benchmark (dissertation 7.6, Fig. 7.5), written from their definitions.

* :class:`CayleyConv2d` (Trockman & Kolter, 2021): the kernel's DFT on the ``n x n`` input grid (centred
  cross-correlation, as ``nn.Conv2d``; scaled by ``alpha / ||weight||`` where their code divides by the
  spectrum's norm, the same family up to the scalar ``alpha``) is mapped,
  frequency by frequency, through the generalised Cayley transform to a (column-)orthogonal matrix and
  applied in the Fourier domain. It is only defined for circular convolution at one input size, and the
  kernel cannot be cached as a finite filter.
* :class:`RKOConv2d` (reshaped kernel orthogonalisation, Li et al. 2019, the LConvNet layer Trockman & Kolter
  benchmark against): the ``T x (S K^2)`` reshaped kernel is scaled by a power-iteration estimate of its
  spectral norm, made row-orthogonal by 20 first-order Bjorck iterations and divided by ``K``, which makes
  the layer 1-Lipschitz but not orthogonal.
* :class:`BCOPConv2d` (block convolution orthogonal parameterization, Li et al. 2019, after Xiao et al.'s 2018
  block convolution): the ``c x c`` (``c = max(in, out)``) transfer matrix
  ``H prod_j (P_j + (I - P_j) z1)(Q_j + (I - Q_j) z2)`` over ``j = 1 .. K-1`` with an orthogonal ``H`` and
  symmetric projectors ``P = V V^T`` of rank ``c // 2`` (``V``: the first ``c // 2`` columns of an orthogonal
  matrix), cut to ``out x in``; the ``2K - 1`` orthogonal matrices come from 20 Bjorck steps as in LConvNet, so
  the operator is orthogonal (``in = out``) or an isometry / co-isometry to the Bjorck residual, for circular
  padding on any grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_scfac.layers import _EvalCache


def generalized_cayley(w: Tensor) -> Tensor:
    """Column-orthogonal ``(..., m, k)`` matrix from any ``(..., m, k)`` ``w`` (``m >= k``; else row-orthogonal).

    With ``w = [U; V]`` (``U``: ``k x k``), ``A = U - U^H + V^H V`` and
    ``Q = [(I + A)^{-1} (I - A); -2 V (I + A)^{-1}]``; ``Q^H Q = I`` because ``A + A^H = 2 V^H V``.
    """
    m, k = w.shape[-2:]
    if k > m:
        return generalized_cayley(w.transpose(-1, -2)).transpose(-1, -2)
    u, v = w[..., :k, :], w[..., k:, :]
    eye = torch.eye(k, dtype=w.dtype, device=w.device)
    a = u - u.conj().transpose(-1, -2) + v.conj().transpose(-1, -2) @ v
    top = torch.linalg.solve(eye + a, eye - a)
    # V (I + A)^{-1} = ((I + A)^{-T} V^T)^T
    bottom = -2 * torch.linalg.solve((eye + a).transpose(-1, -2), v.transpose(-1, -2)).transpose(-1, -2)
    return torch.cat((top, bottom), dim=-2)


class CayleyConv2d(nn.Module):
    """FFT-based Cayley orthogonal convolution (stride 1, circular). Input ``(B, in, n, n)`` with fixed ``n``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.alpha = nn.Parameter(self.weight.detach().norm().reshape(1))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def spectrum(self, n: int) -> Tensor:
        """``(n, n // 2 + 1, out, in)`` transfer matrices of the centred circular cross-correlation by ``weight``.

        This is what ``nn.Conv2d`` with circular padding ``K // 2`` computes; as in Trockman & Kolter's code, the
        conjugate rfft2 of the kernel times the phase of a shift by ``(K - 1) // 2``.
        """
        shift = (self.kernel_size - 1) // 2
        freqs = torch.arange(n, dtype=self.weight.dtype, device=self.weight.device)
        angle = (-2 * math.pi * shift / n) * (freqs[:, None] + freqs[None, : n // 2 + 1])
        phase = torch.polar(torch.ones_like(angle), angle)
        return (torch.fft.rfft2(self.weight, s=(n, n)).conj() * phase).permute(2, 3, 0, 1)

    def frequency_matrices(self, n: int) -> Tensor:
        """The orthogonal ``(n, n // 2 + 1, out, in)`` complex matrices applied at each rfft2 frequency."""
        return generalized_cayley(self.alpha * self.spectrum(n) / self.weight.norm())

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in, n, n) -> (B, out, n, n)``."""
        n = x.shape[-1]
        if x.shape[-2] != n:
            raise ValueError(f"CayleyConv2d expects square inputs, got {tuple(x.shape)}")
        q = self.frequency_matrices(n)
        xf = torch.fft.rfft2(x).permute(2, 3, 1, 0)  # (n, m, S, B)
        yf = (q @ xf).permute(3, 2, 0, 1)
        y = torch.fft.irfft2(yf, s=(n, n))
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def power_iteration(w: Tensor, iters: int = 10) -> Tensor:
    """Estimate (from below) of the largest singular value of ``(..., m, k)`` ``w``; no gradient. Shape ``(..., 1, 1)``."""
    with torch.no_grad():
        u = torch.ones(w.shape[:-1] + (1,), dtype=w.dtype, device=w.device)
        for _ in range(iters):
            v = w.transpose(-1, -2) @ u
            v = v / v.norm(dim=-2, keepdim=True)
            u = w @ v
            u = u / u.norm(dim=-2, keepdim=True)
        return u.transpose(-1, -2) @ w @ v


def bjorck(w: Tensor, iters: int = 20, beta: float = 0.5) -> Tensor:
    """Bjorck-Bowie orthonormalisation (order 1) of ``(..., m, k)`` ``w`` after power-iteration scaling.

    ``w <- (1 + beta) w - beta w w^T w`` on the tall orientation; singular values in ``(0, sqrt(3))`` move
    towards 1 (never above it after the first step), slowly when they start near 0.
    """
    if w.shape[-2] < w.shape[-1]:
        return bjorck(w.transpose(-1, -2), iters, beta).transpose(-1, -2)
    w = w / power_iteration(w)
    for _ in range(iters):
        w = (1 + beta) * w - beta * w @ (w.transpose(-1, -2) @ w)
    return w


class RKOConv2d(_EvalCache):
    """Reshaped-kernel-orthogonalised convolution (Bjorck), scaled by ``1 / K`` (1-Lipschitz), circular padding.

    As LConvNet's "streamlined" evaluation, the kernel is computed once in ``eval()`` mode and cached.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"RKOConv2d needs an odd kernel size, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.orthogonal_(self.weight, gain=(in_channels * kernel_size**2) ** -0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def kernel(self) -> Tensor:
        """``(out, in, K, K)`` kernel whose reshaped matrix is (nearly) row/column-orthogonal times ``1 / K``."""
        mat = bjorck(self.weight.reshape(self.out_channels, -1))
        return mat.reshape_as(self.weight) / self.kernel_size

    def forward(self, x: Tensor) -> Tensor:
        p = self.kernel_size // 2
        return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), self._cached(self.kernel), self.bias)


def _times_block(taps: Tensor, proj_basis: Tensor, dim: int) -> Tensor:
    """Taps of ``T(z) (P + (I - P) z)`` with ``P = V V^T``, where ``z`` delays along ``dim`` (0: rows, 1: columns).

    ``taps``: ``(A, B, c, c)`` coefficients of ``T(z1, z2)``; ``proj_basis``: ``V``, ``(c, r)`` orthonormal
    columns. Returns ``(A + 1, B, c, c)`` (``dim = 0``) or ``(A, B + 1, c, c)`` (``dim = 1``).
    """
    kept = (taps @ proj_basis) @ proj_basis.transpose(-1, -2)  # T P
    zero = torch.zeros_like(taps.narrow(dim, 0, 1))
    return torch.cat((kept, zero), dim) + torch.cat((zero, taps - kept), dim)


def bcop_kernel(orthos: Tensor, out_channels: int, in_channels: int) -> Tensor:
    """``(out, in, K, K)`` BCOP kernel from ``2K - 1`` orthogonal ``c x c`` matrices ``orthos`` ``(2K - 1, c, c)``.

    ``orthos[0]`` is ``H``; ``orthos[2j - 1]`` and ``orthos[2j]`` give the row and column projectors of block
    ``j`` from their first ``c // 2`` columns. Tap ``[a, b]`` is the coefficient of ``z1^a z2^b``.
    """
    count, c, _ = orthos.shape
    if count % 2 == 0 or max(out_channels, in_channels) != c:
        raise ValueError(f"bcop_kernel expects (2K - 1, c, c) matrices with c = max(out, in) = "
                          f"{max(out_channels, in_channels)}, got {tuple(orthos.shape)}")
    bases = orthos[1:, :, : c // 2]
    taps = orthos[0][None, None]
    for j in range(0, count - 1, 2):
        taps = _times_block(_times_block(taps, bases[j], 0), bases[j + 1], 1)
    return taps[..., :out_channels, :in_channels].permute(2, 3, 0, 1)


class BCOPConv2d(_EvalCache):
    """Block convolution orthogonal parameterization (Li et al. 2019), stride 1, circular padding.

    Parameters: ``2K - 1`` unconstrained ``c x c`` matrices (``c = max(in, out)``), orthogonalised by power-iteration
    scaling and 20 Bjorck steps (:func:`bjorck`) into ``H`` and the projector bases (:func:`bcop_kernel`). Padding
    is ``(K - 1) // 2`` before and ``K // 2`` after each axis, so ``(B, in, n, n) -> (B, out, n, n)`` for any
    ``K >= 1``. As in LConvNet's streamlined evaluation, the kernel is cached in ``eval()`` mode.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size) < 1:
            raise ValueError(f"BCOPConv2d needs channels and kernel_size >= 1, got in={in_channels}, "
                             f"out={out_channels}, kernel_size={kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        c = max(in_channels, out_channels)
        self.weight = nn.Parameter(torch.empty(2 * kernel_size - 1, c, c))
        for mat in self.weight.data:  # LConvNet's initialisation: orthogonal matrices of norm c^-1/2
            nn.init.orthogonal_(mat, gain=c**-0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def kernel(self) -> Tensor:
        """``(out, in, K, K)`` kernel of the (Bjorck-)orthogonal convolution."""
        return bcop_kernel(bjorck(self.weight), self.out_channels, self.in_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in, n, m) -> (B, out, n, m)``, circular."""
        lo, hi = (self.kernel_size - 1) // 2, self.kernel_size // 2
        return F.conv2d(F.pad(x, (lo, hi, lo, hi), mode="circular"), self._cached(self.kernel), self.bias)
