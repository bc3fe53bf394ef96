"""What a fine-tuned folder keeps (issue 20, item 4) and a user's habits with zoo train (item 5), checked on real
outputs: best/config.json read back by the strict loader, zoo.create('local-dir:...'), timm's resolve_data_config,
the model card's YAML front matter, the class count learnt from the data, the epoch lines and curves.png."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import timm.data
import torch
import yaml
from PIL import Image

import zoo
from zoo.cli import main
from zoo.errors import ZooError
from zoo.hub.config import load_config
from zoo.training.datasets import build_dataset
from zoo.training.trainer import curves_figure

from .conftest import write_colour_folder


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("\n---\n", 1)[0][4:])


@pytest.fixture
def trained(rgb_toy, colour_data, tmp_path):
    train, val = colour_data
    out = tmp_path / "run"
    result = zoo.finetune(rgb_toy, train, val, epochs=3, lr=0.05, batch_size=8, output_dir=str(out),
                          progress=False, augment=False, input_size=6)
    return result, out / "best", train, val


def test_best_config_keeps_classes_data_size_and_normalisation(trained, tmp_path):
    result, best, train, val = trained
    config = load_config(best / "config.json")  # the strict loader: every field validated
    assert config.label_names == ["blue", "green", "red"] == config.pretrained_cfg.label_names
    assert config.dataset == tmp_path.name  # train/ is a generic name: its parent folder's
    assert config.input.shape == [3, 6, 6] and config.pretrained_cfg.input_size == [3, 6, 6]
    assert config.input.mean == [0.5] * 3 and config.pretrained_cfg.std == [0.25] * 3
    assert (config.pretrained_cfg.crop_pct, config.pretrained_cfg.interpolation) == (1.0, "bilinear")
    record = config.training
    best_row = max(result.history, key=lambda r: r["val_acc"])
    assert record.base_model == "toynet-rgb" and record.from_weights is False
    assert (record.data, record.data_format, record.train_samples) == (str(train), "image-folder", 48)
    assert (record.val_data, record.val_samples, record.num_classes) == (str(val), 18, 3)
    assert record.epochs == 3 and record.best_epoch == best_row["epoch"] and record.input_size == [3, 6, 6]
    assert record.metrics == config.metrics == {"val_loss": best_row["val_loss"], "val_acc": best_row["val_acc"]}


def test_local_dir_predicts_with_the_trained_labels_and_preprocessing(trained):
    result, best, _, val = trained
    model = zoo.create(f"local-dir:{best}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == ["blue", "green", "red"]
    assert model.pretrained_cfg["training"]["base_model"] == "toynet-rgb"
    data_config = timm.data.resolve_data_config(model=model)
    assert data_config["input_size"] == (3, 6, 6) and data_config["crop_pct"] == 1.0
    assert tuple(data_config["mean"]) == (0.5,) * 3 and tuple(data_config["std"]) == (0.25,) * 3
    transform = timm.data.create_transform(**data_config)
    # timm's transform from the folder's config gives what training evaluated on
    evaluated = build_dataset(val, result.model.pretrained_cfg, train=False)
    image = sorted((val / "red").iterdir())[0]
    assert torch.allclose(transform(Image.open(image).convert("RGB")), evaluated[evaluated.samples.index(
        (image, 2))][0], atol=1e-6)
    correct = 0
    for path, _ in evaluated.samples:
        logits = model(transform(Image.open(path).convert("RGB"))[None])
        correct += model.pretrained_cfg["label_names"][int(logits.argmax())] == path.parent.name
    assert correct / len(evaluated.samples) == pytest.approx(load_config(best / "config.json").metrics["val_acc"])
    resaved = zoo.save_pretrained(model, best.parent / "again")  # a loaded folder keeps its record when saved again
    assert load_config(resaved / "config.json").training == load_config(best / "config.json").training


def test_model_card_says_it_was_fine_tuned_here(trained):
    result, best, train, _ = trained
    card = (best / "README.md").read_text()
    front = front_matter(card)
    config = json.loads((best / "config.json").read_text())
    assert front["library_name"] == "spectral-zoo" and front["license"] == "mit"
    assert "fine-tuned" in front["tags"] and front["pipeline_tag"] == "image-classification"
    assert front["datasets"] == [config["dataset"]]
    results = front["model-index"][0]["results"][0]
    assert results["dataset"]["name"] == config["dataset"] and results["task"]["type"] == "image-classification"
    assert {m["name"]: m["value"] for m in results["metrics"]} == config["metrics"]
    assert {m["type"] for m in results["metrics"]} == {"accuracy", "loss"}
    from huggingface_hub import ModelCard

    assert {r.metric_name: r.metric_value for r in ModelCard(card).data.eval_results} == config["metrics"]
    assert "architecture only" not in card and "imagenet" not in card
    epoch = config["training"]["best_epoch"]
    assert "from `toynet-rgb`" in card and f"`{train}` (48 samples, 3 classes)" in card
    assert f"up to 3 epoch(s); these are the weights of epoch {epoch}" in card
    assert "Classes (3, in output order): blue, green, red." in card and "6x6" in card


def test_saved_config_schema_refuses_what_it_does_not_know(trained, tmp_path):
    _, best, _, _ = trained
    config = json.loads((best / "config.json").read_text())
    for change, message in [({"training": {**config["training"], "script": "x"}}, r"training\.script"),
                            ({"label_names": ["a", "b"]}, "label_names has 2 names but the model has 3 classes"),
                            ({"label_names": ["x", "y", "z"]}, "label_names differs from pretrained_cfg.label_names"),
                            ({"training": {**config["training"], "train_samples": -1}}, "train_samples")]:
        path = tmp_path / "bad" / "config.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({**config, **change}))
        with pytest.raises(ZooError, match=message):
            load_config(path)


def test_class_count_is_read_from_a_folder(rgb_toy, colour_data, capsys, tmp_path):
    train, _ = colour_data
    two = tmp_path / "two"
    two.mkdir()
    for name in ("red", "blue"):
        (train / name).rename(two / name)
    result = zoo.finetune(rgb_toy, two, epochs=1, batch_size=8, progress=False, output_dir=str(tmp_path / "o"))
    assert result.model.get_classifier().out_features == 2
    said = [line for line in capsys.readouterr().err.splitlines() if "head" in line]
    assert said == [f"zoo: {two} has 2 classes (blue, red), toynet-rgb's head has 3: training a new 2-way head "
                    f"(--num-classes 2)"]
    assert load_config(tmp_path / "o" / "best" / "config.json").label_names == ["blue", "red"]
    with pytest.raises(ZooError, match=r"num_classes=3 \(--num-classes\) contradicts the training data: .*two has "
                                       r"2 classes \(blue, red\)"):
        zoo.finetune(rgb_toy, two, num_classes=3, epochs=1, progress=False)


def test_class_count_is_read_from_a_csv(rgb_toy, tmp_path, capsys):
    folder = write_colour_folder(tmp_path / "imgs", 4, seed=0, classes=("a", "b", "c"))
    write_colour_folder(folder, 4, seed=1, classes=("d",))
    rows = [f"{p.relative_to(folder)},{p.parent.name}" for p in sorted(folder.glob("*/*.png"))]
    (folder / "named.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ids = [f"{p.relative_to(folder)},{'abcd'.index(p.parent.name)}" for p in sorted(folder.glob("*/*.png"))]
    (folder / "ids.csv").write_text("path,label\n" + "\n".join(ids) + "\n")
    model = zoo.finetune(rgb_toy, folder / "named.csv", epochs=1, batch_size=8, progress=False).model
    assert model.get_classifier().out_features == 4 and model.pretrained_cfg["label_names"] == list("abcd")
    model = zoo.finetune(rgb_toy, folder / "ids.csv", epochs=1, batch_size=8, progress=False).model
    assert model.get_classifier().out_features == 4 and "label_names" not in model.pretrained_cfg
    assert "ids.csv has 4 classes (class ids 0..3)" in capsys.readouterr().err
    # class ids: a head with more classes than the ids seen is fine, one with fewer is not
    assert zoo.finetune(rgb_toy, folder / "ids.csv", num_classes=6, epochs=1, batch_size=8,
                        progress=False).model.get_classifier().out_features == 6
    with pytest.raises(ZooError, match=r"num_classes=2 .* has 4 classes \(class ids 0\.\.3\)"):
        zoo.finetune(rgb_toy, folder / "ids.csv", num_classes=2, epochs=1, progress=False)


def test_a_bad_optimizer_fails_before_the_data_is_read(rgb_toy, tmp_path):
    with pytest.raises(ZooError, match="unknown optimizer 'nope'"):
        zoo.finetune(rgb_toy, tmp_path / "missing", optimizer="nope")
    with pytest.raises(ZooError, match="scheduler 'nope'"):
        zoo.finetune(rgb_toy, tmp_path / "missing", scheduler="nope")


def test_cli_epoch_lines_stay_and_no_progress(rgb_toy, colour_data, tmp_path, capsys):
    train, val = colour_data
    code = main(["train", rgb_toy, "--data", str(train), "--val-data", str(val), "--output", str(tmp_path / "o"),
                 "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--no-progress", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    history = json.loads(captured.out)["history"]
    lines = [line for line in captured.err.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "\r" not in captured.err  # no bar
    for line, row in zip(lines, history):
        assert re.fullmatch(rf"epoch {row['epoch']}/2  train_loss {row['train_loss']:.4f}  val_loss "
                            rf"{row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}  lr {row['lr']:.2e}  "
                            rf"\d+\.\ds(  \*)?", line), line


def test_curves_put_both_losses_on_one_axis_and_lr_on_its_own(trained):
    result, best, _, _ = trained
    png = Image.open(best.parent / "curves.png")
    assert png.size == (1200, 300)
    fig = curves_figure(result.history)
    loss, acc, lr = fig.axes
    assert [a.get_title() for a in fig.axes] == ["loss", "validation accuracy", "learning rate"]
    assert [line.get_label() for line in loss.get_lines()] == ["train loss", "val loss"]
    assert list(lr.get_lines()[0].get_ydata()) == [row["lr"] for row in result.history]
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_a_new_head_on_a_fine_tuned_folder_drops_its_class_names(trained, tmp_path):
    _, best, _, _ = trained
    model = zoo.create(f"local-dir:{best}", pretrained=True, num_classes=5)
    assert model.pretrained_cfg["num_classes"] == 5
    assert "label_names" not in model.pretrained_cfg and "training" not in model.pretrained_cfg
    config = load_config(zoo.save_pretrained(model, tmp_path / "five") / "config.json")
    assert config.label_names is None and config.pretrained_cfg.label_names is None and config.training is None


def test_fine_tuning_a_fine_tuned_folder_records_where_it_started(trained, tmp_path):
    result, best, train, _ = trained
    two = tmp_path / "two"
    two.mkdir()
    for name in ("red", "blue"):
        (train / name).rename(two / name)
    zoo.finetune(f"local-dir:{best}", two, epochs=1, batch_size=8, progress=False, output_dir=str(tmp_path / "again"))
    config = load_config(tmp_path / "again" / "best" / "config.json")
    assert config.training.base_model == f"local-dir:{best}" and config.training.from_weights is True
    assert config.label_names == ["blue", "red"] and config.training.val_data is None and config.metrics == {}
    assert config.input.shape == [3, 6, 6]  # the size the folder was trained at, kept
    card = (tmp_path / "again" / "best" / "README.md").read_text()
    assert "Fine-tuned here with `zoo train`" in card and "(its trained weights)" in card
    assert "model-index" not in front_matter(card)  # no validation data: no metrics claimed


def test_class_count_is_read_from_npz_label_ids(rgb_toy, tmp_path, capsys):
    folder = tmp_path / "npz"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for part, labels in enumerate([np.array([0, 1, 2, 3] * 4), np.array([4, 0, 1, 2] * 4)]):
        np.savez(folder / f"part{part}.npz", images=rng.integers(0, 255, (16, 8, 8, 3)).astype(np.uint8),
                 labels=labels)
    result = zoo.finetune(rgb_toy, folder, epochs=1, batch_size=8, progress=False, output_dir=str(tmp_path / "o"))
    assert result.model.get_classifier().out_features == 5
    assert f"{folder} has 5 classes (class ids 0..4)" in capsys.readouterr().err
    config = load_config(tmp_path / "o" / "best" / "config.json")
    assert config.input.num_classes == 5 and config.label_names is None  # ids: no names invented
    assert (config.training.data_format, config.training.train_samples) == ("npz", 32)


def test_the_trainers_card_has_one_data_account_and_its_validation_column(trained):
    _, best, _, _ = trained
    card = (best / "README.md").read_text()
    assert "Fine-tuned here on" not in card  # the training record's lines say it once
    header = next(line for line in card.splitlines() if line.startswith("| metric |"))
    assert header == "| metric | validation (best epoch) | dissertation |"


def test_a_card_measured_by_a_script_shows_its_metrics_beside_validation_and_its_data(trained, tmp_path):
    """scripts/train.py re-saves the best folder with test-set metrics and the recipe's account of the data and
    schedule: the card labels those metrics as measured, keeps the best epoch's validation ones beside them, and
    prints the account under Training data."""
    _, best, _, _ = trained
    model = zoo.create(f"local-dir:{best}", pretrained=True)
    validation = json.loads((best / "config.json").read_text())["training"]["metrics"]
    account = "60 of 60 epochs run: sgd, learning rate 0.1; metrics on all 10,000 images of the test set"
    zoo.save_pretrained(model, tmp_path / "measured", metrics={"top1": 91.5, "loss": 0.3}, data=account)
    card = (tmp_path / "measured" / "README.md").read_text()
    rows = [line for line in card.splitlines() if line.startswith("| ")]
    assert rows[0] == "| metric | measured here | validation (best epoch) | dissertation |"
    assert "| top1 | 91.5 | — | — |" in rows
    assert f"| val_acc | — | {validation['val_acc']:.4g} | — |" in rows
    assert account in card.split("## Training data", 1)[1]
