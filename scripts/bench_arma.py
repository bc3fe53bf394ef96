#!/usr/bin/env python
"""Forward+backward time and activation memory: ARMAConv2d vs nn.Conv2d (3x3, 5x5) vs a non-local block.

Every row times the four layers on the same input in the same run, interleaved, and reports ratios to the
3x3 convolution. On the CPU with one thread the clock is the thread's CPU time (``time.thread_time``: autograd
runs CPU graphs on the calling thread), so that other processes on a shared machine do not count; the wall
clock is recorded beside it, with the load average before and after. On CUDA it is the wall clock around a
synchronised call. Memory is the bytes autograd saves for backward (``saved_tensors_hooks``), which is what
the layer adds to training memory on any device; on CUDA the peak allocated memory is also recorded.

    python scripts/bench_arma.py --quick          # CPU: 32/64 channels x 32/64/128 px, batch 1
    python scripts/bench_arma.py --quick --batch 8 32 --channels 64 128 256 --sizes 32 64 128 224 \
        --skip conv5x5 nonlocal --max-elements 1e8 --out benchmarks/arma_batch
                                                  # training batch sizes (issue 17), one block of rows per batch
    python scripts/bench_arma.py --device cuda    # 32-256 channels x 32-224 px, batch 8 (under a minute
                                                  # on one H100; the non-local block is skipped above
                                                  # 128x128 px, where its (HW)^2 attention matrix alone
                                                  # takes 8 B x 4 bytes x (HW)^2)

Each layer runs at least ``--reps`` timed rounds (3 on the CPU, 10 on CUDA) and more, up to 50, until they take
``--min-seconds`` (2 s on the CPU, 0.5 s on CUDA); layers of similar cost share one count (see time_interleaved).

Writes benchmarks/arma.json and benchmarks/arma.md (``--out STEM`` changes the stem), rewritten after every row.
Rows at batch > 1 get a goal column: <= 1.5x the 3x3 convolution, or the miss and what the floors say about it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch import nn

from zoo.hub.files import write_text_atomic
from zoo.memory import saved_bytes
from zoo_arma.ar import factor_coordinates
from zoo_arma.fft_solve import CPU_CHUNK_BYTES, _chunks, separable_ar_solve
from zoo_arma.layer import ARMAConv2d
from zoo_arma.nonlocal_block import NonLocalBlock2d

ROOT = Path(__file__).resolve().parents[1]


def time_interleaved(layers: Dict[str, nn.Module], x: torch.Tensor, reps: int, min_seconds: float,
                     clock: Callable[[], float]) -> Dict[str, Dict[str, float]]:
    """Median ``clock`` and wall seconds of one forward + backward per layer; the layers take turns inside each
    round so a change of machine load hits all of them alike. The first round warms up and is dropped; it also
    sets how many timed rounds a layer gets: ``reps``, or more (up to 50) until they take ``min_seconds``, with
    the layers within 4x of the fastest sharing the largest count, so that they stay interleaved to the end."""
    times: Dict[str, List[float]] = {k: [] for k in layers}
    walls: Dict[str, List[float]] = {k: [] for k in layers}
    rounds = dict.fromkeys(layers, reps)
    rep = -1
    while rep < max(rounds.values()):
        rep += 1
        for name, layer in layers.items():
            if rep > rounds[name]:
                continue
            x.grad = None
            layer.zero_grad(set_to_none=True)
            if x.is_cuda:
                torch.cuda.synchronize()
            t0, w0 = clock(), time.perf_counter()
            layer(x).sum().backward()
            if x.is_cuda:
                torch.cuda.synchronize()
            if rep:
                times[name].append(clock() - t0)
            walls[name].append(time.perf_counter() - w0)
        if rep == 0:
            warm = {k: max(v.pop(), 1e-9) for k, v in walls.items()}
            fast = [k for k in layers if warm[k] <= 4 * min(warm.values())]
            rounds = {k: max(reps, min(50, math.ceil(min_seconds / warm[k]))) for k in layers}
            shared = max(rounds[k] for k in fast)
            rounds.update(dict.fromkeys(fast, shared))
    return {k: {"time": statistics.median(times[k]), "wall": statistics.median(walls[k]), "rounds": rounds[k]} for k in layers}


def _complex_view(t: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` real, ``W`` even -> complex ``(B, C, H, W/2)`` pairing columns ``2j, 2j+1`` (no copy)."""
    t = t.contiguous()
    return torch.view_as_complex(t.view(*t.shape[:-1], t.shape[-1] // 2, 2))


def _blocks(t: torch.Tensor):
    """``(batch slice, channel slice)`` blocks of about ``CPU_CHUNK_BYTES`` of complex data on the CPU (as the
    layer's pairs path runs its transforms), one block elsewhere."""
    plane = t.shape[-2] * (t.shape[-1] // 2) * 2 * t.element_size()
    return _chunks(t.shape[0], t.shape[1], plane, CPU_CHUNK_BYTES if t.device.type == "cpu" else math.inf)


def _transform_pair(x: torch.Tensor, out: torch.Tensor, mult=None) -> None:
    """``out = realview(ifft2(fft2(view x) [* mult]))`` block by block."""
    xv, ov = _complex_view(x), _complex_view(out)
    for bs, cs in _blocks(x):
        z = torch.fft.fft2(xv[bs, cs])
        if mult is not None:
            z.mul_(mult[cs])
        ov[bs, cs] = torch.fft.ifft2(z)


class _FourTransforms(torch.autograd.Function):
    """A forward and an inverse 2-D transform in forward and again in backward, each a half-size complex transform
    (``fft2`` / ``ifft2`` of the map viewed as complex, two real values per complex point, no copy: what a
    transform of a real map costs at least), blocked like the layer's, and nothing else."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = torch.empty_like(t, memory_format=torch.contiguous_format)
        _transform_pair(t, out)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = torch.empty(g.shape, dtype=g.dtype, device=g.device)
        _transform_pair(g, out)
        return out


class FFTFloor(nn.Module):
    """The transforms alone, no convolution: work every frequency-domain AR solve does (timed on its own, so
    conv3x3 + this estimates, not bounds, what such a layer can reach)."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return _FourTransforms.apply(t)


class _MinimalSolve(torch.autograd.Function):
    """The least work of a frequency-domain AR solve with a trainable multiplier, on the transforms of
    :class:`_FourTransforms`: forward ``ifft2(fft2(z) m)`` saving ``conj(fft2(z))``; backward ``fft2(g)``, the
    gradient of ``m`` (the product with the saved spectrum, accumulated over the batch in place) and
    ``ifft2(fft2(g) conj(m))``. No parameterisation, no identity term, no real-filter bookkeeping (a real filter
    needs two samples per transform or the reversed spectrum; this free multiplier needs neither)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = torch.empty_like(t, memory_format=torch.contiguous_format)
        tv, ov = _complex_view(t), _complex_view(out)
        saved = torch.empty_like(tv)
        for bs, cs in _blocks(t):
            z = torch.fft.fft2(tv[bs, cs])
            torch.conj_physical(z, out=saved[bs, cs])
            ov[bs, cs] = torch.fft.ifft2(z.mul_(m[cs]))
        ctx.save_for_backward(saved, m)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        saved, m = ctx.saved_tensors
        m_conj = m.conj_physical()
        grad_m = torch.zeros_like(m)
        out = torch.empty(g.shape, dtype=g.dtype, device=g.device)
        gv, ov = _complex_view(g), _complex_view(out)
        for bs, cs in _blocks(g):
            gf = torch.fft.fft2(gv[bs, cs])
            acc = grad_m[cs]
            for i in range(gf.shape[0]):
                acc.addcmul_(gf[i], saved[bs.start + i, cs])
            ov[bs, cs] = torch.fft.ifft2(gf.mul_(m_conj[cs]))
        return out, grad_m


class SolveFloor(nn.Module):
    """:class:`_MinimalSolve` with one complex ``(C, H, W/2)`` multiplier per input size: the work of
    ``ARMAConv2d``'s AR part without its parameterisation (which maps ``O(C (H + W))`` numbers to that
    multiplier) or the bookkeeping of a real filter, timed on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.multipliers = nn.ParameterDict()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        key = f"{h}x{w}"
        if key not in self.multipliers:
            m = torch.ones(c, h, w // 2, dtype=torch.complex64, device=t.device)
            self.multipliers[key] = nn.Parameter(m)
        return _MinimalSolve.apply(t, self.multipliers[key])


class RealPathARMA(ARMAConv2d):
    """``ARMAConv2d`` with its AR solve forced onto the ``rfft2`` / ``irfft2`` path at every batch size: the solve
    as it was before the pairs path (``--compare-real``), for a before/after ratio measured in the same run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.moving_average(x)
        return separable_ar_solve(t, factor_coordinates(self.ar_params, self.ar_margin), t.shape[-2:], path="real")


def make_layers(c: int, device: torch.device, compare_real: bool = False) -> Dict[str, nn.Module]:
    return {
        **({"arma3x3_real": RealPathARMA(c, c, 3, ar_kernel_size=3, ar_init=0.5)} if compare_real else {}),
        "conv3x3": nn.Conv2d(c, c, 3, padding=1),
        "conv5x5": nn.Conv2d(c, c, 5, padding=2),
        "arma3x3": ARMAConv2d(c, c, 3, ar_kernel_size=3, ar_init=0.5),
        "nonlocal": NonLocalBlock2d(c),
        "fft4": FFTFloor(),
        "solve_floor": SolveFloor(),
    }


def _row_goal(r: Dict, limit: float = 1.5) -> str:
    """Issue 17's goal for a batch row: met, or missed with what the measured floors say about it."""
    ratio, fft4, floor = r["arma3x3_vs_conv3x3"], r.get("fft4_vs_conv3x3"), r.get("solve_floor_vs_conv3x3")
    if ratio <= limit:
        return "met"
    if fft4 is not None and 1 + fft4 > limit:
        return f"missed: conv + 4 FFTs alone x{1 + fft4:.2f}"
    if floor is not None and 1 + floor > limit:
        return f"missed: conv + solve floor alone x{1 + floor:.2f}"
    over = "-" if floor is None else f"{ratio - 1 - floor:.2f}"
    return f"missed: not the floor (ARMA - conv - solve floor = x{over})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small CPU grid")
    p.add_argument("--channels", type=int, nargs="+")
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--batch", type=int, nargs="+", help="one or more batch sizes, each a block of rows (default 1 with "
                   "--quick, else 8)")
    p.add_argument("--skip", nargs="+", default=[], choices=["conv5x5", "nonlocal"],
                   help="layers not to time (the 3x3 convolution, ARMA and the floors always run)")
    p.add_argument("--compare-real", action="store_true",
                   help="also time ARMA with its solve forced onto the rfft2/irfft2 path (the solve before the pairs "
                        "path) in the same rounds: column 'ARMA real path'")
    p.add_argument("--max-elements", type=float, default=math.inf,
                   help="skip rows whose input has more than this many elements (batch x channels x pixels); listed "
                        "as not measured")
    p.add_argument("--reps", type=int, help="least timed repetitions per layer and row (default 3 on the CPU, 10 on CUDA)")
    p.add_argument("--min-seconds", type=float, help="repeat a layer (up to 50 rounds) until its timed rounds take this "
                   "long (default 2 on the CPU, 0.5 on CUDA), so that fast layers get more samples")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-nonlocal-pixels", type=int, default=128 * 128,
                   help="skip the non-local block above this many pixels (its attention matrix is (HW)^2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "arma")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    channels = args.channels or ([32, 64] if args.quick else [32, 64, 128, 256])
    sizes = args.sizes or ([32, 64, 128] if args.quick else [32, 64, 128, 224])
    batches = args.batch or [1 if args.quick else 8]
    device = torch.device(args.device)
    reps = args.reps or (10 if device.type == "cuda" else 3)
    min_seconds = args.min_seconds if args.min_seconds is not None else (0.5 if device.type == "cuda" else 2.0)
    cpu_time = device.type == "cpu" and args.threads == 1
    clock = time.thread_time if cpu_time else time.perf_counter
    clock_name = "thread CPU time" if cpu_time else "wall clock"
    load_before = [round(v, 2) for v in os.getloadavg()]
    print(f"load average {load_before}; timing by {clock_name}", flush=True)

    rows: List[Dict] = []
    not_measured: List[Dict] = []
    for batch in batches:
        for c in channels:
            layers = {k: v.to(device) for k, v in make_layers(c, device, args.compare_real).items() if k not in args.skip}
            for s in sizes:
                if batch * c * s * s > args.max_elements:
                    not_measured.append({"batch": batch, "channels": c, "size": s})
                    print(f"B={batch:3d} C={c:4d} {s:4d}px: not measured (over --max-elements)", flush=True)
                    continue
                torch.manual_seed(0)
                x = torch.randn(batch, c, s, s, device=device, requires_grad=True)
                row: Dict = {"channels": c, "size": s, "batch": batch}
                active = {k: v for k, v in layers.items() if not (k == "nonlocal" and s * s > args.max_nonlocal_pixels)}
                try:
                    timed = time_interleaved(active, x, reps, min_seconds, clock)
                except torch.cuda.OutOfMemoryError:  # only the non-local block can run out; time the rest
                    torch.cuda.empty_cache()
                    active.pop("nonlocal")
                    timed = time_interleaved(active, x, reps, min_seconds, clock)
                for name, sec in timed.items():
                    row[f"{name}_ms"] = round(1e3 * sec["time"], 3)
                    row[f"{name}_wall_ms"] = round(1e3 * sec["wall"], 3)
                    row[f"{name}_rounds"] = sec["rounds"]
                for name in ("conv3x3", "conv5x5", "arma3x3", "arma3x3_real", "nonlocal", "fft4", "solve_floor"):
                    layer = layers.get(name)
                    if name not in active:
                        row[f"{name}_ms"] = row[f"{name}_wall_ms"] = row[f"{name}_saved_mb"] = None
                        continue
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                    row[f"{name}_saved_mb"] = round(saved_bytes(lambda: layer(x).sum())[1] / 2**20, 3)
                    if device.type == "cuda":
                        try:
                            layer(x).sum().backward()
                            row[f"{name}_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                        except torch.cuda.OutOfMemoryError:  # the non-local block's (HW)^2 attention at large C
                            row[f"{name}_peak_mb"] = None
                base = row["conv3x3_ms"]
                for name in ("conv5x5", "arma3x3", "arma3x3_real", "nonlocal", "fft4", "solve_floor"):
                    row[f"{name}_vs_conv3x3"] = None if row[f"{name}_ms"] is None else round(row[f"{name}_ms"] / base, 2)
                nl = row["nonlocal_ms"]
                row["arma_vs_nonlocal"] = None if nl is None else round(row["arma3x3_ms"] / nl, 3)
                if batch > 1:
                    row["goal_1.5x"] = _row_goal(row)
                rows.append(row)
                fmt_x = lambda v: "-" if v is None else f"x{v:5.2f}"
                print(f"B={batch:3d} C={c:4d} {s:4d}px: conv3 {row['conv3x3_ms']:9.2f} ms  conv5 {fmt_x(row['conv5x5_vs_conv3x3'])}  "
                      f"arma x{row['arma3x3_vs_conv3x3']:5.2f}  4 FFTs x{row['fft4_vs_conv3x3']:5.2f}  "
                      f"solve floor x{row['solve_floor_vs_conv3x3']:5.2f}  nonlocal {fmt_x(row['nonlocal_vs_conv3x3'])}"
                      + (f"  real path x{row['arma3x3_real_vs_conv3x3']:5.2f}" if args.compare_real else "")
                      + (f"  goal: {row['goal_1.5x']}" if batch > 1 else ""), flush=True)
                del x
                # partial results after every row: a kill mid-grid keeps what was measured
                write_report(args, rows, not_measured, batches, channels, sizes, reps, min_seconds, clock_name, load_before, device)
    print(write_report(args, rows, not_measured, batches, channels, sizes, reps, min_seconds, clock_name, load_before, device))


def write_report(args, rows, not_measured, batches, channels, sizes, reps, min_seconds, clock_name, load_before, device) -> str:
    one = [r for r in rows if r["batch"] == 1]
    big = [r for r in one if r["size"] >= 64]
    batched = [r for r in rows if r["batch"] > 1]
    goals = {}
    if one:
        goals.update({
            "arma_overhead_le_1.5x_conv3x3_at_64px_and_above": all(r["arma3x3_vs_conv3x3"] <= 1.5 for r in big) if big else None,
            "worst_arma_overhead_at_64px_and_above": max((r["arma3x3_vs_conv3x3"] for r in big), default=None),
            "arma_cheaper_than_nonlocal_at_64px_and_above": all(r["arma_vs_nonlocal"] is None or r["arma_vs_nonlocal"] < 1 for r in big) if big else None,
            "nonlocal_rows_skipped": sum(r["nonlocal_ms"] is None for r in one),
            "rows_at_64px_and_above_where_conv3x3_plus_4_ffts_exceeds_1.5x": sum(1 + r["fft4_vs_conv3x3"] > 1.5 for r in big),
            "rows_at_64px_and_above_where_conv3x3_plus_solve_floor_exceeds_1.5x": sum(1 + r["solve_floor_vs_conv3x3"] > 1.5 for r in big),
            "rows_at_64px_and_above": len(big),
        })
    if batched:
        goals.update({
            "batch_rows_arma_le_1.5x_conv3x3": sum(r["arma3x3_vs_conv3x3"] <= 1.5 for r in batched),
            "batch_rows": len(batched),
            "batch_rows_missed_explained_by_floor": sum(r["goal_1.5x"].startswith("missed: conv") for r in batched),
            "batch_rows_missed_not_explained": sum(r["goal_1.5x"].startswith("missed: not") for r in batched),
            "worst_batch_arma_overhead": max(r["arma3x3_vs_conv3x3"] for r in batched),
            "batch_rows_not_measured": not_measured,
        })
    load_after = [round(v, 2) for v in os.getloadavg()]
    argv = sys.argv[1:]  # the command as run, less --out
    flags = [a for i, a in enumerate(argv) if a != "--out" and not a.startswith("--out=") and (i == 0 or argv[i - 1] != "--out")]
    malloc_env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")]  # glibc tuning, if any
    command = " ".join(malloc_env + ["python scripts/bench_arma.py"] + flags)
    report = {
        "command": command,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU, {args.threads} thread(s)",
        "torch": torch.__version__,
        "clock": clock_name,
        "load_average_1_5_15min": {"before": load_before, "after": load_after},
        "grid": {"channels": channels, "sizes": sizes, "batch": batches, "reps": reps, "min_seconds": min_seconds,
                 "skipped_layers": args.skip, "compare_real": args.compare_real},
        "layers": {"conv3x3": "nn.Conv2d 3x3", "conv5x5": "nn.Conv2d 5x5", "arma3x3": "ARMAConv2d MA 3x3 + AR 3x3 (FFT solve)",
                   "nonlocal": "embedded-Gaussian non-local block, C/2 inner channels",
                   "fft4": "fft2 + ifft2 of the input viewed as complex (two real values per complex point, no copy) in "
                           "forward and again in backward, blocked like the layer's transforms, nothing else",
                   "solve_floor": "the 4 transforms + forward and backward spectrum products + the multiplier's gradient"},
        "goals": goals,
        "not_measured": not_measured,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2))
    fmt = lambda v, suffix="": "-" if v is None else f"{v}{suffix}"
    bs = ", ".join(str(b) for b in batches)
    real = any("arma3x3_real_vs_conv3x3" in r for r in rows)
    lines = [
        "# ARMAConv2d vs convolutions vs non-local block (forward + backward)", "",
        f"`{report['command']}` on {report['device']}, torch {torch.__version__}; batch {bs}, median of {reps} to 50 runs "
        f"(rounds column: the convolutions' and ARMA's; at least {min_seconds} s of timed runs per layer) by "
        f"{clock_name} (load average {load_before} before, {load_after} after). Ratios are to the 3x3 convolution "
        "measured in the same run on the same input; memory = bytes saved for backward. `4 FFTs` = a forward and an "
        "inverse 2-D transform of a tensor of the layer's output size in forward and again in backward, nothing else, "
        "each a half-size complex transform of the map viewed as complex (two real values per complex point, no "
        "copy; what a transform of a real map costs at least) in blocks of the size the layer uses: the transforms "
        "any frequency-domain AR solve pays, so ARMA >= 1 + that. `solve floor` = those transforms plus the "
        "spectrum products a trainable frequency-domain solve cannot skip (times the transfer function in forward, "
        "times its conjugate in backward, and the product with the saved spectrum that gives the transfer function's "
        "gradient), with a free complex multiplier in place of ARMA's parameterised one and without the bookkeeping "
        "of a real filter (ARMA pairs two samples per complex transform: one interleaving and one de-interleaving "
        "pass per direction): ARMA minus that is the cost of the parameterisation, the pairing and the identity term."
        + (" `ARMA real path (before)` = the same layer with its solve forced onto `rfft2` / `irfft2` at every batch "
           "size, as it ran before the pairs path, timed in the same rounds." if real else ""),
        "",
        "| batch | C | px | rounds | conv3x3 ms (wall) | conv5x5 | ARMA 3x3 | " + ("ARMA real path (before) | " if real else "")
        + "4 FFTs | solve floor | non-local | ARMA / non-local | saved MB conv3 / ARMA / NL | goal (batch > 1: <= 1.5x) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if real else ""),
    ]
    for r in rows:
        real_cell = f"x{r['arma3x3_real_vs_conv3x3']} | " if real else ""
        lines.append(f"| {r['batch']} | {r['channels']} | {r['size']} | {r['conv3x3_rounds']} | {r['conv3x3_ms']} ({r['conv3x3_wall_ms']}) | "
                     f"{fmt(r['conv5x5_vs_conv3x3'], '')} | x{r['arma3x3_vs_conv3x3']} | {real_cell}x{r['fft4_vs_conv3x3']} | x{r['solve_floor_vs_conv3x3']} | "
                     f"{fmt(r['nonlocal_vs_conv3x3'], '')} | {fmt(r['arma_vs_nonlocal'])} | "
                     f"{r['conv3x3_saved_mb']} / {r['arma3x3_saved_mb']} / {fmt(r['nonlocal_saved_mb'])} | {r.get('goal_1.5x', '-')} |")
    if one:
        lines += ["", "Goals at batch 1 (Table 6.1's claim, measured):",
                  f"- ARMA <= 1.5x a 3x3 convolution at 64 px and above: **{goals['arma_overhead_le_1.5x_conv3x3_at_64px_and_above']}** "
                  f"(worst x{goals['worst_arma_overhead_at_64px_and_above']})",
                  f"- ARMA cheaper than a non-local block at every size >= 64 px: **{goals['arma_cheaper_than_nonlocal_at_64px_and_above']}** "
                  f"({goals['nonlocal_rows_skipped']} non-local rows skipped above {args.max_nonlocal_pixels} pixels or by --skip)",
                  f"- rows at >= 64 px where the 3x3 convolution plus the 4 FFTs alone already exceed 1.5x: "
                  f"{goals['rows_at_64px_and_above_where_conv3x3_plus_4_ffts_exceeds_1.5x']}/{goals['rows_at_64px_and_above']}; "
                  f"where the convolution plus the solve floor does: "
                  f"{goals['rows_at_64px_and_above_where_conv3x3_plus_solve_floor_exceeds_1.5x']}/{goals['rows_at_64px_and_above']}"]
    if batched:
        lines += ["", "Goal at training batch sizes (issue 17: ARMA forward+backward <= 1.5x a 3x3 convolution):",
                  f"- met on **{goals['batch_rows_arma_le_1.5x_conv3x3']}/{goals['batch_rows']}** rows measured "
                  f"(worst x{goals['worst_batch_arma_overhead']}); of the misses, "
                  f"{goals['batch_rows_missed_explained_by_floor']} where the convolution plus the measured floor alone "
                  f"already exceeds 1.5x, {goals['batch_rows_missed_not_explained']} not explained by the floor "
                  "(per row in the last column)"]
    if not_measured:
        lines += ["", "Not measured (over `--max-elements`): " + ", ".join(
            f"batch {r['batch']} x {r['channels']} ch x {r['size']} px" for r in not_measured)]
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out.with_suffix(".md"), text)
    return text


if __name__ == "__main__":
    main()
