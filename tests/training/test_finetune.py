"""zoo.finetune / zoo train: learning, logs, checkpoints, exact resume, freezing, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import zoo
from zoo.cli import main
from zoo.errors import DataError, ZooError
from zoo.training.data import ImageClassificationData, SegmentationData, VideoSequenceData


def test_finetune_learns_and_writes_everything(rgb_toy, colour_data, tmp_path):
    train, val = colour_data
    (train / "red" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match=r"skipping unreadable image .*broken\.png"):
        result = zoo.finetune(rgb_toy, train, val, epochs=4, lr=0.05, batch_size=8, output_dir=str(out),
                              progress=False, augment=False)
    assert result.skipped_files == [str(train / "red" / "broken.png")]
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["val_acc"] == 1.0 and result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.history
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "checkpoint.pt").is_file()
    best = zoo.create(f"local-dir:{out / 'best'}", pretrained=True)
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["metrics"]["val_acc"] == 1.0
    assert config["metrics"]["val_acc"] == max(row["val_acc"] for row in result.history) == result.best_metric
    assert best(torch.rand(2, 3, 8, 8)).shape == (2, 3)


def test_resume_after_interrupt_matches_an_uninterrupted_run(rgb_toy, colour_data, tmp_path):
    train, _ = colour_data
    common = dict(epochs=3, lr=0.05, batch_size=8, progress=False, augment=True, seed=3, scheduler="cosine")
    straight = zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "a"), **common).model

    calls = {"n": 0}
    from zoo.training import steps

    original = steps.classification_step

    def interrupting_step(model, batch, entry):
        calls["n"] += 1
        if calls["n"] == 9:  # epoch 2, batch 3 of 6
            raise KeyboardInterrupt
        return original(model, batch, entry)

    steps.DEFAULT_STEPS["classification"] = interrupting_step
    try:
        with pytest.raises(KeyboardInterrupt):
            zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "b"), **common)
    finally:
        steps.DEFAULT_STEPS["classification"] = original
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["batches_done"]) == (1, 2)
    resumed = zoo.finetune(rgb_toy, train, output_dir=str(tmp_path / "b"), resume=True, **common).model
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_freeze_backbone_trains_only_the_head(rgb_toy, colour_data):
    train, _ = colour_data
    model = zoo.create(rgb_toy)
    stem = model.stem.weight.clone()
    head = model.head.weight.clone()
    zoo.finetune(model, train, epochs=1, lr=0.1, batch_size=8, freeze="backbone", progress=False)
    # the trainer moves the model to CUDA when there is one: compare on the CPU
    assert torch.equal(model.stem.weight.cpu(), stem) and not torch.equal(model.head.weight.cpu(), head)


def test_new_head_for_a_different_class_count(rgb_toy, colour_data, tmp_path):
    train, _ = colour_data
    two = tmp_path / "two"
    two.mkdir()
    for name in ("red", "blue"):
        (train / name).rename(two / name)
    result = zoo.finetune(rgb_toy, two, num_classes=2, epochs=1, batch_size=8, progress=False)
    assert result.model.get_classifier().out_features == 2


def test_cli_train(rgb_toy, colour_data, tmp_path, capsys):
    train, val = colour_data
    code = main(["train", rgb_toy, "--data", str(train), "--val-data", str(val), "--output", str(tmp_path / "o"),
                 "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--no-augment", "--json",
                 "--optimizer", "sgd", "--scheduler", "step", "--input-size", "6"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["history"]) == 2 and Path(report["best_dir"]).is_dir()


def test_cli_train_ctrl_c_says_how_to_resume(rgb_toy, colour_data, tmp_path, capsys):
    """Ctrl-C in ``zoo train``: no traceback, exit 130, and the command that continues the run."""
    from zoo.training import steps

    train, _ = colour_data
    calls = []

    def interrupted_step(model, batch, entry):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return steps.classification_step(model, batch, entry)

    args = ["train", rgb_toy, "--data", str(train), "--output", str(tmp_path / "o"), "--epochs", "2",
            "--batch-size", "8", "--no-augment"]
    original = steps.DEFAULT_STEPS["classification"]
    steps.DEFAULT_STEPS["classification"] = interrupted_step
    try:
        assert main(args) == 130
    finally:
        steps.DEFAULT_STEPS["classification"] = original
    message = capsys.readouterr().err
    assert "Traceback" not in message and f"saved in {tmp_path / 'o' / 'checkpoint.pt'}" in message
    assert "--resume" in message
    assert main(args + ["--resume"]) == 0


def test_bad_data_errors_name_the_file(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty.cat: empty class folder"):
        ImageClassificationData(tmp_path / "empty", transform=lambda x: x)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.png,0\na.png,7\n")
    with pytest.raises(DataError, match=r"a\.png: label 7 is outside the model's 3 classes"):
        ImageClassificationData(csv, transform=lambda x: x, num_classes=3)
    seg = tmp_path / "seg"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(seg / "images" / "ISIC_1.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(seg / "masks" / "ISIC_1_segmentation.png")
    data = SegmentationData(seg, size=(4, 4), mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(DataError, match=r"ISIC_1_segmentation\.png: mask is 4x5 but its image ISIC_1\.png is 4x4"):
        data[0]
    npz = tmp_path / "clips.npz"
    np.savez(npz, frames=np.zeros((2, 5, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"clips\.npz: sequences have 5 frames, 6 needed"):
        VideoSequenceData(npz, input_frames=3, future_frames=3)
    with pytest.raises(ZooError, match="freeze must be"):
        zoo.finetune("x", tmp_path, freeze="everything")


def test_segmentation_pairs_isic_naming(shared_data):
    data = SegmentationData(shared_data / "isic2018_sample", size=(32, 32), mean=[0.5] * 3, std=[0.5] * 3)
    x, y = data[0]
    assert len(data) == 93 and x.shape == (3, 32, 32) and y.shape == (1, 32, 32)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0} and 0 < y.mean() < 1


def test_a_new_head_on_a_given_model_keeps_default_cfg_the_same_dict(rgb_toy, colour_data):
    train, _ = colour_data
    two = train.parent / "two"
    two.mkdir()
    for name in ("red", "blue"):
        (train / name).rename(two / name)
    model = zoo.create(rgb_toy)
    result = zoo.finetune(model, two, num_classes=2, epochs=1, batch_size=8, progress=False)
    assert result.model.pretrained_cfg["num_classes"] == 2
    assert result.model.default_cfg is result.model.pretrained_cfg  # timm reads either name
