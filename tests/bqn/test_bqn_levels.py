"""Level sets: named sets, validation, invalid sets rejected everywhere they are used."""

import math

import pytest
import torch

from zoo_bqn.contraction import dft_sum
from zoo_bqn.dist import Categorical
from zoo_bqn.layers import AvgPoolDFT, BayesConv2d, BayesLinear, QuantAct
from zoo_bqn.levels import bits_per_value, is_uniform, make_levels, thresholds
from zoo_bqn.models import bqn_mlp


def test_named_level_sets():
    assert make_levels("binary").tolist() == [-1.0, 1.0]
    assert make_levels("ternary").tolist() == [-1.0, 0.0, 1.0]
    q = make_levels("quaternary")
    assert torch.allclose(q, torch.tensor([-1, -1 / 3, 1 / 3, 1], dtype=torch.float64))
    assert is_uniform(q) and [bits_per_value(make_levels(n)) for n in ("binary", "ternary", "quaternary")] == [1, 2, 2]
    assert thresholds(make_levels("ternary")).tolist() == [-0.5, 0.5]


@pytest.mark.parametrize("bad, message", [
    ([1.0, -1.0], "strictly increasing"),
    ([-1.0, 0.0, 0.0, 1.0], "strictly increasing"),
    ([1.0], "at least 2"),
    ([], "at least 2"),
    ([[-1.0, 1.0]], "at least 2"),
    ([-1.0, math.nan], "finite"),
    ([-math.inf, 1.0], "finite"),
    ("octal", "unknown level set"),
    (["a", "b"], "list of numbers"),
])
def test_invalid_level_sets_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        make_levels(bad)
    with pytest.raises(ValueError, match=message):
        BayesLinear(3, 2, levels=bad)
    with pytest.raises(ValueError, match=message):
        QuantAct(bad)
    with pytest.raises(ValueError, match=message):
        BayesConv2d(1, 1, 3, levels=bad)
    with pytest.raises(ValueError, match=message):
        bqn_mlp(hidden=(4,), img_size=2, weight_levels=bad)


def test_dft_pooling_rejects_non_uniform_levels():
    levels = make_levels([-1.0, 0.0, 3.0])
    assert not is_uniform(levels)
    probs = torch.full((1, 1, 2, 2, 3), 1 / 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="equally spaced"):
        AvgPoolDFT(2)(Categorical(probs, levels))
    with pytest.raises(ValueError, match="equally spaced"):
        dft_sum(probs.reshape(1, 4, 3), levels)


def test_other_invalid_arguments():
    with pytest.raises(ValueError, match="scale"):
        QuantAct("binary", scale=0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        AvgPoolDFT(0)
    with pytest.raises(ValueError, match="support size"):
        Categorical(torch.ones(2, 3) / 3, make_levels("binary"))
