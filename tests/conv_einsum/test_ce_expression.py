"""The opt_einsum-shaped API: the options object, the path-method table, ConvPathOptimizer as an opt_einsum
PathOptimizer, and compiled expressions (``conv_einsum_expression``) against ``conv_einsum`` and the slow
reference."""

from __future__ import annotations

import pickle

import opt_einsum as oe
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.conv_einsum import (ConvEinsumError, ConvEinsumOptions, ConvPathOptimizer, conv_einsum,
                             conv_einsum_expression, conv_einsum_path, path_methods, register_path_method,
                             set_autotune, unregister_path_method)
from zoo.conv_einsum.plan import PLAN_CACHE

from .ce_reference import reference_conv_einsum
from .test_ce_layers import LAYER_NAMES, OPTIONS, _layers
from .test_ce_matmul import CASES


# ---- options object ------------------------------------------------------------------------------------------

def test_options_are_hashable_and_equal_whatever_form_they_came_in() -> None:
    a = ConvEinsumOptions(stride=[1, 2], padding={"w": 1, "h": (0, 2)}, optimize=[[1, 2], [0, 1]])
    b = ConvEinsumOptions(stride=(1, 2), padding={"h": [0, 2], "w": 1}, optimize=((1, 2), (0, 1)))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != a.replace(stride=1) and a.replace(stride=[1, 2]) == a
    assert a.padding["h"] == (0, 2) and dict(a.padding) == {"h": (0, 2), "w": 1}
    assert ConvEinsumOptions() == ConvEinsumOptions.from_kwargs() and ConvEinsumOptions().optimize == "auto"
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(Exception):
        a.stride = 3  # frozen
    with pytest.raises(ConvEinsumError, match="unknown conv_einsum option.*'strides'.*known options.*'stride'"):
        ConvEinsumOptions.from_kwargs(strides=2)
    with pytest.raises(ConvEinsumError, match="unknown conv_einsum option"):
        conv_einsum("ab,bc->ac", torch.ones(2, 2), torch.ones(2, 2), strides=2)


def test_an_options_object_can_be_passed_and_amended() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64), torch.randn(4, 3, 3, 3, generator=gen,
                                                                                   dtype=torch.float64)
    opts = ConvEinsumOptions(stride=2, padding=1)
    want = F.conv2d(x, w, stride=2, padding=1)
    torch.testing.assert_close(conv_einsum("bshw,tshw->bthw|hw", x, w, options=opts), want)
    torch.testing.assert_close(conv_einsum("bshw,tshw->bthw|hw", x, w, options=opts, stride=1),
                               F.conv2d(x, w, padding=1))


def test_equal_options_share_one_cached_plan() -> None:
    shapes = [(2, 4, 5, 5), (3, 2), (2, 4, 2), (2, 3, 2), (2, 3)]
    eq = "nshw,ta,asb,bhc,cw->nthw|hw"
    conv_einsum_path(eq, *shapes, stride=[2, 1], padding={"h": 1, "w": 0})
    hits = PLAN_CACHE.hits
    conv_einsum_path(eq, *shapes, stride=(2, 1), padding={"w": 0, "h": 1})
    assert PLAN_CACHE.hits == hits + 1


def test_backward_false_minimises_forward_cost() -> None:
    eq, shapes = "nshw,rt,rs,rh,rw->nthw|hw", [(4, 32, 14, 14), (40, 32), (40, 32), (40, 3), (40, 3)]
    _, train = conv_einsum_path(eq, *shapes, padding=1, optimize="optimal")
    _, infer = conv_einsum_path(eq, *shapes, padding=1, optimize="optimal", backward=False)
    assert infer.opt_forward <= train.opt_forward
    assert train.opt_cost <= infer.opt_cost


# ---- path-method table -----------------------------------------------------------------------------------------

def test_builtin_path_methods_are_registered() -> None:
    assert {"auto", "optimal", "greedy", "naive"} <= set(path_methods())


def test_a_registered_path_method_is_used_and_unknown_names_list_the_known_ones() -> None:
    calls = []

    def right_to_left(net, limit):
        calls.append((net.n, limit))
        return [(k - 2, k - 1) for k in range(net.n, 1, -1)]  # the last two, again and again

    eq, shapes = "ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]
    ops = [torch.randn(s, dtype=torch.float64) for s in shapes]
    register_path_method("test-right-to-left", right_to_left)
    try:
        path, _ = conv_einsum_path(eq, *shapes, optimize="test-right-to-left", memory_limit=99)
        assert path == [(1, 2), (0, 1)] and calls == [(3, 99)]
        torch.testing.assert_close(conv_einsum(eq, *ops, optimize="test-right-to-left"), torch.einsum(eq, *ops))
        with pytest.raises(ConvEinsumError, match="already registered"):
            register_path_method("test-right-to-left", right_to_left)
        register_path_method("test-right-to-left", right_to_left, replace=True)
        with pytest.raises(ConvEinsumError, match="'measure'"):
            register_path_method("measure", right_to_left)
        register_path_method("test-broken", lambda net, limit: [(0, 1)])
        with pytest.raises(ConvEinsumError, match="path method 'test-broken' returned an invalid path"):
            conv_einsum(eq, *ops, optimize="test-broken")
    finally:
        unregister_path_method("test-right-to-left")
        unregister_path_method("test-broken")
    with pytest.raises(ConvEinsumError) as err:
        conv_einsum(eq, *ops, optimize="test-right-to-left")
    msg = str(err.value)
    assert "unknown optimize='test-right-to-left'" in msg
    assert all(repr(name) in msg for name in ("auto", "optimal", "greedy", "naive", "measure"))


# ---- ConvPathOptimizer as an opt_einsum PathOptimizer -------------------------------------------------------------

def test_path_optimizer_without_a_network_plans_any_opt_einsum_contraction() -> None:
    eq, shapes = "ab,bc,cd,de->ae", [(2, 30), (30, 3), (3, 40), (40, 5)]
    path, _ = oe.contract_path(eq, *shapes, shapes=True, optimize=ConvPathOptimizer(method="optimal"))
    ops = [torch.randn(s, dtype=torch.float64) for s in shapes]
    torch.testing.assert_close(oe.contract(eq, *ops, optimize=path), torch.einsum(eq, *ops))
    ours, _ = conv_einsum_path(eq, *shapes, optimize="optimal")
    assert path == ours


def test_path_optimizer_honours_the_call_arguments() -> None:
    opt = ConvPathOptimizer(method="optimal")
    inputs, output, sizes = [set("ab"), set("bc"), set("cd")], set("ad"), {"a": 2, "b": 50, "c": 3, "d": 50}
    path = opt(inputs, output, sizes)
    assert len(path) == 2
    # a memory limit given to the call binds: no intermediate of 2 x 50 = 100 elements (a-d is the output)
    with pytest.raises(ConvEinsumError, match="memory_limit"):
        opt([set("ab"), set("bc"), set("cd"), set("de")], set("ae"), {**sizes, "e": 1}, 5)


def test_path_optimizer_with_a_network_checks_the_call_is_for_that_network() -> None:
    from zoo.conv_einsum.plan import make_setup

    setup = make_setup("nshw,rt,rs,rh,rw->nthw|hw", [(2, 4, 6, 6), (3, 5), (3, 4), (3, 3), (3, 3)],
                       ConvEinsumOptions(padding=1))
    opt = ConvPathOptimizer(setup.net, "optimal")
    assert len(opt([set("nshw"), set("rt"), set("rs"), set("rh"), set("rw")], set("nthw"), {})) == 4
    with pytest.raises(ConvEinsumError, match="built for inputs"):
        opt([set("ab"), set("bc")], set("ac"), {"a": 1, "b": 1, "c": 1})


# ---- compiled expressions ------------------------------------------------------------------------------------------

def test_expression_is_public_on_zoo() -> None:
    assert zoo.conv_einsum_expression is conv_einsum_expression


@pytest.mark.parametrize("name", LAYER_NAMES)
@pytest.mark.parametrize("k", range(len(OPTIONS)))
def test_expression_equals_conv_einsum_on_the_layer_equations(name: str, k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    _, eq, x, factors, build = next(layer for layer in _layers(gen) if layer[0] == name)
    opts = OPTIONS[k]
    expr = conv_einsum_expression(eq, x.shape, *(f.shape for f in factors), **opts)
    got = expr(x, *factors)
    torch.testing.assert_close(got, conv_einsum(eq, x, *factors, **opts), rtol=0, atol=0)
    want = F.conv2d(x.reshape(x.shape[0], -1, *x.shape[-2:]), build(factors), **opts)
    torch.testing.assert_close(got.reshape(want.shape), want)
    assert expr.path == conv_einsum_path(eq, x, *factors, **opts)[0]
    # gradients flow as through conv_einsum
    leaves = [f.detach().requires_grad_() for f in factors]
    g1 = torch.autograd.grad(expr(x, *leaves).square().sum(), leaves)
    g2 = torch.autograd.grad(conv_einsum(eq, x, *leaves, **opts).square().sum(), leaves)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("case", CASES)
def test_expression_equals_the_reference_on_matmul_cases(case) -> None:
    eq, shapes = case
    gen = torch.Generator().manual_seed(1)
    ops = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
    expr = conv_einsum_expression(eq, *shapes)
    torch.testing.assert_close(expr(*ops), reference_conv_einsum(eq, *ops))
    torch.testing.assert_close(expr(*ops), conv_einsum(eq, *ops), rtol=0, atol=0)


def test_expression_takes_tensors_for_shapes_checks_shapes_and_raises_early() -> None:
    x, w = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)
    expr = conv_einsum_expression("bshw,tshw->bthw|hw", x, w, padding=1, checkpoint=True)
    assert expr.shapes == ((2, 3, 6, 6), (4, 3, 3, 3)) and expr.options.checkpoint
    assert "bshw,tshw->bthw|hw" in repr(expr) and expr.info is not None
    torch.testing.assert_close(expr(x, w), F.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConvEinsumError, match="compiled for shapes"):
        expr(torch.randn(1, 3, 6, 6), w)
    with pytest.raises(ConvEinsumError, match="unknown padding"):
        conv_einsum_expression("bshw,tshw->bthw|hw", x, w, padding="wide")
    with pytest.raises(ConvEinsumError, match="unknown optimize"):
        conv_einsum_expression("bshw,tshw->bthw|hw", x, w, optimize="fastest")


def test_measuring_expression_measures_once_per_dtype_and_grad_pattern(monkeypatch) -> None:
    from zoo.conv_einsum import measure as measure_module

    runs = []
    real = measure_module.measure
    monkeypatch.setattr(measure_module, "measure", lambda *a: runs.append(1) or real(*a))
    gen = torch.Generator().manual_seed(3)
    eq = "nshw,rt,rs,rh,rw->nthw|hw"
    ops = [torch.randn(*s, generator=gen) for s in [(2, 5, 6, 6), (2, 4), (2, 5), (2, 3), (2, 3)]]
    set_autotune(True)
    try:
        expr = conv_einsum_expression(eq, *ops, padding=1)
    finally:
        set_autotune(None)
    assert expr.path is None
    PLAN_CACHE.clear()
    y = expr(*ops)
    expr(*ops)
    assert len(runs) == 1 and expr.path is not None
    torch.testing.assert_close(y, conv_einsum(eq, *ops, padding=1, optimize="naive"), rtol=1e-4, atol=1e-5)
    expr(*(t.double() for t in ops))
    assert len(runs) == 2
