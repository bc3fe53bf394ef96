"""Reliability diagrams (accuracy vs confidence) of the bundled BQNs (AI, AI-norm, MC-10, MAP) and, when the demo
left them in the zoo cache, the E-QNNs and Gaussian BNNs (MLP, CNN), on the 2,000 held-out MNIST images. Writes a PNG.

    python scripts/plot_calibration.py [--out benchmarks/bqn_calibration.png --bins 15]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import zoo  # noqa: E402
from zoo.paths import cache_dir  # noqa: E402
from zoo_bqn.data import mnist_split  # noqa: E402
from zoo_bqn.metrics import ece, reliability  # noqa: E402
from zoo_bqn.train import predict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def draw(ax, logp: torch.Tensor, y: torch.Tensor, title: str, bins: int) -> None:
    conf, acc, count = reliability(logp, y, bins)
    edges = torch.linspace(0, 1, bins + 1)
    mask = count > 0
    ax.bar(edges[:-1][mask], acc[mask], width=1 / bins, align="edge", edgecolor="k", label="accuracy")
    ax.bar(edges[:-1][mask], (conf - acc)[mask], bottom=acc[mask], width=1 / bins, align="edge", color="tab:red",
           alpha=0.4, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_title(f"{title}\nECE {ece(logp, y, bins):.4f}", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "bqn_calibration.png")
    ap.add_argument("--bins", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, _, xte, yte = mnist_split(8000, seed=0)
    panels = []
    with torch.no_grad():
        for name in ("bqn-mlp-mnist", "bqn-cnn-mnist"):
            model = zoo.create(name, pretrained=True).eval()
            for label, kw in [("AI", dict(mode="ai")), ("AI-norm", dict(mode="ai-norm")),
                              ("MC-10", dict(mode="mc", samples=10)), ("MAP", dict(mode="map"))]:
                g = torch.Generator().manual_seed(0)
                panels.append((f"{name} {label}", predict(lambda x, kw=kw, g=g: model(x, generator=g, **kw), xte)))
        from bench_bqn import load_baseline

        store = cache_dir() / "bqn-demo"
        for kind in ("mlp", "cnn"):
            ens = load_baseline(store / f"e-qnn-{kind}.safetensors", kind)
            if ens is not None:
                panels.append((f"E-QNN ({kind.upper()})", predict(ens, xte)))
            bnn = load_baseline(store / f"bnn-sgvb-{kind}.safetensors", kind)
            if bnn is not None:
                torch.manual_seed(0)
                panels.append((f"Gaussian BNN SGVB ({kind.upper()}) MC-10",
                               predict(lambda x, b=bnn: b(x, samples=10), xte)))
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (title, logp) in zip(axes.flat, panels):
        draw(ax, logp, yte, title, args.bins)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
