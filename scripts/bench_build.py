"""Build time of every registry model against the allocation floor and timm's dense backbone (issue 17, item 1).

Goal: ``zoo.create(name)`` (random init, no weights) costs at most 1 s of CPU more than allocating the model's
parameters and buffers (the floor: ``torch.empty`` of every parameter and buffer shape of the built model).

Each model is measured in a fresh interpreter (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``), timed by that
process's CPU time (``time.process_time``: robust to other processes on a shared machine):

* ``import``: ``import zoo`` and the family's plugin module, on top of ``import torch``;
* ``first create``: the first ``zoo.create(name)`` in the process (registry load, lazy imports such as timm's for
  timm-backed models, and the build);
* ``build``: ``zoo.create(name)`` again (minimum over ``--repeats``): the build itself, the number the goal is about;
* ``floor``: ``torch.empty`` of the same shapes and dtypes (minimum over ``--repeats``); ``zeros``: ``torch.zeros`` of
  them (every page written once: what any initialisation must at least pay), for reference;
* ``orgqr``: for SC-Fac models, the CPU time spent inside ``torch.linalg.householder_product`` during one build: the
  Haar sampling of the orthogonal factors (one Householder product per matrix, no factorisation), the floor of an
  exact Haar initialisation;
* ``dense``: the dense backbone where one exists: ``timm.create_model(backbone)`` for timm backbones (``timm import``:
  ``import timm`` in that process), the plugin's own dense network for the CIFAR / MNIST backbones.

Writes benchmarks/build.{json,md} (``--out`` changes the stem). ``--quick``: one repeat.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks"
GOAL_S = 1.0
PLUGIN_MODULES = {"tnn": "zoo_tnn", "sc-fac": "zoo_scfac", "arma": "zoo_arma", "convttlstm": "zoo_convttlstm",
                  "bqn": "zoo_bqn"}


def _cpu() -> float:
    return time.process_time()


def child(name: str, repeats: int) -> Dict[str, Any]:
    """Measure one model in this (fresh) process."""
    import gc

    import torch

    torch.set_num_threads(1)
    t = _cpu()
    import importlib

    import zoo

    entry = zoo.model_info(name)
    family = entry.family
    if family in PLUGIN_MODULES:
        importlib.import_module(PLUGIN_MODULES[family])
    import_s = _cpu() - t

    t = _cpu()
    model = zoo.create(name)
    first_s = _cpu() - t
    del model
    gc.collect()

    orgqr = {"s": 0.0, "calls": 0, "matrices": 0}
    original = torch.linalg.householder_product

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = _cpu()
        out = original(*args, **kwargs)
        orgqr["s"] += _cpu() - start
        orgqr["calls"] += 1
        orgqr["matrices"] += out[..., 0, 0].numel()
        return out

    builds: List[float] = []
    model = None
    for i in range(repeats):
        model = None
        gc.collect()
        if i == 0 and family == "sc-fac":
            torch.linalg.householder_product = timed
        t = _cpu()
        model = zoo.create(name)
        builds.append(_cpu() - t)
        torch.linalg.householder_product = original
    tensors = list(model.parameters()) + list(model.buffers())
    shapes = [(tuple(p.shape), p.dtype) for p in tensors]
    numel = sum(p.numel() for p in tensors)
    params = sum(p.numel() for p in model.parameters())
    del model, tensors
    gc.collect()

    def alloc(fn: Any) -> float:
        best = float("inf")
        for _ in range(repeats):
            t = _cpu()
            held = [fn(s, dtype=d) for s, d in shapes]
            best = min(best, _cpu() - t)
            del held
            gc.collect()
        return best

    floor_s = alloc(torch.empty)
    zeros_s = alloc(torch.zeros)

    dense: Dict[str, Any] = {}
    backbone = (entry.args or {}).get("backbone") if family == "tnn" else None
    if backbone:
        from zoo_tnn.backbones import CIFAR_BACKBONES

        if backbone in CIFAR_BACKBONES:
            times = []
            for _ in range(repeats):
                t = _cpu()
                CIFAR_BACKBONES[backbone]()
                times.append(_cpu() - t)
            dense = {"backbone": backbone, "source": "plugin", "s": min(times)}
        else:
            already = "timm" in sys.modules
            t = _cpu()
            import timm

            timm_import_s = 0.0 if already else _cpu() - t
            times = []
            for _ in range(repeats):
                t = _cpu()
                timm.create_model(backbone, pretrained=False)
                times.append(_cpu() - t)
            dense = {"backbone": backbone, "source": "timm", "s": min(times), "timm_import_s": timm_import_s,
                     "timm_imported_by_create": already}
    return {"name": name, "family": family, "params": params, "numel": numel, "import_s": import_s,
            "first_create_s": first_s, "build_s": min(builds), "builds_s": builds, "floor_s": floor_s,
            "zeros_s": zeros_s, "orgqr": orgqr if family == "sc-fac" else None, "dense": dense or None}


def measure(name: str, repeats: int, timeout: float) -> Dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        done = subprocess.run([sys.executable, __file__, "--child", name, "--repeats", str(repeats)], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"name": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def verdict(row: Dict[str, Any]) -> Dict[str, Any]:
    """``met`` and, for a miss, the measured reason."""
    if "error" in row:
        return {"met": False, "reason": f"error: {row['error']}"}
    over = row["build_s"] - row["floor_s"]
    if over <= GOAL_S:
        return {"met": True, "reason": ""}
    parts = []
    orgqr = row.get("orgqr") or {}
    if orgqr.get("s"):
        parts.append(f"Haar sampling of {orgqr['matrices']} orthogonal matrices (one Householder product each, "
                     f"float64) takes {orgqr['s']:.2f} s")
    parts.append(f"writing its {row['numel'] / 1e6:.0f} M parameter and buffer values once takes {row['zeros_s']:.2f} s "
                 f"(torch.zeros of the same shapes)")
    rest = over - orgqr.get("s", 0.0) - row["zeros_s"]
    parts.append(f"the rest {rest:.2f} s")
    return {"met": False, "reason": "; ".join(parts)}


def _fmt(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.3f}"


def markdown(rows: List[Dict[str, Any]], command: str, meta: Dict[str, Any]) -> str:
    met = [r for r in rows if r["verdict"]["met"]]
    lines = ["# Build time: `zoo.create(name)` against the allocation floor", "",
             f"`{command}` (repository root): CPU time (`time.process_time`) of a fresh interpreter per model, 1 torch thread; "
             f"{meta['machine']}, torch {meta['torch']}, load average {meta['load']}. Build and floor: minimum over "
             f"{meta['repeats']} repeat(s).", "",
             f"**Goal: build − floor ≤ {GOAL_S:g} s** (floor: `torch.empty` of every parameter and buffer shape of "
             f"the built model). Met by {len(met)} of {len(rows)} models.", ""]
    misses = [r for r in rows if not r["verdict"]["met"]]
    if misses:
        lines += ["Misses:", ""]
        lines += [f"- `{r['name']}`: build − floor = "
                  f"{r.get('build_s', float('nan')) - r.get('floor_s', 0.0):.2f} s: {r['verdict']['reason']}."
                  for r in misses]
        lines.append("")
    lines += ["| model | family | params (M) | import (s) | first create (s) | build (s) | floor (s) | zeros (s) | "
              "build − floor (s) | orgqr (s) | dense backbone | dense (s) | goal |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['name']}` | | | | | | | | | | | | missed: {r['error']} |")
            continue
        dense = r.get("dense") or {}
        dense_name = f"{dense['backbone']} ({dense['source']})" if dense else "—"
        orgqr = (r.get("orgqr") or {}).get("s")
        lines.append(
            f"| `{r['name']}` | {r['family']} | {r['params'] / 1e6:.3f} | {_fmt(r['import_s'])} | "
            f"{_fmt(r['first_create_s'])} | {_fmt(r['build_s'])} | {_fmt(r['floor_s'])} | {_fmt(r['zeros_s'])} | "
            f"{r['build_s'] - r['floor_s']:.3f} | {_fmt(orgqr)} | {dense_name} | {_fmt(dense.get('s'))} | "
            f"{'met' if r['verdict']['met'] else 'missed'} |")
    timm_imports = [r["dense"]["timm_import_s"] for r in rows if (r.get("dense") or {}).get("timm_import_s")]
    lines += ["", "`first create` includes the registry load and lazy imports: for timm-backed models `import timm` "
              "(timm imports torchvision, which imports torch._dynamo)"
              + (f"; `import timm` alone measured {min(timm_imports):.2f}–{max(timm_imports):.2f} s where the build "
                 "had not imported it" if timm_imports else "") + ". `orgqr`: the Householder products that sample "
              "SC-Fac's Haar factors, part of `build`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="fnmatch pattern over registry names (default: all)")
    parser.add_argument("--repeats", type=int, default=2, help="builds (after the first) and floor allocations")
    parser.add_argument("--quick", action="store_true", help="one repeat")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per model")
    parser.add_argument("--out", default="build", help="stem of benchmarks/STEM.{json,md}")
    parser.add_argument("--update", action="store_true",
                        help="re-measure the --models rows of an existing benchmarks/STEM.json, keep the others")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 1 if args.quick else max(1, args.repeats)
    if args.child:
        print(json.dumps(child(args.child, repeats)))
        return

    import torch

    import zoo

    names = [n for n in zoo.list_models() if fnmatch.fnmatchcase(n, args.models)]
    command = "python scripts/bench_build.py" + "".join(
        f" {flag}" for flag, on in ((f"--models '{args.models}'", args.models != "*"), ("--quick", args.quick),
                                    (f"--repeats {args.repeats}", not args.quick and args.repeats != 2),
                                    ("--update", args.update)) if on)
    rows = []
    for name in names:
        row = measure(name, repeats, args.timeout)
        row["verdict"] = verdict(row)
        rows.append(row)
        if "error" in row:
            print(f"{name:40s} ERROR {row['error']}", flush=True)
        else:
            print(f"{name:40s} build {row['build_s']:7.3f}  floor {row['floor_s']:6.3f}  first {row['first_create_s']:6.3f}"
                  f"  {'met' if row['verdict']['met'] else 'MISSED'}", flush=True)
    meta = {"machine": f"{platform.machine()} CPU ({os.cpu_count()} cores)", "torch": torch.__version__,
            "load": [round(x, 2) for x in os.getloadavg()], "repeats": repeats, "goal_s": GOAL_S}
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{args.out}.json"
    if args.update and path.exists():  # keep the earlier rows (and their run's load) for the models not re-measured
        old = json.loads(path.read_text())
        fresh = {r["name"]: r for r in rows}
        rows = [fresh.pop(r["name"], r) for r in old["models"]] + list(fresh.values())
        command = f"{old['command']}; then {command}"
        meta["load"] = old["load"]
    path.write_text(json.dumps({"command": command, **meta, "models": rows}, indent=2) + "\n")
    md = markdown(rows, command, meta)
    (OUT / f"{args.out}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
