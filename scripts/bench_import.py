"""Import cost of ``zoo`` on top of ``import torch`` (goal: <= 0.3 s), and what ``import zoo`` pulls in.

Runs fresh interpreters: ``-X importtime -c "import torch; import zoo"`` and reads the cumulative time of the
``zoo`` line; also times ``import torch`` alone vs ``import torch, zoo`` (best of N runs, robust to a busy machine) and lists the heavy
modules (torch, timm, plugins) that ``import zoo`` alone loads. Writes benchmarks/import_time.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "benchmarks"


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def importtime_of_zoo() -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch; import zoo"],
                          capture_output=True, text=True, check=True)
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "zoo":
            return int(parts[1]) / 1e6  # cumulative microseconds -> seconds
    raise RuntimeError("zoo not found in -X importtime output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch_only = [wall("import torch") for _ in range(args.runs)]
    both = [wall("import torch, zoo") for _ in range(args.runs)]
    cumulative = statistics.median(importtime_of_zoo() for _ in range(args.runs))
    heavy = subprocess.run([sys.executable, "-c", "import sys, json, zoo; print(json.dumps(sorted(m for m in sys.modules if "
                            "m.split('.')[0] in ('torch', 'timm', 'numpy', 'zoo_tnn', 'zoo_bqn', 'zoo_arma', "
                            "'zoo_scfac', 'zoo_convttlstm'))))"], capture_output=True, text=True, check=True).stdout
    result = {"runs": args.runs, "import_torch_s": min(torch_only), "import_torch_and_zoo_s": min(both),
              "zoo_on_top_of_torch_s": min(both) - min(torch_only),
              "zoo_cumulative_importtime_s": cumulative, "goal_s": 0.3,
              "heavy_modules_loaded_by_import_zoo": json.loads(heavy)}
    OUT.mkdir(exist_ok=True)
    (OUT / "import_time.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# import zoo", "", f"`python scripts/bench_import.py --runs {args.runs}` (wall times: best of fresh "
          "interpreters; -X importtime: median).", "",
          "| measure | seconds |", "|---|---|",
          f"| import torch | {result['import_torch_s']:.3f} |",
          f"| import torch, zoo | {result['import_torch_and_zoo_s']:.3f} |",
          f"| zoo on top of torch (difference) | {result['zoo_on_top_of_torch_s']:.3f} |",
          f"| zoo's cumulative -X importtime | {result['zoo_cumulative_importtime_s']:.4f} |", "",
          f"Goal: ≤ {result['goal_s']} s. Heavy modules loaded by `import zoo` alone: "
          f"{result['heavy_modules_loaded_by_import_zoo'] or 'none'}.", ""]
    (OUT / "import_time.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
