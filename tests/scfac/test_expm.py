"""The Taylor scaling-and-squaring exponential against torch.linalg.matrix_exp (Pade-type, independent) and finite differences."""

from __future__ import annotations

import pytest
import torch

from zoo_scfac.expm import expm, squarings
from zoo_scfac.layers import OrthoConv2d, OrthoLinear, orthogonal_values


def _skew(x: torch.Tensor) -> torch.Tensor:
    x = x.tril(-1)
    return x - x.transpose(-1, -2)


@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.3, 2.0, 40.0])
def test_values_match_torch_matrix_exp_float64(scale):
    torch.manual_seed(0)
    for a in (_skew(scale * torch.randn(3, 24, 24, dtype=torch.float64)), scale * torch.randn(2, 9, 9, dtype=torch.float64) / 9):
        ref = torch.linalg.matrix_exp(a)
        assert float((expm(a) - ref).abs().max() / ref.abs().max()) < 1e-12


def test_skew_exponential_is_orthogonal_to_rounding():
    torch.manual_seed(0)
    for dtype, tol in ((torch.float64, 1e-13), (torch.float32, 1e-5)):
        a = _skew(0.2 * torch.randn(4, 64, 64, dtype=dtype))
        q = expm(a)
        assert float((q.transpose(-1, -2) @ q - torch.eye(64, dtype=dtype)).abs().max()) < tol


def test_gradient_matches_finite_differences_and_torch():
    torch.manual_seed(0)
    a = (1.5 * torch.randn(2, 5, 5, dtype=torch.float64)).requires_grad_(True)  # 1-norm > 1: squarings are used
    assert squarings(a) > 0
    assert torch.autograd.gradcheck(lambda x: expm(_skew(x)), (a,), eps=1e-6, atol=1e-8)
    g = torch.randn(2, 5, 5, dtype=torch.float64)
    ours = torch.autograd.grad((expm(_skew(a)) * g).sum(), a)[0]
    ref = torch.autograd.grad((torch.linalg.matrix_exp(_skew(a)) * g).sum(), a)[0]
    assert torch.allclose(ours, ref, atol=1e-12)


def test_squarings_bring_the_one_norm_below_one():
    assert squarings(torch.zeros(3, 4, 4)) == 0
    a = torch.tensor([[0.0, -3.0], [3.0, 0.0]])
    s = squarings(a)
    assert s == 2 and float((a / 2 ** s).abs().sum(0).max()) <= 1.0
    with pytest.raises(ValueError, match="finite"):
        squarings(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"square matrices \(\.\.\., n, n\), got shape \(2, 3\)"):
        expm(torch.zeros(2, 3))


def test_batched_layer_factors_equal_geotorch_with_torch_matrix_exp():
    """One exponential for Q and all U's of a layer equals ``base @ matrix_exp(skew)`` per tensor."""
    torch.manual_seed(0)
    layer = OrthoConv2d(6, 6, 5, init="uniform")
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    values = orthogonal_values([layer.q, layer.u], torch.float64)
    for module, value in zip((layer.q, layer.u), values):
        param = module.parametrizations.weight
        skew = _skew(param.original.double())
        ref = (param[0].base.double() @ torch.linalg.matrix_exp(skew)).view(module.shape)  # stored flat
        assert value.shape == module.shape
        assert torch.allclose(value, ref, atol=1e-13)
        assert torch.allclose(module.weight.double().view(module.shape), ref, atol=1e-5)  # geotorch's own (float32)


def test_orthogonal_linear_weight_uses_the_same_map():
    torch.manual_seed(0)
    lin = OrthoLinear(12, 5).double()
    with torch.no_grad():
        lin.parametrizations.weight.original.add_(0.5 * torch.randn(5, 12, dtype=torch.float64))
    param = lin.parametrizations.weight
    square = torch.nn.functional.pad(param.original.T, (0, 7))  # geotorch's Stiefel frame: (12, 5) -> (12, 12)
    full = param[0].base @ torch.linalg.matrix_exp(_skew(square))
    assert torch.allclose(lin.weight, full[:, :5].T, atol=1e-13)
