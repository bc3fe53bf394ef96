"""Training objective: the alternative ELBO (Theorems 5.1-5.2) with the prior weight of Eq. (5.15)."""

from __future__ import annotations

import torch
from torch import nn

from zoo_bqn.dist import Gaussian
from zoo_bqn.layers import BayesWeighted


def log_lik_bound(logits: Gaussian, scale: torch.Tensor) -> torch.Tensor:
    """Eq. (5.8) for every class: mu_c/s - log sum_k exp(mu_k/s + var_k/(2 s^2)), shape (B, K).

    A lower bound of E[log softmax(h/s)_c] for independent Gaussian logits h_k ~ N(mu_k, var_k);
    its exponentials sum to <= 1 over c (the deficit is the Jensen gap).
    """
    s = scale.to(logits.mean.dtype)
    lse = torch.logsumexp(logits.mean / s + logits.var / (2 * s * s), dim=-1, keepdim=True)
    return logits.mean / s - lse


def prior_term(model: nn.Module) -> torch.Tensor:
    """R(theta) = E_Q[log p(theta)] + H(Q) summed over all categorical weights (uniform prior p)."""
    terms = [m.entropy_term() for m in model.modules() if isinstance(m, BayesWeighted)]
    if not terms:
        raise ValueError(f"{type(model).__name__} has no categorical weights (BayesWeighted layers)")
    return torch.stack(terms).sum()


def alt_elbo_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, prior_weight: float,
                  num_train: int) -> torch.Tensor:
    """Negative Eq. (5.15) per training example: -(1/B) sum_n Lbar_n - (lambda / N) R(theta) (scalar, nats).

    Args:
        model: a BQN classifier with ``propagate(x) -> Gaussian`` logits and ``scale``.
        x, y: a minibatch (B, ...) and its labels (B,).
        prior_weight: lambda >= 0 of Eq. (5.15) (lambda = 1 is the (alternative) ELBO itself).
        num_train: N, the number of training examples (the minibatch sum is rescaled by N/B).
    """
    if prior_weight < 0:
        raise ValueError(f"prior_weight (lambda) must be >= 0, got {prior_weight}")
    if num_train <= 0:
        raise ValueError(f"num_train (N) must be positive, got {num_train}")
    bound = log_lik_bound(model.propagate(x), model.scale)
    data = bound.gather(1, y.view(-1, 1)).mean()
    loss = -data
    if prior_weight > 0:
        loss = loss - prior_weight / num_train * prior_term(model)
    return loss
