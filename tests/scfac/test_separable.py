"""Training-mode separable application (1 x K then K x 1 convolutions) against the dense kernel's convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_scfac.layers import OrthoConv2d


def _dense(layer: OrthoConv2d, x: torch.Tensor) -> torch.Tensor:
    """The dense path: one convolution with the (differentiable) built kernel."""
    return F.conv2d(layer.pad(x), layer.build_kernel(), layer.bias, 1, 0, layer.dilation, layer.groups)


@pytest.mark.parametrize("c_in, c_out, k, d, g, mode", [
    (6, 6, 3, 1, 1, "circular"), (8, 4, 5, 1, 1, "circular"), (4, 8, 5, 2, 1, "zeros"),
    (8, 8, 3, 2, 2, "zeros"), (6, 6, 4, 1, 1, "circular"), (4, 6, 5, 1, 2, "circular"),
])
def test_separable_forward_and_gradients_equal_the_dense_kernel(c_in, c_out, k, d, g, mode):
    torch.manual_seed(0)
    layer = OrthoConv2d(c_in, c_out, k, dilation=d, groups=g, padding_mode=mode, init="uniform").double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(2, c_in, 10, 10, dtype=torch.float64)
    weights = [p for p in layer.parameters() if p.requires_grad]
    sep = layer.separable_forward(x)
    ref = _dense(layer, x)
    assert sep.shape == ref.shape == (2, c_out, 10, 10)
    assert torch.allclose(sep, ref, atol=1e-12)
    probe = torch.randn_like(ref)
    g_sep = torch.autograd.grad((sep * probe).sum(), weights)
    g_ref = torch.autograd.grad((ref * probe).sum(), weights)
    for a, b in zip(g_sep, g_ref):
        assert torch.allclose(a, b, atol=1e-10)


def test_training_uses_the_separable_form_only_where_it_is_cheaper():
    assert OrthoConv2d(16, 16, 5).separable  # 5 * 32 * 16 < 25 * 16 * 16
    assert not OrthoConv2d(3, 48, 5).separable  # the stem: a 48-channel intermediate would cost more
    assert not OrthoConv2d(16, 16, 1).separable
    assert not OrthoConv2d(4, 16, 4, stride=2).separable  # strided layers build the polyphase kernel
    layer = OrthoConv2d(6, 6, 3, init="uniform")
    x = torch.randn(2, 6, 8, 8)
    train_out = layer(x)
    layer.eval()
    assert torch.allclose(layer(x), train_out, atol=1e-5)  # eval: the cached dense kernel, same operator
    with pytest.raises(ValueError, match="stride-1 2-D layer, got ndim=2, stride=2"):
        OrthoConv2d(4, 16, 4, stride=2).separable_forward(torch.randn(1, 4, 8, 8))
