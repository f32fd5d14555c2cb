#!/usr/bin/env bash
# Everything a GPU machine needs to check tfr-cuda, in one run of at most 10 minutes:
#   1. nvidia-smi and the CUDA libraries the dynamic loader can see,
#   2. a release build of tfr-cuda's tests, its benchmarks and the MNIST example,
#   3. every test of tfr-cuda with TFR_REQUIRE_GPU=1 (a missing GPU or library fails them
#      instead of skipping): each op against the CPU kernel (tests/cuda.rs, tests/gpu_ops.rs),
#      the fallback report (tests/fallback.rs) and the MLP trained with SGD, momentum and
#      Adam on both devices,
#   4. the op benchmark (f32 matmul 4096^3 exact and TF32, elementwise ops, reductions,
#      softmax, copies),
#   5. LeNet trained on MNIST on the GPU for a short run (examples/mnist.rs --device gpu;
#      needs the MNIST cache under $TFR_DATA, default ./data, since the machine may have no
#      network: carry it),
#   6. training-step times of tfr-nn's models on the GPU (tfr-cuda/examples/model_bench.rs).
# Results go to OUT_DIR: nvidia-smi.txt, cuda-libs.txt, build.log, test.log, bench.log,
# mnist.log, model_bench.txt, summary.txt.
#
# The kernel source can be compile-checked without a GPU: NVRTC alone compiles it. With the
# libnvrtc of CUDA 13 (pip's nvidia-cuda-nvrtc 13.0.x in a venv outside the repository):
#   LD_LIBRARY_PATH=<venv>/lib/python3.*/site-packages/nvidia/cu13/lib \
#     cargo test -p tfr-cuda --test cuda kernels_compile_with_nvrtc -- --nocapture
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
    cargo build --release --example mnist >>"$log" 2>&1 || return 1
    cargo test --release -p tfr-cuda --no-run >>"$log" 2>&1 || return 1
    mkdir -p "$BIN"
    rm -f "$BIN"/*
    # "Executable unittests src/lib.rs (target/release/deps/tfr_cuda-<hash>)" and tests/cuda.rs
    local exe
    for exe in $(grep -o 'target/release/deps/[a-z_]*-[0-9a-f]*' "$log" | sort -u); do
        cp "$exe" "$BIN/test-$(basename "${exe%-*}")"
    done
    cp target/release/examples/gpu_bench "$BIN/gpu_bench"
    cp target/release/examples/model_bench "$BIN/model_bench"
    cp target/release/examples/mnist "$BIN/mnist"
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
    TFR_REQUIRE_GPU=1 timeout 240 "$t" --nocapture --test-threads 1 >>"$OUT/test.log" 2>&1 || tests_rc=1
done
grep -E '^test result|FAILED|panicked' "$OUT/test.log"

timeout 90 "$BIN/gpu_bench" "$OUT" 2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}

# A short LeNet run on the GPU (fails rather than falling back to the CPU).
timeout 120 "$BIN/mnist" --device gpu --epochs 1 --steps 300 --out "$OUT/mnist-run" >"$OUT/mnist.log" 2>&1
mnist_rc=$?
grep -E '^training on|accuracy|error' "$OUT/mnist.log" | head -20

timeout 150 "$BIN/model_bench" "$OUT" --steps 10 2>&1 | tee "$OUT/model_bench.log"
models_rc=${PIPESTATUS[0]}

{
    echo "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    echo "tests: $([ $tests_rc = 0 ] && echo PASS || echo FAIL) (TFR_REQUIRE_GPU=1)"
    echo "bench: $([ "$bench_rc" = 0 ] && echo PASS || echo "FAIL (exit $bench_rc)")"
    echo "mnist (LeNet on the GPU, 300 steps): $([ "$mnist_rc" = 0 ] && echo PASS || echo "FAIL (exit $mnist_rc; see mnist.log)")"
    echo "model_bench: $([ "$models_rc" = 0 ] && echo PASS || echo "FAIL (exit $models_rc)")"
} | tee "$OUT/summary.txt"
[ $tests_rc = 0 ] && [ "$bench_rc" = 0 ] && [ "$mnist_rc" = 0 ] && [ "$models_rc" = 0 ]
