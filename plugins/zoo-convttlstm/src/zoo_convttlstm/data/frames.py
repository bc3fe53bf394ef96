"""Video clips from a folder of frame sequences: ``ROOT/<sequence>/<frame image>`` (frames in name order).

``FrameSequenceFolder`` yields (inputs (T_in, C, H, W), targets (T_out, C, H, W)) float tensors in [0, 1],
a random contiguous clip of T_in + T_out frames per sequence (``random_clips=True``) or the first one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff")


def list_frames(folder: Path) -> List[Path]:
    """Image files of one sequence folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def read_frame(path: Path, channels: int, size: Optional[Tuple[int, int]]) -> np.ndarray:
    """(C, H, W) uint8 frame, converted to ``channels`` (1 or 3) and resized to ``size`` (H, W) if given."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img)
    except OSError as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


class FrameSequenceFolder(Dataset):
    """Clips of ``input_frames + future_frames`` frames from sequence folders.

    Args:
        root: folder of sequence folders, or an explicit list of sequence folders.
        input_frames, future_frames: T_in and T_out.
        size: (H, W) to resize every frame to; None keeps the size (all frames must then agree).
        channels: 1 (grayscale) or 3 (RGB).
        random_clips: a random start per access (training) or start 0 (evaluation).
        seed: seed of the clip positions (with ``random_clips``), for reproducibility.
    """

    def __init__(
        self,
        root: Union[str, Path, Sequence[Path]],
        input_frames: int = 10,
        future_frames: int = 10,
        size: Optional[Tuple[int, int]] = None,
        channels: int = 1,
        random_clips: bool = True,
        seed: Optional[int] = None,
        select: Optional[Callable[[Path], bool]] = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if input_frames < 1 or future_frames < 1:
            raise ValueError(f"input_frames and future_frames must be >= 1, got {input_frames}, {future_frames}")
        if isinstance(root, (str, Path)):
            root = Path(root)
            if not root.is_dir():
                raise ValueError(f"{root}: expected a folder of sequence folders, it is not a folder")
            folders = sorted(d for d in root.iterdir() if d.is_dir())
            where = str(root)
        else:
            folders, where = [Path(p) for p in root], "the given folders"
        if select is not None:
            folders = [f for f in folders if select(f)]
        self.clip_length = input_frames + future_frames
        self.sequences: List[List[Path]] = []
        for folder in folders:
            frames = list_frames(folder)
            if len(frames) < self.clip_length:
                raise ValueError(
                    f"{folder}: {len(frames)} frames, a clip needs {self.clip_length} "
                    f"({input_frames} input + {future_frames} future)"
                )
            self.sequences.append(frames)
        if not self.sequences:
            raise ValueError(f"{where}: no sequence folders with frame images ({', '.join(IMAGE_EXTENSIONS)})")
        self.folders = folders
        self.input_frames, self.size, self.channels = input_frames, size, channels
        self.random_clips = random_clips
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.sequences)

    def clip(self, index: int, start: int) -> torch.Tensor:
        """Frames [start, start + clip_length) of sequence ``index`` as (T, C, H, W) float in [0, 1]."""
        paths = self.sequences[index][start : start + self.clip_length]
        frames = [read_frame(p, self.channels, self.size) for p in paths]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ValueError(f"{self.folders[index]}: frames differ in size {sorted(shapes)}; pass size=(H, W)")
        return torch.from_numpy(np.stack(frames)).float() / 255.0

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        n = len(self.sequences[index]) - self.clip_length
        start = int(self._rng.integers(0, n + 1)) if self.random_clips else 0
        clip = self.clip(index, start)
        return clip[: self.input_frames], clip[self.input_frames :]
