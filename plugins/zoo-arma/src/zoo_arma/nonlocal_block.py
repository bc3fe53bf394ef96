"""Embedded-Gaussian non-local block (Wang et al. 2018, ref. [148] of the dissertation)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["NonLocalBlock2d"]


class NonLocalBlock2d(nn.Module):
    """``z = x + W(softmax(theta(x)^T phi(x)) g(x))`` over all ``H*W`` positions.

    ``theta, phi, g`` are 1x1 convolutions to ``inter_channels`` (default ``channels // 2``); ``W`` is a 1x1
    convolution back to ``channels`` followed by a normalisation whose scale starts at zero, so the block is
    the identity at initialisation. ``norm="batch"`` (U-Nets) or ``"instance"`` (recurrent nets, 6.5.2).
    ``subsample=True`` max-pools ``phi`` and ``g`` by 2 (4x fewer keys). Cost is ``O((HW)^2 C)``.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, inter_channels: Optional[int] = None, norm: str = "batch", subsample: bool = False) -> None:
        super().__init__()
        inter = inter_channels or max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.out = nn.Conv2d(inter, channels, 1)
        if norm == "batch":
            self.norm: nn.Module = nn.BatchNorm2d(channels)
        elif norm == "instance":
            self.norm = nn.InstanceNorm2d(channels, affine=True)
        else:
            raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        self.pool = nn.MaxPool2d(2) if subsample else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q = self.theta(x).flatten(2)  # (B, C', N)
        k = self.pool(self.phi(x)).flatten(2)  # (B, C', M)
        v = self.pool(self.g(x)).flatten(2)  # (B, C', M)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, M)
        y = (v @ attn.transpose(1, 2)).reshape(b, -1, h, w)  # (B, C', H, W)
        return x + self.norm(self.out(y))
