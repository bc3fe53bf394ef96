"""Benchmark (issue #8): inference time per batch and NLL of BQN analytic inference (AI, and AI normalised over the
classes) vs Monte-Carlo sampling (S = 1, 5, 10) vs the E-QNN and the SGVB Gaussian BNN, and training-step time of
the BQN vs the SGVB Gaussian BNN, MLP and CNN, all in one run.

Uses the bundled bqn-mlp-mnist / bqn-cnn-mnist weights and the baselines that scripts/demo_bqn_mnist.py left in
--store (default: the zoo cache); held-out data = the 2,000 MNIST t10k images not used for training (seed-0 split).
Writes STEM.{json,md} (default benchmarks/bqn).

    python scripts/bench_bqn.py [--batches 10 --threads 1 --device cpu|cuda --out benchmarks/bqn --store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from safetensors.torch import load_file
from torch import nn

import zoo
from zoo.paths import cache_dir
from zoo_bqn.baselines.eqnn import EnsembleQNN, QNNCNN, QNNMLP
from zoo_bqn.baselines.sgvb import GaussianBNN, GaussianCNN, SampledClassifier, sgvb_loss
from zoo_bqn.data import mnist_split
from zoo_bqn.metrics import all_metrics
from zoo_bqn.objective import alt_elbo_loss
from zoo_bqn.train import predict

ROOT = Path(__file__).resolve().parents[1]
CNN = {"channels": [16, 32], "kernel_size": 5}  # the registry's bqn-cnn-mnist architecture
HIDDEN = [256, 256]  # the registry's bqn-mlp-mnist architecture


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (CUDA) so that wall-clock timings cover them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eqnn(kind: str, members: int) -> EnsembleQNN:
    """An untrained E-QNN of ``members`` networks of the BQN architecture ``kind`` ("mlp" or "cnn")."""
    make = (lambda: QNNMLP(784, HIDDEN, 10)) if kind == "mlp" else (lambda: QNNCNN(1, 28, CNN["channels"],
                                                                                    CNN["kernel_size"], 10))
    return EnsembleQNN([make() for _ in range(members)])


def gaussian_bnn(kind: str) -> SampledClassifier:
    """An untrained SGVB Gaussian BNN of the BQN architecture ``kind`` ("mlp" or "cnn")."""
    return GaussianBNN(784, HIDDEN, 10) if kind == "mlp" else GaussianCNN(1, 28, CNN["channels"],
                                                                          CNN["kernel_size"], 10)


def load_baseline(path: Path, kind: str) -> Optional[nn.Module]:
    """The demo's E-QNN (``e-qnn-*``) or Gaussian BNN (``bnn-sgvb-*``) state in ``path``, or None if absent."""
    if not path.is_file():
        return None
    state = load_file(str(path))
    if path.name.startswith("e-qnn"):
        model: nn.Module = eqnn(kind, len({k.split(".")[1] for k in state}))
    else:
        model = gaussian_bnn(kind)
    model.load_state_dict(state)
    return model.eval()


def time_per_batch(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batches: int,
                   device: torch.device, batch_size: int = 100) -> float:
    """Median seconds of fn on ``batches`` consecutive batches (after one warm-up call)."""
    fn(x[:batch_size])
    times = []
    for i in range(batches):
        xb = x[i * batch_size: (i + 1) * batch_size]
        synchronize(device)
        t = time.perf_counter()
        fn(xb)
        synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_time(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, reps: int, device: torch.device) -> float:
    """Median seconds of one Adam step (forward, backward, update) after two warm-up steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(reps + 2):
        synchronize(device)
        t = time.perf_counter()
        loss = loss_fn(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "bqn"), help="output stem: writes STEM.json, STEM.md")
    ap.add_argument("--store", default=str(cache_dir() / "bqn-demo"), help="folder of the demo's baseline weights")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"CPU, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f} at start"
    xtr, ytr, xte, yte = mnist_split(8000, seed=0)
    xtr, ytr, xte_dev = xtr.to(device), ytr.to(device), xte.to(device)
    store = Path(args.store)
    rows = []
    result: Dict = {"data": "2,000 held-out MNIST t10k images (seed-0 split)", "device": hardware,
                    "threads": args.threads, "batch_size": 100, "batches": args.batches, "inference": {},
                    "training_step": {}}
    with torch.no_grad():
        for kind in ("mlp", "cnn"):
            name = f"bqn-{kind}-mnist"
            model = zoo.create(name, pretrained=True).to(device).eval()
            methods = {"AI": dict(mode="ai"), "AI-norm": dict(mode="ai-norm"), "MC-1": dict(mode="mc", samples=1),
                       "MC-5": dict(mode="mc", samples=5), "MC-10": dict(mode="mc", samples=10)}
            fns = {}
            for label, kw in methods.items():
                g = torch.Generator(device=device).manual_seed(0)
                fns[label] = lambda xb, kw=kw, g=g: model(xb, generator=g, **kw)  # noqa: E731
            for stem in (f"e-qnn-{kind}", f"bnn-sgvb-{kind}"):
                base = load_baseline(store / f"{stem}.safetensors", kind)
                if base is not None:
                    base.to(device)
                    label = (f"E-QNN ({len(base.members)} members)" if stem.startswith("e-qnn")
                             else "Gaussian BNN (SGVB), MC-10")
                    fns[label] = (lambda xb, b=base: b(xb)) if stem.startswith("e-qnn") else \
                        (lambda xb, b=base: b(xb, samples=10))
            block = {}
            for label, fn in fns.items():
                sec = time_per_batch(fn, xte_dev, args.batches, device)
                block[label] = {"seconds_per_batch": sec, **all_metrics(predict(fn, xte_dev).cpu(), yte)}
            for label, b in block.items():
                b["time_vs_AI"] = b["seconds_per_batch"] / block["AI"]["seconds_per_batch"]
                rows.append(f"| {name} | {label} | {1e3 * b['seconds_per_batch']:.1f} | {b['time_vs_AI']:.1f}x | "
                            f"{b['nll']:.4f} | {b['error']:.4f} | {b['ece']:.4f} |")
            result["inference"][name] = block
    # training step, batch 100: BQN (alternative ELBO) vs SGVB (local reparameterisation), same architectures
    xb, yb = xtr[:100], ytr[:100]
    steps = {}
    for kind in ("mlp", "cnn"):
        torch.manual_seed(0)
        bqn = zoo.create(f"bqn-{kind}-mnist").to(device)
        bnn = gaussian_bnn(kind).to(device)
        t_bqn = step_time(bqn, lambda m, x, y: alt_elbo_loss(m, x, y, m.prior_weight, m.num_train), xb, yb, 10, device)
        t_bnn = step_time(bnn, lambda m, x, y: sgvb_loss(m, x, y, 1e-4, 8000), xb, yb, 10, device)
        steps[kind] = {"bqn (alt. ELBO)": t_bqn, "gaussian-bnn (SGVB+LRT)": t_bnn, "ratio_bqn_over_sgvb": t_bqn / t_bnn}
    result["training_step"] = steps
    goal = {}
    for name, block in result["inference"].items():
        mc = block["MC-10"]
        goal[name] = {label: {"speedup_vs_MC10": mc["seconds_per_batch"] / block[label]["seconds_per_batch"],
                              "nll_minus_MC10": block[label]["nll"] - mc["nll"],
                              "met": (mc["seconds_per_batch"] >= 3 * block[label]["seconds_per_batch"]
                                      and block[label]["nll"] <= mc["nll"])}
                      for label in ("AI", "AI-norm")}
    result["goal_AI_3x_faster_than_MC10_at_equal_or_better_NLL"] = goal
    lines = ["# BQN benchmark (scripts/bench_bqn.py)", "",
             f"{hardware}; batch 100, median of {args.batches} batches; NLL/error/ECE on the 2,000 held-out MNIST "
             "images. AI = the chapter's Eq. (5.8) bound (sub-normalised, its NLL an upper bound); AI-norm = that bound "
             "normalised over the classes; MC-S = S posterior samples; E-QNN and Gaussian BNN are the demo's baselines "
             "(same architectures).", "",
             "| model | method | ms / batch | time vs AI | NLL | error | ECE |", "|---|---|---|---|---|---|---|", *rows,
             "", "| training step (batch 100) | BQN, alternative ELBO (ms) | Gaussian BNN, SGVB + LRT (ms) | ratio |",
             "|---|---|---|---|"]
    for kind, st in steps.items():
        lines.append(f"| {kind.upper()} | {1e3 * st['bqn (alt. ELBO)']:.1f} | "
                     f"{1e3 * st['gaussian-bnn (SGVB+LRT)']:.1f} | {st['ratio_bqn_over_sgvb']:.2f} |")
    lines += ["", "Goal (AI >= 3x faster than MC-10 at equal or better NLL):"]
    for name, by_label in goal.items():
        for label, gl in by_label.items():
            lines.append(f"- {name}, {label}: {gl['speedup_vs_MC10']:.1f}x faster, NLL({label}) - NLL(MC-10) = "
                         f"{gl['nll_minus_MC10']:+.4f} -> {'met' if gl['met'] else 'NOT met'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
