"""Maps smaller than the AR kernel (issue 18): the AR part is skipped, as in the official ARMA-Networks code.

The rule: an ``ARMAConv2d`` with a ``(2Q+1) x (2Q+1)`` AR kernel solves ``A * y = t`` only where the kernel fits the
circular solve grid, ``min(H, W) + 2 * ar_padding >= 2Q+1``; elsewhere it returns the moving average alone
(and the AR parameters get an exact zero gradient).
References: ``F.conv2d`` for the skipped maps, a dense ``np.linalg.solve`` of the circulant system for the solved
ones (built tap by tap, asserting that no two taps land on one matrix entry, i.e. that nothing aliases).
Every case runs at batch 1 (the ``rfft2`` path), 2 and 3 (the pairs path, even and odd).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo_arma.ar import ar_fits, ar_solve, factor_coordinates, filter_2d
from zoo_arma.fft_solve import separable_ar_solve
from zoo_arma.layer import ARMAConv2d

BATCHES = [1, 2, 3]
SKIPPED = [  # (Q, H, W): the kernel 2Q+1 is larger than the map along at least one side
    (1, 1, 1), (1, 2, 2), (1, 2, 8), (1, 8, 2),
    (2, 2, 2), (2, 3, 3), (2, 4, 4), (2, 4, 9),
    (3, 6, 6),
]
SOLVED = [  # (Q, H, W): the map holds the kernel; (1, 3, 3), (2, 5, 5), (3, 7, 7) are exactly 2Q+1
    (1, 3, 3), (1, 4, 4), (1, 3, 7),
    (2, 5, 5), (2, 5, 6),
    (3, 7, 7),
]


def _layer(q: int, seed: int, ar_padding: int = 0) -> ARMAConv2d:
    """A float64 3 -> 4 channel ARMA layer (MA 3x3, padding 1) with a strong random AR filter."""
    torch.manual_seed(seed)
    layer = ARMAConv2d(3, 4, 3, ar_kernel_size=2 * q + 1, ar_padding=ar_padding).double()
    with torch.no_grad():
        layer.ar_params.normal_(0.0, 2.0)
    return layer


def _dense_circulant(kernel: np.ndarray, h: int, w: int) -> np.ndarray:
    """The circular correlation ``(A * y)[i, j] = sum_{k,l} A[k, l] y[(i+k) % h, (j+l) % w]`` as an ``(hw, hw)``
    matrix. Fails if two taps fall on one entry (the kernel would alias on this grid)."""
    q = kernel.shape[0] // 2
    mat = np.zeros((h * w, h * w))
    hits = np.zeros((h * w, h * w), dtype=int)
    for i in range(h):
        for j in range(w):
            for k in range(-q, q + 1):
                for l in range(-q, q + 1):
                    col = ((i + k) % h) * w + (j + l) % w
                    mat[i * w + j, col] = kernel[k + q, l + q]
                    hits[i * w + j, col] += 1
    assert hits.max() == 1, f"a {2 * q + 1}x{2 * q + 1} kernel aliases on a {h}x{w} grid"
    return mat


def _dense_solve(t: torch.Tensor, params: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """``A * y = t`` per channel on a ``grid`` (``t`` centred in zeros, ``y`` cropped back), by ``np.linalg.solve``."""
    b, c, h, w = t.shape
    gh, gw = grid
    top, left = (gh - h) // 2, (gw - w) // 2
    padded = F.pad(t.detach(), (left, gw - w - left, top, gh - h - top)).numpy()
    kernels = filter_2d(params).detach().numpy()
    out = np.empty_like(padded)
    for ch in range(c):
        mat = _dense_circulant(kernels[ch], gh, gw)
        out[:, ch] = np.linalg.solve(mat, padded[:, ch].reshape(b, -1).T).T.reshape(b, gh, gw)
    return torch.from_numpy(out[:, :, top : top + h, left : left + w])


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("q,h,w", SKIPPED)
def test_a_map_smaller_than_the_kernel_gets_the_moving_average_alone(q, h, w, batch):
    layer = _layer(q, seed=10 * q + h)
    assert not layer.ar_fits((h, w))
    x = torch.randn(batch, 3, h, w, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, F.conv2d(x, layer.weight, layer.bias, padding=1))
    y.square().sum().backward()
    assert torch.equal(layer.ar_params.grad, torch.zeros_like(layer.ar_params))  # used, with a zero gradient
    x_ref = x.detach().clone().requires_grad_()
    F.conv2d(x_ref, layer.weight, layer.bias, padding=1).square().sum().backward()
    assert torch.equal(x.grad, x_ref.grad)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("q,h,w", SOLVED)
def test_a_map_holding_the_kernel_matches_a_dense_circulant_solve(q, h, w, batch):
    layer = _layer(q, seed=10 * q + h + 1)
    assert layer.ar_fits((h, w))
    x = torch.randn(batch, 3, h, w, dtype=torch.float64)
    t = F.conv2d(x, layer.weight, layer.bias, padding=1)
    y = layer(x)
    assert not torch.allclose(y, t)
    torch.testing.assert_close(y, _dense_solve(t, layer.ar_params, (h, w)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("q,h,w", SOLVED)
def test_pairs_and_real_paths_agree_in_value_and_gradient_at_the_smallest_maps(q, h, w):
    g = torch.Generator().manual_seed(100 * q + h)
    t = torch.randn(3, 2, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    params = (2.0 * torch.randn(2, 2, q, 2, generator=g, dtype=torch.float64)).requires_grad_()
    y_pairs = separable_ar_solve(t, factor_coordinates(params), (h, w), path="pairs")
    y_real = separable_ar_solve(t, factor_coordinates(params), (h, w), path="real")
    torch.testing.assert_close(y_pairs, y_real, rtol=1e-12, atol=1e-12)
    grad_y = torch.randn(y_real.shape, generator=g, dtype=torch.float64)
    grads_pairs = torch.autograd.grad(y_pairs, (t, params), grad_y)
    grads_real = torch.autograd.grad(y_real, (t, params), grad_y)
    for got, want in zip(grads_pairs, grads_real):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch", BATCHES)
def test_ar_padding_counts_toward_the_grid(batch):
    """2x2 maps: ``ar_padding=1`` gives a 4x4 grid, which holds a 3x3 kernel (solved) but not a 5x5 one (skipped)."""
    x = torch.randn(batch, 3, 2, 2, dtype=torch.float64)
    solved = _layer(1, seed=3, ar_padding=1)
    t = F.conv2d(x, solved.weight, solved.bias, padding=1)
    torch.testing.assert_close(solved(x), _dense_solve(t, solved.ar_params, (4, 4)), rtol=1e-10, atol=1e-10)
    skipped = _layer(2, seed=4, ar_padding=1)
    assert torch.equal(skipped(x), F.conv2d(x, skipped.weight, skipped.bias, padding=1))


def test_one_layer_solves_large_maps_and_skips_small_ones():
    """A CIFAR-style stack: the same layer on 8x8 (solved, AR gradient) and 2x2 (MA only) in one graph."""
    layer = _layer(1, seed=5)
    big = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    small = F.avg_pool2d(big, 4)
    layer(small).sum().backward()
    assert torch.equal(layer.ar_params.grad, torch.zeros_like(layer.ar_params))
    layer(big).sum().backward()
    assert layer.ar_params.grad.abs().sum() > 0


@pytest.mark.parametrize("path", ["pairs", "real"])
def test_the_solve_refuses_a_grid_smaller_than_the_kernel(path):
    t = torch.randn(2, 2, 2, 6, dtype=torch.float64)
    sd = factor_coordinates(torch.randn(2, 2, 1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="3x3 AR kernel .* needs a grid of at least 3x3, got 2x6"):
        separable_ar_solve(t, sd, (2, 6), path=path)


def test_ar_fits_is_the_official_test_at_zero_padding():
    for q in range(4):
        for h in range(1, 10):
            for w in range(1, 10):
                assert ar_fits((h, w), q) == (h >= 2 * q + 1 and w >= 2 * q + 1)
                assert ar_fits((h, w), q, padding=1) == (min(h, w) + 2 >= 2 * q + 1)
    t = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    assert ar_solve(t, torch.randn(2, 2, 1, 2, dtype=torch.float64)) is t  # no autograd: no copy


def test_a_small_map_keeps_every_parameter_in_the_graph_for_ddp():
    """An ARMA U-Net at 32x32 has 2x2 bottleneck maps: their AR parameters still get a (zero) gradient, so
    ``DistributedDataParallel`` without ``find_unused_parameters`` sees every parameter used."""
    from zoo_arma.unet import UNet

    torch.manual_seed(6)
    model = UNet(width=2, arma=True)
    model(torch.randn(2, 3, 32, 32)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    bottleneck = model.encoder[4][0]
    assert not bottleneck.ar_fits((2, 2)) and torch.equal(bottleneck.ar_params.grad, torch.zeros_like(bottleneck.ar_params))
