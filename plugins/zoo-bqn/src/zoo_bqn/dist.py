"""Distributions of activations passed between BQN layers (mean-field: independent units).

* a plain ``torch.Tensor``: deterministic values (e.g. the input image);
* :class:`Gaussian`: pre-activations after a large fan-in layer (CLT), ``mean``/``var`` of shape (B, ...);
* :class:`Categorical`: quantized activations, ``probs`` (B, ..., V) over a support ``levels`` (V,) shared by all units;
* :class:`CategoricalMean`: averages of k independent categorical units (pooling), kept unsummed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Tuple, Union

import torch


@dataclass(frozen=True)
class Gaussian:
    """Independent Gaussian units: ``mean`` and ``var`` (same shape, var >= 0)."""

    mean: torch.Tensor
    var: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.var.shape:
            raise ValueError(f"Gaussian mean {tuple(self.mean.shape)} and var {tuple(self.var.shape)} differ in shape")

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape


@dataclass(frozen=True)
class Categorical:
    """Independent categorical units: ``probs`` (..., V) (rows sum to 1) over ``levels`` (V,), float64 support.

    The layers store ``probs`` support-first where they can (a (V, ...) tensor viewed as (..., V)): then each
    level's probabilities ``probs[..., d]`` are contiguous and moments are a few full-size multiply-adds.
    """

    probs: torch.Tensor
    levels: torch.Tensor

    def __post_init__(self) -> None:
        if self.levels.dim() != 1 or self.probs.shape[-1] != self.levels.numel():
            raise ValueError(f"Categorical probs {tuple(self.probs.shape)} must end with the support size "
                             f"{self.levels.numel()} of levels {tuple(self.levels.shape)}")

    @property
    def shape(self) -> torch.Size:
        """Shape of the units (without the trailing support dimension)."""
        return self.probs.shape[:-1]

    def values(self) -> torch.Tensor:
        """The support in the dtype of ``probs``."""
        return self.levels.to(device=self.probs.device, dtype=self.probs.dtype)


@dataclass(frozen=True)
class CategoricalMean:
    """Independent units u = (1/k) sum_i h_i of k independent categorical h_i over ``levels`` (V,) (pooling).

    ``mean`` and ``var`` (the unit shape) are the closed-form moments of u, all a CLT layer reads; ``parts()``
    builds the summands' pmfs (..., k, V) on demand, for :func:`zoo_bqn.contraction.mean_pmf` (the DFT of
    section 5.2.4) when a layer needs the distribution of u itself.
    """

    mean: torch.Tensor
    var: torch.Tensor
    parts: Callable[[], torch.Tensor]
    levels: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.var.shape:
            raise ValueError(f"CategoricalMean mean {tuple(self.mean.shape)} and var {tuple(self.var.shape)} differ")

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape


Dist = Union[torch.Tensor, Gaussian, Categorical, CategoricalMean]


def small_matmul(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """a (..., p) @ m (p, q) for tiny p, q (support sizes) as a broadcast sum: much faster than a batched
    matmul with a tiny inner dimension on CPU."""
    out = a[..., 0:1] * m[0]
    for i in range(1, m.shape[0]):
        out = out + a[..., i: i + 1] * m[i]
    return out


def expect(probs: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    """sum_d probs[..., d] * values[d] for probs (..., V) -> (...): V full-size multiply-adds with Python scalars
    (no reduction over a tiny innermost dimension, no host-to-device copy of the values)."""
    out = probs[..., 0] * values[0]
    for d in range(1, len(values)):
        out = out + probs[..., d] * values[d]
    return out


def categorical_moments(probs: torch.Tensor, levels: Sequence[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(E[h], E[h^2]) of categorical units ``probs`` (..., V) over ``levels`` (V values)."""
    return expect(probs, levels), expect(probs, [v * v for v in levels])


def moments(x: Dist) -> Tuple[torch.Tensor, torch.Tensor]:
    """First and second raw moments (E[h], E[h^2]) of each unit."""
    if isinstance(x, torch.Tensor):
        return x, x * x
    if isinstance(x, Gaussian):
        return x.mean, x.var + x.mean * x.mean
    if isinstance(x, Categorical):
        return categorical_moments(x.probs, x.levels.tolist())
    if isinstance(x, CategoricalMean):
        m, v = mean_var(x)
        return m, v + m * m
    raise TypeError(f"expected a Tensor, Gaussian, Categorical or CategoricalMean, got {type(x).__name__}")


def mean_var(x: Dist) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance (clamped at 0) of each unit."""
    if isinstance(x, torch.Tensor):
        return x, torch.zeros_like(x)
    if isinstance(x, Gaussian):
        return x.mean, x.var
    if isinstance(x, CategoricalMean):
        return x.mean, x.var
    m, s = moments(x)
    return m, (s - m * m).clamp_min(0.0)


def moment_map(x: Dist) -> torch.Tensor:
    """The units of ``x`` (B, C, ...) as one tensor (B, 2C, ...): their means, then their variances, along
    dimension 1. A following CLT layer reads nothing else (:func:`moments`), so :func:`gaussian_of_moments` turns it
    back into an input it propagates exactly as ``x``."""
    mean, var = mean_var(x)
    return torch.cat([mean, var], 1)


def gaussian_of_moments(t: torch.Tensor) -> Gaussian:
    """Inverse of :func:`moment_map`: (B, 2C, ...) means then variances -> Gaussian units (B, C, ...)."""
    if t.dim() < 2 or t.shape[1] % 2:
        raise ValueError(f"expected a moment map (B, 2C, ...): means then variances along dimension 1, got shape "
                         f"{tuple(t.shape)}")
    c = t.shape[1] // 2
    return Gaussian(t[:, :c], t[:, c:])


def unit_means(x: Dist) -> torch.Tensor:
    """The mean of every unit of ``x`` (its shape)."""
    return mean_var(x)[0]


def reshape(x: Dist, shape: Tuple[int, ...]) -> Dist:
    """Reshape the units of ``x`` (the support dimension of a Categorical is kept last)."""
    if isinstance(x, torch.Tensor):
        return x.reshape(shape)
    if isinstance(x, Gaussian):
        return Gaussian(x.mean.reshape(shape), x.var.reshape(shape))
    if isinstance(x, Categorical):
        return Categorical(x.probs.reshape(*shape, x.probs.shape[-1]), x.levels)
    if isinstance(x, CategoricalMean):
        def parts() -> torch.Tensor:
            p = x.parts()
            return p.reshape(*shape, *p.shape[-2:])

        return CategoricalMean(x.mean.reshape(shape), x.var.reshape(shape), parts, x.levels)
    raise TypeError(f"expected a Tensor, Gaussian, Categorical or CategoricalMean, got {type(x).__name__}")

