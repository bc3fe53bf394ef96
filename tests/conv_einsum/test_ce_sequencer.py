"""Path search: optimality against brute force, greedy/naive, memory limit, report, caching."""

from __future__ import annotations

import time

import opt_einsum as oe
import pytest
import torch

from .ce_paths import all_paths
from zoo.conv_einsum import conv_einsum, conv_einsum_path
from zoo.conv_einsum.modes import resolve_problem
from zoo.conv_einsum.parse import parse_equation
from zoo.conv_einsum import ConvEinsumOptions
from zoo.conv_einsum.plan import PLAN_CACHE, make_plan
from zoo.conv_einsum.sequencer import ConvPathOptimizer, Network, naive_path, path_cost

CP = ("bshw,rt,rs,rh,rw->bthw|hw", [(8, 16, 14, 14), (4, 32), (4, 16), (4, 3), (4, 3)])
TT = ("nshw,ta,asb,bhc,cw->nthw|hw", [(8, 16, 10, 10), (32, 3), (3, 16, 4), (4, 3, 2), (2, 3)])
COMPOSED = ("bfshw,fghw,sthw->bgthw|hw", [(4, 4, 4, 12, 12), (4, 3, 3, 3), (4, 5, 2, 2)])


def _network(eq: str, shapes, **opts) -> Network:
    problem = resolve_problem(parse_equation(eq, len(shapes)), shapes, **opts)
    return Network(problem, [frozenset(s) for s in problem.equation.inputs])


@pytest.mark.parametrize("case", [CP, TT, COMPOSED])
def test_optimal_is_minimum_over_all_paths(case) -> None:
    eq, shapes = case
    net = _network(eq, shapes, stride=2, padding=1)
    costs = [path_cost(net, p)[0].training for p in all_paths(len(shapes))]
    best = path_cost(net, ConvPathOptimizer(net, "optimal").search())[0].training
    assert best == min(costs)
    greedy = path_cost(net, ConvPathOptimizer(net, "greedy").search())[0].training
    assert best <= greedy <= max(costs)
    path, info = conv_einsum_path(eq, *shapes, stride=2, padding=1, optimize="optimal")
    assert info.opt_cost == best and info.naive_cost == path_cost(net, naive_path(len(shapes)))[0].training


def test_conv_cost_counts_output_times_kernel_and_backward() -> None:
    net = _network("bshw,tshw->bthw|hw", [(2, 3, 9, 9), (4, 3, 3, 3)], stride=2)
    cost = net.pair_cost(1, 2)
    out = 2 * 4 * 3 * 4 * 4 * 9  # b t s Ho Wo (kh kw)
    grad_data = 2 * 4 * 3 * 9 * 9 * 9  # b t s H W (kh kw)
    assert cost.forward == out
    assert cost.training == out + grad_data + out


def test_path_info_report() -> None:
    eq, shapes = CP
    path, info = conv_einsum_path(eq, *shapes, padding=1)
    text = str(info)
    for field in ("Naive", "Optimized", "Largest intermediate", "conv2d", "contract", "batch", eq):
        assert field in text
    assert info.naive_cost >= info.opt_cost and info.speedup >= 1
    assert len(info.steps) == len(shapes) - 1 == len(path)
    assert info.largest_intermediate <= info.naive_largest_intermediate


def test_memory_limit_bounds_intermediates() -> None:
    eq, shapes = TT
    _, free = conv_einsum_path(eq, *shapes, optimize="optimal")
    inter = sorted({s.size for s in free.steps[:-1]})
    limit = inter[-1] - 1
    _, capped = conv_einsum_path(eq, *shapes, optimize="optimal", memory_limit=limit)
    assert all(s.size <= limit for s in capped.steps[:-1])
    assert capped.opt_cost >= free.opt_cost
    _, greedy = conv_einsum_path(eq, *shapes, optimize="greedy", memory_limit=limit)
    assert all(s.size <= limit for s in greedy.steps[:-1])
    x = [torch.randn(s, dtype=torch.float64) for s in shapes]
    torch.testing.assert_close(conv_einsum(eq, *x, memory_limit=limit), conv_einsum(eq, *x))


def test_plan_cache_pays_a_lookup() -> None:
    eq = "nshw,ta,asb,bhc,cw->nthw|hw"
    shapes = [(2, 4, 5, 5), (3, 2), (2, 4, 2), (2, 3, 2), (2, 3)]
    ops = [torch.randn(s) for s in shapes]
    conv_einsum(eq, *ops, stride=2, padding={"h": 1})
    hits = PLAN_CACHE.hits
    conv_einsum(eq, *ops, stride=2, padding={"h": 1})
    assert PLAN_CACHE.hits == hits + 1
    t0 = time.perf_counter()
    make_plan(eq, shapes, ConvEinsumOptions(stride=2, padding={"h": 1}))
    search = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        conv_einsum_path(eq, *shapes, stride=2, padding={"h": 1})
    assert (time.perf_counter() - t0) / 20 < search


def test_optimizer_is_an_opt_einsum_path_optimizer() -> None:
    eq, shapes = "ab,bc,cd,de->ae", [(2, 30), (30, 3), (3, 40), (40, 5)]
    net = _network(eq, shapes)
    opt = ConvPathOptimizer(net, "optimal")
    assert isinstance(opt, oe.paths.PathOptimizer)
    path, info = oe.contract_path(eq, *shapes, shapes=True, optimize=opt)
    ref, _ = oe.contract_path(eq, *shapes, shapes=True, optimize="optimal")
    assert path_cost(net, path)[0].forward == path_cost(net, ref)[0].forward


def test_auto_uses_greedy_for_many_operands() -> None:
    eq = ",".join(f"{a}{b}" for a, b in zip("abcdefghijk", "bcdefghijkl")) + "->al"
    shapes = [(3, 3)] * 11
    path, info = conv_einsum_path(eq, *shapes)
    assert len(path) == 10 and info.search_seconds < 1.0
    ops = [torch.randn(s, dtype=torch.float64) for s in shapes]
    torch.testing.assert_close(conv_einsum(eq, *ops), torch.einsum(eq, *ops))
