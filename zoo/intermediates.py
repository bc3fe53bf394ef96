"""timm's ``forward_intermediates`` for a network given as a list of stages: one loop for every family."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn


def run_stages(stages: Sequence[nn.Module], x: Tensor, indices: Optional[Union[int, List[int]]], output_fmt: str,
               stop_early: bool, intermediates_only: bool) -> Tuple[Tensor, List[Tensor]]:
    """Run ``x`` (B, C, H, W) through ``stages``, keeping the outputs timm's ``indices`` select; returns the last
    output computed and the kept maps (it stops after the last kept one when ``stop_early`` or
    ``intermediates_only``)."""
    from timm.models._features import feature_take_indices

    if output_fmt != "NCHW":
        raise ValueError(f"output_fmt {output_fmt!r} is not supported (only 'NCHW')")
    take, last = feature_take_indices(len(stages), indices)
    maps: List[Tensor] = []
    for i, stage in enumerate(stages):
        if (stop_early or intermediates_only) and i > last:
            break
        x = stage(x)
        if i in take:
            maps.append(x)
    return x, maps
