"""The benchmark's baselines: Cayley convolution is orthogonal on its grid, RKO is 1-Lipschitz but not orthogonal."""

from __future__ import annotations

import torch

from zoo_scfac.baselines import CayleyConv2d, RKOConv2d, generalized_cayley
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


def test_rko_is_one_lipschitz_but_not_orthogonal():
    torch.manual_seed(0)
    layer = RKOConv2d(4, 4, 3, bias=False).double()
    sv = circular_singular_values(layer.kernel().detach(), 8)
    dense = dense_singular_values(layer, (4, 8, 8))
    assert torch.allclose(sv.sort(descending=True).values, dense, atol=1e-10)
    assert float(sv.max()) <= 1 + 1e-12
    assert float((sv - 1).abs().max()) > 0.1
