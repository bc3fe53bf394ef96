"""Exact resume: a Ctrl-C at any moment of a step resumes to the same weights, the interrupted epoch's logged loss
covers the whole epoch, and a checkpoint is never continued under other settings or data."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
import torch

import zoo
from tests.training.conftest import colour_data, rgb_toy  # noqa: F401  (fixtures)
from zoo.errors import ZooError
from zoo.training import steps, trainer

COMMON = dict(epochs=2, lr=0.05, batch_size=8, progress=False, augment=True, seed=3, scheduler="cosine")


def _interrupt_at_step(n: int):
    """Replace the classification step with one that raises KeyboardInterrupt at its ``n``-th call."""
    original, calls = steps.DEFAULT_STEPS["classification"], {"n": 0}

    def step(model, batch, entry):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(model, batch, entry)

    return original, step


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_ctrl_c_while_a_step_is_recorded_resumes_exactly(rgb_toy, colour_data, tmp_path, monkeypatch):
    """SIGINT arriving after the optimizer step, while the batch count and RNG states are recorded, is delivered
    once both are: the checkpoint never pairs one batch's count with another's RNG states."""
    train, _ = colour_data
    straight = zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "a"), **COMMON).model
    real, calls = trainer._rng_state, {"n": 0}

    def rng_state_with_sigint():
        calls["n"] += 1
        if calls["n"] == 12:  # epoch 2, while its second or third step is recorded
            os.kill(os.getpid(), signal.SIGINT)
        return real()

    monkeypatch.setattr(trainer, "_rng_state", rng_state_with_sigint)
    with pytest.raises(KeyboardInterrupt):
        zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "b"), **COMMON)
    monkeypatch.setattr(trainer, "_rng_state", real)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and 0 < state["batches_done"] < 6
    resumed = zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "b"), resume=True, **COMMON).model
    _assert_same_weights(straight, resumed)


def test_interrupted_epochs_train_loss_is_the_whole_epochs(rgb_toy, colour_data, tmp_path):
    train, _ = colour_data
    straight = zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "a"), **COMMON)
    original, step = _interrupt_at_step(10)  # epoch 2, batch 4 of 6
    steps.DEFAULT_STEPS["classification"] = step
    try:
        with pytest.raises(KeyboardInterrupt):
            zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "b"), **COMMON)
    finally:
        steps.DEFAULT_STEPS["classification"] = original
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert (state["batches_done"], state["loss_count"]) == (3, 3)
    resumed = zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "b"), resume=True, **COMMON)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in straight.history],
                                                                       rel=1e-6)


@pytest.fixture
def interrupted(rgb_toy, colour_data, tmp_path):
    """An output folder holding a checkpoint of a run stopped in epoch 2 (with COMMON's settings)."""
    train, _ = colour_data
    original, step = _interrupt_at_step(9)
    steps.DEFAULT_STEPS["classification"] = step
    try:
        with pytest.raises(KeyboardInterrupt):
            zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "out"), **COMMON)
    finally:
        steps.DEFAULT_STEPS["classification"] = original
    return tmp_path / "out"


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=4), "batch_size 8 -> 4"),
    (dict(lr=0.01), "lr 0.05 -> 0.01"),
    (dict(seed=4), "seed 3 -> 4"),
    (dict(optimizer="sgd"), "optimizer 'adamw' -> 'sgd'"),
])
def test_resume_with_other_settings_is_refused_and_changes_nothing(interrupted, rgb_toy, colour_data, change,
                                                                   message):
    train, _ = colour_data
    before = (interrupted / "checkpoint.pt").read_bytes()
    with pytest.raises(ZooError, match="cannot resume") as error:
        zoo.finetune(rgb_toy, train, output_dir=str(interrupted), resume=True, **{**COMMON, **change})
    assert message in str(error.value) and "--overwrite" in str(error.value)
    assert (interrupted / "checkpoint.pt").read_bytes() == before


def test_resume_with_other_data_is_refused(interrupted, rgb_toy, colour_data, tmp_path):
    train, _ = colour_data
    fewer = shutil.copytree(train, tmp_path / "fewer")
    (fewer / "red" / "000.png").unlink()
    with pytest.raises(ZooError, match=r"training samples 48 -> 47"):
        zoo.finetune(rgb_toy, fewer, output_dir=str(interrupted), resume=True, **COMMON)
    renamed = shutil.copytree(train, tmp_path / "renamed")
    (renamed / "blue").rename(renamed / "violet")
    with pytest.raises(ZooError, match=r"classes \['blue', 'green', 'red'\] -> \['green', 'red', 'violet'\]"):
        zoo.finetune(rgb_toy, renamed, output_dir=str(interrupted), resume=True, **COMMON)


def test_resume_with_more_epochs_is_warned_about_and_runs(interrupted, rgb_toy, colour_data):
    train, _ = colour_data
    with pytest.warns(RuntimeWarning, match="changed options: epochs 2 -> 3"):
        result = zoo.finetune(rgb_toy, train, output_dir=str(interrupted), resume=True, **{**COMMON, "epochs": 3})
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
