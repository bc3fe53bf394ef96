"""Classification metrics from log-probabilities: NLL, 0-1 error, expected calibration error (ECE)."""

from __future__ import annotations

from typing import Dict, Tuple

import torch


def _check(logp: torch.Tensor, y: torch.Tensor) -> None:
    if logp.dim() != 2 or y.dim() != 1 or logp.shape[0] != y.shape[0]:
        raise ValueError(f"expected log-probabilities (N, K) and labels (N,), got {tuple(logp.shape)} and "
                         f"{tuple(y.shape)}")


def nll(logp: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood -log p(y_n | x_n) in nats."""
    _check(logp, y)
    return float(-logp.gather(1, y.view(-1, 1)).mean())


def error(logp: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of examples whose arg-max class differs from the label."""
    _check(logp, y)
    return float((logp.argmax(1) != y).double().mean())


def reliability(logp: torch.Tensor, y: torch.Tensor, bins: int = 15) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per equal-width confidence bin (0, 1/bins], ...: (mean confidence, accuracy, count), each (bins,).

    Confidence is the largest predicted probability exp(max_c logp); empty bins hold 0.
    """
    _check(logp, y)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    conf, pred = logp.exp().max(1)
    correct = (pred == y).double()
    idx = torch.clamp(torch.ceil(conf.double() * bins).long() - 1, 0, bins - 1)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, torch.ones_like(correct))
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, conf.double())
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, correct)
    safe = count.clamp_min(1)
    return conf_sum / safe, acc_sum / safe, count


def ece(logp: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error sum_b (n_b / N) |acc_b - conf_b| over equal-width bins."""
    conf, acc, count = reliability(logp, y, bins)
    return float((count / count.sum() * (acc - conf).abs()).sum())


def all_metrics(logp: torch.Tensor, y: torch.Tensor, bins: int = 15) -> Dict[str, float]:
    """{"nll", "error", "ece"}."""
    return {"nll": nll(logp, y), "error": error(logp, y), "ece": ece(logp, y, bins)}
