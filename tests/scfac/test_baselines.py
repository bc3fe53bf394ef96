"""The benchmark's baselines: Cayley convolution is orthogonal on its grid, RKO is 1-Lipschitz but not orthogonal."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo_scfac.baselines import CayleyConv2d, RKOConv2d, bjorck, generalized_cayley, power_iteration
from zoo_scfac.spectral import circular_singular_values, dense_singular_values


def test_generalized_cayley_is_column_orthogonal_real_and_complex():
    torch.manual_seed(0)
    for w in (torch.randn(3, 7, 4, dtype=torch.float64), torch.randn(5, 6, 6, dtype=torch.complex128)):
        q = generalized_cayley(w)
        eye = torch.eye(q.shape[-1], dtype=q.dtype)
        assert torch.allclose(q.conj().transpose(-1, -2) @ q, eye.expand_as(q.conj().transpose(-1, -2) @ q), atol=1e-12)
    wide = generalized_cayley(torch.randn(3, 8, dtype=torch.float64))
    assert torch.allclose(wide @ wide.T, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_cayley_conv_is_orthogonal_on_its_grid():
    torch.manual_seed(0)
    for c_in, c_out in ((4, 4), (2, 6), (6, 2)):
        layer = CayleyConv2d(c_in, c_out, 3, bias=False).double()
        sv = dense_singular_values(layer, (c_in, 6, 6))
        rank = 36 * min(c_in, c_out)
        assert float((sv[:rank] - 1).abs().max()) < 1e-10
        assert float(sv[rank:].abs().max()) < 1e-10 if sv.numel() > rank else True


def test_cayley_spectrum_is_the_centred_circular_cross_correlation():
    """Before the Cayley map, the per-frequency matrices apply ``nn.Conv2d``'s circular convolution (Trockman & Kolter's alignment)."""
    torch.manual_seed(0)
    for k in (3, 5):
        layer = CayleyConv2d(3, 4, k).double()
        x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        xf = torch.fft.rfft2(x).permute(2, 3, 1, 0)  # (n, m, S, B)
        y = torch.fft.irfft2((layer.spectrum(8) @ xf).permute(3, 2, 0, 1), s=(8, 8))
        p = k // 2
        ref = F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), layer.weight)
        assert torch.allclose(y, ref, atol=1e-12)


def test_bjorck_converges_to_the_polar_factor():
    torch.manual_seed(0)
    for shape in ((6, 20), (20, 6), (3, 5, 5)):
        w = torch.randn(*shape, dtype=torch.float64)
        ratio = power_iteration(w).squeeze(-1).squeeze(-1) / torch.linalg.matrix_norm(w, 2)  # 10 steps: from below
        assert bool(((ratio > 0.9) & (ratio <= 1 + 1e-12)).all())
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        assert torch.allclose(bjorck(w), u @ vh, atol=1e-10)


def test_rko_is_one_lipschitz_but_not_orthogonal():
    torch.manual_seed(0)
    layer = RKOConv2d(4, 4, 3, bias=False).double()
    sv = circular_singular_values(layer.kernel().detach(), 8)
    dense = dense_singular_values(layer, (4, 8, 8))
    assert torch.allclose(sv.sort(descending=True).values, dense, atol=1e-10)
    assert float(sv.max()) <= 1 + 1e-12
    assert float((sv - 1).abs().max()) > 0.1


def test_rko_caches_its_kernel_in_eval_mode_only():
    torch.manual_seed(0)
    layer = RKOConv2d(3, 5, 3)
    x = torch.randn(2, 3, 6, 6)
    train_out = layer(x)
    layer.eval()
    assert torch.allclose(layer(x), train_out, atol=1e-6)
    cached = layer._cache
    layer(x)
    assert layer._cache is cached
    with torch.no_grad():
        layer.weight.add_(0.1)
    assert not torch.allclose(layer(x), train_out, atol=1e-3)  # a parameter change invalidates the cache
