#!/usr/bin/env python
"""Fig. 6.3: ERF maps of linear ARMA networks, depth L = 1, 3, 5 x AR coefficient a = 0, 0.6, 0.8, 0.9.

Setup of 6.5.1: 32 channels, 64x64 maps, 3x3 MA kernels (Xavier), 3x3 AR kernels drawn in the stable region
-a <= f_-1 + f_1 <= 0; each map averages the gradient maps of the 32 output channels at the centre pixel.
Writes a PNG grid (titles give the measured radius of eq. 6.3) and prints the radii as a table.

    python scripts/plot_erf.py --out benchmarks/arma_erf.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from zoo_arma.erf import erf, linear_arma_network

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "arma_erf.png")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--coefficients", type=float, nargs="+", default=[0.0, 0.6, 0.8, 0.9])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(args.coefficients), len(args.depths)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    table = []
    for i, a in enumerate(args.coefficients):
        for j, depth in enumerate(args.depths):
            net = linear_arma_network(depth, a, channels=args.channels, seed=args.seed)
            with torch.enable_grad():
                res = erf(net, (args.channels, args.size, args.size))
            table.append({"a": a, "depth": depth, "radius": round(res.radius, 3), "std": round(res.std, 3)})
            ax = axes[i][j]
            ax.imshow(res.map.numpy(), cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"L={depth}, a={a}: r={res.std:.1f}", fontsize=8)
            print(f"a={a:<4} L={depth}: radius (eq. 6.3) {res.radius:6.2f}   std {res.std:6.2f}", flush=True)
    fig.suptitle("ERF of linear ARMA networks (Fig. 6.3); r = ERF std in pixels", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    args.out.with_suffix(".json").write_text(json.dumps({"command": "python scripts/plot_erf.py", "size": args.size,
                                                          "channels": args.channels, "radii": table}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
