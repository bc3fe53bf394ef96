#!/usr/bin/env bash
# Chapter 2/5/7's CIFAR-10 trainings on a borrowed GPU, in one budgeted run that continues the committed CPU runs.
#
#   OUT=results ZOO_SHARED_DATA=/tmp/zoo-data bash scripts/device_train_cifar10.sh [SECONDS] [MODEL ...]
#
# Each model (default: the resnet32 teacher, its Seq-KD students, the Layer-Decomp / E2E-KD comparisons of Tables
# 2.3 / 2.5, Seq-KD on the official code's schedule, then SC-Fac and BQN) runs `scripts/train.py MODEL --output
# checkpoints --resume` (resumes checkpoints/MODEL when it exists) with a slice of the budget; when the slice runs
# out it gets SIGINT, which writes its checkpoint, so the next session (GPU or CPU) continues where this one stopped.
# checkpoints/ and benchmarks/trained/ come back as $OUT/cifar10_runs.tgz: unpack it over the checkout and commit.
#
# The data: the device tool carries at most 64 MiB of working tree, and the training set is five .npz parts of
# 28 MB. Stage them first, one call each on the same warm machine (it keeps /tmp between calls that follow each
# other within its idle time): copy one part into an ignored folder (e.g. .stage/, listed in .git/info/exclude),
# carry it, and run `mkdir -p /tmp/zoo-data/cifar10_train /tmp/zoo-data/cifar10_test && cp .stage/*train*.npz
# /tmp/zoo-data/cifar10_train/ ; cp .stage/*test*.npz /tmp/zoo-data/cifar10_test/ 2>/dev/null; ls -l /tmp/zoo-data/*`.
# Then run this script with ZOO_SHARED_DATA=/tmp/zoo-data.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-results}
BUDGET=${1:-540}
shift || true
MODELS=("$@")
((${#MODELS[@]})) || MODELS=(resnet32 resnet32-mcp-10pct resnet32-mtt-10pct resnet32-cp-10pct resnet32-tt-10pct
                             resnet32-tk-10pct resnet32-mtr-10pct resnet32-mcp-5pct resnet32-mtt-5pct
                             comparisons/resnet32-{cp,tt}-10pct-{layer-decomp,e2e-kd}
                             comparisons/resnet32-{cp,tt,mcp}-10pct-seq-kd-stages
                             sc-fac-wrn10-1-cifar10 bqn-cnn-cifar10)
START=$SECONDS
LOGS=$(mktemp -d)
SUMMARY="$LOGS/summary.txt"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}

$PY -c "import zoo_tnn" 2>/dev/null || {
    editable=(-e .)
    for plugin in plugins/zoo-*/; do editable+=(-e "$plugin"); done
    $PY -m pip install -q --no-index --no-deps --no-build-isolation "${editable[@]}"
}
for part in cifar10_train cifar10_test; do
    [[ -d "${ZOO_SHARED_DATA:?set ZOO_SHARED_DATA}/$part" ]] || { echo "missing $ZOO_SHARED_DATA/$part"; exit 2; }
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$LOGS/gpu.txt"

# The teacher must finish before its students start: a student's recipe loads the teacher's published weights,
# so the teacher's slice is the rest of the budget and students run only once it is recorded.
for model in "${MODELS[@]}"; do
    left=$((BUDGET - (SECONDS - START) - 30))
    if ((left < 30)); then echo "$model: not run (budget spent)" | tee -a "$SUMMARY"; continue; fi
    publish=()
    [[ $model != *.yaml && $model != */* ]] && publish=(--publish)  # a finished run of a registry model (not a variant) records its weights
    echo "== $(date +%T) $model (limit ${left}s)"
    t0=$SECONDS
    log="$LOGS/$(basename "$model" .yaml).log"
    timeout --signal=INT --kill-after=20 "$left" \
        $PY scripts/train.py "$model" --output checkpoints --resume "${publish[@]}" >"$log" 2>&1
    rc=$?
    tail -n 3 "$log"
    echo "$model: rc=$rc in $((SECONDS - t0))s" | tee -a "$SUMMARY"
    [[ $model == resnet32 && $rc -ne 0 ]] && { echo "teacher unfinished: students not started" | tee -a "$SUMMARY"; break; }
done

mkdir -p "$OUT"
cp -r "$LOGS" logs-device && tar -czf "$OUT/cifar10_runs.tgz" checkpoints benchmarks/trained logs-device \
    plugins/zoo-tnn/src/zoo_tnn/registry.yaml plugins/zoo-tnn/src/zoo_tnn/weights
rm -rf logs-device
echo "== summary ($((SECONDS - START))s)"
cat "$SUMMARY"
