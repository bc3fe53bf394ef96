"""Data sets for fine-tuning on a user's own files.

- classification: an image-folder tree (``DIR/<class>/<image>``) or a CSV of ``path,label`` rows;
- segmentation: ``DIR/images/<id>.<ext>`` with ``DIR/masks/<id>[_segmentation].<ext>`` (binary masks);
- video prediction: ``.npz`` files holding ``frames`` shaped (N, T, H, W) or (N, T, C, H, W), or a folder of
  sequence folders each holding its frames as images in name order.

Unreadable images are skipped with a warning naming the file (and counted in ``skipped``); an empty folder,
a mask whose size differs from its image, or a label outside the model's classes is an error naming the file.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.errors import DataError

MAX_CLASSES = 100_000  # a class id at or above this is a corrupted file, not a class count

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _open_image(path: Path, mode: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"{path}: {exc}") from exc  # a decompression bomb is an unreadable image, not a crash


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _keep_readable(paths: Sequence[Path], mode: str) -> Tuple[List[Path], List[Path]]:
    """Split ``paths`` into readable and unreadable images, warning once per unreadable file."""
    good, bad = [], []
    for path in paths:
        try:
            _open_image(path, mode)
        except OSError as exc:
            warnings.warn(f"skipping unreadable image {exc}", RuntimeWarning, stacklevel=3)
            bad.append(path)
        else:
            good.append(path)
    return good, bad


def _read_csv_rows(path: Path) -> List[List[str]]:
    """The non-empty, non-comment rows of a UTF-8 CSV file (a byte-order mark is allowed)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                        f"{exc.start}); save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV of path,label rows: {exc}") from None


def _is_class_id(label: str) -> bool:
    """Whether a CSV label is a class id: decimal digits only (``-1`` or ``1.0`` are not)."""
    return label.isascii() and label.isdigit()


class ImageClassificationData(Dataset):
    """(image tensor (C, H, W), class index) pairs from a folder tree or a CSV file.

    Args:
        source: a folder with one sub-folder per class, or a ``.csv`` with ``path,label`` rows (paths relative
            to the CSV; labels are class indices or class names).
        transform: PIL image -> tensor (timm's transforms from the model's ``pretrained_cfg``).
        num_classes: the model head's number of classes; labels outside ``[0, num_classes)`` are errors.
        channels: 1 (grayscale) or 3 (RGB).
    """

    def __init__(self, source: Path, transform: Callable, num_classes: Optional[int] = None, channels: int = 3,
                 classes: Optional[Sequence[str]] = None):
        source = Path(source)
        self.mode = "L" if channels == 1 else "RGB"
        self.transform = transform
        if source.is_dir():
            samples, self.classes = self._from_tree(source, classes)
        elif source.suffix.lower() == ".csv" and source.is_file():
            samples, self.classes = self._from_csv(source, classes)
        else:
            raise DataError(f"{source}: expected a folder of class folders or a .csv of path,label rows")
        for path, label in samples:
            if num_classes is not None and not 0 <= label < num_classes:
                raise DataError(f"{path}: label {label} is outside the model's {num_classes} classes")
        good, self.skipped = _keep_readable([p for p, _ in samples], self.mode)
        keep = set(good)
        self.samples = [(p, y) for p, y in samples if p in keep]
        if not self.samples:
            raise DataError(f"{source}: no readable images")

    @staticmethod
    def _from_tree(root: Path, classes: Optional[Sequence[str]]) -> Tuple[List[Tuple[Path, int]], List[str]]:
        names = list(classes) if classes is not None else sorted(d.name for d in root.iterdir() if d.is_dir())
        if not names:
            raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>)")
        samples = []
        for index, name in enumerate(names):
            folder = root / name
            if not folder.is_dir():
                raise DataError(f"{folder}: class folder missing (classes: {names})")
            images = _images_in(folder)
            if not images:
                raise DataError(f"{folder}: empty class folder (no {', '.join(IMAGE_EXTENSIONS)} files)")
            samples += [(p, index) for p in images]
        return samples, names

    @staticmethod
    def _from_csv(path: Path, classes: Optional[Sequence[str]]) -> Tuple[List[Tuple[Path, int]], List[str]]:
        """``path,label`` rows; labels are all class ids (0, 1, ...) or all class names, never a mix."""
        rows = _read_csv_rows(path)
        if rows and [c.strip() for c in rows[0][:2]] == ["path", "label"]:
            rows = rows[1:]
        if not rows:
            raise DataError(f"{path}: no rows (expected path,label)")
        short = next((n for n, r in enumerate(rows, 1) if len(r) < 2), None)
        if short is not None:
            raise DataError(f"{path}: every row needs two columns path,label (row {short} has "
                            f"{len(rows[short - 1])})")
        labels = [r[1].strip() for r in rows]
        ids = [lbl for lbl in labels if _is_class_id(lbl)]
        if ids and len(ids) != len(labels):  # a mix would turn ids into names sorted as text: silent relabelling
            odd = next(n for n, lbl in enumerate(labels, 1) if not _is_class_id(lbl))
            raise DataError(f"{path}: labels must be all class ids (0, 1, ...) or all class names; row {odd} has "
                            f"{labels[odd - 1]!r} among {len(ids)} ids such as {ids[0]!r}")
        numeric = bool(ids)
        if numeric:
            largest = max(int(lbl) for lbl in labels)
            if largest >= MAX_CLASSES:
                row = next(n for n, lbl in enumerate(labels, 1) if int(lbl) == largest)
                raise DataError(f"{path}: label {largest} in row {row} is not a plausible class id "
                                f"(expected 0 <= id < {MAX_CLASSES:,})")
        names = list(classes) if classes is not None else (
            [str(i) for i in range(largest + 1)] if numeric else sorted(set(labels)))
        samples = []
        for (rel, *_), lbl in zip(rows, labels):
            if not numeric and lbl not in names:
                raise DataError(f"{path}: label {lbl!r} of {rel} is not one of the classes {names}")
            samples.append((path.parent / rel.strip(), int(lbl) if numeric else names.index(lbl)))
        return samples, names

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(_open_image(path, self.mode)), label


class SegmentationData(Dataset):
    """(image (C, H, W) normalised, mask (1, H, W) in {0, 1}) pairs from ``DIR/images`` and ``DIR/masks``.

    A mask is matched to an image by file stem, with or without a ``_segmentation`` suffix (ISIC naming).
    Images and masks are resized to ``size`` (H, W); masks with nearest-neighbour interpolation.
    """

    def __init__(self, root: Path, size: Tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 channels: int = 3):
        root = Path(root)
        images_dir, masks_dir = root / "images", root / "masks"
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: missing (expected {root}/images and {root}/masks)")
        images = _images_in(images_dir)
        if not images:
            raise DataError(f"{images_dir}: empty folder")
        masks = {p.stem.removesuffix("_segmentation"): p for p in _images_in(masks_dir)}
        self.mode, self.size = ("L" if channels == 1 else "RGB"), tuple(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        good, self.skipped = _keep_readable(images, self.mode)
        self.pairs = []
        for image in good:
            mask = masks.get(image.stem)
            if mask is None:
                raise DataError(f"{image}: no mask named {image.stem}.png or {image.stem}_segmentation.png in {masks_dir}")
            self.pairs.append((image, mask))
        if not self.pairs:
            raise DataError(f"{images_dir}: no readable images")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        from PIL import Image

        image_path, mask_path = self.pairs[index]
        image, mask = _open_image(image_path, self.mode), _open_image(mask_path, "L")
        if image.size != mask.size:
            raise DataError(f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} "
                            f"is {image.size[0]}x{image.size[1]}")
        h, w = self.size
        image = image.resize((w, h), Image.BILINEAR)
        mask = mask.resize((w, h), Image.NEAREST)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        y = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32)).unsqueeze(0)
        return (x - self.mean) / self.std, y


class VideoSequenceData(Dataset):
    """(input frames (T_in, C, H, W), future frames (T_out, C, H, W)) in [0, 1] from ``.npz`` or frame folders."""

    def __init__(self, source: Path, input_frames: int, future_frames: int, channels: int = 1):
        source = Path(source)
        if source.is_file() and source.suffix == ".npz":
            with np.load(source, allow_pickle=False) as data:
                if "frames" not in data:
                    raise DataError(f"{source}: expected an array named 'frames', found {list(data.keys())}")
                frames = data["frames"]
        elif source.is_dir():
            frames = self._from_folders(source, channels)
        else:
            raise DataError(f"{source}: expected a .npz file with 'frames' or a folder of sequence folders")
        if frames.ndim == 4:
            frames = frames[:, :, None]
        if frames.ndim != 5:
            raise DataError(f"{source}: frames must be (N, T, H, W) or (N, T, C, H, W), got shape {frames.shape}")
        need = input_frames + future_frames
        if frames.shape[1] < need:
            raise DataError(f"{source}: sequences have {frames.shape[1]} frames, {need} needed "
                            f"({input_frames} input + {future_frames} future)")
        scale = 255.0 if frames.dtype == np.uint8 else 1.0
        self.frames = torch.from_numpy(np.ascontiguousarray(frames[:, :need])).float() / scale
        self.input_frames = input_frames

    @staticmethod
    def _from_folders(root: Path, channels: int) -> np.ndarray:
        sequences = sorted(d for d in root.iterdir() if d.is_dir())
        if not sequences:
            raise DataError(f"{root}: no sequence folders")
        mode = "L" if channels == 1 else "RGB"
        arrays = []
        for seq in sequences:
            images = _images_in(seq)
            if not images:
                raise DataError(f"{seq}: empty sequence folder")
            stack = np.stack([np.asarray(_open_image(p, mode)) for p in images])
            if arrays and stack.shape[1:] != arrays[0].shape[1:]:
                raise DataError(f"{seq}: frames are {stack.shape[1:]}, other sequences {arrays[0].shape[1:]}")
            arrays.append(stack)
        length = min(a.shape[0] for a in arrays)
        out = np.stack([a[:length] for a in arrays])
        return out if channels == 1 else out.transpose(0, 1, 4, 2, 3)

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, index: int):
        seq = self.frames[index]
        return seq[:self.input_frames], seq[self.input_frames:]
