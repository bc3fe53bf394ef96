"""The family interface: what a plugin hands to the core.

A family plugin exposes one :class:`Family` object through the entry-point group
``zoo.families`` (``[project.entry-points."zoo.families"] NAME = "pkg.module:FAMILY"``).
The core imports it on first use only. Everything else about a family is optional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

    from zoo.registry.schema import ModelEntry

Builder = Callable[..., "nn.Module"]
"""``builder(**entry.args, **user_kwargs) -> nn.Module``.

Classification builders also receive ``num_classes`` (and ``in_chans`` when the user gives it)."""

NameResolver = Callable[[str], Optional[Mapping[str, Any]]]
"""Maps a model name outside the registry to the fields of a registry entry, or ``None``."""

TrainingStep = Callable[["nn.Module", Any, "ModelEntry"], "torch.Tensor"]
"""``training_step(model, batch, entry) -> scalar loss``; ``batch`` is what the data loader yields."""

Summary = Callable[["nn.Module", "ModelEntry"], Mapping[str, Any]]
"""Extra rows for ``zoo create NAME --summary`` (e.g. dense parameter count, FLOPs per step)."""

Hook = Callable[["nn.Module"], None]

EpochHook = Callable[["nn.Module", Mapping[str, float]], None]
"""``after_epoch(model, row)`` with the epoch's metrics row (``train_loss``, ``val_loss``, ...)."""

TrainingState = Callable[["nn.Module"], Mapping[str, Any]]
"""``training_state(model) -> state``: what a family keeps on the model between epochs of a run (e.g. scheduled
sampling's progress), as plain values (numbers, strings, booleans, None, lists, dicts, tensors)."""

LoadTrainingState = Callable[["nn.Module", Mapping[str, Any]], None]
"""``load_training_state(model, state)``: put back what :data:`TrainingState` returned (on ``--resume``)."""

Evaluate = Callable[["nn.Module", Iterable[Any], "ModelEntry"], Mapping[str, float]]
"""``evaluate(model, batches, entry) -> metrics`` on held-out batches (default: by task, see zoo.metrics)."""


@dataclass(frozen=True)
class Family:
    """A family of models contributed by one plugin.

    Attributes:
        name: family name used in ``registry.yaml`` (``family: tnn``).
        builders: builder name -> callable returning an ``nn.Module``.
        registry: optional path of a YAML registry fragment (same schema as ``registry.yaml``);
            relative ``weights.bundled`` paths in it are resolved against its folder.
        resolve: optional name grammar, e.g. ``{backbone}-{decomposition}-{rate}pct``.
        training_step: optional loss for :func:`zoo.finetune`; default depends on the task.
        after_step: optional hook run after each optimiser step (e.g. re-projection).
        after_epoch: optional hook run after each epoch with its metrics (e.g. scheduled sampling).
        training_state / load_training_state: optional pair saving and restoring the family's run state (what its
            hooks keep on the model) in the trainer's checkpoint, so that ``--resume`` continues exactly.
            Every hook receives the model itself, never a ``DistributedDataParallel`` wrapper.
        summary: optional extra rows for model summaries.
        evaluate: optional held-out metrics for ``scripts/evaluate.py`` and ``scripts/train.py``.
        version: the plugin's version string, shown by ``zoo families``.
        extras: free-form; ``extras={"build_args": [...]}`` names build arguments a saved ``config.json`` may set
            beyond those the builders and the registry use (see docs/security.md).
    """

    name: str
    builders: Mapping[str, Builder]
    registry: Optional[Path] = None
    resolve: Optional[NameResolver] = None
    training_step: Optional[TrainingStep] = None
    after_step: Optional[Hook] = None
    after_epoch: Optional[EpochHook] = None
    training_state: Optional[TrainingState] = None
    load_training_state: Optional[LoadTrainingState] = None
    summary: Optional[Summary] = None
    evaluate: Optional[Evaluate] = None
    version: str = "0"
    extras: Mapping[str, Any] = field(default_factory=dict)

    def builder(self, name: str) -> Builder:
        """Return the builder called ``name`` or raise ``KeyError`` listing the known ones."""
        try:
            return self.builders[name]
        except KeyError:
            known = ", ".join(sorted(self.builders)) or "none"
            raise KeyError(f"family {self.name!r} has no builder {name!r} (builders: {known})") from None
