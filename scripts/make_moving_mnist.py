#!/usr/bin/env python
"""Write Moving-MNIST-2 sequences (.npz with `frames` (N, T, 64, 64) uint8) built from the real MNIST digits.

Train and test sequences use disjoint halves of the digit images (--split-seed). Data go outside the repo
(default: the zoo cache). Example:
    python scripts/make_moving_mnist.py --train 10000 --val 3000 --test 5000 --length 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.paths import cache_dir
from zoo_convttlstm.data.mnist_idx import default_mnist_images, read_idx_images
from zoo_convttlstm.data.moving_mnist import MovingMNISTConfig, generate, save_npz, split_digits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", type=Path, default=None, help="IDX images (default: shared t10k images)")
    ap.add_argument("--out", type=Path, default=cache_dir() / "moving-mnist-2")
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--val", type=int, default=3000)
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--length", type=int, default=20, help="frames per train/val sequence")
    ap.add_argument("--test-length", type=int, default=40, help="frames per test sequence (10 -> 30 needs 40)")
    ap.add_argument("--digits", type=int, default=2)
    ap.add_argument("--speed", type=float, nargs=2, default=(2.0, 5.0), metavar=("MIN", "MAX"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args()
    digits = read_idx_images(args.mnist or default_mnist_images())
    train_idx, test_idx = split_digits(len(digits), seed=args.split_seed)
    plan = [("train", train_idx, args.train, args.length, args.seed), ("val", train_idx, args.val, args.length,
            args.seed + 1), ("test", test_idx, args.test, args.test_length, args.seed + 2)]
    for name, idx, n, length, seed in plan:
        if n <= 0:
            continue
        cfg = MovingMNISTConfig(length=length, num_digits=args.digits, speed=tuple(args.speed))
        data = generate(digits[idx], n, cfg, seed=seed)
        data["digit_index"] = idx[data["digit_index"]]  # indices into the MNIST file
        path = save_npz(args.out / f"{name}.npz", data, seed=seed, speed=args.speed, split_seed=args.split_seed)
        print(f"{name}: {data['frames'].shape} -> {path}")


if __name__ == "__main__":
    main()
