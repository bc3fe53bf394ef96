"""Training throughput of ``zoo train resnet32`` on the CIFAR-10 .npz folder against a minimal hand-written loop.

Both sides train the same ResNet-32 (same initial weights, channels-last), on the same 45,000-image training split
of the shared CIFAR-10 training set, with the same batch size, SGD with Nesterov momentum and weight decay, 4-px
padded random crops and horizontal flips, on the same number of torch threads:

* ``zoo``: :func:`zoo.finetune` (what ``zoo train resnet32 --data cifar10_train`` runs) over ``--steps`` batches;
* ``hand``: a loop a PyTorch user would write: index a uint8 tensor, crop and flip each image by slicing, scale,
  normalise, forward, backward, step.

Samples per second are per CPU second of this process (``time.process_time``), so a job running beside the
benchmark does not skew the ratio; the sides alternate ``--repeats`` times and the best run of each is kept
(interference only ever adds time: on this shared machine equal runs vary by up to 25 %).
Writes benchmarks/train.{json,md}.

    python scripts/bench_train.py --steps 20 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

import zoo
from zoo.hub.files import write_text_atomic
from zoo.recipes import build_data, load_recipe

OUT = Path(__file__).resolve().parents[1] / "benchmarks"


def hand_loop(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
              std: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> None:
    """``steps`` SGD steps written by hand on uint8 ``images`` (N, C, H, W)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    padded = F.pad(images, (4, 4, 4, 4))
    model.train()
    for step in range(steps):
        idx = order[step * batch:(step + 1) * batch]
        offsets = torch.randint(0, 9, (len(idx), 2), generator=gen).tolist()
        flips = (torch.rand(len(idx), generator=gen) < 0.5).tolist()
        crops = []
        for i, (top, left), flip in zip(idx.tolist(), offsets, flips):
            crop = padded[i, :, top:top + 32, left:left + 32]
            crops.append(crop.flip(-1) if flip else crop)
        x = (torch.stack(crops).float() / 255.0 - mean) / std
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def timed(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per timed run")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    initial = zoo.create("resnet32")
    state = {k: v.clone() for k, v in initial.state_dict().items()}
    data = build_data(load_recipe("resnet32"), initial.pretrained_cfg)
    n = args.steps * args.batch
    zoo_train = Subset(data.train.dataset, data.train.indices[:n])
    source = data.train.dataset
    images, labels = source.images[data.train.indices[:n]], source.labels[data.train.indices[:n]]
    mean, std = source.mean / 255.0, source.std / 255.0

    def fresh() -> torch.nn.Module:
        model = zoo.create("resnet32")
        model.load_state_dict(state)
        return model.to(memory_format=torch.channels_last)

    def run_zoo() -> None:
        zoo.finetune(fresh(), zoo_train, None, epochs=1, lr=0.1, batch_size=args.batch, optimizer="sgd",
                     weight_decay=5e-4, scheduler="none", channels_last=True, progress=False, device="cpu")

    def run_hand() -> None:
        hand_loop(fresh(), images, labels, mean, std, args.steps, args.batch, 0.1, 0)

    seconds: Dict[str, list] = {"zoo": [], "hand": []}
    for repeat in range(args.repeats):
        for name, fn in (("zoo", run_zoo), ("hand", run_hand)) if repeat % 2 == 0 else (("hand", run_hand),
                                                                                         ("zoo", run_zoo)):
            seconds[name].append(timed(fn))
            print(f"repeat {repeat + 1}: {name} {n / seconds[name][-1]:.1f} samples per CPU second")
    rate = {k: n / min(v) for k, v in seconds.items()}
    median_ratio = statistics.median(seconds["hand"]) / statistics.median(seconds["zoo"])
    result = {"command": f"python scripts/bench_train.py --steps {args.steps} --batch {args.batch} "
                         f"--repeats {args.repeats} --threads {args.threads}",
              "model": "resnet32", "samples_per_run": n, "threads": args.threads, "cpu_seconds": seconds,
              "samples_per_cpu_second": rate, "ratio_zoo_to_hand": rate["zoo"] / rate["hand"],
              "ratio_of_medians": median_ratio, "goal": 0.95}
    write_text_atomic(args.output / "train.json", json.dumps(result, indent=2) + "\n")
    md = ["# Training throughput: `zoo train resnet32` vs a hand-written loop", "",
          f"`{result['command']}`: ResNet-32, CIFAR-10 training split (uint8 .npz folder in memory), batch "
          f"{args.batch}, SGD (Nesterov), crop-and-flip augmentation, channels-last, {args.threads} torch thread(s); "
          f"best of {args.repeats} alternating runs of {args.steps} steps (every run's CPU seconds are in train.json), "
          "per CPU second of this process.", "",
          "| loop | samples / CPU s |", "|---|---|",
          f"| zoo.finetune (`zoo train`) | {rate['zoo']:.1f} |", f"| hand-written | {rate['hand']:.1f} |", "",
          f"Ratio zoo / hand: **{result['ratio_zoo_to_hand']:.3f}** (goal ≥ {result['goal']}); ratio of the median "
          f"runs {median_ratio:.3f}."]
    write_text_atomic(args.output / "train.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
