"""Enumerate every pairwise path (opt_einsum linear format) of n operands, for forcing each path in tests."""

from __future__ import annotations

import itertools
import random
from typing import Iterator


def all_paths(n: int) -> Iterator[list[tuple[int, int]]]:
    """Every sequence of pair contractions of n operands (results appended at the end)."""
    if n <= 1:
        yield []
        return
    for pair in itertools.combinations(range(n), 2):
        for rest in all_paths(n - 1):
            yield [pair, *rest]


def some_paths(n: int, k: int, seed: int = 0) -> list[list[tuple[int, int]]]:
    """All paths if there are at most k, else k distinct random ones."""
    paths = list(all_paths(n)) if n <= 5 else None
    if paths is not None and len(paths) <= k:
        return paths
    rng = random.Random(seed)
    if paths is not None:
        return rng.sample(paths, k)
    out = []
    for _ in range(k):
        m, path = n, []
        while m > 1:
            path.append(tuple(sorted(rng.sample(range(m), 2))))
            m -= 1
        out.append(path)
    return out
