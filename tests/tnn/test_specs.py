"""Tensor-network specs: channel factorisation, Table 2.2 parameter counts, rank from rate, errors."""

from __future__ import annotations

import itertools
from math import prod

import pytest

from zoo_tnn.decompositions import build_network, get_decomposition, list_decompositions
from zoo_tnn.factorize import balanced_factors
from zoo_tnn.rank import InfeasibleRate, network_for_rate

BUILTIN = ["cp", "tk", "tt", "tr", "svd", "mcp", "mtk", "mtt", "mtr"]


def _brute_force_best_max(n: int, m: int) -> int:
    """Smallest possible largest factor over all m-tuples of divisors with product n."""
    divs = [d for d in range(1, n + 1) if n % d == 0]
    return min(max(t) for t in itertools.product(divs, repeat=m) if prod(t) == n)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 16, 24, 64, 96, 100, 120, 160, 256, 320, 400, 640, 1000])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_balanced_factors_are_a_most_balanced_factorisation(n: int, m: int) -> None:
    f = balanced_factors(n, m)
    assert len(f) == m and prod(f) == n
    assert max(f) == _brute_force_best_max(n, m)
    assert list(f) == sorted(f, reverse=True)


def test_balanced_factors_examples_and_errors() -> None:
    assert balanced_factors(64, 3) == (4, 4, 4)
    assert balanced_factors(512, 3) == (8, 8, 8)
    assert balanced_factors(13, 3) == (13, 1, 1)
    with pytest.raises(ValueError, match="positive channel count"):
        balanced_factors(0, 3)
    with pytest.raises(ValueError, match="number of modes"):
        balanced_factors(8, 0)


def test_builtins_listed() -> None:
    assert list_decompositions()[: len(BUILTIN)] == BUILTIN


# Table 2.2 with S = T = N, H = W = k and N**(1/m) per channel mode; plus the closed forms of the
# non-reshaped layouts of Fig. 2.10 (CP: rt,rs,rh,rw; Tucker-2; TT/TR over S-H-W-T; SVD).
N, K, M = 64, 3, 3
N1 = round(N ** (1 / M))  # 4
N2 = N1 * N1  # N**(2/m)
CLOSED_FORMS = {
    "mcp": lambda r: (M * N2 + K**2) * r,
    "mtk": lambda r: (2 * M * N1 + K**2 * r ** (2 * M - 1)) * r,
    # Table 2.2 lists (m N^(2/m) R + k^2) R; Eq. (2.3)-(2.4) have a first kernel K_0 of size
    # S_0 x T_0 x R_0 (no left bond), i.e. N^(2/m) R (R - 1) fewer.
    "mtt": lambda r: (M * N2 * r + K**2) * r - N2 * r * (r - 1),
    "mtr": lambda r: (M * N2 + K**2) * r**2,
    "cp": lambda r: (2 * N + 2 * K) * r,
    "tk": lambda r: 2 * N * r + K**2 * r**2,
    "tt": lambda r: 2 * N * r + 2 * K * r**2,
    "tr": lambda r: (2 * N + 2 * K) * r**2,
    "svd": lambda r: (N * K**2 + N) * r,
}


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_parameter_counts_match_closed_forms(name: str, rank: int) -> None:
    net = build_network(get_decomposition(name), N, N, (K, K), rank)
    assert net.params == sum(prod(f.shape) for f in net.factors)
    assert net.params == CLOSED_FORMS[name](rank)
    assert net.dense_params == K * K * N * N


@pytest.mark.parametrize("name", ["mcp", "mtt", "mtr", "mtk"])
def test_reshaped_modes_follow_m(name: str) -> None:
    dec = get_decomposition(name)
    for m in (2, 3, 4):
        net = build_network(dec, 96, 48, (3, 3), 2, m=m)
        assert len(net.in_modes) == m and prod(x.size for x in net.in_modes) == 48
        assert prod(x.size for x in net.out_modes) == 96


def test_equations_follow_section_333() -> None:
    cp = build_network(get_decomposition("cp"), 8, 4, (3, 3), 2)
    # "bshw,rt,rs,rh,rw->bthw|hw" up to letter names
    lhs, rhs = cp.equation.split("->")
    ops = lhs.split(",")
    assert len(ops) == 5 and rhs.endswith("|hw")
    assert [len(o) for o in ops] == [4, 2, 2, 2, 2]
    mcp = build_network(get_decomposition("mcp"), 8, 8, (3, 3), 2)
    assert [len(f.shape) for f in mcp.factors] == [3, 3, 3, 3]  # r t_i s_i (x3) and r h w


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize("shape", [(64, 64, (3, 3)), (256, 64, (1, 1)), (120, 400, ()), (16, 6, (5, 5))])
@pytest.mark.parametrize("rate", [0.02, 0.1, 0.4])
def test_rank_from_rate_is_the_largest_fitting_rank(name: str, shape: tuple, rate: float) -> None:
    out_c, in_c, ks = shape
    dec = get_decomposition(name)
    try:
        net = network_for_rate(dec, out_c, in_c, ks, rate)
    except InfeasibleRate:
        assert build_network(dec, out_c, in_c, ks, 1).params > rate * out_c * in_c * prod(ks)
        return
    budget = rate * net.dense_params
    assert net.params <= budget
    bigger = build_network(dec, out_c, in_c, ks, net.rank + 1)
    assert bigger.params > budget or bigger.params == net.params  # capped bonds: no growth left


def test_impossible_and_bad_rates_raise_clear_errors() -> None:
    with pytest.raises(InfeasibleRate, match=r"rank 1 already needs \d+ parameters"):
        network_for_rate("tr", 16, 16, (1, 1), 0.01)
    for bad in (0, -0.1, 1.5, "abc"):
        with pytest.raises(ValueError, match=r"rate must be"):
            network_for_rate("mcp", 16, 16, (3, 3), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        build_network(get_decomposition("cp"), 8, 8, (3, 3), 0)


def test_unknown_decomposition_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown decomposition 'nope'.*mcp"):
        get_decomposition("nope")
