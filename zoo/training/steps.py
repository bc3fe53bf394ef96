"""Default losses by task; a family overrides them with ``Family.training_step``."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import PluginError
from zoo.registry.schema import ModelEntry

Step = Callable[[nn.Module, Any, ModelEntry], torch.Tensor]


def classification_step(model: nn.Module, batch: Any, entry: ModelEntry) -> torch.Tensor:
    """Cross-entropy of ``model(inputs)`` (B, K) against class indices (B,)."""
    inputs, targets = batch
    return F.cross_entropy(model(inputs), targets)


def segmentation_step(model: nn.Module, batch: Any, entry: ModelEntry) -> torch.Tensor:
    """Binary cross-entropy of logits (B, 1, H, W) against masks in {0, 1}."""
    inputs, masks = batch
    return F.binary_cross_entropy_with_logits(model(inputs), masks)


def video_step(model: nn.Module, batch: Any, entry: ModelEntry) -> torch.Tensor:
    """L1 + L2 between ``model(inputs, future_frames=T)`` and the T future frames (B, T, C, H, W)."""
    inputs, future = batch
    pred = model(inputs, future_frames=future.shape[1])
    return F.l1_loss(pred, future) + F.mse_loss(pred, future)


DEFAULT_STEPS = {"classification": classification_step, "segmentation": segmentation_step,
                 "video-prediction": video_step}


class FamilyStep(nn.Module):
    """A training step as a module: ``forward(batch)`` returns ``step(model, batch, entry)``, a scalar loss.

    The trainer hands this module (not the model) to ``DistributedDataParallel``, so a family's step receives the
    model itself, with its own methods and attributes (BQN's ``propagate`` and ``prior_weight``, Conv-TT-LSTM's
    teacher-forcing ratio), while DDP still averages the gradients of everything the step used."""

    def __init__(self, model: nn.Module, step: Step, entry: ModelEntry) -> None:
        super().__init__()
        self.model, self.step, self.entry = model, step, entry

    def forward(self, batch: Any) -> torch.Tensor:
        return self.step(self.model, batch, self.entry)


def step_for(entry: ModelEntry) -> Step:
    """The family's ``training_step`` if it has one, else the task's default."""
    from zoo import plugins

    family = plugins.get_family(entry.family)
    if family.training_step is not None:
        return family.training_step
    if entry.task not in DEFAULT_STEPS:
        raise PluginError(f"family {entry.family!r} must define training_step for {entry.task} models")
    return DEFAULT_STEPS[entry.task]
