#!/usr/bin/env bash
# The scalar-loop workloads (while1000, while1000_grad) of tfr with machine code, tfr on the
# interpreter (TFR_JIT=0) and JAX, interleaved round by round so that all three see the same
# load, at each thread count; prints each side's median over the rounds and the ratios.
#
#   benches/peers/loops_vs_jax.sh [ROUNDS] [THREADS...]      (defaults: 3 rounds, threads 2 1)
#
# JAX comes from JAXPY (default /tmp/jaxvenv/bin/python: `python3 -m venv /tmp/jaxvenv &&
# /tmp/jaxvenv/bin/pip install jax`); its script is ../shared/peers/bench_jax.py. The tfr side
# is the release `peers` bench binary (`cargo bench --bench peers --no-run`). Neither side waits
# for a quiet machine (JAX with --no-quiet): the rounds alternate instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
shift || true
THREADS=${*:-2 1}
JAXPY=${JAXPY:-/tmp/jaxvenv/bin/python}
SHARED=${SHARED:-../shared/peers}
WORKLOADS=while1000,while1000_grad
OUT=$(mktemp /tmp/tfr-loops.XXXXXX.jsonl)

BIN=${BIN:-$(cargo bench --bench peers --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "peers" and m.get("executable"):
        print(m["executable"])')}

# Neither side waits for a quiet window (the rounds alternate instead).
export PEERS_MAX_WAIT=0
echo "# $(uptime)" >&2
for round in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    "$BIN" --threads "$t" --workloads "$WORKLOADS" | sed "s/^{/{\"side\": \"tfr\", \"round\": $round, /" >> "$OUT"
    TFR_JIT=0 "$BIN" --threads "$t" --workloads "$WORKLOADS" |
      sed "s/^{/{\"side\": \"tfr TFR_JIT=0\", \"round\": $round, /" >> "$OUT"
    "$JAXPY" "$SHARED/bench_jax.py" --threads "$t" --bench "$WORKLOADS" --variants while,fori --no-quiet |
      grep '^{' | sed "s/^{/{\"side\": \"jax\", \"round\": $round, /" >> "$OUT" || echo "# jax failed" >&2
  done
  echo "# round $round done: $(uptime)" >&2
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
med = {}
for r in rows:
    if "median_s" not in r:
        continue
    side = r["side"] if r["side"] != "jax" else f"jax {r.get('variant', '')}"
    med.setdefault((r["bench"], r["threads"], side), []).append(r["median_s"] * 1e6)
print("| workload | threads | side | median of round medians (us per loop run) | rounds |")
print("|---|---|---|---|---|")
best = {}
for (bench, t, side), v in sorted(med.items()):
    m = statistics.median(v)
    print(f"| {bench} | {t} | {side} | {m:.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
    if side.startswith("jax"):
        best[(bench, t)] = min(best.get((bench, t), float("inf")), m)
for (bench, t), j in sorted(best.items()):
    for side in ("tfr", "tfr TFR_JIT=0"):
        v = med.get((bench, t, side))
        if v:
            print(f"{bench} threads={t}: {side} {statistics.median(v):.2f} us, "
                  f"fastest JAX {j:.2f} us: tfr is {j / statistics.median(v):.2f}x JAX's speed")
EOF
echo "# raw results: $OUT" >&2
