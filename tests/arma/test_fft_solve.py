"""The closed-form separable FFT solve (zoo_arma.fft_solve) against plain autograd through torch.fft."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo_arma import fft_solve
from zoo_arma.ar import ar_apply, ar_solve, factor_coordinates, filter_2d, transfer_function
from zoo_arma.fft_solve import separable_ar_solve
from zoo_arma.layer import ARMAConv2d

from ..devices import DEVICES


def reference_solve(t: torch.Tensor, params: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """``y = crop(irfft2(rfft2(pad(t)) / A_hat))`` with zeros on every side, differentiated by autograd."""
    tp = F.pad(t, (padding,) * 4)
    h, w = tp.shape[-2:]
    y = torch.fft.irfft2(torch.fft.rfft2(tp) / transfer_function(params, (h, w)), s=(h, w))
    return y[..., padding : h - padding, padding : w - padding]


CASES = [  # (batch, channels, H, W, Q, padding)
    (1, 3, 8, 8, 1, 0),
    (3, 2, 7, 10, 1, 0),
    (1, 4, 9, 6, 2, 3),
    (2, 2, 5, 11, 3, 2),
    (2, 3, 16, 13, 1, 1),
]


@pytest.mark.parametrize("b,c,h,w,q,pad", CASES)
@pytest.mark.parametrize("params_grad", [True, False])
def test_output_and_gradients_match_autograd_through_fft(b, c, h, w, q, pad, params_grad):
    g = torch.Generator().manual_seed(b * 100 + h * 10 + w)
    t = torch.randn(b, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    params = (2.0 * torch.randn(c, 2, q, 2, generator=g, dtype=torch.float64)).requires_grad_(params_grad)
    y = ar_solve(t, params, padding=pad)
    ref = reference_solve(t, params, pad)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    grad_y = torch.randn(y.shape, generator=g, dtype=torch.float64)
    inputs = (t, params) if params_grad else (t,)
    for got, want in zip(torch.autograd.grad(y, inputs, grad_y), torch.autograd.grad(ref, inputs, grad_y)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b,size", [(1, (6, 8)), (2, (7, 9)), (1, (9, 12))])
def test_gradcheck_of_the_custom_backward(b, size):
    torch.manual_seed(b)
    t = torch.randn(b, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    sd = (0.9 * torch.rand(2, 2, 2, 2, dtype=torch.float64) * 2 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, sd: separable_ar_solve(t, sd, size), (t, sd))


def test_identity_is_exact_and_still_has_a_parameter_gradient():
    torch.manual_seed(0)
    t = torch.randn(2, 3, 9, 10, requires_grad=True)
    params = torch.zeros(3, 2, 1, 2, requires_grad=True)
    y = ar_solve(t, params, padding=2)
    assert torch.equal(y, t)
    (g_params,) = torch.autograd.grad(y.square().sum(), params)
    (want,) = torch.autograd.grad(reference_solve(t, params, 2).square().sum(), params)
    assert g_params.abs().max() > 0
    torch.testing.assert_close(g_params, want, rtol=1e-4, atol=1e-4)


def test_the_ar_filter_applied_to_the_output_gives_back_the_input_float32():
    torch.manual_seed(1)
    layer = ARMAConv2d(3, 8, 3, ar_kernel_size=5, ar_init=0.9)
    x = torch.randn(2, 3, 32, 24)
    y = layer(x)
    t = layer.moving_average(x)
    torch.testing.assert_close(ar_apply(y, layer.ar_params), t, rtol=1e-4, atol=1e-4)
    assert (y - t).abs().max() > 0.1


def test_backward_twice_with_retained_graph_gives_the_same_gradients():
    torch.manual_seed(2)
    t = torch.randn(2, 2, 6, 7, requires_grad=True)
    params = torch.randn(2, 2, 1, 2, requires_grad=True)
    y = ar_solve(t, params)
    first = torch.autograd.grad(y.sum(), (t, params), retain_graph=True)
    second = torch.autograd.grad(y.sum(), (t, params))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_first_call_in_inference_mode_then_training():
    layer = ARMAConv2d(2, 2, 3, ar_init=0.5)
    x = torch.randn(1, 2, 11, 13)  # a size no other test uses, so the frequency grid is built here
    with torch.inference_mode():
        y0 = layer(x)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(y, y0)
    assert layer.ar_params.grad.abs().sum() > 0


def test_factor_coordinates_are_the_rotated_taps():
    params = torch.randn(2, 2, 3, 2)
    sd = factor_coordinates(params, 0.05)
    torch.testing.assert_close(sd, 0.95 * torch.tanh(params))
    with pytest.raises(ValueError, match="margin"):
        factor_coordinates(params, 0.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_every_device_matches_the_float64_cpu_reference(device, dtype, tol):
    torch.manual_seed(3)
    for b, pad in [(1, 0), (3, 2)]:
        t = torch.randn(b, 4, 12, 9, dtype=torch.float64, requires_grad=True)
        params = torch.randn(4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
        ref = reference_solve(t, params, pad)
        grad_y = torch.randn_like(ref)
        want = torch.autograd.grad(ref, (t, params), grad_y)
        tc = t.detach().to(device, dtype).requires_grad_()
        pc = params.detach().to(device, dtype).requires_grad_()
        y = ar_solve(tc, pc, padding=pad)
        got = torch.autograd.grad(y, (tc, pc), grad_y.to(device, dtype))
        torch.testing.assert_close(y.double().cpu(), ref.detach(), rtol=tol, atol=tol)
        for g_got, g_want in zip(got, want):
            torch.testing.assert_close(g_got.double().cpu(), g_want, rtol=tol, atol=tol)


# --- the pairs path (batch >= 2: two samples per complex transform, blocked on the CPU) -------------------------

PAIR_CASES = [  # (batch, channels, H, W, Q, padding)
    (2, 3, 8, 8, 1, 0),
    (3, 2, 7, 10, 1, 0),  # odd batch: the last pair has a zero imaginary part
    (4, 4, 9, 6, 2, 3),
    (5, 2, 5, 11, 3, 2),  # odd batch, odd width, padding
    (8, 3, 16, 13, 1, 1),
]


def _dense_ar_matrix(kernel: np.ndarray, h: int, w: int) -> np.ndarray:
    """The circular AR system ``A * y`` as an ``(h w, h w)`` matrix (correlation taps ``kernel``)."""
    q = kernel.shape[0] // 2
    mat = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            for k in range(-q, q + 1):
                for l in range(-q, q + 1):
                    mat[i * w + j, ((i + k) % h) * w + (j + l) % w] += kernel[k + q, l + q]
    return mat


@pytest.mark.parametrize("chunk", [1, 10**9])
@pytest.mark.parametrize("b,c,h,w,q,pad", PAIR_CASES)
def test_pairs_path_equals_the_real_path_and_autograd_through_fft(b, c, h, w, q, pad, chunk, monkeypatch):
    monkeypatch.setattr(fft_solve, "CPU_CHUNK_BYTES", chunk)  # 1: one plane per block; 1e9: one block
    g = torch.Generator().manual_seed(b * 1000 + h * 10 + w)
    t = torch.randn(b, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    params = (2.0 * torch.randn(c, 2, q, 2, generator=g, dtype=torch.float64)).requires_grad_()
    size = (h + 2 * pad, w + 2 * pad)
    y_pairs = separable_ar_solve(t, factor_coordinates(params), size, path="pairs")
    y_real = separable_ar_solve(t, factor_coordinates(params), size, path="real")
    ref = reference_solve(t, params, pad)
    torch.testing.assert_close(y_pairs, y_real, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ar_solve(t, params, padding=pad), ref, rtol=1e-12, atol=1e-12)
    grad_y = torch.randn(y_pairs.shape, generator=g, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(y_pairs, (t, params), grad_y), torch.autograd.grad(y_real, (t, params), grad_y)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b", [2, 3, 6])
def test_pairs_path_matches_a_dense_linear_solve(b):
    torch.manual_seed(5)
    h, w, q, c = 5, 6, 2, 2
    params = torch.randn(c, 2, q, 2, dtype=torch.float64)
    kernels = filter_2d(params).numpy()
    t = torch.randn(b, c, h, w, dtype=torch.float64)
    y = ar_solve(t, params)  # batch >= 2: the pairs path
    for ch in range(c):
        mat = _dense_ar_matrix(kernels[ch], h, w)
        ref = np.linalg.solve(mat, t[:, ch].reshape(b, -1).numpy().T).T.reshape(b, h, w)
        np.testing.assert_allclose(y[:, ch].numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("b,size", [(2, (6, 8)), (3, (7, 9)), (4, (9, 12))])
def test_gradcheck_of_the_pairs_backward(b, size, monkeypatch):
    monkeypatch.setattr(fft_solve, "CPU_CHUNK_BYTES", 1)
    torch.manual_seed(b)
    t = torch.randn(b, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    sd = (0.9 * torch.rand(2, 2, 2, 2, dtype=torch.float64) * 2 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, sd: separable_ar_solve(t, sd, size, path="pairs"), (t, sd))


@pytest.mark.parametrize("wants", [(True, False), (False, True)])
def test_pairs_path_with_only_one_input_needing_a_gradient(wants):
    torch.manual_seed(6)
    t = torch.randn(3, 2, 7, 8, dtype=torch.float64, requires_grad=wants[0])
    params = torch.randn(2, 2, 1, 2, dtype=torch.float64, requires_grad=wants[1])
    inputs = [x for x in (t, params) if x.requires_grad]
    y = ar_solve(t, params)
    ref = reference_solve(t, params)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    grad_y = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, inputs, grad_y), torch.autograd.grad(ref, inputs, grad_y)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_pairs_path_identity_is_exact_and_takes_an_expanded_gradient():
    torch.manual_seed(7)
    t = torch.randn(5, 3, 9, 10, requires_grad=True)
    params = torch.zeros(3, 2, 1, 2, requires_grad=True)
    y = ar_solve(t, params, padding=2)
    assert torch.equal(y, t)
    y.sum().backward()  # dL/dy = ones expanded (stride 0): paired without a copy
    assert torch.equal(t.grad, torch.ones_like(t))
    (want,) = torch.autograd.grad(reference_solve(t, params, 2).sum(), params)
    torch.testing.assert_close(params.grad, want, rtol=1e-4, atol=1e-4)


def test_layer_at_training_batch_equals_the_batch_one_path_per_sample():
    torch.manual_seed(8)
    layer = ARMAConv2d(3, 4, 3, ar_init=0.8).double()
    x = torch.randn(6, 3, 12, 10, dtype=torch.float64)
    y = layer(x)
    per_sample = torch.cat([layer(x[i : i + 1]) for i in range(6)])  # batch 1: the real path
    torch.testing.assert_close(y, per_sample, rtol=1e-12, atol=1e-12)
