"""Builders of the registry's BQN architectures (MLP and CNN), ``builder(**entry.args, **user_kwargs)``.

The dissertation does not list layer sizes; these are this plugin's choices (see the plugin README).
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

from torch import nn

from zoo_bqn.layers import AvgPoolDFT, BayesConv2d, BayesLinear, ChannelMix, Flatten, QuantAct, Residual
from zoo_bqn.levels import LevelSpec, make_levels
from zoo_bqn.network import BQNClassifier, stage_info


def _act(levels: LevelSpec, fan_in: int) -> QuantAct:
    """Sign for binary activations; otherwise nearest-level quantization of z / sqrt(fan_in)."""
    scale = 1.0 if make_levels(levels).numel() == 2 else math.sqrt(fan_in)
    return QuantAct(levels, scale)


def _check_positive(name: str, values: Sequence[int]) -> None:
    if not values or any(int(v) <= 0 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive sizes, got {list(values)}")


def _stem(in_chans: int, stem_chans: Optional[int]) -> Tuple[ChannelMix, int]:
    """The fixed input mix from ``in_chans`` to the ``stem_chans`` channels the Bayesian layers read (default
    ``in_chans``: the identity), and that channel count."""
    chans = in_chans if stem_chans is None else int(stem_chans)
    return ChannelMix(in_chans, chans), chans


def bqn_mlp(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, hidden: Sequence[int] = (512, 512),
            weight_levels: LevelSpec = "binary", act_levels: LevelSpec = "binary", stem_chans: Optional[int] = None,
            **kwargs: Any) -> BQNClassifier:
    """ChannelMix -> Flatten -> [BayesLinear -> QuantAct] x len(hidden) (the trunk) -> BayesLinear head (fully
    quantized MLP). ``stem_chans``: the channels the first BayesLinear reads (default ``in_chans``)."""
    _check_positive("hidden", hidden)
    stem, chans = _stem(in_chans, stem_chans)
    layers: list = [Flatten()]
    width = chans * img_size * img_size
    for h in hidden:
        layers += [BayesLinear(width, h, weight_levels), _act(act_levels, width)]
        width = h
    return BQNClassifier(stem, nn.Sequential(*layers), width, nn.Sequential(), width, num_classes, weight_levels,
                         **kwargs)


def bqn_cnn(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, channels: Sequence[int] = (32, 64),
            kernel_size: int = 5, residual: bool = False, hidden: Sequence[int] = (),
            weight_levels: LevelSpec = "binary", act_levels: LevelSpec = "binary", stem_chans: Optional[int] = None,
            **kwargs: Any) -> BQNClassifier:
    """ChannelMix -> [BayesConv2d(k, 'same') -> QuantAct -> (Residual(conv3x3 -> QuantAct)) -> AvgPoolDFT(2)] per
    stage (the trunk) -> Flatten -> [BayesLinear -> QuantAct] x len(hidden) -> BayesLinear head.

    ``stem_chans``: the channels the first BayesConv2d reads (default ``in_chans``). Feature maps (timm's
    ``feature_info``): each stage's output before its pooling (reductions 1, 2, 4, ...) and the trunk's output."""
    _check_positive("channels", channels)
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd (for 'same' padding), got {kernel_size}")
    stem, c = _stem(in_chans, stem_chans)
    layers: list = []
    maps: List[Tuple[int, int, int]] = []  # (units, reduction, index of the layer) of each feature map
    size = img_size
    for out in channels:
        layers += [BayesConv2d(c, out, kernel_size, padding=kernel_size // 2, levels=weight_levels),
                   _act(act_levels, c * kernel_size ** 2)]
        if residual:
            body = nn.Sequential(BayesConv2d(out, out, 3, padding=1, levels=weight_levels), _act(act_levels, out * 9))
            layers.append(Residual(body))
        maps.append((out, 2 ** len(maps), len(layers) - 1))
        layers.append(AvgPoolDFT(2))
        c, size = out, size // 2
        if size < 1:
            raise ValueError(f"{len(channels)} pooling stages do not fit img_size={img_size}")
    maps.append((c, 2 ** len(channels), len(layers) - 1))
    head: list = [Flatten()]
    width = c * size * size
    for h in hidden:
        head += [BayesLinear(width, h, weight_levels), _act(act_levels, width)]
        width = h
    return BQNClassifier(stem, nn.Sequential(*layers), c, nn.Sequential(*head), width, num_classes, weight_levels,
                         feature_info=stage_info(maps), **kwargs)
