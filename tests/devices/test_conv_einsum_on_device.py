"""conv_einsum on every device this machine has: each factorized layer, along several paths and the measured one,
equals reconstruct-the-kernel-then-F.conv2d on the same device, values and gradients (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ..conv_einsum.ce_paths import some_paths
from ..conv_einsum.test_ce_layers import LAYER_NAMES, _layers
from . import DEVICES
from zoo.conv_einsum import conv_einsum


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_factorized_layer_on_device_matches_dense_conv_with_gradients(name: str, device: str):
    layer = {row[0]: row for row in _layers(torch.Generator().manual_seed(1))}[name]
    _, equation, x, factors, kernel_of = layer
    x = x.to(device).requires_grad_()
    factors = [f.to(device).requires_grad_() for f in factors]
    dense_x = x.reshape(x.shape[0], -1, *x.shape[-2:])
    reference = F.conv2d(dense_x, kernel_of(factors), stride=2, padding=1)
    ref_grads = torch.autograd.grad(reference.square().sum(), [x, *factors])
    for optimize in [*some_paths(len(factors) + 1, 3, seed=0), "auto", "measure"]:
        got = conv_einsum(equation, x, *factors, stride=2, padding=1, optimize=optimize)
        got = got.reshape(reference.shape)
        torch.testing.assert_close(got, reference)
        grads = torch.autograd.grad(got.square().sum(), [x, *factors])
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r)
