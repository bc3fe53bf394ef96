"""Benchmark conv_einsum on factorized 3x3 convolution layers at ResNet-50 stage shapes.

Compares, in the same run, forward+backward time and peak memory of
  conv_einsum (optimize="auto") and conv_einsum (optimize="measure": fastest of timed candidate paths)
  vs  (a) naive left-to-right evaluation (optimize="naive", same kernels),
  (b) rebuilding the dense kernel from the factors then F.conv2d, (c) tltorch.FactorizedConv
  (implementation="factorized") for the decompositions it has (CP, Tucker, TT).
With --resnet, also times a whole network: dense timm ResNet-18 vs zoo.create("resnet18-mtt-10pct") with
and without autotune (batch 32, 64 px, forward+backward).
Writes benchmarks/conv_einsum.json and benchmarks/conv_einsum.md.

Usage:  python scripts/bench_conv_einsum.py --quick      (2-core CPU: batch 1, channels / 4)
        python scripts/bench_conv_einsum.py              (full grid: batch 16, 256..2048 channels)
        python scripts/bench_conv_einsum.py --resnet-only  (ResNet-18 part only, merged into the files)
        python scripts/bench_conv_einsum.py --merge a.json b.json --out STEM  (join runs of parts of the grid)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from zoo.conv_einsum import clear_plan_cache, conv_einsum, conv_einsum_path, set_autotune
from zoo.hub.files import write_text_atomic
from zoo.memory import saved_bytes

ROOT = Path(__file__).resolve().parents[1]
STAGES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]
RATES = [0.01, 0.05, 0.10, 0.20]
K = 3


def split3(c: int) -> tuple[int, int, int]:
    """Factor a channel count into three near-equal powers of two (reshaped layers, M = 3)."""
    e = int(math.log2(c))
    a = e // 3
    parts = [a, a + (e % 3 >= 2), a + (e % 3 >= 1)]
    return tuple(2 ** p for p in parts)  # type: ignore[return-value]


@dataclass
class Layer:
    """A factorized C->C 3x3 layer: conv_einsum equation, factor shapes, dense-kernel builder equation."""

    name: str
    equation: str
    x_shape: tuple[int, ...]
    shapes: list[tuple[int, ...]]
    build: str  # einsum building the dense kernel (reshaped to [C, C, 3, 3])
    rank: int


def _layer(name: str, c: int, b: int, px: int, r: int) -> Layer:
    x = (b, c, px, px)
    if name == "cp":
        return Layer(name, "bshw,rs,rh,rw,rt->bthw|hw", x, [(r, c), (r, K), (r, K), (r, c)], "rs,rh,rw,rt->tshw", r)
    if name == "tucker":
        return Layer(name, "bshw,sq,pqhw,tp->bthw|hw", x, [(c, r), (r, r, K, K), (c, r)], "sq,pqhw,tp->tshw", r)
    if name == "tt":
        return Layer(name, "nshw,asb,bhc,cw,ta->nthw|hw", x, [(r, c, r), (r, K, r), (r, K), (c, r)],
                     "asb,bhc,cw,ta->tshw", r)
    if name == "tr":
        return Layer(name, "nshw,asb,bhc,cwd,dta->nthw|hw", x, [(r, c, r), (r, K, r), (r, K, r), (r, c, r)],
                     "asb,bhc,cwd,dta->tshw", r)
    s1, s2, s3 = split3(c)
    xr = (b, s1, s2, s3, px, px)
    if name == "rcp":
        return Layer(name, "nxyzij,rux,rvy,rwz,rij->nuvwij|ij",
                     xr, [(r, s1, s1), (r, s2, s2), (r, s3, s3), (r, K, K)], "rux,rvy,rwz,rij->uvwxyzij", r)
    if name == "rtt":
        return Layer(name, "nxyzij,uxa,avyb,bwzc,cij->nuvwij|ij", xr,
                     [(s1, s1, r), (r, s2, s2, r), (r, s3, s3, r), (r, K, K)], "uxa,avyb,bwzc,cij->uvwxyzij", r)
    if name == "rtr":
        return Layer(name, "nxyzij,duxa,avyb,bwzc,cijd->nuvwij|ij", xr,
                     [(r, s1, s1, r), (r, s2, s2, r), (r, s3, s3, r), (r, K, K, r)],
                     "duxa,avyb,bwzc,cijd->uvwxyzij", r)
    if name == "rtucker":
        return Layer(name, "nxyzij,xa,yb,zc,abcdefij,ud,ve,wf->nuvwij|ij", xr,
                     [(s1, r), (s2, r), (s3, r), (r, r, r, r, r, r, K, K), (s1, r), (s2, r), (s3, r)],
                     "xa,yb,zc,abcdefij,ud,ve,wf->uvwxyzij", r)
    raise ValueError(f"unknown layer {name!r}")


LAYERS = ["cp", "tucker", "tt", "tr", "rcp", "rtt", "rtr", "rtucker"]
TLTORCH = {"cp": "cp", "tucker": "tucker", "tt": "tt"}
BASELINES = ("naive", "dense", "tltorch")


def make_layer(name: str, c: int, b: int, px: int, rate: float) -> Layer:
    """The layer whose rank brings its parameter count closest to ``rate`` of the dense C*C*9."""
    target = rate * c * c * K * K
    best = None
    for r in range(1, 4 * c):
        lay = _layer(name, c, b, px, r)
        n = sum(math.prod(s) for s in lay.shapes)
        if best is None or abs(n - target) < abs(best[0] - target):
            best = (n, lay)
        if n > target:
            break
    return best[1]  # type: ignore[index]


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd_times(methods: dict[str, Callable[[], torch.Tensor]], repeats: int,
                  device: torch.device) -> dict[str, float]:
    """Minimum seconds of forward + backward per method, methods interleaved round-robin after a warm-up.

    The minimum (not the median) and the interleaving make the ratios robust to other processes sharing
    the CPU: every method sees the same background load over the run. On CUDA the clock is read after a
    device synchronisation on both sides.
    """
    for fn in methods.values():
        fn().sum().backward()
    best = {name: math.inf for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn().sum().backward()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def peak_bytes(fn: Callable[[], torch.Tensor], device: torch.device) -> int:
    """Peak of live tensor bytes during forward + backward, above the level at the start.

    On CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus the allocation at the start. On the
    CPU: the torch profiler's memory timeline (profile_memory=True; every allocation and free recorded by
    the CPU allocator, grouped by category), the max over time of the total minus the first sample's.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn().sum().backward()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - start)
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn().sum().backward()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    totals = [sum(s) for s in sizes]
    return int(max(totals) - totals[0]) if totals else 0


def rebuild_macs(lay: Layer, c: int) -> int:
    """Multiply-adds of (b), forward + both backward products: building the kernel from the factors (its
    einsum in opt_einsum's optimal order, 3x for forward and the factor gradients) plus the dense 3x3
    convolution (3x: output, input gradient, kernel gradient)."""
    import opt_einsum

    _, info = opt_einsum.contract_path(lay.build, *lay.shapes, shapes=True, optimize="optimal"
                                       if len(lay.shapes) <= 5 else "greedy")
    b, _, h, w = lay.x_shape[0], None, lay.x_shape[-2], lay.x_shape[-1]
    return 3 * int(info.opt_cost) // 2 + 3 * b * h * w * c * c * K * K  # opt_einsum counts a MAC as 2 FLOPs


def run_row(lay: Layer, c: int, rate: float, args: argparse.Namespace, gen: torch.Generator) -> dict:
    device = torch.device(args.device)
    x = torch.randn(lay.x_shape, generator=gen).to(device)
    factors = [(torch.randn(s, generator=gen) / math.sqrt(s[0])).to(device).requires_grad_() for s in lay.shapes]
    params = sum(f.numel() for f in factors)
    row: dict = {"layer": lay.name, "channels": c, "pixels": lay.x_shape[-1], "batch": lay.x_shape[0],
                 "rate": rate, "rank": lay.rank, "params": params, "param_fraction": params / (c * c * K * K)}
    clear_plan_cache()
    t0 = time.perf_counter()
    _, info = conv_einsum_path(lay.equation, x, *factors, padding=1)
    row["path_search_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(200):
        conv_einsum_path(lay.equation, x, *factors, padding=1)
    row["cached_lookup_s"] = (time.perf_counter() - t0) / 200
    _, naive = conv_einsum_path(lay.equation, x, *factors, padding=1, optimize="naive")
    row["largest_intermediate"] = {"conv_einsum": info.largest_intermediate, "naive": naive.largest_intermediate}
    row["macs"] = {"conv_einsum": info.opt_cost, "dense": rebuild_macs(lay, c)}
    row["path"] = [s.equation for s in info.steps]
    t0 = time.perf_counter()
    _, measured = conv_einsum_path(lay.equation, x, *factors, padding=1, optimize="measure")
    row["measure_s"] = time.perf_counter() - t0
    row["measure_choice"] = next(m.label for m in measured.measured if m.path == measured.path)
    row["measure_candidates"] = {m.label: m.seconds if m.seconds is not None else m.note for m in measured.measured}
    xd = x.reshape(x.shape[0], c, *x.shape[-2:])
    methods: dict[str, Callable[[], torch.Tensor] | str] = {
        "conv_einsum": lambda: conv_einsum(lay.equation, x, *factors, padding=1),
        "measure": lambda: conv_einsum(lay.equation, x, *factors, padding=1, optimize="measure"),
        "naive": lambda: conv_einsum(lay.equation, x, *factors, padding=1, optimize="naive"),
        "dense": lambda: F.conv2d(xd, torch.einsum(lay.build, *factors).reshape(c, c, K, K), padding=1),
        "checkpoint": lambda: conv_einsum(lay.equation, x, *factors, padding=1, checkpoint=True),
    }
    row["saved_bytes"] = {k: saved_bytes(methods[k], exclude=[x, *factors])[1]  # type: ignore[arg-type]
                          for k in ("conv_einsum", "checkpoint")}
    if naive.largest_intermediate > args.max_elements:
        methods["naive"] = f"skipped: largest intermediate {naive.largest_intermediate:.3g} elements > --max-elements"
    if lay.name in TLTORCH:
        import tltorch

        mod = tltorch.FactorizedConv(c, c, (K, K), factorization=TLTORCH[lay.name], rank=rate,
                                     implementation="factorized", padding=1).to(device)
        row["tltorch_params"] = sum(p.numel() for p in mod.parameters())
        methods["tltorch"] = lambda: mod(xd)
    runnable = {k: v for k, v in methods.items() if not isinstance(v, str)}
    row["time_s"] = {k: (v if isinstance(v, str) else None) for k, v in methods.items()}
    row["time_s"].update(fwd_bwd_times(runnable, args.repeats, device))  # type: ignore[arg-type]
    row["peak_bytes"] = {k: (v if isinstance(v, str) else (peak_bytes(v, device) if args.memory else None))
                         for k, v in methods.items()}
    base = {k: v for k, v in row["time_s"].items() if k in BASELINES and not isinstance(v, str)}
    row["vs_best_baseline"] = row["time_s"]["conv_einsum"] / min(base.values())
    row["measure_vs_best_baseline"] = row["time_s"]["measure"] / min(base.values())
    row["dense_over_conv_einsum"] = row["time_s"]["dense"] / row["time_s"]["conv_einsum"]
    return row


def resnet_times(repeats: int, batch: int = 32, px: int = 64) -> dict:
    """Forward+backward seconds (min of ``repeats`` after a warm-up) of dense ResNet-18 and resnet18-mtt-10pct.

    The tensorial model runs as created (its layers' optimize="auto") and, as a fresh copy, with every
    layer's ``optimize`` set to "measure" plus set_autotune(True) (each layer measures its paths on its
    first call; that call's time is reported separately as ``autotune_first_call``). A fresh copy because
    zoo_tnn layers cache their own per-shape path on their first call.
    """
    import timm

    import zoo

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, px, px, generator=gen)
    dense = timm.create_model("resnet18", num_classes=1000)
    mtt = zoo.create("resnet18-mtt-10pct")

    def step(model: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            model.zero_grad(set_to_none=True)
            return model(x)
        return run

    out: dict = {"batch": batch, "pixels": px, "repeats": repeats,
                 "params": {"dense": sum(p.numel() for p in dense.parameters()),
                            "mtt": sum(p.numel() for p in mtt.parameters())}}
    clear_plan_cache()
    set_autotune(False)
    out["time_s"] = fwd_bwd_times({"dense": step(dense), "mtt_auto": step(mtt)}, repeats)
    mtt = zoo.create("resnet18-mtt-10pct")
    for module in mtt.modules():
        if getattr(module, "optimize", None) == "auto":
            module.optimize = "measure"
    set_autotune(True)
    clear_plan_cache()
    t0 = time.perf_counter()
    step(mtt)().sum().backward()
    out["autotune_first_call_s"] = time.perf_counter() - t0
    out["time_s"].update({"mtt_autotune": fwd_bwd_times({"mtt_autotune": step(mtt)}, repeats)["mtt_autotune"]})
    set_autotune(None)
    return out


def merge_runs(runs: list[dict], command: str, keep: dict) -> dict:
    """One result from several runs of the same setting (batch, threads, repeats, device): their rows whose
    (channels, pixels), rate and layer are in ``keep``, in the grid's order, and every run's command in front of
    the merging one."""
    keys = ("batch", "threads", "repeats", "device", "torch")
    first = runs[0]["meta"]
    for run in runs[1:]:
        differ = [k for k in keys if run["meta"].get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"cannot merge runs with different {', '.join(differ)}: "
                             f"{[run['meta'].get(k) for k in differ]} vs {[first.get(k) for k in differ]}")
    stages = [tuple(s) for s in keep["stages"]]
    rows = [row for r in runs for row in r["rows"] if (row["channels"], row["pixels"]) in stages
            and row["rate"] in keep["rates"] and row["layer"] in keep["layers"]]
    if not rows:
        raise SystemExit(f"no rows of stages {stages}, rates {keep['rates']} and layers {keep['layers']} in the merged runs")
    rows.sort(key=lambda row: (row["channels"], row["rate"], LAYERS.index(row["layer"])))  # the grid's order
    meta = dict(first)
    meta["command"] = " && ".join([r["meta"]["command"] for r in runs] + [command])
    meta["stages"] = sorted({(row["channels"], row["pixels"]) for row in rows})
    meta["rates"] = sorted({row["rate"] for row in rows})
    return {"meta": meta, "rows": rows}


def markdown(rows: list[dict], meta: dict, resnet: dict | None) -> str:
    out = [
        "# conv_einsum benchmark", "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}, torch {meta['torch']}, {meta['threads']} thread(s).  ",
        f"Setting: batch {meta['batch']}, stages {meta['stages']}, 3x3 conv C->C, padding 1, rates {meta['rates']}, "
        f"minimum of {meta['repeats']} forward+backward runs (methods interleaved) after one warm-up.  ",
        "Peak memory: torch profiler memory timeline (profile_memory=True): max live CPU tensor bytes during "
        "forward+backward above the starting level.  ",
        "Ratios only: `ce/best` = conv_einsum (optimize=\"auto\") time / fastest of (a) naive, (b) dense, "
        "(c) tltorch; `meas/best` = the same for optimize=\"measure\" (goal: <= 1.10, column `ok`); "
        "`choice` = the candidate \"measure\" kept; `dense/ce` = (b) time / conv_einsum time (goal >= 2 at "
        "<= 5 %); `MACs dense/ce` = the same ratio in multiply-adds, fwd+bwd (below 2, no evaluation order "
        "reaches the 2x goal by arithmetic alone); `inter ce/naive` = largest intermediate ratio (goal <= 1); `tune ms` = time of the first "
        "(measuring) call; `kept MB` = the intermediates autograd holds from forward to backward, beyond the "
        "operands, without / with `checkpoint=True`; `ckpt` = conv_einsum with `checkpoint=True` over without "
        "(`-`: rows run before these columns existed).", "",
        "| layer | C | px | rate | rank | ce/best | meas/best | ok | choice | dense/ce | MACs dense/ce | naive/ce "
        "| tltorch/ce | peak ce/dense | peak ce/naive | inter ce/naive | kept MB ce / ckpt | time ckpt/ce | peak ckpt/ce "
        "| search ms | tune ms | cached us |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mb(n: object) -> str:
        return f"{n / 2**20:.3g}" if isinstance(n, int) else "-"

    def ratio(a: object, b: object) -> str:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            return f"{a / b:.2f}"
        return "skip" if isinstance(a, str) or isinstance(b, str) else "-"

    for r in rows:
        t, p, li, sb = r["time_s"], r["peak_bytes"], r["largest_intermediate"], r.get("saved_bytes", {})
        ok = "yes" if r["measure_vs_best_baseline"] <= 1.10 else "**no**"
        out.append(
            f"| {r['layer']} | {r['channels']} | {r['pixels']} | {r['rate']:.0%} | {r['rank']} | "
            f"{r['vs_best_baseline']:.2f} | {r['measure_vs_best_baseline']:.2f} | {ok} | {r['measure_choice']} | "
            f"{r['dense_over_conv_einsum']:.2f} | {ratio(r['macs']['dense'], r['macs']['conv_einsum'])} | "
            f"{ratio(t['naive'], t['conv_einsum'])} | "
            f"{ratio(t.get('tltorch'), t['conv_einsum'])} | {ratio(p['conv_einsum'], p['dense'])} | "
            f"{ratio(p['conv_einsum'], p['naive'])} | {li['conv_einsum'] / li['naive']:.2f} | "
            f"{mb(sb.get('conv_einsum'))} / {mb(sb.get('checkpoint'))} | {ratio(t.get('checkpoint'), t['conv_einsum'])} | "
            f"{ratio(p.get('checkpoint'), p['conv_einsum'])} | "
            f"{r['path_search_s'] * 1e3:.1f} | {r['measure_s'] * 1e3:.0f} | {r['cached_lookup_s'] * 1e6:.1f} |"
        )
    ok_speed = sum(r["vs_best_baseline"] <= 1.10 for r in rows)
    ok_measure = sum(r["measure_vs_best_baseline"] <= 1.10 for r in rows)
    lost_tl = sum(r["measure_vs_best_baseline"] > 1.10 and
                  r["time_s"].get("tltorch") == min(v for k, v in r["time_s"].items()
                                                    if k in BASELINES and not isinstance(v, str)) for r in rows)
    low = [r for r in rows if r["rate"] <= 0.05]
    ok_dense = sum(r["dense_over_conv_einsum"] >= 2 for r in low)
    reachable = [r for r in low if r["macs"]["dense"] >= 2 * r["macs"]["conv_einsum"]]
    ok_reachable = sum(r["dense_over_conv_einsum"] >= 2 for r in reachable)
    ok_inter = sum(r["largest_intermediate"]["conv_einsum"] <= r["largest_intermediate"]["naive"] for r in rows)
    out += ["", "## Goals", "",
            f"- optimize=\"measure\" within 10 % of the best baseline: {ok_measure}/{len(rows)} rows "
            f"({lost_tl} of the misses lose to tltorch, which is not a candidate path)",
            f"- optimize=\"auto\" within 10 % of the best baseline: {ok_speed}/{len(rows)} rows",
            f"- at least 2x faster than rebuild-dense-then-conv at <= 5 % (auto): {ok_dense}/{len(low)} rows; "
            f"{ok_reachable}/{len(reachable)} of the rows where conv_einsum's path needs at most half the "
            f"multiply-adds of (b) ({len(low) - len(reachable)} rows cannot reach 2x by arithmetic)",
            f"- largest intermediate <= naive's (auto): {ok_inter}/{len(rows)} rows"]
    ckpt = [r for r in rows if "saved_bytes" in r]
    if ckpt:
        held = [r["saved_bytes"]["checkpoint"] for r in ckpt]
        plain = [r["saved_bytes"]["conv_einsum"] / 2**20 for r in ckpt]
        slower = [r["time_s"]["checkpoint"] / r["time_s"]["conv_einsum"] for r in ckpt]
        out.append(f"- checkpoint=True ({len(ckpt)} rows): holds {max(held) / 2**20:.3g} MB of intermediates until "
                   f"backward (without it: {min(plain):.3g}-{max(plain):.3g} MB per layer), at "
                   f"{min(slower):.2f}-{max(slower):.2f}x the time (the forward runs twice)")
    if resnet:
        t = resnet["time_s"]
        out += ["", "## ResNet-18, whole network", "",
                f"Command: `{resnet['command']}`; batch {resnet['batch']}, {resnet['pixels']} px, forward+backward, "
                f"minimum of {resnet['repeats']} runs after a warm-up, {meta['threads']} thread(s).", "",
                "| model | params | fwd+bwd s | vs dense |", "|---|---|---|---|",
                f"| dense timm resnet18 | {resnet['params']['dense']:,} | {t['dense']:.3f} | 1.00 |",
                f"| resnet18-mtt-10pct, layers' optimize=\"auto\" (zoo_tnn policy) | {resnet['params']['mtt']:,} | {t['mtt_auto']:.3f} | "
                f"{t['mtt_auto'] / t['dense']:.2f} |",
                f"| resnet18-mtt-10pct, optimize=\"measure\" + set_autotune(True) | {resnet['params']['mtt']:,} | {t['mtt_autotune']:.3f} | "
                f"{t['mtt_autotune'] / t['dense']:.2f} |", "",
                f"The first autotuned step (every distinct layer shape measures its candidates) took "
                f"{resnet['autotune_first_call_s']:.1f} s."]
    out += ["", "## Notes", "",
            "- `skip` for naive: its largest intermediate exceeds `--max-elements` (it would take seconds to "
            "minutes per row); the sequencer's path is still compared with (b) and (c).",
            "- The sequencer minimises multiply-adds (forward + both backward products). On CPU, few-channel "
            "convolutions run at a small fraction of dense-conv throughput, so the MAC-optimal path can lose to "
            "rebuild-dense-then-conv for reshaped layers (rcp/rtt/rtr) and to tltorch for small layers. "
            "optimize=\"measure\" times the FLOP-optimal, left-to-right, dense-first and next-cheapest paths "
            "once per shape and keeps the fastest; it cannot beat tltorch's own evaluation (not one of its "
            "candidates). Rows under ~3 ms are dominated by per-call overhead and by background load on a "
            "shared CPU (the measuring call and the benchmark's timing can see different load).",
            "- `--quick` runs batch 1 with channels / 4; the full grid (`python scripts/bench_conv_einsum.py`, "
            "batch 16, 256..2048 channels) takes about an hour per pair of rates on one CPU thread: run parts "
            "(`--stages`, `--rates`) in parallel, one thread each, and join them with `--merge`."]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1, channels / 4 (for a 2-core CPU)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--channel-divisor", type=int, default=None)
    ap.add_argument("--layers", nargs="*", default=LAYERS)
    ap.add_argument("--rates", nargs="*", type=float, default=RATES)
    ap.add_argument("--stages", nargs="*", type=int, default=[0, 1, 2, 3], help="indices into the 4 ResNet-50 stages")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the ResNet-18 part runs on the CPU)")
    ap.add_argument("--no-memory", dest="memory", action="store_false")
    ap.add_argument("--max-elements", type=float, default=2**27, help="skip naive runs with a larger intermediate")
    ap.add_argument("--resnet", action="store_true", help="also time ResNet-18 dense vs resnet18-mtt-10pct")
    ap.add_argument("--resnet-only", action="store_true",
                    help="only the ResNet-18 part, merged into the existing --out files")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "conv_einsum"))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="no timing: join the rows of earlier runs' JSON files (e.g. stages run in parallel) into --out, "
                         "keeping the rows of the given --stages, --rates and --layers")
    args = ap.parse_args()
    batch = args.batch or (1 if args.quick else 16)
    div = args.channel_divisor or (4 if args.quick else 1)
    args.repeats = args.repeats or (7 if args.quick else 10)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import sys

    command = "python " + " ".join(["scripts/bench_conv_einsum.py", *sys.argv[1:]])
    out = Path(args.out)
    if args.merge:
        div = args.channel_divisor or (4 if args.quick else 1)
        keep = {"stages": [(STAGES[i][0] // div, STAGES[i][1]) for i in args.stages], "rates": args.rates,
                "layers": args.layers}
        data = merge_runs([json.loads(Path(p).read_text()) for p in args.merge], command, keep)
        meta, rows = data["meta"], data["rows"]
    elif args.resnet_only:
        data = json.loads(out.with_suffix(".json").read_text())
        meta, rows = data["meta"], data["rows"]
    else:
        gen = torch.Generator().manual_seed(0)
        stages = [(STAGES[i][0] // div, STAGES[i][1]) for i in args.stages]
        machine = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                   else f"{platform.machine()} CPU ({platform.processor() or 'unknown'})")
        meta = {"command": command, "machine": machine, "device": args.device, "torch": torch.__version__,
                "threads": args.threads, "batch": batch, "stages": stages, "rates": args.rates,
                "repeats": args.repeats}
        rows = []
        data = {"meta": meta, "rows": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        for c, px in stages:
            for rate in args.rates:
                for name in args.layers:
                    row = run_row(make_layer(name, c, batch, px, rate), c, rate, args, gen)
                    rows.append(row)
                    write_text_atomic(out.with_suffix(".json"), json.dumps(data, indent=1))  # partial results survive a kill
                    t = row["time_s"]
                    print(f"{name:8s} C={c:5d} px={px:3d} rate={rate:4.0%} rank={row['rank']:4d} "
                          f"ce/best={row['vs_best_baseline']:.2f} meas/best={row['measure_vs_best_baseline']:.2f} "
                          f"({row['measure_choice']}) "
                          + " ".join(f"{k}={v * 1e3:.1f}ms" if not isinstance(v, str) else f"{k}=skip"
                                     for k, v in t.items()), flush=True)
    if args.resnet or args.resnet_only:
        data["resnet"] = {"command": command, **resnet_times(min(args.repeats, 3))}
        print(json.dumps(data["resnet"], indent=1), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".json"), json.dumps(data, indent=1))
    md = markdown(rows, meta, data.get("resnet"))
    write_text_atomic(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
