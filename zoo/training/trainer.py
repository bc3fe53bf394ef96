"""``zoo.finetune``: fine-tuning on the user's data, on one CPU/GPU or under ``torchrun`` (DDP).

Checkpoints hold everything needed to continue exactly (model, optimiser, scheduler, RNG states, epoch,
position inside the epoch) and are written atomically every epoch and on interrupt. The loss and any
per-step projection come from the model's family (``Family.training_step`` / ``Family.after_step``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from zoo import plugins
from zoo.errors import PluginError, ZooError
from zoo.hub.files import atomic_path
from zoo.model_config import ModelConfig
from zoo.registry.schema import ModelEntry
from zoo.training import distributed as dist
from zoo.training import output
from zoo.training.datasets import DataSource, build_dataset
from zoo.training.steps import FamilyStep, step_for

CHECKPOINT = output.CHECKPOINT
METRICS = output.METRICS


@dataclass
class FinetuneConfig:
    """Options of :func:`finetune` (also the ``zoo train`` flags)."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    optimizer: str = "adamw"           # any timm optimizer name: sgd, momentum, adam, adamw, lamb, ...
    weight_decay: float = 0.01
    scheduler: str = "cosine"          # any timm scheduler name (cosine, step, multistep, plateau, ...) or "none"
    warmup_epochs: int = 0
    decay_epochs: Optional[float] = None  # step scheduler: decay every this many epochs ...
    decay_rate: float = 0.1               # ... by this factor
    freeze: str = "none"               # "none" | "backbone" (train the classifier head only)
    grad_clip: Optional[float] = None  # max gradient norm
    augment: bool = True               # timm training transforms for image classification
    input_size: Optional[int] = None   # train/evaluate images at this square size instead of pretrained_cfg's
    seed: int = 0
    num_workers: int = 0
    output_dir: Optional[str] = None
    resume: bool = False               # continue the run in output_dir from its checkpoint.pt
    overwrite: bool = False            # replace the results of a previous run in output_dir (else: refused)
    device: Optional[str] = None       # default: cuda if available, else cpu
    precision: str = "auto"            # "auto" (bf16 autocast on CUDA, fp32 elsewhere) | "bf16" | "fp32"
    channels_last: Optional[bool] = None  # default: on CUDA for image classification and segmentation
    input_frames: int = 10             # video prediction: frames given ...
    future_frames: int = 10            # ... and frames predicted
    progress: bool = True

    def __post_init__(self) -> None:
        if self.freeze not in ("none", "backbone"):
            raise ZooError(f"freeze must be 'none' or 'backbone', got {self.freeze!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ZooError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        for name in ("epochs", "batch_size", "input_frames", "future_frames"):
            _check_number(self, name, int, minimum=1)
        _check_number(self, "num_workers", int, minimum=0)
        _check_number(self, "warmup_epochs", int, minimum=0)
        if self.input_size is not None:
            _check_number(self, "input_size", int, minimum=1)
        _check_number(self, "lr", float, above=0)
        _check_number(self, "weight_decay", float, minimum=0)
        _check_number(self, "decay_rate", float, above=0)
        for name in ("grad_clip", "decay_epochs"):
            if getattr(self, name) is not None:
                _check_number(self, name, float, above=0)
        for name in ("optimizer", "scheduler"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ZooError(f"{name} must be a name such as {'adamw' if name == 'optimizer' else 'cosine'}, "
                               f"got {getattr(self, name)!r}")


def _check_number(cfg: "FinetuneConfig", name: str, kind: type, minimum: Optional[float] = None,
                  above: Optional[float] = None) -> None:
    """Refuse ``cfg.<name>`` unless it is a finite ``kind`` (an int is a float too) ``>= minimum`` / ``> above``."""
    value = getattr(cfg, name)
    kinds = (int, float) if kind is float else (int,)
    valid = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    bound = (f">= {minimum}" if minimum is not None else f"> {above}")
    if not valid or (minimum is not None and value < minimum) or (above is not None and value <= above):
        what = "a whole number" if kind is int else "a finite number"
        raise ZooError(f"{name} must be {what} {bound}, got {value!r}")


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the trained model and its history."""

    model: nn.Module
    history: List[Dict[str, float]] = field(default_factory=list)
    best_metric: Optional[float] = None
    best_dir: Optional[Path] = None
    skipped_files: List[str] = field(default_factory=list)


def entry_of(model: nn.Module) -> ModelEntry:
    """The registry entry a zoo model was built from (its :class:`~zoo.model_config.ModelConfig`'s)."""
    return ModelConfig.of(model, what="finetune").entry


def finetune(model_or_name: Union[str, nn.Module], train_data: DataSource, val_data: Optional[DataSource] = None,
             *, num_classes: Optional[int] = None, pretrained: bool = True, config: Optional[FinetuneConfig] = None,
             **options: Any) -> FinetuneResult:
    """Fine-tune a zoo model on ``train_data`` (a path or a Dataset); see :class:`FinetuneConfig` for options.

    ``model_or_name`` is a model from :func:`zoo.create` or a name (created with ``pretrained`` weights when it
    has them). ``num_classes`` replaces the classifier head. With ``output_dir``, writes ``metrics.jsonl``,
    ``curves.png``, ``checkpoint.pt`` (every epoch and on interrupt) and the best model as a Hub-ready folder
    ``best/``; ``resume=True`` continues from ``checkpoint.pt`` exactly.
    """
    cfg = config or FinetuneConfig(**options)
    if config is not None and options:
        raise ZooError(f"pass either config= or keyword options, not both (got {sorted(options)})")
    check_schedule(cfg)  # a bad optimiser or scheduler name fails before the data is read or a model is built
    num_classes = _classes_from_data(model_or_name, train_data, num_classes)
    _seed_everything(cfg.seed)  # a model built here from a name starts from a reproducible initialisation
    model = _prepare_model(model_or_name, num_classes, pretrained)
    base = model_or_name if isinstance(model_or_name, str) else None
    return Trainer(model, train_data, val_data, cfg, base_model=base).fit()


def check_schedule(cfg: FinetuneConfig) -> None:
    """Refuse an optimiser or scheduler name timm does not know, on a stand-in parameter (nothing is read)."""
    create_optimizer_v2 = _timm_create_optimizer()
    from timm.optim import list_optimizers

    if cfg.optimizer.lower() not in list_optimizers():
        raise ZooError(f"unknown optimizer {cfg.optimizer!r}; timm's include sgd, momentum, adam, adamw, "
                       f"lamb, lion, rmsprop (all: timm.optim.list_optimizers())")
    if cfg.scheduler != "none":
        optimizer = create_optimizer_v2([nn.Parameter(torch.zeros(1))], opt=cfg.optimizer, lr=cfg.lr,
                                        weight_decay=cfg.weight_decay)
        _scheduler(optimizer, cfg)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: FinetuneConfig) -> Any:
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.scheduler, num_epochs=cfg.epochs,
                                           warmup_epochs=cfg.warmup_epochs, min_lr=cfg.lr * 1e-2,
                                           decay_rate=cfg.decay_rate, plateau_mode="min",
                                           **({"decay_epochs": cfg.decay_epochs} if cfg.decay_epochs is not None
                                              else {}))
    except ValueError as exc:
        raise ZooError(f"scheduler {cfg.scheduler!r}: {exc} Use one of timm's: cosine, tanh, step, "
                       f"multistep, plateau, poly, constant, wsd, rsqrt, or none") from None
    return scheduler


def _classes_from_data(model_or_name: Union[str, nn.Module], train_data: DataSource,
                       num_classes: Optional[int]) -> Optional[int]:
    """The head size to train: ``num_classes`` checked against the classes of the training data, or, when not
    given, the data's class count where the model's head differs (said in one line on stderr). The data is
    only listed here (class folders, CSV labels, ``.npz`` label arrays), never decoded."""
    from zoo.api import check_count, model_info

    num_classes = check_count("num_classes", num_classes, minimum=1)
    if isinstance(model_or_name, str):
        entry = model_info(model_or_name)
        task, head, name = entry.task, entry.input.num_classes, model_or_name
    else:
        cfg = getattr(model_or_name, "pretrained_cfg", None) or {}
        task, head, name = cfg.get("task"), cfg.get("num_classes"), cfg.get("architecture", "the model")
    if task != "classification":
        return num_classes
    from zoo.training.datasets import data_classes

    found = data_classes(train_data)
    if found is None:
        return num_classes
    where = train_data if not isinstance(train_data, Dataset) else f"the {type(train_data).__name__} given"
    if found.count < 2 and (found.named or num_classes is None or num_classes < 2):
        ids = "" if found.named else " (or, for class ids, --num-classes N >= 2 for ids the data does not show)"
        raise ZooError(f"{where} has {found.count} class ({found.describe()}): a classifier learns nothing from one "
                       f"class (its loss is 0 from the start); give at least two classes{ids}")
    if num_classes is not None:
        if (num_classes != found.count) if found.named else (num_classes < found.count):
            raise ZooError(f"num_classes={num_classes} (--num-classes) contradicts the training data: {where} has "
                           f"{found.count} classes ({found.describe()}); pass --num-classes {found.count} or "
                           f"leave it out (it is read from the data)")
        return num_classes
    if head == found.count:
        return None
    if int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun, not one per process
        print(f"zoo: {where} has {found.count} classes ({found.describe()}), {name}'s head has "
              f"{head if head is not None else 'none'}: training a new {found.count}-way head (--num-classes "
              f"{found.count})", file=sys.stderr, flush=True)
    return found.count


def _prepare_model(model_or_name: Union[str, nn.Module], num_classes: Optional[int], pretrained: bool) -> nn.Module:
    from zoo.api import check_count, create, model_info

    num_classes = check_count("num_classes", num_classes, minimum=1)
    if isinstance(model_or_name, str):
        name = model_or_name
        has_weights = name.startswith(("local-dir:", "hf-hub:")) or model_info(name).weights is not None
        return create(name, pretrained=pretrained and has_weights, num_classes=num_classes)
    model = model_or_name
    config = ModelConfig.of(model, what="finetune")
    if num_classes is not None and config.entry.input.num_classes != num_classes:
        model.reset_classifier(num_classes)
        config.with_num_classes(num_classes).attach(model)
    return model


@dataclass(frozen=True)
class Position:
    """Where a run stands inside its epoch: batches trained, the RNG states after them and their summed loss.

    One immutable value assigned in one statement, so a checkpoint never pairs a batch count with another
    batch's RNG states or loss sum (a Ctrl-C between separate assignments did)."""

    batches_done: int
    rng: Dict[str, Any]
    loss_sum: float = 0.0
    loss_count: int = 0


# FinetuneConfig fields that change what a resumed run computes: a different value is refused ...
RESUME_MUST_MATCH = ("batch_size", "lr", "seed", "optimizer", "weight_decay", "scheduler", "warmup_epochs",
                     "decay_epochs", "decay_rate", "freeze", "grad_clip", "augment", "input_size", "input_frames",
                     "future_frames")
# ... and fields whose change is legitimate but alters the run: warned about (the rest, e.g. num_workers, are free)
RESUME_WARN = ("epochs", "precision", "channels_last", "device")


class Trainer:
    """One fine-tuning run; :meth:`fit` trains, evaluates, checkpoints and exports."""

    def __init__(self, model: nn.Module, train_data: DataSource, val_data: Optional[DataSource],
                 cfg: FinetuneConfig, *, base_model: Optional[str] = None):
        self.cfg, self.entry = cfg, entry_of(model)
        self.base_model = base_model or self.entry.name  # what was fine-tuned, for the model card
        self.from_weights = model.pretrained_cfg.get("weights_source") is not None
        self.sources = (train_data, val_data)
        self.device = _device(cfg.device)  # a bad name or an absent GPU: refused before anything starts
        self.rank, self.world = dist.init_from_env(cfg.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", dist.local_rank())
        self.out = Path(cfg.output_dir) if cfg.output_dir else None
        if self.out is not None and self.rank == 0:  # early, before the data is read; again under the lock in fit
            output.check_reusable(self.out, cfg.resume, cfg.overwrite)
            output.check_writable(self.out)
        self.model = model.to(self.device)
        channels_last = cfg.channels_last
        if channels_last is None:
            channels_last = self.device.type == "cuda" and self.entry.task in ("classification", "segmentation")
        if channels_last:
            _to_channels_last(self.model)
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self._freeze()
        self.optimizer, self.scheduler = self._optim()  # before the data is read: a bad name fails fast
        if cfg.input_size is not None and self.entry.task in ("classification", "segmentation"):
            self._check_input_size(cfg.input_size)
        opts = dict(augment=cfg.augment, input_frames=cfg.input_frames, future_frames=cfg.future_frames,
                    input_size=cfg.input_size)
        self.train_set = build_dataset(train_data, model.pretrained_cfg, True, **opts)
        classes = getattr(self.train_set, "classes", None)
        self.val_set = (build_dataset(val_data, model.pretrained_cfg, False, classes=classes, **opts)
                        if val_data is not None else None)
        self._record_inputs(train_data)
        self.step_fn = step_for(self.entry)
        self.family = plugins.get_family(self.entry.family)
        step = FamilyStep(self.model, self.step_fn, self.entry)
        self.step = dist.wrap(step, self.device) if self.world > 1 else step  # forward(batch) -> loss
        self.epoch, self.history = 0, []
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.position = Position(0, _rng_state())

    @property
    def batches_done(self) -> int:
        """Batches of the current epoch already trained (the committed :attr:`position`)."""
        return self.position.batches_done

    # -- set-up -----------------------------------------------------------------------------------------------
    def _freeze(self) -> None:
        if self.cfg.freeze == "backbone":
            head = self.model.get_classifier()
            head_params = {id(p) for p in head.parameters()}
            for p in self.model.parameters():
                p.requires_grad_(id(p) in head_params)

    def _record_inputs(self, train_data: DataSource) -> None:
        """Put what the model is now trained on into its config (and so into ``best/config.json``): the data's
        name, its class names, and, for images the zoo loads, the input size, normalisation and evaluation
        resize used, so ``timm.data.resolve_data_config(model=...)`` preprocesses as training did."""
        from zoo.training.datasets import dataset_name

        config = ModelConfig.of(self.model)
        spec, timm = config.entry.input, dict(config.timm)
        task = self.entry.task
        if task in ("classification", "segmentation") and not isinstance(train_data, Dataset):
            channels = spec.shape[0]
            shape = [channels, self.cfg.input_size, self.cfg.input_size] if self.cfg.input_size else spec.shape
            spec = config.input_with(shape=shape, mean=spec.mean or [0.5] * channels,  # what build_dataset used
                                     std=spec.std or [0.5] * channels)
            if task == "classification":  # evaluation: a bilinear resize to the input size, no crop
                timm.update(crop_pct=1.0, interpolation="bilinear", crop_mode="center")
            if self.cfg.input_size is not None:  # timm's test-time size and pool size were for its own input size
                timm.update(test_input_size=None, test_crop_pct=None, pool_size=None, test_pool_size=None,
                            min_input_size=None)
        names = config.label_names
        if task == "classification":
            classes = getattr(self.train_set, "classes", None)
            named = classes and not all(str(c) == str(i) for i, c in enumerate(classes))
            names = tuple(str(c) for c in classes) if named and len(classes) == spec.num_classes else None
            if names is None:  # class ids only, or names that are not this head's: none rather than wrong ones
                timm.pop("label_descriptions", None)
        # a previous fine-tuning's record is dropped; this run's is written with its best epoch
        config = replace(config, entry=config.entry_with(dataset=dataset_name(train_data), input=spec),
                                     label_names=names, training=None, timm=timm)
        config.attach(self.model)
        self.entry = config.entry

    def _training_record(self, metrics: Dict[str, float]) -> Dict[str, Any]:
        """``config.json``'s ``training`` for the best model of epoch :attr:`epoch` (see zoo.hub.config)."""
        from zoo.training.datasets import data_format, dataset_name
        from zoo.version import __version__

        def shown(source: Optional[DataSource]) -> Optional[str]:
            return None if source is None else (dataset_name(source) if isinstance(source, Dataset) else str(source))

        train, val = self.sources
        return {"base_model": self.base_model, "from_weights": self.from_weights, "data": shown(train),
                "data_format": data_format(train, self.entry.task), "train_samples": len(self.train_set),
                "val_data": shown(val), "val_samples": len(self.val_set) if self.val_set is not None else None,
                "num_classes": self.entry.input.num_classes if self.entry.task == "classification" else None,
                "epochs": self.cfg.epochs, "best_epoch": self.epoch, "input_size": list(self.entry.input.shape),
                "metrics": dict(metrics), "zoo_version": __version__}

    def _check_input_size(self, size: int) -> None:
        """One forward pass of a blank ``size`` x ``size`` image (eval mode, RNG states kept), so that an input
        size the network cannot take is refused before the data is read, not in the first step."""
        channels = int(self.entry.input.shape[0])
        state, was_training = _rng_state(), self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                self.model(torch.zeros(1, channels, size, size, device=self.device))
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ZooError(f"input_size {size} does not fit {self.entry.name!r} (its images are "
                           f"{'x'.join(map(str, self.entry.input.shape[1:]))}): {first}") from None
        finally:
            self.model.train(was_training)
            _set_rng_state(_storable(state))

    def _optim(self):
        create_optimizer_v2 = _timm_create_optimizer()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ZooError("no trainable parameters (check freeze=)")
        from timm.optim import list_optimizers

        if self.cfg.optimizer.lower() not in list_optimizers():
            raise ZooError(f"unknown optimizer {self.cfg.optimizer!r}; timm's include sgd, momentum, adam, adamw, "
                           f"lamb, lion, rmsprop (all: timm.optim.list_optimizers())")
        optimizer = create_optimizer_v2(self.model if self.cfg.freeze == "none" else params, opt=self.cfg.optimizer,
                                        lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        if self.cfg.scheduler == "none":
            return optimizer, None
        return optimizer, _scheduler(optimizer, self.cfg)

    def _loader(self, dataset: Dataset, train: bool, epoch: int, skip_batches: int = 0) -> DataLoader:
        """Batches of ``batch_size / world`` samples in an order fixed by (seed, epoch); ``skip_batches`` resumes
        inside an epoch without touching the skipped samples (their augmentation would consume RNG)."""
        per_rank = max(1, self.cfg.batch_size // self.world)
        if self.world > 1:
            order = dist.sampler(dataset, train, self.cfg.seed, epoch)
        elif train:  # the permutation DistributedSampler uses, so one process sees the same global batches
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.cfg.seed + epoch)).tolist()
        else:
            order = range(len(dataset))
        indices = list(order)[skip_batches * per_rank:]
        # its own generator: creating the iterator must not draw from the global RNG that augmentation uses
        generator = torch.Generator().manual_seed(self.cfg.seed + epoch)
        return DataLoader(dataset, batch_size=per_rank, sampler=indices, num_workers=self.cfg.num_workers,
                          generator=generator, pin_memory=self.device.type == "cuda")

    # -- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> FinetuneResult:
        try:
            with self._hold_output():
                self._loop()
        finally:
            dist.shutdown()
        return FinetuneResult(self.model, self.history, self.best,
                              self.out / "best" if self.out and (self.out / "best").is_dir() else None,
                              [str(p) for p in getattr(self.train_set, "skipped", [])])

    @contextlib.contextmanager
    def _hold_output(self) -> Iterator[None]:
        """Rank 0 locks the output folder for the run, checks it may be used, and repairs an interrupted epoch's
        artefacts (see :mod:`zoo.training.output`)."""
        if self.out is None or self.rank != 0:
            if self.cfg.resume:
                self._load_checkpoint()
            yield
            return
        with output.hold(self.out):
            output.check_reusable(self.out, self.cfg.resume, self.cfg.overwrite)
            if self.cfg.resume:
                self._load_checkpoint()
            elif self.cfg.overwrite:
                output.clear(self.out)
            output.recover(self.out, self.best_epoch, self.history)
            yield

    def _loop(self) -> None:
        try:
            while self.epoch < self.cfg.epochs:
                started = time.perf_counter()
                train_loss = self._train_epoch()
                metrics = self._evaluate()
                # the epoch's bookkeeping is one step too: a Ctrl-C here is delivered after the epoch is recorded
                with output.interrupts_deferred():
                    row = {"epoch": self.epoch + 1, "train_loss": train_loss, **metrics,
                           "lr": self.optimizer.param_groups[0]["lr"], "time_s": time.perf_counter() - started}
                    self.epoch, self.position = self.epoch + 1, Position(0, _rng_state())
                    if self.scheduler is not None:
                        self.scheduler.step(self.epoch, row.get("val_loss", train_loss))
                    self.history.append(row)
                    if self.family.after_epoch is not None:
                        self.family.after_epoch(self.model, row)
                    self._end_of_epoch(row)
                if self.rank == 0:
                    _say(epoch_line(row, self.cfg.epochs, best=self.best_epoch == self.epoch))
        except KeyboardInterrupt:
            self._save_checkpoint()
            raise

    def _train_epoch(self) -> float:
        """Train the rest of the current epoch; returns the mean loss over the whole epoch (resumed batches too)."""
        self.model.train()
        if self.cfg.freeze == "backbone":
            self.model.eval()
            self.model.get_classifier().train()
        loader = self._loader(self.train_set, True, self.epoch, skip_batches=self.batches_done)
        start = self.position
        self.position = Position(start.batches_done, _rng_state(), start.loss_sum, start.loss_count)
        bar = _progress(loader, self.cfg.progress and self.rank == 0, f"epoch {self.epoch + 1}/{self.cfg.epochs}")
        for index, batch in enumerate(bar, start=self.batches_done):
            batch = _to(batch, self.device)
            with _autocast(self.device, self.bf16):
                loss = self.step(batch)
            if not torch.isfinite(loss):
                raise ZooError(f"non-finite loss {loss.item()} at epoch {self.epoch + 1}, batch {index}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            # the update and the position that records it form one step: Ctrl-C waits until both are done
            with output.interrupts_deferred():
                self.optimizer.step()
                if self.family.after_step is not None:
                    self.family.after_step(self.model)
                done = self.position
                self.position = Position(index + 1, _rng_state(), done.loss_sum + loss.item(), done.loss_count + 1)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{self.position.loss_sum / self.position.loss_count:.4f}")
        dist.average_norm_statistics(self.model)
        return dist.mean(self.position.loss_sum / max(self.position.loss_count, 1), self.device)

    @torch.no_grad()
    def _evaluate(self) -> Dict[str, float]:
        if self.val_set is None:
            return {}
        self.model.eval()  # no gradients: every rank evaluates its share with the model itself
        total, count, correct = 0.0, 0, 0
        for batch in self._loader(self.val_set, False, 0):
            batch = _to(batch, self.device)
            with _autocast(self.device, self.bf16):
                if self.entry.task == "classification":  # NLL of the predictions, whatever the training loss
                    logits = self.model(batch[0]).float()
                    total += F.cross_entropy(logits, batch[1], reduction="sum").item()
                    correct += int((logits.argmax(1) == batch[1]).sum())
                else:
                    total += self.step_fn(self.model, batch, self.entry).item() * len(batch[1])
            count += len(batch[1])
        row = {"val_loss": dist.mean(total / count, self.device)}
        if self.entry.task == "classification":
            row["val_acc"] = dist.mean(correct / count, self.device)
        return row

    def _end_of_epoch(self, row: Dict[str, float]) -> None:
        score = row.get("val_acc", -row.get("val_loss", row["train_loss"]))
        improved = self.best is None or score > self.best
        if improved:
            self.best, self.best_epoch = score, self.epoch
        if self.out is None or self.rank != 0:
            return
        with output.interrupts_deferred():
            self._write_epoch(row if improved else None)

    def _write_epoch(self, best_row: Optional[Dict[str, float]]) -> None:
        """The epoch's artefacts, committed by the checkpoint (see :mod:`zoo.training.output`); ``best_row`` is
        the epoch's metrics row when it improved on the best model."""
        staged = None
        if best_row is not None:  # complete but invisible until the checkpoint commits it
            from zoo.hub.pretrained import fine_tuned_data, save_pretrained

            # the validation metrics of this epoch only: never the metrics of the weights it started from
            metrics = {k: v for k, v in best_row.items() if k.startswith("val_")}
            record = self._training_record(metrics)
            replace(ModelConfig.of(self.model), training=record).attach(self.model)
            staged = output.stage_best(self.out, self.epoch, functools.partial(
                save_pretrained, self.model, metrics=metrics, data=fine_tuned_data(record)))
        self._save_checkpoint()  # the commit point: everything below is derived from it (see output.recover)
        if staged is not None:
            output.publish_best(self.out, staged)
        output.write_metrics(self.out, self.history)
        _plot_curves(self.history, self.out / output.CURVES)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        if self.out is None or self.rank != 0:
            return
        position = self.position  # one read: the batch count, RNG states and loss sum belong together
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                 "epoch": self.epoch, "history": self.history, "best": self.best, "best_epoch": self.best_epoch,
                 "batches_done": position.batches_done, "rng": _storable(position.rng),
                 "loss_sum": position.loss_sum, "loss_count": position.loss_count,
                 "config": asdict(self.cfg), "data": self._data_signature(), "architecture": self.entry.name,
                 "family_state": self._family_state()}
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def _load_checkpoint(self) -> None:
        from zoo.hub.state import read_torch_checkpoint

        path = (self.out / CHECKPOINT) if self.out else None
        if path is None or not path.is_file():
            raise ZooError(f"resume=True but there is no {CHECKPOINT} in {self.out} (start the run over with "
                           f"--overwrite / overwrite=True)")
        state = read_torch_checkpoint(path, map_location=self.device)
        if state["architecture"] != self.entry.name:
            raise ZooError(f"{path} was written for {state['architecture']!r}, not {self.entry.name!r}")
        self._check_resumable(path, state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.history, self.best = state["epoch"], list(state["history"]), state["best"]
        self.best_epoch = state.get("best_epoch")  # None in checkpoints written before it was recorded
        if state.get("family_state") is not None and self.family.load_training_state is not None:
            self.family.load_training_state(self.model, state["family_state"])
        # the loss sum is missing from older checkpoints: their interrupted epoch's loss covers the resumed part
        _set_rng_state(state["rng"])
        self.position = Position(state["batches_done"], _rng_state(), float(state.get("loss_sum", 0.0)),
                                 int(state.get("loss_count", 0)))

    def _family_state(self) -> Optional[Dict[str, Any]]:
        """The family's run state (``Family.training_state``), checked to be plain values a checkpoint can hold."""
        if self.family.training_state is None:
            return None
        state = self.family.training_state(self.model)
        problem = _not_plain(state, "state")
        if not isinstance(state, dict) or problem:
            raise PluginError(f"family {self.family.name!r}: training_state must return a dict of numbers, strings, "
                              f"booleans, None, lists, dicts and tensors ({problem or type(state).__name__})")
        return state

    def _data_signature(self) -> Dict[str, Any]:
        """What identifies the training data cheaply: its length and class names (when it has them)."""
        classes = getattr(self.train_set, "classes", None)
        return {"train_len": len(self.train_set), "classes": [str(c) for c in classes] if classes else None}

    def _check_resumable(self, path: Path, state: Dict[str, Any]) -> None:
        """Refuse to continue a checkpoint under options or data that would silently mix two different runs
        (:data:`RESUME_MUST_MATCH`); warn about :data:`RESUME_WARN` changes. Older checkpoints lack some keys:
        only what they recorded is compared."""
        saved, now = state.get("config") or {}, asdict(self.cfg)
        differ = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in RESUME_MUST_MATCH if k in saved and saved[k] != now[k]]
        data = state.get("data")
        if data is not None:
            mine = self._data_signature()
            if data.get("train_len") != mine["train_len"]:
                differ.append(f"training samples {data.get('train_len')} -> {mine['train_len']}")
            if data.get("classes") != mine["classes"]:
                differ.append(f"classes {data.get('classes')} -> {mine['classes']}")
        if differ:
            raise ZooError(f"cannot resume {path}: it was trained with different settings or data "
                           f"({'; '.join(differ)}); resume with the original ones, or start a new run with "
                           f"--overwrite / overwrite=True or another --output")
        changed = [f"{k} {saved[k]!r} -> {now[k]!r}" for k in RESUME_WARN if k in saved and saved[k] != now[k]]
        if changed:
            warnings.warn(f"resuming {path} with changed options: {'; '.join(changed)}", RuntimeWarning,
                          stacklevel=3)


def _device(name: Optional[str]) -> torch.device:
    """The device to train on: ``name`` if it is valid and present, else a :class:`ZooError` saying why."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ZooError(f"device must be cpu, cuda, cuda:N or mps, got {name!r} ({exc})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ZooError(f"device {name!r}: CUDA is not available here (torch.cuda.is_available() is False); "
                           f"use --device cpu")
        if device.index is not None and device.index >= count:
            raise ZooError(f"device {name!r}: there are only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ZooError(f"device {name!r}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ZooError(f"device must be cpu, cuda, cuda:N or mps, got {name!r}")
    return device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _not_plain(value: Any, where: str) -> Optional[str]:
    """Where ``value`` holds something ``torch.load(weights_only=True)`` refuses (``None`` when nothing does)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return None
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := _not_plain(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, v in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}"
            if (problem := _not_plain(v, f"{where}[{key!r}]")):
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _timm_create_optimizer():
    """``timm.optim.create_optimizer_v2``, imported without its side effect: importing ``timm.optim`` sets
    ``torch.backends.opt_einsum.strategy = "auto-hq"`` process-wide (timm/optim/kron.py), and with that strategy
    ``torch.einsum`` raises on some valid equations (e.g. "ijk,kl,lm,mn,no,op->ip")."""
    strategy = torch.backends.opt_einsum.strategy
    from timm.optim import create_optimizer_v2

    torch.backends.opt_einsum.strategy = strategy
    return create_optimizer_v2


def _to_channels_last(model: nn.Module) -> None:
    """Channels-last layout for every 4-D parameter and buffer; other ranks (e.g. a BQN layer's
    (levels, out, in, kh, kw) posterior) stay as they are, where ``Module.to(memory_format=)`` would raise."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


def _autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on ``device`` (CPU or CUDA) when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def epoch_line(row: Dict[str, float], epochs: int, best: bool = False) -> str:
    """The one line an epoch leaves on screen: ``epoch 3/10  train_loss 0.4123  val_loss 0.3811  val_acc 0.9167
    lr 1.00e-03  12.3s`` (``*`` marks a new best model)."""
    width = len(str(epochs))
    parts = [f"epoch {row['epoch']:>{width}}/{epochs}"]
    for key, value in row.items():
        if key in ("epoch", "lr", "time_s") or not isinstance(value, (int, float)):
            continue
        parts.append(f"{key} {value:.4f}")
    if "lr" in row:
        parts.append(f"lr {row['lr']:.2e}")
    if "time_s" in row:
        parts.append(f"{row['time_s']:.1f}s")
    return "  ".join(parts) + ("  *" if best else "")


def _say(line: str) -> None:
    """``line`` on stderr, above any progress bar (which is transient: it leaves nothing behind)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(line, file=sys.stderr, flush=True)
        return
    tqdm.write(line, file=sys.stderr)


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


def _rng_state() -> Dict[str, Any]:
    """The RNG states as the libraries return them (cheap: taken after every step)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _storable(state: Dict[str, Any]) -> Dict[str, Any]:
    """``state`` with the Python and NumPy parts as lists, loadable by ``torch.load(weights_only=True)``."""
    version, mt, gauss = state["python"]
    name, keys, pos, has_gauss, cached = state["numpy"]
    return {**state, "python": [version, list(mt), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])  # map_location may have moved them


def curves_figure(history: List[Dict[str, float]]):
    """The figure of ``curves.png``: train and validation loss on one axis, validation accuracy (when measured)
    and the learning rate each on their own, whole epochs on every x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    losses = [k for k in ("train_loss", "val_loss") if all(k in row for row in history)]
    panels = [("loss", losses)] + [(key, [key]) for key in ("val_acc", "lr") if all(key in row for row in history)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(epochs, [row[key] for row in history], marker="o", label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_title({"loss": "loss", "val_acc": "validation accuracy", "lr": "learning rate"}[title])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if title == "loss" and len(keys) > 1:
            ax.legend()
        if title == "lr":
            values = [row["lr"] for row in history]
            if min(values) > 0 and max(values) / min(values) > 20:
                ax.set_yscale("log")
    fig.tight_layout()
    return fig


def _plot_curves(history: List[Dict[str, float]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(history)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
