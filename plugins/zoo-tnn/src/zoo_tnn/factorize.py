"""Balanced factorisation of channel counts into ``m`` modes (the reshaping of Section 2.4)."""

from __future__ import annotations

from functools import lru_cache
from math import prod
from typing import Iterator, Tuple


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _factorisations(n: int, m: int, smallest: int) -> Iterator[Tuple[int, ...]]:
    """All non-decreasing tuples of ``m`` integers >= ``smallest`` whose product is ``n``."""
    if m == 1:
        if n >= smallest:
            yield (n,)
        return
    for d in _divisors(n):
        if d < smallest:
            continue
        if d**m > n:
            break
        for rest in _factorisations(n // d, m - 1, d):
            yield (d,) + rest


@lru_cache(maxsize=None)
def balanced_factors(n: int, m: int) -> Tuple[int, ...]:
    """Split ``n`` into ``m`` integer factors that are as equal as possible.

    The chosen factorisation minimises the largest factor, then the sum of factors; factors are
    returned largest first. Works for any positive ``n`` (a prime gives ``(n, 1, ..., 1)``).

    >>> balanced_factors(64, 3), balanced_factors(96, 3), balanced_factors(3, 3)
    ((4, 4, 4), (6, 4, 4), (3, 1, 1))
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a positive channel count, got {n!r}")
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"expected a positive number of modes m, got {m!r}")
    best = min(_factorisations(n, m, 1), key=lambda f: (max(f), sum(f)))
    assert prod(best) == n
    return tuple(sorted(best, reverse=True))
