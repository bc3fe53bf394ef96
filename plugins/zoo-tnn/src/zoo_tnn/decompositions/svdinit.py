"""SVD-based factors for the built-in structures (the starting point of Layer-Decomp).

All functions take the tensor network and the dense kernel laid out as ``net.kernel_letters``
(one axis per out mode, in mode, spatial mode) and return one tensor per factor, in network order.

* train: TT-SVD (sequential truncated SVDs), exact when every bond is at its cut size;
* ring: TT-SVD embedded in the ring (closing bond index 0), plus a small perturbation so that
  alternating least squares can use the other ring indices;
* tucker: truncated HOSVD, exact at full multilinear rank;
* cp: exact one-hot construction when the rank reaches :func:`cp_full_rank`, else leading singular
  vectors of each site's unfolding (refined by ALS afterwards).
"""

from __future__ import annotations

from math import prod
from typing import Dict, List, Sequence

import torch
from torch import Tensor

from zoo_tnn.decompositions.base import TensorNetwork


def _sizes(net: TensorNetwork) -> Dict[str, int]:
    return {m.letter: m.size for f in net.factors for m in f.modes}


def _site_letters(net: TensorNetwork) -> List[str]:
    external = set(net.kernel_letters)
    return ["".join(c for c in f.letters if c in external) for f in net.factors]


def _arrange(t: Tensor, letters: str, target: str, sizes: Dict[str, int]) -> Tensor:
    """Permute ``t`` (axes ``letters``) to ``target``; letters absent from ``letters`` get zero-padded
    axes (index 0 holds the data), axes larger than the target size are an error."""
    present = "".join(c for c in target if c in letters)
    out = torch.einsum(f"{letters}->{present}", t)
    shape = [sizes[c] if c in letters else 1 for c in target]
    out = out.reshape([out.shape[present.index(c)] if c in letters else 1 for c in target])
    if list(out.shape) == shape and all(c in letters for c in target):
        return out
    full = torch.zeros([sizes[c] for c in target], dtype=t.dtype, device=t.device)
    full[tuple(slice(0, s) for s in out.shape)] = out
    return full


def train_init(net: TensorNetwork, kernel: Tensor) -> List[Tensor]:
    """TT-SVD along the factor order (factors ``i`` and ``i+1`` share the bond)."""
    sizes = _sizes(net)
    sites = _site_letters(net)
    letters = [f.letters for f in net.factors]
    bonds = ["".join(c for c in letters[i] if c in letters[i + 1] and c not in net.kernel_letters)
             for i in range(len(letters) - 1)]
    c = torch.einsum(f"{net.kernel_letters}->{''.join(sites)}", kernel)
    cores: List[Tensor] = []
    r_prev = 1
    for i, site in enumerate(sites[:-1]):
        site_size = prod(sizes[x] for x in site)
        mat = c.reshape(r_prev * site_size, -1)
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        r = min(sizes[bonds[i]], s.numel())
        core = u[:, :r].reshape(r_prev, *(sizes[x] for x in site), r)
        left = bonds[i - 1] if i > 0 else "_"
        cores.append(_arrange(core.squeeze(0) if i == 0 else core, (left if i > 0 else "") + site + bonds[i],
                              letters[i], sizes))
        rest = s[:r, None] * vh[:r]
        r_prev = sizes[bonds[i]]
        c = torch.zeros(r_prev, rest.shape[1], dtype=rest.dtype, device=rest.device)
        c[:r] = rest
    last = c.reshape(r_prev, *(sizes[x] for x in sites[-1]))
    cores.append(_arrange(last, bonds[-1] + sites[-1], letters[-1], sizes))
    return cores


def ring_init(net: TensorNetwork, kernel: Tensor, noise: float = 1e-3, seed: int = 0) -> List[Tensor]:
    """A tensor train in the ring's closing index 0, plus ``noise`` times the factor scale
    (no noise when the train is already exact)."""
    letters = [f.letters for f in net.factors]
    # the closing bond: the first bond letter of factor 0 that the last factor also carries
    closing = next(c for c in letters[0] if c in letters[-1] and c not in net.kernel_letters)
    sizes = _sizes(net)
    # the same network without the closing bond is a train: fit it and embed.
    from dataclasses import replace

    from zoo_tnn.decompositions.base import Factor

    open_factors = tuple(Factor(f.name, tuple(m for m in f.modes if m.letter != closing)) for f in net.factors)
    train = replace(net, factors=open_factors)
    cores = train_init(train, kernel)
    exact = float((torch.einsum(train.kernel_equation, *cores) - kernel).norm()) <= 1e-9 * float(kernel.norm())
    if exact:
        noise = 0.0
    gen = torch.Generator().manual_seed(seed)
    out = []
    for f, core, lt in zip(net.factors, cores, letters):
        full = _arrange(core, "".join(c for c in lt if c != closing), lt, sizes)
        scale = core.abs().max().clamp_min(1e-12)
        full = full + noise * scale * torch.randn(full.shape, generator=gen, dtype=full.dtype).to(full.device)
        out.append(full)
    return out


def tucker_init(net: TensorNetwork, kernel: Tensor) -> List[Tensor]:
    """Truncated HOSVD: one projection per channel mode, core = kernel projected on all of them."""
    sizes = _sizes(net)
    kl = net.kernel_letters
    channel = set(net.out_letters + net.in_letters)
    core_idx = min(range(len(net.factors)), key=lambda i: (len(channel & set(net.factors[i].letters)),
                                                         -len(net.factors[i].letters)))
    out: List[Tensor] = [torch.empty(0)] * len(net.factors)
    proj_terms: List[str] = []
    projs: List[Tensor] = []
    for i, f in enumerate(net.factors):
        if i == core_idx:
            continue
        (ext,) = [c for c in f.letters if c in kl]
        (bond,) = [c for c in f.letters if c not in kl]
        unfold = torch.einsum(f"{kl}->{ext}{kl.replace(ext, '')}", kernel).reshape(sizes[ext], -1)
        u = torch.linalg.svd(unfold, full_matrices=False)[0][:, : sizes[bond]]
        if u.shape[1] < sizes[bond]:
            u = torch.cat([u, torch.zeros(u.shape[0], sizes[bond] - u.shape[1], dtype=u.dtype)], 1)
        out[i] = torch.einsum(f"{ext}{bond}->{f.letters}", u)
        proj_terms.append(ext + bond)
        projs.append(u)
    core_letters = net.factors[core_idx].letters
    out[core_idx] = torch.einsum(",".join([kl] + proj_terms) + "->" + core_letters, kernel, *projs)
    return out


def cp_init(net: TensorNetwork, kernel: Tensor, seed: int = 0) -> List[Tensor]:
    """Exact CP when the rank allows it; otherwise leading singular vectors per site."""
    sizes = _sizes(net)
    sites = _site_letters(net)
    (rank_letter,) = set(net.bond_letters)
    rank = sizes[rank_letter]
    site_sizes = [prod(sizes[c] for c in s) for s in sites]
    big = max(range(len(sites)), key=lambda i: site_sizes[i])
    others = [i for i in range(len(sites)) if i != big]
    need = prod(site_sizes[i] for i in others)
    mats: List[Tensor] = [torch.empty(0)] * len(sites)
    if rank >= need:
        order = "".join(sites[i] for i in others) + sites[big]
        flat = torch.einsum(f"{net.kernel_letters}->{order}", kernel).reshape(need, site_sizes[big])
        mats[big] = torch.zeros(rank, site_sizes[big], dtype=kernel.dtype)
        mats[big][:need] = flat
        idx = torch.arange(need)
        for j in reversed(others):  # the last site varies fastest in the flattened order
            coord = idx % site_sizes[j]
            idx = idx // site_sizes[j]
            onehot = torch.zeros(rank, site_sizes[j], dtype=kernel.dtype)
            onehot[torch.arange(need), coord] = 1.0
            mats[j] = onehot
    else:
        gen = torch.Generator().manual_seed(seed)
        for j, s in enumerate(sites):
            unfold = torch.einsum(f"{net.kernel_letters}->{s}{''.join(c for c in net.kernel_letters if c not in s)}",
                                  kernel).reshape(site_sizes[j], -1)
            u, sv, _ = torch.linalg.svd(unfold, full_matrices=False)
            k = min(rank, u.shape[1])
            m = torch.randn(rank, site_sizes[j], generator=gen, dtype=kernel.dtype) / site_sizes[j] ** 0.5
            m[:k] = u[:, :k].T
            mats[j] = m
        # scale one factor so the reconstruction has the kernel's norm along the leading direction
        mats[big] = mats[big] * kernel.norm() / max(len(sites), 1)
    out = []
    for f, s, mat in zip(net.factors, sites, mats):
        t = mat.reshape(rank, *(sizes[c] for c in s))
        out.append(torch.einsum(f"{rank_letter}{s}->{f.letters}", t))
    return out


STRUCTURE_INIT = {"train": train_init, "ring": ring_init, "tucker": tucker_init, "cp": cp_init}


def structured_init(structure: str, net: TensorNetwork, kernel: Tensor) -> List[Tensor]:
    try:
        fn = STRUCTURE_INIT[structure]
    except KeyError:
        raise ValueError(f"no SVD-based initialisation for structure {structure!r}") from None
    return fn(net, kernel)


def assert_layout(tensors: Sequence[Tensor], net: TensorNetwork) -> None:
    for t, f in zip(tensors, net.factors):
        if tuple(t.shape) != f.shape:
            raise AssertionError(f"factor {f.name}: built {tuple(t.shape)}, expected {f.shape}")
