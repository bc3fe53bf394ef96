#!/usr/bin/env bash
# Create .venv (if missing) and install the core with its test extras plus every in-repo family plugin.
# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
plugins=()
for p in plugins/*/; do
  [ -f "$p/pyproject.toml" ] && plugins+=(-e "$p")
done
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]" "${plugins[@]}"
echo "installed: core + $(( ${#plugins[@]} / 2 )) plugin(s) into .venv"
