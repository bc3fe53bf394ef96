"""Rank from a target compression rate (Section 2.7.1: uniform rate per layer)."""

from __future__ import annotations

from typing import Optional, Sequence

from zoo_tnn.decompositions import Decomposition, TensorNetwork, build_network, get_decomposition

MAX_RANK = 1 << 16


class InfeasibleRate(ValueError):
    """Even rank 1 needs more parameters than ``rate * dense`` for this layer."""


def check_rate(rate: float) -> float:
    """Validate a compression rate given as a fraction of the dense parameters (``0.05`` = 5 %)."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"rate must be a number in (0, 1] (a fraction: 0.05 = 5 %), got {rate!r}") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"rate must be in (0, 1] (a fraction: 0.05 = 5 %), got {rate!r}")
    return value


def network_for_rate(
    decomposition: str | Decomposition,
    out_channels: int,
    in_channels: int,
    kernel_size: Sequence[int],
    rate: float,
    m: Optional[int] = None,
) -> TensorNetwork:
    """The network with the largest rank whose parameter count does not exceed ``rate * dense``.

    Raises:
        InfeasibleRate: when rank 1 already exceeds the budget.
    """
    dec = get_decomposition(decomposition)
    rate = check_rate(rate)

    def net(r: int) -> TensorNetwork:
        return build_network(dec, out_channels, in_channels, kernel_size, r, m)

    first = net(1)
    budget = rate * first.dense_params
    if first.params > budget:
        raise InfeasibleRate(
            f"{dec.name} cannot reach rate {rate:.4g} on a layer {out_channels}x{in_channels}x"
            f"{'x'.join(map(str, kernel_size)) or '-'}: rank 1 already needs {first.params} parameters, "
            f"the budget is {budget:.0f} of {first.dense_params}"
        )
    lo, hi = 1, 2  # invariant: net(lo) fits
    while hi <= MAX_RANK and net(hi).params <= budget:
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_RANK + 1)
    while hi - lo > 1:  # parameter counts are non-decreasing in the rank
        mid = (lo + hi) // 2
        if net(mid).params <= budget:
            lo = mid
        else:
            hi = mid
    # bonds capped at their mode/cut sizes stop growing: report the smallest equivalent rank
    target = net(lo).params
    lo2, hi2 = 0, lo  # net(hi2) has the target count; net(lo2) (if lo2 >= 1) has fewer
    while hi2 - lo2 > 1:
        mid = (lo2 + hi2) // 2
        if net(mid).params == target:
            hi2 = mid
        else:
            lo2 = mid
    return net(hi2)
