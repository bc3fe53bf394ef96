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
    python scripts/bench_tnn_inference.py --infer-batches --train-batches 4 --optimize auto measure --rounds 2
        # training at batch 4 with the cost model's order and the timed one (optimize="measure"), each paired with
        # the same dense runs in one subprocess, the grid repeated twice; measure rows also get the timed floor
    python scripts/bench_tnn_inference.py --merge PART:infer PART2 ...   # join saved parts (":MODE": only those rows)

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


def _model(config: str, optimize: str = "auto") -> Any:
    """The dense ResNet-50 (timm) or the tensorised one of ``config`` ("DEC:RATE"), its layers choosing their
    evaluation order by ``optimize`` ("auto": the cost model; "measure": timed per input shape on the first call)."""
    if config == "dense":
        import timm

        return timm.create_model("resnet50", pretrained=False)
    from zoo_tnn.backbones import build_backbone
    from zoo_tnn.layers import _Tensorial
    from zoo_tnn.tensorize import tensorize

    dec, rate = config.split(":")
    model = tensorize(build_backbone("resnet50"), dec, float(rate))
    for module in model.modules():
        if isinstance(module, _Tensorial):
            module.optimize = optimize
    return model


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


def _time_layer(module: Any, shape: Any, batch: int) -> float:
    """Best of MEASURE_REPEATS (after one warm-up) forward + backward runs of the order ``module`` runs at this batch
    on zero inputs (for layers whose only candidate within conv_einsum's limits was not timed)."""
    import torch

    from zoo.conv_einsum.measure import MEASURE_REPEATS, time_run

    ((_, choice),) = [(k, c) for k, c in module._plans.items() if k[0][0] == batch]
    ops = [torch.zeros(shape, requires_grad=True)] + [p.detach().clone().requires_grad_() for p in module._factor_tensors()]

    def run() -> None:
        torch.autograd.grad(choice.expression(*ops).sum(), ops)

    time_run(run, ops[0].device)
    return min(time_run(run, ops[0].device) for _ in range(MEASURE_REPEATS))


def _timed_floor(model: Any, shapes: Dict[Any, Any], batch: int, dense_s: float) -> Dict[str, float]:
    """Training with ``optimize="measure"``: each tensorial layer's fastest timed order (forward + backward, from
    its ``path_costs``) against the dense convolution / linear map of the same shapes timed the same way
    (conv_einsum's timer, one warm-up, best of MEASURE_REPEATS, forward + backward to input and kernel).
    ``timed_layers_vs_dense``: their sums' ratio over all tensorial layers; ``timed_floor_vs_dense``: the dense
    step with those layers' dense time replaced by their fastest order's, over the dense step (the measured floor
    of any order the layers can choose from)."""
    import torch
    import torch.nn.functional as F

    from zoo.conv_einsum.measure import MEASURE_REPEATS, time_run
    from zoo_tnn.layers import TensorialConv2d, TensorialLinear

    dense_conv: Dict[Any, float] = {}
    best_sum = dense_sum = 0.0
    for module, (x_shape, _) in shapes.items():
        if not isinstance(module, (TensorialConv2d, TensorialLinear)):
            continue
        ((shape, costs),) = [(k, v) for k, v in module.path_costs.items() if k[0] == batch]
        timed = [t for t in costs["seconds"].values() if t is not None]
        best_sum += min(timed) if timed else _time_layer(module, shape, batch)
        conv = isinstance(module, TensorialConv2d)
        key = (x_shape, tuple(module.weight.shape)) + ((module.stride, module.padding, module.dilation) if conv else ())
        if key not in dense_conv:
            x = torch.zeros(x_shape, requires_grad=True)
            w = torch.zeros(key[1], requires_grad=True)

            def run() -> None:
                y = (F.conv2d(x, w, None, module.stride, module.padding, module.dilation) if conv else F.linear(x, w))
                torch.autograd.grad(y.sum(), [x, w])

            time_run(run, x.device)
            dense_conv[key] = min(time_run(run, x.device) for _ in range(MEASURE_REPEATS))
        dense_sum += dense_conv[key]
    return {"timed_layers_vs_dense": best_sum / dense_sum,
            "timed_floor_vs_dense": max(dense_s - dense_sum + best_sum, 0.0) / dense_s}


def worker(config: str, mode: str, batch: int, size: int, runs: int, warmup: int,
           optimizes: List[str]) -> List[Dict[str, Any]]:
    """One row per entry of ``optimizes``: the model built with that order choice, its runs alternating with the
    dense model's (round-robin: dense, then each model) on one input."""
    import torch
    from torch import nn

    from zoo_tnn.layers import TensorialConv2d, TensorialLinear, _Tensorial

    torch.set_num_threads(1)
    kinds = (nn.Conv2d, nn.Linear, TensorialConv2d, TensorialLinear)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    dense = _model("dense")
    run_dense = _timed(dense, mode, x)
    models, firsts, shapes_of = [], [], []
    for optimize in optimizes:
        torch.manual_seed(0)
        model = _model(config, optimize)
        shapes: Dict[Any, Any] = {}

        def record(module: Any, inputs: Any, output: Any, shapes: Dict[Any, Any] = shapes) -> None:
            shapes.setdefault(module, (tuple(inputs[0].shape), tuple(output.shape)))

        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, kinds)]
        run_model = _timed(model, mode, x)
        firsts.append(run_model())
        for h in hooks:
            h.remove()
        for _ in range(warmup - 1):
            run_model()
        models.append((model, run_model))
        shapes_of.append(shapes)
    for _ in range(warmup):
        run_dense()
    times: List[List[float]] = [[] for _ in optimizes]
    dense_times = []
    for _ in range(runs):
        dense_times.append(run_dense())
        for k, (_, run_model) in enumerate(models):
            times[k].append(run_model())
    ref = min(dense_times)
    rows = []
    for optimize, (model, _), first, shapes, t in zip(optimizes, models, firsts, shapes_of, times):
        row: Dict[str, Any] = {"config": config, "mode": mode, "batch": batch, "optimize": optimize, "first_s": first,
                               "times_s": t, "dense_times_s": dense_times, "time_s": min(t), "dense_s": ref,
                               "vs_dense": min(t) / ref, "first_vs_dense": first / ref,
                               "params": sum(p.numel() for p in model.parameters())}
        row.update(_floors(model, shapes, batch, mode == "train"))
        if optimize == "measure" and mode == "train":
            row.update(_timed_floor(model, shapes, batch, ref))
        choices: Dict[str, int] = {}
        for m in model.modules():
            if isinstance(m, _Tensorial):
                for kind in {c.kind for k, c in m._plans.items() if k[0][0] == batch}:
                    choices[kind] = choices.get(kind, 0) + 1
        row["layer_choices"] = choices
        rows.append(row)
    return rows


def _run_row(config: str, mode: str, batch: int, args: argparse.Namespace, runs: int) -> List[Dict[str, Any]]:
    cmd = [sys.executable, __file__, "--worker", config, "--mode", mode, "--batch", str(batch), "--size",
           str(args.size), "--runs", str(runs), "--warmup", "1", "--optimize", *args.optimize]
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

    def name(r: Dict[str, Any]) -> str:
        return f"{r['config']} b{r['batch']}" + (f" round {r['round']}" if "round" in r else "")

    def miss_text(r: Dict[str, Any]) -> str:
        timed = f", timed floor x{r['timed_floor_vs_dense']:.2f}" if "timed_floor_vs_dense" in r else ""
        return (f"{name(r)} {r['mode']} x{r['vs_dense']:.2f} (MAC floor x{r['macs_floor_vs_dense']:.2f}{timed}, "
                f"runs x{r['macs_chosen_vs_dense']:.2f}, dense runs' spread x{_spread(r):.2f})")

    def goal(title: str, sel: List[Dict[str, Any]], ok: Any, limit: float) -> None:
        if not sel:
            return
        missed = [r for r in sel if not ok(r)]
        out.append(f"- {title}: **{'met' if not missed else 'missed'}** ({len(sel) - len(missed)}/{len(sel)} rows)"
                   + ("" if not missed else "; misses: " + "; ".join(miss_text(r) for r in missed)))
        floor = [r for r in missed if r["macs_floor_vs_dense"] > limit]
        timed = [r for r in missed if r not in floor and r.get("timed_floor_vs_dense", 0.0) > limit]
        floor += timed
        same = [r for r in missed if r not in floor and set(r["layer_choices"]) == {"dense"}]
        chosen = [r for r in missed if r not in floor + same and r["macs_chosen_vs_dense"] > limit]
        noise = [r for r in missed if r not in floor + same + chosen and r["vs_dense"] <= _spread(r)]
        other = [r for r in missed if r not in floor + same + chosen + noise]
        if floor:
            out.append(f"  - bound by the floor ({len(floor)}): " + ", ".join(
                f"{name(r)} needs x{r['macs_floor_vs_dense']:.2f} the dense multiply-adds along its "
                "cheapest evaluation order" for r in floor if r not in timed) + ("; " if timed and len(timed) < len(floor)
                                                                                 else "") + ", ".join(
                f"{name(r)}: with every layer on its fastest timed order the step is x{r['timed_floor_vs_dense']:.2f} "
                "the dense step (MAC floor "
                f"x{r['macs_floor_vs_dense']:.2f}: the orders with fewer multiply-adds run slower than their count)"
                for r in timed))
        if same:
            out.append(f"  - every tensorial layer on the cached dense kernel ({len(same)}): these rows run the dense "
                       "model's own convolutions (MACs x1.00), so the excess is measurement noise on the shared machine "
                       "(" + ", ".join(f"{r['config']} b{r['batch']} x{r['vs_dense']:.2f}, dense runs' spread "
                                       f"x{_spread(r):.2f} over {len(r['dense_times_s'])} run(s)" for r in same) + ")")
        if chosen:
            out.append(f"  - bound by the evaluation the layers choose ({len(chosen)}): " + ", ".join(
                f"{name(r)} runs x{r['macs_chosen_vs_dense']:.2f} the dense MACs (floor "
                f"x{r['macs_floor_vs_dense']:.2f})" for r in chosen)
                + "; the cost model's order (optimize='auto'); the timed choice is the optimize='measure' row")
        if noise:
            out.append(f"  - within the row's noise ({len(noise)}): the ratio is below the spread of the dense model's own "
                       "runs in the same subprocess (" + ", ".join(
                           f"{name(r)} x{r['vs_dense']:.2f} vs spread x{_spread(r):.2f}" for r in noise)
                       + ")")
        if other:
            out.append(f"  - not explained by the floor or the noise ({len(other)}): "
                       + ", ".join(name(r) for r in other))

    reshaped = [r for r in rows if r["config"].split(":")[0] in RESHAPED]
    plain = [r for r in rows if r["config"].split(":")[0] in PLAIN]
    goal(f"#17.2 reshaped models' inference at most {GOAL_RESHAPED_INFER}x dense (batch 1, 8, 64)",
         [r for r in reshaped if r["mode"] == "infer"], lambda r: r["vs_dense"] <= GOAL_RESHAPED_INFER, GOAL_RESHAPED_INFER)
    goal("#17.2 CP / Tucker / TT inference faster than dense at every rate up to 10 %",
         [r for r in plain if r["mode"] == "infer"], lambda r: r["vs_dense"] < 1.0, 1.0)
    for optimize in sorted({r.get("optimize", "auto") for r in reshaped if r["mode"] == "train"}):
        goal(f"#17.3 reshaped models' training step within {GOAL_RESHAPED_TRAIN}x dense (batch 4, 16), "
             f"optimize={optimize!r}", [r for r in reshaped if r["mode"] == "train" and r.get("optimize", "auto") == optimize],
             lambda r: r["vs_dense"] <= GOAL_RESHAPED_TRAIN, GOAL_RESHAPED_TRAIN)
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
    parser.add_argument("--optimize", nargs="+", default=["auto"], choices=("auto", "measure"),
                        help="the tensorial layers' order choice: the cost model (default) or timed per input shape; "
                        "several: one row each, timed in the same subprocess against the same dense runs")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole grid this many times (each row a fresh subprocess): the spread across rounds")
    parser.add_argument("--output", default="tnn_inference", help="benchmarks/NAME.{json,md}")
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite benchmarks/NAME.md from benchmarks/NAME.json (no runs)")
    parser.add_argument("--merge", nargs="*", default=[],
                        help="join the rows of benchmarks/PART.json files (parts of the grid run separately) into NAME; "
                        "PART:MODE keeps only that mode's rows (infer or train)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="infer", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.mode, args.batch, args.size, args.runs, args.warmup,
                                                 args.optimize)))
        return
    if args.merge:
        parts, rows = [], []
        for spec in args.merge:
            name, _, keep = spec.partition(":")
            parts.append(json.loads((ROOT / "benchmarks" / f"{name}.json").read_text()))
            rows += [r for r in parts[-1]["rows"] if not keep or r["mode"] == keep]
        seen: Dict[Any, int] = {}
        for r in rows:  # parts that repeat a row are later rounds of it
            key = (r["mode"], r["batch"], r["config"], r.get("optimize", "auto"))
            seen[key] = r["round"] = seen.get(key, 0) + 1
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
    for round_ in range(1, args.rounds + 1):
        for mode, batch, decs in groups:
            runs = _runs(mode, batch, args.quick)
            for config in [f"{d}:{r}" for d in decs for r in args.rates]:
                for r in _run_row(config, mode, batch, args, runs):
                    r["round"] = round_
                    rows.append(r)
                    print(f"{mode:5s} b{batch:<3d} {r['config']:10s} {r['optimize']:7s} {r['time_s']:8.3f} s  dense "
                          f"{r['dense_s']:8.3f} s  x{r['vs_dense']:.2f}  (first call x{r['first_vs_dense']:.2f}; MACs "
                          f"x{r['macs_chosen_vs_dense']:.2f}, floor x{r['macs_floor_vs_dense']:.2f}, timed floor "
                          f"x{r.get('timed_floor_vs_dense', math.nan):.2f}) {r['layer_choices']}", flush=True)
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
             "`dense spread`: the dense model's slowest timed run in the row over its fastest (the row's noise). "
             "`order`: the layers' `optimize` (`auto`: the cost model; `measure`: timed per input shape on the first "
             "call, which `first call` includes). `timed floor` (measure rows): the dense step with each tensorial "
             "layer's dense convolution time replaced by its fastest timed order's (both timed alone on the same "
             "shapes, CPU time, forward + backward), over the dense step. `round`: rows of one round run one after "
             "another; a later round repeats the grid.", "",
             "| mode | batch | model | order | round | x dense | dense s | runs | dense spread | first call x dense | "
             "MACs x dense | floor | timed floor | layers |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        choices = ", ".join(f"{k} {v}" for k, v in sorted(r["layer_choices"].items())) or "-"
        timed = f"{r['timed_floor_vs_dense']:.2f}" if "timed_floor_vs_dense" in r else "-"
        lines.append(f"| {r['mode']} | {r['batch']} | {r['config']} | {r.get('optimize', 'auto')} | {r.get('round', 1)} | "
                     f"{r['vs_dense']:.2f} | {r['dense_s']:.3f} | {len(r['times_s'])} | {_spread(r):.2f} | "
                     f"{r['first_vs_dense']:.2f} | {r['macs_chosen_vs_dense']:.2f} | {r['macs_floor_vs_dense']:.2f} | "
                     f"{timed} | {choices} |")
    lines += ["", "## Across rounds", "", "| mode | batch | model | order | x dense per round | best | worst |",
              "|---|---|---|---|---|---|---|"]
    groups: Dict[Any, List[float]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["batch"], r["config"], r.get("optimize", "auto")), []).append(r["vs_dense"])
    for (mode, batch, config, optimize), ratios in groups.items():
        if len(ratios) > 1:
            lines.append(f"| {mode} | {batch} | {config} | {optimize} | {', '.join(f'{v:.2f}' for v in ratios)} | "
                         f"{min(ratios):.2f} | {max(ratios):.2f} |")
    lines += ["", "## Goals", ""] + goal_lines(rows)
    (bench / f"{args.output}.md").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
