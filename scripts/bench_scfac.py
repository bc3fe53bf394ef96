"""Benchmark SC-Fac against Cayley (FFT) and RKO orthogonal convolutions on Lipschitz WideResNet22 (Fig. 7.5).

Per width factor ``w`` (channels 16w/32w/64w, kernel 5, average-pool down-sampling):

* network level (WRN22-w, every stride-1 convolution swapped for the method's layer; ``plain`` = nn.Conv2d
  with circular padding): training-step time (hinge loss, backward, Adam step), peak extra resident memory of
  the step (each case in a fresh subprocess, ``ru_maxrss`` after the step minus RSS before it), and eval
  inference time;
* layer level (the widest layer, 64w -> 64w on 8 x 8): orthogonality error ``max |sigma - 1|`` over the exact
  spectrum of the circular operator (FFT, Sedghi et al.) in float32 and float64, and eval inference time vs a
  plain ``nn.Conv2d`` of the same shape (SC-Fac's kernel is cached in eval mode).

Writes benchmarks/scfac.json and benchmarks/scfac.md (or ``--out NAME``).

    python scripts/bench_scfac.py --quick     # CPU: network level at widths 1, 3; layer level at 1, 3, 6, 10
    python scripts/bench_scfac.py             # widths 1, 3, 6, 10 everywhere (GPU recommended)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("scfac", "cayley", "rko")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_layer(method: str, c_in: int, c_out: int, k: int) -> nn.Module:
    """A stride-1 circular convolution of the given method."""
    from zoo_scfac.baselines import CayleyConv2d, RKOConv2d
    from zoo_scfac.layers import OrthoConv2d

    if method == "scfac":
        return OrthoConv2d(c_in, c_out, k)
    if method == "cayley":
        return CayleyConv2d(c_in, c_out, k)
    if method == "rko":
        return RKOConv2d(c_in, c_out, k)
    if method == "plain":
        return nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="circular")
    raise ValueError(f"unknown method {method!r}")


def make_network(method: str, width: int) -> nn.Module:
    """WRN22-``width`` (kernel 5, pool) with every stride-1 SC-Fac convolution replaced by ``method``'s layer."""
    from zoo_scfac.layers import OrthoConv2d
    from zoo_scfac.networks import LipschitzWideResNet

    net = LipschitzWideResNet(depth=22, widen_factor=width, kernel_size=5)
    if method == "scfac":
        return net
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, OrthoConv2d):
                setattr(module, name, make_layer(method, child.in_channels, child.out_channels, child.kernel_size))
    return net


def _time(fn: Callable[[], object], repeat: int) -> List[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def case_network(method: str, width: int, batch: int, steps: int) -> Dict[str, float]:
    """Training-step time / peak memory / eval time of WRN22-``width`` (run in a fresh process)."""
    from zoo_scfac.robust import multiclass_hinge_loss

    torch.manual_seed(0)
    net = make_network(method, width)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = multiclass_hinge_loss(net(x), y, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    rss0 = _rss_mb()
    step()  # warm-up (allocates Adam state)
    train = _time(step, steps)
    peak = _peak_mb() - rss0
    net.eval()
    with torch.no_grad():
        net(x)
        infer = _time(lambda: net(x), steps)
    return {"train_step_s": min(train), "train_step_s_median": statistics.median(train),
            "peak_extra_mb": peak, "eval_s": min(infer)}


def orthogonality_errors(method: str, c: int, k: int, n: int) -> Dict[str, float]:
    """``max |sigma - 1|`` of a ``c -> c`` layer's circular operator on ``n x n`` in float32 and float64."""
    from zoo_scfac.spectral import circular_singular_values

    out = {}
    for dtype in (torch.float32, torch.float64):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            torch.manual_seed(0)
            layer = make_layer(method, c, c, k)
            with torch.no_grad():  # evaluate away from the initialisation
                for p in layer.parameters():
                    p.add_(0.1 * torch.randn_like(p))
                if method == "cayley":
                    q = layer.frequency_matrices(n)
                    sv = torch.linalg.svdvals(q).reshape(-1)
                elif method == "rko":
                    sv = circular_singular_values(layer.kernel(), n)
                else:
                    sv = circular_singular_values(layer.build_kernel(), n)
        finally:
            torch.set_default_dtype(old)
        out["float32" if dtype == torch.float32 else "float64"] = float((sv.double() - 1).abs().max())
    return out


def case_layer(method: str, width: int, batch: int, repeat: int) -> Dict[str, float]:
    """Widest WRN22 layer (64w -> 64w, kernel 5, 8 x 8): train step, eval time vs nn.Conv2d, orthogonality."""
    c, k, n = 64 * width, 5, 8
    torch.manual_seed(0)
    layer, plain = make_layer(method, c, c, k), make_layer("plain", c, c, k)
    x = torch.rand(batch, c, n, n)

    def step() -> None:
        layer.zero_grad()
        layer(x).square().mean().backward()

    step()
    train = _time(step, max(2, repeat // 4))
    layer.eval()
    plain.eval()
    ts, tp = [], []
    with torch.no_grad():
        layer(x), plain(x)
        for _ in range(repeat):  # interleaved, min over repeats: robust to other processes on the machine
            ts += _time(lambda: layer(x), 1)
            tp += _time(lambda: plain(x), 1)
    res = {"layer_train_step_s": min(train), "layer_eval_s": min(ts), "plain_eval_s": min(tp),
           "eval_vs_plain": min(ts) / min(tp)}
    res.update({f"orth_err_{k_}": v for k_, v in orthogonality_errors(method, c, k, n).items()})
    return res


def run_case(kind: str, method: str, width: int, args: argparse.Namespace) -> Dict[str, float]:
    """Run one case in a fresh interpreter (clean peak-RSS accounting); returns its JSON result."""
    cmd = [sys.executable, __file__, "--case", f"{kind},{method},{width}", "--batch", str(args.batch),
           "--steps", str(args.steps), "--repeat", str(args.repeat), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="network level at widths 1, 3 only (CPU)")
    p.add_argument("--widths", type=int, nargs="*", default=None)
    p.add_argument("--batch", type=int, default=None, help="default 8 (--quick) or 64")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 2 quick / 5)")
    p.add_argument("--repeat", type=int, default=20, help="eval timing repeats (layer level)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="scfac")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.batch = args.batch or (8 if args.quick else 64)
    args.steps = args.steps or (2 if args.quick else 5)
    torch.set_num_threads(args.threads)
    if args.case:
        kind, method, width = args.case.split(",")
        if kind == "net":
            res = case_network(method, int(width), args.batch, args.steps)
        else:
            res = case_layer(method, int(width), args.batch, args.repeat)
        print(json.dumps(res))
        return
    layer_widths = args.widths or [1, 3, 6, 10]
    net_widths = args.widths or ([1, 3] if args.quick else [1, 3, 6, 10])
    results: Dict[str, Dict] = {"layer": {}, "network": {}}
    for w in layer_widths:
        for m in METHODS:
            r = run_case("layer", m, w, args)
            results["layer"][f"{m}@{w}"] = r
            print(f"layer  width {w:2d} {m:7s} {r}", flush=True)
    for w in net_widths:
        for m in ("plain",) + METHODS:
            r = run_case("net", m, w, args)
            results["network"][f"{m}@{w}"] = r
            print(f"wrn22  width {w:2d} {m:7s} {r}", flush=True)
    meta = {"command": "python scripts/bench_scfac.py " + " ".join(a for a in sys.argv[1:]),
            "batch": args.batch, "timed_steps": args.steps, "eval_repeats": args.repeat, "threads": args.threads,
            "device": "cpu", "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "layer_widths": layer_widths, "network_widths": net_widths,
            "note": "min over repeats; the CPU was shared with other jobs, so absolute times are noisy"}
    out = {"meta": meta, **results}
    bench = ROOT / "benchmarks"
    (bench / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# SC-Fac vs Cayley vs RKO (WRN22, kernel 5)\n",
             f"`{meta['command']}`: CPU, {args.threads} thread(s), batch {args.batch}, torch {torch.__version__}. "
             "Times are the minimum over repeats on a shared machine. Ratios are against SC-Fac in the same run.\n",
             "## Widest layer (64w -> 64w, 8 x 8): orthogonality and eval inference\n",
             "| width | method | max abs(sigma-1) f32 | max abs(sigma-1) f64 | train step (s) | eval (ms) | eval / nn.Conv2d |",
             "|---|---|---|---|---|---|---|"]
    for w in layer_widths:
        for m in METHODS:
            r = results["layer"][f"{m}@{w}"]
            if "error" in r:
                lines.append(f"| {w} | {m} | error: {r['error']} | | | | |")
                continue
            lines.append(f"| {w} | {m} | {r['orth_err_float32']:.2e} | {r['orth_err_float64']:.2e} | "
                         f"{r['layer_train_step_s']:.3f} | {1e3 * r['layer_eval_s']:.2f} | {r['eval_vs_plain']:.3f} |")
    lines += ["", "## WRN22-w network: training step, peak memory, eval\n",
              "| width | method | train step (s) | x SC-Fac | peak extra memory (MB) | x SC-Fac | eval (s) |",
              "|---|---|---|---|---|---|---|"]
    for w in net_widths:
        base = results["network"][f"scfac@{w}"]
        for m in ("plain",) + METHODS:
            r = results["network"][f"{m}@{w}"]
            if "error" in r:
                lines.append(f"| {w} | {m} | error: {r['error']} | | | | |")
                continue
            t_ratio = r["train_step_s"] / base["train_step_s"] if "train_step_s" in base else None
            m_ratio = r["peak_extra_mb"] / base["peak_extra_mb"] if base.get("peak_extra_mb") else None
            lines.append(f"| {w} | {m} | {r['train_step_s']:.2f} | {_fmt(t_ratio, '.2f')} | {r['peak_extra_mb']:.0f} | "
                         f"{_fmt(m_ratio, '.2f')} | {r['eval_s']:.3f} |")
    (bench / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
