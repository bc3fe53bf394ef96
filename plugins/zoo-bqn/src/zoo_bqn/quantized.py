"""Deterministic quantized networks (QNNs) with bit-packed weights: what a BQN exports (MAP or one sample).

The functional forms here (``linear``, ``conv``, ``quantize``, ``avg_pool``) are also what the BQN layers call for
their MAP / Monte-Carlo passes, so an exported network reproduces those predictions bit for bit.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from zoo_bqn.levels import bits_per_value, thresholds

# --------------------------------------------------------------------------------------------- functional forms


def quantize(x: torch.Tensor, levels: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Nearest-level quantization of x / scale: levels[i] on [t_{i-1}, t_i) (sign with sign(0) = +1 for binary)."""
    cuts = (thresholds(levels) * scale).to(device=x.device, dtype=x.dtype)
    idx = torch.bucketize(x, cuts, right=True)
    return levels.to(device=x.device, dtype=x.dtype)[idx]


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (B, in) @ weight (out, in)^T -> (B, out), no bias."""
    return F.linear(x, weight)


def conv(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """2-D convolution without bias; x (B, C, H, W), weight (O, C, k, k); zero padding."""
    return F.conv2d(x, weight, stride=stride, padding=padding)


def avg_pool(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Non-overlapping k x k average pooling (floor mode)."""
    return F.avg_pool2d(x, kernel)


# ----------------------------------------------------------------------------------------------- bit packing


def storage_bits(num_levels: int) -> int:
    """Bits per packed index: the smallest of 1, 2, 4, 8 holding ``num_levels`` values."""
    need = bits_per_value(torch.zeros(num_levels))
    for bits in (1, 2, 4, 8):
        if need <= bits:
            return bits
    raise ValueError(f"at most 256 levels can be packed, got {num_levels}")


def pack_indices(idx: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer indices in [0, 2^bits) (any shape) into a flat uint8 tensor, little-endian within a byte."""
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"bits must be 1, 2, 4 or 8, got {bits}")
    flat = idx.reshape(-1).to(torch.int64)
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2 ** bits):
        raise ValueError(f"indices must lie in [0, {2 ** bits}), got [{int(flat.min())}, {int(flat.max())}]")
    per_byte = 8 // bits
    pad = (-flat.numel()) % per_byte
    flat = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int64) * bits
    return (flat << shifts).sum(-1).to(torch.uint8)


def unpack_indices(packed: torch.Tensor, bits: int, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`pack_indices`: int64 indices of the given shape."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int64, device=packed.device) * bits
    flat = (packed.to(torch.int64).unsqueeze(-1) >> shifts) & (2 ** bits - 1)
    numel = 1
    for d in shape:
        numel *= int(d)
    return flat.reshape(-1)[:numel].reshape(tuple(shape))


# ------------------------------------------------------------------------------------------------ modules


class PackedWeight(nn.Module):
    """A weight tensor stored as packed level indices; ``value()`` gives the float weights."""

    def __init__(self, idx: torch.Tensor, levels: torch.Tensor) -> None:
        super().__init__()
        self.bits = storage_bits(levels.numel())
        self.shape: Tuple[int, ...] = tuple(idx.shape)
        self.register_buffer("packed", pack_indices(idx.cpu(), self.bits))
        self.register_buffer("levels", levels.clone().to(torch.float64))

    def value(self, dtype: torch.dtype) -> torch.Tensor:
        """The weights (shape ``self.shape``) in ``dtype``."""
        idx = unpack_indices(self.packed, self.bits, self.shape)
        return self.levels.to(dtype)[idx]

    def nbytes(self) -> int:
        """Bytes of the packed indices."""
        return self.packed.numel()


class QLinear(nn.Module):
    """Bias-free linear layer with packed quantized weights (out, in)."""

    def __init__(self, idx: torch.Tensor, levels: torch.Tensor) -> None:
        super().__init__()
        self.weight = PackedWeight(idx, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight.value(x.dtype))


class QConv2d(nn.Module):
    """Bias-free convolution with packed quantized weights (O, C, k, k)."""

    def __init__(self, idx: torch.Tensor, levels: torch.Tensor, stride: int, padding: int) -> None:
        super().__init__()
        self.weight = PackedWeight(idx, levels)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv(x, self.weight.value(x.dtype), self.stride, self.padding)


class QAct(nn.Module):
    """Quantized activation (sign for binary levels)."""

    def __init__(self, levels: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("levels", levels.clone().to(torch.float64))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x, self.levels, self.scale)


class QAvgPool(nn.Module):
    """k x k average pooling."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool(x, self.kernel)


class QResidual(nn.Module):
    """x + body(x) (batch-norm-free shortcut)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class QuantizedClassifier(nn.Module):
    """A deterministic QNN: ``forward(x)`` -> log_softmax(logits / s) (B, K)."""

    def __init__(self, features: nn.Module, head: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.features, self.head = features, head
        self.register_buffer("scale", scale.detach().clone())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Integer-valued (for quantized inputs) pre-softmax outputs (B, K), before dividing by s."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits(x) / self.scale.to(x.dtype), dim=-1)

    def size_bytes(self) -> int:
        """Bytes needed to store the network: its stored weights (every module with ``nbytes()``: the packed
        weights, and an input channel mix other than the identity) plus the float32 softmax scale."""
        return sum(m.nbytes() for m in self.modules() if callable(getattr(m, "nbytes", None))) + 4

    def num_weights(self) -> int:
        """Number of quantized weights."""
        total = 0
        for m in self.modules():
            if isinstance(m, PackedWeight):
                n = 1
                for d in m.shape:
                    n *= d
                total += n
        return total
