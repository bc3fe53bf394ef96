"""Tensor-network specs: what a decomposition returns for one layer.

A decomposition never runs a forward pass. Given a :class:`Layout` (the letters and sizes of the
output-channel modes, input-channel modes and kernel modes of one layer) and a rank, it returns the
list of :class:`Factor` s. :class:`TensorNetwork` turns those into the ``zoo.conv_einsum`` equation
of the layer, the equation that reconstructs the dense kernel, parameter counts and the
initialisation scale.

Letter conventions: ``z`` is the batch, ``h``/``w`` the spatial (convolution) modes; channel and
bond letters are allocated from the remaining lower/upper-case letters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, ClassVar, List, Optional, Sequence, Tuple

from zoo_tnn.factorize import balanced_factors

if TYPE_CHECKING:  # pragma: no cover
    import torch

BATCH = "z"
SPATIAL = "hw"
_POOL = [c for c in "abcdefgijklmnopqrstuvxy" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]


@dataclass(frozen=True)
class Mode:
    """One leg of the network: an einsum letter and its size."""

    letter: str
    size: int


@dataclass(frozen=True)
class Factor:
    """One learnable kernel factor: its name and its legs (in storage order)."""

    name: str
    modes: Tuple[Mode, ...]

    @property
    def letters(self) -> str:
        return "".join(m.letter for m in self.modes)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(m.size for m in self.modes)

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass
class Layout:
    """The legs a decomposition may connect for one layer.

    Attributes:
        out: output-channel modes ``T_0..T_{m-1}`` (product = out channels), most significant first.
        inn: input-channel modes ``S_0..S_{m-1}`` (product = in channels).
        kernel: spatial kernel modes ``(H, W)``; empty for a linear layer.
    """

    out: Tuple[Mode, ...]
    inn: Tuple[Mode, ...]
    kernel: Tuple[Mode, ...]
    _free: List[str] = field(default_factory=list, repr=False)

    def bond(self, size: int) -> Mode:
        """A fresh internal (rank) leg of ``size``."""
        if size < 1:
            raise ValueError(f"bond sizes must be >= 1, got {size}")
        if not self._free:
            raise ValueError("ran out of einsum letters for this tensor network")
        return Mode(self._free.pop(0), int(size))

    @property
    def m(self) -> int:
        return len(self.inn)


class Decomposition:
    """Base class of a decomposition plugin (subclass it and implement :meth:`factors`).

    Class attributes:
        name: short name used in model names (``resnet50-{name}-10pct``).
        reshaped: whether channels are split into ``m`` modes (mCP, mTT, ...); ``m`` defaults to 3.
        supports_groups: whether grouped/depthwise convolutions can be factorised (built-ins: no).
        path_ratio: a tensorial layer runs its FLOP-optimal factorised path only when that needs under
            ``path_ratio`` times the multiply-adds of reconstruct-first (a dense convolution runs several times
            more efficiently per multiply-add than a chain of small contractions).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reshaped: ClassVar[bool] = False
    default_m: ClassVar[int] = 3
    supports_groups: ClassVar[bool] = False
    path_ratio: ClassVar[float] = 0.5

    def factors(self, layout: Layout, rank: int) -> List[Factor]:
        """The factors of a rank-``rank`` network on ``layout``."""
        raise NotImplementedError

    def full_rank(self, layout: Layout) -> Optional[int]:
        """A rank at which the network can represent every kernel exactly (None if unknown)."""
        return None

    def init_from_kernel(self, net: "TensorNetwork", kernel: "torch.Tensor") -> Optional[List["torch.Tensor"]]:
        """Optional SVD-based factors approximating ``kernel`` (laid out as ``net.kernel_letters``)."""
        return None

    def __repr__(self) -> str:
        return f"<decomposition {self.name}>"


@dataclass(frozen=True)
class TensorNetwork:
    """A factorised layer: the factors, their equation and parameter bookkeeping."""

    decomposition: str
    rank: int
    out_channels: int
    in_channels: int
    kernel_size: Tuple[int, ...]
    out_modes: Tuple[Mode, ...]
    in_modes: Tuple[Mode, ...]
    kernel_modes: Tuple[Mode, ...]
    factors: Tuple[Factor, ...]

    @property
    def spatial(self) -> bool:
        return bool(self.kernel_modes)

    @property
    def out_letters(self) -> str:
        return "".join(m.letter for m in self.out_modes)

    @property
    def in_letters(self) -> str:
        return "".join(m.letter for m in self.in_modes)

    @property
    def spatial_letters(self) -> str:
        return "".join(m.letter for m in self.kernel_modes)

    @property
    def kernel_letters(self) -> str:
        """Letters of the reconstructed kernel: out modes, in modes, spatial modes."""
        return self.out_letters + self.in_letters + self.spatial_letters

    @property
    def equation(self) -> str:
        """``zoo.conv_einsum`` equation of the layer: input (batch, in modes, H, W), factors -> output."""
        sp = self.spatial_letters
        lhs = ",".join([BATCH + self.in_letters + sp] + [f.letters for f in self.factors])
        eq = f"{lhs}->{BATCH}{self.out_letters}{sp}"
        return f"{eq}|{sp}" if sp else eq

    @property
    def pointwise_equation(self) -> str:
        """Equation of a 1x1 convolution by a network without kernel modes: H, W are batch letters."""
        if self.kernel_modes:
            raise ValueError("pointwise_equation is for networks without kernel modes")
        lhs = ",".join([BATCH + self.in_letters + SPATIAL] + [f.letters for f in self.factors])
        return f"{lhs}->{BATCH}{self.out_letters}{SPATIAL}"

    @property
    def kernel_equation(self) -> str:
        """Plain einsum equation: factors -> kernel (out modes, in modes, spatial modes)."""
        return ",".join(f.letters for f in self.factors) + "->" + self.kernel_letters

    @property
    def bond_letters(self) -> str:
        external = set(self.kernel_letters)
        seen: List[str] = []
        for f in self.factors:
            for c in f.letters:
                if c not in external and c not in seen:
                    seen.append(c)
        return "".join(seen)

    @property
    def params(self) -> int:
        """Number of factor parameters (bias excluded)."""
        return sum(f.numel for f in self.factors)

    @property
    def dense_params(self) -> int:
        """Parameters of the dense kernel this network replaces (bias excluded)."""
        return self.out_channels * self.in_channels * prod(self.kernel_size)

    @property
    def rate(self) -> float:
        return self.params / self.dense_params

    def init_std(self, gain: float = math.sqrt(2.0)) -> float:
        """Std of every factor so that the reconstructed kernel has variance ``gain**2 / fan_in``.

        For i.i.d. zero-mean factors the kernel variance is ``prod(bond sizes) * prod(std_i**2)``.
        """
        fan_in = self.in_channels * prod(self.kernel_size)
        sizes = {m.letter: m.size for f in self.factors for m in f.modes}
        bonds = prod(sizes[c] for c in self.bond_letters)
        target = gain**2 / fan_in
        return (target / bonds) ** (1.0 / (2 * len(self.factors)))


def make_layout(out_channels: int, in_channels: int, kernel_size: Sequence[int], m: int) -> Layout:
    """Letters and sizes for a layer whose channels are split into ``m`` balanced modes."""
    free = list(_POOL)
    out = tuple(Mode(free.pop(0), s) for s in balanced_factors(out_channels, m))
    inn = tuple(Mode(free.pop(0), s) for s in balanced_factors(in_channels, m))
    kernel = tuple(Mode(c, int(k)) for c, k in zip(SPATIAL, kernel_size)) if kernel_size else ()
    return Layout(out=out, inn=inn, kernel=kernel, _free=free)


def build_network(
    decomposition: Decomposition,
    out_channels: int,
    in_channels: int,
    kernel_size: Sequence[int],
    rank: int,
    m: Optional[int] = None,
) -> TensorNetwork:
    """The tensor network of ``decomposition`` at ``rank`` for one layer.

    Args:
        kernel_size: ``(kh, kw)`` for a convolution, ``()`` for a linear layer.
        m: number of channel modes (reshaped decompositions only; default ``decomposition.default_m``).
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if len(kernel_size) not in (0, 2):
        raise ValueError(f"kernel_size must be () or (kh, kw), got {tuple(kernel_size)}")
    if decomposition.reshaped:
        m = decomposition.default_m if m is None else m
    else:
        m = 1
    layout = make_layout(out_channels, in_channels, kernel_size, m)
    factors = tuple(decomposition.factors(layout, rank))
    _check_factors(decomposition, layout, factors)
    return TensorNetwork(
        decomposition=decomposition.name,
        rank=rank,
        out_channels=out_channels,
        in_channels=in_channels,
        kernel_size=tuple(int(k) for k in kernel_size),
        out_modes=layout.out,
        in_modes=layout.inn,
        kernel_modes=layout.kernel,
        factors=factors,
    )


def _check_factors(dec: Decomposition, layout: Layout, factors: Sequence[Factor]) -> None:
    if not factors:
        raise ValueError(f"decomposition {dec.name!r} returned no factors")
    external = {m.letter for m in layout.out + layout.inn + layout.kernel}
    count: dict[str, int] = {}
    for f in factors:
        for c in f.letters:
            count[c] = count.get(c, 0) + 1
    missing = external - set(count)
    if missing:
        raise ValueError(f"decomposition {dec.name!r} leaves layer modes {sorted(missing)} unconnected")
    dangling = [c for c, n in count.items() if c not in external and n < 2]
    if dangling:
        raise ValueError(f"decomposition {dec.name!r} has bond letters {dangling} used by a single factor")
