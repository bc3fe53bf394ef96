"""Training support of Sec. 4.7.3: L1 + L2 loss, scheduled sampling started on a validation plateau,
Adam 1e-3 with gradient clipping 1 and learning-rate decay, checkpoints with resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HYPERPARAMETERS: Dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "grad_clip": 1.0,
    "loss": "l1+l2",
    "input_frames": 10,
    "future_frames": 10,
}
"""Sec. 4.7.3 / Table 4.6 choices (K=5, N=3, C(i)=8 live in the registry args)."""


def l1_l2_loss(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean absolute error + mean squared error (the L1 + L2 loss of Table 4.7)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape")
    return F.l1_loss(pred, truth) + F.mse_loss(pred, truth)


def split_batch(batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, T_in, C, H, W), targets (B, T_out, C, H, W)) from a loader batch (tuple/list or dict)."""
    if isinstance(batch, dict):
        batch = (batch.get("inputs"), batch.get("targets"))
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"expected a batch (inputs, targets), got {type(batch).__name__}")
    inputs, targets = batch
    for name, x in (("inputs", inputs), ("targets", targets)):
        if not isinstance(x, torch.Tensor) or x.dim() != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be (batch, time, channels, height, width), got {shape}")
    return inputs, targets


def training_step(model: nn.Module, batch: Any, entry: Any = None) -> torch.Tensor:
    """Family hook. Activity recognition (``entry.task``): see :func:`recognition_step`.

    Video prediction: L1 + L2 loss of the next-frame predictions over the whole clip.

    The model predicts frames 2..T_in+T_out; during the T_out future steps it is fed the true frame with
    probability ``model.teacher_forcing_ratio`` (set by :class:`ScheduledSampling`; 1, full teacher forcing, until
    a schedule sets it; 0 in eval mode)."""
    if getattr(entry, "task", None) == "activity-recognition":
        return recognition_step(model, batch)
    inputs, targets = split_batch(batch)
    ratio = float(getattr(model, "teacher_forcing_ratio", 1.0)) if model.training else 0.0
    preds = model(inputs, future_frames=targets.shape[1], targets=targets, teacher_forcing_ratio=ratio, return_all=True)
    truth = torch.cat([inputs[:, 1:], targets], dim=1)
    return l1_l2_loss(preds, truth)


class ScheduledSampling:
    """Teacher-forcing ratio schedule: 1 (teacher forcing) until the validation loss has not improved for
    ``patience`` epochs, then decreasing by ``decay`` per epoch down to ``floor`` (scheduled sampling [109])."""

    def __init__(self, patience: int = 2, decay: float = 0.1, floor: float = 0.0, min_delta: float = 0.0) -> None:
        if patience < 0 or not 0 < decay <= 1 or not 0 <= floor <= 1:
            raise ValueError(f"need patience >= 0, 0 < decay <= 1, 0 <= floor <= 1; got {patience}, {decay}, {floor}")
        self.patience, self.decay, self.floor, self.min_delta = patience, decay, floor, min_delta
        self.ratio, self.started, self.best, self.bad_epochs = 1.0, False, float("inf"), 0

    def update(self, val_loss: float) -> float:
        """Record one epoch's validation loss; return the ratio for the next epoch."""
        if val_loss < self.best - self.min_delta:
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        if self.started:
            self.ratio = max(self.floor, self.ratio - self.decay)
        elif self.bad_epochs > self.patience:
            self.started = True
            self.ratio = max(self.floor, self.ratio - self.decay)
        return self.ratio

    def apply(self, model: nn.Module) -> None:
        """Store the current ratio on the model, where :func:`training_step` reads it."""
        model.teacher_forcing_ratio = self.ratio

    def state_dict(self) -> Dict[str, Any]:
        return dict(ratio=self.ratio, started=self.started, best=self.best, bad_epochs=self.bad_epochs)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.ratio, self.started = float(state["ratio"]), bool(state["started"])
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])


def make_optimizer(model: nn.Module, lr: float = 1e-3, decay: float = 0.98) -> Tuple[torch.optim.Optimizer, Any]:
    """Adam(lr) and an exponential learning-rate decay (multiply by ``decay`` per epoch)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay)


def optimizer_step(model: nn.Module, loss: torch.Tensor, opt: torch.optim.Optimizer, clip: float = 1.0) -> float:
    """Backward, clip the gradient norm to ``clip``, step; returns the pre-clipping gradient norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(norm)


def save_checkpoint(path: Union[str, Path], **objects: Any) -> None:
    """Save ``name=obj`` pairs (modules/optimizers/schedulers/ScheduledSampling via state_dict, others as is).

    Only tensors and plain values (numbers, strings, booleans, None, lists, tuples, dicts) are stored, so that
    :func:`load_checkpoint` can read the file with ``torch.load(weights_only=True)``, which never runs code."""
    state = {k: _plain(v.state_dict() if hasattr(v, "state_dict") else v, k) for k, v in objects.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _plain(value: Any, where: str) -> Any:
    """``value`` as tensors and plain Python values (NumPy scalars and arrays converted); raise on anything else."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"checkpoint value {where} is a {type(value).__name__}; only tensors, numbers, strings, booleans, "
                    f"None and lists/tuples/dicts of them are saved (convert it, e.g. str(path) or float(x))")


def load_checkpoint(path: Union[str, Path], **objects: Any) -> Dict[str, Any]:
    """Restore the objects saved by :func:`save_checkpoint`; returns the plain (non state_dict) values.

    The file is read with ``torch.load(weights_only=True)``: a checkpoint holding any other Python object (which
    unpickling would construct, possibly running code) is refused with a :class:`~zoo.errors.WeightsError`."""
    from zoo.hub.state import read_torch_checkpoint

    state = read_torch_checkpoint(Path(path))
    missing = [k for k in objects if k not in state]
    if missing:
        raise KeyError(f"checkpoint {path} lacks {missing}; it has {sorted(state)}")
    for k, obj in objects.items():
        obj.load_state_dict(state[k])
    return {k: v for k, v in state.items() if k not in objects}


def teacher_forcing_ratio(model: nn.Module) -> Optional[float]:
    """The ratio currently stored on ``model`` (None if never set)."""
    return getattr(model, "teacher_forcing_ratio", None)


def recognition_step(model: nn.Module, batch: Any) -> torch.Tensor:
    """Batch (inputs (B, T, C, H, W), labels (B,)[, future frames (B, T_f, C, H, W)]): cross-entropy plus
    ``model.prediction_weight`` (default 1, decayed linearly on plateaus by the trainer) x L1+L2 of the frames."""
    from .recognition import recognition_loss

    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError(f"expected a batch (inputs, labels[, future frames]), got {type(batch).__name__}")
    inputs, labels = batch[0], batch[1]
    future = batch[2] if len(batch) == 3 else None
    n = future.shape[1] if future is not None else 10
    out = model(inputs, future_frames=n)
    return recognition_loss(out, labels, future, float(getattr(model, "prediction_weight", 1.0)))
