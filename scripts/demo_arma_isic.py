#!/usr/bin/env python
"""Train the reduced-width U-Net and ARMA U-Net on the shared ISIC sample and measure ACC/SE/SP/PC/F1/JS.

Same seed, split, data order, augmentation and optimiser for both models; only the 3x3 convolutions differ
(plain vs ARMA, AR 3x3 starting at the identity). Writes benchmarks/arma_isic.{json,md}; with
``--write-weights`` also the bundled weights and the ``weights:`` blocks of the ``*-isic-small`` entries.

    python scripts/demo_arma_isic.py --epochs 25 --write-weights      # about 9 minutes on one CPU thread
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn.functional as F

import zoo
from zoo_arma import isic
from zoo_arma.metrics import segmentation_metrics

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["unet-isic-small", "armaunet-isic-small"]


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, crop: int = 0) -> tuple:
    """Random crop (``crop`` px, 0 = none), flips, 90-degree rotations and a brightness/contrast jitter."""
    xs, ys = [], []
    for xi, yi in zip(x, y):
        if crop and crop < xi.shape[-1]:
            i, j = (int(v) for v in torch.randint(xi.shape[-1] - crop + 1, (2,), generator=gen))
            xi, yi = xi[:, i : i + crop, j : j + crop], yi[:, i : i + crop, j : j + crop]
        k = int(torch.randint(4, (1,), generator=gen))
        xi, yi = torch.rot90(xi, k, (1, 2)), torch.rot90(yi, k, (1, 2))
        if torch.rand(1, generator=gen) < 0.5:
            xi, yi = xi.flip(2), yi.flip(2)
        scale = 1.0 + 0.2 * (torch.rand(1, generator=gen) - 0.5)
        shift = 0.2 * (torch.rand(1, generator=gen) - 0.5)
        xs.append(xi * scale + shift)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 8) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.sigmoid(model(x[i : i + batch])) for i in range(0, len(x), batch)])


def train_one(name: str, data: Dict[str, torch.Tensor], args: argparse.Namespace) -> Dict:
    torch.manual_seed(args.seed)
    model = zoo.create(name)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.98)  # 0.98 per epoch (6.5.3)
    gen = torch.Generator().manual_seed(args.seed)
    x, y = data["x_train"], data["y_train"]
    best, best_state, history = -1.0, None, []
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        losses = []
        for i in range(0, len(x), args.batch):
            idx = perm[i : i + args.batch]
            xb, yb = augment(x[idx], y[idx], gen, args.crop)
            loss = F.binary_cross_entropy_with_logits(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        val = segmentation_metrics(predict(model, data["x_val"]), data["y_val"])
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), "val_F1": val["F1"], "val_JS": val["JS"]})
        print(f"{name} epoch {epoch + 1:3d} loss {history[-1]['loss']:.4f} val F1 {val['F1']:.3f} JS {val['JS']:.3f}", flush=True)
        if val["F1"] > best:
            best, best_state = val["F1"], {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_s = time.time() - start
    model.load_state_dict(best_state)
    prob = predict(model, data["x_test"])
    return {
        "model": model,
        "test_pooled": segmentation_metrics(prob, data["y_test"]),
        "test_per_image": segmentation_metrics(prob, data["y_test"], per_image=True),
        "best_val_F1": best,
        "best_epoch": max(history, key=lambda h: h["val_F1"])["epoch"],
        "train_seconds": round(train_s, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
    }


def write_weights(name: str, result: Dict, split: Dict[str, List[str]], args: argparse.Namespace) -> None:
    """Bundle the trained weights and record them in the arma registry fragment (zoo.publish)."""
    from zoo.publish import record_state_dict

    data = (f"trained {args.epochs} epochs (best val-F1 epoch {result['best_epoch']}) on {len(split['train'])} images "
            f"of the 93-image ISIC 2017/2018 Task-1 sample at 128x128 (shared/data/isic2018_sample), seeded "
            f"0.7/0.1/0.2 split (seed {args.seed}); metrics on the {len(split['test'])} held-out test images, pixel "
            f"counts pooled, threshold 0.5; scripts/demo_arma_isic.py")
    metrics = {k: round(v, 4) for k, v in result["test_pooled"].items()}
    registry = record_state_dict(zoo.model_info(name), result["model"].state_dict(), metrics, data,
                                 metadata={"model": name, "script": "scripts/demo_arma_isic.py"})
    print(f"recorded the weights of {name} in {registry}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--crop", type=int, default=0, help="train on random crops of this size (full 128x128 at test)")
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (smoke runs)")
    p.add_argument("--write-weights", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "arma_isic")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    x, y, ids = isic.load_isic()
    if args.limit:
        x, y, ids = x[: args.limit], y[: args.limit], ids[: args.limit]
    tr, va, te = isic.split_indices(len(ids), seed=args.seed)
    data = {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va], "x_test": x[te], "y_test": y[te]}
    split = {"train": [ids[i] for i in tr], "val": [ids[i] for i in va], "test": [ids[i] for i in te]}
    print(f"ISIC sample: {len(ids)} images -> train {len(tr)} / val {len(va)} / test {len(te)}")

    results = {name: train_one(name, data, args) for name in args.models}
    if len(results) < 2:
        return
    report = {
        "command": "python scripts/demo_arma_isic.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "write_weights", "models")
        ) + (" --write-weights" if args.write_weights else ""),
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}, {args.threads} thread(s)",
        "data": "shared/data/isic2018_sample (93 pairs, 128x128)",
        "split": split,
        "setup": {"epochs": args.epochs, "batch": args.batch, "optimizer": "Adam", "lr": args.lr, "lr_decay_per_epoch": 0.98,
                  "loss": "BCE on logits", "augmentation": f"random {args.crop}x{args.crop} crop, rot90, flip, brightness/contrast jitter" if args.crop else "rot90, flip, brightness/contrast jitter",
                  "checkpoint": "best validation F1", "width": 8},
        "models": {n: {k: v for k, v in r.items() if k != "model"} for n, r in results.items()},
    }
    a, b = results[MODELS[1]]["test_pooled"], results[MODELS[0]]["test_pooled"]
    report["arma_minus_unet_pooled"] = {k: round(a[k] - b[k], 4) for k in a}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        "# ARMA U-Net vs U-Net on the ISIC sample (reduced width 8)", "",
        f"`{report['command']}` on {report['machine']}.", "",
        f"Train {len(tr)} / val {len(va)} / test {len(te)} images (seeded 0.7/0.1/0.2 split of the 93-image sample). "
        "Width 8 instead of 64 and 128x128 inputs instead of 224x224, to fit a CPU budget of about 10 minutes; "
        f"{args.epochs} epochs, Adam lr {args.lr}, decay 0.98/epoch, BCE, checkpoint with the best validation F1.", "",
        "| model | params | train s | best epoch | split | ACC | SE | SP | PC | F1 | JS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in MODELS:
        r = results[n]
        for key, label in (("test_pooled", "test, pooled"), ("test_per_image", "test, per-image mean")):
            m = r[key]
            lines.append(f"| {n} | {r['parameters']:,} | {r['train_seconds']} | {r['best_epoch']} | {label} | "
                         + " | ".join(f"{m[k]:.3f}" for k in ("ACC", "SE", "SP", "PC", "F1", "JS")) + " |")
    lines += ["", "ARMA minus U-Net (pooled): " + ", ".join(f"{k} {v:+.3f}" for k, v in report["arma_minus_unet_pooled"].items()),
              "", f"With {len(te)} test images and one seed, differences of a few points are within noise; the dissertation "
              "(Table 6.2) averages 10 seeds on 2,594 images at full width."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.write_weights:
        for n in MODELS:
            write_weights(n, results[n], split, args)


if __name__ == "__main__":
    main()
