"""Every documented bad input raises ConvEinsumError with a message that says what was wrong."""

from __future__ import annotations

import pytest
import torch

from zoo.conv_einsum import ConvEinsumError, conv_einsum, conv_einsum_path

X, W = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)
EQ = "bshw,tshw->bthw|hw"


@pytest.mark.parametrize(
    "eq, ops, kwargs, match",
    [
        ("ab,bc->ac", (torch.randn(2, 3), torch.randn(4, 5)), {}, "size mismatch for letter 'b'"),
        ("ab,bc->ac", (torch.randn(2, 1), torch.randn(4, 5)), {}, "size mismatch"),
        ("bshw,tshw->bth|hw", (X, W), {}, "convolution letter 'w' is missing from the output"),
        ("ab,bc->acd", (torch.randn(2, 3), torch.randn(3, 5)), {}, "'d' of .* appear in no input"),
        (EQ, (X, W), {"padding": "circle"}, "unknown padding 'circle'"),
        (EQ, (X, W), {"padding_mode": "reflect"}, "unknown padding_mode 'reflect'"),
        (EQ, (X, W), {"stride": {"s": 2}}, "not convolution letters"),
        ("ab,bc->ac", (torch.randn(2, 3), torch.randn(3, 5)), {"stride": 2}, "no convolution letters"),
        (EQ, (X, W), {"stride": 0}, "positive int"),
        (EQ, (X, W), {"dilation": -1}, "positive int"),
        (EQ, (X, W), {"padding": -1}, "non-negative"),
        (EQ, (X, W), {"padding": "same", "stride": 2}, "needs stride 1"),
        (EQ, (X, W), {"dilation": 3}, "leaves no output"),
        (EQ, (X, W), {"padding": 7, "padding_mode": "circular"}, "larger than the data size"),
        (EQ, (X,), {}, "names 2 operand"),
        ("bshw,tshw->bthw|hwh", (X, W), {}, "repeat a letter"),
        ("bshh,tshw->bthw|h", (X, W), {}, "repeats inside operand 0"),
        ("bshw,tsw->bthw|hw", (X, W[:, :, 0]), {}, "appears only in operand 0"),
        ("bs...,ts->bt", (X, W), {}, "ellipsis"),
        ("b1,ts->bt", (X, W), {}, "invalid character"),
        ("ab,bc->aa", (torch.randn(2, 3), torch.randn(3, 5)), {}, "repeats letter"),
        ("abc,bc->a", (torch.randn(2, 3), torch.randn(3, 5)), {}, "operand 0 has 2 dimension"),
        (EQ, (X, W), {"stride": [1, 2, 3]}, "3 entries but there are 2"),
        (EQ, (X, W), {"optimize": "fastest"}, "unknown optimize"),
        (EQ, (X, W), {"optimize": [(0, 1, 2)]}, "exactly two"),
        (EQ, (X, W), {"optimize": [(0, 5)]}, "outside"),
        ("ab,bc,cd->ad", (torch.randn(2, 3), torch.randn(3, 4), torch.randn(4, 5)), {"optimize": [(0, 1)]},
         "leaves 2 operands"),
        ("ab,bc,cd->ad", (torch.randn(2, 3), torch.randn(3, 4), torch.randn(4, 5)), {"memory_limit": 0},
         "memory_limit"),
        (EQ, (X, W.double()), {}, "share dtype"),
    ],
)
def test_bad_input(eq: str, ops: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ConvEinsumError, match=match):
        conv_einsum(eq, *ops, **kwargs)


def test_memory_limit_too_small_for_any_path() -> None:
    a, b, c = torch.randn(8, 2), torch.randn(2, 8), torch.randn(8, 8)
    with pytest.raises(ConvEinsumError, match="no pairwise path"):
        conv_einsum_path("ab,bc,cd->ad", a, b, c, memory_limit=10)


def test_error_is_value_error() -> None:
    assert issubclass(ConvEinsumError, ValueError)
