"""U-Nets, Conv/ARMA-LSTMs, non-local block and armaize."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from zoo_arma.armaize import armaize
from zoo_arma.layer import ARMAConv2d
from zoo_arma.lstm import ConvLSTMNet
from zoo_arma.nonlocal_block import NonLocalBlock2d
from zoo_arma.unet import UNet


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_unet_parameter_counts_full_width():
    # widths 64..1024 as described: 34,527,041, i.e. Table 6.2's "3.453M" times 10
    with torch.device("meta"):  # counts only, no memory or init time
        unet, arma = UNet(), UNet(arma=True)
    assert _count(unet) == 34_527_041
    n_arma = sum(isinstance(m, ARMAConv2d) for m in arma.modules())
    assert n_arma == 22 and sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in unet.modules()) == 22
    ar_channels = sum(m.out_channels for m in arma.modules() if isinstance(m, ARMAConv2d))
    assert ar_channels == 6848 and _count(arma) == 34_527_041 + 4 * 6848


@pytest.mark.parametrize("kwargs,shape", [
    (dict(), (1, 3, 35, 21)),
    (dict(arma=True), (2, 3, 48, 40)),
    (dict(arma=True), (1, 3, 35, 21)),
    (dict(nonlocal_blocks=True), (1, 3, 32, 32)),
    (dict(arma=True, nonlocal_blocks=True), (1, 3, 33, 16)),
])
def test_unet_shapes(kwargs, shape):
    torch.manual_seed(0)
    model = UNet(width=2, **kwargs).eval()
    out = model(torch.randn(shape))
    assert out.shape == (shape[0], 1, shape[2], shape[3]) and torch.isfinite(out).all()


def test_arma_unet_at_identity_equals_unet():
    torch.manual_seed(0)
    unet = UNet(width=2, nonlocal_blocks=True).eval()
    arma = UNet(width=2, arma=True, nonlocal_blocks=True).eval()
    missing, unexpected = arma.load_state_dict(unet.state_dict(), strict=False)
    assert all(k.endswith("ar_params") for k in missing) and not unexpected
    x = torch.randn(2, 3, 32, 24)
    assert torch.equal(arma(x), unet(x))


def test_unet_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        UNet(width=2)(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=">= 16"):
        UNet(width=2)(torch.randn(1, 3, 8, 32))


def test_nonlocal_block_is_identity_at_init_and_attends_globally():
    torch.manual_seed(0)
    block = NonLocalBlock2d(4).eval()
    x = torch.randn(2, 4, 6, 5)
    assert torch.equal(block(x), x)
    nn.init.ones_(block.norm.weight)
    x = torch.zeros(1, 4, 6, 5, requires_grad=True)
    block(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, 5, 4].abs().sum() > 0  # the far corner influences the first pixel


def test_nonlocal_block_matches_explicit_embedded_gaussian():
    torch.manual_seed(1)
    block = NonLocalBlock2d(3, inter_channels=2, norm="instance")
    nn.init.ones_(block.norm.weight)
    x = torch.randn(1, 3, 2, 3)
    flat = x.flatten(2)[0]  # (C, N)
    lin = lambda conv, v: conv.weight[:, :, 0, 0] @ v + conv.bias[:, None]
    th, ph, g = lin(block.theta, flat), lin(block.phi, flat), lin(block.g, flat)
    w = torch.exp(th.T @ ph)
    y = (g @ (w / w.sum(1, keepdim=True)).T)
    ref = x + block.norm(lin(block.out, y).reshape(1, 3, 2, 3))
    torch.testing.assert_close(block(x), ref)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(), 887_489), (dict(kernel_size=5), 2_462_401), (dict(dilation=2), 887_489),
    (dict(arma=True), 893_633), (dict(arma=True, dilation=2), 893_633),
])
def test_lstm_parameter_counts_match_table_6_3(kwargs, expected):
    assert _count(ConvLSTMNet(**kwargs)) == expected


def test_lstm_forward_skips_and_identity():
    torch.manual_seed(0)
    conv = ConvLSTMNet(hidden=3, layers=4, skips=((1, 3), (2, 4)))
    arma = ConvLSTMNet(hidden=3, layers=4, skips=((1, 3), (2, 4)), arma=True, dilation=2)
    assert conv.cells[3].gates.in_channels == 6 + 3 and conv.head.in_channels == 6
    x = torch.randn(1, 3, 1, 9, 7)
    out = conv(x, future_frames=2)
    assert out.shape == (1, 2, 1, 9, 7)
    arma_same = ConvLSTMNet(hidden=3, layers=4, skips=((1, 3), (2, 4)), arma=True)
    arma_same.load_state_dict(conv.state_dict(), strict=False)
    assert torch.equal(arma_same(x, future_frames=2), out)
    assert arma(x).shape == (1, 10, 1, 9, 7)
    with pytest.raises(ValueError, match="skip"):
        ConvLSTMNet(layers=4, skips=((3, 9),))
    with pytest.raises(ValueError, match="frames"):
        conv(torch.randn(1, 3, 2, 9, 7))


def test_lstm_prediction_depends_on_context_only_causally():
    torch.manual_seed(0)
    net = ConvLSTMNet(hidden=2, layers=2, skips=((1, 2),))
    x = torch.randn(1, 4, 1, 6, 6)
    y = net(x, future_frames=3)
    x2 = x.clone()
    x2[:, -1] += 1.0  # the last context frame feeds every prediction
    assert not torch.allclose(net(x2, future_frames=3)[:, 0], y[:, 0])


def test_armaize_preserves_a_timm_cnn():
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=5).eval()
    n3 = sum(type(m) is nn.Conv2d and m.kernel_size == (3, 3) for m in model.modules())
    x = torch.randn(1, 3, 40, 36)
    ref = model(x)
    armaize(model)
    assert len(model.armaized) == n3 > 0
    assert sum(isinstance(m, ARMAConv2d) for m in model.modules()) == n3
    assert torch.equal(model(x), ref)
    # AR parameters are trainable and change the output
    model(x).sum().backward()
    layer = next(m for m in model.modules() if isinstance(m, ARMAConv2d))
    assert layer.ar_params.grad is not None and layer.ar_params.grad.abs().sum() > 0


def test_armaize_unet_equals_arma_unet_layout():
    torch.manual_seed(0)
    unet = UNet(width=2).eval()
    x = torch.randn(1, 3, 32, 32)
    ref = unet(x)
    armaize(unet)
    assert torch.equal(unet(x), ref)
    assert sorted(unet.state_dict()) == sorted(UNet(width=2, arma=True).state_dict())
