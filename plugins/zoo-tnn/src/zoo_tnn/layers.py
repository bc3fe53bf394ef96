"""Tensorial layers: a dense kernel replaced by the factors of a tensor network.

The forward pass of every decomposition is the same line: ``zoo.conv_einsum(network.equation,
input reshaped to its channel modes, *factors)``. Nothing here depends on which decomposition it is.
"""

from __future__ import annotations

from math import prod
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import opt_einsum
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.conv_einsum import conv_einsum, conv_einsum_path
from zoo.conv_einsum.measure import measures
from zoo_tnn.decompositions import Decomposition, TensorNetwork, build_network, get_decomposition
from zoo_tnn.rank import network_for_rate

IntPair = Union[int, Tuple[int, int]]


def _pair(v: IntPair, what: str) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ValueError(f"{what} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _select_network(
    decomposition: str | Decomposition,
    out_features: int,
    in_features: int,
    kernel_size: Sequence[int],
    rank: Optional[int],
    rate: Optional[float],
    m: Optional[int],
) -> TensorNetwork:
    if (rank is None) == (rate is None):
        raise ValueError(f"give exactly one of rank or rate (got rank={rank!r}, rate={rate!r})")
    dec = get_decomposition(decomposition)
    if rank is not None:
        return build_network(dec, out_features, in_features, kernel_size, int(rank), m)
    return network_for_rate(dec, out_features, in_features, kernel_size, float(rate), m)  # type: ignore[arg-type]


def _reconstruct_first_path(net: TensorNetwork) -> List[Tuple[int, ...]]:
    """A conv_einsum path that contracts the factors into the kernel (in opt_einsum's best order for
    the factors alone), then convolves the input (operand 0, untouched until the end) with it."""
    shapes = [f.shape for f in net.factors]
    if len(shapes) == 1:
        return [(0, 1)]
    sub, _ = opt_einsum.contract_path(net.kernel_equation, *shapes, shapes=True, optimize="optimal"
                                      if len(shapes) <= 6 else "greedy")
    return [tuple(i + 1 for i in step) for step in sub] + [(0, 1)]


class _Tensorial(nn.Module):
    """Shared parts: the factor parameters, their initialisation and the dense reconstruction."""

    network: TensorNetwork

    def _init_factors(self, device: Any, dtype: Any) -> None:
        self.factors = nn.ParameterDict(
            {f.name: nn.Parameter(torch.empty(f.shape, device=device, dtype=dtype)) for f in self.network.factors}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random factors whose reconstructed kernel has He variance ``2 / fan_in``; bias zero."""
        std = self.network.init_std()
        with torch.no_grad():
            for p in self.factors.values():
                p.normal_(0.0, std)
            if getattr(self, "bias", None) is not None:
                self.bias.zero_()

    def _path(self, x_shape: Tuple[int, ...], geometry: Dict[str, Any]) -> Any:
        """The contraction order for an input of ``x_shape`` (``optimize="auto"``), cached per shape.

        Either conv_einsum's FLOP-optimal sequence, or "reconstruct first": merge the factors into the
        dense kernel, then one convolution with the input. The factorised sequence is kept only when
        its cost (multiply-adds, forward + backward) is below ``path_ratio`` times the other's, since
        a single dense convolution runs several times more efficiently per multiply-add on CPU than
        a chain of einsum steps with large intermediates. With conv_einsum autotuning on
        (``zoo.conv_einsum.set_autotune(True)`` / ZOO_CONV_EINSUM_AUTOTUNE=1) the engine measures instead.
        """
        if measures("auto"):  # autotuning on: the engine times its candidates (dense-first included), caches the fastest
            return "auto"
        cache: Dict[Tuple[int, ...], Any] = self.__dict__.setdefault("_paths", {})
        if x_shape not in cache:
            shapes = [x_shape] + [f.shape for f in self.network.factors]
            merged = _reconstruct_first_path(self.network)
            eq = self._equation
            _, fact = conv_einsum_path(eq, *shapes, optimize="auto", **geometry)
            _, rec = conv_einsum_path(eq, *shapes, optimize=merged, **geometry)
            factorized = fact.opt_cost < self.path_ratio * rec.opt_cost
            cache[x_shape] = list(fact.path) if factorized else merged
            self.path_costs[x_shape] = {"factorized": fact.opt_cost, "reconstruct": rec.opt_cost,
                                        "chosen": "factorized" if factorized else "reconstruct"}
        return cache[x_shape]

    @property
    def path_ratio(self) -> float:
        """Keep the factorised path only below this fraction of reconstruct-first's multiply-adds: the
        decomposition's ``path_ratio`` (0.5; 0.2 for mCP and mTR, measured in benchmarks/tnn.md), unless set on
        the layer."""
        return self.__dict__.get("_path_ratio", get_decomposition(self.decomposition).path_ratio)

    @path_ratio.setter
    def path_ratio(self, value: float) -> None:
        self.__dict__["_path_ratio"] = float(value)
        self.__dict__.pop("_paths", None)
        self.__dict__.pop("_path_costs", None)

    @property
    def path_costs(self) -> Dict[Tuple[int, ...], Dict[str, Any]]:
        """Per reshaped input shape seen by ``forward`` (``optimize="auto"``, autotune off): multiply-adds,
        forward + both backward products, of the FLOP-optimal factorised path and of reconstruct-first, and
        which one the layer runs."""
        return self.__dict__.setdefault("_path_costs", {})

    @property
    def _equation(self) -> str:
        return self.network.pointwise_equation if getattr(self, "pointwise", False) else self.network.equation

    def factor_list(self) -> list[Tensor]:
        return [self.factors[f.name] for f in self.network.factors]

    def load_factors(self, tensors: Sequence[Tensor]) -> None:
        """Copy ``tensors`` (one per factor, in network order) into the parameters."""
        if len(tensors) != len(self.network.factors):
            raise ValueError(f"expected {len(self.network.factors)} factors, got {len(tensors)}")
        with torch.no_grad():
            for f, t in zip(self.network.factors, tensors):
                if tuple(t.shape) != f.shape:
                    raise ValueError(f"factor {f.name!r} expects shape {f.shape}, got {tuple(t.shape)}")
                self.factors[f.name].copy_(t)

    def _copy_from(self, weight: Tensor, bias: Optional[Tensor], init: str, fit_kwargs: Dict[str, Any]) -> None:
        if init not in ("random", "decomp"):
            raise ValueError(f"init must be 'random' or 'decomp', got {init!r}")
        if bias is not None:
            with torch.no_grad():
                self.bias.copy_(bias)  # type: ignore[union-attr]
        if init == "decomp":
            from zoo_tnn.fit import fit_network

            net = self.network
            target = weight.detach().reshape(net.out_channels, net.in_channels, *net.kernel_size)
            result = fit_network(net, target, **fit_kwargs)
            self.load_factors(result.factors)
            self.fit_error = result.relative_error

    def kernel_tensor(self) -> Tensor:
        """The reconstructed kernel with one axis per mode: (T_0..T_{m-1}, S_0..S_{m-1}[, kh, kw])."""
        return torch.einsum(self.network.kernel_equation, *self.factor_list())

    @property
    def decomposition(self) -> str:
        return self.network.decomposition

    @property
    def rank(self) -> int:
        return self.network.rank

    @property
    def dense_params(self) -> int:
        """Parameters of the dense layer this one replaces, bias included."""
        return self.network.dense_params + (0 if self.bias is None else self.bias.numel())

    @property
    def params(self) -> int:
        return self.network.params + (0 if self.bias is None else self.bias.numel())

    @property
    def rate(self) -> float:
        """Realised compression rate of the kernel (factor parameters / dense kernel parameters)."""
        return self.network.rate

    def extra_repr(self) -> str:
        return f"{self.network.decomposition}, rank={self.network.rank}, rate={self.network.rate:.4f}, modes=" + (
            f"{[m.size for m in self.network.out_modes]}x{[m.size for m in self.network.in_modes]}"
        )


class TensorialConv2d(_Tensorial):
    """A 2-D convolution whose kernel ``(T, S, kh, kw)`` is a tensor network.

    Input ``(B, S, H, W)``, output ``(B, T, H', W')`` with ``H'``, ``W'`` as ``nn.Conv2d``.
    Give exactly one of ``rank`` and ``rate`` (fraction of the dense kernel's parameters).
    ``m`` is the number of channel modes of the reshaped decompositions (default 3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Union[IntPair, str] = 0,
        dilation: IntPair = 1,
        bias: bool = True,
        decomposition: str | Decomposition = "mcp",
        rank: Optional[int] = None,
        rate: Optional[float] = None,
        m: Optional[int] = None,
        padding_mode: str = "zeros",
        optimize: Any = "auto",
        checkpoint: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if padding_mode not in ("zeros", "circular", "reflect", "replicate"):
            raise ValueError(f"padding_mode must be zeros|circular|reflect|replicate, got {padding_mode!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding string must be 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' needs stride 1 (as nn.Conv2d)")
            self.padding: Union[Tuple[int, int], str] = padding
        else:
            self.padding = _pair(padding, "padding")
        self.padding_mode = padding_mode
        self.optimize, self.checkpoint = optimize, checkpoint
        # a 1x1 convolution is a channel contraction: its network has no (size-1) kernel legs, which
        # would only add scalar factors and passes over the activations
        self.pointwise = self.kernel_size == (1, 1)
        kernel = () if self.pointwise else self.kernel_size
        self.network = _select_network(decomposition, self.out_channels, self.in_channels, kernel, rank, rate, m)
        self.bias = nn.Parameter(torch.empty(self.out_channels, device=device, dtype=dtype)) if bias else None
        self._init_factors(device, dtype)

    @classmethod
    def from_dense(
        cls,
        conv: nn.Conv2d,
        decomposition: str | Decomposition,
        rank: Optional[int] = None,
        rate: Optional[float] = None,
        m: Optional[int] = None,
        init: str = "random",
        **fit_kwargs: Any,
    ) -> "TensorialConv2d":
        """A tensorial copy of ``conv`` (stride, padding, dilation, padding mode, bias kept).

        init: ``"random"`` (He-scaled factors, bias copied) or ``"decomp"`` (Layer-Decomp: factors
        fitted to ``conv.weight`` with :func:`zoo_tnn.fit.fit_network`; ``fit_kwargs`` go there).
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1:
            dec = get_decomposition(decomposition)
            if not dec.supports_groups:
                raise ValueError(f"{dec.name} does not support grouped convolutions (groups={conv.groups})")
        w = conv.weight
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, bias=conv.bias is not None, decomposition=decomposition, rank=rank, rate=rate,
            m=m, padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype,
        )
        layer._copy_from(w, conv.bias, init, fit_kwargs)
        return layer

    @property
    def weight(self) -> Tensor:
        """The dense kernel ``(T, S, kh, kw)`` the factors represent."""
        return self.kernel_tensor().reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if self.pointwise:
            return self._forward_pointwise(x)
        padding: Any = self.padding
        mode = self.padding_mode
        # conv_einsum takes the first operand carrying a conv letter (our input) as the data, whatever the
        # sizes, so a feature map smaller than the kernel needs nothing special; it has no reflect/replicate.
        if mode in ("reflect", "replicate") and padding != "valid":
            if padding == "same":
                span = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)]
                (ht, hb), (wl, wr) = [((s - 1) // 2, s - 1 - (s - 1) // 2) for s in span]
            else:
                (ht, hb), (wl, wr) = [(p, p) for p in padding]
            x = F.pad(x, (wl, wr, ht, hb), mode="constant" if mode == "zeros" else mode)
            padding, mode = 0, "zeros"
        elif isinstance(padding, tuple):
            padding = {"h": padding[0], "w": padding[1]}
        net = self.network
        b, _, h, w = x.shape
        xm = x.reshape(b, *(m.size for m in net.in_modes), h, w)
        geometry = dict(stride={"h": self.stride[0], "w": self.stride[1]}, padding=padding,
                        dilation={"h": self.dilation[0], "w": self.dilation[1]}, padding_mode=mode)
        factors = self.factor_list()
        optimize = self._path(tuple(xm.shape), geometry) if self.optimize == "auto" else self.optimize
        y = conv_einsum(net.equation, xm, *factors, optimize=optimize, checkpoint=self.checkpoint, **geometry)
        y = y.reshape(b, self.out_channels, y.shape[-2], y.shape[-1])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def _forward_pointwise(self, x: Tensor) -> Tensor:
        if isinstance(self.padding, tuple) and any(self.padding):
            ph, pw = self.padding
            x = F.pad(x, (pw, pw, ph, ph), mode="constant" if self.padding_mode == "zeros" else self.padding_mode)
        if self.stride != (1, 1):
            x = x[:, :, :: self.stride[0], :: self.stride[1]]
        net = self.network
        b, _, h, w = x.shape
        xm = x.reshape(b, *(m.size for m in net.in_modes), h, w)
        optimize = self._path(tuple(xm.shape), {}) if self.optimize == "auto" else self.optimize
        y = conv_einsum(net.pointwise_equation, xm, *self.factor_list(), optimize=optimize, checkpoint=self.checkpoint)
        y = y.reshape(b, self.out_channels, h, w)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def to_dense(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` with the reconstructed kernel."""
        ref = self.factor_list()[0]
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
            bias=self.bias is not None, padding_mode=self.padding_mode, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(self.weight)
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv


class TensorialLinear(_Tensorial):
    """A linear layer whose weight ``(T, S)`` is a tensor network. Input ``(..., S)``, output ``(..., T)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        decomposition: str | Decomposition = "mcp",
        rank: Optional[int] = None,
        rate: Optional[float] = None,
        m: Optional[int] = None,
        optimize: Any = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.optimize = optimize
        self.network = _select_network(decomposition, self.out_features, self.in_features, (), rank, rate, m)
        self.bias = nn.Parameter(torch.empty(self.out_features, device=device, dtype=dtype)) if bias else None
        self._init_factors(device, dtype)

    @classmethod
    def from_dense(
        cls,
        linear: nn.Linear,
        decomposition: str | Decomposition,
        rank: Optional[int] = None,
        rate: Optional[float] = None,
        m: Optional[int] = None,
        init: str = "random",
        **fit_kwargs: Any,
    ) -> "TensorialLinear":
        """A tensorial copy of ``linear``; ``init`` as :meth:`TensorialConv2d.from_dense`."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
        w = linear.weight
        layer = cls(
            linear.in_features, linear.out_features, bias=linear.bias is not None, decomposition=decomposition,
            rank=rank, rate=rate, m=m, device=w.device, dtype=w.dtype,
        )
        layer._copy_from(w, linear.bias, init, fit_kwargs)
        return layer

    @property
    def weight(self) -> Tensor:
        """The dense weight ``(T, S)``."""
        return self.kernel_tensor().reshape(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected input (..., {self.in_features}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        net = self.network
        xm = x.reshape(prod(lead), *(m.size for m in net.in_modes))
        optimize = self._path(tuple(xm.shape), {}) if self.optimize == "auto" else self.optimize
        y = conv_einsum(net.equation, xm, *self.factor_list(), optimize=optimize)
        y = y.reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y

    def to_dense(self) -> nn.Linear:
        ref = self.factor_list()[0]
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin
