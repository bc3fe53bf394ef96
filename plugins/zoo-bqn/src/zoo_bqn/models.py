"""Builders of the registry's BQN architectures (MLP and CNN), ``builder(**entry.args, **user_kwargs)``.

The dissertation does not list layer sizes; these are this plugin's choices (see the plugin README).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from torch import nn

from zoo_bqn.layers import AvgPoolDFT, BayesConv2d, BayesLinear, Flatten, QuantAct, Residual
from zoo_bqn.levels import LevelSpec, make_levels
from zoo_bqn.network import BQNClassifier


def _act(levels: LevelSpec, fan_in: int) -> QuantAct:
    """Sign for binary activations; otherwise nearest-level quantization of z / sqrt(fan_in)."""
    scale = 1.0 if make_levels(levels).numel() == 2 else math.sqrt(fan_in)
    return QuantAct(levels, scale)


def _check_positive(name: str, values: Sequence[int]) -> None:
    if not values or any(int(v) <= 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive sizes, got {list(values)}")


def bqn_mlp(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, hidden: Sequence[int] = (512, 512),
            weight_levels: LevelSpec = "binary", act_levels: LevelSpec = "binary", **kwargs: Any) -> BQNClassifier:
    """Flatten -> [BayesLinear -> QuantAct] x len(hidden) -> BayesLinear head (fully quantized MLP)."""
    _check_positive("hidden", hidden)
    layers: list = [Flatten()]
    width = in_chans * img_size * img_size
    for h in hidden:
        layers += [BayesLinear(width, h, weight_levels), _act(act_levels, width)]
        width = h
    return BQNClassifier(nn.Sequential(*layers), width, num_classes, weight_levels, **kwargs)


def bqn_cnn(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, channels: Sequence[int] = (32, 64),
            kernel_size: int = 5, residual: bool = False, hidden: Sequence[int] = (),
            weight_levels: LevelSpec = "binary", act_levels: LevelSpec = "binary", **kwargs: Any) -> BQNClassifier:
    """[BayesConv2d(k, 'same') -> QuantAct -> (Residual(conv3x3 -> QuantAct)) -> AvgPoolDFT(2)] per stage,
    Flatten -> [BayesLinear -> QuantAct] x len(hidden) -> BayesLinear head."""
    _check_positive("channels", channels)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
    layers: list = []
    c, size = in_chans, img_size
    for out in channels:
        layers += [BayesConv2d(c, out, kernel_size, padding=kernel_size // 2, levels=weight_levels),
                   _act(act_levels, c * kernel_size ** 2)]
        if residual:
            body = nn.Sequential(BayesConv2d(out, out, 3, padding=1, levels=weight_levels), _act(act_levels, out * 9))
            layers.append(Residual(body))
        layers.append(AvgPoolDFT(2))
        c, size = out, size // 2
        if size < 1:
            raise ValueError(f"{len(channels)} pooling stages do not fit img_size={img_size}")
    layers.append(Flatten())
    width = c * size * size
    for h in hidden:
        layers += [BayesLinear(width, h, weight_levels), _act(act_levels, width)]
        width = h
    return BQNClassifier(nn.Sequential(*layers), width, num_classes, weight_levels, **kwargs)
