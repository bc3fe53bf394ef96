"""The ``convttlstm`` family object handed to the zoo core (entry point ``zoo.families``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Mapping

from zoo.family import Family

from . import __version__


def build_video_prediction(**kwargs: Any):
    """Builder: :class:`zoo_convttlstm.network.VideoPredictionNet` (Fig. 4.6a); timm's ``in_chans`` sets its
    ``in_channels`` (frame channels)."""
    from .network import VideoPredictionNet

    if "in_chans" in kwargs:
        kwargs["in_channels"] = kwargs.pop("in_chans")
    return VideoPredictionNet(**kwargs)


def build_activity_recognition(**kwargs: Any):
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


def training_state(model) -> Dict[str, Any]:
    """Scheduled sampling's progress (ratio, plateau counter, best loss), for the trainer's checkpoint."""
    schedule = model.__dict__.get("scheduled_sampling")
    return {"scheduled_sampling": schedule.state_dict()} if schedule is not None else {}


def load_training_state(model, state: Mapping[str, Any]) -> None:
    """Put back what :func:`training_state` saved, so that a resumed run samples as the interrupted one would."""
    from .training import ScheduledSampling

    if "scheduled_sampling" in state:
        model.scheduled_sampling = ScheduledSampling()
        model.scheduled_sampling.load_state_dict(state["scheduled_sampling"])
        model.scheduled_sampling.apply(model)


def evaluate(model, batches: Iterable[Any], entry) -> Dict[str, float]:
    """Video prediction, as ``scripts/demo_convttlstm_mnist.py`` measures it: the model predicts all T target frames
    of each (inputs (B, T_in, ...), targets (B, T, ...)) batch from the inputs alone; predictions clipped to [0, 1];
    per-frame MSE (x 1e3), SSIM and PSNR averaged over the first h predicted frames (``..._{T_in}to{h}``) for every
    multiple h of T_in up to T and for h = T (10 -> 10, 20, 30 on Moving-MNIST; 10 -> 20 and 40 on KTH)."""
    import torch

    from .metrics import evaluate as frame_metrics

    if entry.task != "video-prediction":
        raise ValueError(f"convttlstm evaluate measures video-prediction models, not {entry.task!r} ({entry.name!r})")
    model.eval()
    preds, truths = [], []
    with torch.no_grad():
        for inputs, targets in batches:
            preds.append(model(inputs, future_frames=targets.shape[1]).clamp(0, 1))
            truths.append(targets)
    frames = frame_metrics(torch.cat(preds), torch.cat(truths))
    given, total = inputs.shape[1], len(frames["mse_per_frame"])
    out: Dict[str, float] = {}
    for horizon in sorted(set(range(given, total + 1, given)) | {total}):
        mean = {k: sum(frames[f"{k}_per_frame"][:horizon]) / horizon for k in ("mse", "ssim", "psnr")}
        tag = f"{given}to{horizon}"
        out.update({f"mse_x1e3_{tag}": mean["mse"] * 1e3, f"ssim_{tag}": mean["ssim"], f"psnr_{tag}": mean["psnr"]})
    return out


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
    builders={"video_prediction": build_video_prediction, "activity_recognition": build_activity_recognition},
    registry=Path(__file__).parent / "registry.yaml",
    training_step=training_step,
    after_epoch=after_epoch,
    training_state=training_state,
    load_training_state=load_training_state,
    summary=summary,
    evaluate=evaluate,
    version=__version__,
)
