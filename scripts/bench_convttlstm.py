#!/usr/bin/env python
"""Per-step cost of the 12-layer Conv-TT-LSTM vs ConvLSTM (registry args of convttlstm-kth / convlstm-kth).

For each frame side and variant: forward+backward time per recurrent step (CPU process time with one thread
on CPU, CUDA-synchronised wall time on GPU), peak memory (bytes autograd saves for backward per step; plus
torch.cuda.max_memory_allocated on GPU), FLOPs measured by torch.utils.flop_counter on one steady-state step
(forward) vs the counted 2 x macs_per_step. Variants: each cell with the torch.nn.functional.conv2d backend
and with the zoo.conv_einsum backend. Writes benchmarks/convttlstm.{json,md}; ratios are against ConvLSTM
(torch backend) in the same run.

    python scripts/bench_convttlstm.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.memory import saved_bytes

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [("convlstm", "torch"), ("convttlstm", "torch"), ("convlstm", "conv_einsum"), ("convttlstm", "conv_einsum")]
DISSERTATION = {"epoch_minutes_kth": {"convlstm": 28.9, "convttlstm": 74.8},
                "epoch_minutes_mnist": {"convlstm": 14.8, "convttlstm": 29.6}}


def measure(cell: str, backend: str, side: int, batch: int, steps: int, device: torch.device) -> Dict[str, float]:
    torch.manual_seed(0)
    model = zoo.create(f"{cell}-kth", backend=backend).to(device)
    x = torch.rand(batch, steps, 1, side, side, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run = lambda: model(x, future_frames=1, return_all=True)  # `steps` recurrent steps on true frames
    run().mean().backward()  # warm-up (allocator, kernels, conv_einsum plan cache)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out, saved = saved_bytes(run)
    out.mean().backward()
    sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # measured FLOPs of one steady-state forward step (history full) vs the counted multiplications
    with torch.no_grad():
        states: List = [None] * len(model.layers)
        for t in range(4):
            model.step(x[:, t % steps], states)
        with FlopCounterMode(display=False) as fc:
            model.step(x[:, 0], states)
    row = {"cell": cell, "backend": backend, "side": side, "batch": batch, "steps": steps,
           "params": sum(p.numel() for p in model.parameters()),
           "step_seconds": (wall if device.type == "cuda" else cpu) / steps, "step_wall_seconds": wall / steps,
           "saved_mb_per_step": saved / steps / 2**20,
           "measured_gflops_per_sample_step": fc.get_total_flops() / batch / 1e9,
           "counted_gflops_per_sample_step": 2 * model.macs_per_step(side, side) / 1e9}
    if device.type == "cuda":
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1, 3 steps (CPU-friendly)")
    ap.add_argument("--sides", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.steps = 1, 3
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    rows = []
    for side in args.sides:
        for cell, backend in VARIANTS:
            row = measure(cell, backend, side, args.batch, args.steps, device)
            rows.append(row)
            print(f"{side:4d} {cell:11s} {backend:12s} {row['step_seconds']:.3f} s/step  "
                  f"{row['saved_mb_per_step']:.1f} MB/step  flops meas/count "
                  f"{row['measured_gflops_per_sample_step']:.3f}/{row['counted_gflops_per_sample_step']:.3f} G")
    for row in rows:
        base = next(r for r in rows if r["side"] == row["side"] and r["cell"] == "convlstm" and r["backend"] == "torch")
        row["time_ratio_vs_convlstm"] = row["step_seconds"] / base["step_seconds"]
        row["memory_ratio_vs_convlstm"] = row["saved_mb_per_step"] / base["saved_mb_per_step"]
        row["flops_ratio_vs_convlstm"] = row["counted_gflops_per_sample_step"] / base["counted_gflops_per_sample_step"]
    setup = {"device": str(device), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
             "threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps, "quick": args.quick,
             "timing": "CPU process time, 1 thread" if device.type == "cpu" else "CUDA wall time"}
    result = {"setup": setup, "rows": rows, "dissertation": DISSERTATION}
    md = markdown(result)
    print(md)
    if not args.no_write:
        (ROOT / "benchmarks" / "convttlstm.json").write_text(json.dumps(result, indent=1))
        (ROOT / "benchmarks" / "convttlstm.md").write_text(md)


def markdown(result) -> str:
    s = result["setup"]
    lines = ["# Conv-TT-LSTM vs ConvLSTM: cost per recurrent step (12-layer KTH architecture)", "",
             f"Generated by `scripts/bench_convttlstm.py{' --quick' if s['quick'] else ''}` on {s['device']} "
             f"({s['cpu']}, torch {s['torch']}, {s['threads']} thread(s)); batch {s['batch']}, {s['steps']} steps, "
             f"timing = {s['timing']}. Memory = bytes autograd keeps for backward per step.", "",
             "| side | cell | conv backend | params | fwd+bwd s/step | time / ConvLSTM | saved MB/step | mem / ConvLSTM "
             "| GFLOPs/step measured | counted | FLOPs / ConvLSTM |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['side']} | {r['cell']} | {r['backend']} | {r['params']} | {r['step_seconds']:.3f} | "
                     f"{r['time_ratio_vs_convlstm']:.2f} | {r['saved_mb_per_step']:.1f} | "
                     f"{r['memory_ratio_vs_convlstm']:.2f} | {r['measured_gflops_per_sample_step']:.2f} | "
                     f"{r['counted_gflops_per_sample_step']:.2f} | {r['flops_ratio_vs_convlstm']:.2f} |")
    d = result["dissertation"]
    lines += ["", "Dissertation (Table 4.2, time per training epoch): Conv-TT-LSTM / ConvLSTM = "
              f"{d['epoch_minutes_kth']['convttlstm']} / {d['epoch_minutes_kth']['convlstm']} min on KTH "
              f"({d['epoch_minutes_kth']['convttlstm'] / d['epoch_minutes_kth']['convlstm']:.2f}x) and "
              f"{d['epoch_minutes_mnist']['convttlstm']} / {d['epoch_minutes_mnist']['convlstm']} min on Moving-MNIST "
              f"({d['epoch_minutes_mnist']['convttlstm'] / d['epoch_minutes_mnist']['convlstm']:.2f}x).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
