"""Benchmark (issue #8): inference time per batch and NLL of BQN analytic inference (AI) vs Monte-Carlo sampling
(S = 1, 5, 10) vs the E-QNN, and training-step time of the BQN vs the SGVB Gaussian BNN, all in one run.

Uses the bundled bqn-mlp-mnist / bqn-cnn-mnist weights and the baselines that scripts/demo_bqn_mnist.py left in
the zoo cache; held-out data = the 2,000 MNIST t10k images not used for training (seed-0 split).
Writes benchmarks/bqn.{json,md}.   python scripts/bench_bqn.py [--batches 10 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import zoo
from zoo.paths import cache_dir
from zoo_bqn.baselines.eqnn import EnsembleQNN, QNNMLP
from zoo_bqn.baselines.sgvb import GaussianBNN, sgvb_loss
from zoo_bqn.data import mnist_split
from zoo_bqn.metrics import all_metrics
from zoo_bqn.objective import alt_elbo_loss
from zoo_bqn.train import predict

ROOT = Path(__file__).resolve().parents[1]


def load_eqnn(path: Path) -> EnsembleQNN:
    state = load_file(str(path))
    members = sorted({int(k.split(".")[1]) for k in state})
    shapes = [state[f"members.0.weights.{j}"].shape for j in range(len({k for k in state if k.startswith("members.0.weights")}))]
    hidden = [s[0] for s in shapes[:-1]]
    ens = EnsembleQNN([QNNMLP(shapes[0][1], hidden, shapes[-1][0]) for _ in members])
    ens.load_state_dict(state)
    return ens.eval()


def time_per_batch(fn, x: torch.Tensor, batches: int, batch_size: int = 100) -> float:
    """Median seconds of fn on ``batches`` consecutive batches (after one warm-up call)."""
    fn(x[:batch_size])
    times = []
    for i in range(batches):
        xb = x[i * batch_size: (i + 1) * batch_size]
        t = time.perf_counter()
        fn(xb)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_time(model, loss_fn, x, y, reps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(reps + 2):
        t = time.perf_counter()
        loss = loss_fn(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    xtr, ytr, xte, yte = mnist_split(8000, seed=0)
    store = cache_dir() / "bqn-demo"
    rows, result = [], {"data": "2,000 held-out MNIST t10k images (seed-0 split)", "threads": args.threads,
                        "batch_size": 100, "inference": {}, "training_step": {}}
    eqnn = load_eqnn(store / "e-qnn-mlp.safetensors") if (store / "e-qnn-mlp.safetensors").is_file() else None
    with torch.no_grad():
        for name in ("bqn-mlp-mnist", "bqn-cnn-mnist"):
            model = zoo.create(name, pretrained=True).eval()
            methods = {"AI": dict(mode="ai"), "MC-1": dict(mode="mc", samples=1), "MC-5": dict(mode="mc", samples=5),
                       "MC-10": dict(mode="mc", samples=10)}
            block = {}
            for label, kw in methods.items():
                g = torch.Generator().manual_seed(0)
                fn = lambda xb, kw=kw, g=g: model(xb, generator=g, **kw)  # noqa: E731
                sec = time_per_batch(fn, xte, args.batches)
                block[label] = {"seconds_per_batch": sec, **all_metrics(predict(fn, xte), yte)}
            if name == "bqn-mlp-mnist" and eqnn is not None:
                sec = time_per_batch(eqnn, xte, args.batches)
                block[f"E-QNN ({len(eqnn.members)} members)"] = {"seconds_per_batch": sec,
                                                                 **all_metrics(predict(eqnn, xte), yte)}
            ai = block["AI"]
            for label, b in block.items():
                b["speedup_of_AI"] = b["seconds_per_batch"] / ai["seconds_per_batch"]
                rows.append(f"| {name} | {label} | {1e3 * b['seconds_per_batch']:.1f} | {b['speedup_of_AI']:.1f}x | "
                            f"{b['nll']:.4f} | {b['error']:.4f} |")
            result["inference"][name] = block
    # training step: BQN (alternative ELBO) vs SGVB (local reparameterisation), same MLP widths, batch 100
    torch.manual_seed(0)
    bqn = zoo.create("bqn-mlp-mnist")
    bnn = GaussianBNN(784, [256, 256], 10)
    xb, yb = xtr[:100], ytr[:100]
    t_bqn = step_time(bqn, lambda m, x, y: alt_elbo_loss(m, x, y, m.prior_weight, m.num_train), xb, yb, 10)
    t_bnn = step_time(bnn, lambda m, x, y: sgvb_loss(m, x, y, 1e-4, 8000), xb, yb, 10)
    result["training_step"] = {"bqn-mlp (alt. ELBO)": t_bqn, "gaussian-bnn-mlp (SGVB+LRT)": t_bnn,
                               "ratio_bqn_over_sgvb": t_bqn / t_bnn}
    goal = {}
    for name, block in result["inference"].items():
        ai, mc = block["AI"], block["MC-10"]
        goal[name] = {"speedup_vs_MC10": mc["seconds_per_batch"] / ai["seconds_per_batch"],
                      "nll_AI_minus_MC10": ai["nll"] - mc["nll"],
                      "met": mc["seconds_per_batch"] >= 3 * ai["seconds_per_batch"] and ai["nll"] <= mc["nll"]}
    result["goal_AI_3x_faster_than_MC10_at_equal_or_better_NLL"] = goal
    lines = ["# BQN benchmark (scripts/bench_bqn.py)", "",
             f"CPU, {args.threads} thread(s), batch 100, median of {args.batches} batches; NLL/error on the 2,000 "
             "held-out MNIST images. MC-S uses S posterior samples; E-QNN is the bootstrap ensemble from the demo.", "",
             "| model | method | ms / batch | time vs AI | NLL | error |", "|---|---|---|---|---|---|", *rows, "",
             "| training step (batch 100) | ms |", "|---|---|",
             f"| BQN-MLP, alternative ELBO | {1e3 * t_bqn:.1f} |", f"| Gaussian BNN-MLP, SGVB + LRT | {1e3 * t_bnn:.1f} |",
             f"| ratio BQN / SGVB | {t_bqn / t_bnn:.2f} |", "", "Goal (AI >= 3x faster than MC-10 at equal or better NLL):"]
    for name, gl in goal.items():
        lines.append(f"- {name}: {gl['speedup_vs_MC10']:.1f}x faster, NLL(AI) - NLL(MC-10) = "
                     f"{gl['nll_AI_minus_MC10']:+.4f} -> {'met' if gl['met'] else 'NOT met'}")
    out = ROOT / "benchmarks"
    out.mkdir(exist_ok=True)
    (out / "bqn.json").write_text(json.dumps(result, indent=2))
    (out / "bqn.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
