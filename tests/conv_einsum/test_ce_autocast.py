"""conv_einsum inside torch.autocast: a lower-precision op like F.conv2d (operands cast to the autocast dtype)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.conv_einsum import ConvEinsumError


def _cp_layer(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 10, 10, generator=g, dtype=dtype)
    factors = [torch.randn(4, 6, generator=g), torch.randn(4, 8, generator=g), torch.randn(4, 3, generator=g),
               torch.randn(4, 3, generator=g)]
    return x, factors


def test_mixed_bf16_activation_and_fp32_factors_under_autocast_match_the_dense_conv():
    x, factors = _cp_layer()
    kernel = torch.einsum("rt,rs,rh,rw->tshw", *factors)
    reference = F.conv2d(x, kernel, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = zoo.conv_einsum("bshw,rt,rs,rh,rw->bthw|hw", x.bfloat16(), *factors, padding="same")
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), reference, rtol=3e-2, atol=3e-2 * reference.abs().max().item())


def test_mixed_dtypes_outside_autocast_still_raise():
    x, factors = _cp_layer()
    with pytest.raises(ConvEinsumError, match="share dtype"):
        zoo.conv_einsum("bshw,rt,rs,rh,rw->bthw|hw", x.bfloat16(), *factors, padding="same")


def test_autocast_disabled_region_keeps_float32():
    x, factors = _cp_layer()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        got = zoo.conv_einsum("bshw,rt,rs,rh,rw->bthw|hw", x, *factors, padding="same")
    assert got.dtype == torch.float32
