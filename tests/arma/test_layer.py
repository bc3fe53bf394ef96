"""ARMAConv2d: identity = nn.Conv2d, the FFT solve inverts the AR filter, stability, gradients (Thm 6.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo_arma.ar import (
    ar_apply,
    ar_solve,
    factor_coefficients,
    filter_1d,
    filter_2d,
    parameters_from_coefficients,
    transfer_function,
)
from zoo_arma.layer import ARMAConv2d

CONFIGS = [  # (kwargs, input shape)
    (dict(in_channels=3, out_channels=4, kernel_size=3), (2, 3, 8, 8)),
    (dict(in_channels=3, out_channels=4, kernel_size=3), (1, 3, 7, 10)),
    (dict(in_channels=2, out_channels=5, kernel_size=5, bias=False), (1, 2, 9, 6)),
    (dict(in_channels=4, out_channels=4, kernel_size=3, stride=2), (2, 4, 11, 8)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, dilation=2), (1, 2, 12, 9)),
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, ar_kernel_size=5), (1, 4, 6, 13)),
]


def _twin_conv(layer: ARMAConv2d) -> nn.Conv2d:
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.dilation, layer.groups, layer.bias is not None)
    conv.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "ar_params"})
    return conv


@pytest.mark.parametrize("kwargs,shape", CONFIGS)
def test_zero_ar_is_exactly_the_convolution(kwargs, shape):
    torch.manual_seed(0)
    layer = ARMAConv2d(**kwargs)
    x = torch.randn(shape)
    assert torch.count_nonzero(layer.ar_params) == 0
    assert torch.equal(layer(x), _twin_conv(layer)(x))


def test_default_padding_keeps_size_and_dilation_is_applied():
    x = torch.randn(1, 2, 9, 12)
    for k, d in [(3, 1), (5, 1), (3, 2), (3, 3)]:
        layer = ARMAConv2d(2, 3, k, dilation=d)
        assert layer(x).shape == (1, 3, 9, 12)
        assert layer.padding == (d * (k - 1) // 2,) * 2 and layer.dilation == (d, d)


@pytest.mark.parametrize("kwargs,shape", CONFIGS)
def test_fft_solve_inverts_the_ar_filter(kwargs, shape):
    torch.manual_seed(1)
    layer = ARMAConv2d(**kwargs).double()
    with torch.no_grad():
        layer.ar_params.normal_(0.0, 2.0)
    x = torch.randn(shape, dtype=torch.float64)
    y = layer(x)
    t = layer.moving_average(x)
    assert not torch.allclose(y, t)
    # spatial-domain AR filter (depthwise circular conv2d) applied to the output gives back the MA output
    torch.testing.assert_close(ar_apply(y, layer.ar_params), t, rtol=0, atol=1e-10)


def test_fft_solve_matches_a_dense_linear_solve():
    torch.manual_seed(2)
    h, w, q = 5, 6, 2
    params = torch.randn(1, 2, q, 2, dtype=torch.float64)
    kernel = filter_2d(params)[0].numpy()  # (2q+1, 2q+1) correlation taps
    n = h * w
    mat = np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            for k in range(-q, q + 1):
                for l in range(-q, q + 1):
                    mat[i * w + j, ((i + k) % h) * w + (j + l) % w] += kernel[k + q, l + q]
    t = torch.randn(1, 1, h, w, dtype=torch.float64)
    ref = np.linalg.solve(mat, t.flatten().numpy()).reshape(1, 1, h, w)
    np.testing.assert_allclose(ar_solve(t, params).numpy(), ref, rtol=1e-10, atol=1e-12)


def test_separable_filter_is_the_product_of_length3_factors():
    torch.manual_seed(3)
    params = torch.randn(3, 2, 3, 2, dtype=torch.float64)
    minus, plus = factor_coefficients(params)
    for t in range(3):
        for axis in range(2):
            ref = np.array([1.0])
            for q in range(3):
                ref = np.convolve(ref, [minus[t, axis, q].item(), 1.0, plus[t, axis, q].item()])
            np.testing.assert_allclose(filter_1d(minus[t, axis], plus[t, axis]).numpy(), ref, rtol=1e-12)
    a = filter_2d(params)
    np.testing.assert_allclose(a.numpy(), np.einsum("ti,tj->tij", filter_1d(minus[:, 0], plus[:, 0]).numpy(),
                                                    filter_1d(minus[:, 1], plus[:, 1]).numpy()))
    # the closed-form transfer function is the DFT of the (circularly placed) kernel
    h, w = 9, 8
    placed = torch.zeros(3, h, w, dtype=torch.float64)
    for k in range(-3, 4):
        for l in range(-3, 4):
            placed[:, -k % h, -l % w] += a[:, k + 3, l + 3]
    torch.testing.assert_close(transfer_function(params, (h, w)), torch.fft.rfft2(placed))


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e3, 1e6])
def test_stability_for_random_and_extreme_parameters(scale):
    torch.manual_seed(4)
    layer = ARMAConv2d(3, 8, 3, ar_kernel_size=5)
    with torch.no_grad():
        layer.ar_params.copy_(scale * torch.randn_like(layer.ar_params))
        layer.ar_params[0] = scale  # all coefficients saturated at the corner of the region
        layer.ar_params[1] = -scale
    minus, plus = factor_coefficients(layer.ar_params)
    assert (minus.abs() + plus.abs()).max() <= 1 - layer.ar_margin + 1e-6  # condition (6.8)
    # |A_hat| on a fine grid of the unit circle: bounded away from zero by prod_q (1 - |f_-1 + f_1|)
    a_hat = transfer_function(layer.ar_params.double(), (256, 256), onesided=False).abs()
    md, pd = factor_coefficients(layer.ar_params.double())
    bound = (1 - (md + pd).abs()).flatten(1).prod(dim=1)
    assert a_hat.min() > 0
    assert (a_hat.amin(dim=(1, 2)) >= bound * (1 - 1e-9)).all()
    x = torch.randn(2, 3, 16, 12)
    y = layer(x)
    y.square().mean().backward()
    assert torch.isfinite(y).all() and torch.isfinite(layer.ar_params.grad).all()
    assert torch.isfinite(layer.weight.grad).all()


def test_gradcheck_float64():
    torch.manual_seed(5)
    for kwargs, shape in [(dict(ar_kernel_size=3), (1, 2, 5, 6)), (dict(ar_kernel_size=3), (2, 2, 6, 7)), (dict(ar_kernel_size=5, ar_padding=2, stride=2), (2, 2, 7, 4))]:
        layer = ARMAConv2d(2, 3, 3, **kwargs).double()
        with torch.no_grad():
            layer.ar_params.normal_(0.0, 1.0)
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

        def fn(inp, weight, bias, params):
            t = F.conv2d(inp, weight, bias, layer.stride, layer.padding)
            return ar_solve(t, params, layer.ar_margin, layer.ar_padding)

        assert torch.autograd.gradcheck(fn, (x, layer.weight, layer.bias, layer.ar_params))


def test_backward_is_the_two_arma_models_of_theorem_6_4():
    """dL/dT = A^T-solve of dL/dY (6.6b) and dL/dA = -(dL/dT) correlated with Y (6.6a), checked against autograd."""
    torch.manual_seed(6)
    q, h, w = 1, 7, 8
    params = torch.randn(3, 2, q, 2, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    y = ar_solve(t, params)
    grad_y = torch.randn_like(y)
    g_t, g_params = torch.autograd.grad(y, (t, params), grad_y)
    # transposed image A^T[k, l] = A[-k, -l]: swap f_-1 and f_1, i.e. negate beta
    params_t = params.detach() * torch.tensor([1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(filter_2d(params_t), filter_2d(params.detach()).flip(-1, -2))
    theorem_g_t = ar_solve(grad_y, params_t)
    torch.testing.assert_close(g_t, theorem_g_t)
    # dL/dA[k, l] = - sum_{b,i,j} (dL/dT)[b, i, j] * Y[b, i + k, j + l]   (circular)
    g_a = torch.zeros(3, 2 * q + 1, 2 * q + 1, dtype=torch.float64)
    for k in range(-q, q + 1):
        for l in range(-q, q + 1):
            shifted = torch.roll(y.detach(), shifts=(-k, -l), dims=(-2, -1))
            g_a[:, k + q, l + q] = -(theorem_g_t * shifted).sum(dim=(0, 2, 3))
    (via_theorem,) = torch.autograd.grad(filter_2d(params), params, g_a)
    torch.testing.assert_close(g_params, via_theorem)


def test_ar_padding_removes_wrap_around():
    layer = ARMAConv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    coef = torch.full((1, 2, 1), -0.5, dtype=torch.float32)  # y_i - 0.5 y_{i-1} = t_i along both axes
    layer.set_ar_coefficients(coef, torch.zeros_like(coef))
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 8, 15] = 1.0  # impulse at the right edge
    circular = layer(x)[0, 0, 8]
    assert circular[0] > 0.5 ** 2 * 0.5  # wrapped around to the left edge
    layer.ar_padding = 48
    padded = layer(x)[0, 0, 8]
    assert padded[:15].abs().max() < 1e-6  # causal filter: nothing to the left, nothing wraps
    torch.testing.assert_close(padded[15], torch.tensor(1.0))


def test_parameters_from_coefficients_round_trip_and_errors():
    minus = torch.tensor([[[-0.9], [0.2]]])
    plus = torch.tensor([[[0.0], [-0.3]]])
    m2, p2 = factor_coefficients(parameters_from_coefficients(minus, plus))
    torch.testing.assert_close(m2, minus)
    torch.testing.assert_close(p2, plus)
    with pytest.raises(ValueError, match="f_-1 \\+ f_1"):
        parameters_from_coefficients(torch.tensor([[[-1.0], [0.0]]]), torch.zeros(1, 2, 1))


def test_half_precision_and_argument_errors():
    layer = ARMAConv2d(2, 2, 3, ar_init=0.5)
    x = torch.randn(1, 2, 8, 8)
    ref = layer(x)
    out = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="odd positive"):
        ARMAConv2d(2, 2, 3, ar_kernel_size=4)
    with pytest.raises(ValueError, match="does not match"):
        ARMAConv2d(2, 2, 3, ar_kernel_size=3, ar_order=2)
    with pytest.raises(ValueError, match="ar_init"):
        ARMAConv2d(2, 2, 3, ar_init=1.0)
    assert ARMAConv2d(2, 2, 3, ar_kernel_size=5, ar_order=2).ar_params.shape == (2, 2, 2, 2)


def test_ar_init_is_a_stable_low_pass_filter():
    torch.manual_seed(7)
    layer = ARMAConv2d(2, 16, 3, ar_init=0.8)
    minus, plus = factor_coefficients(layer.ar_params)
    s = (minus + plus).detach()
    assert (s <= 0).all() and (s >= -0.8 - 1e-6).all() and s.min() < -0.5
    torch.testing.assert_close(minus, plus)
    assert math.isclose(float(transfer_function(layer.ar_params.detach(), (8, 8)).abs().amin()), float((1 + s).flatten(1).prod(dim=1).min()), rel_tol=1e-5)
