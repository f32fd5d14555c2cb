"""Side-by-side table of tfr against its peers from JSON lines (tfr's and the peers' scripts)."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rows = [r for r in rows if "median_s" in r]
benches = []
for r in rows:
    if r["bench"] not in benches:
        benches.append(r["bench"])
print("| workload | tfr (best variant) | peer | peer median | peer / tfr |")
print("|---|---|---|---|---|")
for b in benches:
    ours = [r for r in rows if r["bench"] == b and r["fw"] == "tfr"]
    if not ours:
        continue
    best = min(ours, key=lambda r: r["median_s"])
    for p in sorted((r for r in rows if r["bench"] == b and r["fw"] != "tfr"), key=lambda r: r["median_s"]):
        print(f"| {b} | {best['median_s']*1e6:.2f} µs ({best['variant']}) | {p['fw']} {p['variant']} "
              f"| {p['median_s']*1e6:.2f} µs | {p['median_s']/best['median_s']:.2f}x |")
