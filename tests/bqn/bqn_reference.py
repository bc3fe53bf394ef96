"""Independent brute-force references for the BQN tests (plain enumeration, no zoo_bqn propagation code)."""

from __future__ import annotations

import itertools
import math
from typing import Iterator, List, Sequence, Tuple

import torch


def enumerate_products(pmfs: Sequence[Sequence[float]], supports: Sequence[Sequence[float]]
                       ) -> Iterator[Tuple[float, Tuple[float, ...]]]:
    """Yield (probability, values) for every joint configuration of independent categorical variables."""
    ranges = [range(len(s)) for s in supports]
    for combo in itertools.product(*ranges):
        p = 1.0
        for var, i in enumerate(combo):
            p *= float(pmfs[var][i])
        yield p, tuple(float(supports[var][i]) for var, i in enumerate(combo))


def pmf_of(fn, pmfs, supports, ndigits: int = 9) -> dict:
    """Exact pmf {value: prob} of fn(*values) by enumeration."""
    out: dict = {}
    for p, vals in enumerate_products(pmfs, supports):
        v = round(float(fn(*vals)), ndigits)
        out[v] = out.get(v, 0.0) + p
    return out


def mean_var_of(fn, pmfs, supports) -> Tuple[float, float]:
    """Exact mean and variance of fn(*values) by enumeration."""
    m = s = 0.0
    for p, vals in enumerate_products(pmfs, supports):
        v = float(fn(*vals))
        m += p * v
        s += p * v * v
    return m, s - m * m


def sign(z: float) -> float:
    """sign with sign(0) = +1 (the QNN convention)."""
    return 1.0 if z >= 0 else -1.0


def mlp_forward(x: Sequence[float], weights: List[List[List[float]]]) -> List[float]:
    """A fully binarised MLP by hand: sign after every layer but the last; weights[l][out][in]."""
    h = [float(v) for v in x]
    for layer, w in enumerate(weights):
        z = [sum(w[j][i] * h[i] for i in range(len(h))) for j in range(len(w))]
        h = [sign(v) for v in z] if layer < len(weights) - 1 else z
    return h


def log_softmax(z: Sequence[float], s: float) -> List[float]:
    m = max(v / s for v in z)
    lse = m + math.log(sum(math.exp(v / s - m) for v in z))
    return [v / s - lse for v in z]


def weight_configs(probs: List[torch.Tensor], levels: Sequence[float]):
    """Yield (Q(theta), [W_l as nested lists]) for every configuration of the weight tensors (out, in, D)."""
    flat = [p.reshape(-1, p.shape[-1]) for p in probs]
    shapes = [p.shape[:-1] for p in probs]
    sizes = [f.shape[0] for f in flat]
    all_pmfs = [row.tolist() for f in flat for row in f]
    supports = [list(levels)] * len(all_pmfs)
    for q, vals in enumerate_products(all_pmfs, supports):
        mats, k = [], 0
        for (o, i), n in zip(shapes, sizes):
            chunk = vals[k: k + n]
            mats.append([list(chunk[r * i: (r + 1) * i]) for r in range(o)])
            k += n
        yield q, mats
