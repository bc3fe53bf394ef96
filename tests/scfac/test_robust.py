"""Hinge loss, certified radius and PGD against closed forms; certificates hold under attack."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo_scfac.layers import OrthoLinear
from zoo_scfac.networks import LipschitzWideResNet
from zoo_scfac.robust import (certified_radius, evaluate_robustness, multiclass_hinge_loss, output_margin, pgd_l2)


def test_hinge_loss_matches_torch_multi_margin_loss():
    torch.manual_seed(0)
    logits, y = torch.randn(7, 5), torch.randint(0, 5, (7,))
    for margin in (1e-3, 0.1, 0.5):
        assert torch.allclose(multiclass_hinge_loss(logits, y, margin), F.multi_margin_loss(logits, y, margin=margin))


def test_margin_and_radius_closed_form():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 1.9], [1.0, 2.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    assert torch.allclose(output_margin(logits, y), torch.tensor([2.0, 0.1, -1.0]))
    r = certified_radius(logits, y, lipschitz=2.0)
    assert torch.allclose(r, torch.tensor([2.0, 0.1, 0.0]) / (2 * math.sqrt(2)))


class _Linear(torch.nn.Module):
    """``x -> W flat(x)`` with orthonormal rows: 1-Lipschitz, and the certificate is tight."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.lin = OrthoLinear(d, c, bias=False)

    def forward(self, x):
        return self.lin(x.flatten(1))


def test_certificate_is_tight_for_an_orthogonal_linear_model_and_pgd_finds_the_boundary():
    """For W with orthonormal rows the nearest decision boundary is at exactly margin / sqrt(2)."""
    torch.manual_seed(0)
    model = _Linear(12, 4).double().eval()
    x = torch.randn(64, 3, 2, 2, dtype=torch.float64)
    y = model(x).argmax(1)
    logits = model(x)
    r = certified_radius(logits, y)
    # the only competitor that matters for a tight bound is the runner-up; PGD must reach it just past r
    inside = pgd_l2(model, x, y, eps=0.98 * r, steps=100, clamp=False)
    outside = pgd_l2(model, x, y, eps=1.05 * r, steps=100, clamp=False)
    assert torch.equal(model(inside).argmax(1), y)
    assert float((model(outside).argmax(1) != y).double().mean()) > 0.9
    assert float((inside - x).flatten(1).norm(dim=1).div(r).max()) <= 0.98 + 1e-9


def test_no_perturbation_inside_the_certified_radius_flips_a_network_prediction():
    torch.manual_seed(0)
    model = LipschitzWideResNet(depth=10, widen_factor=1, kernel_size=3, base_channels=(4, 8, 8), img_size=16,
                                pool_window=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.head.bias.copy_(torch.linspace(0, 0.05, 10))  # spread the logits: non-trivial radii
    model.eval()
    x = torch.rand(16, 3, 16, 16)
    logits = model(x)
    y = logits.argmax(1)
    r = certified_radius(logits.detach(), y)
    assert float(r.min()) > 0
    adv = pgd_l2(model, x, y, eps=0.999 * r, steps=20, clamp=False)
    assert torch.equal(model(adv).argmax(1), y)
    for _ in range(5):
        d = torch.randn_like(x)
        d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (0.999 * r).view(-1, 1, 1, 1)
        assert torch.equal(model(x + d).argmax(1), y)
    # and margins move by at most sqrt(2) ||d||
    assert torch.all(output_margin(model(adv), y) >= output_margin(logits, y) - math.sqrt(2) * 0.999 * r - 1e-6)


def test_pgd_respects_the_ball_and_the_box():
    torch.manual_seed(0)
    model = _Linear(12, 3).eval()
    x = torch.rand(8, 3, 2, 2)
    y = torch.randint(0, 3, (8,))
    adv = pgd_l2(model, x, y, eps=0.3, steps=5, random_start=True)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= 0.3 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


def test_evaluate_robustness_orders_the_accuracies():
    torch.manual_seed(0)
    model = _Linear(12, 3)
    x = torch.rand(32, 3, 2, 2)
    y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3
    res = evaluate_robustness(model, x, y, eps=0.05, pgd_steps=5, batch_size=10)
    assert res["clean_acc"] == pytest.approx(100 * 28 / 32)
    assert res["certified_acc"] <= res["pgd_acc"] <= res["clean_acc"]
