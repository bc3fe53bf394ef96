"""KTH actions loader with the person split of Sec. 4.7.4 (persons 1-16 train, 17-25 test).

Expects the videos extracted to frame folders named like the original files,
``personPP_ACTION_dS[_uncomp]/`` (ACTION in boxing, handclapping, handwaving, jogging, running, walking),
anywhere below ``root``. Frames are converted to grayscale and resized to 128x128; each access returns a
random clip of 20 contiguous frames split 10 input / 10 future (or other lengths).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple, Union

from .frames import FrameSequenceFolder

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
KTH_NAME = re.compile(r"^person(\d{2})_(" + "|".join(ACTIONS) + r")_d([1-4])(?:_uncomp)?$")
SPLITS = {"train": range(1, 17), "test": range(17, 26)}


def parse_kth_name(name: str) -> Tuple[int, str, int]:
    """(person, action, scenario) from a folder name ``personPP_ACTION_dS``; ValueError otherwise."""
    m = KTH_NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a KTH sequence name (expected personPP_ACTION_dS, e.g. person01_boxing_d1)")
    person = int(m.group(1))
    if not 1 <= person <= 25:
        raise ValueError(f"{name!r}: KTH persons are 1..25, got {person}")
    return person, m.group(2), int(m.group(3))


def kth_folders(root: Union[str, Path], split: str) -> List[Path]:
    """Sequence folders of ``split`` ("train": persons 1-16, "test": 17-25) below ``root``, sorted."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: KTH root folder does not exist")
    found = [d for d in sorted(root.rglob("person*")) if d.is_dir() and KTH_NAME.match(d.name)]
    if not found:
        raise ValueError(f"{root}: no KTH frame folders named personPP_ACTION_dS below it")
    return [d for d in found if parse_kth_name(d.name)[0] in SPLITS[split]]


class KTHClips(FrameSequenceFolder):
    """Random clips of KTH sequences of one split, grayscale, resized to ``size`` (128 x 128)."""

    def __init__(
        self,
        root: Union[str, Path],
        split: str = "train",
        input_frames: int = 10,
        future_frames: int = 10,
        size: Tuple[int, int] = (128, 128),
        random_clips: Optional[bool] = None,
        seed: Optional[int] = None,
    ) -> None:
        folders = kth_folders(root, split)
        if not folders:
            raise ValueError(f"{root}: no KTH sequences of persons {SPLITS[split].start}-{SPLITS[split].stop - 1}")
        super().__init__(folders, input_frames, future_frames, size=size, channels=1,
                         random_clips=(split == "train") if random_clips is None else random_clips, seed=seed)
        self.split = split


def recipe_data(cfg: Mapping[str, Any], holdout: Optional[int] = None, seed: int = 0, limit: Optional[int] = None,
                root: str = "", input_frames: int = 10, train_future: int = 10, test_future: int = 40):
    """Recipe data source (``python:zoo_convttlstm.data.kth:recipe_data``, option ``root``): random 10 -> 10 clips
    of persons 1-16 for training, the first 10 -> ``test_future`` clip of each sequence of persons 17-25 held out.
    ``holdout`` and ``limit`` (numbers of sequences) cut the two parts."""
    from torch.utils.data import Subset

    side = tuple(cfg["input"]["shape"][-2:])
    train = KTHClips(root, "train", input_frames, train_future, size=side, seed=seed)
    test = KTHClips(root, "test", input_frames, test_future, size=side, random_clips=False)
    if limit is not None:
        train = Subset(train, range(min(limit, len(train))))
    if holdout is not None:
        test = Subset(test, range(min(holdout, len(test))))
    text = (f"KTH actions under {root}, grayscale {side[0]}x{side[1]}: random {input_frames} -> {train_future} clips "
            f"of {len(train)} sequences of persons 1-16 for training, the first {input_frames} -> {test_future} "
            f"clip of {len(test)} sequences of persons 17-25 held out (Sec. 4.7.4)")
    return train, test, text
