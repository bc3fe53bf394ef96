"""Matmul steps (einsum steps on a view of the larger operand) and the traffic-aware "auto" path search."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch.autograd import gradcheck

from zoo.conv_einsum import conv_einsum, conv_einsum_path
from zoo.conv_einsum.atomic import MatmulStep
from zoo.conv_einsum import ConvEinsumOptions
from zoo.conv_einsum.plan import make_plan

from .ce_reference import reference_conv_einsum

# (equation, shapes): channel contractions of NCHW data (w @ x and x @ w), batch letters, outer products
CASES = [
    ("zbhw,cb->zchw", [(2, 5, 3, 4), (3, 5)]),
    ("zhwb,cb->zhwc", [(2, 3, 4, 5), (3, 5)]),
    ("zgdhw,gad->zgahw", [(2, 3, 4, 3, 2), (3, 5, 4)]),
    ("gda,gfc->gdafc", [(3, 2, 4), (3, 2, 2)]),
    ("zdefhw,gda,geb,gfc->zabchw", [(2, 2, 3, 2, 3, 3), (4, 2, 2), (4, 3, 2), (4, 2, 3)]),
]


def _grads(fn: Callable[..., torch.Tensor], ops: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Value and gradients of a fixed random projection of ``fn(*ops)``."""
    y = fn(*ops)
    proj = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype)
    return (y, *torch.autograd.grad((y * proj).sum(), ops))


@pytest.mark.parametrize("case", CASES)
def test_matmul_steps_match_einsum(case) -> None:
    eq, shapes = case
    gen = torch.Generator().manual_seed(0)
    ops = [torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    _, info = conv_einsum_path(eq, *ops)
    assert any(s.kernel == "matmul" for s in info.steps)
    assert conv_einsum(eq, *ops).is_contiguous()
    got, ref = _grads(lambda *t: conv_einsum(eq, *t), ops), _grads(lambda *t: torch.einsum(eq, *t), ops)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("case", CASES[:4])
def test_matmul_steps_gradcheck(case) -> None:
    eq, shapes = case
    gen = torch.Generator().manual_seed(0)
    ops = [torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    assert gradcheck(lambda *t: conv_einsum(eq, *t), tuple(ops))


def test_channel_contraction_keeps_the_data_layout() -> None:
    """A CP 1x1 layer: two matmul steps on views of (B, C, H, W) data, the output already in (B, T, H, W) order."""
    _, info = conv_einsum_path("zbhw,ca,cb->zahw", (4, 16, 8, 8), (3, 12), (3, 16))
    assert [s.kernel for s in info.steps] == ["matmul", "matmul"]
    assert [s.equation.split("->")[1] for s in info.steps] == ["zchw", "zahw"]


def test_kernel_rebuild_feeding_a_conv_is_a_matmul() -> None:
    eq = "zdefhw,gda,geb,gfc,ghw->zabchw|hw"
    shapes = [(1, 2, 2, 2, 5, 5), (3, 2, 2), (3, 2, 2), (3, 2, 2), (3, 3, 3)]
    gen = torch.Generator().manual_seed(1)
    ops = [torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    path = [(1, 2), (1, 2), (1, 2), (0, 1)]  # rebuild the dense kernel, then one conv2d
    _, info = conv_einsum_path(eq, *shapes, padding=1, optimize=path)
    assert [s.kernel for s in info.steps] == ["matmul", "matmul", "matmul", "conv2d"]
    got = _grads(lambda *t: conv_einsum(eq, *t, padding=1, optimize=path), ops)
    ref = _grads(lambda *t: conv_einsum(eq, *t, padding=1, optimize="naive"), ops)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)


def test_auto_avoids_huge_memory_bound_intermediates() -> None:
    """Reshaped CP with a rank above its channel modes: "optimal" (MACs only) contracts the data factor by
    factor through (batch x rank x channels) intermediates; "auto" also charges memory traffic."""
    eq = "zdefhw,gda,geb,gfc,ghw->zabchw|hw"
    shapes = [(4, 8, 8, 8, 4, 4), (586, 8, 8), (586, 8, 8), (586, 8, 8), (586, 3, 3)]
    _, optimal = conv_einsum_path(eq, *shapes, padding=1, optimize="optimal")
    _, auto = conv_einsum_path(eq, *shapes, padding=1)
    assert auto.largest_intermediate < optimal.largest_intermediate
    assert optimal.opt_cost <= auto.opt_cost  # "optimal" still minimises multiply-adds exactly


def test_batched_rank_to_channel_contraction_writes_the_output_in_place() -> None:
    """CP at batch 16: the last step maps (B, R, H, W) to (B, T, H, W) with the small (R, T) factor shared by the
    whole batch (a bmm on views, or one 1x1 convolution on the CPU for narrow images), not through a permuted
    copy of the large operand and of the result; the first step likewise. Values and gradients match the
    independent reference."""
    eq = "bshw,rs,rh,rw,rt->bthw|hw"
    for shapes in ([(16, 1024, 14, 14), (46, 1024), (46, 3), (46, 3), (46, 1024)],
                   [(16, 2048, 7, 7), (92, 2048), (92, 3), (92, 3), (92, 2048)]):
        _, info = conv_einsum_path(eq, *shapes, padding=1)
        assert info.steps[0].kernel == "matmul" and info.steps[0].equation.endswith("->brhw")
        assert info.steps[-1].kernel == "matmul" and info.steps[-1].equation.endswith("->bthw")
        plan = make_plan(eq, shapes, ConvEinsumOptions(padding=1))
        assert plan.final_perm is None
        assert all(step.out_perm is None for _, _, step in plan.steps if isinstance(step, MatmulStep))
        # 49 columns per image at 7 px: one 1x1 convolution on the CPU; 196 at 14 px: a bmm
        assert plan.steps[-1][2].conv_1x1 == ("cpu" if shapes[0][-1] == 7 else "")
    # result 60x larger than the rank-4 operand
    _check_cp_ends(eq, [(3, 6, 5, 5), (4, 6), (4, 3), (4, 3), (4, 40)], seed=2, conv_1x1="cpu")


def _check_cp_ends(eq: str, shapes: list[tuple[int, ...]], seed: int, conv_1x1: str) -> None:
    """The first and last steps of ``eq``'s plan use ``conv_1x1``; values and gradients match the reference."""
    gen = torch.Generator().manual_seed(seed)
    ops = [torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    plan = make_plan(eq, shapes, ConvEinsumOptions(padding=1))
    assert [plan.steps[k][2].conv_1x1 for k in (0, -1)] == [conv_1x1, conv_1x1]
    got = _grads(lambda *t: conv_einsum(eq, *t, padding=1), ops)
    ref = _grads(lambda *t: reference_conv_einsum(eq, *t, padding=1), ops)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b)


def test_an_oversized_broadcast_becomes_a_1x1_convolution_on_every_device() -> None:
    """Rank about the channel count, few pixels: broadcasting the (R, S) factor over the batch would outgrow the
    data and the result, so the step runs as one 1x1 convolution (any device) instead of permuting the data."""
    eq = "bshw,rs,rh,rw,rt->bthw|hw"
    plan = make_plan(eq, [(16, 1024, 14, 14), (919, 1024), (919, 3), (919, 3), (919, 1024)], ConvEinsumOptions(padding=1))
    assert [plan.steps[k][2].conv_1x1 for k in (0, -1)] == ["any", "any"] and plan.final_perm is None
    _check_cp_ends(eq, [(4, 40, 3, 3), (40, 40), (40, 3), (40, 3), (40, 40)], seed=4, conv_1x1="any")
