"""Tensorial layers: a dense kernel replaced by the factors of a tensor network.

The forward pass of every decomposition is the same line: a ``zoo.conv_einsum_expression`` of
``network.equation`` compiled for the input reshaped to its channel modes, called with that input and the
factors. Nothing here depends on which decomposition it is.

Evaluation order, per input shape (the layer holds one compiled expression per shape and mode):

- training, or whenever a gradient is needed: the FLOP-optimal factorised path, or "reconstruct first"
  (merge the factors into the dense kernel, then one convolution) when the factorised path needs at least
  ``path_ratio`` times reconstruct-first's multiply-adds (forward + both backward products). Both costs scale
  differently with the batch (the rebuild does not shrink with it), so small batches tend to rebuild.
- inference (``eval()`` and no gradient needed: ``torch.no_grad()``, ``torch.inference_mode()`` or frozen
  factors): the factorised path, costed forward only, or a dense convolution with the kernel rebuilt once and
  cached, whichever is cheaper (the factorised path needs under ``inference_ratio`` = ``path_ratio`` / 2 times the
  dense convolution's multiply-adds). The cached kernel is rebuilt when any factor changes (its storage or version
  counter: an optimizer step, an in-place edit, ``load_state_dict``), after ``to()`` / ``cuda()`` / ``half()``,
  and dropped by ``train()``.
- ``optimize="measure"`` (opt-in; also what "auto" does while ``zoo.conv_einsum.set_autotune(True)`` is on): in
  training the order is timed instead of costed -- conv_einsum's candidates (the path "auto" picks,
  reconstruct-first as "dense-first", the cheapest other trees by multiply-adds), forward + backward, once per
  input shape when the plan is made, the fastest path fixed in the expression. Per batch size, on this machine;
  it costs about twenty training steps' worth of time on the first step of each new shape (ResNet-50 at batch 4),
  and the winner can change with the machine's load, so it is not the default. In inference the choice between
  the cached kernel and the factorised path stays the multiply-add one; only the factorised path's order is timed.

Under ``torch.compile`` the choice is made outside the traced region: ``_traced_plan_key`` is marked
``torch._dynamo.assume_constant_result``, so dynamo calls it once per input shape and mode while tracing (planning
runs in plain Python, on the shape alone) and bakes the chosen expression into the graph, with no graph break. The
graph is guarded on what the choice depends on (the layer, the input's shape, dtype and device, ``training``, grad
mode, the factors' ``requires_grad``, autotuning, ``path_ratio``). A "dense" choice rebuilds the kernel inside the
graph on every call instead of reading the cached one (the cache's storage / version bookkeeping is eager-only).
Shapes must be static in the trace (``torch.compile(..., dynamic=False)``): a plan is made for one shape, and with a
symbolic batch size (automatic dynamic shapes, after a second batch size) the choice cannot be a constant, so dynamo
breaks the graph at each layer (results stay correct).
"""

from __future__ import annotations

from math import prod
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import opt_einsum
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.conv_einsum import ConvEinsumExpression, PathInfo, autotune_enabled, conv_einsum_expression, conv_einsum_path
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


INFERENCE_RATIO_SCALE = 0.5  # see _Tensorial.inference_ratio


class _Choice:
    """What a layer runs for one input shape: ``kind`` ("factorized", "reconstruct", "given": the compiled
    ``expression``; "dense": F.conv2d / F.linear with the cached kernel)."""

    __slots__ = ("kind", "expression")

    def __init__(self, kind: str, expression: Optional[ConvEinsumExpression]) -> None:
        self.kind, self.expression = kind, expression

    def __repr__(self) -> str:
        return f"_Choice({self.kind!r}, path={self.expression.path if self.expression is not None else None})"


@torch._dynamo.assume_constant_result
def _traced_plan_key(layer: "_Tensorial", shape: Tuple[int, ...], mode: Tuple[Any, ...], epoch: int) -> Tuple[Any, ...]:
    """The key of ``layer._plans`` for inputs of ``shape`` in ``mode``, its choice made if needed, as a constant of
    a torch.compile trace: dynamo calls this in plain Python while tracing (planning never enters the graph) and
    guards on the layer's identity; the arguments are read in the traced code, so the graph is also guarded on them
    (``epoch`` changes when the plans are dropped). The traced forward then reads the choice from ``_plans`` (an
    object reached from the layer, so dynamo can call it and guard on it). In eager mode an ordinary call."""
    return layer._plan_key(shape, mode)


RENAMED_FACTORS = {"in": "input"}
"""Factor names of earlier versions: ``in`` (CP's and SVD's input factor) is a Python keyword, which
``torch.export``'s generated module code cannot use as an attribute."""


def _renamed_factor_keys(module: nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """Load state dicts saved with an earlier factor name (:data:`RENAMED_FACTORS`) under the current one."""
    for old, new in RENAMED_FACTORS.items():
        key = f"{prefix}factors.{old}"
        if key in state_dict and f"{prefix}factors.{new}" not in state_dict:
            state_dict[f"{prefix}factors.{new}"] = state_dict.pop(key)


def _forget_dense_kernel(module: "_Tensorial", incompatible_keys: Any = None) -> None:
    """Drop the cached inference kernel (a load_state_dict post-hook; a module-level function so that a layer
    pickles)."""
    module.__dict__["_dense_kernel"] = None


class _Tensorial(nn.Module):
    """Shared parts: the factor parameters, their initialisation, the dense reconstruction, and the choice of
    evaluation per input shape (the compiled expressions and the cached inference kernel)."""

    network: TensorNetwork

    def __init__(self) -> None:
        super().__init__()
        # (input shape, _mode()) -> what forward runs for it
        self._plans: Dict[Tuple[Any, ...], "_Choice"] = {}
        self._path_costs: Dict[Tuple[int, ...], Dict[str, Any]] = {}
        self._inference_costs: Dict[Tuple[int, ...], Dict[str, Any]] = {}
        self._dense_kernel: Optional[Tuple[Tuple[Any, ...], Tensor]] = None
        self._plan_epoch = 0  # bumped when the plans are dropped (a compiled graph is guarded on it)
        self.register_load_state_dict_post_hook(_forget_dense_kernel)
        self.register_load_state_dict_pre_hook(_renamed_factor_keys)

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

    # ---- caches: invalidation ------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> "_Tensorial":
        if mode:
            _forget_dense_kernel(self)
        return super().train(mode)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "_Tensorial":
        _forget_dense_kernel(self)  # to() / cuda() / half(): new storages (a freed pointer may be reused)
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> Dict[str, Any]:
        # copies and pickles carry no compiled expressions or cached kernel (rebuilt on the next call)
        state = self.__dict__.copy()
        state["_plans"], state["_dense_kernel"] = {}, None
        return state

    # ---- choosing the evaluation ---------------------------------------------------------------------------

    def _infers(self) -> bool:
        """Inference: eval mode and no gradient needed for the factors."""
        if self.training:
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self._factor_tensors()))

    def _factor_tensors(self) -> Tuple[Tensor, ...]:
        """The factor parameters in network order (as ``factor_list``, without a module lookup per factor)."""
        params = self.factors._parameters
        return tuple(params[f.name] for f in self.network.factors)  # type: ignore[misc]

    def _mode(self) -> Tuple[Any, ...]:
        """("infer", measures) or ("train", measures, checkpoint): the part of a plan's key besides the input shape;
        ``measures``: the order is timed (``optimize="measure"``, or "auto" while conv_einsum's autotuning is on)."""
        measures = self.optimize == "measure" or (self.optimize == "auto" and autotune_enabled())
        if self._infers():
            return ("infer", measures)
        return ("train", measures, bool(getattr(self, "checkpoint", False)))

    def _choice(self, x: Tensor) -> "_Choice":
        """What forward runs for ``x``: the plan lookup in eager mode; under ``torch.compile`` a constant of the trace
        (``_traced_plan_key``, called by dynamo outside the graph, once per shape and mode)."""
        if torch.compiler.is_compiling():
            key = _traced_plan_key(self, tuple(x.shape), self._mode(), getattr(self, "_plan_epoch", 0))
            return self._plans[key]
        return self._choice_for(x)

    def _choice_for(self, x: Tensor) -> "_Choice":
        """What forward runs for the input ``x`` in the current mode (made on the first call per shape and mode)."""
        mode = self._mode()
        got = self._plans.get((x.shape, mode))  # a torch.Size hashes and compares as the tuple of the key
        return got if got is not None else self._plans[self._plan_key(x.shape, mode)]

    def _plan_key(self, shape: Sequence[int], mode: Tuple[Any, ...]) -> Tuple[Any, ...]:
        """The key of ``_plans`` for inputs of ``shape`` in ``mode``, the choice made if it is not there yet."""
        key = (tuple(int(n) for n in shape), mode)
        if key not in self._plans:
            self._plans[key] = self._choose(torch.empty(key[0], device="meta"), mode)
        return key

    def _choose(self, x: Tensor, mode: Tuple[Any, ...]) -> "_Choice":
        """The evaluation for inputs shaped as ``x`` (only its shape is read: a meta tensor will do)."""
        xp, geometry = self._prepare_input(x)
        x_shape = self._modes_shape(xp)
        eq = self._equation
        shapes = [x_shape] + [f.shape for f in self.network.factors]
        opts = dict(geometry, checkpoint=mode[0] == "train" and mode[2])
        if self.optimize not in ("auto", "measure"):
            return _Choice("given", conv_einsum_expression(eq, *shapes, optimize=self.optimize, **opts))
        measures = mode[1]
        if mode[0] == "infer":
            return self._choose_inference(x, shapes, opts, measures)
        rec = conv_einsum_expression(eq, *shapes, optimize=_reconstruct_first_path(self.network), **opts)
        r_cost = rec.info.opt_cost  # type: ignore[union-attr]
        if measures:
            timed, info = self._measured_expression(eq, shapes, opts, True)
            (f_cost,) = [m.cost for m in info.measured if "flop-optimal" in m.label.split("+")]
            self._path_costs[shapes[0]] = {"factorized": f_cost, "reconstruct": r_cost, "chosen": "measured",
                                           "measured": timed.info.opt_cost,  # type: ignore[union-attr]
                                           "seconds": {m.label: m.seconds for m in info.measured}}
            return _Choice("measured", timed)
        fact = conv_einsum_expression(eq, *shapes, optimize="auto", **opts)
        f_cost = fact.info.opt_cost  # type: ignore[union-attr]
        factorized = f_cost < self.path_ratio * r_cost
        self._path_costs[shapes[0]] = {"factorized": f_cost, "reconstruct": r_cost,
                                       "chosen": "factorized" if factorized else "reconstruct"}
        return _Choice("factorized", fact) if factorized else _Choice("reconstruct", rec)

    def _choose_inference(self, x: Tensor, shapes: List[Tuple[int, ...]], opts: Dict[str, Any],
                          measures: bool) -> "_Choice":
        """Inference: the factorised path (forward multiply-adds) or the dense convolution with the cached kernel,
        whichever is cheaper; a measuring layer costs the factorised path by the DP optimum (what a timed path
        stands in for) and times its order, forward only."""
        eq, opts = self._equation, dict(opts, backward=False)
        costed = conv_einsum_expression(eq, *shapes, optimize="optimal" if measures and len(shapes) <= 12 else
                                        "greedy" if measures else "auto", **opts)
        dense = self._dense_macs(x)
        cost = costed.info.opt_forward  # type: ignore[union-attr]
        factorized = cost < self.inference_ratio * dense
        self._inference_costs[shapes[0]] = {"factorized": cost, "dense": dense,
                                            "chosen": "factorized" if factorized else "dense"}
        if not factorized:
            return _Choice("dense", None)
        if measures:
            return _Choice("factorized", self._measured_expression(eq, shapes, opts, False)[0])
        return _Choice("factorized", costed)

    def _measured_expression(self, eq: str, shapes: List[Tuple[int, ...]], opts: Dict[str, Any],
                             train: bool) -> Tuple[ConvEinsumExpression, PathInfo]:
        """An expression on the path that ran fastest here for operands of ``shapes`` (``optimize="measure"``:
        conv_einsum times its candidates -- the FLOP-optimal path, reconstruct-first ("dense-first"), the cheapest
        other trees -- on zero inputs and detached copies of the factors, forward + backward to every operand when
        ``train``, forward only otherwise), and the PathInfo listing every candidate's cost and best time in seconds
        (``measured``; see ``zoo.conv_einsum.measure``). The path is fixed in the expression, so calling it measures nothing (and a
        torch.compile trace sees an ordinary path)."""
        factors = [p.detach() for p in self._factor_tensors()]
        with torch.enable_grad() if train else torch.no_grad():
            path, info = conv_einsum_path(eq, shapes[0], *[f.requires_grad_(train) for f in factors],
                                          optimize="measure", **opts)
        return conv_einsum_expression(eq, *shapes, optimize=path, **opts), info

    def _modes_shape(self, x: Tensor) -> Tuple[int, ...]:
        """The shape of ``x`` (as ``_prepare_input`` returns it) with its channels split into the input modes."""
        return (x.shape[0], *(m.size for m in self.network.in_modes), *x.shape[2:])

    def _dense_weight(self) -> Tensor:
        """The dense kernel, rebuilt only when a factor changed (storage, version, dtype or device)."""
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self._factor_tensors())
        cached = self._dense_kernel
        if cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor even under inference_mode
                weight = self.weight.contiguous()
            cached = self._dense_kernel = (key, weight)
        return cached[1]

    @property
    def path_ratio(self) -> float:
        """Keep the factorised path only below this fraction of the multiply-adds of the alternative
        (reconstruct-first in training, the cached dense kernel in inference): the decomposition's
        ``path_ratio`` (0.5; 0.2 for mCP and mTR, measured in benchmarks/tnn.md), unless set on the layer."""
        return self.__dict__.get("_path_ratio", get_decomposition(self.decomposition).path_ratio)

    @path_ratio.setter
    def path_ratio(self, value: float) -> None:
        self.__dict__["_path_ratio"] = float(value)
        self._plans.clear()
        self._plan_epoch = getattr(self, "_plan_epoch", 0) + 1
        self._path_costs.clear()
        self._inference_costs.clear()

    @property
    def inference_ratio(self) -> float:
        """In inference the factorised path runs only below this fraction of the dense convolution's
        multiply-adds: ``path_ratio`` x INFERENCE_RATIO_SCALE. The alternative there is a plain dense convolution
        at its full per-MAC efficiency, not reconstruct-first with its rebuild: reshaped TT at 1 % (factorised
        paths with 0.46x the dense MACs) ran 1.27x dense at batch 8 with ``path_ratio`` alone
        (benchmarks/tnn_inference.md)."""
        return self.path_ratio * INFERENCE_RATIO_SCALE

    @property
    def path_costs(self) -> Dict[Tuple[int, ...], Dict[str, Any]]:
        """Per reshaped input shape seen by ``forward`` in training (``optimize="auto"`` or ``"measure"``, autotune
        off): multiply-adds, forward + both backward products, of the FLOP-optimal factorised path and of
        reconstruct-first, and which one the layer runs ("chosen"). With ``"measure"``, chosen is "measured": the
        path timed fastest ("measured": its multiply-adds; "seconds": every candidate's best forward + backward
        time, by conv_einsum's candidate label)."""
        return self._path_costs

    @property
    def inference_costs(self) -> Dict[Tuple[int, ...], Dict[str, Any]]:
        """Per reshaped input shape seen by ``forward`` in inference: forward multiply-adds of the factorised
        path and of the dense convolution with the cached kernel, and which one the layer runs."""
        return self._inference_costs

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
        choice = self._choice(x)
        if choice.expression is None:
            return self._dense_forward(x)
        xp, _ = self._prepare_input(x)
        y = choice.expression(xp.reshape(self._modes_shape(xp)), *self._factor_tensors())
        y = y.reshape(x.shape[0], self.out_channels, y.shape[-2], y.shape[-1])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def _explicit_pads(self) -> Tuple[int, int, int, int]:
        """(left, right, top, bottom) padding as F.pad takes it (for padding modes conv_einsum / F.conv2d lack)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            span = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)]
            (ht, hb), (wl, wr) = [((s - 1) // 2, s - 1 - (s - 1) // 2) for s in span]
        else:
            (ht, hb), (wl, wr) = [(p, p) for p in self.padding]  # type: ignore[union-attr]
        return (wl, wr, ht, hb)

    def _prepare_input(self, x: Tensor) -> Tuple[Tensor, Dict[str, Any]]:
        """The input as conv_einsum reads it and the geometry options of the expression."""
        padding: Any = self.padding
        mode = self.padding_mode
        if self.pointwise:
            # a 1x1 kernel: padding and stride are a pad and a slice of the input, then a channel contraction
            if isinstance(padding, tuple) and any(padding):
                x = F.pad(x, self._explicit_pads(), mode="constant" if mode == "zeros" else mode)
            if self.stride != (1, 1):
                x = x[:, :, :: self.stride[0], :: self.stride[1]]
            return x, {}
        # conv_einsum takes the first operand carrying a conv letter (our input) as the data, whatever the
        # sizes, so a feature map smaller than the kernel needs nothing special; it has no reflect/replicate.
        if mode in ("reflect", "replicate") and padding != "valid":
            x = F.pad(x, self._explicit_pads(), mode=mode)
            padding, mode = 0, "zeros"
        elif isinstance(padding, tuple):
            padding = {"h": padding[0], "w": padding[1]}
        return x, dict(stride={"h": self.stride[0], "w": self.stride[1]}, padding=padding,
                       dilation={"h": self.dilation[0], "w": self.dilation[1]}, padding_mode=mode)

    def _dense_macs(self, x: Tensor) -> int:
        """Forward multiply-adds of the dense convolution on ``x`` (as ``to_dense()`` would run it)."""
        wl, wr, ht, hb = self._explicit_pads()
        out = [(n + p - d * (k - 1) - 1) // s + 1 for n, p, k, s, d in
               zip(x.shape[2:], (ht + hb, wl + wr), self.kernel_size, self.stride, self.dilation)]
        return x.shape[0] * out[0] * out[1] * self.out_channels * self.in_channels * prod(self.kernel_size)

    def _dense_forward(self, x: Tensor) -> Tensor:
        """F.conv2d with the cached dense kernel (inference), exactly as ``to_dense()`` runs."""
        # traced: the kernel is rebuilt in the graph (the cache is keyed on storages and version counters)
        weight = self.weight if torch.compiler.is_compiling() else self._dense_weight()
        padding: Any = self.padding
        if self.padding_mode != "zeros" and padding != "valid":
            x = F.pad(x, self._explicit_pads(), mode=self.padding_mode)
            padding = 0
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation)

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
        choice = self._choice(x)
        if choice.expression is None:
            return F.linear(x, self.weight if torch.compiler.is_compiling() else self._dense_weight(), self.bias)
        lead = x.shape[:-1]
        y = choice.expression(x.reshape(self._modes_shape(x)), *self._factor_tensors())
        y = y.reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y

    def _prepare_input(self, x: Tensor) -> Tuple[Tensor, Dict[str, Any]]:
        return x, {}

    def _modes_shape(self, x: Tensor) -> Tuple[int, ...]:
        return (prod(x.shape[:-1]), *(m.size for m in self.network.in_modes))

    def _dense_macs(self, x: Tensor) -> int:
        return prod(x.shape[:-1]) * self.out_features * self.in_features

    def to_dense(self) -> nn.Linear:
        ref = self.factor_list()[0]
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin
