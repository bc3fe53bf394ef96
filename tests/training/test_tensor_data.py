"""The in-memory .npz image path: whole-batch crop-and-flip against a per-image reference, normalisation, file checks,
recipes with a selection split and a test set, and `zoo train --data` on an .npz folder with exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main
from zoo.errors import DataError, ZooError
from zoo.training.tensor_data import TensorImageData, load_npz_folder


def _colour_npz(folder, parts=2, per_part=24, size=8, seed=0, layout="nhwc"):
    """Class c images are noisy pictures dominated by colour channel c (learnable), split over ``parts`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for part in range(parts):
        labels = rng.integers(0, 3, size=per_part).astype(np.uint8)
        images = rng.integers(0, 90, size=(per_part, size, size, 3))
        images[np.arange(per_part), :, :, labels] += 150
        images = images.astype(np.uint8)
        np.savez(folder / f"part{part}.npz", images=images if layout == "nhwc" else images.transpose(0, 3, 1, 2),
                 labels=labels)
    return folder


def test_crop_and_flip_equal_a_per_image_reference():
    images = torch.randint(0, 256, (16, 3, 6, 5), dtype=torch.uint8)
    data = TensorImageData(images, torch.zeros(16, dtype=torch.long), [0.0] * 3, [1 / 255] * 3, augment=True, pad=2)
    torch.manual_seed(7)
    x, _ = data.batch(torch.arange(16))
    torch.manual_seed(7)  # the draws the batch made, in its order
    top, left, flip = torch.randint(0, 5, (16,)), torch.randint(0, 5, (16,)), torch.rand(16) < 0.5
    for i in range(16):
        padded = torch.zeros(3, 10, 9, dtype=torch.uint8)
        padded[:, 2:8, 2:7] = images[i]
        crop = padded[:, top[i]:top[i] + 6, left[i]:left[i] + 5]
        expected = crop.flip(-1) if flip[i] else crop
        assert torch.equal(x[i], expected.float()), i
    assert flip.any() and not flip.all() and len(set(top.tolist())) > 1


def test_plain_batches_are_normalised_pixels_and_shared_with_the_augmented_view():
    images = torch.randint(0, 256, (4, 3, 4, 4), dtype=torch.uint8)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    data = TensorImageData(images, torch.arange(4), mean, std, augment=True)
    plain = data.without_augmentation()
    assert plain.images is data.images and data.augment and not plain.augment
    x, y = plain.batch(torch.tensor([2, 0]))
    expected = (images[[2, 0]].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert y.tolist() == [2, 0]
    resized, _ = TensorImageData(images, torch.arange(4), mean, std, size=(8, 8)).batch(torch.arange(4))
    assert resized.shape == (4, 3, 8, 8)


def test_npz_folder_reads_both_layouts_in_name_order(tmp_path):
    a, ya = load_npz_folder(_colour_npz(tmp_path / "a", layout="nhwc"))
    b, yb = load_npz_folder(_colour_npz(tmp_path / "b", layout="nchw"))
    assert a.shape == b.shape == (48, 3, 8, 8) and torch.equal(a, b) and torch.equal(ya, yb)
    assert ya.dtype == torch.int64


@pytest.mark.parametrize("arrays,message", [
    ({"images": np.zeros((2, 4, 4, 3), np.uint8)}, r"expected arrays 'images' and 'labels', found \['images'\]"),
    ({"images": np.zeros((2, 4, 4, 3), np.float32), "labels": np.zeros(2, np.int64)}, r"'images' must be uint8"),
    ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.zeros(3, np.int64)}, r"'labels' must be integers of shape \(2,\)"),
    ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.array([0, 2**40])}, r"labels must be class ids in \[0, 100000\)"),
    ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.array([0, -1])}, r"labels must be class ids"),
])
def test_bad_npz_files_are_clear_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_npz_folder(tmp_path)


def test_pickled_and_corrupt_npz_files_are_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", images=np.array([object()], dtype=object), labels=np.zeros(1, np.int64))
    with pytest.raises(DataError, match=r"obj\.npz: not a readable \.npz file .*allow_pickle"):
        load_npz_folder(tmp_path)
    (tmp_path / "obj.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"obj\.npz: not a readable \.npz file"):
        load_npz_folder(tmp_path)


def test_labels_outside_the_head_are_an_error(tmp_path):
    with pytest.raises(DataError, match=r"labels 0\.\.5 are outside the model's 3 classes"):
        TensorImageData(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), torch.arange(6), [0.5] * 3, [0.5] * 3,
                        num_classes=3)


def test_zoo_train_on_an_npz_folder_learns_and_resumes_exactly(rgb_toy, tmp_path, capsys):
    train, val = _colour_npz(tmp_path / "train", seed=0), _colour_npz(tmp_path / "val", parts=1, seed=1)
    common = ["--data", str(train), "--val-data", str(val), "--epochs", "3", "--batch-size", "8", "--lr", "0.05",
              "--optimizer", "sgd", "--scheduler", "none", "--seed", "5", "--json"]
    assert main(["train", rgb_toy, "--output", str(tmp_path / "a"), *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["history"][-1]["val_acc"] == 1.0

    from zoo.training import steps

    original, calls = steps.DEFAULT_STEPS["classification"], {"n": 0}

    def interrupting_step(model, batch, entry):
        calls["n"] += 1
        if calls["n"] == 9:  # epoch 2, batch 3 of 6: augmentation draws are part of the RNG snapshot
            raise KeyboardInterrupt
        return original(model, batch, entry)

    steps.DEFAULT_STEPS["classification"] = interrupting_step
    try:
        assert main(["train", rgb_toy, "--output", str(tmp_path / "b"), *common]) == 130  # saved, resumable
    finally:
        steps.DEFAULT_STEPS["classification"] = original
    assert main(["train", rgb_toy, "--output", str(tmp_path / "b"), "--resume", *common]) == 0
    capsys.readouterr()
    a = zoo.create(f"local-dir:{tmp_path / 'a' / 'best'}", pretrained=True).state_dict()
    b = zoo.create(f"local-dir:{tmp_path / 'b' / 'best'}", pretrained=True).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_npz_recipe_selects_on_a_training_split_and_measures_on_the_test_set(shared_data):
    from zoo.recipes import build_data, load_recipe

    data = build_data(load_recipe("resnet32"), zoo.create("resnet32").pretrained_cfg)
    assert (len(data.train), len(data.val), len(data.test)) == (45_000, 5_000, 10_000)
    assert set(data.train.indices).isdisjoint(data.val.indices)
    assert data.train.dataset.augment and not data.val.dataset.augment and not data.test.augment
    assert "never used for training or selection" in data.description
    x, y = data.test.batch(torch.arange(10_000))
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3), atol=0.03, rtol=0)  # CIFAR-10 statistics
    assert torch.bincount(y).tolist() == [1000] * 10


def test_npz_recipe_needs_a_selection_split(tmp_path):
    from zoo.recipes import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("model: resnet32\ndata: {source: npz, train: cifar10_train, test: cifar10_test}\n")
    with pytest.raises(ZooError, match="exactly one of holdout"):
        load_recipe(str(path))


def test_npz_recipe_honours_the_schedules_augment_option(shared_data):
    from zoo.recipes import build_data, load_recipe

    data = build_data(load_recipe("bqn-cnn-cifar10"), zoo.create("bqn-cnn-cifar10").pretrained_cfg)
    assert not data.train.dataset.augment and "(no augmentation)" in data.description


def test_a_model_tuned_on_a_split_of_an_npz_folder_names_the_folder_not_the_subset(rgb_toy, tmp_path):
    """Recipes hand the trainer ``Subset`` views (a seeded train / selection split): the model's ``dataset`` field
    and its card's ``datasets`` are the folder's name, not ``Subset``."""
    from torch.utils.data import Subset

    from zoo.training.tensor_data import npz_folder_data

    model = zoo.create(rgb_toy)
    full = npz_folder_data(_colour_npz(tmp_path / "colours"), model.pretrained_cfg["input"], train=True)
    zoo.finetune(model, Subset(full, range(32)), val_data=Subset(full.without_augmentation(), range(32, 48)),
                 epochs=1, batch_size=16, progress=False, output_dir=str(tmp_path / "run"))
    assert model.pretrained_cfg["dataset"] == "colours"
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert "datasets:\n- colours\n" in card and "Subset" not in card
