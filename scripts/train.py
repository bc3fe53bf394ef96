"""Train a registry model from its recipe (its family's recipes/NAME.yaml, see zoo.recipes), measure it on the held-out split,
write a Hub-ready folder and benchmarks/trained/NAME.json (metrics, data, recipe, per-epoch history), and with
--publish record the weights (sha256, metrics, data) in the registry.

    python scripts/train.py sc-fac-wrn10-1-cifar10-small --publish
    python scripts/train.py resnet32 --output checkpoints --resume   # continue a long run (Ctrl-C saves it)
    python scripts/train.py comparisons/resnet32-cp-10pct-e2e-kd --output checkpoints  # a variant recipe
    python scripts/train.py --list
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

import zoo
from zoo import ModelConfig
from zoo.hub.files import write_text_atomic
from zoo.hub.pretrained import WEIGHTS_NAME, push_folder_to_hub
from zoo.metrics import evaluate
from zoo.publish import record_weights
from zoo.recipes import Recipe, build_data, load_recipe, recipe_files
from zoo.training.trainer import CHECKPOINT, FinetuneConfig, entry_of

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks" / "trained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="model name (its recipe), a variant recipe (comparisons/NAME-e2e-kd) or a recipe .yaml path")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--output", default="runs", help="parent folder of the run folder")
    parser.add_argument("--publish", action="store_true", help="record the weights in the registry fragment")
    parser.add_argument("--push-to-hub", metavar="REPO_ID",
                        help="upload the measured Hub-ready folder (and record REPO_ID as the weights' hf_hub_id)")
    parser.add_argument("--report-dir", type=Path, default=BENCHMARKS, help="where NAME.json goes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT/NAME from its checkpoint (exactly where it stopped); "
                             "start it when there is none yet")
    args = parser.parse_args()
    _interrupt_on_signals()
    if args.list or not args.name:
        print("\n".join(sorted(load_recipe(str(p)).model for p in recipe_files())))  # patterns as such
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.name)
    if recipe.is_pattern:
        parser.error(f"{args.name} is the recipe of every model matching {recipe.model!r}: name one of them")
    if recipe.produced_by is not None:
        parser.error(f"the weights of {recipe.model} are produced by `{recipe.produced_by}`; its recipe only defines "
                     f"the held-out split (scripts/evaluate.py {recipe.model} --check)")
    # a recipe named otherwise (comparisons/NAME-e2e-kd, or a .yaml path) is a variant of the model's own: its run
    # folder and report take the file's name, and it cannot publish the model's weights
    variant = args.name.endswith((".yaml", ".yml")) or "/" in args.name
    run_name = Path(args.name).stem if variant else recipe.model
    if args.publish and run_name != recipe.model:
        parser.error(f"{args.name} is a variant recipe of {recipe.model}: only its own recipe ({recipe.model}) "
                     "publishes its weights")
    run_dir = Path(args.output) / run_name
    try:
        trained = distill(recipe, run_dir, args.resume) if recipe.distill is not None else finetune(recipe, run_dir,
                                                                                                    args.resume)
    except KeyboardInterrupt:
        print(f"interrupted; the run is saved in {run_dir}: continue it with "
              f"python scripts/train.py {args.name} --output {args.output} --resume", file=sys.stderr)
        sys.exit(130)
    best = zoo.create(f"local-dir:{trained.folder}", pretrained=True)
    config = ModelConfig.of(best)  # the card cites the registry's reference as it is now, not as the run began
    reference = zoo.model_info(recipe.model).reference
    replace(config, entry=config.entry_with(reference=reference.model_dump() if reference else None)).attach(best)
    metrics = evaluate(best, DataLoader(trained.test, batch_size=trained.batch_size), entry_of(best))
    description = trained.description
    zoo.save_pretrained(best, trained.folder, metrics=metrics, data=description)
    report = {"model": recipe.model, "run": run_name, "command": f"python scripts/train.py {args.name}",
              "metrics": metrics,
              "data": description, "recipe": recipe.model_dump(), "history": trained.history,
              "folder": str(trained.folder)}
    write_text_atomic(args.report_dir / f"{run_name}.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("model", "metrics", "data", "folder")}, indent=2))
    if args.push_to_hub:
        print(push_folder_to_hub(trained.folder, args.push_to_hub,
                                 commit_message=f"{recipe.model} from scripts/train.py {args.name}"))
    if args.publish:
        weights = trained.folder / WEIGHTS_NAME
        size_mb = weights.stat().st_size / 2**20
        bundle = size_mb <= recipe.max_bundle_mb
        registry = record_weights(zoo.model_info(recipe.model), weights, metrics, description, bundle=bundle,
                                  hf_hub_id=args.push_to_hub)
        print(f"recorded in {registry} ({size_mb:.2f} MB, {'bundled' if bundle else 'Hub only'})")


def _interrupt_on_signals() -> None:
    """Ctrl-C, ``kill -INT`` and ``kill -TERM`` all stop a run the way Ctrl-C does (the trainer writes its
    checkpoint), also for a run started in the background, where the shell leaves SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


class Trained(NamedTuple):
    """A finished run: its Hub-ready folder, per-epoch (or per-block) history, data description, the test set the
    published metrics are measured on and the batch size to measure with."""

    folder: Path
    history: List[Dict[str, Any]]
    description: str
    test: Dataset
    batch_size: int


def finetune(recipe: Recipe, run_dir: Path, resume: bool) -> Trained:
    """Train ``recipe.model`` with its ``finetune`` schedule (zoo.finetune); the best epoch lands in run_dir/best."""
    resume = resume and (run_dir / CHECKPOINT).is_file()
    cfg = FinetuneConfig(**{**recipe.finetune, "output_dir": str(run_dir), "resume": resume})
    torch.manual_seed(cfg.seed)
    model = zoo.create(recipe.model, **recipe.build)
    data = build_data(recipe, model.pretrained_cfg)
    result = zoo.finetune(model, data.train, data.val, config=cfg)
    return Trained(result.best_dir, result.history, f"{data.description}; {_schedule(cfg, len(result.history))}",
                   data.test, cfg.batch_size)


def _schedule(cfg: FinetuneConfig, epochs_run: int) -> str:
    """The schedule as run, for the card and the registry (a run stopped short says so)."""
    warmup = f" after {cfg.warmup_epochs} warm-up epoch(s)" if cfg.warmup_epochs else ""
    decay = "a constant learning rate" if cfg.scheduler == "none" else f"{cfg.scheduler} decay{warmup}"
    return (f"schedule: {epochs_run} of {cfg.epochs} epochs run from a random initialisation, {cfg.optimizer}, "
            f"learning rate {cfg.lr:g}, batch {cfg.batch_size}, weight decay {cfg.weight_decay:g}, {decay}, seed "
            f"{cfg.seed}, the weights of the epoch best on the held-out split")


def distill(recipe: Recipe, run_dir: Path, resume: bool) -> Trained:
    """Distil ``recipe.model`` from its teacher's published weights (zoo_tnn.compress, Section 2.5.3) into
    ``run_dir/best``; progress is kept in ``run_dir/distill.pt`` after every epoch."""
    from zoo_tnn.compress import compress

    spec = recipe.distill
    progress = run_dir / "distill.pt"
    if progress.exists() and not resume:
        raise SystemExit(f"{progress} holds an unfinished or finished distillation: pass --resume to continue it, "
                         "or remove it to start over")
    torch.manual_seed(spec.seed)
    teacher = zoo.create(spec.teacher, pretrained=True)
    model = zoo.create(recipe.model, **recipe.build)
    args = zoo.model_info(recipe.model).args
    data = build_data(recipe, model.pretrained_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    blocks = ([n for n, _ in teacher.named_modules() if n and fnmatch.fnmatchcase(n, spec.blocks)]
              if spec.blocks else None)
    if spec.blocks and not blocks:
        raise SystemExit(f"no module of {spec.teacher} matches the recipe's blocks pattern {spec.blocks!r}")
    # no generator: the shuffle draws from the global RNG, which compress() checkpoints, so --resume is exact
    loader = DataLoader(data.train, batch_size=spec.batch_size, shuffle=True,
                        pin_memory=device == "cuda")
    student, report = compress(teacher, args["decomposition"], args["rate"], loader, method=spec.method,
                               m=args.get("m"), epochs=spec.epochs, lr=spec.lr, blocks=blocks, tune=spec.tune,
                               eval_loader=DataLoader(data.val, batch_size=spec.batch_size), device=device,
                               progress=False, checkpoint=progress, fit_kwargs={"balance": spec.balance})
    model.load_state_dict(student.state_dict())
    teacher_weights = zoo.model_info(spec.teacher).weights
    if spec.method == "layer-decomp":
        how = "every layer fitted to its dense kernel by ALS, no training"
    else:
        units = (" in all" if spec.method == "e2e-kd" else
                 f" per block, {len(blocks)} blocks ({blocks[0]} .. {blocks[-1]})" if blocks else
                 " per tensorial layer")
        tuned = ("" if spec.tune == "tensorial" else
                 ", each block's every parameter trained, batch-norm scale/shift and the dense layers before it "
                 "(the stem) included, batch-norm statistics frozen")
        start = "Layer-Decomp init" + (" (factor norms balanced)" if spec.balance else "")
        how = f"{start}, Adam lr {spec.lr:g}, batch {spec.batch_size}, {spec.epochs} epoch(s){units}{tuned}"
    description = (f"{spec.method} from {spec.teacher} (weights sha256 {teacher_weights.sha256[:12]}...; {how}); "
                   f"{data.description}")
    folder = zoo.save_pretrained(model.cpu(), run_dir / "best", data=description)
    write_text_atomic(run_dir / "compress_report.json", json.dumps(report.as_dict(), indent=2) + "\n")
    history = [{"step": "layer-decomp", "val_acc": report.accuracy_layer_decomp},
               *({"step": row["block"], **{k: v for k, v in row.items() if k != "block"}} for row in report.block_losses),
               {"step": spec.method, "val_acc": report.accuracy_after, "teacher_val_acc": report.accuracy_teacher}]
    return Trained(folder, history, description, data.test, spec.batch_size)


if __name__ == "__main__":
    main()
