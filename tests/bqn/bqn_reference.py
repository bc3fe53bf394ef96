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


def all_configs(num: int, levels: Sequence[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every assignment of ``num`` variables to ``levels``: (indices, values), each (D^num, num)."""
    d = len(levels)
    codes = torch.arange(d ** num, dtype=torch.int64)
    idx = torch.stack([(codes // d ** (num - 1 - i)) % d for i in range(num)], dim=1)
    return idx, torch.tensor(list(levels), dtype=torch.float64)[idx]


def exact_mlp_predictive(x: torch.Tensor, probs: List[torch.Tensor], levels: Sequence[float], s: float,
                         stochastic: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Brute force over every weight configuration of a binarised MLP (sign hidden units, softmax(z/s) output).

    Args:
        x: (B, I) deterministic inputs; probs: per layer Q(w) of shape (out, in, D).
        stochastic: hidden units are stochastic, P(h = +1 | z) = sigmoid(z), instead of sign(z).
    Returns:
        (E_Q[p(y | x, theta)] (B, K), E_Q[log p(y | x, theta)] (B, K)).
    """
    shapes = [p.shape[:-1] for p in probs]
    sizes = [p.shape[0] * p.shape[1] for p in probs]
    idx, vals = all_configs(sum(sizes), levels)
    flat = torch.cat([p.reshape(-1, p.shape[-1]) for p in probs])  # (n, D)
    q = flat[torch.arange(flat.shape[0]), idx].prod(1)  # (C,)
    mats, k = [], 0
    for (o, i), n in zip(shapes, sizes):
        mats.append(vals[:, k: k + n].reshape(-1, o, i))
        k += n
    # hidden-layer states: for stochastic units enumerate h as well, weighting by P(h | z)
    h_w = [(x.unsqueeze(0).expand(vals.shape[0], -1, -1), torch.ones(vals.shape[0], x.shape[0], dtype=torch.float64))]
    for w in mats[:-1]:
        new = []
        for h, weight in h_w:
            z = h @ w.transpose(1, 2)  # (C, B, out)
            if not stochastic:
                new.append((torch.where(z >= 0, 1.0, -1.0).to(torch.float64), weight))
                continue
            units = z.shape[-1]
            states, svals = all_configs(units, [-1.0, 1.0])
            p_plus = torch.sigmoid(z)
            for row in svals:
                p_state = torch.where(row > 0, p_plus, 1 - p_plus).prod(-1)
                new.append((row.expand_as(z), weight * p_state))
        h_w = new
    like = 0.0
    for h, weight in h_w:
        logits = h @ mats[-1].transpose(1, 2) / s
        like = like + weight.unsqueeze(-1) * torch.softmax(logits, -1)  # p(y | x, theta) summed over h
    pred = (q.view(-1, 1, 1) * like).sum(0)
    ell = (q.view(-1, 1, 1) * torch.log(like)).sum(0)
    return pred, ell


def theorem51_bound(x: torch.Tensor, probs: List[torch.Tensor], levels: Sequence[float], s: float,
                    stochastic: bool = False) -> torch.Tensor:
    """Lbar_n of Theorem 5.1 for a one-hidden-layer binarised MLP, by enumeration (B, K):
    E_{h ~ P(h | x), w_L ~ Q}[log softmax(w_L h / s)], with P the exact (joint) law of the hidden layer."""
    w1, w2 = probs
    n1 = w1.shape[0] * w1.shape[1]
    idx, vals = all_configs(n1, levels)
    flat = w1.reshape(-1, w1.shape[-1])
    q1 = flat[torch.arange(n1), idx].prod(1)
    z = x.unsqueeze(0) @ vals.reshape(-1, w1.shape[0], w1.shape[1]).transpose(1, 2)  # (C1, B, H)
    states_idx, states = all_configs(w1.shape[0], [-1.0, 1.0])
    if stochastic:
        p_plus = torch.sigmoid(z).unsqueeze(2)  # (C1, B, 1, H)
        p_state = torch.where(states > 0, p_plus, 1 - p_plus).prod(-1)  # (C1, B, S)
    else:
        h = torch.where(z >= 0, 1.0, -1.0).to(torch.float64).unsqueeze(2)
        p_state = (h == states).all(-1).to(torch.float64)
    p_h = (q1.view(-1, 1, 1) * p_state).sum(0)  # (B, S)
    n2 = w2.shape[0] * w2.shape[1]
    idx2, vals2 = all_configs(n2, levels)
    q2 = w2.reshape(-1, w2.shape[-1])[torch.arange(n2), idx2].prod(1)
    logits = states.unsqueeze(0) @ vals2.reshape(-1, w2.shape[0], w2.shape[1]).transpose(1, 2) / s  # (C2, S, K)
    e_log = (q2.view(-1, 1, 1) * torch.log_softmax(logits, -1)).sum(0)  # (S, K)
    return p_h @ e_log
