"""Whole networks against brute-force enumeration of every weight configuration (Theorems 5.1 and 5.2, AI, MC)."""

import math

import pytest
import torch

from .bqn_reference import exact_mlp_predictive, theorem51_bound
from zoo_bqn.dist import Gaussian
from zoo_bqn.layers import BayesWeighted
from zoo_bqn.models import bqn_cnn, bqn_mlp
from zoo_bqn.objective import alt_elbo_loss, log_lik_bound


def _tiny(sharpness: float, scale: float = 3.0, seed: int = 0):
    """BQN 4 -> 3 -> 2 (18 binary weights: 262,144 configurations) and 4 inputs."""
    g = torch.Generator().manual_seed(seed)
    m = bqn_mlp(num_classes=2, in_chans=1, img_size=2, hidden=(3,)).double()
    with torch.no_grad():
        for layer in (m.features[1], m.head):
            shape = layer.logits.shape
            layer.logits.copy_(sharpness * torch.sign(torch.randn(shape, generator=g, dtype=torch.float64))
                               + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64))
        m.log_scale.fill_(math.log(scale))
    x = torch.randn(4, 1, 2, 2, generator=g, dtype=torch.float64)
    probs = [m.features[1].probs().detach(), m.head.probs().detach()]
    return m, x, probs


@pytest.fixture(scope="module")
def sharp():
    m, x, probs = _tiny(sharpness=3.0)
    pred, ell = exact_mlp_predictive(x.reshape(4, -1), probs, [-1.0, 1.0], 3.0)
    return m, x, probs, pred, ell


def test_ai_close_to_exact_under_mean_field(sharp):
    m, x, _, pred, ell = sharp
    with torch.no_grad():
        ai = m(x, mode="ai")
    # AI estimates E_Q[log p(y|x,theta)] (the ELBO's data term) from below, and is close for peaked posteriors
    assert (ai <= ell + 1e-9).all()
    assert (ell - ai).max() < 0.15
    assert torch.equal(ai.argmax(1), pred.argmax(1))
    assert (ai.exp().sum(1) <= 1 + 1e-12).all()  # sub-normalised: the Jensen gap of Eq. (5.8)


def test_normalised_ai_is_a_predictive_close_to_exact(sharp):
    m, x, _, pred, _ = sharp
    with torch.no_grad():
        ai, norm, g = m(x, mode="ai"), m(x, mode="ai-norm"), m.propagate(x)
    assert torch.allclose(norm.exp().sum(1), torch.ones(4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (norm >= ai).all()  # renormalising a sub-normalised distribution raises every class
    assert torch.allclose(norm, torch.log_softmax(g.mean / m.scale, -1), atol=1e-12, rtol=0)
    assert (norm.exp() - pred).abs().max() < 0.04  # the bound itself is 0.07 away here


def test_mc_converges_to_exact_predictive(sharp):
    m, x, _, pred, _ = sharp
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        errs = {s: float((m(x, mode="mc", samples=s, generator=g).exp() - pred).abs().max()) for s in (2, 1000)}
    assert errs[1000] < 4 * 0.5 / math.sqrt(1000)  # 4 standard errors of a mean of values in [0, 1]
    assert errs[1000] < errs[2]


def test_theorem_5_1_alternative_elbo_below_elbo():
    m, x, probs = _tiny(sharpness=1.0, seed=3)
    y = torch.tensor([0, 1, 1, 0])
    xf = x.reshape(4, -1)
    r = float(m.prior_term().detach())
    # R = -KL(Q || uniform), independently
    kl = sum(float((p * torch.log(p * p.shape[-1])).sum()) for p in probs)
    assert r == pytest.approx(-kl, rel=1e-12)
    for stochastic in (False, True):
        _, ell = exact_mlp_predictive(xf, probs, [-1.0, 1.0], 3.0, stochastic=stochastic)
        lbar = theorem51_bound(xf, probs, [-1.0, 1.0], 3.0, stochastic=stochastic)
        elbo = float(ell.gather(1, y.view(-1, 1)).sum()) + r
        alt = float(lbar.gather(1, y.view(-1, 1)).sum()) + r
        if stochastic:  # strict: log E_h[p] > E_h[log p] for random hidden units
            assert alt < elbo - 1e-3
        else:  # equality case of Theorem 5.1: h deterministic given x and theta
            assert alt == pytest.approx(elbo, abs=1e-10)
    # the trained objective (Eq. 5.15 with lambda = 1, N = 4) is below the exact ELBO here as well
    with torch.no_grad():
        obj = -4 * float(alt_elbo_loss(m, x, y, prior_weight=1.0, num_train=4))
    assert obj <= elbo + 1e-9


@pytest.mark.parametrize("mean, var, s", [([0.3, -0.5, 1.0], [0.4, 1.5, 0.1], 1.0), ([2.0, 0.0, -1.0], [3.0, 0.2, 2.0], 0.7)])
def test_theorem_5_2_bound_by_quadrature(mean, var, s):
    """Eq. (5.8) <= E[log softmax(h/s)_c] for independent Gaussian logits (Gauss-Hermite, 40^3 nodes)."""
    import numpy as np

    t, w = np.polynomial.hermite_e.hermegauss(40)
    t, w = torch.tensor(t), torch.tensor(w) / math.sqrt(2 * math.pi)
    mu, sd = torch.tensor(mean, dtype=torch.float64), torch.tensor(var, dtype=torch.float64).sqrt()
    grid = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    wt = torch.stack(torch.meshgrid(w, w, w, indexing="ij"), -1).reshape(-1, 3).prod(1)
    h = mu + sd * grid
    exact = (wt.unsqueeze(1) * torch.log_softmax(h / s, -1)).sum(0)
    bound = log_lik_bound(Gaussian(mu.view(1, 3), (sd ** 2).view(1, 3)), torch.tensor(s, dtype=torch.float64))[0]
    assert (bound <= exact + 1e-9).all()
    # with zero variance the bound is the plain log-softmax (Jensen is tight)
    zero = log_lik_bound(Gaussian(mu.view(1, 3), torch.zeros(1, 3, dtype=torch.float64)),
                         torch.tensor(s, dtype=torch.float64))[0]
    assert torch.allclose(zero, torch.log_softmax(mu / s, -1), atol=1e-14, rtol=0)


def _make_deterministic(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BayesWeighted):
                idx = torch.randint(0, m.logits.shape[-1], m.logits.shape[:-1], generator=g)
                m.logits.fill_(-200.0).scatter_(-1, idx.unsqueeze(-1), 200.0)
    return model


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_deterministic_posterior_ai_equals_qnn(kind):
    torch.manual_seed(0)
    if kind == "mlp":
        model = bqn_mlp(num_classes=3, img_size=4, hidden=(6, 5)).double()
    else:
        model = bqn_cnn(num_classes=3, img_size=8, channels=(3, 4), kernel_size=3, residual=True).double()
    _make_deterministic(model, seed=1)
    x = torch.randn(5, 1, model_size(kind), model_size(kind), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        g = model.propagate(x)
        qnn = model.qnn_logits(x, {m: m.map_indices() for m in model.modules() if isinstance(m, BayesWeighted)})
        assert torch.equal(g.mean, qnn) and torch.equal(g.var, torch.zeros_like(g.var))
        ref = torch.log_softmax(qnn / model.scale, -1)
        assert torch.allclose(model(x, mode="ai"), ref, atol=1e-9, rtol=0)
        assert torch.allclose(model(x, mode="ai-norm"), ref, atol=1e-9, rtol=0)
        assert torch.allclose(model(x, mode="mc", samples=3), ref, atol=1e-9, rtol=0)
        loss = alt_elbo_loss(model, x, y, prior_weight=0.0, num_train=100)
        ce = torch.nn.functional.cross_entropy(qnn / model.scale, y)
        assert float(loss) == pytest.approx(float(ce), abs=1e-9)


def model_size(kind):
    return 4 if kind == "mlp" else 8
