#!/usr/bin/env python
"""Fig. 4.3-style strip (inputs, truth, prediction) for one test sequence of a video-prediction model.

    python scripts/plot_video_strip.py convttlstm-mnist-small --data test.npz --index 0 --future 30 --out strip.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import zoo
from zoo_convttlstm.data.moving_mnist import load_frames
from zoo_convttlstm.strip import save_strip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="registry names (pretrained weights are loaded)")
    ap.add_argument("--data", type=Path, required=True, help=".npz with frames (N, T, H, W)")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--inputs", type=int, default=10)
    ap.add_argument("--future", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    frames = torch.from_numpy(load_frames(args.data)[args.index]).float().div(255)[:, None]
    if frames.shape[0] < args.inputs + args.future:
        raise SystemExit(f"sequence has {frames.shape[0]} frames, {args.inputs + args.future} needed")
    x, y = frames[: args.inputs], frames[args.inputs : args.inputs + args.future]
    preds = {}
    with torch.no_grad():
        for name in args.models:
            model = zoo.create(name, pretrained=True).eval()
            preds[name] = model(x[None], future_frames=args.future)[0].clamp(0, 1)
    print(save_strip(x, y, preds, args.out, title=f"{args.inputs} -> {args.future}"))


if __name__ == "__main__":
    main()
