"""Gaussian Bayesian MLP and CNN trained by SGVB with the local reparameterisation trick (Kingma et al., 2015)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _GaussianWeights(nn.Module):
    """Factorised Gaussian weights N(mu, sigma^2) of ``weight_shape`` (out first) and bias, sigma = softplus(rho),
    mu Xavier-uniform; ``forward`` samples the pre-activations from the subclass's exact ``moments(x)`` (local
    reparameterisation)."""

    def __init__(self, weight_shape: tuple, fan_in: int, fan_out: int, prior_std: float, rho_init: float) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        self.mu = nn.Parameter(torch.empty(weight_shape).uniform_(-bound, bound))
        self.rho = nn.Parameter(torch.full(weight_shape, rho_init))
        self.bias_mu = nn.Parameter(torch.zeros(weight_shape[0]))
        self.bias_rho = nn.Parameter(torch.full((weight_shape[0],), rho_init))
        self.prior_std = prior_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.moments(x)
        return mean + var.sqrt() * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, prior_std^2)) summed over weights and biases (closed form)."""
        total = mean_field_kl(self.mu, F.softplus(self.rho), self.prior_std)
        return total + mean_field_kl(self.bias_mu, F.softplus(self.bias_rho), self.prior_std)


class GaussianLinear(_GaussianWeights):
    """Linear layer with Gaussian weights (out, in) and bias: z ~ N(x mu^T + b, x^2 (sigma^2)^T + sigma_b^2)."""

    def __init__(self, in_features: int, out_features: int, prior_std: float = 1.0, rho_init: float = -5.0) -> None:
        super().__init__((out_features, in_features), in_features, out_features, prior_std, rho_init)

    def moments(self, x: torch.Tensor) -> tuple:
        """Mean and variance (B, out) of the pre-activations given a deterministic input x (B, in)."""
        mean = F.linear(x, self.mu, self.bias_mu)
        var = F.linear(x * x, F.softplus(self.rho) ** 2) + F.softplus(self.bias_rho) ** 2
        return mean, var


class GaussianConv2d(_GaussianWeights):
    """'Same'-padded k x k convolution with Gaussian weights (O, C, k, k) and bias:
    z ~ N(conv(x, mu) + b, conv(x^2, sigma^2) + sigma_b^2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, prior_std: float = 1.0,
                 rho_init: float = -5.0) -> None:
        k2 = kernel_size * kernel_size
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), in_channels * k2, out_channels * k2,
                         prior_std, rho_init)
        self.padding = kernel_size // 2

    def moments(self, x: torch.Tensor) -> tuple:
        """Mean and variance (B, O, H, W) of the pre-activations given a deterministic input x (B, C, H, W)."""
        mean = F.conv2d(x, self.mu, self.bias_mu, padding=self.padding)
        var = F.conv2d(x * x, F.softplus(self.rho) ** 2, F.softplus(self.bias_rho) ** 2, padding=self.padding)
        return mean, var


def mean_field_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_std: float) -> torch.Tensor:
    """sum KL(N(mu, sigma^2) || N(0, prior_std^2))."""
    p2 = prior_std ** 2
    return 0.5 * ((sigma ** 2 + mu ** 2) / p2 - 1.0 - 2 * torch.log(sigma) + math.log(p2)).sum()


class SampledClassifier(nn.Module):
    """Base of the Gaussian BNNs: ``layers`` of Gaussian weights; subclasses define ``sample_logits(x)``, one
    local-reparameterisation sample of the logits (B, K)."""

    layers: nn.ModuleList
    samples: int

    def forward(self, x: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """log of the average of softmax over ``samples`` (default ``self.samples``) draws (B, K)."""
        s = samples or self.samples
        logp = torch.stack([torch.log_softmax(self.sample_logits(x), -1) for _ in range(s)])
        return torch.logsumexp(logp, 0) - math.log(s)

    def kl(self) -> torch.Tensor:
        return torch.stack([layer.kl() for layer in self.layers]).sum()


class GaussianBNN(SampledClassifier):
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


class GaussianCNN(SampledClassifier):
    """The CNN of ``bqn_cnn`` with Gaussian weights: [GaussianConv2d (k x k, 'same') -> ReLU -> 2 x 2 average pool]
    per stage, a GaussianLinear head; ``forward(x, samples)`` -> log of the MC-averaged softmax (B, K)."""

    def __init__(self, in_chans: int, img_size: int, channels: Sequence[int], kernel_size: int, num_classes: int,
                 samples: int = 10, prior_std: float = 1.0) -> None:
        super().__init__()
        sizes = [in_chans, *channels]
        layers: list = [GaussianConv2d(a, b, kernel_size, prior_std) for a, b in zip(sizes[:-1], sizes[1:])]
        width = sizes[-1] * (img_size // 2 ** len(channels)) ** 2
        self.layers = nn.ModuleList([*layers, GaussianLinear(width, num_classes, prior_std)])
        self.samples = samples

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        """One local-reparameterisation sample of the logits (B, K)."""
        h = x
        for conv in self.layers[:-1]:
            h = F.avg_pool2d(F.relu(conv(h)), 2)
        return self.layers[-1](h.flatten(1))


def sgvb_loss(model: SampledClassifier, x: torch.Tensor, y: torch.Tensor, prior_weight: float,
              num_train: int) -> torch.Tensor:
    """-(1/B) sum_n log p(y_n | x_n, theta_n) + (lambda / N) KL, one local-reparameterised sample per example."""
    return F.cross_entropy(model.sample_logits(x), y) + prior_weight / num_train * model.kl()
