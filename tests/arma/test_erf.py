"""ERF (Def. 6.2) and the closed-form radius of Theorem 6.3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo_arma.erf import erf, erf_radius, linear_arma_network, theorem_6_3_radius
from zoo_arma.layer import ARMAConv2d


class _CausalLayer(nn.Module):
    """1-D layer of Theorem 6.3 along the width: y_i - a y_{i-1} = (1-a)/K sum_p x_{i - d p}."""

    def __init__(self, k: int, d: int, a: float) -> None:
        super().__init__()
        self.left = d * (k - 1)
        self.arma = ARMAConv2d(1, 1, (1, k), padding=0, dilation=(1, d), bias=False).double()
        with torch.no_grad():
            self.arma.weight.fill_((1 - a) / k)
        minus = torch.tensor([[[0.0], [-a]]], dtype=torch.float64)  # rows: identity; columns: {1, -a}
        self.arma.set_ar_coefficients(minus, torch.zeros_like(minus))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.arma(F.pad(x, (self.left, 0)))


@pytest.mark.parametrize("layers", [
    [(3, 1, 0.0)],
    [(3, 1, 0.0)] * 4,
    [(3, 1, 0.5)],
    [(3, 2, 0.8)] * 3,
    [(5, 1, 0.9), (3, 3, 0.6), (7, 1, 0.0), (3, 1, 0.95), (3, 2, 0.3)],
])
def test_measured_radius_matches_theorem_6_3(layers):
    net = nn.Sequential(*[_CausalLayer(k, d, a) for k, d, a in layers])
    # 3 rows: the 3x3 AR kernel acts only on maps of at least 3x3 (as in the official code); rows stay independent
    result = erf(net, (1, 3, 4096), center=(1, 3072))
    expected = theorem_6_3_radius(*zip(*layers))
    assert result.radius == pytest.approx(expected, rel=1e-6)
    assert result.std == pytest.approx(expected, rel=1e-6)
    assert result.map.sum().item() == pytest.approx(1.0)
    assert result.map[1, 3073:].abs().max() < 1e-12  # causal: nothing from the right (up to FFT round-off)
    assert result.map[[0, 2]].abs().max() < 1e-12  # nothing from the other rows (identity row factor)


def test_theorem_6_3_cnn_special_case_and_errors():
    assert theorem_6_3_radius([3] * 4, [1] * 4, [0.0] * 4) == pytest.approx((4 * 8 / 12) ** 0.5)
    with pytest.raises(ValueError, match="0 <= a < 1"):
        theorem_6_3_radius([3], [1], [1.0])


def test_isotropic_2d_network_has_twice_the_variance():
    # separable, symmetric in both axes: the covariance trace is twice the 1-D closed form
    a, k = 0.6, 3
    layer = ARMAConv2d(1, 1, k, bias=False).double()
    with torch.no_grad():
        layer.weight.fill_((1 - a) / (k * k))
    layer.set_ar_coefficients(torch.full((1, 2, 1), -a, dtype=torch.float64), torch.zeros(1, 2, 1, dtype=torch.float64))
    result = erf(nn.Sequential(layer, layer), (1, 96, 96))
    assert result.std == pytest.approx(2 ** 0.5 * theorem_6_3_radius([k, k], [1, 1], [a, a]), rel=1e-6)


def test_fig_6_3_trend_radius_grows_with_depth_and_ar_coefficient():
    radii = {}
    for depth in (1, 3):
        for a in (0.0, 0.9):
            radii[depth, a] = erf(linear_arma_network(depth, a, channels=4), (4, 32, 32), channels=[0, 1]).std
    assert radii[1, 0.0] < radii[3, 0.0] < radii[3, 0.9]
    assert radii[1, 0.0] < radii[1, 0.9]


def test_erf_argument_errors():
    with pytest.raises(ValueError, match="input_shape"):
        erf(nn.Conv2d(1, 1, 3, padding=1), (2, 1, 8, 8))
    with pytest.raises(ValueError, match="spatial size"):
        erf(nn.Conv2d(1, 1, 3), (1, 8, 8))
    m = torch.zeros(5, 5)
    m[2, 2] = 1
    assert erf_radius(m, (2, 2)) == (0.0, 0.0)
