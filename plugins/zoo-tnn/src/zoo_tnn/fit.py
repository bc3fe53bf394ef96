"""Layer-Decomp (Eq. 2.8): fit the factors of a tensor network to a dense kernel.

Start from the decomposition's SVD-based factors (TT-SVD, HOSVD, exact/SVD CP; random for a
decomposition that provides none), then alternating least squares: with all factors but one fixed,
the reconstruction is linear in the free factor ``X`` (``A(X)``) and ``X`` solves the normal equations
``A^T A X = A^T K``. ``A^T A`` only mixes the free factor's bond legs, so it is built as a small Gram
matrix (the network without ``X`` contracted with its own copy over the kernel legs) and solved directly;
where that matrix would be large (a Tucker core's many bonds) conjugate gradients solve the same
equations with ``A`` and ``A^T`` as einsums of the network. Either way this works for any decomposition,
built-in or plugin.

After each sweep a step along the sweep's change is tried (Bro's line search: ``k^(1/p)`` times it,
kept only when it lowers the error), which shortens ALS's slow stretches ("swamps"). Sweeps run until the
relative error stops improving: the fit stops after two consecutive sweeps that each lower it by less
than ``tol`` times itself (default 1e-4; one slow sweep is often a swamp, not the end), when it is exact
(below 1e-12), or after ``sweeps`` sweeps (a cap, default 500). See docs/fidelity.md for the measurements.

ALS leaves the scale of each factor free (only their product is fixed), and in a ring it drifts: one mTR
factor ends hundreds of times larger than the others. Fitted factors are therefore rescaled to equal norms
(:func:`balance_norms`, exact: the same kernel), so that an optimiser that steps every entry alike (Adam)
moves every factor alike.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from math import prod
from typing import Any, Callable, Dict, List, Optional

import opt_einsum
import torch
from torch import Tensor

from zoo_tnn.decompositions import TensorNetwork, get_decomposition

PATIENCE = 2  # consecutive slow sweeps before stopping (one slow sweep is often an ALS swamp, not the end)
DIRECT_MAX_BOND = 512  # largest product of bond sizes solved directly (a Gram matrix of DIRECT_MAX_BOND^2)


@dataclass
class FitResult:
    """Fitted factors (network order, the kernel's dtype) and ``||K - K_hat|| / ||K||``."""

    factors: List[Tensor]
    relative_error: float
    initial_error: float
    sweeps: int


def reconstruct(net: TensorNetwork, factors: List[Tensor]) -> Tensor:
    """Kernel with one axis per mode (``net.kernel_letters``)."""
    return _expression(net.kernel_equation, tuple(tuple(f.shape) for f in factors))(*factors, backend="torch")


def _operators(net: TensorNetwork, factors: List[Tensor], i: int) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    terms = [f.letters for f in net.factors]
    others = [t for j, t in enumerate(terms) if j != i]
    other_tensors = [f for j, f in enumerate(factors) if j != i]
    fwd_eq = ",".join(terms[:i] + ["@"] + terms[i + 1 :]).replace("@", terms[i]) + "->" + net.kernel_letters
    adj_eq = ",".join(others + [net.kernel_letters]) + "->" + terms[i]

    shapes = [tuple(f.shape) for f in factors]
    fwd_expr = _expression(fwd_eq, tuple(shapes))
    adj_expr = _expression(adj_eq, tuple(shapes[:i] + shapes[i + 1 :]) + (tuple(_kernel_shape(net)),))

    def forward(x: Tensor) -> Tensor:
        return fwd_expr(*factors[:i], x, *factors[i + 1 :], backend="torch")

    def adjoint(y: Tensor) -> Tensor:
        return adj_expr(*other_tensors, y, backend="torch")

    return forward, adjoint


@lru_cache(maxsize=512)
def _expression(eq: str, shapes: tuple) -> Any:
    """A contraction with its path computed once (opt_einsum)."""
    return opt_einsum.contract_expression(eq, *shapes)


def _kernel_shape(net: TensorNetwork) -> List[int]:
    return [m.size for m in net.out_modes + net.in_modes + net.kernel_modes]


def _cg(normal: Callable[[Tensor], Tensor], b: Tensor, x: Tensor, iters: int, tol: float) -> Tensor:
    r = b - normal(x)
    p = r.clone()
    rs = (r * r).sum()
    bnorm = (b * b).sum().clamp_min(1e-300)
    for _ in range(iters):
        if rs <= tol**2 * bnorm:
            break
        ap = normal(p)
        denom = (p * ap).sum()
        if denom <= 0:
            break
        alpha = rs / denom
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum()
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


@dataclass(frozen=True)
class _Legs:
    """The free factor's letters by role: ``rows`` (kernel legs of this factor only), ``batch`` (kernel
    legs other factors carry too), ``bonds`` (shared with other factors only), ``bonds2`` (fresh names
    for the bonds in the Gram matrix) and ``rename`` (the other factors' letters in the Gram's copy)."""

    rows: str
    batch: str
    bonds: str
    bonds2: str
    rename: Dict[str, str]


def _legs(net: TensorNetwork, i: int) -> Optional[_Legs]:
    """Roles of factor ``i``'s letters, or None when the normal equations are not a small Gram solve
    (a letter private to the factor, too many bond values, or no fresh letters left)."""
    kernel = set(net.kernel_letters)
    letters = net.factors[i].letters
    others = set("".join(f.letters for j, f in enumerate(net.factors) if j != i))
    if not others or len(set(letters)) != len(letters) or any(c not in kernel and c not in others for c in letters):
        return None
    bonds = "".join(c for c in letters if c not in kernel)
    sizes = {m.letter: m.size for f in net.factors for m in f.modes}
    if prod(sizes[c] for c in bonds) > DIRECT_MAX_BOND:
        return None
    internal = sorted(c for c in others if c not in kernel)
    used = set("".join(f.letters for f in net.factors)) | kernel
    fresh = [c for c in string.ascii_letters if c not in used]
    if len(fresh) < len(internal):
        return None
    rename = dict(zip(internal, fresh))
    return _Legs(rows="".join(c for c in letters if c in kernel and c not in others),
                 batch="".join(c for c in letters if c in kernel and c in others),
                 bonds=bonds, bonds2="".join(rename[c] for c in bonds), rename=rename)


def _direct_update(net: TensorNetwork, kernel: Tensor, factors: List[Tensor], i: int, legs: _Legs,
                   ridge: float) -> Tensor:
    """The exact least-squares factor ``i``: ``X G = B`` per batch value, ``G`` the bonds' Gram matrix."""
    terms = [f.letters for j, f in enumerate(net.factors) if j != i]
    others = [f for j, f in enumerate(factors) if j != i]
    shapes = tuple(tuple(f.shape) for f in others)
    copy = ["".join(legs.rename.get(c, c) for c in t) for t in terms]
    gram_eq = ",".join(terms + copy) + "->" + legs.batch + legs.bonds + legs.bonds2
    order = legs.batch + legs.rows + legs.bonds
    rhs_eq = ",".join(terms + [net.kernel_letters]) + "->" + order
    gram = _expression(gram_eq, shapes + shapes)(*others, *others, backend="torch")
    rhs = _expression(rhs_eq, shapes + (tuple(kernel.shape),))(*others, kernel, backend="torch")
    n = prod(gram.shape[len(legs.batch): len(legs.batch) + len(legs.bonds)])
    gram = gram.reshape(-1, n, n)
    rhs = rhs.reshape(gram.shape[0], -1, n)
    # proximal ridge: pull towards the current factor (not towards 0), so a fixed point is not biased
    lam = ridge * gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
    current = torch.einsum(f"{net.factors[i].letters}->{order}", factors[i]).reshape(rhs.shape)
    rhs = rhs + lam[:, None, None] * current
    gram = gram + lam[:, None, None] * torch.eye(n, dtype=gram.dtype, device=gram.device)
    try:
        x = torch.linalg.solve(gram, rhs.transpose(-1, -2)).transpose(-1, -2)
    except RuntimeError:  # singular even with the ridge (e.g. all other factors zero)
        x = rhs @ torch.linalg.pinv(gram, hermitian=True)
    sizes = {m.letter: m.size for m in net.factors[i].modes}
    x = x.reshape([sizes[c] for c in order])
    return torch.einsum(f"{order}->{net.factors[i].letters}", x)


def _cg_update(net: TensorNetwork, kernel: Tensor, factors: List[Tensor], i: int, cg_iters: int,
               ridge: float) -> Tensor:
    """Factor ``i`` from the normal equations by conjugate gradients (any network)."""
    fwd, adj = _operators(net, factors, i)
    b = adj(kernel)
    scale = ridge * float((b * b).sum().sqrt()) / max(float(factors[i].norm()), 1e-30)

    def normal(x: Tensor) -> Tensor:
        return adj(fwd(x)) + scale * x

    return _cg(normal, b, factors[i], cg_iters, 1e-10)


def als(net: TensorNetwork, kernel: Tensor, factors: List[Tensor], sweeps: int = 500, tol: float = 1e-4,
        cg_iters: int = 25, ridge: float = 1e-10, extrapolate: bool = True) -> tuple[List[Tensor], int]:
    """Alternating least squares on ``||kernel - reconstruct(factors)||``; returns factors, sweeps run.

    Stops after ``PATIENCE`` consecutive sweeps that each lower the relative error by less than ``tol``
    times itself, when the error is below 1e-12 (exact), or after ``sweeps`` sweeps. ``extrapolate``: after
    sweep ``k`` try ``k^(1/p)`` times the sweep's change (Bro's line search; ``p`` grows from 3 after each
    rejected try), kept only when it lowers the error.
    """
    factors = [f.clone() for f in factors]
    knorm = kernel.norm().clamp_min(1e-300)
    legs = [_legs(net, i) for i in range(len(factors))]

    def error(fs: List[Tensor]) -> float:
        return float((kernel - reconstruct(net, fs)).norm() / knorm)

    prev = error(factors)
    power = 3.0
    done = slow = 0
    for done in range(1, sweeps + 1):
        before = factors
        factors = list(factors)
        for i, leg in enumerate(legs):
            if leg is not None:
                factors[i] = _direct_update(net, kernel, factors, i, leg, ridge)
            else:
                factors[i] = _cg_update(net, kernel, factors, i, cg_iters, ridge)
        err = error(factors)
        if extrapolate and done > 1 and err > 1e-12:
            step = done ** (1.0 / power)
            trial = [f + step * (f - b) for f, b in zip(factors, before)]
            trial_err = error(trial)
            if trial_err < err:
                factors, err = trial, trial_err
            else:
                power += 1.0
        slow = slow + 1 if prev - err < tol * prev else 0
        if err < 1e-12 or slow >= PATIENCE:
            break
        prev = err
    return factors, done


def balance_norms(factors: List[Tensor]) -> List[Tensor]:
    """``factors`` rescaled to one common Frobenius norm (the geometric mean of theirs), the product of the scales
    being 1: a network in which every factor appears once reconstructs the same kernel. Unchanged when a factor is
    zero."""
    norms = [float(f.norm()) for f in factors]
    if not factors or min(norms) == 0.0:
        return list(factors)
    common = prod(n ** (1.0 / len(norms)) for n in norms)
    return [f * (common / n) for f, n in zip(factors, norms)]


def fit_network(net: TensorNetwork, weight: Tensor, sweeps: int = 500, tol: float = 1e-4, cg_iters: int = 25,
                dtype: Optional[torch.dtype] = torch.float64, seed: int = 0, balance: bool = True) -> FitResult:
    """Factors of ``net`` approximating the dense ``weight`` (``(T, S, kh, kw)`` or ``(T, S)``).

    Args:
        sweeps: cap on the ALS sweeps (0 keeps the SVD-based start).
        tol: convergence: stop after two consecutive sweeps that each lower the relative error by less
            than ``tol`` times itself.
        cg_iters: conjugate-gradient iterations per factor where the normal equations are not solved directly.
        dtype: working precision (float64 by default; results are cast back to ``weight.dtype``).
        balance: rescale the fitted factors to equal norms (:func:`balance_norms`; the kernel is unchanged).
    """
    expected = (net.out_channels, net.in_channels, *net.kernel_size)
    if tuple(weight.shape) != expected:
        raise ValueError(f"weight of shape {tuple(weight.shape)} does not match the network's layer {expected}")
    work = weight.detach().to(dtype or weight.dtype)
    sizes = [m.size for m in net.out_modes + net.in_modes + net.kernel_modes]
    kernel = work.reshape(sizes)
    dec = get_decomposition(net.decomposition)
    start = dec.init_from_kernel(net, kernel)
    if start is None:
        gen = torch.Generator().manual_seed(seed)
        std = net.init_std(gain=float(kernel.std()) * (net.in_channels * max(1, prod(net.kernel_size))) ** 0.5)
        start = [torch.randn(f.shape, generator=gen, dtype=kernel.dtype) * std for f in net.factors]
    start = [s.to(device=kernel.device, dtype=kernel.dtype) for s in start]
    knorm = float(kernel.norm()) or 1.0
    init_err = float((kernel - reconstruct(net, start)).norm()) / knorm
    if sweeps > 0 and init_err > 1e-10:
        factors, done = als(net, kernel, start, sweeps=sweeps, tol=tol, cg_iters=cg_iters)
    else:
        factors, done = start, 0
    err = float((kernel - reconstruct(net, factors)).norm()) / knorm
    if err > init_err:  # ALS never should, but keep the better one
        factors, err = start, init_err
    if balance:
        factors = balance_norms(factors)
    return FitResult([f.to(weight.dtype) for f in factors], err, init_err, done)

