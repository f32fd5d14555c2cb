#!/usr/bin/env bash
# Runs the same workloads in tfr and in TensorFlow, JAX and PyTorch (CPU) in one go and prints
# medians and ratios side by side.
#
#   benches/peers/run.sh [null,chain100,matmul1024,mlp64,mlp256]
#
# The peers' venv is made by ../shared/peers/setup.sh (PEERS, default /tmp/peers; ~7.5 GB, from
# PyPI); their scripts are those of ../shared/peers. THREADS (default 2) applies to every side.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCHES=${1:-null,chain100,matmul1024,mlp64,mlp256}
THREADS=${THREADS:-2}
PEERS=${PEERS:-/tmp/peers}
SHARED=${SHARED:-../shared/peers}
OUT=$(mktemp /tmp/tfr-peers.XXXXXX.jsonl)

if [ ! -x "$PEERS/venv/bin/python" ]; then
  echo "# making the peers' venv in $PEERS (once)" >&2
  PEERS=$PEERS bash "$SHARED/setup.sh" >&2
fi
mkdir -p "$PEERS/bench"
cp "$SHARED"/*.py "$PEERS/bench/"

# At one thread every side is also pinned to one core (PIN_CPU, default 1): JAX's
# `--threads 1` alone still used both cores (benches/RESULTS.md, session 16).
PIN=()
if [ "$THREADS" = 1 ]; then
  cargo bench --bench peers --no-run
  PIN=(taskset -c "${PIN_CPU:-1}")
fi
"${PIN[@]}" cargo bench --bench peers -- --threads "$THREADS" --workloads "$BENCHES" >> "$OUT"
for fw in tf jax torch; do
  "${PIN[@]}" "$PEERS/venv/bin/python" "$PEERS/bench/bench_$fw.py" --threads "$THREADS" --bench "$BENCHES" >> "$OUT" || echo "# $fw failed" >&2
done
python3 benches/peers/compare.py "$OUT"
echo "# raw results: $OUT" >&2
