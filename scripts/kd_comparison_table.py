"""Tables 2.3 / 2.5 as run here (issue 15): Layer-Decomp, E2E-KD and Seq-KD of the ResNet-32 students at one budget,
and TNN (reshaped, m-) against NN decompositions at equal rate, beside the dissertation's numbers.

    python scripts/kd_comparison_table.py

Reads the reports scripts/train.py writes (benchmarks/trained/RUN.json: a model's own recipe is its Seq-KD student, the
variant recipes comparisons/NAME-{layer-decomp,e2e-kd} the other two methods, comparisons/NAME-seq-kd-stages Seq-KD on the
official code's schedule, comparisons/NAME-seq-kd-blocks the zoo's earlier one, block by block,
comparisons/NAME-{balanced,unbalanced} the recipe from the other Layer-Decomp start, which is the Seq-KD run the
other methods are compared with when it shares their start, and a -seed1 suffix on either the same recipe on another
distillation seed) and writes
benchmarks/tnn_resnet32_kd.{md,json}.
A run that has not finished yet is listed as such, with how far its progress file (checkpoints/RUN/distill.pt) got.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, Collection, Dict, List, Optional

import torch

import zoo
from zoo.hub.files import write_text_atomic
from zoo.recipes import load_recipe, recipe_folders

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "benchmarks" / "trained"
CHECKPOINTS = ROOT / "checkpoints"
OUT = ROOT / "benchmarks" / "tnn_resnet32_kd"
METHODS = {"layer-decomp": "-layer-decomp", "e2e-kd": "-e2e-kd", "seq-kd": "", "seq-kd-stages": "-seq-kd-stages"}
SCHEDULES = {"residual blocks, 3 epochs, factors": "-seq-kd-blocks",
             "stages, 3 epochs, all (the zoo's recipe)": "",
             "stages, 50 epochs, all (official code)": "-seq-kd-stages"}
STARTS = ("factors as ALS leaves them", "factor norms balanced")  # Layer-Decomp's factors (zoo_tnn.fit.balance_norms)
SEEDS = {"seed 0": "", "seed 1": "-seed1"}  # distillation seeds: batch order and augmentation, nothing else
PAIRS = [("resnet32-mcp-10pct", "resnet32-cp-10pct"), ("resnet32-mtt-10pct", "resnet32-tt-10pct")]  # TNN vs NN, one rate
STUDENTS = ["resnet32-cp-10pct", "resnet32-tt-10pct", "resnet32-tk-10pct", "resnet32-mcp-10pct", "resnet32-mtt-10pct",
            "resnet32-mtr-10pct", "resnet32-mcp-5pct", "resnet32-mtt-5pct"]


def has_recipe(run: str) -> bool:
    """Whether a family ships the recipe of ``run`` (a model's own, or comparisons/RUN)."""
    return any((folder / f"{run}.yaml").is_file() or (folder / "comparisons" / f"{run}.yaml").is_file()
               for folder in recipe_folders())


def in_progress(run: str) -> Optional[Dict[str, Any]]:
    """How far an unfinished distillation got from its progress file checkpoints/RUN/distill.pt (E2E-KD: finished
    epochs; Seq-KD: finished blocks and epochs of the next); None when it has not started."""
    path = CHECKPOINTS / run / "distill.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {"in_progress": {"method": state["report"]["method"], "done": int(state["done"]),
                            "epoch": int(state.get("epoch", 0))}}


def measured(run: str) -> Optional[Dict[str, Any]]:
    """Test top-1 (%) and held-out accuracies of a finished run; how far it got when it has not finished
    (None: not started), "no recipe" when the zoo has no recipe for it."""
    path = TRAINED / f"{run}.json"
    if not path.is_file():
        if not has_recipe(run):
            return {"no_recipe": True}
        return in_progress(run)
    report = json.loads(path.read_text())
    last = report["history"][-1]
    return {"top1": report["metrics"]["top1"], "val_acc": last.get("val_acc"),
            "teacher_val_acc": last.get("teacher_val_acc"), "data": report["data"]}


def balance_of(run: str) -> bool:
    """Whether the recipe of ``run`` (a model's own, or comparisons/RUN) starts from balanced Layer-Decomp factors."""
    return load_recipe(run if run in zoo.list_models() else f"comparisons/{run}").distill.balance


def compared_start(name: str) -> bool:
    """The Layer-Decomp start (balanced or not) of ``name``'s comparison recipes (other methods, other schedules):
    the model's own recipe's where it has none. Raises if they disagree, so that no row mixes starts."""
    starts = {balance_of(name + suffix) for suffix in {*METHODS.values(), *SCHEDULES.values()}
              if suffix and has_recipe(name + suffix)}
    if len(starts) > 1:
        raise ValueError(f"the comparison recipes of {name} start from different Layer-Decomp factors")
    return starts.pop() if starts else balance_of(name)


def rows() -> List[Dict[str, Any]]:
    out = []
    for name in STUDENTS:
        reference = zoo.model_info(name).reference
        paper = reference.metrics if reference else {}
        row: Dict[str, Any] = {"model": name, "dissertation": {
            "e2e-kd": paper.get("top1_e2e_kd"), "seq-kd": paper.get("top1_seq_kd")}}
        own = balance_of(name)  # the model's own recipe is one start, comparisons/NAME-(un)balanced the other
        other = name + ("-unbalanced" if own else "-balanced")
        seq_kd = {own: (name, measured(name)), not own: (other, measured(other))}  # by start: run, result
        start = compared_start(name)
        runs = {suffix: measured(name + suffix) for suffix in {*METHODS.values(), *SCHEDULES.values()} if suffix}
        runs[""] = seq_kd[start][1]  # Seq-KD from the start the other methods have
        row.update({method: runs[suffix] for method, suffix in METHODS.items()})
        row["start"] = STARTS[start]
        row["schedules"] = {schedule: runs[suffix] for schedule, suffix in SCHEDULES.items()}
        row["published"] = seq_kd[own][1]
        row["starts"] = {STARTS[balanced]: result for balanced, (_, result) in seq_kd.items()}
        row["start_variant"] = STARTS[not own]
        row["seeds"] = {STARTS[balanced]: {seed: measured(run + suffix) if suffix else result
                                           for seed, suffix in SEEDS.items()}
                        for balanced, (run, result) in seq_kd.items()}
        out.append(row)
    return out


def mean_of(top1: List[float]) -> Decimal:
    """The mean of test accuracies recorded to hundredths, rounded half up to hundredths (exact: no float ties)."""
    return (sum(Decimal(str(v)) for v in top1) / len(top1)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def no_recipe(results: List[Optional[Dict[str, Any]]]) -> bool:
    """Whether none of the variant runs ``results`` has a recipe (a table lists a model only where one has)."""
    return all(r is not None and r.get("no_recipe") for r in results)


def markdown(table: List[Dict[str, Any]], teacher_top1: float) -> str:
    def cell(result: Optional[Dict[str, Any]]) -> str:
        if result is None:
            return "not run yet"
        if "in_progress" in result:
            at = result["in_progress"]
            if at["method"] == "e2e-kd":
                return f"in progress: {at['done']} epoch(s) done"
            return f"in progress: {at['done']} block(s) done, {at['epoch']} epoch(s) of the next"
        return "no recipe" if result.get("no_recipe") else f"{result['top1']:.2f} %"

    def paper(value: Optional[float]) -> str:
        return "—" if value is None else f"{value:.2f} %"

    lines = ["# ResNet-32 students on CIFAR-10: Layer-Decomp, E2E-KD, Seq-KD (Tables 2.3-2.5)", "",
             "Command: `python scripts/kd_comparison_table.py` (reads `benchmarks/trained/`). Top-1 on the official "
             f"10,000 CIFAR-10 test images. Teacher: the zoo's `resnet32`, {teacher_top1:.2f} % (the dissertation's: "
             "93.2 %). Every method starts from Layer-Decomp's initialisation and the same 45,000 training images; "
             "E2E-KD gets the optimiser steps Seq-KD takes in all (recipes in `zoo_tnn/recipes/comparisons/`). "
             "Seq-KD is the zoo's recipe: ResNet's 3 stages one at a time, 3 epochs each, every parameter of the "
             "stage, as the dissertation's official code does but with its 50 epochs cut to 3; Seq-KD, 50 epochs is "
             "the official code's schedule (`docs/fidelity.md`). Every method of a row starts from the same "
             "Layer-Decomp factors (its start: as ALS leaves them, or rescaled to equal norms; the same kernels): "
             "where a row's comparison runs start otherwise than the published student, its Seq-KD cell is the "
             "published recipe's run from their start (`comparisons/NAME-unbalanced`), and the last table has both.",
             "",
             "| model | start | Layer-Decomp | E2E-KD | Seq-KD | Seq-KD, 50 epochs | dissertation E2E-KD | "
             "dissertation Seq-KD |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| `{r['model']}` | {r['start']} | {cell(r['layer-decomp'])} | {cell(r['e2e-kd'])} | "
                     f"{cell(r['seq-kd'])} | {cell(r['seq-kd-stages'])} | {paper(r['dissertation']['e2e-kd'])} | "
                     f"{paper(r['dissertation']['seq-kd'])} |")
    by_name = {r["model"]: r for r in table}
    lines += ["", "TNN (reshaped) against NN at the same rate, the published students (Seq-KD, Table 2.4):", "",
              "| TNN | NN | TNN here | NN here | TNN dissertation | NN dissertation |", "|---|---|---|---|---|---|"]
    for tnn, nn in PAIRS:
        a, b = by_name[tnn], by_name[nn]
        lines.append(f"| `{tnn}` | `{nn}` | {cell(a['published'])} | {cell(b['published'])} | "
                     f"{paper(a['dissertation']['seq-kd'])} | {paper(b['dissertation']['seq-kd'])} |")
    def variant_table(intro: str, key: str, columns: Collection[str],
                      variants: Callable[[Dict[str, Any]], List[Optional[Dict[str, Any]]]]) -> List[str]:
        """``intro`` and a table of each model's ``r[key]`` by ``columns``, for the models where one of
        ``variants(r)`` has a recipe."""
        out = ["", intro, "", "| model | " + " | ".join(columns) + " | dissertation Seq-KD |",
               "|---|" + "---|" * (len(columns) + 1)]
        for r in table:
            if no_recipe(variants(r)):
                continue
            out.append(f"| `{r['model']}` | " + " | ".join(cell(r[key][c]) for c in columns) +
                       f" | {paper(r['dissertation']['seq-kd'])} |")
        return out

    lines += variant_table(
        "Seq-KD schedules (`docs/fidelity.md`): what is matched and trained together (residual blocks with their "
        "factors, or stages with every parameter in them: factors, batch-norm scale and shift, the stem with the "
        "first) and for how many epochs each, from the start of the row's comparison runs (first table); the models "
        "that have a variant recipe:", "schedules", SCHEDULES,
        lambda r: [r["schedules"][schedule] for schedule, suffix in SCHEDULES.items() if suffix])
    lines += variant_table(
        "Layer-Decomp's start (`docs/fidelity.md`): Seq-KD on the zoo's schedule from the factors as ALS leaves them, "
        "or rescaled to equal norms (the same kernels: Layer-Decomp's accuracy is the same); the models that have a "
        "variant recipe:", "starts", STARTS, lambda r: [r["starts"][r["start_variant"]]])
    lines += ["", "Run-to-run spread: Seq-KD on the zoo's schedule from one start, on distillation seeds 0 (the runs "
              "above) and 1 (another batch order and augmentation; the same data split and Layer-Decomp factors); the "
              "recipes that have a seed variant:", "",
              "| model | start | " + " | ".join(SEEDS) + " | mean | dissertation Seq-KD |",
              "|---|---|" + "---|" * (len(SEEDS) + 2)]
    for r in table:
        for start, runs in r["seeds"].items():
            if no_recipe([runs[seed] for seed, suffix in SEEDS.items() if suffix]):
                continue
            top1 = [result.get("top1") if result else None for result in runs.values()]
            mean = f"{mean_of(top1):.2f} %" if None not in top1 else "—"  # once every seed has finished
            lines.append(f"| `{r['model']}` | {start} | " + " | ".join(cell(runs[seed]) for seed in SEEDS) +
                         f" | {mean} | {paper(r['dissertation']['seq-kd'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    table = rows()
    teacher_top1 = zoo.model_info("resnet32").weights.metrics["top1"]
    write_text_atomic(OUT.with_suffix(".json"), json.dumps({"teacher_top1": teacher_top1, "rows": table},
                                                           indent=2) + "\n")
    text = markdown(table, teacher_top1)
    write_text_atomic(OUT.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
