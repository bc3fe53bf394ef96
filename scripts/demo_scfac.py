"""Train a small 1-Lipschitz SC-Fac network on real CIFAR-10 images on the CPU and bundle it as a registry model.

Data: the 10,000 CIFAR-10 *test* images in the shared data folder (the only CIFAR-10 images available
offline), split with a fixed seed into a training part and a held-out part that is never trained on.
Training: Adam with a triangular learning-rate schedule (max 1e-2, dissertation 7.7.2), multi-class hinge
loss with margin eps_0, random 4-px translations (reflect-pad + crop) and horizontal flips.
Evaluation (held-out): clean accuracy, certified accuracy at eps = 36/255 (radius = margin / sqrt(2), L = 1)
and L2-PGD accuracy at the same eps.

Writes plugins/zoo-scfac/src/zoo_scfac/weights/<name>.safetensors, the entry's `weights:` block in the
family registry, and benchmarks/scfac_demo.{json,md}.

    python scripts/demo_scfac.py                 # the bundled run (about 10 minutes on one CPU thread)
    python scripts/demo_scfac.py --minutes 1 --no-write   # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from zoo_scfac.data import holdout_split, load_cifar10_test
from zoo_scfac.networks import LipschitzWideResNet
from zoo_scfac.robust import EPS_CIFAR, evaluate_robustness, multiclass_hinge_loss

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "zoo-scfac" / "src" / "zoo_scfac"
NAME = "sc-fac-wrn10-1-cifar10-small"


def model_args(margin: float) -> dict:
    """Builder arguments of the bundled model (also written to its registry entry)."""
    return {"depth": 10, "widen_factor": 1, "kernel_size": 3, "skip": "add", "downsample": "pool",
            "init": "permutation", "hinge_margin": margin}


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 4-px translations (reflect padding + crop) and horizontal flips, per batch."""
    dx, dy = (int(v) for v in torch.randint(0, 9, (2,), generator=gen))
    x = F.pad(x, (4, 4, 4, 4), mode="reflect")[:, :, dy:dy + 32, dx:dx + 32]
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    x, y = load_cifar10_test()
    train_idx, test_idx = holdout_split(len(y), args.holdout, seed=args.seed)
    xtr, ytr, xte, yte = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    model = LipschitzWideResNet(**model_args(args.margin))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = len(ytr) // args.batch_size
    budget = args.minutes * 60.0
    # triangular learning-rate schedule over the wall-clock budget (up for 40 %, down to 0 at the deadline)
    start, step, epochs = time.time(), 0, 0
    history = []
    done = False
    while not done:
        perm = torch.randperm(len(ytr), generator=gen)
        model.train()
        running, count = 0.0, 0
        for b in range(steps_per_epoch):
            frac = (time.time() - start) / budget
            if frac >= 1.0:
                done = True
                break
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            lr = args.lr * (frac / 0.4 if frac < 0.4 else (1 - frac) / 0.6)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = multiclass_hinge_loss(model(augment(xtr[idx], gen)), ytr[idx], args.margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            count += 1
            step += 1
        epochs += 1
        history.append(running / max(1, count))
        print(f"epoch {epochs}: hinge {history[-1]:.4f}  ({time.time() - start:.0f} s, {step} steps)", flush=True)
    train_seconds = time.time() - start
    metrics = evaluate_robustness(model, xte, yte, eps=EPS_CIFAR, pgd_steps=args.pgd_steps, batch_size=250)
    train_metrics = evaluate_robustness(model, xtr[:2000], ytr[:2000], eps=EPS_CIFAR, pgd_steps=0, batch_size=250)
    return {"model": model, "metrics": metrics, "train_clean_acc_2000": train_metrics["clean_acc"],
            "train_seconds": train_seconds, "steps": step, "epochs": epochs, "history": history,
            "n_train": len(ytr), "n_holdout": len(yte)}


def write_registry(name: str, args: argparse.Namespace, sha: str, result: dict) -> None:
    """Set the model's entry (args + weights block) in the family registry; keep the header comment."""
    path = PLUGIN / "registry.yaml"
    text = path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text)
    m = result["metrics"]
    data["models"][name] = {
        "family": "sc-fac",
        "builder": "lipschitz_wrn",
        "args": model_args(args.margin),
        "dataset": "cifar10",
        "input": {"shape": [3, 32, 32], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "num_classes": 10,
                  "classifier": "head"},
        "tags": ["lipschitz", "orthogonal", "certified-robustness", "wide-resnet", "demo", "cpu-trained"],
        "weights": {
            "hf_hub_id": f"spectral-zoo/{name}",
            "revision": "main",
            "filename": "model.safetensors",
            "sha256": sha,
            "bundled": f"weights/{name}.safetensors",
            "metrics": {"clean_acc": round(m["clean_acc"], 2), "certified_acc": round(m["certified_acc"], 2),
                        "pgd_acc": round(m["pgd_acc"], 2)},
            "data": (f"trained {result['train_seconds'] / 60:.1f} min on one CPU thread on {result['n_train']} images "
                     f"of the CIFAR-10 test set; metrics on the other {result['n_holdout']} (seed {args.seed}), "
                     f"certified and L2-PGD ({args.pgd_steps} steps) at eps = 36/255; scripts/demo_scfac.py"),
        },
        "description": "Small 1-Lipschitz WideResNet10-1 (kernel 3) with SC-Fac convolutions, trained on the CPU "
                       "as a demonstration; not comparable to the dissertation's full CIFAR-10 training.",
    }
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training wall-clock budget (evaluation comes on top)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--margin", type=float, default=0.3, help="hinge margin eps_0")
    p.add_argument("--holdout", type=int, default=2000)
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print only; write no weights/registry/benchmark")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = train(args)
    m = result["metrics"]
    print(f"held-out ({m['n']}): clean {m['clean_acc']:.2f}%  certified@36/255 {m['certified_acc']:.2f}%  "
          f"PGD@36/255 {m['pgd_acc']:.2f}%  (train clean on 2000: {result['train_clean_acc_2000']:.2f}%)")
    if args.no_write:
        return
    weights = PLUGIN / "weights" / f"{NAME}.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in result["model"].state_dict().items()}
    save_file(state, str(weights))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    write_registry(NAME, args, sha, result)
    out = {"name": NAME, "command": "python scripts/demo_scfac.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "no_write"),
        "metrics_holdout": m, "train_clean_acc_2000": result["train_clean_acc_2000"],
        "train_seconds": round(result["train_seconds"], 1), "steps": result["steps"], "epochs": result["epochs"],
        "hinge_per_epoch": [round(h, 5) for h in result["history"]], "n_train": result["n_train"],
        "n_holdout": result["n_holdout"], "weights_sha256": sha, "torch": torch.__version__,
        "threads": args.threads}
    bench = ROOT / "benchmarks"
    (bench / "scfac_demo.json").write_text(json.dumps(out, indent=2) + "\n")
    (bench / "scfac_demo.md").write_text(
        f"# SC-Fac demo: {NAME}\n\n"
        f"`{out['command']}` (written by scripts/demo_scfac.py)\n\n"
        f"Trained {out['train_seconds'] / 60:.1f} min on {args.threads} CPU thread(s), {out['steps']} steps "
        f"({out['epochs']} epochs) on {out['n_train']} CIFAR-10 test-set images; measured on the other "
        f"{out['n_holdout']} held-out images. Lipschitz constant 1 by construction; certified radius = margin / sqrt(2).\n\n"
        "| metric (held-out) | value |\n|---|---|\n"
        f"| clean accuracy | {m['clean_acc']:.2f} % |\n"
        f"| certified accuracy, eps = 36/255 | {m['certified_acc']:.2f} % |\n"
        f"| L2-PGD accuracy, eps = 36/255, {args.pgd_steps} steps | {m['pgd_acc']:.2f} % |\n"
        f"| mean certified radius | {m['mean_certified_radius']:.4f} |\n"
        f"| train clean accuracy (2000 train images) | {out['train_clean_acc_2000']:.2f} % |\n\n"
        "The dissertation's numbers (Tables 7.4-7.6) come from full CIFAR-10 training of networks 100-1000x "
        "larger on a GPU; this run only demonstrates the pipeline on real images.\n")
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB), registry entry {NAME}, benchmarks/scfac_demo.*")


if __name__ == "__main__":
    main()
