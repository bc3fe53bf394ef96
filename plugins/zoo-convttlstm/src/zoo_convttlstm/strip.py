"""Fig. 4.3-style strips: a row of input frames, then ground truth and each model's prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import numpy as np
import torch


def _row(frames: torch.Tensor) -> np.ndarray:
    """(T, C, H, W) in [0, 1] -> (H, T * (W + 1), 3) with 1-pixel separators."""
    x = frames.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    t, _, h, w = x.shape
    out = np.ones((h, t * (w + 1) - 1, 3), np.float32)
    for i in range(t):
        out[:, i * (w + 1) : i * (w + 1) + w] = x[i].permute(1, 2, 0).numpy()
    return out


def save_strip(
    inputs: torch.Tensor, truth: torch.Tensor, predictions: Mapping[str, torch.Tensor], path: Union[str, Path],
    title: str = "",
) -> Path:
    """Write a PNG: inputs (T_in, C, H, W); truth and each prediction (T_out, C, H, W), one labelled row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, p in predictions.items():
        if p.shape != truth.shape:
            raise ValueError(f"prediction {name!r} has shape {tuple(p.shape)}, truth {tuple(truth.shape)}")
    rows = [("inputs", _row(inputs)), ("truth", _row(truth))] + [(k, _row(v)) for k, v in predictions.items()]
    width = max(r.shape[1] for _, r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width / 40, 1.1 * len(rows) * rows[0][1].shape[0] / 40 + 0.4))
    for ax, (name, img) in zip(np.atleast_1d(axes), rows):
        pad = np.ones((img.shape[0], width, 3), np.float32)
        pad[:, : img.shape[1]] = img
        ax.imshow(pad, interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
