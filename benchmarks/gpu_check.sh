#!/usr/bin/env bash
# fastgan GPU check: the first thing to run on a machine with an NVIDIA GPU (docs/gpu.md).
#
#   benchmarks/gpu_check.sh [--out DIR] [--no-build] [--budget SECONDS]
#
# 1. builds fastgan._C and fastgan._C_cuda in place against the installed torch (FASTGAN_BUILD_CUDA=1),
# 2. runs the tests marked `gpu` (triton and cuda backends vs ref on CUDA tensors; every Triton kernel
#    compiled) and tests/test_compile.py when it exists,
# 3. runs `fastgan bench ops|conv|filtered|models|metrics --quick` and `fastgan bench train` (StyleGAN2
#    256x256 training, sec/kimg next to NVlabs' published A100 number),
# 4. writes DIR/gpu_report.json and DIR/gpu_report.md (device, torch/triton/CUDA versions, step results,
#    test counts and failures, the benchmark tables) plus the logs build.log, tests.log and bench.log.
#
# Every step runs under a share of one time budget (--budget, default 470 s) so the whole check ends
# within 8 minutes; a step that would start with too little time left is recorded as skipped.
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3), MAX_JOBS (build parallelism).
# Exit codes: 0 every step passed, or no GPU is visible (a message says so and nothing is run or written);
#             1 a step failed or was skipped (the report is still written); 2 bad usage or no usable torch.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=gpu_report
BUILD=1
BUDGET=470

usage() { sed -n '4p' "${BASH_SOURCE[0]}" | sed 's/^#  *//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUT_DIR=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --budget) [ $# -ge 2 ] || { usage >&2; exit 2; }; BUDGET=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check: --budget must be a whole number of seconds, got '$BUDGET'" >&2; exit 2 ;; esac

if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
cd "$ROOT" || exit 2

probe=$("$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda, int(torch.cuda.is_available()))' 2>&1)
if [ $? -ne 0 ]; then
    echo "gpu_check: cannot import torch with $PYTHON: ${probe##*$'\n'}" >&2
    exit 2
fi
read -r TORCH_VERSION TORCH_CUDA HAVE_GPU <<<"$probe"
if [ "$HAVE_GPU" != 1 ]; then
    if [ "$TORCH_CUDA" = None ]; then why="torch $TORCH_VERSION is a CPU-only build"; else why="torch $TORCH_VERSION (CUDA $TORCH_CUDA) sees no CUDA device"; fi
    echo "gpu_check: no CUDA GPU available ($why); nothing to check. Run this on a machine with an NVIDIA GPU" \
         "and a CUDA build of torch; CPU hosts are covered by 'make test'."
    exit 0
fi

mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastgan_gpu_check.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
: >"$WORK/steps.tsv"

# step NAME LOG CAP CMD...: run CMD with its output appended to WORK/LOG, for at most CAP seconds and
# never past the budget; records "NAME status rc seconds LOG" in steps.tsv. Returns CMD's status.
step() {
    local name=$1 log=$2 cap=$3; shift 3
    local left=$((BUDGET - (SECONDS - START)))
    [ "$cap" -gt "$left" ] && cap=$left
    if [ "$cap" -lt 20 ]; then
        printf '%s\tskipped\t\t\t%s\n' "$name" "$log" >>"$WORK/steps.tsv"
        echo "gpu_check: $name skipped: time budget spent"
        return 1
    fi
    echo "gpu_check: $name (at most ${cap}s)"
    echo "=== $name: $*" >>"$WORK/$log"
    local t0=$SECONDS rc status
    timeout --kill-after=10 "$cap" "$@" >>"$WORK/$log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - t0))" "$log" >>"$WORK/steps.tsv"
    echo "gpu_check: $name: $status after $((SECONDS - t0))s"
    return $rc
}

if [ "$BUILD" = 1 ]; then
    FASTGAN_BUILD_CUDA=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        step build build.log 240 "$PYTHON" setup.py build_ext --inplace
fi
step import_cuda_extension build.log 60 "$PYTHON" -c \
    'import fastgan._C_cuda, fastgan.backends as B; B.get("cuda"); print(B.info())'

XDIST=()
if "$PYTHON" -c 'import xdist' 2>/dev/null; then XDIST=(-n 4); fi
step tests_gpu tests.log 150 "$PYTHON" -m pytest -q -m gpu tests ${XDIST[@]+"${XDIST[@]}"} \
    --continue-on-collection-errors --junitxml="$WORK/junit_gpu.xml"
if [ -f tests/test_compile.py ]; then
    step tests_compile tests.log 90 "$PYTHON" -m pytest -q tests/test_compile.py --junitxml="$WORK/junit_compile.xml"
fi

for suite in ops conv filtered models metrics; do
    step "bench_$suite" "bench_$suite.txt" 45 "$PYTHON" -m fastgan bench "$suite" --quick --json "$WORK/bench_$suite.json"
done
# StyleGAN2 256x256 training (cfg auto, fp16) on each GPU backend and ref, next to NVlabs' 12.53 s/kimg (A100).
step bench_train bench_train.txt 150 "$PYTHON" -m fastgan bench train --repeat 2 --json "$WORK/bench_train.json"

"$PYTHON" benchmarks/gpu_report.py --work "$WORK" --out "$OUT_DIR" || exit 1
cp "$WORK/build.log" "$WORK/tests.log" "$OUT_DIR/" 2>/dev/null
for f in "$WORK"/bench_*.txt; do [ -f "$f" ] && cat "$f"; done >"$OUT_DIR/bench.log"
status=0  # 1 when any step's status column is not "ok"
while IFS=$'\t' read -r _ st _; do [ "$st" = ok ] || status=1; done <"$WORK/steps.tsv"
echo "gpu_check: report in $OUT_DIR/gpu_report.md ($([ $status = 0 ] && echo pass || echo FAIL))"
exit $status
