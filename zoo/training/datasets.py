"""Turn a path (or a ready Dataset) into the Dataset a model's task and ``pretrained_cfg`` call for."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

from torch.utils.data import Dataset

from zoo.errors import ZooError
from zoo.training.data import ImageClassificationData, SegmentationData, VideoSequenceData
from zoo.training.tensor_data import is_npz_folder, npz_folder_data

DataSource = Union[str, Path, Dataset]


def build_dataset(source: DataSource, cfg: Mapping[str, Any], train: bool, *, augment: bool = True,
                  classes: Optional[list] = None, input_frames: int = 10, future_frames: int = 10,
                  input_size: Optional[int] = None) -> Dataset:
    """The Dataset for ``source`` following the model's ``pretrained_cfg`` (task, input size, mean/std);
    ``input_size`` overrides the image height and width (square) of classification and segmentation data.
    A folder of ``.npz`` files (``images``, ``labels``) is classification data held in memory
    (:mod:`zoo.training.tensor_data`: whole-batch crop-and-flip augmentation)."""
    if isinstance(source, Dataset):
        return source
    source = Path(source)
    task, shape = cfg["task"], list(cfg["input"]["shape"])
    if input_size is not None and task in ("classification", "segmentation"):
        shape = [shape[0], input_size, input_size]
    if task == "classification" and is_npz_folder(source):
        return npz_folder_data(source, cfg["input"], train, augment=augment, input_size=input_size, classes=classes)
    if task == "classification":
        from timm.data import create_transform

        channels = shape[0]
        mean = tuple(cfg["input"].get("mean") or [0.5] * channels)
        std = tuple(cfg["input"].get("std") or [0.5] * channels)
        if train and augment:
            transform = create_transform(input_size=tuple(shape), is_training=True, mean=mean, std=std,
                                         scale=(0.5, 1.0), hflip=0.5, color_jitter=0.2)
        else:
            transform = create_transform(input_size=tuple(shape), is_training=False, mean=mean, std=std, crop_pct=1.0)
        return ImageClassificationData(source, transform, num_classes=cfg["input"].get("num_classes"),
                                       channels=channels, classes=classes)
    if task == "segmentation":
        channels = shape[0]
        return SegmentationData(source, size=(shape[1], shape[2]),
                                mean=cfg["input"].get("mean") or [0.5] * channels,
                                std=cfg["input"].get("std") or [0.5] * channels, channels=channels)
    if task == "video-prediction":
        channels = shape[1] if len(shape) == 4 else shape[0]
        return VideoSequenceData(source, input_frames=input_frames, future_frames=future_frames, channels=channels)
    raise ZooError(f"no file loader for {task} models: pass a torch Dataset instead of {source}")
