#!/usr/bin/env bash
# CUDA checks and GPU benchmarks in one run, for a borrowed GPU machine whose python3 already has PyTorch.
#
#   OUT=results WHEELS=.whl ZOO_SHARED_DATA=/path/to/shared/data bash scripts/device_checks.sh [SECONDS]
#
# WHEELS (optional): a folder of wheels for what that python lacks (pydantic, geotorch, tensorly, ...).
# TESTS overrides the test paths. SECONDS (default 540) is the whole budget; each step gets a slice and is killed when it runs over, so
# later steps still run. Everything lands in $OUT/device_checks.tgz (logs, benchmark JSON/Markdown) and the
# step summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-results}
BUDGET=${1:-540}
START=$SECONDS
RESULTS=$(mktemp -d)
SUMMARY="$RESULTS/summary.txt"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}

step() {  # step NAME SECONDS COMMAND... : run with a time limit, log to $RESULTS/NAME.log, record the outcome
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - START) - 15))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then echo "$name: not run (budget spent)" | tee -a "$SUMMARY"; return; fi
    echo "== $(date +%T) $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
    local rc=$?
    tail -n 4 "$RESULTS/$name.log"
    echo "$name: rc=$rc in $((SECONDS - t0))s" | tee -a "$SUMMARY"
}

if [[ -n "${WHEELS:-}" && -d "$WHEELS" ]]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/zoo-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/zoo-site${PYTHONPATH:+:$PYTHONPATH}
fi
editable=(-e .)
for plugin in plugins/zoo-*/; do editable+=(-e "$plugin"); done
$PY -c "import zoo_tnn, zoo_bqn" 2>/dev/null ||  # already installed (e.g. a dry run on the dev machine)
    step install 120 $PY -m pip install --no-index --no-deps --no-build-isolation "${editable[@]}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu.txt"
$PY -c "import torch, zoo; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), zoo.list_families())" \
    | tee -a "$RESULTS/gpu.txt"

# Correctness on CUDA: every family fp32-vs-fp64 and one bf16 channels-last epoch, conv_einsum layers on the
# GPU; tests/training's fine-tuning runs default to CUDA when it is present.
step tests 150 $PY -m pytest -q -p no:cacheprovider ${TESTS:-tests/devices tests/training tests/conv_einsum}
# DDP through torchrun on NCCL (one GPU: one rank), bf16 autocast and channels-last by default on CUDA.
$PY scripts/make_image_folder.py /tmp/zoo-folder --classes cat dog ship --per-class 32 --val 8 >/dev/null
step ddp_nccl 90 $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m zoo train resnet18-mtt-10pct \
    --data /tmp/zoo-folder/train --val-data /tmp/zoo-folder/val --num-classes 3 --epochs 2 --batch-size 16 \
    --input-size 64 --no-pretrained --output /tmp/zoo-ddp --json
# GPU benchmarks (each writes JSON + Markdown).
step bench_scfac 150 $PY scripts/bench_scfac.py --device cuda --widths 1 3 6 10 --out "$RESULTS/scfac_cuda"
step bench_arma 120 $PY scripts/bench_arma.py --device cuda --out "$RESULTS/arma_cuda"
step bench_conv_einsum 150 $PY scripts/bench_conv_einsum.py --device cuda --repeats 5 \
    --out "$RESULTS/conv_einsum_cuda"
step bench_bqn 90 $PY scripts/bench_bqn.py --device cuda --out "$RESULTS/bqn_cuda"

mkdir -p "$OUT"
tar -czf "$OUT/device_checks.tgz" -C "$RESULTS" .
echo "== summary ($((SECONDS - START))s)"
cat "$SUMMARY"
grep -hE "passed|failed|error" "$RESULTS/tests.log" | tail -n 3
