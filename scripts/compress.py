"""Compress a trained zoo model into a tensorial network (Layer-Decomp, E2E-KD or Seq-KD; Section 2.5.3).

The teacher is a zoo model (``--pretrained`` for its published weights, or ``--checkpoint FILE``);
the student is the grammar model ``{backbone}-{decomposition}-{rate}pct`` and is written with
zoo.save_pretrained (metrics measured on the held-out split) to ``--output``.

    python scripts/compress.py lenet5 --pretrained --decomposition mcp --rate 0.05 --method seq-kd --data mnist
    python scripts/compress.py resnet32 --checkpoint r32.safetensors --decomposition mtt --rate 0.1 --data cifar10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo import datasets
from zoo_tnn.compress import METHODS, compress


def data(name: str, cfg: dict, holdout: int, seed: int, batch: int) -> tuple[DataLoader, DataLoader, str]:
    """Normalised (train, held-out) loaders of a shared data set, split with zoo.datasets.split."""
    if name not in ("mnist", "cifar10"):
        raise SystemExit(f"--data must be mnist or cifar10, got {name!r}")
    images, labels = getattr(datasets, name)()
    x = images.float() / 255.0
    mean = torch.tensor(cfg["input"].get("mean") or [0.5] * x.shape[1]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["input"].get("std") or [0.5] * x.shape[1]).view(1, -1, 1, 1)
    x = (x - mean) / std
    train_idx, held_idx = datasets.split(len(x), holdout, seed)
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(x[train_idx], labels[train_idx]), batch_size=batch, shuffle=True, generator=gen)
    held = DataLoader(TensorDataset(x[held_idx], labels[held_idx]), batch_size=256)
    note = (f"{name} (shared data folder): {len(train_idx)} images for distillation, {holdout} held out "
            f"(zoo.datasets.split seed {seed})")
    return train, held, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", help="dense zoo model name (e.g. lenet5, resnet32)")
    parser.add_argument("--pretrained", action="store_true", help="load the teacher's published weights")
    parser.add_argument("--checkpoint", help="teacher weights (.safetensors) instead of the published ones")
    parser.add_argument("--decomposition", default="mcp")
    parser.add_argument("--rate", type=float, default=0.1, help="fraction of each layer's dense parameters")
    parser.add_argument("--m", type=int, default=None, help="channel modes of reshaped decompositions")
    parser.add_argument("--method", choices=METHODS, default="seq-kd")
    parser.add_argument("--blocks", default="", help="Seq-KD blocks, comma-separated module names "
                        "(e.g. act2,act3,act4 for lenet5; default: each tensorized layer)")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--holdout", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="runs/compress")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher = zoo.create(args.teacher, pretrained=args.pretrained and not args.checkpoint,
                         checkpoint_path=args.checkpoint)
    backbone = teacher.pretrained_cfg.get("args", {}).get("backbone", args.teacher)
    train, held, note = data(args.data, teacher.pretrained_cfg, args.holdout, args.seed, args.batch)
    student, report = compress(teacher, args.decomposition, args.rate, train, method=args.method, m=args.m,
                               blocks=[b for b in args.blocks.split(",") if b] or None, epochs=args.epochs, lr=args.lr, eval_loader=held, max_steps=args.max_steps)
    print(report.summary())
    for row in report.block_losses:
        print(f"  block {row['block']} epoch {row['epoch']}: first loss {row['first_loss']:.5f}, "
              f"mean {row['mean_loss']:.5f} over {row['steps']} steps")
    name = f"{backbone}-{args.decomposition}-{100 * args.rate:g}pct"
    kwargs = {"m": args.m} if args.m else {}
    model = zoo.create(name, **kwargs)
    model.load_state_dict(student.state_dict())
    metrics = {"top1": 100 * (report.accuracy_after or 0.0), "teacher_top1": 100 * (report.accuracy_teacher or 0.0),
               "layer_decomp_top1": 100 * (report.accuracy_layer_decomp or 0.0), "realised_rate": report.realised_rate}
    folder = zoo.save_pretrained(model, Path(args.output) / f"{name}-{args.method}", metrics=metrics,
                                 data=f"{args.method} from {args.teacher}; {note}")
    (folder / "compress_report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    print(f"wrote {folder} (load with zoo.create('local-dir:{folder}', pretrained=True))")


if __name__ == "__main__":
    main()
