"""conv_einsum convolutions against F.conv1d/2d/3d."""

from __future__ import annotations

import itertools

import pytest
import torch

from .ce_reference import torch_conv
from zoo.conv_einsum import ConvEinsumError, conv_einsum

GEN = torch.Generator().manual_seed(0)


def rnd(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


EQ = {1: "bsh,tsh->bth|h", 2: "bshw,tshw->bthw|hw", 3: "bsdhw,tsdhw->btdhw|dhw"}


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_plain_strided_dilated_padded(nd: int, k: int) -> None:
    x = rnd(2, 3, *([7] * nd))
    w = rnd(4, 3, *([k] * nd))
    for stride, padding, dilation in itertools.product([1, 2], [0, 1, 2], [1, 2]):
        got = conv_einsum(EQ[nd], x, w, stride=stride, padding=padding, dilation=dilation)
        want = torch_conv(x, w, stride, padding, dilation)
        torch.testing.assert_close(got, want, msg=f"nd={nd} k={k} s={stride} p={padding} d={dilation}")


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("word", ["same", "valid"])
def test_padding_words(k: int, word: str) -> None:
    x, w = rnd(2, 3, 8, 7), rnd(4, 3, k, k - 1 if k > 1 else 1)
    for dilation in (1, 2):
        got = conv_einsum(EQ[2], x, w, padding=word, dilation=dilation)
        torch.testing.assert_close(got, torch_conv(x, w, 1, word, dilation))


@pytest.mark.parametrize("k", [2, 3])
def test_full_padding(k: int) -> None:
    x, w = rnd(1, 2, 6), rnd(3, 2, k)
    got = conv_einsum(EQ[1], x, w, padding="full", dilation=2)
    torch.testing.assert_close(got, torch_conv(x, w, 1, 2 * (k - 1), 2))


def test_per_mode_options() -> None:
    x, w = rnd(2, 3, 9, 8), rnd(4, 3, 3, 2)
    got = conv_einsum(EQ[2], x, w, stride={"h": 2}, padding={"h": 1, "w": 2}, dilation=[1, 2])
    torch.testing.assert_close(got, torch_conv(x, w, (2, 1), (1, 2), (1, 2)))
    got = conv_einsum(EQ[2], x, w, padding={"h": (1, 0), "w": (0, 2)})
    want = torch_conv(torch.nn.functional.pad(x, (0, 2, 1, 0)), w)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_circular(nd: int) -> None:
    x, w = rnd(2, 3, *([5] * nd)), rnd(4, 3, *([3] * nd))
    for padding, stride in ((1, 1), (2, 2), (1, 2)):
        got = conv_einsum(EQ[nd], x, w, padding=padding, stride=stride, padding_mode="circular")
        torch.testing.assert_close(got, torch_conv(x, w, stride, padding, 1, padding_mode="circular"))


def test_grouped_and_depthwise() -> None:
    g, cin, cout = 3, 2, 4
    x, w = rnd(2, g * cin, 6, 5), rnd(g * cout, cin, 3, 3)
    got = conv_einsum("bgshw,gtshw->bgthw|hw", x.reshape(2, g, cin, 6, 5), w.reshape(g, cout, cin, 3, 3), padding=1)
    torch.testing.assert_close(got.reshape(2, g * cout, 6, 5), torch_conv(x, w, 1, 1, 1, groups=g))
    xd, wd = rnd(2, 5, 6, 6), rnd(5, 1, 3, 3)
    got = conv_einsum("bchw,chw->bchw|hw", xd, wd[:, 0], padding=1, stride=2)
    torch.testing.assert_close(got, torch_conv(xd, wd, 2, 1, 1, groups=5))


def test_data_is_the_first_operand_not_the_longest() -> None:
    # the data operand is the first operand carrying the letter, whatever the sizes (docs/conv_einsum.md)
    x, w = rnd(2, 3, 9), rnd(4, 3, 3)
    torch.testing.assert_close(conv_einsum("bsh,tsh->bth|h", x, w), torch_conv(x, w))
    with pytest.raises(ConvEinsumError, match=r"(?s)leaves no output.*got data size 3 \(operand 0.*list it first"):
        conv_einsum("tsh,bsh->bth|h", w, x)


def test_four_conv_modes_against_reference() -> None:
    from .ce_reference import reference_conv_einsum

    x, w = rnd(1, 2, 4, 4, 3, 3), rnd(2, 2, 2, 2, 2, 2)
    eq = "nsabcd,tsabcd->ntabcd|abcd"
    got = conv_einsum(eq, x, w, padding=1, stride=[1, 2, 1, 1])
    torch.testing.assert_close(got, reference_conv_einsum(eq, x, w, padding=1, stride=[1, 2, 1, 1]))
