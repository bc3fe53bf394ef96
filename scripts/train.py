"""Train a registry model from its recipe (scripts/recipes/NAME.yaml), measure it on the held-out split,
write a Hub-ready folder and benchmarks/trained/NAME.json (metrics, data, recipe, per-epoch history), and with
--publish record the weights (sha256, metrics, data) in the registry.

    python scripts/train.py sc-fac-wrn10-1-cifar10-small --publish
    python scripts/train.py resnet32 --output checkpoints --resume   # continue a long run (Ctrl-C saves it)
    python scripts/train.py --list
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import zoo
from zoo.hub.files import write_text_atomic
from zoo.hub.pretrained import WEIGHTS_NAME, push_folder_to_hub
from zoo.metrics import evaluate
from zoo.publish import record_weights
from zoo.recipes import RECIPES, build_data, load_recipe
from zoo.training.trainer import FinetuneConfig, entry_of

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks" / "trained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="model name (its recipe) or a recipe .yaml path")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--output", default="runs", help="parent folder of the run folder")
    parser.add_argument("--publish", action="store_true", help="record the weights in the registry fragment")
    parser.add_argument("--push-to-hub", metavar="REPO_ID",
                        help="upload the measured Hub-ready folder (and record REPO_ID as the weights' hf_hub_id)")
    parser.add_argument("--report-dir", type=Path, default=BENCHMARKS, help="where NAME.json goes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUTPUT/NAME from its checkpoint.pt (exactly where it stopped)")
    args = parser.parse_args()
    if args.list or not args.name:
        print("\n".join(sorted(load_recipe(str(p)).model for p in RECIPES.glob("*.yaml"))))  # patterns as such
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.name)
    if recipe.is_pattern:
        parser.error(f"{args.name} is the recipe of every model matching {recipe.model!r}: name one of them")
    if recipe.produced_by is not None:
        parser.error(f"the weights of {recipe.model} are produced by `{recipe.produced_by}`; its recipe only defines "
                     f"the held-out split (scripts/evaluate.py {recipe.model} --check)")
    cfg = FinetuneConfig(**{**recipe.finetune, "output_dir": str(Path(args.output) / recipe.model),
                            "resume": args.resume})
    torch.manual_seed(cfg.seed)
    model = zoo.create(recipe.model, **recipe.build)
    data = build_data(recipe, model.pretrained_cfg)
    result = zoo.finetune(model, data.train, data.val, config=cfg)
    best = zoo.create(f"local-dir:{result.best_dir}", pretrained=True)
    batches = DataLoader(data.test, batch_size=cfg.batch_size)
    metrics = evaluate(best, batches, entry_of(best))
    description = data.description
    zoo.save_pretrained(best, result.best_dir, metrics=metrics, data=description)
    report = {"model": recipe.model, "command": f"python scripts/train.py {args.name}", "metrics": metrics,
              "data": description, "recipe": recipe.model_dump(), "history": result.history,
              "folder": str(result.best_dir)}
    write_text_atomic(args.report_dir / f"{recipe.model}.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("model", "metrics", "data", "folder")}, indent=2))
    if args.push_to_hub:
        print(push_folder_to_hub(result.best_dir, args.push_to_hub,
                                 commit_message=f"{recipe.model} from scripts/train.py {args.name}"))
    if args.publish:
        weights = result.best_dir / WEIGHTS_NAME
        size_mb = weights.stat().st_size / 2**20
        bundle = size_mb <= recipe.max_bundle_mb
        registry = record_weights(zoo.model_info(recipe.model), weights, metrics, description, bundle=bundle,
                                  hf_hub_id=args.push_to_hub)
        print(f"recorded in {registry} ({size_mb:.2f} MB, {'bundled' if bundle else 'Hub only'})")


if __name__ == "__main__":
    main()
