"""Paraunitary systems from orthogonal matrices (dissertation section 7.3, Eq. 7.3, Algorithm 1).

A 1-D paraunitary system of span ``K`` taps is the cascade (Eq. 7.3a)

    H(z) = F_{L-}(z) ... F_1(z) Q G_1(z) ... G_{L+}(z),      L- + L+ = K - 1,

with ``Q`` orthogonal and every factor a two-tap filter built from a projector ``P = U U^T``
(``U`` column-orthogonal, Eq. 7.3b / 7.4): ``G = [I - P, P]`` and ``F = [P, I - P]`` (tap 0, tap 1).
Each factor is unitary at every frequency, so ``H`` is. Tensors here are *tap tensors*: the 1-D
system is ``(..., K, C, C)`` (tap, output channel, input channel), the coefficient of tap ``k`` of a
PyTorch cross-correlation kernel. All functions are differentiable and batched over ``...``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def projectors(frames: Tensor, ranks: Tensor) -> Tensor:
    """Orthogonal projectors ``P = U U^T`` where ``U`` is the first ``rank`` columns of ``frames``.

    Args:
        frames: ``(..., C, C)`` orthogonal matrices.
        ranks: ``(...)`` integers in ``[0, C]``: number of columns kept (``N`` in Algorithm 1).
    Returns:
        ``(..., C, C)`` symmetric idempotent matrices of the given ranks.
    """
    if frames.shape[:-2] != ranks.shape:
        raise ValueError(f"frames batch shape {tuple(frames.shape[:-2])} does not match ranks shape {tuple(ranks.shape)}")
    c = frames.shape[-1]
    mask = (torch.arange(c, device=frames.device) < ranks.unsqueeze(-1)).to(frames.dtype)
    return (frames * mask.unsqueeze(-2)) @ frames.transpose(-1, -2)


def _shift(taps: Tensor, front: int, back: int) -> Tensor:
    """Pad the tap axis (-3) of ``(..., K, C, C)`` with ``front`` zero taps before and ``back`` after."""
    return F.pad(taps, (0, 0, 0, 0, front, back))


def paraunitary_1d(q: Tensor, right: Tensor, left: Tensor) -> Tensor:
    """Compose the 1-D paraunitary system of Eq. (7.3a) as a tap tensor.

    Args:
        q: ``(..., C, C)`` orthogonal matrices (the centre factor ``Q``).
        right: ``(..., L+, C, C)`` projectors of the factors ``G_l = [I - P, P]``, multiplied on the right.
        left: ``(..., L-, C, C)`` projectors of the factors ``F_l = [P, I - P]``, multiplied on the left.
    Returns:
        ``(..., L- + L+ + 1, C, C)`` taps ``h[k]``; ``sum_k h[k] e^{jwk}`` is unitary for every ``w``.
    """
    h = q.unsqueeze(-3)
    for i in range(right.shape[-3]):
        hp = h @ right[..., i : i + 1, :, :]
        h = _shift(h - hp, 0, 1) + _shift(hp, 1, 0)
    for i in range(left.shape[-3]):
        p = left[..., i : i + 1, :, :]
        ph = p @ h
        h = _shift(ph, 0, 1) + _shift(h - ph, 1, 0)
    return h


def separable_2d(h1: Tensor, h2: Tensor) -> Tensor:
    """Separable 2-D system ``H(z1, z2) = H1(z1) H2(z2)`` (Algorithm 1, step 3).

    Args:
        h1: ``(..., K1, T, C)`` taps along the height.
        h2: ``(..., K2, C, S)`` taps along the width.
    Returns:
        ``(..., T, S, K1, K2)`` kernel with ``w[..., :, :, i, j] = h1[i] @ h2[j]``.
    """
    return torch.einsum("...itc,...jcs->...tsij", h1, h2)


def polyphase_to_strided(kernel: Tensor, in_channels: int, stride: int) -> Tensor:
    """Reshape a stride-1 kernel on the polyphase input into a strided kernel (Algorithm 2, step 4).

    A convolution with stride ``R`` and kernel ``R K'`` equals a stride-1 convolution with kernel ``K'``
    on the space-to-depth input (``pixel_unshuffle``: channel ``s R^d + r``; Table 7.1, down-strided row).

    Args:
        kernel: ``(T, S * R**d, K', ..., K')`` with ``d`` spatial dims (1 or 2).
        in_channels: ``S``.
        stride: ``R``.
    Returns:
        ``(T, S, R K', ..., R K')``.
    """
    if stride == 1:
        return kernel
    d = kernel.dim() - 2
    t, sr, *ks = kernel.shape
    if sr != in_channels * stride**d:
        raise ValueError(f"expected {in_channels} x {stride}^{d} = {in_channels * stride**d} polyphase channels, got {sr}")
    if d == 1:
        w = kernel.reshape(t, in_channels, stride, ks[0]).permute(0, 1, 3, 2)
        return w.reshape(t, in_channels, ks[0] * stride)
    if d == 2:
        w = kernel.reshape(t, in_channels, stride, stride, ks[0], ks[1]).permute(0, 1, 4, 2, 5, 3)
        return w.reshape(t, in_channels, ks[0] * stride, ks[1] * stride)
    raise ValueError(f"expected a 1-D or 2-D kernel, got {d} spatial dims")
