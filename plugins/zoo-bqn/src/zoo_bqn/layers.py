"""BQN layers: each propagates the distribution of its outputs sampling-free (``forward``, analytic inference)
and runs as a deterministic quantized layer given realised weights (``qnn``, for MAP / Monte-Carlo / export).

Weights hold categorical posteriors over a level set, parameterised in log space (``logits`` (..., D),
Q(w = Q_d) = softmax(logits)_d, section 5.2.4). Layers take and return :mod:`zoo_bqn.dist` objects.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, Optional

import torch
from torch import nn

from zoo_bqn import quantized as q
from zoo_bqn.contraction import clt_moments, direct_contraction, gaussian_quantize, mean_pmf
from zoo_bqn.dist import Categorical, CategoricalMean, Dist, Gaussian, categorical_moments, mean_var, moments, reshape
from zoo_bqn.levels import LevelSpec, make_levels, require_uniform

Realisation = Dict[nn.Module, torch.Tensor]
"""Level indices (int64, weight shape) of every weighted layer, keyed by the layer."""


class BayesWeighted(nn.Module):
    """Base of layers with categorical weights: ``logits`` (*storage_shape, D), Xavier-uniform initialised.

    ``storage_shape`` holds the weights in the order of ``weight_shape`` (same count), in at most 3 dimensions so
    that ``logits`` has rank <= 4 (``model.to(memory_format=torch.channels_last)`` converts rank-4 parameters and
    refuses rank-5 ones); the default is ``weight_shape`` itself."""

    def __init__(self, weight_shape: tuple, fan_in: int, fan_out: int, levels: LevelSpec,
                 storage_shape: Optional[tuple] = None) -> None:
        super().__init__()
        lv = make_levels(levels)
        self.level_values = tuple(lv.tolist())
        self.weight_shape = tuple(weight_shape)
        storage = tuple(storage_shape) if storage_shape is not None else self.weight_shape
        if math.prod(storage) != math.prod(self.weight_shape):
            raise ValueError(f"storage shape {storage} does not hold the weights {self.weight_shape}")
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        self.logits = nn.Parameter(torch.empty(*storage, lv.numel()).uniform_(-bound, bound))

    @property
    def levels(self) -> torch.Tensor:
        """Level set (D,) float64 on the CPU."""
        return torch.tensor(self.level_values, dtype=torch.float64)

    def probs(self) -> torch.Tensor:
        """Q(w = Q_d): (*weight_shape, D)."""
        return torch.softmax(self.logits, dim=-1).reshape(*self.weight_shape, -1)

    def weight_moments(self) -> tuple:
        """(E[w], E[w^2]) each of the weight shape."""
        return categorical_moments(self.probs(), self.level_values)

    def map_indices(self) -> torch.Tensor:
        """argmax_d Q(w = Q_d) (weight shape, int64)."""
        return self.logits.detach().argmax(-1).reshape(self.weight_shape)

    def sample_indices(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """One draw w ~ Q per weight, by inverse CDF (weight shape, int64)."""
        p = self.probs().detach()
        u = torch.rand(p.shape[:-1], generator=generator, dtype=p.dtype, device=p.device)
        cdf = p.cumsum(-1)[..., :-1]
        return (u.unsqueeze(-1) >= cdf).sum(-1)

    def weight_values(self, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Float weights for level indices ``idx``."""
        return self.levels.to(device=idx.device, dtype=dtype)[idx]

    def entropy_term(self) -> torch.Tensor:
        """R = sum_k E_Q[log p(w_k)] + H(Q_k) for a uniform prior p = 1/D, i.e. -KL(Q || uniform) (scalar)."""
        logp = torch.log_softmax(self.logits, dim=-1)
        d = self.logits.shape[-1]
        return -(logp.exp() * (logp + math.log(d))).sum()

    def num_weights(self) -> int:
        return math.prod(self.weight_shape)


class BayesLinear(BayesWeighted):
    """Linear layer with categorical weights (out, in), no bias; CLT propagation (large fan-in)."""

    def __init__(self, in_features: int, out_features: int, levels: LevelSpec = "binary") -> None:
        super().__init__((out_features, in_features), in_features, out_features, levels)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Dist) -> Gaussian:
        """x: units (B, in) -> Gaussian (B, out) with the exact mean and variance."""
        mean, second = moments(x)
        w_mean, w_second = self.weight_moments()
        return clt_moments(mean, second, w_mean.to(mean.dtype), w_second.to(mean.dtype), q.linear,
                           deterministic=isinstance(x, torch.Tensor))

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return q.linear(x, self.weight_values(weights[self], x.dtype))

    def export(self, weights: Realisation) -> nn.Module:
        return q.QLinear(weights[self], self.levels)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, levels={list(self.level_values)}"


class BayesConv2d(BayesWeighted):
    """Convolution with categorical weights (O, C, k, k), no bias; CLT propagation.

    ``logits`` are stored (O, C, k * k, D) (rank 4); a state dict in the earlier (O, C, k, k, D) layout loads too."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 levels: LevelSpec = "binary") -> None:
        k2 = kernel_size * kernel_size
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), in_channels * k2,
                         out_channels * k2, levels, storage_shape=(out_channels, in_channels, k2))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.register_load_state_dict_pre_hook(_flatten_kernel_logits)

    def _op(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return q.conv(h, w, self.stride, self.padding)

    def forward(self, x: Dist) -> Gaussian:
        """x: units (B, C, H, W) -> Gaussian (B, O, H', W')."""
        mean, second = moments(x)
        w_mean, w_second = self.weight_moments()
        return clt_moments(mean, second, w_mean.to(mean.dtype), w_second.to(mean.dtype), self._op,
                           deterministic=isinstance(x, torch.Tensor))

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return self._op(x, self.weight_values(weights[self], x.dtype))

    def export(self, weights: Realisation) -> nn.Module:
        return q.QConv2d(weights[self], self.levels, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, levels={list(self.level_values)}")


def _flatten_kernel_logits(module: BayesConv2d, state: Dict[str, torch.Tensor], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: (O, C, k, k, D) logits of the earlier layout -> the stored (O, C, k * k, D)."""
    key = prefix + "logits"
    if key in state and state[key].dim() == 5:
        state[key] = state[key].flatten(2, 3)


class ChannelMix(nn.Module):
    """A fixed (not trained) mix of the input channels, a bias-free 1 x 1 convolution: (B, in_chans, H, W) ->
    (B, out_chans, H, W) with ``weight`` (out_chans, in_chans, 1, 1), a buffer.

    The BQN's first layer reads ``out_chans`` channels; the mix is the identity for ``in_chans == out_chans`` and
    otherwise, as timm adapts a first convolution to other ``in_chans``, averages the inputs assigned to an output
    channel (input c feeds output c mod out_chans) or repeats input o mod in_chans into output o. It is the model's
    ``first_conv``: the zoo adapts a pretrained ``weight`` to another ``in_chans`` by timm's rule (a grey-trained
    mix is repeated and divided by in_chans, the channel mean), which categorical weights could not take exactly.
    """

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        if in_chans < 1 or out_chans < 1:
            raise ValueError(f"channel counts must be >= 1, got in_chans={in_chans}, out_chans={out_chans}")
        self.in_chans, self.out_chans = in_chans, out_chans
        weight = torch.zeros(out_chans, in_chans)
        if in_chans >= out_chans:
            for c in range(in_chans):
                weight[c % out_chans, c] = 1.0
        else:
            for o in range(out_chans):
                weight[o, o % in_chans] = 1.0
        weight = weight / weight.sum(1, keepdim=True)
        self.register_buffer("weight", weight.reshape(out_chans, in_chans, 1, 1))

    def is_identity(self) -> bool:
        """True when the mix passes its input through unchanged."""
        return self.in_chans == self.out_chans and bool(torch.equal(self.weight.flatten(1), torch.eye(
            self.out_chans, dtype=self.weight.dtype, device=self.weight.device)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_chans, H, W) real values -> (B, out_chans, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected (B, {self.in_chans}, H, W) images, got shape {tuple(x.shape)}")
        return torch.nn.functional.conv2d(x, self.weight.to(x.dtype))

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return self(x)

    def export(self, weights: Realisation) -> nn.Module:
        """The identity is dropped from the exported QNN; another mix is kept (its float32 weights)."""
        return nn.Identity() if self.is_identity() else copy.deepcopy(self)

    def nbytes(self) -> int:
        """Bytes of the weight stored as float32."""
        return self.weight.numel() * 4

    def extra_repr(self) -> str:
        return f"{self.in_chans}, {self.out_chans}, fixed"


class QuantAct(nn.Module):
    """Quantized activation h = q(z / scale) onto ``levels`` (sign for the binary default).

    Gaussian input: P(h = Q_i) = Phi((t_i - mu)/sigma) - Phi((t_{i-1} - mu)/sigma) (exact for Gaussian z);
    categorical input (a pooled one after its DFT): direct contraction with fan-in 1 (exact).
    """

    def __init__(self, levels: LevelSpec = "binary", scale: float = 1.0) -> None:
        super().__init__()
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"activation scale must be a positive finite number, got {scale}")
        self.level_values = tuple(make_levels(levels).tolist())
        self.scale = float(scale)

    @property
    def levels(self) -> torch.Tensor:
        return torch.tensor(self.level_values, dtype=torch.float64)

    def forward(self, x: Dist) -> Categorical:
        x = as_categorical(x)
        if isinstance(x, Gaussian):
            return Categorical(gaussian_quantize(x, self.levels, self.scale), self.levels)
        if isinstance(x, Categorical):
            return direct_contraction([x], lambda v: q.quantize(v, self.levels, self.scale))
        if isinstance(x, torch.Tensor):
            return Categorical(gaussian_quantize(Gaussian(x, torch.zeros_like(x)), self.levels, self.scale),
                               self.levels)
        raise TypeError(f"QuantAct expected a Tensor, Gaussian or Categorical, got {type(x).__name__}")

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return q.quantize(x, self.levels, self.scale)

    def export(self, weights: Realisation) -> nn.Module:
        return q.QAct(self.levels, self.scale)

    def extra_repr(self) -> str:
        return f"levels={list(self.level_values)}, scale={self.scale:g}"


class AvgPoolDFT(nn.Module):
    """Non-overlapping k x k average pooling; categorical inputs by DFT (medium fan-in k^2), exact.

    A categorical input gives a :class:`CategoricalMean` (B, C, H/k, W/k) with closed-form moments, all a following
    CLT layer reads; a layer that needs the pmf forms it from the k^2 window pmfs by DFT (:func:`as_categorical`).
    """

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size

    def _window_sum(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H//k, W//k): the sum over each k x k window (floor mode), as k^2 strided adds."""
        k = self.kernel_size
        h, w = t.shape[-2] // k * k, t.shape[-1] // k * k
        out = t[..., 0:h:k, 0:w:k]
        for i in range(k):
            for j in range(k):
                if i or j:
                    out = out + t[..., i:h:k, j:w:k]
        return out

    def _windows(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W, V) -> (B, C, H//k, W//k, k*k, V), cropping like floor-mode pooling; the copy is made
        support-first (each level's probabilities contiguous, see :class:`zoo_bqn.dist.Categorical`)."""
        k = self.kernel_size
        t = probs.movedim(-1, 0)
        v, b, c, h, w = t.shape
        t = t[..., : h // k * k, : w // k * k].reshape(v, b, c, h // k, k, w // k, k).transpose(4, 5)
        return t.reshape(v, b, c, h // k, w // k, k * k).movedim(0, -1)

    def forward(self, x: Dist) -> Dist:
        x = as_categorical(x)
        k2 = self.kernel_size ** 2
        if isinstance(x, Categorical):  # independent units: E[u] = mean of E[h_i], Var[u] = sum Var[h_i] / k^4
            require_uniform(x.levels, "AvgPoolDFT")
            mean, var = mean_var(x)
            probs = x.probs
            return CategoricalMean(self._window_sum(mean) / k2, self._window_sum(var) / (k2 * k2),
                                   lambda: self._windows(probs), x.levels)
        if isinstance(x, Gaussian):
            return Gaussian(q.avg_pool(x.mean, self.kernel_size), q.avg_pool(x.var, self.kernel_size) / k2)
        if isinstance(x, torch.Tensor):
            return q.avg_pool(x, self.kernel_size)
        raise TypeError(f"AvgPoolDFT expected a Tensor, Gaussian or Categorical, got {type(x).__name__}")

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return q.avg_pool(x, self.kernel_size)

    def export(self, weights: Realisation) -> nn.Module:
        return q.QAvgPool(self.kernel_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


class Residual(nn.Module):
    """Batch-norm-free shortcut x + body(x); two categoricals are added by direct contraction (fan-in 2).

    Mean-field: the two branches are treated as independent (as everywhere in the BQN).
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Dist) -> Dist:
        x = as_categorical(x)
        y = as_categorical(self.body(x))
        if isinstance(x, Categorical) and isinstance(y, Categorical):
            return direct_contraction([x, y], lambda a, b: a + b)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            return x + y
        (mx, vx), (my, vy) = mean_var(x), mean_var(y)
        return Gaussian(mx + my, vx + vy)

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return x + qnn_apply(self.body, x, weights)

    def export(self, weights: Realisation) -> nn.Module:
        return q.QResidual(export_module(self.body, weights))


class Flatten(nn.Module):
    """Flatten the units of each example: (B, ...) -> (B, prod(...))."""

    def forward(self, x: Dist) -> Dist:
        return reshape(x, (x.shape[0], -1))

    def qnn(self, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)

    def export(self, weights: Realisation) -> nn.Module:
        return nn.Flatten()


def as_categorical(x: Dist) -> Dist:
    """The pmf of a :class:`CategoricalMean` by DFT (:func:`mean_pmf`); any other input unchanged."""
    return mean_pmf(x) if isinstance(x, CategoricalMean) else x


def qnn_apply(module: nn.Module, x: torch.Tensor, weights: Realisation) -> torch.Tensor:
    """Run ``module`` (a BQN layer or an ``nn.Sequential`` of them) as a deterministic QNN."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = qnn_apply(layer, x, weights)
        return x
    if isinstance(module, nn.Identity):
        return x
    if not hasattr(module, "qnn"):
        raise TypeError(f"{type(module).__name__} is not a BQN layer (it has no qnn method)")
    return module.qnn(x, weights)


def export_module(module: nn.Module, weights: Realisation) -> nn.Module:
    """The deterministic packed counterpart of ``module`` for the realised ``weights``."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*[export_module(m, weights) for m in module])
    if isinstance(module, nn.Identity):
        return nn.Identity()
    if not hasattr(module, "export"):
        raise TypeError(f"{type(module).__name__} is not a BQN layer (it has no export method)")
    return module.export(weights)


def realise(module: nn.Module, mode: str, generator: Optional[torch.Generator] = None) -> Realisation:
    """Level indices of every weighted layer under ``module``: ``mode`` = "map" or "sample"."""
    if mode not in ("map", "sample"):
        raise ValueError(f"mode must be 'map' or 'sample', got {mode!r}")
    out: Realisation = {}
    for m in module.modules():
        if isinstance(m, BayesWeighted):
            out[m] = m.map_indices() if mode == "map" else m.sample_indices(generator)
    return out
