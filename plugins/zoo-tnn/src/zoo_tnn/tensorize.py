"""Replace the convolutions and linear layers of any CNN by tensorial layers at a target rate.

Following Section 2.7.1, every layer gets the same rate (its largest rank whose parameter count
does not exceed ``rate * dense``), and the first convolution and the classifier stay dense by
default. Grouped/depthwise convolutions stay dense unless the decomposition supports them.

Two numbers describe a tensorised model (:func:`compression_report`): the *layer rate* (parameters of the
tensorised layers / their dense parameters, what ``rate`` asks for by default) and the *whole-model ratio* (all
parameters / the dense model's parameters; the layers kept dense, normalisation and biases count too). With
``rate_of="model"`` the ``rate`` is the whole-model ratio instead: one layer rate for every tensorised layer,
the largest whose model fits the budget (Chapter 3's compression rate: "the size of the TNN model is x % of the
original model size").
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from torch import nn

from zoo.errors import ZooError
from zoo_tnn.decompositions import Decomposition, build_network, get_decomposition
from zoo_tnn.layers import TensorialConv2d, TensorialLinear, _Tensorial
from zoo_tnn.rank import InfeasibleRate, check_rate, network_for_rate

ON_INFEASIBLE = ("rank1", "dense", "raise")
RATE_OF = ("layers", "model")
"""What ``tensorize``'s ``rate`` is a fraction of: each tensorised layer's dense parameters, or the whole model's."""
_BISECTION_STEPS = 48  # layer-rate bisection for rate_of="model": (0, 1] to ~4e-15


class InfeasibleModelRate(InfeasibleRate, ZooError):
    """``rate_of="model"``: the model cannot get down to ``rate`` of its dense parameters, even with every
    tensorised layer at rank 1 (what stays dense, normalisation and biases, is already over the budget)."""


@dataclass
class LayerRecord:
    """What happened to one layer: ``status`` is ``tensorized``, ``rank1`` (rate unreachable, rank 1
    used) or ``dense:<reason>`` (first, classifier, grouped, excluded, infeasible)."""

    name: str
    kind: str
    status: str
    dense_params: int
    params: int
    rank: Optional[int] = None
    fit_error: Optional[float] = None

    @property
    def rate(self) -> float:
        return self.params / self.dense_params if self.dense_params else 1.0


def _cfg_name(model: nn.Module, key: str) -> Optional[str]:
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and isinstance(cfg.get(key), str):
            return cfg[key]
    return None


def first_conv_name(model: nn.Module) -> Optional[str]:
    """The model's first convolution: ``pretrained_cfg['first_conv']`` if it names a module, else the
    first ``nn.Conv2d`` in module order."""
    mods = dict(model.named_modules())
    name = _cfg_name(model, "first_conv")
    if name in mods and isinstance(mods[name], nn.Conv2d):
        return name
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def classifier_names(model: nn.Module) -> List[str]:
    """Modules forming the classifier: ``get_classifier()`` (timm), ``pretrained_cfg['classifier']``,
    else the last ``nn.Linear``."""
    names: List[str] = []
    mods = dict(model.named_modules())
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        heads = head if isinstance(head, (tuple, list)) else [head]
        for h in heads:
            names += [n for n, m in mods.items() if m is h and n]
    cfg = _cfg_name(model, "classifier")
    if cfg in mods:
        names.append(cfg)
    if not names:
        lin = [n for n, m in mods.items() if isinstance(m, nn.Linear)]
        names += lin[-1:]
    # a classifier module may be a container (e.g. Sequential head): include its children
    out = set()
    for n in names:
        out.add(n)
        out.update(f"{n}.{c}" for c, _ in mods[n].named_modules() if c)
    return sorted(out)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True)
class _Candidate:
    """A convolution or linear layer ``tensorize`` looks at: ``reason`` says why it stays dense (None: it is
    tensorised); ``dense`` counts its parameters, bias included."""

    name: str
    module: nn.Module
    kind: str
    dense: int
    reason: Optional[str]

    @property
    def bias(self) -> int:
        bias = getattr(self.module, "bias", None)
        return 0 if bias is None else bias.numel()

    @property
    def network_shape(self) -> Tuple[int, int, Tuple[int, ...]]:
        """(out, in, kernel) of the tensor network the tensorial layer builds (a 1x1 convolution's has no
        kernel legs, as in :class:`TensorialConv2d`)."""
        mod = self.module
        if self.kind == "linear":
            return mod.out_features, mod.in_features, ()  # type: ignore[return-value]
        kernel = tuple(mod.kernel_size)  # type: ignore[union-attr]
        return mod.out_channels, mod.in_channels, () if kernel == (1, 1) else kernel  # type: ignore[return-value]


def _candidates(model: nn.Module, dec: Decomposition, skip_first: bool, skip_classifier: bool,
                exclude: Sequence[str], linear: bool) -> List[_Candidate]:
    """Every ``nn.Conv2d`` (and ``nn.Linear`` if ``linear``) of ``model`` with the reason it stays dense, if any."""
    first = first_conv_name(model) if skip_first else None
    heads = set(classifier_names(model)) if skip_classifier else set()
    out: List[_Candidate] = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.Linear)) or isinstance(mod, _Tensorial):
            continue
        kind = "conv" if isinstance(mod, nn.Conv2d) else "linear"
        if kind == "linear" and not linear:
            continue
        reason = None
        if name == first:
            reason = "dense:first"
        elif name in heads:
            reason = "dense:classifier"
        elif _matches(name, exclude):
            reason = "dense:excluded"
        elif kind == "conv" and mod.groups != 1 and not dec.supports_groups:  # type: ignore[union-attr]
            reason = f"dense:grouped(groups={mod.groups})"
        elif kind == "conv" and type(mod) is not nn.Conv2d:
            reason = f"dense:unsupported({type(mod).__name__})"
        out.append(_Candidate(name, mod, kind, sum(p.numel() for p in mod.parameters(recurse=False)), reason))
    return out


def _factor_params(dec: Decomposition, shape: Tuple[int, int, Tuple[int, ...]], layer_rate: float,
                   m: Optional[int]) -> int:
    """Factor parameters of a layer of ``shape`` at ``layer_rate`` (rank 1 when that rate is out of reach,
    as ``on_infeasible="rank1"`` builds it)."""
    try:
        return network_for_rate(dec, *shape, layer_rate, m).params
    except InfeasibleRate:
        return build_network(dec, *shape, 1, m).params


def _reasons(candidates: Sequence[_Candidate]) -> List[str]:
    """``"<count> <reason>"`` per reason a layer stays dense (e.g. ``"1 dense:classifier"``)."""
    counts = Counter(c.reason for c in candidates)
    return [f"{n} {reason}" for reason, n in sorted(counts.items())]


def _layer_rate_for_model(model: nn.Module, candidates: Sequence[_Candidate], dec: Decomposition, rate: float,
                         m: Optional[int]) -> float:
    """The largest layer rate at which ``model``, its tensorised ``candidates`` all at that rate, has at most
    ``rate`` of its dense parameters (bisection: the model's size is non-decreasing in the layer rate).

    Raises:
        InfeasibleModelRate: when even rank 1 everywhere leaves the model over ``rate``.
    """
    dense_total = sum(p.numel() for p in model.parameters())
    tensorised = [c for c in candidates if c.reason is None]
    shapes = Counter(c.network_shape for c in tensorised)
    kept = dense_total - sum(c.dense - c.bias for c in tensorised)  # what no factor replaces, biases included
    budget = rate * dense_total

    def size(layer_rate: float) -> int:
        return kept + sum(n * _factor_params(dec, shape, layer_rate, m) for shape, n in shapes.items())

    smallest = kept + sum(n * build_network(dec, *shape, 1, m).params for shape, n in shapes.items())
    if smallest > budget:
        dense_layers = [c for c in candidates if c.reason]
        hint = f"; {len(dense_layers)} conv/linear layers stay dense ({', '.join(_reasons(dense_layers))})" \
            if dense_layers else ""
        if any(c.reason in ("dense:first", "dense:classifier") for c in dense_layers):
            hint += (": tensorising the first conv and the classifier (skip_first=False, skip_classifier=False, as "
                     "the name suffix -all does) may bring it lower")
        raise InfeasibleModelRate(
            f"{dec.name} cannot bring this model to {100 * rate:g} % of its {dense_total} dense parameters (budget "
            f"{budget:.0f}): {kept} parameters are no factor's (normalisation, biases, layers kept dense) and the "
            f"{len(tensorised)} tensorised layers need {smallest - kept} more at rank 1, "
            f"{100 * smallest / dense_total:.4g} % of the dense model at the least; ask for at least that{hint}")
    if size(1.0) <= budget:
        return 1.0
    lo, hi = 0.0, 1.0  # size(lo) <= budget < size(hi); size(0+) is the all-rank-1 size
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid)
    return lo


def tensorize(
    model: nn.Module,
    decomposition: str | Decomposition,
    rate: Optional[float] = None,
    *,
    rank: Optional[int] = None,
    m: Optional[int] = None,
    skip_first: bool = True,
    skip_classifier: bool = True,
    exclude: Sequence[str] = (),
    linear: bool = True,
    init: str = "random",
    on_infeasible: str = "rank1",
    rate_of: str = "layers",
    fit_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """Replace, in place, each ``nn.Conv2d`` (and ``nn.Linear`` if ``linear``) by its tensorial version.

    Args:
        decomposition: a name from :func:`zoo_tnn.list_decompositions` or a Decomposition.
        rate: target fraction (e.g. ``0.05``) of each tensorised layer's dense parameters
            (``rate_of="layers"``) or of the whole dense model's (``rate_of="model"``: every tensorised layer
            gets the largest common layer rate that keeps the model within ``rate``); or give ``rank``.
        m: channel modes of the reshaped decompositions (default 3).
        skip_first / skip_classifier: keep the first convolution / the classifier dense.
        exclude: glob patterns of module names to keep dense.
        init: ``"random"`` (training from scratch) or ``"decomp"`` (Layer-Decomp from the dense weights).
        on_infeasible: a layer whose rank-1 network exceeds the budget is given rank 1 (``"rank1"``),
            kept dense (``"dense"``; not with ``rate_of="model"``) or reported as an error (``"raise"``).

    Returns the same model; ``model.tnn_layers`` lists a :class:`LayerRecord` per candidate layer and
    ``model.tnn_config`` the options, with ``layer_rate``, the rate every tensorised layer was built for.
    """
    dec = get_decomposition(decomposition)
    if (rate is None) == (rank is None):
        raise ValueError(f"give exactly one of rate or rank (got rate={rate!r}, rank={rank!r})")
    if rate is not None:
        rate = check_rate(rate)
    if on_infeasible not in ON_INFEASIBLE:
        raise ValueError(f"on_infeasible must be one of {ON_INFEASIBLE}, got {on_infeasible!r}")
    if rate_of not in RATE_OF:
        raise ValueError(f"rate_of must be one of {RATE_OF} (what rate is a fraction of), got {rate_of!r}")
    if rate_of == "model" and (rank is not None or on_infeasible == "dense"):
        raise ValueError(f"rate_of='model' needs a rate, not a rank, and on_infeasible 'rank1' or 'raise' (a layer "
                         f"kept dense would break the budget); got rank={rank!r}, on_infeasible={on_infeasible!r}")
    candidates = _candidates(model, dec, skip_first, skip_classifier, exclude, linear)
    layer_rate = rate
    if rate_of == "model":
        layer_rate = _layer_rate_for_model(model, candidates, dec, rate, m)  # type: ignore[arg-type]
    records = [_tensorize_one(model, c, dec, layer_rate, rank, m, init, on_infeasible, fit_kwargs)
               for c in candidates]
    model.tnn_layers = records  # type: ignore[assignment]
    model.tnn_config = {  # type: ignore[assignment]
        "decomposition": dec.name, "rate": rate, "rate_of": rate_of, "layer_rate": layer_rate, "rank": rank, "m": m,
        "skip_first": skip_first, "skip_classifier": skip_classifier, "exclude": list(exclude),
        "on_infeasible": on_infeasible,
    }
    return model


def _tensorize_one(model: nn.Module, c: _Candidate, dec: Decomposition, rate: Optional[float],
                   rank: Optional[int], m: Optional[int], init: str, on_infeasible: str,
                   fit_kwargs: Optional[Dict[str, Any]]) -> LayerRecord:
    """Replace the candidate layer ``c`` in ``model`` (unless it stays dense) and say what happened to it."""
    if c.reason:
        return LayerRecord(c.name, c.kind, c.reason, c.dense, c.dense)
    cls = TensorialConv2d if c.kind == "conv" else TensorialLinear
    kw = dict(m=m, init=init, **(fit_kwargs or {}))
    status = "tensorized"
    try:
        new = cls.from_dense(c.module, dec, rank=rank, rate=rate, **kw)  # type: ignore[arg-type]
    except InfeasibleRate:
        if on_infeasible == "raise":
            raise
        if on_infeasible == "dense":
            return LayerRecord(c.name, c.kind, "dense:infeasible", c.dense, c.dense)
        new = cls.from_dense(c.module, dec, rank=1, **kw)  # type: ignore[arg-type]
        status = "rank1"
    _replace(model, c.name, new)
    return LayerRecord(c.name, c.kind, status, c.dense, new.params, new.rank, getattr(new, "fit_error", None))


def compression_report(model: nn.Module) -> Dict[str, Any]:
    """Parameter accounting of a (tensorized) model (parameter counts include biases).

    Returns ``params`` (all parameters), ``dense_params`` (the same model with every tensorial layer dense: the
    dense backbone), ``whole_model_ratio`` (``params / dense_params``), ``tensorial_params`` and
    ``tensorial_dense_params`` (the tensorised layers and the dense layers they replace), ``layer_rate`` (their
    ratio) and ``layers``: one dict per candidate layer (name, kind, status, rank, dense_params, params, rate).
    """
    tensorial = {n: mod for n, mod in model.named_modules() if isinstance(mod, _Tensorial)}
    total = sum(p.numel() for p in model.parameters())
    t_params = sum(mod.params for mod in tensorial.values())
    t_dense = sum(mod.dense_params for mod in tensorial.values())
    dense_total = total - t_params + t_dense
    records = getattr(model, "tnn_layers", None)
    if records is None:
        records = [LayerRecord(n, "conv" if isinstance(mod, TensorialConv2d) else "linear", "tensorized",
                               mod.dense_params, mod.params, mod.rank) for n, mod in tensorial.items()]
    layers = []
    for r in records:
        row = asdict(r)
        row["rate"] = r.rate
        layers.append(row)
    return {
        "params": total,
        "dense_params": dense_total,
        "whole_model_ratio": total / dense_total if dense_total else 1.0,
        "tensorial_params": t_params,
        "tensorial_dense_params": t_dense,
        "layer_rate": t_params / t_dense if t_dense else 1.0,
        "layers": layers,
    }
