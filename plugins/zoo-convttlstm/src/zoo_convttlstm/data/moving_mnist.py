"""Moving-MNIST-2 generator (Sec. 4.7.4): digits (28x28) bouncing with constant velocity in a 64x64 canvas.

Each digit starts at a uniformly random top-left position, moves with a constant speed along a uniformly
random direction and is reflected at the canvas border (the velocity component flips, the position is
mirrored back inside). Digits are composited with a pixel-wise maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np


@dataclass(frozen=True)
class MovingMNISTConfig:
    """Generator settings; ``speed`` is the (min, max) pixel displacement per frame."""

    length: int = 20
    canvas: int = 64
    num_digits: int = 2
    speed: Tuple[float, float] = (2.0, 5.0)

    def check(self, digit_size: int) -> None:
        if self.length < 1 or self.num_digits < 1:
            raise ValueError(f"length and num_digits must be >= 1, got {self.length}, {self.num_digits}")
        if self.canvas <= digit_size:
            raise ValueError(f"canvas ({self.canvas}) must be larger than the digits ({digit_size})")
        lo, hi = self.speed
        if not 0 <= lo <= hi or hi >= self.canvas - digit_size:
            raise ValueError(
                f"speed must be 0 <= min <= max < canvas - digit ({self.canvas - digit_size}), got {self.speed}"
            )


def bounce_trajectory(start: np.ndarray, velocity: np.ndarray, length: int, limit: float) -> np.ndarray:
    """Positions (length, 2) from ``start`` (2,) with reflection at 0 and ``limit`` (inclusive)."""
    pos, vel = start.astype(np.float64).copy(), velocity.astype(np.float64).copy()
    out = np.empty((length, 2))
    for t in range(length):
        out[t] = pos
        pos = pos + vel
        for a in range(2):
            if pos[a] < 0:
                pos[a], vel[a] = -pos[a], -vel[a]
            elif pos[a] > limit:
                pos[a], vel[a] = 2 * limit - pos[a], -vel[a]
    return out


def generate(
    digits: np.ndarray, num_sequences: int, config: MovingMNISTConfig = MovingMNISTConfig(), seed: int = 0
) -> Dict[str, np.ndarray]:
    """Sequences from the digit images ``digits`` (N, 28, 28) uint8.

    Returns ``frames`` (S, T, canvas, canvas) uint8, ``positions`` (S, T, num_digits, 2) float (top-left
    row/col before rounding), ``velocities`` (S, num_digits, 2) initial pixels/frame, ``digit_index`` (S, num_digits) rows of ``digits`` used."""
    if digits.ndim != 3 or digits.shape[1] != digits.shape[2]:
        raise ValueError(f"digits must be (N, size, size) images, got shape {digits.shape}")
    size = digits.shape[1]
    config.check(size)
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    rng = np.random.default_rng(seed)
    limit = config.canvas - size
    s, t, k = num_sequences, config.length, config.num_digits
    frames = np.zeros((s, t, config.canvas, config.canvas), dtype=np.uint8)
    positions = np.zeros((s, t, k, 2))
    velocities = np.zeros((s, k, 2))
    index = rng.integers(0, digits.shape[0], size=(s, k))
    for i in range(s):
        for j in range(k):
            theta = rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(*config.speed)
            start = rng.uniform(0, limit, size=2)
            velocities[i, j] = speed * np.array([np.sin(theta), np.cos(theta)])
            traj = bounce_trajectory(start, velocities[i, j], t, limit)
            positions[i, :, j] = traj
            img = digits[index[i, j]]
            for step, (r, c) in enumerate(np.rint(traj).astype(int)):
                view = frames[i, step, r : r + size, c : c + size]
                np.maximum(view, img, out=view)
    return {"frames": frames, "positions": positions, "velocities": velocities, "digit_index": index}


def split_digits(num_digits: int, test_fraction: float = 0.5, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, test) index sets over ``num_digits`` images."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(num_digits)
    n_test = int(round(num_digits * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def save_npz(path: Union[str, Path], data: Dict[str, np.ndarray], **meta: object) -> Path:
    """Write ``frames`` (+ trajectories, digit indices, metadata) to a compressed ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {f"meta_{k}": np.asarray(v) for k, v in meta.items()}
    np.savez_compressed(path, **data, **extra)
    return path


def load_frames(path: Union[str, Path]) -> np.ndarray:
    """``frames`` (S, T, H, W) uint8 from a generator ``.npz``; raises ValueError when malformed."""
    with np.load(path, allow_pickle=False) as data:
        if "frames" not in data:
            raise ValueError(f"{path}: expected an array named 'frames', found {list(data.keys())}")
        frames = data["frames"]
    if frames.ndim != 4:
        raise ValueError(f"{path}: frames must be (sequences, time, height, width), got shape {frames.shape}")
    return frames
