"""Compression of a trained network into a TNN (Section 2.5.3).

* ``layer-decomp`` (Eq. 2.8): every layer's factors fitted to its dense kernel (:mod:`zoo_tnn.fit`);
* ``e2e-kd`` (Eq. 2.9): from Layer-Decomp, minimise ``||h(U) - g(U)||^2`` on the logits, all
  tensorial factors at once;
* ``seq-kd`` (Eq. 2.10): from Layer-Decomp, tune one block at a time, bottom-up, on the block's
  output ``||V(l) - V'(l)||^2``, the block's input coming from the already-tuned student.

Optimiser: Adam, learning rate 1e-3 (Section 2.7.1). The student runs in eval mode (batch-norm
statistics and dropout of the teacher are kept) while its factors are trained. ``tune="all"`` also trains the other
parameters that run before each matched output (batch-norm scale and shift, a dense stem), as the dissertation's
official code does (FurongHuang/TTP-NeuralNets-Compression, ``phase1.py``: every trainable variable of the block).

Long runs resume: with ``checkpoint=``, the student, the report and the torch RNG state are written (atomically,
loadable with ``weights_only=True``) after Layer-Decomp and after every epoch (with Adam's state while a Seq-KD block
or the E2E-KD run is unfinished), and an existing file is continued from there.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo_tnn.decompositions import Decomposition
from zoo_tnn.layers import _Tensorial
from zoo_tnn.tensorize import compression_report, tensorize

METHODS = ("layer-decomp", "e2e-kd", "seq-kd")
TUNE = ("tensorial", "all")


@dataclass
class CompressReport:
    """What :func:`compress` did. Accuracies are fractions in [0, 1] (None without ``eval_loader``).

    ``rate`` is what was asked for; ``realised_rate`` is the whole-model ratio (all parameters / the teacher's) and
    ``tensorial_rate`` the layer rate (the tensorised layers' parameters / their dense parameters), as
    :func:`zoo_tnn.compression_report` names them (field names kept: saved progress files use them)."""

    method: str
    decomposition: str
    rate: float
    realised_rate: float
    tensorial_rate: float
    params: int
    dense_params: int
    layer_errors: Dict[str, float] = field(default_factory=dict)
    block_losses: List[Dict[str, Any]] = field(default_factory=list)
    accuracy_teacher: Optional[float] = None
    accuracy_layer_decomp: Optional[float] = None
    accuracy_after: Optional[float] = None
    seconds: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        def pct(v: Optional[float]) -> str:
            return "-" if v is None else f"{100 * v:.2f}%"

        lines = [
            f"method {self.method}, decomposition {self.decomposition}, target rate {self.rate:g}",
            f"parameters {self.params} of {self.dense_params} (whole-model ratio {self.realised_rate:.4f}; "
            f"layer rate {self.tensorial_rate:.4f})",
            f"accuracy: teacher {pct(self.accuracy_teacher)}, Layer-Decomp {pct(self.accuracy_layer_decomp)}, "
            f"after {self.method} {pct(self.accuracy_after)}  ({self.seconds:.1f} s)",
        ]
        for name, err in self.layer_errors.items():
            lines.append(f"  layer {name}: relative reconstruction error {err:.4f}")
        return "\n".join(lines)


def _inputs(batch: Any) -> Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Any], device: Union[str, torch.device] = "cpu") -> float:
    """Top-1 accuracy (fraction) of ``model`` over ``(x, y)`` batches."""
    was = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(-1)
        correct += int((pred == y.to(device)).sum())
        total += int(y.numel())
    model.train(was)
    if total == 0:
        raise ValueError("the evaluation loader yielded no samples")
    return correct / total


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the watched block has produced its output."""


def block_output(model: nn.Module, name: str, x: Tensor, grad: bool) -> Tensor:
    """Output of submodule ``name`` for input ``x``; the forward pass stops right after it."""
    box: List[Tensor] = []

    def hook(mod: nn.Module, inp: Any, out: Tensor) -> None:
        box.append(out)
        raise _Stop

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad):
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not box:
        raise RuntimeError(f"block {name!r} was not called in the forward pass")
    return box[0]


def run_hooked(model: nn.Module, x: Tensor, hooks: Sequence[Any]) -> None:
    """One no-grad forward of ``x`` with ``hooks`` registered, which are removed afterwards."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()


def forward_order(model: nn.Module, x: Tensor, names: Sequence[str]) -> List[str]:
    """``names`` sorted by the order in which the modules first run on ``x``."""
    seen: List[str] = []
    run_hooked(model, x, [model.get_submodule(n).register_forward_pre_hook(
        lambda m, i, n=n: seen.append(n) if n not in seen else None) for n in names])
    return seen + [n for n in names if n not in seen]


def assign_blocks(model: nn.Module, x: Tensor, blocks: Sequence[str], layers: Sequence[str]) -> Dict[str, List[str]]:
    """Map each Seq-KD block (a module name, in forward order) to the tensorial layers it tunes.

    A layer belongs to the first block whose output is produced after the layer's own output (so a
    residual block owns the layers inside it, and an activation module owns the layers since the
    previous block). Layers after the last block become blocks of their own.
    """
    done: List[str] = []
    run_hooked(model, x, [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: done.append(n))
                           for n in dict.fromkeys(list(blocks) + list(layers))])
    owned: Dict[str, List[str]] = {}
    pending: List[str] = []
    block_set, layer_set = set(blocks), set(layers)
    for name in done:
        if name in layer_set and name not in pending and not any(name in v for v in owned.values()):
            pending.append(name)
        if name in block_set and name not in owned:
            owned[name], pending = pending, []
    for name in pending:
        owned[name] = [name]
    missing = [b for b in blocks if b not in owned]
    if missing:
        raise ValueError(f"Seq-KD blocks {missing} were not called in the forward pass")
    return owned


def tensorial_params(module: nn.Module) -> List[nn.Parameter]:
    """The factors of every tensorial layer in ``module`` (what Seq-KD / E2E-KD tune by default)."""
    params: List[nn.Parameter] = []
    for mod in module.modules():
        if isinstance(mod, _Tensorial):
            params += list(mod.parameters())
    return params


def parameter_units(model: nn.Module) -> List[str]:
    """Names of the modules that hold ``model``'s parameters, each parameter in exactly one: the tensorial
    layers (their factors) and every other module with parameters of its own (batch norms, dense layers)."""
    tensorial = [n for n, m in model.named_modules() if isinstance(m, _Tensorial)]
    inside = tuple(f"{n}." for n in tensorial)
    own = [n for n, m in model.named_modules()
           if n and not isinstance(m, _Tensorial) and not n.startswith(inside)
           and any(True for _ in m.parameters(recurse=False))]
    return tensorial + own


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def _train(params: List[nn.Parameter], loss_fn: Callable[[Tensor], Tensor], loader: Iterable[Any], epochs: int,
           lr: float, desc: str, progress: bool, max_steps: Optional[int], device: Any,
           log: List[Dict[str, Any]], block: str, first_epoch: int = 0,
           optimizer_state: Optional[Dict[str, Any]] = None,
           after_epoch: Optional[Callable[[int, torch.optim.Optimizer], None]] = None) -> None:
    """Adam on ``params`` for epochs ``first_epoch..epochs-1`` (continuing ``optimizer_state`` if given);
    ``after_epoch(e, optimizer)`` runs after epoch ``e``."""
    opt = torch.optim.Adam(params, lr=lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    for epoch in range(first_epoch, epochs):
        total, count, first = 0.0, 0, None
        try:
            n = len(loader)  # type: ignore[arg-type]
        except TypeError:
            n = 0
        for step, batch in enumerate(_progress(loader, n, f"{desc} ep{epoch + 1}", progress)):
            if max_steps is not None and step >= max_steps:
                break
            loss = loss_fn(_inputs(batch).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            first = value if first is None else first
            total, count = total + value, count + 1
        log.append({"block": block, "epoch": epoch + 1, "steps": count, "first_loss": first,
                    "mean_loss": total / max(count, 1)})
        if after_epoch is not None:
            after_epoch(epoch, opt)


def _save_progress(path: Path, student: nn.Module, report: "CompressReport", done: int,
                   optimizer: Optional[torch.optim.Optimizer] = None, epoch: int = 0) -> None:
    """Write the student, the report, the RNG state (and the optimiser of the unit in progress) after ``done``
    finished units (Seq-KD blocks, E2E-KD epochs) and ``epoch`` finished epochs of the next Seq-KD block, through a
    temporary file and a rename."""
    state = {"student": student.state_dict(), "report": report.as_dict(), "done": done, "epoch": epoch,
             "rng": torch.get_rng_state(), "optimizer": optimizer.state_dict() if optimizer is not None else None}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_progress(path: Path, method: str, decomposition: str, rate: float) -> Dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    rep = state["report"]
    if (rep["method"], rep["decomposition"], rep["rate"]) != (method, decomposition, float(rate)):
        raise ValueError(f"{path} holds a {rep['method']} run of {rep['decomposition']} at rate {rep['rate']}, not "
                         f"{method} of {decomposition} at {float(rate)}: use another checkpoint file")
    return state


def compress(
    teacher: nn.Module,
    decomposition: Union[str, Decomposition],
    rate: float,
    loader: Iterable[Any],
    method: str = "seq-kd",
    *,
    m: Optional[int] = None,
    epochs: int = 1,
    lr: float = 1e-3,
    blocks: Optional[Sequence[str]] = None,
    tune: str = "tensorial",
    eval_loader: Optional[Iterable[Any]] = None,
    fit_kwargs: Optional[Dict[str, Any]] = None,
    tensorize_kwargs: Optional[Dict[str, Any]] = None,
    max_steps: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    checkpoint: Optional[Union[str, Path]] = None,
) -> tuple[nn.Module, CompressReport]:
    """Compress ``teacher`` into a TNN with ``decomposition`` at ``rate``; the teacher is not modified.

    Args:
        loader: batches ``x`` or ``(x, y)`` used for knowledge distillation (labels are not used).
        method: ``"layer-decomp"``, ``"e2e-kd"`` or ``"seq-kd"``.
        epochs: passes over ``loader`` (per block for Seq-KD).
        blocks: Seq-KD sub-problems as module names whose outputs are matched, run bottom-up; each
            tunes the tensorial layers that run before it (see :func:`assign_blocks`). Default: each
            tensorized layer on its own output (Eq. 2.10).
        tune: ``"tensorial"``: the tensorial layers' factors, the kernels Eqs. 2.9-2.10 minimise over;
            ``"all"``: every parameter that runs between the previous block's output and the block's own
            (batch-norm scale and shift, a dense stem before the first block; for E2E-KD every parameter of the
            student), what the official code tunes. Batch-norm statistics stay frozen either way.
        eval_loader: ``(x, y)`` batches to report accuracy before and after.
        fit_kwargs: options of Layer-Decomp (:func:`zoo_tnn.fit.fit_network`: ``sweeps``, ``cg_iters``, ``balance``).
        max_steps: cap on optimiser steps per epoch (quick runs).
        checkpoint: progress file, written after Layer-Decomp, every epoch and with the final report; if it exists,
            the run continues from it (same teacher, decomposition, rate and method).

    Returns the student and a :class:`CompressReport` (per-layer reconstruction errors, per-block losses).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if tune not in TUNE:
        raise ValueError(f"tune must be one of {TUNE}, got {tune!r}")
    start = time.time()
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    path = Path(checkpoint) if checkpoint is not None else None
    dec_name = decomposition if isinstance(decomposition, str) else decomposition.name
    resumed = _load_progress(path, method, dec_name, rate) if path is not None and path.is_file() else None
    # drawn before any saved RNG state is restored, so that a resumed run draws what an uninterrupted one does
    probe = _inputs(next(iter(loader))).to(device) if method == "seq-kd" else None
    student = tensorize(copy.deepcopy(teacher), decomposition, rate, m=m,
                        init="random" if resumed else "decomp", fit_kwargs=fit_kwargs or {},
                        **(tensorize_kwargs or {}))
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    records = student.tnn_layers  # type: ignore[attr-defined]
    if resumed is not None:
        student.load_state_dict(resumed["student"])
        report = CompressReport(**resumed["report"])
        torch.set_rng_state(resumed["rng"])
        done, epoch_done = int(resumed["done"]), int(resumed.get("epoch", 0))
    else:
        rep = compression_report(student)
        report = CompressReport(
            method=method, decomposition=student.tnn_config["decomposition"], rate=float(rate),  # type: ignore[index]
            realised_rate=rep["whole_model_ratio"], tensorial_rate=rep["layer_rate"], params=rep["params"],
            dense_params=rep["dense_params"],
            layer_errors={r.name: float(r.fit_error) for r in records if r.fit_error is not None},
        )
        if eval_loader is not None:
            report.accuracy_teacher = accuracy(teacher, eval_loader, device)
            report.accuracy_layer_decomp = accuracy(student, eval_loader, device)
        done, epoch_done = 0, 0
        if path is not None:
            _save_progress(path, student, report, done)
    tensorial_names = [r.name for r in records if r.status in ("tensorized", "rank1")]

    def finished(units: int, optimizer: Optional[torch.optim.Optimizer] = None, epoch: int = 0) -> None:
        trained[0], units_done[0] = True, units
        if path is not None:
            report.seconds += time.time() - start_unit[0]
            start_unit[0] = time.time()
            _save_progress(path, student, report, units, optimizer, epoch)

    def unit_params(name: str) -> List[nn.Parameter]:
        module = student.get_submodule(name)
        if tune == "tensorial" or isinstance(module, _Tensorial):
            return tensorial_params(module)
        return list(module.parameters(recurse=False))

    start_unit, trained, units_done = [start], [False], [done]
    if method == "e2e-kd":
        params = tensorial_params(student) if tune == "tensorial" else list(student.parameters())
        for p in params:
            p.requires_grad_(True)

        def e2e_loss(x: Tensor) -> Tensor:
            with torch.no_grad():
                target = teacher(x)
            return F.mse_loss(student(x), target)

        _train(params, e2e_loss, loader, epochs, lr, "e2e-kd", progress, max_steps, device,
               report.block_losses, "<all>", first_epoch=done,
               optimizer_state=resumed["optimizer"] if resumed is not None and done else None,
               after_epoch=lambda e, opt: finished(e + 1, opt))
    elif method == "seq-kd":
        names = list(blocks) if blocks is not None else tensorial_names
        units = tensorial_names if tune == "tensorial" else parameter_units(student)
        owned = assign_blocks(student, probe, names, units)
        if tune == "all":  # dense layers after the last block stay as they are, as in the official code
            owned = {b: layers for b, layers in owned.items() if b in names or b in tensorial_names}
        for index, (name, layers) in enumerate(owned.items()):
            if index < done:
                continue
            resuming = index == done and epoch_done > 0
            params = [p for layer in layers for p in unit_params(layer)]
            if params:
                for p in params:
                    p.requires_grad_(True)

                def block_loss(x: Tensor, name: str = name) -> Tensor:
                    target = block_output(teacher, name, x, grad=False)
                    return F.mse_loss(block_output(student, name, x, grad=True), target)

                _train(params, block_loss, loader, epochs, lr, f"seq-kd {name}", progress, max_steps, device,
                       report.block_losses, name, first_epoch=epoch_done if resuming else 0,
                       optimizer_state=resumed["optimizer"] if resuming and resumed is not None else None,
                       after_epoch=lambda e, opt, i=index: finished(i, opt, e + 1) if e + 1 < epochs else None)
                for p in params:
                    p.requires_grad_(False)
            finished(index + 1)
    for p in student.parameters():
        p.requires_grad_(True)
    if eval_loader is not None:
        report.accuracy_after = accuracy(student, eval_loader, device)
    if resumed is None or trained[0]:  # a finished run loaded again keeps the report it ended with
        report.seconds += time.time() - start_unit[0]
        if path is not None:
            _save_progress(path, student, report, units_done[0])
    return student, report
