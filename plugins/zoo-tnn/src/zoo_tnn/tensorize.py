"""Replace the convolutions and linear layers of any CNN by tensorial layers at a target rate.

Following Section 2.7.1, every layer gets the same rate (its largest rank whose parameter count
does not exceed ``rate * dense``), and the first convolution and the classifier stay dense by
default. Grouped/depthwise convolutions stay dense unless the decomposition supports them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

from torch import nn

from zoo_tnn.decompositions import Decomposition, get_decomposition
from zoo_tnn.layers import TensorialConv2d, TensorialLinear, _Tensorial
from zoo_tnn.rank import InfeasibleRate, check_rate

ON_INFEASIBLE = ("rank1", "dense", "raise")


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
    fit_kwargs: Optional[Dict[str, Any]] = None,
) -> nn.Module:
    """Replace, in place, each ``nn.Conv2d`` (and ``nn.Linear`` if ``linear``) by its tensorial version.

    Args:
        decomposition: a name from :func:`zoo_tnn.list_decompositions` or a Decomposition.
        rate: target fraction of each layer's dense parameters (e.g. ``0.05``); or give ``rank``.
        m: channel modes of the reshaped decompositions (default 3).
        skip_first / skip_classifier: keep the first convolution / the classifier dense.
        exclude: glob patterns of module names to keep dense.
        init: ``"random"`` (training from scratch) or ``"decomp"`` (Layer-Decomp from the dense weights).
        on_infeasible: a layer whose rank-1 network exceeds the budget is given rank 1 (``"rank1"``),
            kept dense (``"dense"``) or reported as an error (``"raise"``).

    Returns the same model; ``model.tnn_layers`` lists a :class:`LayerRecord` per candidate layer.
    """
    dec = get_decomposition(decomposition)
    if (rate is None) == (rank is None):
        raise ValueError(f"give exactly one of rate or rank (got rate={rate!r}, rank={rank!r})")
    if rate is not None:
        rate = check_rate(rate)
    if on_infeasible not in ON_INFEASIBLE:
        raise ValueError(f"on_infeasible must be one of {ON_INFEASIBLE}, got {on_infeasible!r}")
    first = first_conv_name(model) if skip_first else None
    heads = set(classifier_names(model)) if skip_classifier else set()
    records: List[LayerRecord] = []
    targets = [(n, mod) for n, mod in model.named_modules()
               if isinstance(mod, (nn.Conv2d, nn.Linear)) and not isinstance(mod, _Tensorial)]
    for name, mod in targets:
        kind = "conv" if isinstance(mod, nn.Conv2d) else "linear"
        if kind == "linear" and not linear:
            continue
        dense = sum(p.numel() for p in mod.parameters(recurse=False))
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
        if reason:
            records.append(LayerRecord(name, kind, reason, dense, dense))
            continue
        cls = TensorialConv2d if kind == "conv" else TensorialLinear
        kw = dict(m=m, init=init, **(fit_kwargs or {}))
        status = "tensorized"
        try:
            new = cls.from_dense(mod, dec, rank=rank, rate=rate, **kw)  # type: ignore[arg-type]
        except InfeasibleRate:
            if on_infeasible == "raise":
                raise
            if on_infeasible == "dense":
                records.append(LayerRecord(name, kind, "dense:infeasible", dense, dense))
                continue
            new = cls.from_dense(mod, dec, rank=1, **kw)  # type: ignore[arg-type]
            status = "rank1"
        _replace(model, name, new)
        records.append(LayerRecord(name, kind, status, dense, new.params, new.rank, getattr(new, "fit_error", None)))
    model.tnn_layers = records  # type: ignore[assignment]
    model.tnn_config = {  # type: ignore[assignment]
        "decomposition": dec.name, "rate": rate, "rank": rank, "m": m, "skip_first": skip_first,
        "skip_classifier": skip_classifier, "exclude": list(exclude), "on_infeasible": on_infeasible,
    }
    return model


def compression_report(model: nn.Module) -> Dict[str, Any]:
    """Parameter accounting of a (tensorized) model.

    Returns ``params`` (all parameters), ``dense_params`` (the same model with every tensorial
    layer dense), ``rate`` (their ratio), ``tensorial_rate`` (over the tensorized layers only) and
    ``layers``: one dict per candidate layer (name, kind, status, rank, dense_params, params, rate).
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
        "rate": total / dense_total if dense_total else 1.0,
        "tensorial_params": t_params,
        "tensorial_dense_params": t_dense,
        "tensorial_rate": t_params / t_dense if t_dense else 1.0,
        "layers": layers,
    }
