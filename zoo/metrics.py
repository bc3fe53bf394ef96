"""Held-out metrics by task: the defaults behind ``scripts/evaluate.py`` (a family may override them)."""

from __future__ import annotations

from typing import Any, Dict, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import PluginError
from zoo.registry.schema import ModelEntry


@torch.no_grad()
def classification_metrics(model: nn.Module, batches: Iterable[Any], entry: ModelEntry) -> Dict[str, float]:
    """``top1`` (%) and ``nll`` (nats per example) of ``model(x)`` logits over (x, y) batches."""
    model.eval()
    correct, nll, count = 0, 0.0, 0
    for x, y in batches:
        logits = model(x).float()
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
    return {"top1": 100.0 * correct / count, "nll": nll / count}


def confusion_metrics(tp: float, fp: float, tn: float, fn: float) -> Dict[str, float]:
    """ACC, SE (sensitivity), SP (specificity), PC (precision), F1 and JS (Jaccard) from pixel counts."""
    eps = 1e-12
    return {"ACC": (tp + tn) / max(tp + tn + fp + fn, eps), "SE": tp / max(tp + fn, eps),
            "SP": tn / max(tn + fp, eps), "PC": tp / max(tp + fp, eps),
            "F1": 2 * tp / max(2 * tp + fp + fn, eps), "JS": tp / max(tp + fp + fn, eps)}


@torch.no_grad()
def segmentation_metrics(model: nn.Module, batches: Iterable[Any], entry: ModelEntry) -> Dict[str, float]:
    """Pixel-level ACC, SE, SP, PC, F1, JS of ``sigmoid(model(x)) > 0.5`` against binary masks, pooled over pixels."""
    model.eval()
    tp = fp = tn = fn = 0.0
    for x, mask in batches:
        pred = torch.sigmoid(model(x).float()) > 0.5
        truth = mask > 0.5
        tp += float((pred & truth).sum())
        fp += float((pred & ~truth).sum())
        tn += float((~pred & ~truth).sum())
        fn += float((~pred & truth).sum())
    return confusion_metrics(tp, fp, tn, fn)


DEFAULT_EVALUATORS = {"classification": classification_metrics, "segmentation": segmentation_metrics}


def evaluate(model: nn.Module, batches: Iterable[Any], entry: ModelEntry) -> Dict[str, float]:
    """The family's ``evaluate`` if it has one, else the task's default metrics."""
    from zoo import plugins

    family = plugins.get_family(entry.family)
    if family.evaluate is not None:
        return dict(family.evaluate(model, batches, entry))
    if entry.task not in DEFAULT_EVALUATORS:
        raise PluginError(f"family {entry.family!r} must define evaluate for {entry.task} models")
    return DEFAULT_EVALUATORS[entry.task](model, batches, entry)
