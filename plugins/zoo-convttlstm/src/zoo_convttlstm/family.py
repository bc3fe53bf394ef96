"""The ``convttlstm`` family object handed to the zoo core (entry point ``zoo.families``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from zoo.family import Family

from . import __version__


def video_prediction(**kwargs: Any):
    """Builder: :class:`zoo_convttlstm.network.VideoPredictionNet` (Fig. 4.6a)."""
    from .network import VideoPredictionNet

    return VideoPredictionNet(**kwargs)


def activity_recognition(**kwargs: Any):
    """Builder: :class:`zoo_convttlstm.recognition.EarlyActivityRecognizer` (Fig. 4.6b)."""
    from .recognition import EarlyActivityRecognizer

    return EarlyActivityRecognizer(**kwargs)


def training_step(model, batch, entry):
    """L1 + L2 loss with scheduled sampling (see :func:`zoo_convttlstm.training.training_step`)."""
    from .training import training_step as step

    return step(model, batch, entry)


def after_epoch(model, row: Mapping[str, float]) -> None:
    """Scheduled sampling (4.7.3): teacher forcing until the validation loss stops improving, then less each epoch."""
    from .training import ScheduledSampling

    if "scheduled_sampling" not in model.__dict__:
        model.scheduled_sampling = ScheduledSampling()
    model.scheduled_sampling.update(row.get("val_loss", row["train_loss"]))
    model.scheduled_sampling.apply(model)


def summary(model, entry) -> Mapping[str, Any]:
    """Parameters and multiplications per one-step prediction at the entry's input size (+ Table 4.2 convention).

    ``flops`` is 2 x MACs of ONE predicted frame, so the core does not run a whole clip to count them."""
    from .complexity import TABLE_4_2_RESOLUTION, count_parameters, table_4_2_gflops

    params = count_parameters(model)
    rows: Dict[str, Any] = {"params": params, "params_m": round(params / 1e6, 2)}
    shape = list(entry.input.shape)
    if hasattr(model, "macs_per_step"):
        h, w = shape[-2:]
        macs = model.macs_per_step(h, w)
        rows[f"macs_per_step_{h}x{w}"] = macs
        rows[f"gmacs_per_step_{h}x{w}"] = round(macs / 1e9, 2)
        rows["flops"] = 2 * macs  # per one-step prediction (multiply-add = 2 FLOPs), not per clip
        side = TABLE_4_2_RESOLUTION.get(str(entry.dataset).lower())
        if side is not None:
            rows["table_4_2_gflops"] = round(table_4_2_gflops(params, side), 2)
            rows["table_4_2_convention"] = f"round(params_M, 2) * {side}^2 / 1024"
    return rows


FAMILY = Family(
    name="convttlstm",
    builders={"video_prediction": video_prediction, "activity_recognition": activity_recognition},
    registry=Path(__file__).parent / "registry.yaml",
    training_step=training_step,
    after_epoch=after_epoch,
    summary=summary,
    version=__version__,
)
