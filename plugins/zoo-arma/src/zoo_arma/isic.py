"""The ISIC lesion sample in the data folder (93 images + masks, 128x128 PNG): loading and splitting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["isic_folder", "load_isic", "split_indices", "MEAN", "STD"]

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def isic_folder(root: Optional[Path] = None) -> Path:
    """``<data folder>/isic2018_sample`` (``zoo.paths.data_dir()`` unless ``root`` is given)."""
    if root is None:
        from zoo.paths import data_dir

        root = data_dir()
    folder = Path(root) / "isic2018_sample"
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise FileNotFoundError(f"expected {folder}/images and {folder}/masks (the ISIC sample); set ZOO_DATA")
    return folder


def load_isic(root: Optional[Path] = None, normalize: bool = True) -> Tuple[Tensor, Tensor, list]:
    """All pairs, sorted by ISIC id.

    Returns:
        images ``(N, 3, 128, 128)`` float32 (``(x/255 - 0.5) / 0.5`` if ``normalize``), masks
        ``(N, 1, 128, 128)`` float32 in {0, 1}, and the list of ids.
    """
    from PIL import Image

    folder = isic_folder(root)
    ids, imgs, masks = [], [], []
    for img_path in sorted((folder / "images").glob("ISIC_*.png")):
        isic_id = img_path.stem
        mask_path = folder / "masks" / f"{isic_id}_segmentation.png"
        if not mask_path.exists():
            raise FileNotFoundError(f"mask {mask_path} missing for image {img_path}")
        imgs.append(np.asarray(Image.open(img_path).convert("RGB"), dtype=np.float32) / 255.0)
        masks.append(np.asarray(Image.open(mask_path).convert("L"), dtype=np.uint8) > 127)
        ids.append(isic_id)
    if not ids:
        raise FileNotFoundError(f"no ISIC_*.png images under {folder / 'images'}")
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    if normalize:
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    y = torch.from_numpy(np.stack(masks)).float()[:, None]
    return x, y, ids


def split_indices(n: int, fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0) -> Tuple[list, list, list]:
    """A seeded random train/val/test split with the dissertation's 0.7/0.1/0.2 ratios (6.5.3)."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    return sorted(perm[:n_train]), sorted(perm[n_train : n_train + n_val]), sorted(perm[n_train + n_val :])


def recipe_data(cfg: Mapping[str, Any], holdout: int, seed: int = 0, limit: Optional[int] = None):
    """The split of ``scripts/demo_arma_isic.py`` as a recipe data source (``python:zoo_arma.isic:recipe_data``):
    (train, test, description) from :func:`load_isic` and :func:`split_indices`; the validation part the demo
    picks its checkpoint with is in neither. ``holdout`` must be the size of that split's test part."""
    from torch.utils.data import TensorDataset

    x, y, ids = load_isic()
    train, _, test = split_indices(len(ids), seed=seed)
    if holdout != len(test):
        raise ValueError(f"holdout must be {len(test)} (the 0.2 test part of the seeded 0.7/0.1/0.2 split of "
                         f"{len(ids)} ISIC images), got {holdout}")
    train = train[:limit] if limit is not None else train
    text = (f"{len(train)} train / {len(test)} test images of the {len(ids)}-image ISIC 2018 Task-1 sample at "
            f"{x.shape[-2]}x{x.shape[-1]} (shared/data/isic2018_sample), seeded 0.7/0.1/0.2 split (seed {seed}, "
            f"zoo_arma.isic.split_indices, as scripts/demo_arma_isic.py); metrics on the test images")
    return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test]), text
