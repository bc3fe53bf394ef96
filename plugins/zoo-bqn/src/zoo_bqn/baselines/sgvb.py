"""Gaussian Bayesian MLP trained by SGVB with the local reparameterisation trick (Kingma et al., 2015)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GaussianLinear(nn.Module):
    """Linear layer with factorised Gaussian weights N(mu, sigma^2), sigma = softplus(rho), and bias.

    ``forward`` samples the pre-activations directly: z ~ N(x mu^T + b, x^2 (sigma^2)^T + sigma_b^2).
    """

    def __init__(self, in_features: int, out_features: int, prior_std: float = 1.0, rho_init: float = -5.0) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (in_features + out_features))
        self.mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.rho = nn.Parameter(torch.full((out_features, in_features), rho_init))
        self.bias_mu = nn.Parameter(torch.zeros(out_features))
        self.bias_rho = nn.Parameter(torch.full((out_features,), rho_init))
        self.prior_std = prior_std

    def moments(self, x: torch.Tensor) -> tuple:
        """Mean and variance (B, out) of the pre-activations given a deterministic input x (B, in)."""
        mean = F.linear(x, self.mu, self.bias_mu)
        var = F.linear(x * x, F.softplus(self.rho) ** 2) + F.softplus(self.bias_rho) ** 2
        return mean, var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.moments(x)
        return mean + var.sqrt() * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, prior_std^2)) summed over weights and biases (closed form)."""
        total = mean_field_kl(self.mu, F.softplus(self.rho), self.prior_std)
        return total + mean_field_kl(self.bias_mu, F.softplus(self.bias_rho), self.prior_std)


def mean_field_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_std: float) -> torch.Tensor:
    """sum KL(N(mu, sigma^2) || N(0, prior_std^2))."""
    p2 = prior_std ** 2
    return 0.5 * ((sigma ** 2 + mu ** 2) / p2 - 1.0 - 2 * torch.log(sigma) + math.log(p2)).sum()


class GaussianBNN(nn.Module):
    """ReLU MLP of GaussianLinear layers; ``forward(x, samples)`` -> log of the MC-averaged softmax (B, K)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, samples: int = 10,
                 prior_std: float = 1.0) -> None:
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(GaussianLinear(a, b, prior_std) for a, b in zip(sizes[:-1], sizes[1:]))
        self.samples = samples

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        """One local-reparameterisation sample of the logits (B, K)."""
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h

    def forward(self, x: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        s = samples or self.samples
        logp = torch.stack([torch.log_softmax(self.sample_logits(x), -1) for _ in range(s)])
        return torch.logsumexp(logp, 0) - math.log(s)

    def kl(self) -> torch.Tensor:
        return torch.stack([layer.kl() for layer in self.layers]).sum()


def sgvb_loss(model: GaussianBNN, x: torch.Tensor, y: torch.Tensor, prior_weight: float,
              num_train: int) -> torch.Tensor:
    """-(1/B) sum_n log p(y_n | x_n, theta_n) + (lambda / N) KL, one local-reparameterised sample per example."""
    return F.cross_entropy(model.sample_logits(x), y) + prior_weight / num_train * model.kl()
