"""The long runs committed under checkpoints/ (resumed by `scripts/train.py NAME --output checkpoints --resume` in a
later session): each checkpoint loads without unpickling, still matches its recipe's schedule and model, and agrees
with its metrics.jsonl, so that continuing it trains what the recipe says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from zoo.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RUNS = sorted(p for p in (ROOT / "checkpoints").glob("*") if (p / "checkpoint.pt").is_file())


def test_the_teacher_run_is_committed():
    assert "resnet32" in [run.name for run in RUNS]


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_a_committed_run_continues_its_recipe(run: Path):
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    recipe = load_recipe(run.name)
    assert state["architecture"] == recipe.model == run.name
    for key, value in recipe.finetune.items():
        if key != "progress":
            assert state["config"][key] == value, f"{run.name}: recipe {key}={value!r}, run {state['config'][key]!r}"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == state["history"] and [r["epoch"] for r in rows] == list(range(1, state["epoch"] + 1))
    model = zoo.create(recipe.model)
    model.load_state_dict(state["model"])
    if state["epoch"] < recipe.finetune["epochs"]:  # an unfinished schedule never publishes weights
        assert zoo.model_info(recipe.model).weights is None


DISTILLATIONS = sorted(p for p in (ROOT / "checkpoints").glob("*") if (p / "distill.pt").is_file())


def _recipe_of_run(name: str):
    """A run directory is named after its recipe: a registry model's own, or a variant under comparisons/."""
    return load_recipe(name if name in zoo.list_models() else f"comparisons/{name}")


@pytest.mark.parametrize("run", DISTILLATIONS, ids=[run.name for run in DISTILLATIONS])
def test_a_committed_distillation_continues_its_recipe(run: Path):
    """distill.pt (zoo_tnn.compress's progress file) holds the recipe's method, decomposition and rate, a student
    that loads into the registry model, and one loss row per finished epoch of every finished unit."""
    state = torch.load(run / "distill.pt", map_location="cpu", weights_only=True)
    recipe = _recipe_of_run(run.name)
    spec, args = recipe.distill, zoo.model_info(recipe.model).args
    report = state["report"]
    assert (report["method"], report["decomposition"], report["rate"]) == (spec.method, args["decomposition"],
                                                                           args["rate"])
    zoo.create(recipe.model).load_state_dict(state["student"])  # strict: the same tensors, the same shapes
    epoch = state.get("epoch", 0)  # files written before per-epoch progress have none
    assert 0 <= epoch < max(spec.epochs, 1)
    rows = report["block_losses"]
    if spec.method == "seq-kd":
        assert len(rows) == state["done"] * spec.epochs + epoch
        assert all(row["epoch"] == 1 + i % spec.epochs for i, row in enumerate(rows))
    else:
        assert [row["epoch"] for row in rows] == list(range(1, state["done"] + 1))
