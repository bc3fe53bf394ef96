"""NLL, error and ECE against hand computations."""

import math

import pytest
import torch

from zoo_bqn.metrics import all_metrics, ece, error, nll, reliability


def test_metrics_by_hand():
    p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    logp = p.log()
    assert nll(logp, y) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.7) + math.log(0.55)) / 4)
    assert error(logp, y) == 0.25
    # 2 bins: (0, .5] empty; (.5, 1]: all four, confidence mean (.9+.6+.7+.55)/4, accuracy 3/4
    assert ece(logp, y, bins=2) == pytest.approx(abs(0.75 - (0.9 + 0.6 + 0.7 + 0.55) / 4))
    # 10 bins: .9 -> bin 8 (acc 1), .6 -> bin 5 (acc 0), .7 -> bin 6 (acc 1), .55 -> bin 5 (acc 1)
    want = (abs(1 - 0.9) + abs(0.5 - 0.575) * 2 + abs(1 - 0.7)) / 4
    assert ece(logp, y, bins=10) == pytest.approx(want)
    conf, acc, count = reliability(logp, y, bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 2, 1, 0, 1, 0]
    assert set(all_metrics(logp, y)) == {"nll", "error", "ece"}


def test_metric_shape_errors():
    with pytest.raises(ValueError, match="expected log-probabilities"):
        nll(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="bins"):
        ece(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), bins=0)
