"""Turn a path (or a ready Dataset) into the Dataset a model's task and ``pretrained_cfg`` call for."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, NamedTuple, Optional, Union

from torch.utils.data import Dataset, Subset

from zoo.errors import ZooError
from zoo.training.data import ImageClassificationData, SegmentationData, VideoSequenceData
from zoo.training.tensor_data import MAX_CLASSES, is_npz_folder, npz_folder_data

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


class DataClasses(NamedTuple):
    """The classes a classification data source holds, learnt without opening its images.

    ``named``: the classes have names (class folders, CSV label names), so their number is exact; otherwise the
    labels are class ids 0..``count``-1 (CSV ids, ``.npz`` labels) and a model may have more classes than appear."""

    names: List[str]
    named: bool

    @property
    def count(self) -> int:
        return len(self.names)

    def describe(self, limit: int = 5) -> str:
        if not self.named:
            return f"class ids 0..{self.count - 1}"
        shown = ", ".join(self.names[:limit]) + (f", ... ({self.count} in all)" if self.count > limit else "")
        return shown


def data_classes(source: DataSource) -> Optional[DataClasses]:
    """The classes of classification data ``source``, read cheaply (folder names, CSV labels, ``.npz`` label
    arrays; no image is opened), or ``None`` when the source does not say (a Dataset without ``classes``, a path
    that is none of these: :func:`build_dataset` reports it). Errors in the data's structure (an empty class
    folder, a CSV row without a label) are raised here, before any model is built."""
    if isinstance(source, Dataset):
        classes = getattr(source, "classes", None)
        return DataClasses([str(c) for c in classes], True) if classes else None
    path = Path(source)
    if is_npz_folder(path):
        largest = max((_largest_label(f) for f in sorted(path.glob("*.npz"))), default=None)
        return DataClasses([str(i) for i in range(largest + 1)], False) if largest is not None and largest >= 0 \
            else None
    if path.is_dir():
        _, names = ImageClassificationData._from_tree(path, None)
        return DataClasses(names, True)
    if path.suffix.lower() == ".csv" and path.is_file():
        _, names = ImageClassificationData._from_csv(path, None)
        numeric = all(n == str(i) for i, n in enumerate(names))
        return DataClasses(names, not numeric)
    return None


def data_format(source: DataSource, task: str) -> str:
    """A short name of what ``source`` is: image-folder, csv, npz, images+masks, video, or dataset."""
    if isinstance(source, Dataset):
        return "dataset"
    path = Path(source)
    if task == "segmentation":
        return "images+masks"
    if task == "video-prediction":
        return "npz" if path.suffix == ".npz" else "frame-folders"
    if is_npz_folder(path):
        return "npz"
    return "csv" if path.suffix.lower() == ".csv" else "image-folder"


GENERIC_NAMES = frozenset({"train", "training", "trn", "val", "valid", "validation", "test", "data", "dataset",
                           "labels", "images", "all", "."})


def dataset_name(source: DataSource) -> str:
    """The name a fine-tuned model's ``dataset`` field gets: the data folder's (or CSV's) name, or its parent's
    when that name is generic (``example`` for ``example/train``); a Dataset's ``name`` or type (a ``Subset``:
    the name of the data set it selects from)."""
    while isinstance(source, Subset):
        source = source.dataset
    if isinstance(source, Dataset):
        return str(getattr(source, "name", None) or type(source).__name__)
    path = Path(source)
    name = path.stem if path.suffix.lower() in (".csv", ".npz") else path.name
    if name.lower() in GENERIC_NAMES or not name:
        name = path.resolve().parent.name or name
    return name or str(source)


def _largest_label(path: Path) -> Optional[int]:
    """The largest class id in the ``labels`` array of one ``.npz`` file (only that array is read; never
    unpickled), or ``None`` when it cannot be read: :func:`build_dataset` then reports the file."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            labels = data["labels"]
    except Exception:  # noqa: BLE001 - the full reader names the problem
        return None
    if (not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0
            or labels.max() >= MAX_CLASSES):
        return None
    return int(labels.max())
