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
