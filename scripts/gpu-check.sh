#!/usr/bin/env bash
# Everything a GPU machine needs to check tfr-cuda, in one run:
#   1. nvidia-smi and the CUDA libraries the dynamic loader can see,
#   2. a release build of tfr-cuda's tests and its benchmark,
#   3. the tests with TFR_REQUIRE_GPU=1 (a missing GPU or library fails them instead of
#      skipping), against the CPU kernels,
#   4. the benchmark (f32 matmul 4096^3 exact and TF32, elementwise ops, reductions, softmax,
#      copies).
# Results go to OUT_DIR: nvidia-smi.txt, cuda-libs.txt, build.log, test.log, gpu_bench.txt,
# summary.txt. Runs in a few minutes once built.
#
# Usage:
#   scripts/gpu-check.sh OUT_DIR            build here (cargo must reach its crates), then run
#   scripts/gpu-check.sh --prepare          build here and copy the test and benchmark binaries
#                                           to target/gpu-check-bin (for a machine that cannot
#                                           build: carry that folder there)
#   scripts/gpu-check.sh --prebuilt OUT_DIR run the binaries in target/gpu-check-bin, no build
set -u -o pipefail

cd "$(dirname "$0")/.."
BIN=target/gpu-check-bin

build() { # $1: log file
    local log=$1
    cargo build --release -p tfr-cuda --examples >>"$log" 2>&1 || return 1
    cargo test --release -p tfr-cuda --no-run >>"$log" 2>&1 || return 1
    mkdir -p "$BIN"
    rm -f "$BIN"/*
    # "Executable unittests src/lib.rs (target/release/deps/tfr_cuda-<hash>)" and tests/cuda.rs
    local exe
    for exe in $(grep -o 'target/release/deps/[a-z_]*-[0-9a-f]*' "$log" | sort -u); do
        cp "$exe" "$BIN/test-$(basename "${exe%-*}")"
    done
    cp target/release/examples/gpu_bench "$BIN/gpu_bench"
    strip --strip-debug "$BIN"/* 2>/dev/null || true
    ls "$BIN"/test-* >/dev/null 2>&1 || { echo "no test binaries found in the build log" >>"$log"; return 1; }
}

if [ "${1:-}" = "--prepare" ]; then
    log=$(mktemp)
    if build "$log"; then
        ls -l "$BIN"
        exit 0
    fi
    cat "$log"
    exit 1
fi

prebuilt=0
if [ "${1:-}" = "--prebuilt" ]; then
    prebuilt=1
    shift
fi
OUT=${1:?usage: scripts/gpu-check.sh [--prebuilt] OUT_DIR | --prepare}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

{
    nvidia-smi || echo "nvidia-smi failed (exit $?)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
} >"$OUT/nvidia-smi.txt" 2>&1
{
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvrtc|libcublas' || echo "ldconfig lists no libcuda/libnvrtc/libcublas"
} >"$OUT/cuda-libs.txt" 2>&1

: >"$OUT/build.log"
if [ "$prebuilt" = 1 ]; then
    echo "prebuilt binaries from $BIN" >>"$OUT/build.log"
    ls -l "$BIN" >>"$OUT/build.log" 2>&1 || { echo "FAIL: no $BIN (run --prepare where cargo can build)" | tee "$OUT/summary.txt"; exit 1; }
elif ! build "$OUT/build.log"; then
    tail -40 "$OUT/build.log"
    echo "FAIL: build (see build.log)" | tee "$OUT/summary.txt"
    exit 1
fi

tests_rc=0
: >"$OUT/test.log"
for t in "$BIN"/test-*; do
    echo "== $t" >>"$OUT/test.log"
    TFR_REQUIRE_GPU=1 timeout 600 "$t" --nocapture --test-threads 1 >>"$OUT/test.log" 2>&1 || tests_rc=1
done
grep -E '^test result' "$OUT/test.log"

timeout 600 "$BIN/gpu_bench" "$OUT" 2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}

{
    echo "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    echo "tests: $([ $tests_rc = 0 ] && echo PASS || echo FAIL) (TFR_REQUIRE_GPU=1)"
    echo "bench: $([ "$bench_rc" = 0 ] && echo PASS || echo "FAIL (exit $bench_rc)")"
} | tee "$OUT/summary.txt"
[ $tests_rc = 0 ] && [ "$bench_rc" = 0 ]
