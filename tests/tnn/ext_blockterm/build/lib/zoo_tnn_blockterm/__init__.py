"""Block-term decomposition: ``W = sum_g P_g[S, Rs] core_g[Rs, Rt, H, W] Q_g[Rt, T]`` with 2 blocks.

A third-party decomposition for zoo-tnn: it only declares factors on the layer's legs; the plugin
derives the conv_einsum equation, the parameter count, rank from rate and initialisation.
"""

from __future__ import annotations

from typing import List

from zoo_tnn.decompositions import Decomposition, Factor, Layout


class BlockTerm(Decomposition):
    name = "bt"
    description = "block-term: sum of 2 Tucker-2 blocks of multilinear rank (R, R)"
    blocks = 2

    def factors(self, layout: Layout, rank: int) -> List[Factor]:
        (s,), (t,) = layout.inn, layout.out
        g = layout.bond(self.blocks)
        rs = layout.bond(min(rank, s.size))
        rt = layout.bond(min(rank, t.size))
        return [
            Factor("proj_in", (g, s, rs)),
            Factor("core", (g, rs, rt) + tuple(layout.kernel)),
            Factor("proj_out", (g, rt, t)),
        ]
