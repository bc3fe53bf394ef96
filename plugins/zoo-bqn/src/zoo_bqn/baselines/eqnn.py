"""E-QNN: a bootstrap ensemble of fully binarised MLPs or CNNs trained with the straight-through estimator (STE).

Members average their logits (section 5.4.1). Pre-activations are divided by sqrt(fan-in) before the sign so
that the STE window |z| <= 1 is not empty without batch norm (the sign itself is unchanged by the scaling).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _SignSTE(torch.autograd.Function):
    """Forward sign(x) (sign(0) = +1); backward passes the gradient where |x| <= 1 (hard-tanh STE)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign with a straight-through gradient."""
    return _SignSTE.apply(x)


class LatentBinaryNet(nn.Module):
    """Base of the QNNs: real latent weights ``weights`` in [-1, 1], binarised by ``sign_ste`` in ``forward``."""

    weights: nn.ParameterList

    @torch.no_grad()
    def clip_(self) -> None:
        """Keep latent weights in [-1, 1] (run after each optimiser step)."""
        for w in self.weights:
            w.clamp_(-1.0, 1.0)


class QNNMLP(LatentBinaryNet):
    """Binary-weight, binary-activation MLP with real latent weights in [-1, 1]; forward -> logits / s (B, K)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        self.weights = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = math.sqrt(6.0 / (a + b))
            self.weights.append(nn.Parameter(torch.empty(b, a).uniform_(-bound, bound)))
        self.log_scale = nn.Parameter(torch.tensor(0.5 * math.log(sizes[-2])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        for i, w in enumerate(self.weights):
            z = F.linear(h, sign_ste(w))
            if i < len(self.weights) - 1:
                h = sign_ste(z / math.sqrt(w.shape[1]))
        return z / self.log_scale.exp()


class QNNCNN(LatentBinaryNet):
    """The CNN of ``bqn_cnn`` as a binary QNN: [conv k x k ('same') -> sign -> 2 x 2 average pool] per stage,
    a linear head; real latent weights in [-1, 1]; forward -> logits / s (B, K)."""

    def __init__(self, in_chans: int, img_size: int, channels: Sequence[int], kernel_size: int,
                 num_classes: int) -> None:
        super().__init__()
        self.weights = nn.ParameterList()
        c, size = in_chans, img_size
        for out in channels:
            bound = math.sqrt(6.0 / ((c + out) * kernel_size ** 2))
            self.weights.append(nn.Parameter(torch.empty(out, c, kernel_size, kernel_size).uniform_(-bound, bound)))
            c, size = out, size // 2
        features = c * size * size
        bound = math.sqrt(6.0 / (features + num_classes))
        self.weights.append(nn.Parameter(torch.empty(num_classes, features).uniform_(-bound, bound)))
        self.log_scale = nn.Parameter(torch.tensor(0.5 * math.log(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for w in self.weights[:-1]:
            fan_in = w[0].numel()
            h = F.avg_pool2d(sign_ste(F.conv2d(h, sign_ste(w), padding=w.shape[-1] // 2) / math.sqrt(fan_in)), 2)
        return F.linear(h.flatten(1), sign_ste(self.weights[-1])) / self.log_scale.exp()


class EnsembleQNN(nn.Module):
    """Averages the (scaled) logits of its members; ``forward`` -> log-probabilities (B, K)."""

    def __init__(self, members: Sequence[LatentBinaryNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(x) for m in self.members]).mean(0)
        return torch.log_softmax(logits, dim=-1)

    def size_bytes(self) -> int:
        """Storage of the binarised ensemble: 1 bit per weight plus one float32 scale per member."""
        bits = sum(w.numel() for m in self.members for w in m.weights)
        return math.ceil(bits / 8) + 4 * len(self.members)


def bootstrap_indices(n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices drawn with replacement from range(n)."""
    return torch.randint(0, n, (n,), generator=generator)
