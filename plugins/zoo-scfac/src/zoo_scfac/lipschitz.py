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


class InputMix(nn.Module):
    """A fixed (never trained) bias-free 1 x 1 mix of the input channels:
    ``(B, in_chans, H, W) -> (B, out_chans, H, W)`` with ``weight`` ``(out_chans, in_chans, 1, 1)``, a buffer.

    Built by the rule the zoo adapts a pretrained ``first_conv`` by (:func:`zoo.hub.state.adapt_input_conv`, timm's
    ``adapt_input_conv``) applied to the ``out_chans`` identity: the identity for ``in_chans == out_chans``; ones
    (a grey image replicated) for one input channel; otherwise the identity's columns repeated and scaled. It is
    the model's ``first_conv``, so a pretrained ``weight`` adapts by the same rule. Its Lipschitz constant (L2) is the
    largest singular value of the ``(out_chans, in_chans)`` matrix (:meth:`lipschitz_bound`), 1 for the identity.
    """

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        if in_chans < 1 or out_chans < 1:
            raise ValueError(f"channel counts must be >= 1, got in_chans={in_chans}, out_chans={out_chans}")
        self.in_chans, self.out_chans = in_chans, out_chans
        weight = torch.eye(out_chans).reshape(out_chans, out_chans, 1, 1)
        if in_chans != out_chans:
            from zoo.hub.state import adapt_input_conv  # the rule the zoo adapts a pretrained first_conv by

            weight = adapt_input_conv(in_chans, weight)
        self.register_buffer("weight", weight)

    def lipschitz_bound(self) -> float:
        """Largest singular value of the ``(out_chans, in_chans)`` mix (in float64): its L2 Lipschitz constant."""
        return float(torch.linalg.matrix_norm(self.weight.detach().flatten(1).double(), ord=2))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W) -> (B, out_chans, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected (B, {self.in_chans}, H, W) images, got shape {tuple(x.shape)}")
        return F.conv2d(x, self.weight.to(x.dtype))

    def extra_repr(self) -> str:
        return f"{self.in_chans}, {self.out_chans}, fixed"
