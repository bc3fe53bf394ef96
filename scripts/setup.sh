#!/usr/bin/env bash
# Create .venv (if missing) and install the core with its test extras plus every in-repo family plugin.
# The packages ask only for the lower bounds their code needs (pyproject.toml); this set-up, like CI, installs the
# exact versions of constraints.txt (torch 2.14.1 / torchvision 0.29.1), so a user's own environment keeps its torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
plugins=()
for p in plugins/*/; do
  [ -f "$p/pyproject.toml" ] && plugins+=(-e "$p")
done
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]" "${plugins[@]}"
echo "installed: core + $(( ${#plugins[@]} / 2 )) plugin(s) into .venv"
# The scripts read data sets by name below the zoo's data folder ($ZOO_DATA, else ~/.cache/zoo/data): point the
# latter at the checkout's ../shared/data when there is one and nothing is there yet.
cache=${ZOO_CACHE:-$HOME/.cache/zoo}
if [ -d ../shared/data ] && [ ! -e "$cache/data" ]; then
  mkdir -p "$cache" && ln -s "$(cd ../shared/data && pwd)" "$cache/data"
  echo "linked $cache/data -> ../shared/data"
fi
