"""The benchmark's baselines: Cayley convolution is orthogonal on its grid, RKO is 1-Lipschitz but not orthogonal,
BCOP is orthogonal for circular padding on any grid (its transfer matrix is the product of projector blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import pytest

from zoo_scfac.baselines import (BCOPConv2d, CayleyConv2d, RKOConv2d, bcop_kernel, bjorck, generalized_cayley,
                                 power_iteration)
from zoo_scfac.spectral import circular_singular_values, dense_matrix, dense_singular_values


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


@pytest.mark.parametrize("layer_class", [RKOConv2d, BCOPConv2d])
def test_baselines_cache_their_kernel_in_eval_mode_only(layer_class):
    torch.manual_seed(0)
    layer = layer_class(3, 5, 3)
    x = torch.randn(2, 3, 6, 6)
    train_out = layer(x)
    layer.eval()
    assert torch.allclose(layer(x), train_out, atol=1e-6)
    cached = layer._cache
    layer(x)
    assert layer._cache is cached
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1)
    assert not torch.allclose(layer(x), train_out, atol=1e-3)  # a parameter change invalidates the cache


def _random_orthogonal(count: int, c: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(count, c, c, dtype=torch.float64))
    return q * torch.diagonal(r, dim1=-2, dim2=-1).sign().unsqueeze(-2)


def test_bcop_kernel_is_the_product_of_projector_blocks():
    """Transfer matrix at random points of the torus == H prod_j (P_j + (I - P_j) z1)(Q_j + (I - Q_j) z2), cut."""
    torch.manual_seed(0)
    for c_out, c_in, k in ((4, 4, 3), (6, 3, 4), (2, 5, 2)):
        c = max(c_out, c_in)
        orthos = _random_orthogonal(2 * k - 1, c)
        kernel = bcop_kernel(orthos, c_out, c_in)
        assert kernel.shape == (c_out, c_in, k, k)
        eye = torch.eye(c, dtype=torch.complex128)
        proj = [v[:, : c // 2] @ v[:, : c // 2].T for v in orthos[1:].to(torch.complex128)]
        for z1, z2 in torch.polar(torch.ones(3, 2, dtype=torch.float64), torch.rand(3, 2, dtype=torch.float64) * 6.3):
            ref = orthos[0].to(torch.complex128)
            for j in range(k - 1):
                ref = ref @ (proj[2 * j] + (eye - proj[2 * j]) * z1) @ (proj[2 * j + 1] + (eye - proj[2 * j + 1]) * z2)
            powers = z1 ** torch.arange(k)[:, None] * z2 ** torch.arange(k)[None, :]
            got = (kernel.to(torch.complex128) * powers).sum((-1, -2))
            assert torch.allclose(got, ref[:c_out, :c_in], atol=1e-12)


def test_bcop_kernel_from_exactly_orthogonal_matrices_is_orthogonal_on_every_grid():
    torch.manual_seed(0)
    for c_out, c_in, k in ((4, 4, 3), (4, 4, 4), (3, 6, 3), (6, 3, 2), (5, 5, 1)):
        kernel = bcop_kernel(_random_orthogonal(2 * k - 1, max(c_out, c_in)), c_out, c_in)
        for n in (k, 5, 8):
            sv = circular_singular_values(kernel, n)
            assert sv.numel() == n * n * min(c_out, c_in)  # all non-trivial values, none missing
            assert float((sv - 1).abs().max()) < 1e-12


def test_bcop_layer_dense_operator_is_orthogonal_in_float64():
    """Dense matrix of the layer (circular padding, odd and even K, square / tall / wide) away from the init."""
    torch.manual_seed(0)
    for c_in, c_out, k in ((4, 4, 3), (4, 4, 2), (2, 6, 3), (6, 2, 5), (3, 3, 1)):
        layer = BCOPConv2d(c_in, c_out, k).double()
        with torch.no_grad():
            layer.weight.add_(0.05 * torch.randn_like(layer.weight) / max(c_in, c_out) ** 0.5)
        a = dense_matrix(layer, (c_in, 6, 7))
        eye = torch.eye(42 * min(c_in, c_out), dtype=torch.float64)
        gram = a.T @ a if c_out >= c_in else a @ a.T  # isometry (tall) or co-isometry (wide)
        assert torch.allclose(gram, eye, atol=1e-10)
        x = torch.randn(2, c_in, 6, 7, dtype=torch.float64)
        p_lo, p_hi = (k - 1) // 2, k // 2
        ref = F.conv2d(F.pad(x, (p_lo, p_hi, p_lo, p_hi), mode="circular"), layer.kernel(), layer.bias)
        assert torch.allclose(layer(x), ref, atol=1e-12)


def test_bcop_inherits_the_bjorck_residual():
    """The hard case: ill-conditioned parameters that 20 Bjorck steps do not orthogonalise leave the layer inexact."""
    torch.manual_seed(0)
    layer = BCOPConv2d(8, 8, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.mul_(torch.logspace(-4, 0, 8, dtype=torch.float64))  # column scales down to 1e-4
        orthos = bjorck(layer.weight)
    residual = float((torch.linalg.svdvals(orthos) - 1).abs().max())
    assert residual > 0.1  # 0.68: the smallest singular values are still far from 1
    assert float((circular_singular_values(layer.kernel().detach(), 6) - 1).abs().max()) > 0.1  # 0.80


def test_bcop_gradients_are_finite_and_match_finite_differences():
    torch.manual_seed(0)
    layer = BCOPConv2d(3, 4, 2).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    layer(x).square().sum().backward()
    for p in layer.parameters():
        assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().max()) > 0
    weight = layer.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: bcop_kernel(bjorck(w), 4, 3), (weight,))


def test_bcop_refuses_bad_sizes():
    with pytest.raises(ValueError, match="kernel_size >= 1, got in=3, out=5, kernel_size=0"):
        BCOPConv2d(3, 5, 0)
    with pytest.raises(ValueError, match=r"c = max\(out, in\) = 5, got \(4, 5, 5\)"):
        bcop_kernel(torch.zeros(4, 5, 5), 5, 3)
