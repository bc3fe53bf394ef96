"""Effective receptive field by input gradients (Def. 6.2) and its radius (eq. 6.3); Fig. 6.3's networks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .layer import ARMAConv2d

__all__ = ["ERF", "erf", "erf_radius", "linear_arma_network", "theorem_6_3_radius"]


@dataclass
class ERF:
    """``map``: ``(H, W)`` distribution over input pixels (sums to 1); ``center``: the output pixel ``(i1, i2)``;
    ``radius``: eq. 6.3; ``std``: ``sqrt`` of the trace of the offset covariance (translation invariant)."""

    map: Tensor
    center: Tuple[int, int]
    radius: float
    std: float


def _moments(erf_map: Tensor, center: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    h, w = erf_map.shape
    p1 = center[0] - torch.arange(h, dtype=erf_map.dtype, device=erf_map.device)[:, None]  # input at i1 - p1
    p2 = center[1] - torch.arange(w, dtype=erf_map.dtype, device=erf_map.device)[None, :]
    return p1.expand(h, w), p2.expand(h, w), erf_map


def erf_radius(erf_map: Tensor, center: Tuple[int, int]) -> Tuple[float, float]:
    """``(radius, std)`` of an ERF map seen from output pixel ``center``.

    ``radius^2 = sum (p1^2 + p2^2) ERF - (sum sqrt(p1^2 + p2^2) ERF)^2`` (eq. 6.3), offsets ``p`` from the output
    pixel to the input pixel; ``std^2 = sum (p1^2 + p2^2) ERF - (sum p1 ERF)^2 - (sum p2 ERF)^2``. Both equal the
    closed form of Theorem 6.3 for the causal 1-D networks it describes (all offsets >= 0).
    """
    p1, p2, e = _moments(erf_map.double(), center)
    second = ((p1**2 + p2**2) * e).sum()
    radial = (torch.sqrt(p1**2 + p2**2) * e).sum()
    radius2 = (second - radial**2).clamp_min(0)
    std2 = (second - (p1 * e).sum() ** 2 - (p2 * e).sum() ** 2).clamp_min(0)
    return float(radius2.sqrt()), float(std2.sqrt())


def erf(
    model: nn.Module,
    input_shape: Sequence[int],
    inputs: Optional[Tensor] = None,
    center: Optional[Tuple[int, int]] = None,
    channels: Optional[Sequence[int]] = None,
) -> ERF:
    """ERF of ``model`` (``(1, S, H, W) -> (1, T, H, W)``, same spatial size) at one output pixel.

    For each output channel ``t`` (all, or ``channels``), the gradient of ``Y[t, center]`` with respect to the
    input is taken in absolute value, normalised to sum 1 per input channel ``s`` and averaged over ``s`` and
    ``t`` (Def. 6.2 at a single output position; for shift-invariant networks all positions agree).

    Args:
        input_shape: ``(S, H, W)`` or ``(1, S, H, W)``. inputs: the input to differentiate at (default: standard
            normal with seed 0, in the model's dtype); for linear networks it does not matter.
        center: output pixel, default ``(H // 2, W // 2)``.
    """
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"input_shape must be (S, H, W) or (1, S, H, W), got {tuple(input_shape)}")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    if inputs is None:
        inputs = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    x = inputs.detach().clone().requires_grad_(True)
    y = model(x)
    if y.dim() != 4 or y.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"erf needs an output (1, T, H, W) of the input's spatial size {tuple(x.shape[-2:])}, got {tuple(y.shape)}")
    h, w = x.shape[-2:]
    center = center or (h // 2, w // 2)
    chans = list(range(y.shape[1])) if channels is None else list(channels)
    total = torch.zeros(h, w, dtype=torch.float64, device=x.device)
    count = 0
    for k, t in enumerate(chans):
        (g,) = torch.autograd.grad(y[0, t, center[0], center[1]], x, retain_graph=k < len(chans) - 1)
        g = g[0].abs().double()  # (S, H, W)
        mass = g.sum(dim=(1, 2), keepdim=True)
        keep = mass.flatten() > 0
        if keep.any():
            total += (g[keep] / mass[keep]).sum(0)
            count += int(keep.sum())
    if count == 0:
        raise ValueError("the selected outputs do not depend on the input (all gradients are zero)")
    erf_map = total / count
    radius, std = erf_radius(erf_map, center)
    return ERF(map=erf_map, center=center, radius=radius, std=std)


def theorem_6_3_radius(kernel_sizes: Sequence[int], dilations: Sequence[int], coefficients: Sequence[float]) -> float:
    """Closed form (6.4): ``r^2 = sum_l d_l^2 (K_l^2 - 1) / 12 + a_l / (1 - a_l)^2``."""
    if not len(kernel_sizes) == len(dilations) == len(coefficients):
        raise ValueError("kernel_sizes, dilations and coefficients need one value per layer")
    r2 = 0.0
    for k, d, a in zip(kernel_sizes, dilations, coefficients):
        if not 0.0 <= a < 1.0:
            raise ValueError(f"Theorem 6.3 needs 0 <= a < 1, got {a}")
        r2 += d * d * (k * k - 1) / 12.0 + a / (1.0 - a) ** 2
    return r2**0.5


def linear_arma_network(depth: int, a: float, channels: int = 32, kernel_size: int = 3, seed: int = 0, ar_padding: int = 0) -> nn.Sequential:
    """The linear networks of Fig. 6.3 / 6.5.1: ``depth`` ARMA layers (no activations), ``channels`` channels,
    3x3 MA kernels with Xavier init, 3x3 AR kernels drawn in the stable region ``-a <= f_-1 + f_1 <= 0``."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers = []
        for _ in range(depth):
            layer = ARMAConv2d(channels, channels, kernel_size, ar_kernel_size=3, bias=False, ar_init=a, ar_padding=ar_padding)
            nn.init.xavier_uniform_(layer.weight)
            layers.append(layer)
    finally:
        torch.random.set_rng_state(gen_state)
    return nn.Sequential(*layers)
