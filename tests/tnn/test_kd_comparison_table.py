"""scripts/kd_comparison_table.py: each cell says what the run's files say (finished, in progress, not started, no
recipe), and a schedule row is listed only where a variant recipe exists."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kd_comparison_table.py"


@pytest.fixture()
def table(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("kd_comparison_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "TRAINED", tmp_path / "trained")
    monkeypatch.setattr(module, "CHECKPOINTS", tmp_path / "checkpoints")
    (tmp_path / "trained").mkdir()
    return module


def test_a_cell_is_what_the_run_files_say(table, tmp_path):
    assert table.measured("resnet32-cp-10pct-no-such-variant") == {"no_recipe": True}
    assert table.measured("resnet32-cp-10pct-e2e-kd") is None  # a recipe, nothing run
    run = tmp_path / "checkpoints" / "resnet32-cp-10pct-seq-kd-stages"
    run.mkdir(parents=True)
    torch.save({"done": 1, "epoch": 7, "student": {}, "report": {"method": "seq-kd"}}, run / "distill.pt")
    assert table.measured("resnet32-cp-10pct-seq-kd-stages") == {"in_progress": {"method": "seq-kd", "done": 1,
                                                                                 "epoch": 7}}
    (tmp_path / "trained" / "resnet32-cp-10pct-seq-kd-stages.json").write_text(json.dumps({
        "metrics": {"top1": 88.0}, "data": "d", "history": [{"val_acc": 0.9, "teacher_val_acc": 0.91}]}))
    assert table.measured("resnet32-cp-10pct-seq-kd-stages")["top1"] == 88.0  # the report wins once it exists


def _report(tmp_path, run: str, top1: float) -> None:
    (tmp_path / "trained" / f"{run}.json").write_text(json.dumps({
        "metrics": {"top1": top1}, "data": "d", "history": [{"val_acc": 0.5}]}))


def test_the_markdown_prints_every_state_and_lists_schedules_only_with_a_variant(table, tmp_path):
    run = tmp_path / "checkpoints" / "resnet32-cp-10pct-seq-kd-stages"
    run.mkdir(parents=True)
    torch.save({"done": 0, "epoch": 8, "student": {}, "report": {"method": "seq-kd"}}, run / "distill.pt")
    e2e = tmp_path / "checkpoints" / "resnet32-cp-10pct-e2e-kd"
    e2e.mkdir()
    torch.save({"done": 4, "epoch": 0, "student": {}, "report": {"method": "e2e-kd"}}, e2e / "distill.pt")
    _report(tmp_path, "resnet32-cp-10pct-unbalanced", 83.11)
    _report(tmp_path, "resnet32-cp-10pct", 84.28)
    text = table.markdown(table.rows(), 91.77)
    cp = next(line for line in text.splitlines() if line.startswith("| `resnet32-cp-10pct` |"))  # Tables 2.3-2.5
    # the comparison recipes of CP start from ALS's factors: Seq-KD is the published recipe's run from that start
    assert cp == ("| `resnet32-cp-10pct` | factors as ALS leaves them | not run yet | in progress: 4 epoch(s) done | "
                  "83.11 % | in progress: 0 block(s) done, 8 epoch(s) of the next | 86.93 % | 88.50 % |")
    pairs = text.split("Table 2.4")[1].split("Seq-KD schedules")[0]
    assert "| `resnet32-mcp-10pct` | `resnet32-cp-10pct` | not run yet | 84.28 % |" in pairs  # the published ones
    schedules = text.split("Seq-KD schedules")[1].split("Layer-Decomp's start")[0]
    assert "| `resnet32-cp-10pct` | not run yet | 83.11 % | in progress" in schedules
    assert "`resnet32-tk-10pct`" not in schedules  # no variant recipe of its schedule


def test_the_start_table_pairs_each_recipe_with_its_variant_from_the_other_start(table, tmp_path):
    for run, top1 in [("resnet32-cp-10pct", 84.28), ("resnet32-cp-10pct-unbalanced", 83.11),
                      ("resnet32-mtr-10pct", 70.29), ("resnet32-mtr-10pct-unbalanced", 10.0)]:
        _report(tmp_path, run, top1)
    starts = table.markdown(table.rows(), 91.77).split("Layer-Decomp's start")[1].split("Run-to-run spread")[0]
    assert "| `resnet32-cp-10pct` | 83.11 % | 84.28 % | 88.50 % |" in starts
    assert "| `resnet32-mtr-10pct` | 10.00 % | 70.29 % | — |" in starts
    assert "`resnet32-mtt-5pct`" not in starts  # no variant recipe from the other start


def test_a_row_whose_comparison_recipes_start_differently_is_refused(table, monkeypatch):
    real = table.balance_of
    monkeypatch.setattr(table, "balance_of", lambda run: run.endswith("-e2e-kd") or real(run))
    with pytest.raises(ValueError, match="resnet32-cp-10pct start from different Layer-Decomp factors"):
        table.compared_start("resnet32-cp-10pct")
    assert table.compared_start("resnet32-mtr-10pct") is True  # no comparison recipe: its own start


def test_the_seed_table_lists_each_start_that_has_a_seed_variant(table, tmp_path):
    for run, top1 in [("resnet32-cp-10pct", 84.28), ("resnet32-cp-10pct-seed1", 83.23)]:
        _report(tmp_path, run, top1)
    seeds = table.markdown(table.rows(), 91.77).split("Run-to-run spread")[1]
    assert "| `resnet32-cp-10pct` | factor norms balanced | 84.28 % | 83.23 % | 83.76 % | 88.50 % |" in seeds  # mean
    assert "| `resnet32-cp-10pct` | factors as ALS leaves them | not run yet | not run yet | — | 88.50 % |" in seeds
    assert "| `resnet32-tk-10pct` | factor norms balanced | not run yet | not run yet |" in seeds
    assert "| `resnet32-tt-10pct` | factors as ALS leaves them |" not in seeds  # no seed recipe from that start
