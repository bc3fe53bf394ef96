"""Initialisations of SC-Fac layers (dissertation 7.7.2, Proposition 7.2, Table 7.5).

Every method draws the factor ranks ``N_l`` uniformly from ``{1, ..., C}`` (shared by the pair
``U^(l), U^(-l)``), samples ``U^(l)`` (``l > 0``) from the Haar measure and sets ``U^(-l) = Q U^(l)``,
so each pair cancels and the layer starts as the orthogonal matrix ``Q`` at the kernel centre.
The methods differ only in ``Q``:

* ``identical``: ``Q = I``;
* ``permutation`` (default): a uniformly random permutation matrix;
* ``uniform``: Haar-distributed orthogonal;
* ``torus``: ``expm`` of a block-diagonal skew matrix with angles ~ U(-pi, pi) (geotorch's torus init), built in
  closed form: 2 x 2 rotation blocks.

Haar matrices are sampled without factorising a random matrix (:func:`haar_orthogonal`): a Householder QR of a
Gaussian matrix meets, at column ``k``, a Gaussian vector of length ``n - k`` independent of the reflectors before
it, so its reflectors can be drawn directly from independent Gaussian vectors (Stewart, 1980) and only their
product is formed (one batched ``householder_product``, LAPACK ``orgqr``): the same distribution as
``Q diag(sign(diag R))`` of ``torch.linalg.qr`` (geotorch's ``uniform_init_``), at about half its cost, and exactly
orthogonal (a product of reflections) to the rounding of the dtype.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

INITS: Tuple[str, ...] = ("uniform", "torus", "permutation", "identical")


def _prod(batch: Tuple[int, ...]) -> int:
    return math.prod(int(b) for b in batch)


def householder_reflectors(gaussian: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """LAPACK-style reflectors of the columns of ``gaussian`` ``(..., n, k)``, ``k <= n``: column ``j`` uses its
    entries ``j..n-1`` as the vector ``x`` to reflect onto ``beta e_j``. Overwrites ``gaussian``.

    Returns ``(v, tau, beta)``: ``v`` ``(..., n, k)`` (below the diagonal: the reflector's tail; the unit diagonal
    and the upper part are implicit, as ``householder_product`` reads them), ``tau`` and ``beta`` ``(..., k)``
    with ``(I - tau v v^T) x = beta e_1`` and ``beta = -sign(x_1) ||x||`` (``geqrf``'s convention)."""
    n, k = gaussian.shape[-2:]
    if k > n:
        raise ValueError(f"at most n reflectors of length n; got a ({n}, {k}) matrix")
    low = gaussian.tril_()
    alpha = low.diagonal(dim1=-2, dim2=-1).clone()
    norm = torch.linalg.vector_norm(low, dim=-2)
    beta = torch.where(alpha >= 0, -norm, norm)
    tau = (beta - alpha) / beta
    v = low.div_((alpha - beta).unsqueeze(-2))
    return v, tau, beta


def haar_orthogonal(shape: Tuple[int, ...], dtype: torch.dtype = torch.float32, special: bool = True,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """Haar-distributed orthogonal matrices of ``shape = batch + (n, n)``, each exactly orthogonal to rounding.

    Stewart's method: ``n`` reflectors from independent Gaussian vectors, accumulated by one batched
    ``householder_product``, columns signed by ``sign(beta)`` (``R``'s diagonal): the distribution of
    ``torch.linalg.qr`` of a Gaussian matrix with ``diag(R) > 0``. ``special``: flip the first column where the
    determinant is -1, as geotorch's ``uniform_init_`` does (Haar on SO(n)). The Gaussian vectors are drawn in
    float32 (four times cheaper than float64 on a CPU), the reflectors and their product formed in float64
    (``Q^T Q - I`` about 1e-15; a float32 product would leave about 4e-7, and the factors are fixed for the whole
    training as geotorch's ``base``) and the result cast to ``dtype``."""
    *batch, n, m = shape
    if n != m:
        raise ValueError(f"expected square matrices, got shape {tuple(shape)}")
    batch = tuple(batch)
    if n == 0 or _prod(batch) == 0:
        return torch.empty(shape, dtype=dtype)
    work = torch.float64
    g = torch.randn(batch + (n, n), dtype=torch.float32, generator=generator).to(work)
    v, tau, beta = householder_reflectors(g)
    q = torch.linalg.householder_product(v, tau)
    signs = torch.sign(beta)  # beta != 0 with probability 1
    if special:
        # det(H_j) = -1 for every reflector with tau != 0, so det(Q diag(signs)) is known without a decomposition
        flips = (tau != 0).sum(-1) % 2
        det = signs.prod(-1) * (1 - 2 * flips).to(signs.dtype)
        signs[..., 0] *= det
    return q.mul_(signs.unsqueeze(-2)).to(dtype)


def haar_frame(batch: Tuple[int, ...], n: int, k: int, dtype: torch.dtype = torch.float32,
               generator: Optional[torch.Generator] = None) -> Tensor:
    """Orthogonal ``batch + (n, n)`` matrices whose first ``k`` columns are Haar-distributed on the Stiefel manifold
    (an ``n x k`` frame with orthonormal columns, the distribution of ``Q[:, :k]`` of a Haar ``Q``); the other
    ``n - k`` columns complete it deterministically (the same ``k`` reflections applied to ``e_k ... e_n``).

    Only ``k`` reflectors are drawn and the product is formed in compact WY form, ``I - V T V^T`` with
    ``T^{-1} = diag(1 / tau) + striu(V^T V)``: ``O(n^2 k)`` instead of the ``O(n^3)`` of sampling all of ``Q``.
    This is the base that geotorch's Stiefel parametrisation needs: any orthogonal completion of the frame."""
    if k == n:  # Haar on SO(n), as geotorch's sample of a square orthogonal weight
        return haar_orthogonal(tuple(batch) + (n, n), dtype, special=True, generator=generator)
    if not 0 <= k < n:
        raise ValueError(f"need 0 <= k <= n, got n={n}, k={k}")
    eye = torch.eye(n, dtype=dtype).expand(tuple(batch) + (n, n))
    if k == 0 or _prod(tuple(batch)) == 0:
        return eye.clone()
    g = torch.randn(tuple(batch) + (n, k), dtype=torch.float64, generator=generator)
    v, tau, beta = householder_reflectors(g)
    v = v.tril(-1) + torch.eye(n, k, dtype=v.dtype)
    t_inv = torch.diag_embed(1.0 / tau) + (v.transpose(-1, -2) @ v).triu(1)
    t = torch.linalg.solve_triangular(t_inv, torch.eye(k, dtype=torch.float64).expand_as(t_inv).contiguous(), upper=True)
    vt = (v @ t).to(dtype)
    q = eye - vt @ v.to(dtype).transpose(-1, -2)
    q[..., :k] *= torch.sign(beta).to(dtype).unsqueeze(-2)
    return q


def torus_matrices(shape: Tuple[int, ...], dtype: torch.dtype = torch.float32,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """geotorch's ``torus_init_`` in closed form: ``expm`` of the skew matrix with ``S[2i+1, 2i] = b_i``,
    ``b_i ~ U(-pi, pi)``, is block-diagonal with 2 x 2 rotations ``[[cos b, -sin b], [sin b, cos b]]`` (and a 1 in
    the last place when ``n`` is odd); built in float64, then cast."""
    *batch, n, _ = shape
    half = n // 2
    angles = (torch.rand(tuple(batch) + (half,), dtype=torch.float64, generator=generator) * 2 - 1) * math.pi
    out = torch.zeros(tuple(batch) + (n, n), dtype=torch.float64)
    idx = torch.arange(half) * 2
    cos, sin = angles.cos(), angles.sin()
    out[..., idx, idx] = cos
    out[..., idx + 1, idx + 1] = cos
    out[..., idx + 1, idx] = sin
    out[..., idx, idx + 1] = -sin
    if n % 2:
        out[..., n - 1, n - 1] = 1.0
    return out.to(dtype)


def random_permutations(batch: Tuple[int, ...], c: int) -> Tensor:
    """Uniformly random permutations of ``range(c)``, shape ``batch + (c,)`` (int64)."""
    n = _prod(tuple(batch))
    return torch.rand(n, c).argsort(-1).reshape(tuple(batch) + (c,))


def centre_matrices(kind: str, batch: Tuple[int, ...], c: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``Q`` matrices of shape ``batch + (c, c)`` for initialisation ``kind`` (one of :data:`INITS`)."""
    return _centre(kind, tuple(batch), c, dtype)[0]


def _centre(kind: str, batch: Tuple[int, ...], c: int, dtype: torch.dtype) -> Tuple[Tensor, Optional[Tensor]]:
    """``(Q, perm)``: ``perm`` (``batch + (c,)``) for ``permutation`` (``Q = I[perm]``, so ``Q X = X[perm]``), else None."""
    shape = tuple(batch) + (c, c)
    if kind == "identical":
        return torch.eye(c, dtype=dtype).expand(shape).clone(), None
    if kind == "permutation":
        perms = random_permutations(batch, c)
        return torch.eye(c, dtype=dtype)[perms], perms
    if kind == "uniform":
        return haar_orthogonal(shape, dtype), None
    if kind == "torus":
        return torus_matrices(shape, dtype), None
    raise ValueError(f"unknown initialisation {kind!r}; expected one of {', '.join(INITS)}")


def random_ranks(batch: Tuple[int, ...], c: int) -> Tensor:
    """Ranks ``N_l`` drawn uniformly from ``{1, ..., c}``, shape ``batch`` (int64)."""
    return torch.randint(1, c + 1, tuple(batch))
