"""scripts/study_seq_kd_errors.py: the accumulated / local split of a student's per-block error, on toy chains whose
answer is known."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study_seq_kd_errors.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_seq_kd_errors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3))).eval()


def test_an_exact_student_has_no_error(study):
    teacher = chain()
    rows = study.relative_errors(teacher, copy.deepcopy(teacher), ["0", "1", "2"], torch.randn(64, 8))
    assert [r["block"] for r in rows] == ["0", "1", "2"]
    assert all(r["accumulated"] < 1e-12 and r["local"] < 1e-12 for r in rows)


def test_an_error_in_the_first_block_is_local_there_and_only_accumulated_above(study):
    teacher = chain()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student[0][0].weight.add_(0.3 * torch.randn(8, 8))
    x = torch.randn(256, 8)
    first, second, third = study.relative_errors(teacher, student, ["0", "1", "2"], x)
    assert first["local"] == pytest.approx(first["accumulated"]) and first["local"] > 1e-3
    assert second["local"] < 1e-12 and third["local"] < 1e-12
    assert second["accumulated"] > 1e-4 and third["accumulated"] > 1e-5
    # the definition, by hand for the second block
    with torch.no_grad():
        t_mid, s_mid = teacher[0](x), student[0](x)
        expected = (student[1](s_mid) - teacher[1](t_mid)).pow(2).sum() / teacher[1](t_mid).pow(2).sum()
    assert second["accumulated"] == pytest.approx(float(expected), rel=1e-5)


def test_schedule_probe_tunes_only_the_named_blocks_from_one_start(study):
    from torch.utils.data import DataLoader, TensorDataset

    from zoo_tnn.backbones import build_backbone

    torch.manual_seed(0)
    teacher = build_backbone("resnet20").eval()
    x = torch.randn(16, 3, 16, 16)
    loader = DataLoader(TensorDataset(x), batch_size=4, shuffle=True)
    arms = study.probe_schedule(teacher, "cp", 0.2, None, ["layer1.0", "layer1.1"], loader, x[:8], [1, 3],
                                lr=1e-3, seed=0, balance=True, max_steps=2)
    assert [a["epochs"] for a in arms] == [1, 3]
    # nothing after the named blocks is tuned: the layers outside them stay dense
    assert [r["block"] for r in arms[0]["losses"]] == ["layer1.0", "layer1.1"]
    assert [r["block"] for r in arms[1]["losses"]] == ["layer1.0"] * 3 + ["layer1.1"] * 3
    # both arms start from the same Layer-Decomp factors and draw the same batches: their first epoch is the same
    assert arms[1]["losses"][0]["first_loss"] == pytest.approx(arms[0]["losses"][0]["first_loss"], rel=1e-6)
    assert arms[1]["losses"][0]["mean_loss"] == pytest.approx(arms[0]["losses"][0]["mean_loss"], rel=1e-6)
    for arm in arms:
        assert [r["block"] for r in arm["errors"]] == ["layer1.0", "layer1.1"]
        assert all(0 < r["local"] < 1 and r["accumulated"] > 0 for r in arm["errors"])
    # only the first block reads the teacher's own input, so there local and accumulated agree
    assert arms[0]["errors"][0]["local"] == pytest.approx(arms[0]["errors"][0]["accumulated"], rel=1e-5)
    assert "3 epochs/block" in "\n".join(study.schedule_markdown(arms))


def test_a_variant_run_is_measured_on_the_student_in_its_progress_file(study, tmp_path):
    """comparisons/RUN reads checkpoints/RUN/distill.pt, finished or not; a published student needs no file."""
    import zoo
    from zoo.recipes import load_recipe

    name = "comparisons/resnet32-cp-10pct-seq-kd-stages"
    recipe = load_recipe(name)
    with pytest.raises(SystemExit, match="has no progress file"):
        study.student_of(name, recipe, tmp_path)
    torch.manual_seed(0)
    saved = zoo.create(recipe.model).state_dict()
    rows = [{"block": "layer1", "epoch": e, "steps": 1, "first_loss": 1.0, "mean_loss": 1.0} for e in range(1, 51)]
    (tmp_path / "resnet32-cp-10pct-seq-kd-stages").mkdir()
    torch.save({"student": saved, "done": 1, "epoch": 7, "report": {"block_losses": rows + rows[:7]}},
               tmp_path / "resnet32-cp-10pct-seq-kd-stages" / "distill.pt")
    student, progress = study.student_of(name, recipe, tmp_path)
    assert progress == {"done": 1, "epoch": 7, "rows": 57}
    assert all(torch.equal(student.state_dict()[k], v) for k, v in saved.items())
    text = study.markdown({"resnet32-cp-10pct-seq-kd-stages": {
        "teacher": "resnet32", "images": 4, "progress": progress, "recipe_blocks": "layer?", "recipe_units": 3,
        "recipe_epochs": 50, "val_acc": 0.5, "blocks": [{"block": "layer1.0", "accumulated": 0.1, "local": 0.1}]}})
    assert "after 1 finished block(s) of `layer?` and 7 epoch(s) of the next (50 epochs a block)" in text
    finished = study.markdown({"resnet32-cp-10pct-seq-kd-stages": {
        "teacher": "resnet32", "images": 4, "progress": {"done": 3, "epoch": 0, "rows": 150}, "recipe_blocks": "layer?",
        "recipe_units": 3, "recipe_epochs": 50, "val_acc": 0.5,
        "blocks": [{"block": "layer1.0", "accumulated": 0.1, "local": 0.1}]}})
    assert "the finished run's student (3 blocks of `layer?`, 50 epochs a block)" in finished
