"""The alternative-ELBO objective (Eq. 5.15): formula, prior term, gradients, training progress."""

import math

import pytest
import torch

from zoo_bqn.dist import Gaussian
from zoo_bqn.models import bqn_cnn, bqn_mlp
from zoo_bqn.objective import alt_elbo_loss, log_lik_bound
from zoo_bqn.train import fit


@torch.no_grad()  # values only: the reference is plain arithmetic on the moments
def test_loss_formula_by_hand():
    torch.manual_seed(0)
    m = bqn_mlp(num_classes=3, img_size=3, hidden=(4,)).double()
    x, y = torch.randn(5, 1, 3, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1, 0])
    g = m.propagate(x)
    s = float(m.scale)
    by_hand = 0.0
    for n in range(5):
        lse = math.log(sum(math.exp(float(g.mean[n, k]) / s + float(g.var[n, k]) / (2 * s * s)) for k in range(3)))
        by_hand += float(g.mean[n, y[n]]) / s - lse
    r = sum(-(p * torch.log(p * 2)).sum() for p in (m.features[1].probs(), m.head.probs()))
    lam, n_train = 0.3, 50
    want = -by_hand / 5 - lam / n_train * float(r)
    assert float(alt_elbo_loss(m, x, y, lam, n_train)) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="prior_weight"):
        alt_elbo_loss(m, x, y, -1.0, 10)
    with pytest.raises(ValueError, match="num_train"):
        alt_elbo_loss(m, x, y, 1.0, 0)


@pytest.mark.parametrize("extreme", [False, True])
def test_gradients_finite(extreme):
    torch.manual_seed(0)
    m = bqn_cnn(num_classes=3, img_size=8, channels=(2, 3), kernel_size=3, residual=True)
    if extreme:  # near-deterministic posteriors: zero variances and saturated Phi
        with torch.no_grad():
            for p in m.parameters():
                if p.dim() > 1:
                    p.mul_(1e4)
    loss = alt_elbo_loss(m, torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), 1e-2, 100)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_gradcheck_bound_and_network():
    mean = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    var = (torch.rand(2, 3, dtype=torch.float64) + 0.1).requires_grad_()
    s = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: log_lik_bound(Gaussian(a, b), c), (mean, var, s))
    torch.manual_seed(0)
    m = bqn_mlp(num_classes=2, img_size=2, hidden=(3,)).double()
    x, y = torch.randn(3, 1, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 1])
    params = list(m.parameters())

    def f(*ps):
        with torch.no_grad():
            for p, v in zip(params, ps):
                p.copy_(v)
        return alt_elbo_loss(m, x, y, 0.5, 10)

    # analytic gradient vs central differences on every parameter
    loss = alt_elbo_loss(m, x, y, 0.5, 10)
    grads = torch.autograd.grad(loss, params)
    base = [p.detach().clone() for p in params]
    for i, p in enumerate(params):
        flat = base[i].reshape(-1)
        for j in range(0, flat.numel(), max(1, flat.numel() // 4)):
            plus = [b.clone() for b in base]
            minus = [b.clone() for b in base]
            plus[i].reshape(-1)[j] += 1e-6
            minus[i].reshape(-1)[j] -= 1e-6
            with torch.no_grad():  # finite differences need values only
                num = (float(f(*plus)) - float(f(*minus))) / 2e-6
            assert float(grads[i].reshape(-1)[j]) == pytest.approx(num, rel=1e-4, abs=1e-7)


def test_training_reduces_loss_on_a_separable_toy_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 2, 2, generator=g)
    y = (x.reshape(200, -1).sum(1) > 0).long()
    torch.manual_seed(0)
    m = bqn_mlp(num_classes=2, img_size=2, hidden=(16,), num_train=200)
    loss = lambda mod, a, b: alt_elbo_loss(mod, a, b, mod.prior_weight, mod.num_train)  # noqa: E731
    before = float(loss(m, x, y).detach())
    fit(m, loss, x, y, epochs=15, lr=5e-2, batch_size=50, max_shift=0)
    after = float(loss(m, x, y).detach())
    assert after < 0.5 * before
    with torch.no_grad():
        assert float((m(x).argmax(1) == y).double().mean()) > 0.9
