"""Built-in decompositions: CP, TK, TT, TR, SVD (no reshape) and mCP, mTK, mTT, mTR (m channel modes).

Factor layouts follow Fig. 2.5/2.6/2.10 and Section 3.3.3 of the dissertation:

=====  ==========================================================================================
cp     ``A[r,T] B[r,S] C[r,H] D[r,W]``                                  (Lebedev et al., [20])
tk     ``P[S,Rs] core[Rs,Rt,H,W] Q[Rt,T]``  (Tucker-2)                  (Kim et al., [21])
tt     train ``S - H - W - T``                                           ([34] baseline)
tr     ring  ``S - H - W - T - S``
svd    ``U[S,H,W,r] V[r,T]`` (k x k conv to r channels, then 1 x 1)     ([30, 31])
mcp    ``K_i[r,T_i,S_i]`` (i < m) and ``K_m[r,H,W]``                    (Fig. 2.6a, Eq. in 3.3.3)
mtk    ``P_i[S_i,Rs_i]``, core ``[Rs_0..,Rt_0..,H,W]``, ``Q_i[Rt_i,T_i]``  (Fig. 2.6b)
mtt    ``K_0[S_0,T_0,R_0]``, ``K_i[R_{i-1},S_i,T_i,R_i]``, ``K_m[R_{m-1},H,W]``  (Eq. 2.3-2.4)
mtr    ``K_i[R_i,S_i,T_i,R_{i+1}]``, ``K_m[R_m,H,W,R_0]``               (Fig. 2.6c)
=====  ==========================================================================================

For a linear layer the spatial site is absent. Initialisation from a dense kernel (Layer-Decomp)
is in :mod:`zoo_tnn.fit`; it dispatches on :attr:`structure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, List, Optional

from zoo_tnn.decompositions import structures as st
from zoo_tnn.decompositions.base import Decomposition, Factor, Layout, TensorNetwork

if TYPE_CHECKING:  # pragma: no cover
    import torch


class _Sited(Decomposition):
    """A decomposition defined by a list of sites and one of the three structures."""

    structure: ClassVar[str] = ""  # "cp" | "train" | "ring" | "tucker"

    def sites(self, layout: Layout) -> List[st.Site]:
        raise NotImplementedError

    def site_names(self, layout: Layout) -> List[str]:
        return [f"k{i}" for i in range(len(self.sites(layout)))]

    def factors(self, layout: Layout, rank: int) -> List[Factor]:
        if self.structure == "tucker":
            return st.tucker_factors(layout, rank)
        sites, names = self.sites(layout), self.site_names(layout)
        if self.structure == "cp":
            return st.cp_factors(layout, sites, rank, names)
        return st.chain_factors(layout, sites, rank, names, ring=self.structure == "ring")

    def init_from_kernel(self, net: TensorNetwork, kernel: "torch.Tensor") -> Optional[List["torch.Tensor"]]:
        from zoo_tnn.decompositions.svdinit import structured_init

        return structured_init(self.structure, net, kernel)

    def full_rank(self, layout: Layout) -> Optional[int]:
        if self.structure == "tucker":
            return st.tucker_full_rank(layout)
        if self.structure == "cp":
            return st.cp_full_rank(self.sites(layout))
        return st.chain_full_rank(self.sites(layout))


class CP(_Sited):
    name = "cp"
    description = "CP of the 4-way kernel, no reshape (NN-CP)"
    structure = "cp"

    def sites(self, layout: Layout) -> List[st.Site]:
        return [layout.out, layout.inn] + [(k,) for k in layout.kernel]

    def site_names(self, layout: Layout) -> List[str]:
        return ["out", "input"] + [f"k_{k.letter}" for k in layout.kernel]


class TK(_Sited):
    name = "tk"
    description = "Tucker-2 on the channel modes, no reshape (NN-TK)"
    structure = "tucker"


class TT(_Sited):
    name = "tt"
    description = "tensor train S-H-W-T, no reshape (NN-TT)"
    structure = "train"

    def sites(self, layout: Layout) -> List[st.Site]:
        return [layout.inn] + [(k,) for k in layout.kernel] + [layout.out]


class TR(TT):
    name = "tr"
    description = "tensor ring S-H-W-T, no reshape (NN-TR)"
    structure = "ring"


class SVD(_Sited):
    name = "svd"
    description = "rank-r matricisation (S*H*W) x T (NN-SVD)"
    structure = "train"

    def sites(self, layout: Layout) -> List[st.Site]:
        return [tuple(layout.inn) + tuple(layout.kernel), layout.out]

    def site_names(self, layout: Layout) -> List[str]:
        return ["input", "out"]


class _Reshaped(_Sited):
    reshaped = True

    def sites(self, layout: Layout) -> List[st.Site]:
        pairs = [(s, t) for s, t in zip(layout.inn, layout.out)]
        return pairs + ([tuple(layout.kernel)] if layout.kernel else [])


class MCP(_Reshaped):
    name = "mcp"
    description = "CP of the kernel reshaped to m (S_i, T_i) modes + (H, W) (TNN-mCP)"
    structure = "cp"
    path_ratio = 0.2  # its large ranks make depthwise conv steps over many channels: see benchmarks/tnn.md


class MTK(_Reshaped):
    name = "mtk"
    description = "Tucker with one projection per reshaped channel mode (TNN-mTK)"
    structure = "tucker"


class MTT(_Reshaped):
    name = "mtt"
    description = "tensor train over the reshaped (S_i, T_i) modes then (H, W) (TNN-mTT)"
    structure = "train"


class MTR(_Reshaped):
    name = "mtr"
    description = "tensor ring over the reshaped (S_i, T_i) modes and (H, W) (TNN-mTR)"
    structure = "ring"
    path_ratio = 0.2  # as mCP


BUILTINS = {cls.name: cls() for cls in (CP, TK, TT, TR, SVD, MCP, MTK, MTT, MTR)}
