"""Benchmark SC-Fac against Cayley (FFT), BCOP and RKO orthogonal convolutions on Lipschitz WideResNet22 (Fig. 7.5).

Per width factor ``w`` (channels 16w/32w/64w, kernel 5, average-pool down-sampling):

* network level (WRN22-w, every stride-1 convolution swapped for the method's layer; ``plain`` = nn.Conv2d
  with circular padding): training-step time (hinge loss, backward, Adam step; wall and process CPU time, the
  methods interleaved step by step in one process), eval inference time (interleaved likewise), and the peak
  extra memory of the first two training steps of the built model (gradients, Adam state, activations, kernel
  construction; CPU: a fresh subprocess per case, peak RSS ``VmHWM`` minus the RSS before; CUDA: in the
  timing process, ``max_memory_allocated`` minus the allocation before);
* layer level (the widest layer, 64w -> 64w on 8 x 8): orthogonality error ``max |sigma - 1|`` over the exact
  spectrum of the circular operator (FFT, Sedghi et al.; singular values from the float64 Gram matrices) of
  the layer built in float32 and in float64, and eval inference time vs a plain ``nn.Conv2d`` of the same
  shape, interleaved (SC-Fac's kernel is cached in eval mode; the ratio is of process CPU times on CPU).

Times are minima over repeats; on CUDA every timed call is bracketed by ``torch.cuda.synchronize``. Writes
``STEM.json`` and ``STEM.md`` for ``--out STEM`` (a bare name lands in benchmarks/), after every case.

    python scripts/bench_scfac.py --quick --widths 1 3 --threads 1   # CPU: batch 8, 2 timed steps
    python scripts/bench_scfac.py --device cuda --widths 1 3 6 10 --out $OUT/scfac_cuda   # batch 64, 3 steps
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("scfac", "cayley", "bcop", "rko")
NET_METHODS = ("plain",) + METHODS


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs``: 5), so imports do not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    """Peak resident memory (MB) since the last :func:`_reset_peak_rss` (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM line in /proc/self/status")


def make_layer(method: str, c_in: int, c_out: int, k: int) -> nn.Module:
    """A stride-1 circular convolution of the given method."""
    from zoo_scfac.baselines import BCOPConv2d, CayleyConv2d, RKOConv2d
    from zoo_scfac.layers import OrthoConv2d

    if method == "scfac":
        return OrthoConv2d(c_in, c_out, k)
    if method == "cayley":
        return CayleyConv2d(c_in, c_out, k)
    if method == "bcop":
        return BCOPConv2d(c_in, c_out, k)
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], repeat: int, device: torch.device, budget_s: float = float("inf")) -> List[float]:
    """Wall times of ``repeat`` calls (synchronised on CUDA); stops early once ``budget_s`` is spent (>= 1 call)."""
    out: List[float] = []
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
        if sum(out) > budget_s:
            break
    return out


def _training(method: str, width: int, batch: int, device: torch.device) -> Tuple[nn.Module, Callable[[], None], Tensor]:
    """WRN22-``width`` of ``method`` on ``device`` with its Adam training step and a fixed input batch."""
    from zoo_scfac.robust import multiclass_hinge_loss

    torch.manual_seed(0)
    net = make_network(method, width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        loss = multiclass_hinge_loss(net(x), y, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return net, step, x


def case_memory(method: str, width: int, batch: int) -> Dict[str, float]:
    """Peak extra resident memory (MB) of two CPU training steps of a built WRN22-``width`` (run in a fresh process)."""
    _, step, _ = _training(method, width, batch, torch.device("cpu"))
    _reset_peak_rss()
    base = _rss_mb()
    step()  # allocates gradients and Adam state
    step()
    return {"peak_extra_mb": _peak_mb() - base}


def case_timing(width: int, batch: int, steps: int, device: torch.device) -> Dict[str, Dict[str, float]]:
    """Training-step and eval times of WRN22-``width`` for every method, interleaved (minimum over ``steps``).

    On CUDA also the peak extra memory of each model's two warm-up steps (CPU: :func:`case_memory`).
    """
    runs: Dict[str, Tuple[nn.Module, Callable[[], None], Tensor]] = {}
    out: Dict[str, Dict[str, float]] = {}
    for m in NET_METHODS:
        try:
            runs[m] = _training(m, width, batch, device)
            if device.type == "cuda":  # the other models sit idle: their memory is in the baseline
                _sync(device)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            runs[m][1]()  # warm-up: two steps (gradients, Adam state)
            runs[m][1]()
            if device.type == "cuda":
                _sync(device)
                out[m] = {"peak_extra_mb": (torch.cuda.max_memory_allocated(device) - base) / 2**20}
        except torch.cuda.OutOfMemoryError:
            runs.pop(m, None)
            out[m] = {"error": "CUDA out of memory"}
            gc.collect()
            torch.cuda.empty_cache()
    wall: Dict[str, List[float]] = {m: [] for m in runs}
    cpu: Dict[str, List[float]] = {m: [] for m in runs}
    evals: Dict[str, List[float]] = {m: [] for m in runs}
    for _ in range(steps):
        for m, (_, step, _) in runs.items():
            t0 = time.process_time()
            wall[m] += _time(step, 1, device)
            cpu[m].append(time.process_time() - t0)
    for net, _, _ in runs.values():
        net.eval()
    with torch.no_grad():
        for net, _, x in runs.values():
            net(x)
        for _ in range(steps):
            for m, (net, _, x) in runs.items():
                evals[m] += _time(lambda: net(x), 1, device)
    for m in runs:
        out.setdefault(m, {}).update(train_step_s=min(wall[m]), train_step_cpu_s=min(cpu[m]), eval_s=min(evals[m]),
                                     timed_steps=len(wall[m]))
    return out


def max_sigma_error(mats: Tensor) -> float:
    """``max |sigma - 1|`` over the singular values of ``(..., m, k)`` matrices, from float64 Gram eigenvalues."""
    m = mats.to(torch.complex128)
    gram = m.mH @ m if m.shape[-2] >= m.shape[-1] else m @ m.mH
    return float((torch.linalg.eigvalsh(gram).clamp(min=0).sqrt() - 1).abs().max())


def orthogonality_errors(method: str, c: int, k: int, n: int, device: torch.device) -> Dict[str, float]:
    """``max |sigma - 1|`` of a ``c -> c`` layer's circular operator on ``n x n``, built in float32 and float64."""
    out = {}
    for dtype in (torch.float32, torch.float64):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            torch.manual_seed(0)
            layer = make_layer(method, c, c, k)
        finally:
            torch.set_default_dtype(old)
        layer.to(device)
        with torch.no_grad():  # evaluate away from the initialisation
            for p in layer.parameters():
                p.add_(0.1 * torch.randn_like(p))
            if method == "cayley":
                mats = layer.frequency_matrices(n)
            else:
                kernel = layer.build_kernel() if method == "scfac" else layer.kernel()
                mats = torch.fft.fft2(kernel.double(), s=(n, n)).permute(2, 3, 0, 1)
        out["float32" if dtype == torch.float32 else "float64"] = max_sigma_error(mats)
    return out


def case_layer(method: str, width: int, batch: int, repeat: int, device: torch.device) -> Dict[str, float]:
    """Widest WRN22 layer (64w -> 64w, kernel 5, 8 x 8): train step, eval time vs nn.Conv2d, orthogonality."""
    c, k, n = 64 * width, 5, 8
    torch.manual_seed(0)
    layer, plain = make_layer(method, c, c, k).to(device), make_layer("plain", c, c, k).to(device)
    x = torch.rand(batch, c, n, n, device=device)

    def step() -> None:
        layer.zero_grad()
        layer(x).square().mean().backward()

    step()
    train = _time(step, max(2, repeat // 4), device, budget_s=10.0)
    layer.eval()
    plain.eval()
    times: Dict[str, List[float]] = {"layer": [], "plain": [], "layer_cpu": [], "plain_cpu": []}
    with torch.no_grad():
        layer(x), plain(x)
        for _ in range(repeat):  # interleaved, min over repeats: robust to other processes on the machine
            for name, module in (("layer", layer), ("plain", plain)):
                t0 = time.process_time()
                times[name] += _time(lambda: module(x), 1, device)
                times[f"{name}_cpu"].append(time.process_time() - t0)
    best = {name: min(v) for name, v in times.items()}
    ratio = best["layer_cpu"] / best["plain_cpu"] if device.type == "cpu" else best["layer"] / best["plain"]
    res = {"layer_train_step_s": min(train), "layer_eval_s": best["layer"], "plain_eval_s": best["plain"],
           "layer_eval_cpu_s": best["layer_cpu"], "plain_eval_cpu_s": best["plain_cpu"], "eval_vs_plain": ratio}
    res.update({f"orth_err_{k_}": v for k_, v in orthogonality_errors(method, c, k, n, device).items()})
    return res


def run_case(kind: str, method: str, width: int, args: argparse.Namespace) -> Dict[str, float]:
    """One layer case, or a CPU memory case: on CPU in a fresh interpreter (clean peak RSS), on CUDA in this process."""
    device = torch.device(args.device)
    if device.type == "cuda":
        try:
            return case_layer(method, width, args.batch, args.repeat, device)
        except torch.cuda.OutOfMemoryError:
            return {"error": "CUDA out of memory"}
        finally:
            gc.collect()
            torch.cuda.empty_cache()
    cmd = [sys.executable, __file__, "--case", f"{kind},{method},{width}", "--batch", str(args.batch),
           "--steps", str(args.steps), "--repeat", str(args.repeat), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _meta(args: argparse.Namespace, layer_widths: List[int], net_widths: List[int]) -> Dict[str, object]:
    device = torch.device(args.device)
    meta: Dict[str, object] = {
        "command": "python scripts/bench_scfac.py " + " ".join(sys.argv[1:]), "device": args.device,
        "batch": args.batch, "timed_steps": args.steps, "eval_repeats": args.repeat, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "layer_widths": layer_widths, "network_widths": net_widths,
        "note": "min over repeats; a shared machine, so absolute times are noisy (see load_average)"}
    if device.type == "cuda":
        meta.update(gpu=torch.cuda.get_device_name(device), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return meta


def write_report(stem: Path, meta: Dict[str, object], results: Dict[str, Dict]) -> None:
    """Write ``stem.json`` and ``stem.md`` from the cases run so far (missing cases are left out)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    where = meta.get("gpu", "CPU") if meta["device"] != "cpu" else "CPU"
    lines = ["# SC-Fac vs Cayley vs BCOP vs RKO (WRN22, kernel 5)\n",
             f"`{meta['command']}`: {where}, {meta['threads']} CPU thread(s), batch {meta['batch']}, torch {meta['torch']}, "
             f"load average {meta['load_average']}. Times are the minimum over repeats. Ratios are against SC-Fac in "
             "the same run.\n",
             "Orthogonality is measured after adding 0.1 N(0, 1) to every parameter (away from the initialisation). "
             "BCOP and RKO orthogonalise their matrices with 20 Bjorck steps (LConvNet's setting), so their error "
             "includes the Bjorck residual of the perturbed (ill-conditioned) matrices; BCOP's block construction "
             "itself is exact (tests/scfac/test_baselines.py), RKO is not orthogonal by design.\n",
             "## Widest layer (64w -> 64w, 8 x 8): orthogonality and eval inference\n",
             "| width | method | max abs(sigma-1) f32 | max abs(sigma-1) f64 | train step (s) | eval (ms) | eval / nn.Conv2d "
             f"({'CPU' if meta['device'] == 'cpu' else 'wall'} time) |",
             "|---|---|---|---|---|---|---|"]
    for key, r in results["layer"].items():
        m, w = key.split("@")
        if "error" in r:
            lines.append(f"| {w} | {m} | error: {r['error']} | | | | |")
            continue
        lines.append(f"| {w} | {m} | {r['orth_err_float32']:.2e} | {r['orth_err_float64']:.2e} | "
                     f"{r['layer_train_step_s']:.3f} | {1e3 * r['layer_eval_s']:.2f} | {r['eval_vs_plain']:.3f} |")
    cpu = meta["device"] == "cpu"
    step_key = "train_step_cpu_s" if cpu else "train_step_s"  # CPU: process time is robust to other jobs
    lines += ["", "## WRN22-w network: training step (interleaved), peak extra memory, eval\n",
              f"| width | method | train step (s) | train step CPU (s) | x SC-Fac ({'CPU' if cpu else 'wall'} s) "
              "| peak extra memory (MB) | x SC-Fac | eval (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for key, r in results["network"].items():
        m, w = key.split("@")
        if "error" in r:
            lines.append(f"| {w} | {m} | error: {r['error']} | | | | | |")
            continue
        base = results["network"].get(f"scfac@{w}", {})
        t_ratio = r[step_key] / base[step_key] if step_key in base else None
        mem = r.get("peak_extra_mb")
        m_ratio = mem / base["peak_extra_mb"] if mem is not None and base.get("peak_extra_mb") else None
        lines.append(f"| {w} | {m} | {r['train_step_s']:.3f} | {r['train_step_cpu_s']:.3f} | {_fmt(t_ratio, '.2f')} | "
                     f"{_fmt(mem, '.0f')} | {_fmt(m_ratio, '.2f')} | {r['eval_s']:.3f} |")
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="network level at widths 1, 3 only, batch 8 (CPU)")
    p.add_argument("--widths", type=int, nargs="*", default=None)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--batch", type=int, default=None, help="default 8 (--quick) or 64 (the dissertation's)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps after one warm-up (default 2 quick / 3)")
    p.add_argument("--repeat", type=int, default=20, help="eval timing repeats (layer level)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on CPU, unchanged on CUDA)")
    p.add_argument("--out", default="scfac", help="output STEM: writes STEM.json, STEM.md (bare name: in benchmarks/)")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.batch = args.batch or (8 if args.quick else 64)
    args.steps = args.steps or (2 if args.quick else 3)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available in this torch build ({torch.__version__})")
    if args.threads is None and device.type == "cpu":
        args.threads = 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.case:
        kind, method, width = args.case.split(",")
        if kind == "mem":
            res = case_memory(method, int(width), args.batch)
        else:
            res = case_layer(method, int(width), args.batch, args.repeat, device)
        print(json.dumps(res))
        return
    layer_widths = args.widths or [1, 3, 6, 10]
    net_widths = args.widths or ([1, 3] if args.quick else [1, 3, 6, 10])
    stem = Path(args.out) if Path(args.out).parent != Path(".") else ROOT / "benchmarks" / args.out
    meta = _meta(args, layer_widths, net_widths)
    print(f"device {args.device}, load average {meta['load_average']}", flush=True)
    results: Dict[str, Dict] = {"layer": {}, "network": {}}  # network cases first: the headline numbers
    for w in net_widths:
        timing = case_timing(w, args.batch, args.steps, torch.device(args.device))
        gc.collect()
        if torch.device(args.device).type == "cuda":
            torch.cuda.empty_cache()
        for m in NET_METHODS:
            r = dict(timing[m])
            if "error" not in r and "peak_extra_mb" not in r:  # CPU: peak RSS needs a fresh process
                mem = run_case("mem", m, w, args)
                r.update(mem if "error" not in mem else {"memory_error": mem["error"]})
            results["network"][f"{m}@{w}"] = r
            print(f"wrn22  width {w:2d} {m:7s} {r}", flush=True)
        meta["load_average"] = [round(v, 2) for v in os.getloadavg()]
        write_report(stem, meta, results)
    for w in layer_widths:
        for m in METHODS:
            results["layer"][f"{m}@{w}"] = r = run_case("layer", m, w, args)
            print(f"layer  width {w:2d} {m:7s} {r}", flush=True)
            write_report(stem, meta, results)
    print(Path(f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
