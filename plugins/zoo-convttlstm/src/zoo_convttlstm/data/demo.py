"""The Moving-MNIST-2 split of ``scripts/demo_convttlstm_mnist.py`` (the ``*-mnist-small`` weights), also a recipe
data source (``python:zoo_convttlstm.data.demo:recipe_data``).

Train and validation sequences move digits of one half of the MNIST t10k images, test sequences the other half.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch.utils.data import Dataset

from .mnist_idx import default_mnist_images, read_idx_images
from .moving_mnist import MovingMNISTConfig, generate, split_digits

INPUT_FRAMES = 10


def demo_sequences(n_train: int, n_val: int, n_test: int, seed: int) -> Dict[str, torch.Tensor]:
    """``train`` (n_train, 20, 1, 64, 64) uint8, ``val`` (n_val, 20, ...) and ``test`` (n_test, 40, ...) float in
    [0, 1]; generator seeds ``seed``, ``seed + 1`` and ``seed + 2``; a set of size 0 is left out."""
    digits = read_idx_images(default_mnist_images())
    train_idx, test_idx = split_digits(len(digits), seed=seed)
    out = {}
    for name, idx, n, length, s in (("train", train_idx, n_train, 20, seed), ("val", train_idx, n_val, 20, seed + 1),
                                    ("test", test_idx, n_test, 40, seed + 2)):
        if n == 0:
            continue
        frames = generate(digits[idx], n, MovingMNISTConfig(length=length), seed=s)["frames"]
        out[name] = torch.from_numpy(frames).unsqueeze(2)  # (N, T, 1, 64, 64) uint8
        if name != "train":  # small: keep as float in [0, 1]; train clips are converted per item
            out[name] = out[name].float().div(255)
    return out


class ClipPairs(Dataset):
    """(first ``INPUT_FRAMES`` frames, the rest) of each clip (N, T, C, H, W), as float in [0, 1]."""

    def __init__(self, clips: torch.Tensor):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        clip = self.clips[i]
        clip = clip.float().div(255) if clip.dtype == torch.uint8 else clip
        return clip[:INPUT_FRAMES], clip[INPUT_FRAMES:]


def recipe_data(cfg: Mapping[str, Any], holdout: int, seed: int = 0, limit: Optional[int] = None,
                train_sequences: int = 3000):
    """(train 10 -> 10 clips, held-out 10 -> 30 test clips, description) of :func:`demo_sequences`;
    ``holdout`` is the number of test sequences (the demo: 200), ``limit`` cuts the training sequences."""
    data = demo_sequences(train_sequences, 0, holdout, seed)
    train = data["train"][:limit] if limit is not None else data["train"]
    text = (f"Moving-MNIST-2 built from the MNIST t10k digits: {len(train)} train sequences (20 frames, generator "
            f"seed {seed}) from one half of the digits, {holdout} test sequences (40 frames, seed {seed + 2}) from "
            f"the other half (disjoint; split seed {seed}); metrics 10 -> 10, 20 and 30 on the test sequences, "
            f"frames in [0, 1]")
    return ClipPairs(train), ClipPairs(data["test"]), text
