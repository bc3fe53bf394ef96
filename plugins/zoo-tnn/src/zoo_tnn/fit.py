"""Layer-Decomp (Eq. 2.8): fit the factors of a tensor network to a dense kernel.

Start from the decomposition's SVD-based factors (TT-SVD, HOSVD, exact/SVD CP; random for a
decomposition that provides none), then alternating least squares: with all factors but one fixed,
the reconstruction is linear in the free factor ``X`` (``A(X)``), and the normal equations
``A^T A X = A^T K`` are solved by conjugate gradients, where ``A`` and ``A^T`` are einsums of the
network (so this works for any decomposition, built-in or plugin).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, List, Optional

import opt_einsum
import torch
from torch import Tensor

from zoo_tnn.decompositions import TensorNetwork, get_decomposition


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


def als(net: TensorNetwork, kernel: Tensor, factors: List[Tensor], sweeps: int = 20, cg_iters: int = 25,
        tol: float = 1e-10, ridge: float = 1e-10) -> tuple[List[Tensor], int]:
    """Alternating least squares on ``||kernel - reconstruct(factors)||``; returns factors, sweeps run."""
    factors = [f.clone() for f in factors]
    knorm = kernel.norm().clamp_min(1e-300)
    prev = float("inf")
    done = 0
    for done in range(1, sweeps + 1):
        for i in range(len(factors)):
            fwd, adj = _operators(net, factors, i)
            b = adj(kernel)
            scale = ridge * float((b * b).sum().sqrt()) / max(float(factors[i].norm()), 1e-30)

            def normal(x: Tensor, fwd: Callable[[Tensor], Tensor] = fwd, adj: Callable[[Tensor], Tensor] = adj) -> Tensor:
                return adj(fwd(x)) + scale * x

            factors[i] = _cg(normal, b, factors[i], cg_iters, tol)
        err = float((kernel - reconstruct(net, factors)).norm() / knorm)
        if err < 1e-12 or prev - err < 1e-7 * max(prev, 1e-30):
            break
        prev = err
    return factors, done


def fit_network(net: TensorNetwork, weight: Tensor, sweeps: int = 20, cg_iters: int = 25,
                dtype: Optional[torch.dtype] = torch.float64, seed: int = 0) -> FitResult:
    """Factors of ``net`` approximating the dense ``weight`` (``(T, S, kh, kw)`` or ``(T, S)``).

    Args:
        sweeps: maximum ALS sweeps (0 keeps the SVD-based start).
        dtype: working precision (float64 by default; results are cast back to ``weight.dtype``).
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
        std = net.init_std(gain=float(kernel.std()) * (net.in_channels * max(1, _prod(net.kernel_size))) ** 0.5)
        start = [torch.randn(f.shape, generator=gen, dtype=kernel.dtype) * std for f in net.factors]
    start = [s.to(device=kernel.device, dtype=kernel.dtype) for s in start]
    knorm = float(kernel.norm()) or 1.0
    init_err = float((kernel - reconstruct(net, start)).norm()) / knorm
    if sweeps > 0 and init_err > 1e-10:
        factors, done = als(net, kernel, start, sweeps=sweeps, cg_iters=cg_iters)
    else:
        factors, done = start, 0
    err = float((kernel - reconstruct(net, factors)).norm()) / knorm
    if err > init_err:  # ALS never should, but keep the better one
        factors, err = start, init_err
    return FitResult([f.to(weight.dtype) for f in factors], err, init_err, done)


def _prod(xs: tuple[int, ...]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out
