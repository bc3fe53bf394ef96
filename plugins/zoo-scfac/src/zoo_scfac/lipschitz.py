"""1-Lipschitz building blocks for orthogonal networks (dissertation 7.5, 7.7.2).

Every module here is 1-Lipschitz in the L2 norm given 1-Lipschitz children, so a network made of
them and of SC-Fac layers is 1-Lipschitz by construction.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GroupSort(nn.Module):
    """MaxMin activation (GroupSort with group size 2): channel pairs ``(a, b) -> (max, min)``; norm preserving."""

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, C, ...)`` with ``C`` even."""
        c = x.shape[1]
        if c % 2:
            raise ValueError(f"GroupSort(2) needs an even number of channels, got {c} (input shape {tuple(x.shape)})")
        pairs = x.unflatten(1, (c // 2, 2))
        a, b = pairs.unbind(2)
        return torch.stack((torch.maximum(a, b), torch.minimum(a, b)), dim=2).flatten(1, 2)


class LipschitzAvgPool2d(nn.Module):
    """Non-overlapping ``k x k`` average pooling multiplied by ``k`` (7.7.2), so its Lipschitz constant is exactly 1.

    ``k * mean`` of ``k^2`` values is ``<x, 1/k>``, a projection onto a unit vector; windows are disjoint.
    Trailing rows/columns that do not fill a window are dropped (a contraction).
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H // k, W // k)``."""
        if self.window == 1:
            return x
        return F.avg_pool2d(x, self.window) * self.window

    def extra_repr(self) -> str:
        return f"window={self.window}"


class ConvexMerge(nn.Module):
    """Residual merge ``a x + (1 - a) f(x)`` with a learnable ``a = sigmoid(logit)`` in (0, 1); 1-Lipschitz."""

    def __init__(self, init_alpha: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < init_alpha < 1.0:
            raise ValueError(f"init_alpha must lie in (0, 1), got {init_alpha}")
        self.logit = nn.Parameter(torch.logit(torch.tensor(float(init_alpha))))

    def forward(self, shortcut: Tensor, residual: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.logit)
        return alpha * shortcut + (1 - alpha) * residual


class ChannelShuffle(nn.Module):
    """ShuffleNet channel permutation ``(groups, C / groups) -> (C / groups, groups)``; orthogonal."""

    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        if c % self.groups:
            raise ValueError(f"{c} channels cannot be shuffled in {self.groups} groups")
        return x.unflatten(1, (self.groups, c // self.groups)).transpose(1, 2).flatten(1, 2)


class SubtractMean(nn.Module):
    """``x - mean`` per channel (a translation: Lipschitz constant 1, unlike dividing by the std)."""

    def __init__(self, mean: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"expected {self.mean.shape[1]} input channels, got shape {tuple(x.shape)}")
        return x - self.mean
