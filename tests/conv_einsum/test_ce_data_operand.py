"""The data operand of a convolution letter is the first operand carrying it, never decided by sizes.

A feature map shorter than its kernel (2x2 data, 3x3 kernel) must still be the data: conv_einsum equals
F.conv2d in values and gradients along every evaluation order, and sizes that cannot be a convolution raise.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from .ce_paths import some_paths
from .ce_reference import reference_conv_einsum
from zoo.conv_einsum import ConvEinsumError, conv_einsum, conv_einsum_path
from zoo.errors import ZooError

CP = "bshw,rt,rs,rh,rw->bthw|hw"


def rnd(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)


def grads(y: Tensor, inputs: tuple[Tensor, ...], seed: int = 7) -> tuple[Tensor, ...]:
    """Gradients of ``<y, g>`` for a fixed random ``g`` (a full vector-Jacobian product, not just a sum)."""
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    return torch.autograd.grad((y * g).sum(), inputs)


def assert_same(got: Tensor, want: Tensor, inputs: tuple[Tensor, ...]) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got, want)
    for a, b in zip(grads(got, inputs), grads(want, inputs)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("opts", [dict(padding=1), dict(padding=1, stride=2), dict(padding="same"),
                                  dict(padding=2, dilation=2), dict(padding=(1, 2))])
def test_feature_map_shorter_than_kernel_equals_conv2d(opts: dict) -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = rnd(gen, 2, 3, 2, 2), rnd(gen, 4, 3, 3, 3)  # 2x2 data, 3x3 kernel
    got = conv_einsum("bshw,tshw->bthw|hw", x, w, **opts)
    assert_same(got, F.conv2d(x, w, **opts), (x, w))


def _cp_kernel(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    return torch.einsum("rt,rs,rh,rw->tshw", a, b, c, d)


@pytest.mark.parametrize("optimize", ["auto", "optimal", "greedy", "naive", *some_paths(5, 12, seed=1)],
                         ids=lambda o: o if isinstance(o, str) else str(o).replace(" ", ""))
def test_small_map_under_every_evaluation_order(optimize: object) -> None:
    # the planner composes kernels first, meets the data in the middle or last: the data stays operand 0
    gen = torch.Generator().manual_seed(1)
    x = rnd(gen, 2, 3, 2, 2)
    factors = (rnd(gen, 2, 4), rnd(gen, 2, 3), rnd(gen, 2, 3), rnd(gen, 2, 3))
    got = conv_einsum(CP, x, *factors, padding=1, optimize=optimize)
    assert_same(got, F.conv2d(x, _cp_kernel(*factors), padding=1), (x, *factors))


def test_data_is_the_first_operand_carrying_the_letter_not_operand_zero() -> None:
    gen = torch.Generator().manual_seed(2)
    a, x, b, c, d = rnd(gen, 2, 4), rnd(gen, 1, 3, 2, 1), rnd(gen, 2, 3), rnd(gen, 2, 3), rnd(gen, 2, 3)
    got = conv_einsum("rt,bshw,rs,rh,rw->bthw|hw", a, x, b, c, d, padding=1, stride=(2, 1))
    assert_same(got, F.conv2d(x, _cp_kernel(a, b, c, d), padding=1, stride=(2, 1)), (a, x, b, c, d))


@pytest.mark.parametrize("optimize", [[(0, 1), (0, 1)], [(1, 2), (0, 1)], [(0, 2), (0, 1)]])
def test_composed_kernels_longer_than_the_data(optimize: list) -> None:
    gen = torch.Generator().manual_seed(3)
    x, k1, k2 = rnd(gen, 2, 3, 2), rnd(gen, 3, 2, 3), rnd(gen, 2, 4, 3)  # effective kernel 5 on data 2
    eq = "bsh,sth,tuh->buh|h"
    got = conv_einsum(eq, x, k1, k2, padding=2, optimize=optimize)
    want = reference_conv_einsum(eq, x, k1, k2, padding=2)
    assert_same(got, want, (x, k1, k2))
    assert got.shape == (2, 4, 2)


def test_sizes_that_cannot_be_a_convolution_raise() -> None:
    x, w = torch.zeros(1, 3, 2, 2), torch.zeros(4, 3, 3, 3)
    for call in (lambda: conv_einsum("bshw,tshw->bthw|hw", x, w),
                 lambda: conv_einsum_path("bshw,tshw->bthw|hw", x.shape, w.shape)):
        with pytest.raises(ConvEinsumError) as info:
            call()
        assert isinstance(info.value, ZooError)
        msg = str(info.value)
        assert "expected the padded data to be at least as long as the dilated effective kernel span 3" in msg
        assert "got data size 2 (operand 0, 'bshw') with padding (0, 0)" in msg
        assert "first operand carrying it" in msg and "list it first" in msg
