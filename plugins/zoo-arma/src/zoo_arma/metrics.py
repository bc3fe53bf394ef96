"""Binary segmentation metrics of 6.5.3: ACC, SE, SP, PC, F1, JS."""

from __future__ import annotations

from typing import Dict, Union

import torch
from torch import Tensor

from zoo.metrics import metrics_from_counts

__all__ = ["confusion_counts", "metrics_from_counts", "segmentation_metrics"]

METRIC_NAMES = ("ACC", "SE", "SP", "PC", "F1", "JS")


def _binary(x: Tensor, threshold: float, name: str) -> Tensor:
    if x.dtype == torch.bool:
        return x
    if x.is_floating_point():
        return x > threshold
    if x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        bad = ~((x == 0) | (x == 1))
        if bad.any():
            raise ValueError(f"integer {name} must hold only 0 and 1, got values {torch.unique(x[bad])[:5].tolist()}")
        return x.bool()
    raise TypeError(f"{name} must be a bool, integer or float tensor, got {x.dtype}")


def confusion_counts(pred: Tensor, target: Tensor, threshold: float = 0.5) -> Dict[str, int]:
    """``TP, TN, FP, FN`` pixel counts over all elements; float ``pred`` is a probability thresholded at
    ``threshold`` (``> threshold`` is lesion, as in the reference code), float ``target`` likewise at 0.5."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    sr, gt = _binary(pred, threshold, "pred"), _binary(target, 0.5, "target")
    tp = int((sr & gt).sum())
    tn = int((~sr & ~gt).sum())
    fp = int((sr & ~gt).sum())
    fn = int((~sr & gt).sum())
    return {"TP": tp, "TN": tn, "FP": fp, "FN": fn}


def segmentation_metrics(
    pred: Tensor, target: Tensor, threshold: float = 0.5, per_image: bool = False
) -> Dict[str, float]:
    """ACC, SE, SP, PC, F1, JS exactly as defined in 6.5.3.

    ``AC = (TP+TN)/(TP+TN+FP+FN)``, ``SE = TP/(TP+FN)``, ``SP = TN/(TN+FP)``, ``PC = TP/(TP+FP)``,
    ``F1 = 2 PC SE / (PC+SE)``, ``JS = |GT & SR| / |GT | SR|``.

    Args:
        pred: predicted mask ``SR``: probabilities (float, ``> threshold`` = lesion), or bool / {0,1}.
            Pass ``sigmoid(logits)``, not logits. Any shape, e.g. ``(B, 1, H, W)``.
        target: ground truth ``GT`` of the same shape (bool, {0,1}, or float thresholded at 0.5).
        per_image: False pools the counts over everything given; True computes the metrics per image
            (first dimension) and averages them, skipping undefined (nan) values per metric.
    Returns:
        ``{"ACC": ..., "SE": ..., "SP": ..., "PC": ..., "F1": ..., "JS": ...}`` as floats in [0, 1].
    """
    if not per_image:
        c = confusion_counts(pred, target, threshold)
        return metrics_from_counts(c["TP"], c["TN"], c["FP"], c["FN"])
    if pred.dim() == 0 or pred.shape[0] == 0:
        raise ValueError(f"per_image needs a leading batch dimension, got shape {tuple(pred.shape)}")
    rows = [segmentation_metrics(p, t, threshold) for p, t in zip(pred, target)]
    out: Dict[str, float] = {}
    for k in METRIC_NAMES:
        vals = [r[k] for r in rows if r[k] == r[k]]
        out[k] = sum(vals) / len(vals) if vals else float("nan")
    return out
