"""Tensorial ResNet-50s at the batch sizes users feel: inference at batch 1, 8 and 64, training at batch 4 and 16,
each as a ratio to the dense ResNet-50 measured in the same run (issue 17, items 2 and 3).

Every (model, mode, batch) row runs in its own subprocess on one torch thread, timed by process CPU time (robust to
other processes waiting for the shared cores, not to their cache and memory-bandwidth pressure). The subprocess
builds the dense ResNet-50 (timm) too and alternates timed runs of the two on the same input, so each ratio is
paired: load that drifts during the run hits both sides. Inference = ``model.eval()`` under
``torch.inference_mode()``; the model's first call (path planning, the cached dense kernels) is reported as
``first call`` and not timed with the rest. Training step = zero_grad + forward + cross-entropy + backward + SGD on
random data. A row's time is the minimum over its timed runs (single runs vary by 10-20 % on the shared machine).

Each row also gets its multiply-add floor (over the dense model's): inference, every tensorial layer on the
cheaper of its forward-costed factorised path and the dense convolution with the cached kernel (what
``eval()`` chooses between); training, every tensorial layer on the cheapest pairwise evaluation order of its
network (``optimize="optimal"``, exact dynamic programming: forward + both backward products, reconstruct-first
included) -- no evaluation order of these networks needs fewer multiply-adds.

    python scripts/bench_tnn_inference.py             # 224 px; inference 1/8/64 (8/4/2 timed runs), training 4/16 (3)
    python scripts/bench_tnn_inference.py --quick     # fewer timed runs: inference 6/3/1, training 2

Writes benchmarks/tnn_inference.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
RATES = (0.01, 0.05, 0.1)
RESHAPED = ("mcp", "mtt", "mtr")
PLAIN = ("cp", "tk", "tt")
INFER_BATCHES = (1, 8, 64)
TRAIN_BATCHES = (4, 16)
GOAL_RESHAPED_INFER = 1.05
GOAL_RESHAPED_TRAIN = 1.10


def _model(config: str) -> Any:
    if config == "dense":
        import timm

        return timm.create_model("resnet50", pretrained=False)
    from zoo_tnn.backbones import build_backbone
    from zoo_tnn.tensorize import tensorize

    dec, rate = config.split(":")
    return tensorize(build_backbone("resnet50"), dec, float(rate))


def _floors(model: Any, shapes: Dict[Any, Any], batch: int, train: bool) -> Dict[str, float]:
    """Multiply-adds of the evaluation each layer runs and the floor (see the module docstring), over dense."""
    import torch
    from torch import nn

    from zoo.conv_einsum import conv_einsum_path
    from zoo_tnn.layers import TensorialConv2d, TensorialLinear

    dense = chosen = floor = 0
    for module, (x_shape, y_shape) in shapes.items():
        fan_in = module.weight[0].numel() if isinstance(module, (nn.Conv2d, nn.Linear)) else (
            module.in_channels * math.prod(module.kernel_size) if isinstance(module, TensorialConv2d)
            else module.in_features)
        macs = math.prod(y_shape) * fan_in * (3 if train else 1)
        dense += macs
        if not isinstance(module, (TensorialConv2d, TensorialLinear)):
            chosen, floor = chosen + macs, floor + macs
            continue
        if train:
            ((key, costs),) = [(k, v) for k, v in module.path_costs.items() if k[0] == batch]
            chosen += costs[costs["chosen"]]
            geometry: Dict[str, Any] = {}
            if isinstance(module, TensorialConv2d):
                _, geometry = module._prepare_input(torch.empty(x_shape))
            ops = [key] + [f.shape for f in module.network.factors]
            _, info = conv_einsum_path(module._equation, *ops, optimize="optimal" if len(ops) <= 12 else "greedy",
                                       **geometry)
            floor += min(info.opt_cost, costs["reconstruct"])
        else:
            ((_, costs),) = [(k, v) for k, v in module.inference_costs.items() if k[0] == batch]
            chosen += costs[costs["chosen"]]
            floor += min(costs["factorized"], costs["dense"])
    return {"macs_chosen_vs_dense": chosen / dense, "macs_floor_vs_dense": floor / dense}


def _timed(model: Any, mode: str, x: Any) -> Any:
    """A closure running one inference call or one training step of ``model`` on ``x``; returns its CPU seconds."""
    import torch
    import torch.nn.functional as F

    if mode == "infer":
        model.eval()

        def run() -> float:
            c = time.process_time()
            with torch.inference_mode():
                model(x)
            return time.process_time() - c
        return run
    model.train()
    y = torch.randint(0, 1000, (x.shape[0],))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> float:
        c = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        spent = time.process_time() - c
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        return spent
    return step


def worker(config: str, mode: str, batch: int, size: int, runs: int, warmup: int) -> Dict[str, Any]:
    import torch
    from torch import nn

    from zoo_tnn.layers import TensorialConv2d, TensorialLinear, _Tensorial

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = _model(config)
    dense = _model("dense")
    kinds = (nn.Conv2d, nn.Linear, TensorialConv2d, TensorialLinear)
    shapes: Dict[Any, Any] = {}

    def record(module: Any, inputs: Any, output: Any) -> None:
        shapes.setdefault(module, (tuple(inputs[0].shape), tuple(output.shape)))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, kinds)]
    x = torch.randn(batch, 3, size, size)
    run_model, run_dense = _timed(model, mode, x), _timed(dense, mode, x)
    first = run_model()
    for h in hooks:
        h.remove()
    for _ in range(warmup - 1):
        run_model()
    for _ in range(warmup):
        run_dense()
    times, dense_times = [], []
    for _ in range(runs):
        dense_times.append(run_dense())
        times.append(run_model())
    ref = min(dense_times)
    row: Dict[str, Any] = {"config": config, "mode": mode, "batch": batch, "first_s": first, "times_s": times,
                           "dense_times_s": dense_times, "time_s": min(times), "dense_s": ref,
                           "vs_dense": min(times) / ref, "first_vs_dense": first / ref,
                           "params": sum(p.numel() for p in model.parameters())}
    row.update(_floors(model, shapes, batch, mode == "train"))
    choices: Dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, _Tensorial):
            for kind in {c.kind for k, c in m._plans.items() if k[0][0] == batch}:
                choices[kind] = choices.get(kind, 0) + 1
    row["layer_choices"] = choices
    return row


def _run_row(config: str, mode: str, batch: int, args: argparse.Namespace, runs: int) -> Dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", config, "--mode", mode, "--batch", str(batch), "--size",
           str(args.size), "--runs", str(runs), "--warmup", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{config} {mode} {batch} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def _runs(mode: str, batch: int, quick: bool) -> int:
    if mode == "infer":
        return {1: 8, 8: 4, 64: 2}.get(batch, 2) if not quick else {1: 6, 8: 3, 64: 1}.get(batch, 1)
    return 3 if not quick else 2


def _spread(r: Dict[str, Any]) -> float:
    """How far apart the dense model's timed runs in the row were (slowest over fastest): the row's noise."""
    return max(r["dense_times_s"]) / min(r["dense_times_s"])


def goal_lines(rows: List[Dict[str, Any]]) -> List[str]:
    """Each goal met or missed, and for every miss what bounds it: the MAC floor (> 1: no evaluation order does
    less arithmetic than dense) or the row's measured noise (every tensorial layer on the cached dense kernel runs
    the dense model's own convolutions, so its deviation from 1 is noise)."""
    out: List[str] = []

    def miss_text(r: Dict[str, Any]) -> str:
        return (f"{r['config']} {r['mode']} b{r['batch']} x{r['vs_dense']:.2f} (MAC floor x{r['macs_floor_vs_dense']:.2f}, "
                f"runs x{r['macs_chosen_vs_dense']:.2f}, dense runs' spread x{_spread(r):.2f})")

    def goal(title: str, sel: List[Dict[str, Any]], ok: Any, limit: float) -> None:
        if not sel:
            return
        missed = [r for r in sel if not ok(r)]
        out.append(f"- {title}: **{'met' if not missed else 'missed'}** ({len(sel) - len(missed)}/{len(sel)} rows)"
                   + ("" if not missed else "; misses: " + "; ".join(miss_text(r) for r in missed)))
        floor = [r for r in missed if r["macs_floor_vs_dense"] > limit]
        same = [r for r in missed if r not in floor and set(r["layer_choices"]) == {"dense"}]
        chosen = [r for r in missed if r not in floor + same and r["macs_chosen_vs_dense"] > limit]
        noise = [r for r in missed if r not in floor + same + chosen and r["vs_dense"] <= _spread(r)]
        other = [r for r in missed if r not in floor + same + chosen + noise]
        if floor:
            out.append(f"  - bound by the floor ({len(floor)}): " + ", ".join(
                f"{r['config']} b{r['batch']} needs x{r['macs_floor_vs_dense']:.2f} the dense multiply-adds along its "
                "cheapest evaluation order" for r in floor))
        if same:
            out.append(f"  - every tensorial layer on the cached dense kernel ({len(same)}): these rows run the dense "
                       "model's own convolutions (MACs x1.00), so the excess is measurement noise on the shared machine "
                       "(" + ", ".join(f"{r['config']} b{r['batch']} x{r['vs_dense']:.2f}, dense runs' spread "
                                       f"x{_spread(r):.2f} over {len(r['dense_times_s'])} run(s)" for r in same) + ")")
        if chosen:
            out.append(f"  - bound by the evaluation the layers choose ({len(chosen)}): " + ", ".join(
                f"{r['config']} b{r['batch']} runs x{r['macs_chosen_vs_dense']:.2f} the dense MACs (floor "
                f"x{r['macs_floor_vs_dense']:.2f})" for r in chosen)
                + "; the cheaper orders are factorised chains whose steps run well below a dense convolution's "
                "per-MAC speed, which the layers' path_ratio (calibrated at batch 16, benchmarks/tnn.md) keeps them "
                "from; not measured per batch here (optimize='measure' / set_autotune(True) times them)")
        if noise:
            out.append(f"  - within the row's noise ({len(noise)}): the ratio is below the spread of the dense model's own "
                       "runs in the same subprocess (" + ", ".join(
                           f"{r['config']} b{r['batch']} x{r['vs_dense']:.2f} vs spread x{_spread(r):.2f}" for r in noise)
                       + ")")
        if other:
            out.append(f"  - not explained by the floor or the noise ({len(other)}): "
                       + ", ".join(f"{r['config']} b{r['batch']}" for r in other))

    reshaped = [r for r in rows if r["config"].split(":")[0] in RESHAPED]
    plain = [r for r in rows if r["config"].split(":")[0] in PLAIN]
    goal(f"#17.2 reshaped models' inference at most {GOAL_RESHAPED_INFER}x dense (batch 1, 8, 64)",
         [r for r in reshaped if r["mode"] == "infer"], lambda r: r["vs_dense"] <= GOAL_RESHAPED_INFER, GOAL_RESHAPED_INFER)
    goal("#17.2 CP / Tucker / TT inference faster than dense at every rate up to 10 %",
         [r for r in plain if r["mode"] == "infer"], lambda r: r["vs_dense"] < 1.0, 1.0)
    goal(f"#17.3 reshaped models' training step within {GOAL_RESHAPED_TRAIN}x dense (batch 4, 16)",
         [r for r in reshaped if r["mode"] == "train"], lambda r: r["vs_dense"] <= GOAL_RESHAPED_TRAIN, GOAL_RESHAPED_TRAIN)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--infer-batches", type=int, nargs="*", default=list(INFER_BATCHES))
    parser.add_argument("--train-batches", type=int, nargs="*", default=list(TRAIN_BATCHES))
    parser.add_argument("--rates", type=float, nargs="*", default=list(RATES))
    parser.add_argument("--decompositions", nargs="*", default=list(RESHAPED + PLAIN))
    parser.add_argument("--train-decompositions", nargs="*", default=list(RESHAPED),
                        help="decompositions timed in training (default: the reshaped ones, issue 17.3)")
    parser.add_argument("--quick", action="store_true", help="fewer timed runs (inference 3/2/1, training 2)")
    parser.add_argument("--output", default="tnn_inference", help="benchmarks/NAME.{json,md}")
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite benchmarks/NAME.md from benchmarks/NAME.json (no runs)")
    parser.add_argument("--merge", nargs="*", default=[],
                        help="join the rows of benchmarks/PART.json files (parts of the grid run separately) into NAME")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="infer", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.mode, args.batch, args.size, args.runs, args.warmup)))
        return
    if args.merge:
        parts = [json.loads((ROOT / "benchmarks" / f"{name}.json").read_text()) for name in args.merge]
        rows = [r for part in parts for r in part["rows"]]
        setup = dict(parts[0]["setup"], command="; ".join(p["setup"]["command"] for p in parts)
                     + f"; joined by python scripts/bench_tnn_inference.py --output {args.output} --merge "
                     + " ".join(args.merge),
                     seconds=sum(p["setup"]["seconds"] for p in parts),
                     load_avg_at_end=max(p["setup"]["load_avg_at_end"] for p in parts))
        print("\n".join(write(args, setup["command"], rows, 0.0, setup)))
        return
    if args.rewrite:
        saved = json.loads((ROOT / "benchmarks" / f"{args.output}.json").read_text())
        print("\n".join(write(args, saved["setup"]["command"], saved["rows"], 0.0, saved["setup"])))
        return
    start = time.time()
    groups = [("infer", b, args.decompositions) for b in args.infer_batches]
    groups += [("train", b, args.train_decompositions) for b in args.train_batches]
    groups.sort(key=lambda g: (g[1] * (4 if g[0] == "train" else 1), g[0] == "infer"))  # cheapest groups first
    rows: List[Dict[str, Any]] = []
    command = " ".join(["python scripts/bench_tnn_inference.py"] + sys.argv[1:])
    for mode, batch, decs in groups:
        runs = _runs(mode, batch, args.quick)
        for config in [f"{d}:{r}" for d in decs for r in args.rates]:
            r = _run_row(config, mode, batch, args, runs)
            rows.append(r)
            print(f"{mode:5s} b{batch:<3d} {r['config']:10s} {r['time_s']:8.3f} s  dense {r['dense_s']:8.3f} s  "
                  f"x{r['vs_dense']:.2f}  (first call x{r['first_vs_dense']:.2f}; MACs x{r['macs_chosen_vs_dense']:.2f}, "
                  f"floor x{r['macs_floor_vs_dense']:.2f}) {r['layer_choices']}", flush=True)
            write(args, command, rows, start)  # a partial table survives an interrupted run
    print("\n".join(write(args, command, rows, start)))


def write(args: argparse.Namespace, command: str, rows: List[Dict[str, Any]], start: float,
          setup: Dict[str, Any] | None = None) -> List[str]:
    setup = setup or {"command": command, "size": args.size, "threads": 1, "clock": "process CPU time", "quick": args.quick,
             "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
             "load_avg_at_end": os.getloadavg(), "seconds": round(time.time() - start, 1)}
    bench = ROOT / "benchmarks"
    bench.mkdir(exist_ok=True)
    (bench / f"{args.output}.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    lines = [f"Command: `{command}`", "",
             "# Tensorial ResNet-50s: inference and small-batch training against dense (CPU)", "",
             f"{args.size} px, one torch thread, process CPU time, {setup['cores']} shared cores (load average at the "
             f"end {setup['load_avg_at_end'][0]:.1f}, {setup['seconds'] / 60:.0f} min); one subprocess per row, which "
             "alternates timed runs of the model and of the dense ResNet-50 (timm) on the same input; `x dense` = the "
             "model's fastest run over the dense model's fastest. Inference: `eval()` under `torch.inference_mode()`; "
             "`first call` (path planning, building the cached kernels) is not among the timed runs. Training step: "
             "zero_grad + forward + cross-entropy + backward + SGD.", "",
             "`MACs`: multiply-adds of the evaluation the layers run, over the dense model's (training: forward + "
             "both backward products); `floor`: the fewest any evaluation order needs (inference: the cheaper of "
             "the factorised path and the cached dense kernel per layer; training: the exact optimum over pairwise "
             "orders, reconstruct-first included). `layers`: how many tensorial layers run each evaluation.", "",
             "`dense spread`: the dense model's slowest timed run in the row over its fastest (the row's noise).", "",
             "| mode | batch | model | x dense | dense s | runs | dense spread | first call x dense | MACs x dense | floor "
             "| layers |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        choices = ", ".join(f"{k} {v}" for k, v in sorted(r["layer_choices"].items())) or "-"
        lines.append(f"| {r['mode']} | {r['batch']} | {r['config']} | {r['vs_dense']:.2f} | {r['dense_s']:.3f} | "
                     f"{len(r['times_s'])} | {_spread(r):.2f} | {r['first_vs_dense']:.2f} | {r['macs_chosen_vs_dense']:.2f} | "
                     f"{r['macs_floor_vs_dense']:.2f} | {choices} |")
    lines += ["", "## Goals", ""] + goal_lines(rows)
    (bench / f"{args.output}.md").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
