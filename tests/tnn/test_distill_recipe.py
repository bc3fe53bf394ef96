"""scripts/train.py on a recipe with a ``distill`` section: a student distilled from a teacher's published weights,
measured on the recipe's test split, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.errors import ZooError
from zoo.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """model: lenet5-mcp-10pct
data: {source: mnist, holdout: 2000, seed: 0, limit: 256}
distill: {teacher: lenet5, method: seq-kd, epochs: 1, lr: 0.001, batch_size: 64, blocks: "act[234]"}
"""


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args, "--threads", "1"],
                          capture_output=True, text=True, timeout=600)


def test_a_distill_recipe_trains_a_student_from_the_teacher_and_measures_it(tmp_path, shared_data):
    recipe = tmp_path / "lenet5-mcp-10pct.yaml"
    recipe.write_text(RECIPE)
    done = _train(str(recipe), "--output", str(tmp_path / "runs"), "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "lenet5-mcp-10pct.json").read_text())
    assert [row["step"] for row in report["history"]] == ["layer-decomp", "act2", "act3", "act4", "seq-kd"]
    assert report["history"][-1]["teacher_val_acc"] > 0.95  # the teacher's published weights were loaded
    assert [row["steps"] for row in report["history"][1:4]] == [4, 4, 4]  # 256 images in batches of 64 per block
    assert 0 < report["metrics"]["top1"] < 100 and report["metrics"]["nll"] > 0
    assert "seq-kd from lenet5 (weights sha256" in report["data"]
    assert "Layer-Decomp init (factor norms balanced)" in report["data"]  # the recipe default
    student = zoo.create(f"local-dir:{tmp_path / 'runs' / 'lenet5-mcp-10pct' / 'best'}", pretrained=True)
    assert sum(p.numel() for p in student.parameters()) == sum(
        p.numel() for p in zoo.create("lenet5-mcp-10pct").parameters())
    again = _train(str(recipe), "--output", str(tmp_path / "runs"), "--report-dir", str(tmp_path))
    assert again.returncode != 0 and "pass --resume to continue it" in again.stderr
    resumed = _train(str(recipe), "--output", str(tmp_path / "runs"), "--report-dir", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "lenet5-mcp-10pct.json").read_text())["metrics"] == report["metrics"]


def test_a_variant_recipe_runs_under_its_own_name_and_cannot_publish(tmp_path):
    recipe = tmp_path / "lenet5-mcp-10pct-layer-decomp.yaml"
    recipe.write_text(RECIPE.replace("method: seq-kd, epochs: 1", "method: layer-decomp, epochs: 0"))
    refused = _train(str(recipe), "--output", str(tmp_path / "runs"), "--report-dir", str(tmp_path), "--publish")
    assert refused.returncode != 0 and "is a variant recipe of lenet5-mcp-10pct" in refused.stderr
    done = _train(str(recipe), "--output", str(tmp_path / "runs"), "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "lenet5-mcp-10pct-layer-decomp.json").read_text())
    assert report["model"] == "lenet5-mcp-10pct" and report["run"] == "lenet5-mcp-10pct-layer-decomp"
    assert [row["step"] for row in report["history"]] == ["layer-decomp", "layer-decomp"]
    assert (tmp_path / "runs" / "lenet5-mcp-10pct-layer-decomp" / "best" / "model.safetensors").is_file()


def test_a_recipe_cannot_both_finetune_and_distill(tmp_path):
    recipe = tmp_path / "both.yaml"
    recipe.write_text(RECIPE + "finetune: {epochs: 1}\n")
    with pytest.raises(ZooError, match="either a finetune schedule or a distill section"):
        load_recipe(str(recipe))
