"""Model summaries: parameter count, FLOPs for the declared input, and the family's own rows."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from zoo import plugins
from zoo.registry.schema import ModelEntry


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    seen = {id(p): p.numel() for p in model.parameters()}
    return sum(seen.values())


def count_flops(model: nn.Module, input_shape: tuple) -> Optional[int]:
    """FLOPs of one forward pass on a batch of one input of ``input_shape`` (multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def summarize(model: nn.Module, entry: Optional[ModelEntry] = None, flops: bool = True) -> Dict[str, Any]:
    """A dict of summary rows for ``model`` (created by :func:`zoo.create` unless ``entry`` is given)."""
    if entry is None:
        from zoo.api import model_info

        entry = model_info(model.pretrained_cfg["architecture"])
    shape = tuple(getattr(model, "pretrained_cfg", {}).get("input", {}).get("shape") or entry.input.shape)
    rows: Dict[str, Any] = {"name": entry.name, "family": entry.family, "task": entry.task,
                            "input": list(shape), "parameters": count_parameters(model)}
    family = plugins.get_family(entry.family)
    if family.summary is not None:
        rows.update(family.summary(model, entry))
    if flops and "flops" not in rows:
        rows["flops"] = count_flops(model, shape)
    return rows
