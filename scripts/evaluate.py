"""Measure a model's held-out metrics (the split of its recipe) and compare them with the registry.

    python scripts/evaluate.py bqn-cnn-mnist              # published weights (pretrained=True)
    python scripts/evaluate.py local-dir:runs/NAME/best --recipe NAME
    python scripts/evaluate.py NAME --check               # exit 1 if the registry's numbers are not reproduced
"""

from __future__ import annotations

import argparse
import json
import sys

import zoo
from zoo.recipes import held_out_metrics, load_recipe, not_reproduced


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--recipe", help="recipe name or path (default: the model's own)")
    parser.add_argument("--batch-size", type=int,
                        help="held-out batch size (default: the recipe's, as scripts/train.py measures with)")
    parser.add_argument("--check", action="store_true", help="compare with the registry's recorded metrics")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="relative tolerance of --check")
    args = parser.parse_args()
    model = zoo.create(args.name, pretrained=True)
    recipe = load_recipe(args.recipe or model.pretrained_cfg["architecture"])
    metrics, description = held_out_metrics(model, recipe, args.batch_size)
    entry = zoo.model_info(args.name) if not args.name.startswith(("local-dir:", "hf-hub:")) else None
    recorded = dict(entry.weights.metrics) if entry is not None and entry.weights is not None else {}
    reference = dict(entry.reference.metrics) if entry is not None and entry.reference is not None else {}
    print(json.dumps({"model": args.name, "data": description, "measured": metrics, "recorded": recorded,
                      "dissertation": reference}, indent=2))
    if args.check:
        bad = not_reproduced(recorded, metrics, args.tolerance)
        if bad:
            print(f"not reproduced (recorded, measured): {bad}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
