"""torch.compile vs eager training step of a tensorial ResNet (issue 20, item 7), CPU, one thread.

The model (``resnet32-tt-10pct``, CIFAR 32 px) and its ``torch.compile`` share the parameters; one training step
= zero_grad + forward + cross-entropy + backward + SGD on random data. The first compiled call (tracing, planning
every layer outside the graph, code generation) is reported as ``compile_s`` and not timed with the rest. Timed
steps alternate eager / compiled, so load that drifts during the run hits both; each side's time is the minimum
process CPU time over its timed steps. Graph breaks are counted from ``torch._dynamo.utils.counters`` (0 expected).
inductor is tried first; if it fails (no C++ compiler), aot_eager (traced forward + backward, no generated code).

    OMP_NUM_THREADS=1 python scripts/bench_tnn_compile.py                  # batch 32, 10 timed steps each
    OMP_NUM_THREADS=1 python scripts/bench_tnn_compile.py --backend aot_eager

Writes benchmarks/tnn_compile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet32-tt-10pct")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "tnn_compile"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import zoo
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = zoo.create(args.model, num_classes=10).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))

    def step(fn):
        t = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(fn(x), y)
        loss.backward()
        opt.step()
        return time.process_time() - t

    step(model)  # eager warm-up (plans)
    backend, note = args.backend, ""
    t0 = time.perf_counter()
    try:
        counters.clear()
        compiled = torch.compile(model, backend=backend, dynamic=False)
        step(compiled)
    except Exception as err:  # inductor without a working C++ toolchain
        note = f"{backend} failed ({type(err).__name__}: {str(err).splitlines()[0][:120]}); fell back to aot_eager"
        backend = "aot_eager"
        torch._dynamo.reset()
        counters.clear()
        t0 = time.perf_counter()
        compiled = torch.compile(model, backend=backend, dynamic=False)
        step(compiled)
    compile_s = time.perf_counter() - t0
    step(compiled)
    breaks = sum(counters["graph_break"].values())
    graphs = counters["stats"].get("unique_graphs", 0)
    eager_t, comp_t = [], []
    for _ in range(args.steps):
        eager_t.append(step(model))
        comp_t.append(step(compiled))
    res = {
        "command": "OMP_NUM_THREADS=1 python scripts/bench_tnn_compile.py" + "".join(
            f" {a}" for a in sys.argv[1:]),
        "model": args.model, "batch": args.batch, "px": 32, "threads": torch.get_num_threads(),
        "backend": backend, "note": note, "graph_breaks": breaks, "graphs": graphs,
        "compile_s": round(compile_s, 2), "timed_steps": args.steps,
        "eager_step_s": round(min(eager_t), 4), "compiled_step_s": round(min(comp_t), 4),
        "eager_median_s": round(sorted(eager_t)[len(eager_t) // 2], 4),
        "compiled_median_s": round(sorted(comp_t)[len(comp_t) // 2], 4),
        "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    res["ratio_compiled_over_eager"] = round(res["compiled_step_s"] / res["eager_step_s"], 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        "# torch.compile vs eager: tensorial ResNet training step (CPU, one thread)",
        "",
        f"Command: `{res['command']}`",
        "",
        f"{args.model}, batch {args.batch}, 32 px, torch {torch.__version__}, {res['machine']}; training step = "
        "zero_grad + forward + cross-entropy + backward + SGD; process CPU time, eager and compiled steps alternated, "
        f"minimum (median) over {args.steps} timed steps each; the first compiled call is not timed.",
        "",
        "| backend | graph breaks | graphs | compile (first call) s | eager step s | compiled step s | compiled / eager |",
        "|---|---|---|---|---|---|---|",
        f"| {backend} | {breaks} | {graphs} | {res['compile_s']} | {res['eager_step_s']} ({res['eager_median_s']}) | "
        f"{res['compiled_step_s']} ({res['compiled_median_s']}) | {res['ratio_compiled_over_eager']} |",
        "",
    ]
    if note:
        md += [f"Note: {note}.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
