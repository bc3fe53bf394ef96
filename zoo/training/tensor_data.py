"""Image classification data held in memory as one uint8 tensor, augmented a whole batch at a time.

The fast path for small-image data sets such as CIFAR-10: a folder of ``.npz`` files (each with ``images`` uint8
``(N, H, W, C)`` or ``(N, C, H, W)`` and integer ``labels`` ``(N,)``) is read once into one ``(N, C, H, W)`` uint8
tensor. A batch is gathered, randomly cropped from a zero-padded copy and flipped as one tensor operation, then
scaled and normalised: no per-image PIL work. Random draws come from the global torch RNG of the calling process,
so a training run's RNG snapshot covers them (exact ``--resume``).
"""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from zoo.errors import DataError

MAX_CLASSES = 100_000  # a label id above this is a corrupted file, not a class count


def is_npz_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of ``.npz`` files (and no class sub-folders)."""
    path = Path(path)
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    return any(p.suffix == ".npz" for p in entries) and not any(p.is_dir() for p in entries)


def _read_npz(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """``images`` as uint8 (N, C, H, W) and ``labels`` as int64 (N,) of one ``.npz`` file (never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("images", "labels") if k not in data.files]
            if missing:
                raise DataError(f"{path}: expected arrays 'images' and 'labels', found {data.files}")
            images, labels = data["images"], data["labels"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path}: 'images' must be uint8 (N, H, W, C) or (N, C, H, W), got {images.dtype} "
                        f"{images.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (images.shape[0],):
        raise DataError(f"{path}: 'labels' must be integers of shape ({images.shape[0]},), got {labels.dtype} "
                        f"{labels.shape}")
    if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def load_npz_folder(folder: Path) -> Tuple[Tensor, Tensor]:
    """All ``*.npz`` files of ``folder`` in name order as uint8 images (N, C, H, W) and int64 labels (N,)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise DataError(f"{folder}: no .npz files (expected files with 'images' and 'labels' arrays)")
    parts = [_read_npz(p) for p in files]
    shapes = {p.shape[1:] for p, _ in parts}
    if len(shapes) > 1:
        raise DataError(f"{folder}: the files hold images of different shapes {sorted(shapes)}")
    labels = np.concatenate([y for _, y in parts])
    if labels.size == 0:
        raise DataError(f"{folder}: the .npz files hold no images (every 'images' array is empty)")
    if labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise DataError(f"{folder}: labels must be class ids in [0, {MAX_CLASSES}), found {labels.min()}..{labels.max()}")
    return torch.from_numpy(np.concatenate([x for x, _ in parts])), torch.from_numpy(labels)


class TensorImageData(Dataset):
    """(image (C, H, W) float, label) pairs from uint8 images held as one tensor; batches come whole.

    Args:
        images: uint8 (N, C, H, W); labels: int64 (N,).
        mean, std: per-channel normalisation of pixels scaled to [0, 1].
        size: (H, W) the model takes; batches are resized (bilinear, antialiased) when it differs.
        augment: random crop from the image zero-padded by ``pad`` pixels on every side, and a horizontal flip
            with probability 1/2.
        num_classes: the model head's number of classes; labels outside ``[0, num_classes)`` are errors.
        name: the data set's name (a fine-tuned model's ``dataset`` field); default the source's file name.
    """

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float], *,
                 size: Optional[Tuple[int, int]] = None, augment: bool = False, pad: int = 4,
                 num_classes: Optional[int] = None, classes: Optional[Sequence[str]] = None,
                 source: str = "<tensors>", name: Optional[str] = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"{source}: images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"{source}: {images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise DataError(f"{source}: images have {channels} channels, mean/std give {len(mean)}/{len(std)}")
        if num_classes is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            raise DataError(f"{source}: labels {int(labels.min())}..{int(labels.max())} are outside the model's "
                            f"{num_classes} classes")
        self.images, self.labels = images.contiguous(), labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.size = tuple(size) if size is not None else tuple(images.shape[-2:])
        self.augment, self.pad = augment, pad
        count = int(labels.max()) + 1 if len(labels) else 0
        self.classes: List[str] = list(classes) if classes is not None else [str(i) for i in range(count)]
        self.skipped: List[Path] = []
        self.name = name or Path(source).name

    def __len__(self) -> int:
        return len(self.labels)

    def without_augmentation(self) -> "TensorImageData":
        """The same images (shared, not copied) served without augmentation."""
        plain = copy.copy(self)
        plain.augment = False
        return plain

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor]:
        x, y = self.batch(torch.tensor([index]))
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> List[Tuple[Tensor, Tensor]]:
        """DataLoader's batched fetch: one :meth:`batch`, handed on as samples (default collation stacks them)."""
        x, y = self.batch(torch.as_tensor(indices, dtype=torch.long))
        return list(zip(x.unbind(0), y.unbind(0)))

    def batch(self, indices: Tensor) -> Tuple[Tensor, Tensor]:
        """Images ``(B, C, H, W)`` float32, normalised (and augmented if enabled), and labels ``(B,)``."""
        x = self.images[indices]
        if self.augment:
            x = self._crop_and_flip(x)
        x = x.float()
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std, self.labels[indices]

    def _crop_and_flip(self, x: Tensor) -> Tensor:
        """Per-image random ``H x W`` crop of the zero-padded batch and random horizontal flip, uint8 throughout."""
        b, _, h, w = x.shape
        p = self.pad
        top = torch.randint(0, 2 * p + 1, (b,))
        left = torch.randint(0, 2 * p + 1, (b,))
        flip = torch.rand(b) < 0.5
        padded = F.pad(x, (p, p, p, p)) if p else x
        rows = top[:, None] + torch.arange(h)                         # (B, H)
        cols = left[:, None] + torch.arange(w)                        # (B, W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)         # a flipped crop reads its columns backwards
        out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return out.permute(0, 3, 1, 2)                                # (B, C, H, W), channels-last in memory


def npz_folder_data(folder: Path, cfg_input: dict, train: bool, *, augment: bool = True,
                    input_size: Optional[int] = None, classes: Optional[Sequence[str]] = None) -> TensorImageData:
    """The :class:`TensorImageData` of an ``.npz`` folder for a model whose ``pretrained_cfg["input"]`` is
    ``cfg_input`` (shape, mean, std, num_classes)."""
    images, labels = load_npz_folder(folder)
    shape = list(cfg_input["shape"])
    channels = shape[0]
    if images.shape[1] != channels:
        raise DataError(f"{folder}: images have {images.shape[1]} channels, the model takes {channels}")
    size = (input_size, input_size) if input_size is not None else (shape[1], shape[2])
    return TensorImageData(images, labels, cfg_input.get("mean") or [0.5] * channels,
                           cfg_input.get("std") or [0.5] * channels, size=size, augment=train and augment,
                           pad=max(1, images.shape[-1] // 8), num_classes=cfg_input.get("num_classes"),
                           classes=classes, source=str(folder))
