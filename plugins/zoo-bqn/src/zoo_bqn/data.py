"""MNIST from the repository's shared data folder (official t10k IDX files only) and the augmentation of 5.4.1.

There is no MNIST train-images file in the shared folder, so the 10,000 official test images are split into
disjoint train / held-out parts with a fixed seed (:func:`mnist_split`).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional, Tuple

import torch

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def read_idx(path: Path) -> torch.Tensor:
    """Read a (gzipped) IDX file of unsigned bytes -> uint8 tensor of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: expected an IDX file of unsigned bytes (magic 0x0000 08 ..), got "
                         f"{zero:#06x} {dtype:#04x}")
    shape = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    expected = 1
    for d in shape:
        expected *= d
    if len(body) != expected:
        raise ValueError(f"{path}: header declares {shape} ({expected} bytes) but {len(body)} bytes follow")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def mnist_dir(root: Optional[Path] = None) -> Path:
    """The shared MNIST folder (``zoo.paths.shared_data_dir() / "mnist"`` unless ``root`` is given)."""
    if root is None:
        from zoo.paths import shared_data_dir

        root = shared_data_dir() / "mnist"
    return Path(root)


def load_mnist_t10k(root: Optional[Path] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official 10,000 MNIST test images, normalised float32 (N, 1, 28, 28), and labels int64 (N,)."""
    folder = mnist_dir(root)
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    for p in (images, labels):
        if not p.is_file():
            raise FileNotFoundError(f"MNIST file {p} not found (set ZOO_SHARED_DATA to the shared data folder)")
    x = read_idx(images).float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)
    y = read_idx(labels).long()
    return x, y


def mnist_split(n_train: int = 8000, seed: int = 0, root: Optional[Path] = None):
    """Disjoint (x_train, y_train, x_test, y_test) from a seeded permutation of the 10,000 t10k images."""
    x, y = load_mnist_t10k(root)
    if not 0 < n_train < x.shape[0]:
        raise ValueError(f"n_train must be in (0, {x.shape[0]}), got {n_train}")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image (B, C, H, W) by an integer offset in [-max_shift, max_shift]^2, filling with the
    background value (the image minimum)."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    fill = float(x.min())
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, value=fill)
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    return torch.stack([padded[i, :, offs[i, 0]: offs[i, 0] + h, offs[i, 1]: offs[i, 1] + w] for i in range(b)])
