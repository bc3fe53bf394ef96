"""Distributions of activations passed between BQN layers (mean-field: independent units).

* a plain ``torch.Tensor``: deterministic values (e.g. the input image);
* :class:`Gaussian`: pre-activations after a large fan-in layer (CLT), ``mean``/``var`` of shape (B, ...);
* :class:`Categorical`: quantized activations, ``probs`` (B, ..., V) over a support ``levels`` (V,) shared by all units;
* :class:`CategoricalMean`: averages of k independent categorical units (pooling), kept unsummed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union

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
    """Independent categorical units: ``probs`` (..., V) (rows sum to 1) over ``levels`` (V,), float64 support."""

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
    """Independent units u = (1/k) sum_i h_i of k independent categorical h_i: ``parts`` (..., k, V) over ``levels`` (V,).

    The moments of u are closed-form (all a CLT layer needs); :func:`zoo_bqn.contraction.mean_pmf` forms the
    pmf of u by DFT (section 5.2.4) only when a layer needs the distribution itself.
    """

    parts: torch.Tensor
    levels: torch.Tensor

    def __post_init__(self) -> None:
        if self.parts.dim() < 2 or self.levels.dim() != 1 or self.parts.shape[-1] != self.levels.numel():
            raise ValueError(f"CategoricalMean parts {tuple(self.parts.shape)} must end with (k, "
                             f"{self.levels.numel()}) for levels {tuple(self.levels.shape)}")

    @property
    def shape(self) -> torch.Size:
        """Shape of the units (without the trailing (k, V) dimensions)."""
        return self.parts.shape[:-2]


Dist = Union[torch.Tensor, Gaussian, Categorical, CategoricalMean]


def small_matmul(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """a (..., p) @ m (p, q) for tiny p, q (support sizes) as a broadcast sum: much faster than a batched
    matmul with a tiny inner dimension on CPU."""
    out = a[..., 0:1] * m[0]
    for i in range(1, m.shape[0]):
        out = out + a[..., i: i + 1] * m[i]
    return out


def _expect(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_d probs[..., d] * values[d] (..., V) -> (...): a few full-size multiply-adds, no reduction over a tiny
    innermost dimension."""
    out = probs[..., 0] * values[0]
    for d in range(1, values.numel()):
        out = out + probs[..., d] * values[d]
    return out


def _categorical_moments(probs: torch.Tensor, levels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(E[h], E[h^2]) of categorical units ``probs`` (..., V) over ``levels`` (V,)."""
    v = levels.to(device=probs.device, dtype=probs.dtype)
    return _expect(probs, v), _expect(probs, v * v)


def moments(x: Dist) -> Tuple[torch.Tensor, torch.Tensor]:
    """First and second raw moments (E[h], E[h^2]) of each unit."""
    if isinstance(x, torch.Tensor):
        return x, x * x
    if isinstance(x, Gaussian):
        return x.mean, x.var + x.mean * x.mean
    if isinstance(x, Categorical):
        return _categorical_moments(x.probs, x.levels)
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
    if isinstance(x, CategoricalMean):  # independent parts: E[u] = mean of E[h_i], Var[u] = sum Var[h_i] / k^2
        k = x.parts.shape[-2]
        m, s = _categorical_moments(x.parts, x.levels)  # (..., k)
        return m.mean(-1), (s - m * m).clamp_min(0.0).sum(-1) / (k * k)
    m, s = moments(x)
    return m, (s - m * m).clamp_min(0.0)


def reshape(x: Dist, shape: Tuple[int, ...]) -> Dist:
    """Reshape the units of ``x`` (the support dimension of a Categorical is kept last)."""
    if isinstance(x, torch.Tensor):
        return x.reshape(shape)
    if isinstance(x, Gaussian):
        return Gaussian(x.mean.reshape(shape), x.var.reshape(shape))
    if isinstance(x, Categorical):
        return Categorical(x.probs.reshape(*shape, x.probs.shape[-1]), x.levels)
    if isinstance(x, CategoricalMean):
        return CategoricalMean(x.parts.reshape(*shape, *x.parts.shape[-2:]), x.levels)
    raise TypeError(f"expected a Tensor, Gaussian, Categorical or CategoricalMean, got {type(x).__name__}")

