"""Where a published Seq-KD student loses to its teacher (issue 15, Section 2.5.3): per residual block, the relative error
of the student's output against the teacher's, once on the student's own input (accumulated through the blocks below,
what Eq. 2.10 trains on) and once on the teacher's input to that block (the block's local error); then two probes of the
schedule: the last block tuned for ``--probe-steps`` more Adam steps at the recipe's learning rate and at a tenth of it,
and (``--schedule-blocks K``) the recipe's Seq-KD rerun on its first K blocks at the recipe's epochs per block and at
``--schedule-epochs``, both arms from the same seed, Layer-Decomp start and data order.

    python scripts/study_seq_kd_errors.py resnet32-cp-10pct --threads 2
    python scripts/study_seq_kd_errors.py resnet32-cp-10pct --probe-steps 0 --schedule-blocks 3 --schedule-epochs 9
    python scripts/study_seq_kd_errors.py comparisons/resnet32-cp-10pct-seq-kd-stages --blocks "layer?.?" --probe-steps 0

A variant recipe (comparisons/RUN) is measured on the student in its progress file checkpoints/RUN/distill.pt, finished
or not; its section says how far the run got. Writes benchmarks/tnn_seq_kd_errors.{json,md}; a run replaces what it
measures of the models it names and keeps the rest. Errors are ||student - teacher||^2 / ||teacher||^2 over the first
``--images`` held-out images of the recipe's split, per block of the recipe (or of ``--blocks``).
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

import zoo
from zoo.hub.files import write_text_atomic
from zoo.recipes import Recipe, build_data, load_recipe
from zoo_tnn.compress import accuracy, block_output, compress, run_hooked, tensorial_params

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "tnn_seq_kd_errors"


def block_io(model: nn.Module, blocks: List[str], x: Tensor) -> Dict[str, tuple[Tensor, Tensor]]:
    """(input, output) of each block in ``blocks`` for one no-grad forward of ``x``."""
    seen: Dict[str, tuple[Tensor, Tensor]] = {}
    run_hooked(model, x, [model.get_submodule(b).register_forward_hook(
        lambda mod, inp, out, b=b: seen.__setitem__(b, (inp[0], out))) for b in blocks])
    return seen


def relative_errors(teacher: nn.Module, student: nn.Module, blocks: List[str], x: Tensor) -> List[Dict[str, Any]]:
    """Per block: accumulated (student's own input) and local (teacher's input) relative squared error."""
    t, s = block_io(teacher, blocks, x), block_io(student, blocks, x)
    rows = []
    with torch.no_grad():
        for b in blocks:
            t_in, t_out = t[b]
            energy = t_out.pow(2).sum()
            local = student.get_submodule(b)(t_in)
            rows.append({"block": b, "accumulated": float((s[b][1] - t_out).pow(2).sum() / energy),
                         "local": float((local - t_out).pow(2).sum() / energy)})
    return rows


def probe_last_block(teacher: nn.Module, student: nn.Module, block: str, loader: DataLoader, val: DataLoader,
                     steps: int, lr: float, seed: int) -> Dict[str, Any]:
    """Tune ``block``'s tensorial factors for ``steps`` more Seq-KD steps at ``lr`` (Adam, a fresh optimiser) on a copy
    of ``student``; the mean loss of the first and last quarter of the steps and the held-out accuracy after."""
    torch.manual_seed(seed)
    tuned = copy.deepcopy(student).eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = tensorial_params(tuned.get_submodule(block))
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    losses: List[float] = []
    start = time.process_time()
    while len(losses) < steps:
        for x, _ in loader:
            target = block_output(teacher, block, x, grad=False)
            loss = F.mse_loss(block_output(tuned, block, x, grad=True), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if len(losses) == steps:
                break
    q = max(steps // 4, 1)
    return {"lr": lr, "steps": steps, "loss_first_quarter": sum(losses[:q]) / q,
            "loss_last_quarter": sum(losses[-q:]) / q, "val_acc": accuracy(tuned, val),
            "cpu_seconds": time.process_time() - start}


def probe_schedule(teacher: nn.Module, decomposition: str, rate: float, m: Optional[int], blocks: List[str],
                   loader: DataLoader, x: Tensor, epochs: List[int], lr: float, seed: int, balance: bool,
                   max_steps: Optional[int] = None) -> List[Dict[str, Any]]:
    """Seq-KD (Eq. 2.10) of ``teacher`` on its first ``blocks`` only, once per entry of ``epochs`` (epochs per block),
    each arm from ``seed`` (same Layer-Decomp start, its factors balanced or not as the recipe says, same data order).
    Layers outside ``blocks`` stay dense, so nothing after them is tuned. Per arm: the per-epoch block losses, the
    CPU seconds and the accumulated / local relative errors of ``blocks`` on ``x``."""
    inside = tuple(b + "." for b in blocks)
    dense = [n for n, mod in teacher.named_modules()
             if isinstance(mod, (nn.Conv2d, nn.Linear)) and not n.startswith(inside)]
    arms = []
    for n in epochs:
        torch.manual_seed(seed)
        start = time.process_time()
        student, report = compress(teacher, decomposition, rate, loader, method="seq-kd", m=m, epochs=n, lr=lr,
                                   blocks=blocks, tensorize_kwargs={"exclude": dense}, max_steps=max_steps,
                                   fit_kwargs={"balance": balance}, progress=False)
        arms.append({"epochs": n, "cpu_s": time.process_time() - start, "losses": report.block_losses,
                     "errors": relative_errors(teacher, student.eval(), blocks, x)})
    return arms


def student_of(name: str, recipe: Recipe, checkpoints: Path) -> tuple[nn.Module, Optional[Dict[str, int]]]:
    """The published student of a model's own recipe (no progress), or the student in the progress file
    ``checkpoints/RUN/distill.pt`` of a variant recipe ``comparisons/RUN``, with how far that run got (finished blocks,
    epochs of the next, rows of block losses)."""
    if name == recipe.model:
        return zoo.create(name, pretrained=True).eval(), None
    path = checkpoints / name.rsplit("/", 1)[-1] / "distill.pt"
    if not path.is_file():
        raise SystemExit(f"{name} has no progress file {path}: "
                         f"run scripts/train.py {name} --output {checkpoints} first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    student = zoo.create(recipe.model).eval()
    student.load_state_dict(state["student"])
    return student, {"done": int(state["done"]), "epoch": int(state.get("epoch", 0)),
                     "rows": len(state["report"]["block_losses"])}


def matching(model: nn.Module, pattern: str) -> List[str]:
    """Names of ``model``'s submodules that match the fnmatch ``pattern``, in definition order."""
    return [n for n, _ in model.named_modules() if n and fnmatch.fnmatchcase(n, pattern)]


def study(name: str, images: int, probe_steps: int, schedule_blocks: int, schedule_epochs: int,
          measure: Optional[str] = None, checkpoints: Path = ROOT / "checkpoints") -> Dict[str, Any]:
    recipe: Recipe = load_recipe(name)
    spec = recipe.distill
    if spec is None or spec.method != "seq-kd" or not spec.blocks:
        raise SystemExit(f"{name}'s recipe is not a Seq-KD distillation over named blocks")
    teacher = zoo.create(spec.teacher, pretrained=True).eval()
    student, progress = student_of(name, recipe, checkpoints)
    recipe_blocks = matching(teacher, spec.blocks)
    blocks = matching(teacher, measure) if measure else recipe_blocks
    if not blocks:
        raise SystemExit(f"no module of {spec.teacher} matches {measure or spec.blocks!r}")
    data = build_data(recipe, student.pretrained_cfg)
    val = DataLoader(data.val, batch_size=spec.batch_size)
    x = next(iter(DataLoader(data.val, batch_size=images)))[0]
    result: Dict[str, Any] = {"model": name, "teacher": spec.teacher, "images": len(x), "progress": progress,
                              "recipe_blocks": spec.blocks, "recipe_units": len(recipe_blocks),
                              "recipe_epochs": spec.epochs,
                              "val_acc": accuracy(student, val), "blocks": relative_errors(teacher, student, blocks, x)}
    loader = DataLoader(data.train, batch_size=spec.batch_size, shuffle=True)  # shuffled by the global RNG
    if probe_steps:
        result["probe"] = [probe_last_block(teacher, student, blocks[-1], loader, val, probe_steps, lr, spec.seed)
                           for lr in (spec.lr, spec.lr / 10)]
    if schedule_blocks:
        args = zoo.model_info(name).args
        result["schedule"] = probe_schedule(teacher, args["decomposition"], args["rate"], args.get("m"),
                                            blocks[:schedule_blocks], loader, x, [spec.epochs, schedule_epochs],
                                            spec.lr, spec.seed, spec.balance)
    return result


def markdown(results: Dict[str, Dict[str, Any]]) -> str:
    lines = ["# Seq-KD students: where the error comes from", "",
             "Command: `python scripts/study_seq_kd_errors.py NAME` (one section per model). Relative squared error "
             "||student - teacher||^2 / ||teacher||^2 of each residual block's output on held-out images of the "
             "recipe's split: *accumulated* on the student's own input (what the student computes), *local* on the "
             "teacher's input to that block (the block's own fit). The last-block probe tunes the last block for more "
             "Seq-KD steps on a copy of the student, with a fresh Adam optimiser; the schedule probe reruns "
             "the recipe's Seq-KD on the first blocks at the recipe's epochs per block and at more.", ""]
    for name, r in sorted(results.items()):
        progress = r.get("progress")
        if not progress:
            whose = "published student's"
        elif progress["done"] >= r["recipe_units"]:
            whose = (f"the finished run's student ({progress['done']} blocks of `{r['recipe_blocks']}`, "
                     f"{r['recipe_epochs']} epochs a block);")
        else:
            whose = (f"the run's student after {progress['done']} finished block(s) of `{r['recipe_blocks']}` and "
                     f"{progress['epoch']} epoch(s) of the next ({r['recipe_epochs']} epochs a block);")
        lines += [f"## {name}", "", f"Teacher `{r['teacher']}`; {r['images']} held-out images; {whose} "
                  f"held-out accuracy {100 * r['val_acc']:.2f} %.", "", "| block | accumulated | local |",
                  "|---|---|---|"]
        lines += [f"| {b['block']} | {b['accumulated']:.3f} | {b['local']:.3f} |" for b in r["blocks"]]
        if r.get("probe"):
            lines += ["", f"Probe, last block ({r['blocks'][-1]['block']}):", "",
                      "| lr | steps | loss, first quarter | loss, last quarter | held-out acc |", "|---|---|---|---|---|"]
            lines += [f"| {p['lr']:g} | {p['steps']} | {p['loss_first_quarter']:.4f} | {p['loss_last_quarter']:.4f} | "
                      f"{100 * p['val_acc']:.2f} % |" for p in r["probe"]]
        if r.get("schedule"):
            lines += schedule_markdown(r["schedule"])
        lines.append("")
    return "\n".join(lines)


def schedule_markdown(arms: List[Dict[str, Any]]) -> List[str]:
    """The schedule probe: per block, the mean loss of each epoch and the errors at the end, one column per arm."""
    names = [e["block"] for e in arms[0]["errors"]]
    seconds = ", ".join(f"{a['cpu_s']:.0f} s" for a in arms)
    lines = ["", f"Schedule probe: the recipe's Seq-KD rerun on the first {len(names)} blocks from the same seed, "
             f"Layer-Decomp start and data order (CPU time per arm: {seconds}).", "",
             "| block | measure | " + " | ".join(f"{a['epochs']} epochs/block" for a in arms) + " |",
             "|---|---|" + "---|" * len(arms)]
    for i, b in enumerate(names):
        curves = [", ".join(f"{row['mean_loss']:.3f}" for row in a["losses"] if row["block"] == b) for a in arms]
        lines.append(f"| {b} | mean loss per epoch | " + " | ".join(curves) + " |")
        for key in ("accumulated", "local"):
            values = [f"{a['errors'][i][key]:.3f}" for a in arms]
            lines.append(f"| {b} | {key} error | " + " | ".join(values) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="published Seq-KD students (registry names with a distill recipe) "
                                                 "or variant recipes comparisons/RUN (their progress file's student)")
    parser.add_argument("--blocks", default=None, help="fnmatch pattern of the blocks measured (default: the recipe's)")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints",
                        help="where the progress files of variant runs are (scripts/train.py --output)")
    parser.add_argument("--images", type=int, default=1000, help="held-out images for the relative errors")
    parser.add_argument("--probe-steps", type=int, default=200, help="steps of the last-block probe (0: no probe)")
    parser.add_argument("--schedule-blocks", type=int, default=0,
                        help="rerun Seq-KD on this many first blocks at two schedules (0: no schedule probe)")
    parser.add_argument("--schedule-epochs", type=int, default=9,
                        help="epochs per block of the schedule probe's longer arm (the other is the recipe's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = OUT.with_suffix(".json")
    results: Dict[str, Dict[str, Any]] = json.loads(path.read_text())["models"] if path.is_file() else {}
    for name in args.names:
        # a probe not run this time keeps its earlier result
        results[name] = {**results.get(name, {}),
                         **study(name, args.images, args.probe_steps, args.schedule_blocks, args.schedule_epochs,
                                 args.blocks, args.checkpoints)}
        print(json.dumps(results[name], indent=1))
    write_text_atomic(path, json.dumps({"models": results}, indent=2) + "\n")
    write_text_atomic(OUT.with_suffix(".md"), markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
