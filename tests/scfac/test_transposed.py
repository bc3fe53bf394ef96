"""Transposed strided orthogonal convolutions (Table 7.1, up-strided row) and stride with dilation (issue 18).

References: dense operator matrices (``spectral.dense_matrix``) and their singular values, the adjoint relation to
the strided layer with the same factors, and norms of random inputs.
"""

from __future__ import annotations

import pytest
import torch

from zoo_scfac.layers import ORDERS, OrthoConv1d, OrthoConv2d, OrthoConvTranspose1d, OrthoConvTranspose2d
from zoo_scfac.spectral import dense_matrix


def _perturbed(layer, seed: int = 1, scale: float = 0.3):
    """Every parameter moved off the initial point (``Q`` at the kernel centre), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer.eval()


def _expected_singular_values(sv: torch.Tensor, rank: int) -> None:
    """``rank`` singular values 1 and the rest 0, to float64 rounding."""
    assert torch.allclose(sv[:rank], torch.ones(rank), atol=1e-12)
    if sv.numel() > rank:
        assert float(sv[rank:].abs().max()) < 1e-12


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("c_in, c_out, k, r, d, g, mode", [
    (8, 2, 4, 2, 1, 1, "circular"), (8, 2, 2, 2, 1, 2, "circular"), (4, 4, 4, 2, 1, 1, "circular"),
    (16, 2, 4, 2, 1, 1, "circular"), (8, 2, 4, 2, 3, 1, "circular"), (9, 1, 3, 3, 2, 1, "circular"),
    (8, 2, 4, 2, 1, 1, "zeros"), (8, 2, 4, 2, 3, 1, "zeros"),
])
def test_transposed_layer_is_the_adjoint_of_the_strided_layer_with_the_same_factors(f64, order, c_in, c_out, k, r,
                                                                                     d, g, mode):
    m = 5  # the strided layer's circular padding (up to D (K - 1) - R + 1 = 8) must not wrap more than once
    up = _perturbed(OrthoConvTranspose2d(c_in, c_out, k, stride=r, dilation=d, groups=g, padding_mode=mode,
                                         init="uniform", bias=False, order=order))
    down = OrthoConv2d(c_out, c_in, k, stride=r, dilation=d, groups=g, padding_mode=mode, init="uniform", bias=False,
                       order=order).eval()
    down.load_state_dict(up.state_dict())
    a = dense_matrix(up, (c_in, m, m))
    assert up(torch.zeros(1, c_in, m, m)).shape == (1, c_out, m * r, m * r)
    assert torch.allclose(a, dense_matrix(down, (c_out, m * r, m * r)).T, atol=1e-14)


@pytest.mark.parametrize("c_in, c_out, k, r, d, g", [
    (8, 2, 4, 2, 1, 1),   # in = out R^2: orthogonal (the inverse of the strided layer)
    (8, 4, 2, 2, 1, 2),   # grouped, orthogonal
    (4, 4, 4, 2, 1, 1),   # in < out R^2: isometry
    (16, 2, 4, 2, 1, 1),  # in > out R^2: co-isometry
    (8, 2, 4, 2, 3, 1),   # stride 2 with dilation 3
    (9, 1, 6, 3, 2, 1),   # stride 3 with dilation 2
])
def test_transposed_layer_is_exactly_orthogonal(f64, c_in, c_out, k, r, d, g):
    m = 4
    up = _perturbed(OrthoConvTranspose2d(c_in, c_out, k, stride=r, dilation=d, groups=g, init="uniform", bias=False))
    sv = torch.linalg.svdvals(dense_matrix(up, (c_in, m, m)))
    _expected_singular_values(sv, min(c_in * m * m, c_out * (m * r) ** 2))
    x = torch.randn(2, c_in, m, m)
    assert torch.allclose(down_inverse(up, x, c_out, k, r, d, g), x, atol=1e-12) if c_in == c_out * r * r else True


def down_inverse(up: OrthoConvTranspose2d, x: torch.Tensor, c_out: int, k: int, r: int, d: int, g: int) -> torch.Tensor:
    """The strided layer with the same factors applied to ``up(x)``: ``x`` again when ``up`` is orthogonal."""
    down = OrthoConv2d(c_out, up.in_channels, k, stride=r, dilation=d, groups=g, init="uniform", bias=False).eval()
    down.load_state_dict(up.state_dict())
    return down(up(x))


@pytest.mark.parametrize("c_in, c_out, k, r, d", [(8, 2, 4, 2, 1), (4, 4, 4, 2, 1), (8, 2, 4, 2, 3), (9, 1, 6, 3, 2)])
def test_transposed_full_padding_is_norm_preserving(c_in, c_out, k, r, d):
    """``padding="full"``: the whole linear transposed convolution, ``(M - 1) R + D (K - 1) + 1`` per side, and
    ``||y|| = ||x||`` (float32, 1e-5); the cropped ``same`` output of the same layer loses energy."""
    torch.manual_seed(0)
    full = _perturbed(OrthoConvTranspose2d(c_in, c_out, k, stride=r, dilation=d, padding_mode="zeros",
                                           padding="full", init="uniform", bias=False))
    same = OrthoConvTranspose2d(c_in, c_out, k, stride=r, dilation=d, padding_mode="zeros", init="uniform",
                                bias=False).eval()
    same.load_state_dict(full.state_dict())
    m = 5
    x = torch.randn(4, c_in, m, m)
    y = full(x)
    side = (m - 1) * r + d * (k - 1) + 1
    assert y.shape == (4, c_out, side, side) and same(x).shape == (4, c_out, m * r, m * r)
    norm = x.flatten(1).norm(dim=1)
    assert torch.allclose(y.flatten(1).norm(dim=1) / norm, torch.ones(4), atol=1e-5)
    assert float((same(x).flatten(1).norm(dim=1) / norm).max()) < 0.99


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("c_in, c_out, k, r, d, g", [
    (2, 8, 4, 2, 3, 1), (2, 8, 2, 2, 5, 1), (1, 9, 6, 3, 2, 1), (4, 16, 4, 2, 3, 2), (2, 4, 4, 2, 3, 1),
    (4, 8, 4, 2, 3, 1),
])
def test_stride_with_dilation_is_exactly_orthogonal(f64, order, c_in, c_out, k, r, d, g):
    """gcd(stride, dilation) = 1: the dilated taps visit every input phase once per polyphase group (a permutation
    and per-phase delays of the polyphase input, both paraunitary), so the layer keeps Table 7.1's properties:
    orthogonal for T = S R^2, isometry above, co-isometry below (dense singular values, circular padding)."""
    n = 12 if r == 3 else 10  # circular padding up to D (K - 1) - R + 1 = 8 wraps at most once
    layer = _perturbed(OrthoConv2d(c_in, c_out, k, stride=r, dilation=d, groups=g, init="uniform", bias=False,
                                   order=order))
    assert layer(torch.zeros(1, c_in, n, n)).shape == (1, c_out, n // r, n // r)
    sv = torch.linalg.svdvals(dense_matrix(layer, (c_in, n, n)))
    _expected_singular_values(sv, min(c_in * n * n, c_out * (n // r) ** 2))


@pytest.mark.parametrize("c_in, c_out, k, r, d", [(2, 8, 4, 2, 3), (1, 9, 6, 3, 2), (2, 8, 6, 2, 1), (3, 3, 3, 1, 2)])
def test_strided_full_padding_is_norm_preserving(c_in, c_out, k, r, d):
    """Full zero padding of a strided (and dilated) layer: the first output reads the first input, the last the
    last, nothing is cropped, and ``||y|| = ||x||``."""
    torch.manual_seed(0)
    layer = _perturbed(OrthoConv2d(c_in, c_out, k, stride=r, dilation=d, padding_mode="zeros", padding="full",
                                   init="uniform", bias=False))
    x = torch.randn(4, c_in, 12, 12)
    ratio = layer(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.ones(4), atol=1e-5)


def test_stride_and_dilation_sharing_a_factor_are_refused():
    with pytest.raises(ValueError, match="gcd"):
        OrthoConv2d(4, 16, 4, stride=2, dilation=2)
    with pytest.raises(ValueError, match="gcd"):
        OrthoConvTranspose2d(16, 4, 6, stride=3, dilation=3)


def test_transposed_1d_layer_is_orthogonal_and_the_adjoint(f64):
    up = _perturbed(OrthoConvTranspose1d(6, 2, 6, stride=3, init="uniform", bias=False))
    down = OrthoConv1d(2, 6, 6, stride=3, init="uniform", bias=False).eval()
    down.load_state_dict(up.state_dict())
    a = dense_matrix(up, (6, 4))
    assert torch.allclose(a, dense_matrix(down, (2, 12)).T, atol=1e-14)
    _expected_singular_values(torch.linalg.svdvals(a), 24)


def test_transposed_layer_bias_eval_cache_and_gradients():
    torch.manual_seed(0)
    up = OrthoConvTranspose2d(8, 2, 4, stride=2, init="uniform")
    with torch.no_grad():
        up.bias.copy_(torch.tensor([0.5, -1.0]))
    x = torch.randn(2, 8, 4, 4)
    train_out = up(x)
    up.zero_grad()
    train_out.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in up.parameters())
    no_bias = up(x) - torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)
    assert torch.allclose(no_bias.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-5)
    up.eval()
    torch.testing.assert_close(up(x), train_out.detach())
    assert up.kernel() is up.kernel()  # cached in eval mode
    assert not up.separable
