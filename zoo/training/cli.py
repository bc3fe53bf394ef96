"""``zoo train NAME --data DIR ...``: the command-line face of :func:`zoo.finetune`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Dict


def add_train_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add ``zoo train`` (its flags are :class:`FinetuneConfig`'s fields) to ``sub``; returns its parser."""
    from zoo.training.trainer import FinetuneConfig

    p = sub.add_parser("train", help="fine-tune a model on your data (torchrun-aware)")
    p.add_argument("name", help="model name, local-dir:DIR or hf-hub:ORG/REPO")
    p.add_argument("--data", required=True, help="training data: image-folder tree, CSV, images+masks, .npz")
    p.add_argument("--val-data", help="validation data in the same form")
    p.add_argument("--output", required=True, help="folder for metrics.jsonl, curves.png, checkpoint.pt, best/ "
                   "(new or empty, unless --resume continues the run in it or --overwrite replaces its results)")
    p.add_argument("--num-classes", type=int, help="classes of the new classifier head (default: read from the "
                   "data: class folders, CSV labels, .npz label ids; an error if the data disagrees)")
    p.add_argument("--no-pretrained", action="store_true", help="start from random weights")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the best model when done")
    p.add_argument("--json", action="store_true", help="print the history as JSON")
    p.add_argument("--recipe", action="store_true",
                   help="start from the schedule of NAME's recipe (shipped by its family, zoo.recipes); the flags "
                        "given here override it")
    defaults = FinetuneConfig()
    for f in dataclasses.fields(FinetuneConfig):
        if f.name == "output_dir":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        # absent flags stay absent (SUPPRESS): cmd_train fills them from --recipe, else from FinetuneConfig
        if isinstance(default, bool) or f.name == "channels_last":
            what = {"progress": "a progress bar while an epoch runs (one summary line per epoch is printed "
                                "either way) "}.get(f.name, "")
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=f"{what}(default: {default})")
        else:
            kind = {"grad_clip": float, "input_size": int, "device": str, "decay_epochs": float}.get(
                f.name, type(default))
            p.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=f"(default: {default})")
    p.set_defaults(fn=cmd_train)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from zoo.training.trainer import FinetuneConfig, finetune

    options = _recipe_schedule(args.name) if args.recipe else {}
    options.update({f.name: getattr(args, f.name) for f in dataclasses.fields(FinetuneConfig)
                    if hasattr(args, f.name)})
    options["output_dir"] = args.output
    if args.push_to_hub:  # a typo in the repository id is found before training, not after it
        from zoo.hub.pretrained import check_repo_id

        check_repo_id(args.push_to_hub)
    try:
        result = finetune(args.name, args.data, args.val_data, num_classes=args.num_classes,
                          pretrained=not args.no_pretrained, config=FinetuneConfig(**options))
    except KeyboardInterrupt:
        return _interrupted(Path(args.output))
    if args.push_to_hub and result.best_dir is not None:
        from zoo.hub.pretrained import push_folder_to_hub

        print(push_folder_to_hub(result.best_dir, args.push_to_hub))  # the best epoch, with its metrics in the card
    last = result.history[-1] if result.history else {}
    if args.json:
        print(json.dumps({"history": result.history, "best_dir": str(result.best_dir),
                          "skipped_files": result.skipped_files}, indent=2))
    else:
        print(f"trained {len(result.history)} epoch(s); last: " +
              ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float)))
        if result.skipped_files:
            print(f"skipped {len(result.skipped_files)} unreadable file(s): {', '.join(result.skipped_files)}")
        print(f"best model: {result.best_dir}")
    return 0


def _recipe_schedule(name: str) -> Dict[str, Any]:
    """The ``finetune`` options of ``name``'s recipe; a recipe without one (distillation, a demo's) is refused."""
    from zoo.errors import ZooError
    from zoo.recipes import load_recipe

    recipe = load_recipe(name)
    if recipe.distill is not None or recipe.produced_by is not None:
        how = (f"it distils from {recipe.distill.teacher}" if recipe.distill is not None else
               f"its weights come from {recipe.produced_by}")
        raise ZooError(f"the recipe of {name!r} has no fine-tuning schedule for zoo train --recipe: {how}")
    return dict(recipe.finetune)


def _interrupted(output: Path) -> int:
    """One line on Ctrl-C (exit 130): where the run stands and how to continue it."""
    from zoo.training.output import CHECKPOINT

    if (output / CHECKPOINT).is_file():
        print(f"zoo train: interrupted; the run is saved in {output / CHECKPOINT}: run the same command with "
              f"--resume to continue it", file=sys.stderr)
    else:
        print(f"zoo train: interrupted before the first checkpoint; nothing to resume in {output}", file=sys.stderr)
    return 130
