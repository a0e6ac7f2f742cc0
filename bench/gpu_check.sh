#!/usr/bin/env bash
# Everything to run on a lent GPU, in one call of under 8 minutes, from the repository root:
#   bash bench/gpu_check.sh          (logs under $OUT if set, else /tmp/lutkern-gpu-check/)
# Stages: environment, the Triton tests on CUDA (compiled kernels, not the interpreter), the GPU benchmarks
# (bench/gpu_bench.py: copy bandwidth, the forward kernel on 16x3x2160x3840, forward+backward against
# F.grid_sample, peak memory), the regularizer benchmark, the channel_histogram tests on CUDA and its
# benchmark (Triton kernel against torch.histc per channel), the extra stages (training step, torchrun),
# then the apply_lut and regularizer tests and the apply_lut benchmark as far as the deadline allows.
# Each stage has its own time limit within a global deadline, and a failing stage does not stop the
# others; the summary at the end (and summary.txt) lists each stage's status. Exit code: number of
# failed stages (0 when all passed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRITON_INTERPRET=0             # compiled kernels on CUDA (tests/conftest.py only sets a default)
export TRITON_DEFAULT_FP_FUSION=1     # keep FMA contraction explicit across Triton versions
LOG_DIR="${OUT:-${TMPDIR:-/tmp}/lutkern-gpu-check}"
mkdir -p "$LOG_DIR"
PY="${PYTHON:-python}"
DEADLINE=${GPU_CHECK_DEADLINE:-470}   # seconds for all stages; the whole call must stay under 8 min
FAILED=0
: > "$LOG_DIR/summary.txt"

# stage NAME LIMIT_S CMD...: run CMD with its output in $LOG_DIR/NAME.log, within the global deadline.
stage() {
    local name=$1 limit=$2 rc=0 start=$SECONDS
    shift 2
    local left=$((DEADLINE - SECONDS))
    if ((left < 20)); then
        echo "=== $name: SKIPPED (deadline)" | tee -a "$LOG_DIR/summary.txt"
        FAILED=$((FAILED + 1))
        return 0
    fi
    if ((limit > left)); then limit=$left; fi
    echo "=== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$LOG_DIR/$name.log" 2>&1 || rc=$?
    tail -n 60 "$LOG_DIR/$name.log"
    local status=ok
    if ((rc == 124 || rc == 137)); then
        status="TIMEOUT after ${limit}s"
    elif ((rc != 0)); then
        status="FAILED rc=$rc"
    fi
    if ((rc != 0)); then FAILED=$((FAILED + 1)); fi
    echo "=== $name: $status in $((SECONDS - start))s" | tee -a "$LOG_DIR/summary.txt"
}

stage env 30 bash -c "nvidia-smi; $PY -c 'import sys, torch, triton; print(sys.version); \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0)); \
print(\"triton\", triton.__version__)'"

# Most important first: the Triton tests (most of their time is compiling ~100 kernel variants), then the
# numbers; the rest gets what is left of the deadline.
stage tests_triton 200 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_apply_lut_triton.py
stage gpu_bench 150 "$PY" bench/gpu_bench.py --json "$LOG_DIR/gpu_bench.json"
stage bench_regularizers 60 "$PY" bench/bench_regularizers.py --device cuda --backend triton
# channel_histogram: every Triton test on CUDA tensors (compiled kernels, the GPU's launch on 3 MP planes),
# then the 24 MP photo and the 64x3x256x256 batch against torch.histc per channel and lutkern's torch ops.
stage tests_histogram 120 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_histogram.py -k triton
stage bench_histogram 60 "$PY" bench/bench_histogram.py --device cuda --repeats 10

# ---- extra stages -------------------------------------------------------------------------------------
# Later rows (regularizers, a training step, ...): either add a @section to bench/gpu_bench.py, or drop an
# executable bench/gpu_extra_<name>.sh here; each runs as its own stage (60 s at most, within the deadline).
for extra in bench/gpu_extra_*.sh; do
    [[ -e "$extra" ]] || continue
    name=$(basename "$extra" .sh)
    stage "$name" 60 bash "$extra"
done
# ---- end of extra stages ------------------------------------------------------------------------------

# Remaining tests and benchmarks, as far as the deadline allows.
if [[ -f tests/test_apply_lut.py ]]; then
    stage tests_apply_lut 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_apply_lut.py
fi
if [[ -f tests/test_regularizers.py ]]; then
    stage tests_regularizers 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_regularizers.py
fi

if [[ -f bench/bench_apply_lut.py ]]; then
    stage bench_apply_lut 60 "$PY" bench/bench_apply_lut.py --device cuda --backend triton
fi


echo "=== summary ($SECONDS s, logs in $LOG_DIR)"
cat "$LOG_DIR/summary.txt"
exit "$FAILED"
