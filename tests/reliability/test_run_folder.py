"""The output folder of zoo.finetune / zoo train: a used folder is refused without --resume or --overwrite, a run
holds a lock on it, and an epoch's artefacts are committed by the checkpoint (a kill never leaves them disagreeing,
duplicate metrics rows or temporary files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from tests.training.conftest import RGB_REGISTRY, write_colour_folder
from zoo.cli import main
from zoo.errors import ZooError
from zoo.hub.files import sha256_of
from zoo.training.trainer import Trainer


@pytest.fixture
def run(toy_family, tmp_path, monkeypatch):
    """``run(out, epochs, **options)``: a quick finetune whose validation accuracy improves every epoch."""
    toy_family(RGB_REGISTRY)
    train = write_colour_folder(tmp_path / "train", 4, seed=0)
    val = write_colour_folder(tmp_path / "val", 2, seed=1)
    monkeypatch.setattr(Trainer, "_evaluate", lambda self: {"val_loss": 1 / (self.epoch + 1),
                                                            "val_acc": (self.epoch + 1) / 10})

    def run_(out: Path, epochs: int, **options):
        return zoo.finetune("toynet-rgb", train, val, epochs=epochs, batch_size=4, lr=0.05, progress=False,
                            augment=False, scheduler="none", output_dir=str(out), **options)

    run_.train, run_.val = train, val  # type: ignore[attr-defined]
    return run_


def _rows(out: Path) -> list:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _assert_consistent(out: Path, best_epoch: int) -> None:
    """best/ is one epoch's model: its weights match config.json's sha256, config and card name that epoch."""
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["weights_sha256"] == sha256_of(out / "best" / "model.safetensors")
    assert config["metrics"]["val_acc"] == pytest.approx(best_epoch / 10)
    assert f"| val_acc | {best_epoch / 10:.4g} |" in (out / "best" / "README.md").read_text()
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert leftovers == []


def test_second_run_into_a_used_folder_is_refused_and_changes_nothing(run, tmp_path):
    out = tmp_path / "out"
    run(out, 2)
    before = _snapshot(out)
    with pytest.raises(ZooError, match=r"is not empty .*--resume.*--overwrite"):
        run(out, 1)
    assert _snapshot(out) == before and _rows(out) == [1, 2]


def test_overwrite_replaces_the_previous_results_only(run, tmp_path):
    out = tmp_path / "out"
    run(out, 2)
    (out / "notes.txt").write_text("mine")
    result = run(out, 1, overwrite=True)
    assert _rows(out) == [1] and [row["epoch"] for row in result.history] == [1]
    assert (out / "notes.txt").read_text() == "mine"
    _assert_consistent(out, 1)
    with pytest.raises(ZooError, match="not both"):
        run(out, 1, overwrite=True, resume=True)


def test_cli_refuses_a_used_output_and_accepts_overwrite(run, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["train", "toynet-rgb", "--data", str(run.train), "--output", str(out), "--epochs", "1",
            "--batch-size", "4", "--no-augment"]
    assert main(args) == 0
    assert main(args) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["train", "toynet-rgb", "--data", str(run.train), "--output", str(tmp_path / "new"),
                 "--epochs", "1", "--batch-size", "4", "--no-augment", "--resume"]) == 2


def test_a_second_concurrent_run_into_the_same_folder_is_refused(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    from zoo.training import steps

    original, refused = steps.DEFAULT_STEPS["classification"], []

    def step_that_starts_a_second_run(model, batch, entry):
        if not refused:
            with pytest.raises(ZooError) as info:
                run(out, 1, overwrite=True)  # even --overwrite may not take a folder a live run holds
            refused.append(str(info.value))
        return original(model, batch, entry)

    monkeypatch.setitem(steps.DEFAULT_STEPS, "classification", step_that_starts_a_second_run)
    run(out, 2)
    assert f"in use by another training run (pid {os.getpid()}" in refused[0]
    assert _rows(out) == [1, 2]
    _assert_consistent(out, 2)


def test_lock_of_a_live_process_names_it_and_a_dead_ones_lock_is_taken_over(run, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from zoo.training.output import hold\n"
        f"with hold(Path({str(out)!r})):\n    print('locked', flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ZooError, match=rf"in use by another training run \(pid {holder.pid} "):
            run(out, 1)
    finally:
        holder.communicate("", timeout=60)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".zoo-train.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": "here", "started": "then"}))
    run(out, 1)  # the lock file of a process that no longer runs is taken over
    assert _rows(out) == [1] and not (out / ".zoo-train.lock").exists()


def test_kill_before_the_checkpoint_commits_leaves_no_duplicate_rows(run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original, calls = Trainer._save_checkpoint, []

    def killed_at_epoch_2(self):
        calls.append(self.epoch)
        if self.epoch == 2:
            raise RuntimeError("killed")
        original(self)

    monkeypatch.setattr(Trainer, "_save_checkpoint", killed_at_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        run(out, 3)
    monkeypatch.setattr(Trainer, "_save_checkpoint", original)
    assert not (out / "metrics.jsonl").exists() or _rows(out) == [1]  # nothing past the commit point
    result = run(out, 3, resume=True)
    assert _rows(out) == [1, 2, 3] and [row["epoch"] for row in result.history] == [1, 2, 3]
    _assert_consistent(out, 3)


def test_kill_while_writing_best_keeps_the_committed_best_whole(run, tmp_path, monkeypatch):
    import zoo.hub.pretrained as pretrained

    out = tmp_path / "out"
    original, cards = pretrained.model_card, []

    def card_killed_at_epoch_2(config):
        cards.append(config["metrics"]["val_acc"])
        if len(cards) == 2:
            raise RuntimeError("killed")  # weights and config.json of epoch 2 are written, its card is not
        return original(config)

    monkeypatch.setattr(pretrained, "model_card", card_killed_at_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        run(out, 3)
    monkeypatch.setattr(pretrained, "model_card", original)
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["metrics"]["val_acc"] == pytest.approx(0.1)  # still epoch 1's model, all three files
    assert config["weights_sha256"] == sha256_of(out / "best" / "model.safetensors")
    run(out, 3, resume=True)
    assert _rows(out) == [1, 2, 3]
    _assert_consistent(out, 3)


def test_kill_between_the_commit_and_the_swap_is_rolled_forward(run, tmp_path, monkeypatch):
    from zoo.training import output

    out = tmp_path / "out"
    original = output.publish_best

    def half_swap(out_: Path, staged: Path) -> None:
        if staged.name == ".best-epoch2.tmp":
            (out_ / "best").rename(out_ / ".best.old")
            raise RuntimeError("killed")
        original(out_, staged)

    monkeypatch.setattr(output, "publish_best", half_swap)
    with pytest.raises(RuntimeError, match="killed"):
        run(out, 2)
    monkeypatch.setattr(output, "publish_best", original)
    assert not (out / "best").exists()
    run(out, 2, resume=True)  # nothing left to train: only the repair runs
    assert _rows(out) == [1, 2]
    _assert_consistent(out, 2)


def test_ctrl_c_while_writing_an_epoch_stops_after_its_artefacts(run, tmp_path, monkeypatch):
    import signal

    import zoo.hub.pretrained as pretrained

    out = tmp_path / "out"
    original, cards = pretrained.model_card, []

    def card_with_ctrl_c_at_epoch_2(config):
        cards.append(config)
        if len(cards) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(config)

    monkeypatch.setattr(pretrained, "model_card", card_with_ctrl_c_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(out, 3)
    assert _rows(out) == [1, 2]  # epoch 2 written whole, then the interrupt
    _assert_consistent(out, 2)
    monkeypatch.setattr(pretrained, "model_card", original)
    run(out, 3, resume=True)
    assert _rows(out) == [1, 2, 3]
    _assert_consistent(out, 3)
