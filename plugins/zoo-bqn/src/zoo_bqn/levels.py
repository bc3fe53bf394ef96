"""Quantization level sets Q (the values weights and activations may take).

A level set is a 1-D float64 tensor of D >= 2 finite, strictly increasing values. Named sets:
``binary`` = {-1, 1} (the dissertation's default), ``ternary`` = {-1, 0, 1} and
``quaternary`` = {-1, -1/3, 1/3, 1} (4 uniform levels).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch

LevelSpec = Union[str, Sequence[float], torch.Tensor]

NAMED_LEVELS = {
    "binary": (-1.0, 1.0),
    "ternary": (-1.0, 0.0, 1.0),
    "quaternary": (-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0),
}


def make_levels(spec: LevelSpec) -> torch.Tensor:
    """Validate ``spec`` (a name of :data:`NAMED_LEVELS` or a sequence of values) -> float64 tensor (D,)."""
    if isinstance(spec, str):
        if spec not in NAMED_LEVELS:
            raise ValueError(f"unknown level set {spec!r}: expected one of {sorted(NAMED_LEVELS)} or a list of values")
        return torch.tensor(NAMED_LEVELS[spec], dtype=torch.float64)
    try:
        values = torch.as_tensor(spec, dtype=torch.float64).detach().clone()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a level set must be a name or a list of numbers, got {spec!r}") from exc
    if values.dim() != 1 or values.numel() < 2:
        raise ValueError(f"a level set needs at least 2 values in a flat list, got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError(f"level values must be finite, got {values.tolist()}")
    if not (values[1:] > values[:-1]).all():
        raise ValueError(f"level values must be strictly increasing (no duplicates), got {values.tolist()}")
    return values


def is_uniform(levels: torch.Tensor, rtol: float = 1e-9) -> bool:
    """True when ``levels`` (D,) are equally spaced: levels[i] = levels[0] + i * step, each step within
    ``rtol`` of the first. Read as Python floats (a level set is a constant), so ``torch.export`` traces no
    data-dependent test."""
    values = levels.tolist()
    steps = [b - a for a, b in zip(values[:-1], values[1:])]
    return all(abs(s - steps[0]) <= rtol * abs(steps[0]) for s in steps)


def require_uniform(levels: torch.Tensor, what: str) -> float:
    """Return the spacing of a uniform level set or raise explaining that ``what`` needs one."""
    values = levels.tolist()  # Python floats: no data-dependent tensor arithmetic under torch.export
    if not is_uniform(levels):
        raise ValueError(f"{what} needs equally spaced levels (a grid), got {values}")
    return values[1] - values[0]


def thresholds(levels: torch.Tensor) -> torch.Tensor:
    """Midpoints (D-1,) between consecutive levels: the decision boundaries of nearest-level quantization."""
    return 0.5 * (levels[1:] + levels[:-1])


def bits_per_value(levels: torch.Tensor) -> int:
    """Bits needed to store an index into ``levels`` (1 for binary, 2 for ternary/quaternary)."""
    return max(1, math.ceil(math.log2(levels.numel())))
