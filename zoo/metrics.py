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


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def metrics_from_counts(tp: float, tn: float, fp: float, fn: float) -> Dict[str, float]:
    """ACC, SE (sensitivity), SP (specificity), PC (precision), F1 and JS (Jaccard) from pixel counts
    (dissertation 6.5.3); a ratio with a zero denominator is ``nan`` (undefined)."""
    se, pc = _ratio(tp, tp + fn), _ratio(tp, tp + fp)
    f1 = float("nan") if se != se or pc != pc else (2 * pc * se / (pc + se) if pc + se else 0.0)
    return {"ACC": _ratio(tp + tn, tp + tn + fp + fn), "SE": se, "SP": _ratio(tn, tn + fp), "PC": pc, "F1": f1,
            "JS": _ratio(tp, tp + fp + fn)}


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
    return metrics_from_counts(tp, tn, fp, fn)


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
