"""Baselines: straight-through sign, E-QNN logit averaging, SGVB local reparameterisation and KL."""

import math

import pytest
import torch

from zoo_bqn.baselines.eqnn import EnsembleQNN, QNNCNN, QNNMLP, bootstrap_indices, sign_ste
from zoo_bqn.baselines.sgvb import GaussianBNN, GaussianCNN, GaussianConv2d, GaussianLinear, mean_field_kl, sgvb_loss
from zoo_bqn.layers import BayesWeighted
from zoo_bqn.models import bqn_cnn


def test_sign_ste_forward_and_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.5], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_qnn_forward_is_binary_and_ensemble_averages_logits():
    torch.manual_seed(0)
    members = [QNNMLP(4, [3], 2) for _ in range(3)]
    x = torch.randn(5, 1, 2, 2)
    w = [torch.where(p >= 0, 1.0, -1.0) for p in members[0].weights]
    h = torch.where(x.reshape(5, -1) @ w[0].T >= 0, 1.0, -1.0)
    assert torch.allclose(members[0](x), (h @ w[1].T) / members[0].log_scale.exp())
    ens = EnsembleQNN(members)
    want = torch.log_softmax(torch.stack([m(x) for m in members]).mean(0), -1)
    assert torch.allclose(ens(x), want)
    assert ens.size_bytes() == math.ceil(3 * (4 * 3 + 3 * 2) / 8) + 12
    members[0].weights[0].data.fill_(3.0)
    members[0].clip_()
    assert members[0].weights[0].max() == 1.0
    idx = bootstrap_indices(100, torch.Generator().manual_seed(0))
    assert idx.shape == (100,) and idx.min() >= 0 and idx.max() < 100 and idx.unique().numel() < 100
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleQNN([])


def test_local_reparameterisation_moments():
    torch.manual_seed(0)
    layer = GaussianLinear(3, 2, rho_init=-1.0).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    mean, var = layer.moments(x)
    sigma, sigma_b = torch.nn.functional.softplus(layer.rho), torch.nn.functional.softplus(layer.bias_rho)
    # closed form of z = x W^T + b for W ~ N(mu, sigma^2), b ~ N(bias_mu, sigma_b^2)
    assert torch.allclose(mean, x @ layer.mu.T + layer.bias_mu)
    assert torch.allclose(var, (x ** 2) @ (sigma ** 2).T + sigma_b ** 2)
    # and the layer's samples have those moments
    with torch.no_grad():
        z = torch.cat([layer(x) for _ in range(20000)])
    assert torch.allclose(z.mean(0), mean[0], atol=4 * float(var.detach().max().sqrt()) / math.sqrt(20000))
    assert torch.allclose(z.var(0), var[0], rtol=0.05)


def test_kl_closed_form_against_monte_carlo():
    mu, sigma = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    w = mu + sigma * torch.randn(200000, 2, generator=g, dtype=torch.float64)
    logq = -0.5 * ((w - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    logp = -0.5 * (w / 1.5) ** 2 - math.log(1.5) - 0.5 * math.log(2 * math.pi)
    mc = float((logq - logp).mean(0).sum())
    assert float(mean_field_kl(mu, sigma, 1.5)) == pytest.approx(mc, abs=0.01)


def test_bnn_predictive_and_loss():
    torch.manual_seed(0)
    bnn = GaussianBNN(4, [5], 3, samples=4)
    x, y = torch.randn(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    out = bnn(x)
    assert out.shape == (6, 3) and torch.allclose(out.exp().sum(1), torch.ones(6), atol=1e-6)
    loss = sgvb_loss(bnn, x, y, 1.0, 60)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in bnn.parameters())


def test_qnn_cnn_is_the_bqn_cnn_qnn_for_the_sign_of_its_latent_weights():
    torch.manual_seed(0)
    qnn = QNNCNN(1, 8, [2, 3], 3, 4)
    bqn = bqn_cnn(num_classes=4, img_size=8, channels=(2, 3), kernel_size=3)
    layers = [m for m in bqn.modules() if isinstance(m, BayesWeighted)]
    assert [tuple(w.shape) for w in qnn.weights] == [m.weight_shape for m in layers]
    weights = {m: (w.detach() >= 0).long() for m, w in zip(layers, qnn.weights)}  # level 1 is +1, sign(0) = +1
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(qnn(x) * qnn.log_scale.exp(), bqn.qnn_logits(x, weights), atol=1e-4, rtol=0)
    qnn(x).sum().backward()  # straight-through gradients reach every latent weight
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in qnn.weights)
    ens = EnsembleQNN([qnn, QNNCNN(1, 8, [2, 3], 3, 4)])
    assert ens.size_bytes() == math.ceil(2 * (2 * 9 + 3 * 2 * 9 + 4 * 12) / 8) + 8


def test_gaussian_conv_moments_against_im2col():
    torch.manual_seed(0)
    layer = GaussianConv2d(2, 3, 3, rho_init=-1.0).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    mean, var = layer.moments(x)
    cols = torch.nn.functional.unfold(x, 3, padding=1)  # (B, C*9, 25): each output's inputs
    sigma2 = torch.nn.functional.softplus(layer.rho).reshape(3, -1) ** 2
    want_mean = layer.mu.reshape(3, -1) @ cols + layer.bias_mu.view(1, 3, 1)
    want_var = sigma2 @ cols ** 2 + torch.nn.functional.softplus(layer.bias_rho).view(1, 3, 1) ** 2
    assert torch.allclose(mean.reshape(2, 3, 25), want_mean) and torch.allclose(var.reshape(2, 3, 25), want_var)


def test_gaussian_cnn_predictive_kl_and_loss():
    torch.manual_seed(0)
    bnn = GaussianCNN(1, 8, [2, 3], 3, 4, samples=3)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    out = bnn(x)
    assert out.shape == (6, 4) and torch.allclose(out.exp().sum(1), torch.ones(6), atol=1e-6)
    assert torch.allclose(bnn.kl(), sum(layer.kl() for layer in bnn.layers))
    loss = sgvb_loss(bnn, x, y, 1.0, 60)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in bnn.parameters())
    with torch.no_grad():  # sigma -> 0: every sample is the deterministic ReLU CNN of the means
        for layer in bnn.layers:
            layer.rho.fill_(-60.0)
            layer.bias_rho.fill_(-60.0)
        h = x
        for conv in bnn.layers[:-1]:
            h = torch.nn.functional.avg_pool2d(torch.relu(torch.nn.functional.conv2d(h, conv.mu, conv.bias_mu,
                                                                                     padding=1)), 2)
        head = bnn.layers[-1]
        assert torch.allclose(bnn(x), torch.log_softmax(h.flatten(1) @ head.mu.T + head.bias_mu, -1), atol=1e-5)
