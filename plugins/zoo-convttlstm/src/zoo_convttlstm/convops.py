"""The 2-D convolution used inside the recurrent cells, with a selectable backend.

``backend="torch"`` calls :func:`torch.nn.functional.conv2d`; ``backend="conv_einsum"`` routes the same
cross-correlation through :func:`zoo.conv_einsum.conv_einsum` (imported lazily). Both compute
``y[b, o, p] = bias[o] + sum_{i, u} w[o, i, u] x[b, i, p + u - k // 2]`` with "same" output size.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

Backend = Literal["torch", "conv_einsum"]
PaddingMode = Literal["zeros", "circular"]
BACKENDS = ("torch", "conv_einsum")
PADDING_MODES = ("zeros", "circular")


def check_choice(name: str, value: str, allowed: tuple) -> str:
    """Return ``value`` or raise ``ValueError`` naming the allowed choices."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def same_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    padding_mode: str = "zeros",
    backend: str = "torch",
) -> torch.Tensor:
    """Stride-1 "same" cross-correlation of ``x`` (B, Cin, H, W) with ``weight`` (Cout, Cin, k, k), odd k.

    Returns (B, Cout, H, W). ``padding_mode`` "zeros" or "circular" (periodic boundary)."""
    k = weight.shape[-1]
    pad = k // 2
    if backend == "torch":
        if padding_mode == "circular" and pad > 0:
            x = F.pad(x, (pad, pad, pad, pad), mode="circular")
            return F.conv2d(x, weight, bias)
        return F.conv2d(x, weight, bias, padding=pad)
    if backend == "conv_einsum":
        from zoo.conv_einsum import conv_einsum  # lazy: optional engine

        y = conv_einsum("bihw,oihw->bohw|hw", x, weight, padding=pad, padding_mode=padding_mode)
        return y if bias is None else y + bias.view(1, -1, 1, 1)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
