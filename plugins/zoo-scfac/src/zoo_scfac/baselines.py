"""Baseline orthogonal convolutions for the benchmark (dissertation 7.6, Fig. 7.5), written from their definitions.

* :class:`CayleyConv2d` (Trockman & Kolter, 2021): the kernel's DFT on the ``n x n`` input grid is mapped,
  frequency by frequency, through the generalised Cayley transform to a (column-)orthogonal matrix and
  applied in the Fourier domain. It is only defined for circular convolution at one input size, and the
  kernel cannot be cached as a finite filter.
* :class:`RKOConv2d` (reshaped kernel orthogonalisation): the ``T x (S K^2)`` reshaped kernel is made
  row-orthogonal by the same Cayley transform and divided by ``K``, which makes the layer 1-Lipschitz but
  not orthogonal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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

    def frequency_matrices(self, n: int) -> Tensor:
        """The orthogonal ``(n, n // 2 + 1, out, in)`` complex matrices applied at each rfft2 frequency."""
        w = self.alpha * self.weight / self.weight.norm()
        spectrum = torch.fft.rfft2(w, s=(n, n))  # (T, S, n, n//2+1)
        return generalized_cayley(spectrum.permute(2, 3, 0, 1))

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


class RKOConv2d(nn.Module):
    """Reshaped-kernel-orthogonalised convolution, scaled by ``1 / K`` (1-Lipschitz), circular padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"RKOConv2d needs an odd kernel size, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def kernel(self) -> Tensor:
        """``(out, in, K, K)`` kernel whose reshaped matrix is row/column-orthogonal times ``1 / K``."""
        k = self.kernel_size
        mat = generalized_cayley(self.weight.reshape(self.out_channels, -1))
        return mat.reshape_as(self.weight) / k

    def forward(self, x: Tensor) -> Tensor:
        p = self.kernel_size // 2
        return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), self.kernel(), self.bias)
