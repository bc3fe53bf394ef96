"""The three tensor-network shapes behind the built-in decompositions.

Each works on *sites*: groups of layer modes that one factor carries.

* :func:`cp_factors` — one factor per site, all sharing a single rank leg (CP, mCP; Fig. 2.10c-d).
* :func:`chain_factors` — sites linked in a line (TT, mTT, SVD) or a ring (TR, mTR); Fig. 2.10g-j.
* :func:`tucker_factors` — one projection per channel mode plus a core carrying the rank legs and
  the spatial modes (Tucker-2 and mTK; Fig. 2.10e-f).
"""

from __future__ import annotations

from math import prod
from typing import List, Sequence, Tuple

from zoo_tnn.decompositions.base import Factor, Layout, Mode

Site = Tuple[Mode, ...]


def site_size(site: Site) -> int:
    return prod(m.size for m in site)


def cut_sizes(sites: Sequence[Site]) -> List[int]:
    """For a line of sites, ``min(left size, right size)`` at each of its ``len(sites)-1`` cuts."""
    sizes = [site_size(s) for s in sites]
    return [min(prod(sizes[: i + 1]), prod(sizes[i + 1 :])) for i in range(len(sizes) - 1)]


def cp_factors(layout: Layout, sites: Sequence[Site], rank: int, names: Sequence[str]) -> List[Factor]:
    """``W = sum_r prod_i F_i[site_i, r]``: one factor per site with a shared rank leg."""
    r = layout.bond(rank)
    return [Factor(n, (r,) + tuple(s)) for n, s in zip(names, sites)]


def cp_full_rank(sites: Sequence[Site]) -> int:
    """Product of all site sizes but the largest: enough for an exact CP."""
    sizes = sorted(site_size(s) for s in sites)
    return prod(sizes[:-1]) if len(sizes) > 1 else 1


def chain_factors(
    layout: Layout, sites: Sequence[Site], rank: int, names: Sequence[str], ring: bool
) -> List[Factor]:
    """Tensor train (``ring=False``) or tensor ring (``ring=True``) over ``sites``.

    Train bonds are capped at the cut size (``min(rank, left, right)``), so a train at a large
    rank is exact; ring bonds all have size ``rank``.
    """
    n = len(sites)
    if ring:
        bonds = [layout.bond(rank) for _ in range(n)]  # bond i links site i and site i+1 (mod n)
        return [Factor(names[i], (bonds[i - 1],) + tuple(sites[i]) + (bonds[i],)) for i in range(n)]
    bonds = [layout.bond(min(rank, c)) for c in cut_sizes(sites)]
    out = []
    for i in range(n):
        left = (bonds[i - 1],) if i > 0 else ()
        right = (bonds[i],) if i < n - 1 else ()
        out.append(Factor(names[i], left + tuple(sites[i]) + right))
    return out


def chain_full_rank(sites: Sequence[Site]) -> int:
    cuts = cut_sizes(sites)
    return max(cuts) if cuts else 1


def tucker_factors(layout: Layout, rank: int) -> List[Factor]:
    """Projections ``P_i`` (input mode ``S_i`` -> rank) and ``Q_i`` (rank -> output mode ``T_i``)
    around a core that holds every rank leg and the spatial modes. Ranks are capped at the mode size."""
    rs = [layout.bond(min(rank, s.size)) for s in layout.inn]
    rt = [layout.bond(min(rank, t.size)) for t in layout.out]
    factors = [Factor(f"in{i}", (s, r)) for i, (s, r) in enumerate(zip(layout.inn, rs))]
    factors.append(Factor("core", tuple(rs) + tuple(rt) + tuple(layout.kernel)))
    factors += [Factor(f"out{i}", (r, t)) for i, (t, r) in enumerate(zip(layout.out, rt))]
    return factors


def tucker_full_rank(layout: Layout) -> int:
    return max(m.size for m in layout.inn + layout.out)
