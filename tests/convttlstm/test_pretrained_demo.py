"""The bundled reduced Moving-MNIST-2 weights: load through zoo.create and reproduce their recorded metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo_convttlstm.data.mnist_idx import default_mnist_images, read_idx_images
from zoo_convttlstm.data.moving_mnist import MovingMNISTConfig, generate, split_digits
from zoo_convttlstm.family import FAMILY
from zoo_convttlstm.metrics import mse_per_frame, ssim_per_frame

ENTRIES = yaml.safe_load(Path(FAMILY.registry).read_text())["models"]
DEMO = ["convttlstm-mnist-small", "convlstm-mnist-small"]


@pytest.fixture(scope="module")
def test_sequences():
    """The demo's held-out sequences (seed 0 + 2, test half of the digits), first 200."""
    digits = read_idx_images(default_mnist_images())
    _, test_idx = split_digits(len(digits), seed=0)
    frames = generate(digits[test_idx], 200, MovingMNISTConfig(length=40), seed=2)["frames"]
    return torch.from_numpy(frames).float().div(255).unsqueeze(2)


@pytest.mark.parametrize("name", DEMO)
def test_bundled_weights_reproduce_recorded_metrics(name, test_sequences):
    w = ENTRIES[name]["weights"]
    path = Path(FAMILY.registry).parent / w["bundled"]
    assert path.stat().st_size < 4 * 2**20
    assert hashlib.sha256(path.read_bytes()).hexdigest() == w["sha256"]
    model = zoo.create(name, pretrained=True).eval()
    with torch.no_grad():
        pred = torch.cat([model(test_sequences[i : i + 50, :10], future_frames=30) for i in range(0, 200, 50)])
    pred = pred.clamp(0, 1)
    truth = test_sequences[:, 10:40]
    m = w["metrics"]
    assert float(mse_per_frame(pred[:, :10], truth[:, :10]).mean()) * 1e3 == pytest.approx(m["mse_x1e3_10to10"], rel=1e-3)
    assert float(mse_per_frame(pred, truth).mean()) * 1e3 == pytest.approx(m["mse_x1e3_10to30"], rel=1e-3)
    assert float(ssim_per_frame(pred, truth).mean()) == pytest.approx(m["ssim_10to30"], abs=2e-4)
    copy_last = float(((test_sequences[:, 9:10] - truth) ** 2).mean()) * 1e3
    assert m["mse_x1e3_10to30"] < copy_last  # the trained model beats repeating the last input frame
