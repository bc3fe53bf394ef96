"""Is Seq-KD's gap to E2E-KD on LeNet-5 (benchmarks/tnn_compression.md) the method or the code? A budget study.

The demo gives Seq-KD 3 epochs per block (3 blocks) and E2E-KD 9 epochs: the same number of optimiser steps, but
each Seq-KD layer is updated a third as often as under E2E-KD. This study reruns one row of the demo (same teacher,
data, Layer-Decomp initialisation, Adam 1e-3, batch 64) with Seq-KD at 3, 9 and 27 epochs per block and E2E-KD at
9 and 27 epochs, and records held-out top-1 and each block's final matching loss.
Writes benchmarks/tnn_seq_kd_budget.{json,md}.

    python scripts/study_seq_kd_budget.py --decomposition mcp --rate 0.05
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_tnn_mnist import BLOCKS, DATA_NOTE, FIT, loaders, train_teacher  # noqa: E402

from zoo.hub.files import write_text_atomic  # noqa: E402
from zoo_tnn.compress import accuracy, compress  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "benchmarks"
RUNS = [("e2e-kd", 9), ("e2e-kd", 27), ("seq-kd", 3), ("seq-kd", 9), ("seq-kd", 27)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decomposition", default="mcp")
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _, held = loaders(64, 2000, args.seed)
    teacher = train_teacher(train, 10, args.seed)
    rows = []
    for method, epochs in RUNS:
        torch.manual_seed(args.seed)
        start = time.process_time()
        _, rep = compress(teacher, args.decomposition, args.rate, train, method=method, epochs=epochs,
                          blocks=BLOCKS, eval_loader=held, fit_kwargs=FIT, progress=False)
        final = {}
        for row in rep.block_losses:  # the last epoch's mean loss of every block
            final[row["block"]] = round(row["mean_loss"], 4)
        steps = sum(row["steps"] for row in rep.block_losses)
        rows.append({"method": method, "epochs": epochs, "optimizer_steps": steps,
                     "updates_per_layer": steps if method == "e2e-kd" else steps // len(BLOCKS),
                     "top1": round(100 * rep.accuracy_after, 2), "layer_decomp_top1": round(100 * rep.accuracy_layer_decomp, 2),
                     "final_block_losses": final, "cpu_s": round(time.process_time() - start, 1)})
        print(rows[-1], flush=True)
    command = (f"python scripts/study_seq_kd_budget.py --decomposition {args.decomposition} --rate {args.rate:g} "
               f"--seed {args.seed} --threads {args.threads}")
    result = {"command": command, "data": DATA_NOTE, "teacher_top1": round(100 * accuracy(teacher, held), 2),
              "decomposition": args.decomposition, "rate": args.rate, "rows": rows}
    write_text_atomic(OUT / "tnn_seq_kd_budget.json", json.dumps(result, indent=2) + "\n")
    lines = ["# Seq-KD vs E2E-KD on LeNet-5 at equal and growing budgets", "", f"`{command}`. {DATA_NOTE}",
             f"Teacher {result['teacher_top1']:.2f} %; student {args.decomposition} at {100 * args.rate:g} %, "
             "Layer-Decomp initialisation, Adam 1e-3, batch 64; Seq-KD blocks: post-ReLU outputs of conv2, fc1, fc2.",
             "", "| method | epochs | optimiser steps | updates per layer | held-out top-1 | final block losses |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        per = f"{r['epochs']} per block" if r["method"] == "seq-kd" else str(r["epochs"])
        losses = ", ".join(f"{k} {v}" for k, v in r["final_block_losses"].items())
        lines.append(f"| {r['method']} | {per} | {r['optimizer_steps']} | {r['updates_per_layer']} | "
                     f"{r['top1']:.2f} % | {losses} |")
    write_text_atomic(OUT / "tnn_seq_kd_budget.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
