"""The three fast algorithms of approximate (mean-field) propagation, by fan-in E (section 5.2.4).

* :func:`direct_contraction` - small E: Eq. (5.10) literally, enumerating the D^E joint values of the inputs.
* :func:`dft_sum` - medium E: the pmf of a sum of independent categorical units as a product of DFTs.
* :func:`clt_moments` - large E: Lyapunov CLT, the exact mean and variance of sum_k w_k h_k, read as a Gaussian.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple

import torch

from zoo_bqn.dist import Categorical, CategoricalMean, Gaussian, small_matmul
from zoo_bqn.levels import require_uniform, thresholds

_ROUND = 1e-9  # support values closer than this are merged
_DFT_FLOOR = 16.0  # probabilities below this many eps * n after an inverse DFT are round-off


def unique_support(values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of a float64 tensor and the index of each input value in them."""
    keys = torch.round(values / _ROUND).to(torch.int64)
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    support = torch.zeros(uniq.numel(), dtype=torch.float64).scatter_reduce(0, inverse, values, "amax",
                                                                             include_self=False)
    return support, inverse


def direct_contraction(inputs: Sequence[Categorical], fn: Callable[..., torch.Tensor]) -> Categorical:
    """Pmf of ``fn(h_1, ..., h_E)`` for independent categorical units h_e (Eq. 5.10, cost O(D^E) per unit).

    Args:
        inputs: E categoricals whose unit shapes broadcast; probs (..., V_e) over levels (V_e,).
        fn: elementwise function of E float64 tensors (the values of the inputs).
    Returns:
        Categorical over the distinct values of ``fn`` on the joint support.
    """
    if not inputs:
        raise ValueError("direct_contraction needs at least one input distribution")
    grids = torch.meshgrid(*[c.levels for c in inputs], indexing="ij")
    out_values = fn(*grids).reshape(-1).to(torch.float64)
    support, inverse = unique_support(out_values)
    joint = inputs[0].probs
    for c in inputs[1:]:  # outer product over the support dims: (..., V_1 * ... * V_e)
        joint = (joint.unsqueeze(-1) * c.probs.unsqueeze(-2)).flatten(-2)
    scatter = torch.zeros(out_values.numel(), support.numel(), dtype=joint.dtype, device=joint.device)
    scatter[torch.arange(out_values.numel()), inverse.to(joint.device)] = 1.0
    return Categorical(small_matmul(joint, scatter), support)


def _dft_matrices(d: int, n: int, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Real and imaginary parts of the length-n DFT of a length-d signal (d, n), and of the inverse (n, n)."""
    v = torch.arange(n, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(v, v) / n
    cos, sin = torch.cos(angle), torch.sin(angle)
    mats = (cos[:d], -sin[:d], cos / n, sin / n)
    return tuple(m.to(dtype=dtype, device=device) for m in mats)


def dft_sum(probs: torch.Tensor, levels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pmf of the sum of k independent units on a uniform grid, by DFT (cost O(k^2 D^2) per output here).

    The pmf of a sum is the convolution of the summands' pmfs, i.e. the product of their length-n DFTs
    (n = k(D-1)+1, no wrap-around). For these short signals the DFT is applied as a real matrix product.

    Args:
        probs: (..., k, D) pmfs of the k summands over ``levels``.
        levels: (D,) equally spaced float64 values a + b*i.
    Returns:
        (pmf (..., k(D-1)+1), support (k(D-1)+1,)) with support k*a + b*n, n = 0..k(D-1).
    """
    step = require_uniform(levels, "the DFT sum of categorical units")
    k, d = probs.shape[-2], probs.shape[-1]
    n = k * (d - 1) + 1
    fwd_re, fwd_im, inv_re, inv_im = _dft_matrices(d, n, probs.dtype, probs.device)
    re, im = small_matmul(probs, fwd_re), small_matmul(probs, fwd_im)  # (..., k, n)
    acc_re, acc_im = re[..., 0, :], im[..., 0, :]
    for i in range(1, k):
        acc_re, acc_im = (acc_re * re[..., i, :] - acc_im * im[..., i, :],
                          acc_re * im[..., i, :] + acc_im * re[..., i, :])
    pmf = small_matmul(acc_re, inv_re) - small_matmul(acc_im, inv_im)  # real part of the inverse DFT
    # drop round-off (|error| ~ 1e-16 n): keeps exact zeros exact, e.g. for deterministic inputs
    floor = _DFT_FLOOR * n * torch.finfo(pmf.dtype).eps
    pmf = torch.where(pmf > floor, pmf, torch.zeros_like(pmf))
    pmf = pmf / pmf.sum(-1, keepdim=True)
    support = k * levels[0] + step * torch.arange(n, dtype=torch.float64)
    return pmf, support


def mean_pmf(x: CategoricalMean) -> Categorical:
    """The pmf of every unit u = (1/k) sum_i h_i of ``x`` by :func:`dft_sum` (support divided by k)."""
    parts = x.parts()
    pmf, support = dft_sum(parts, x.levels)
    return Categorical(pmf, support / parts.shape[-2])


def clt_moments(mean: torch.Tensor, second: torch.Tensor, w_mean: torch.Tensor, w_second: torch.Tensor,
                op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], deterministic: bool = False) -> Gaussian:
    """Exact mean and variance of z = op(h, w) for independent h and w, returned as a Gaussian (Lyapunov CLT).

    ``op`` is bilinear and sums products h_i w_k over the input dimension 1 of h and w (a linear layer or a
    convolution), so E[z] = op(E h, E w) and Var[z] = op(E h^2, Var w) + op(Var h, (E w)^2), each term >= 0.
    The two variance terms are one ``op`` on inputs and weights concatenated along dimension 1 (one call costs
    less than two small ones); a ``deterministic`` input h (Var h = 0) needs only the first.
    """
    w_var = (w_second - w_mean * w_mean).clamp_min(0.0)
    out_mean = op(mean, w_mean)
    if deterministic:
        out_var = op(second, w_var)
    else:
        h_var = (second - mean * mean).clamp_min(0.0)
        out_var = op(torch.cat([second, h_var], 1), torch.cat([w_var, w_mean * w_mean], 1))
    return Gaussian(out_mean, out_var.clamp_min(0.0))


def gaussian_quantize(x: Gaussian, levels: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Pmf (..., D) of nearest-level quantization q(z / scale) for z ~ N(mean, var) (sign for binary levels),
    stored support-first.

    Level i is taken on [t_{i-1}, t_i) with t the midpoints times ``scale``; var = 0 gives the exact step.
    """
    cuts = (thresholds(levels) * scale).tolist()
    random = x.var > 0
    inv_std = torch.rsqrt(torch.where(random, x.var, torch.ones_like(x.var)))  # no inf: finite gradients at var = 0
    cdf = [torch.where(random, torch.special.ndtr((t - x.mean) * inv_std), (x.mean < t).to(x.mean.dtype))
           for t in cuts]  # P(z < t) per cut, each of the unit shape
    cells = [cdf[0]] + [(hi - lo).clamp_min(0.0) for lo, hi in zip(cdf[:-1], cdf[1:])] + [1.0 - cdf[-1]]
    return torch.stack(cells).movedim(0, -1)  # support-first memory, see Categorical
