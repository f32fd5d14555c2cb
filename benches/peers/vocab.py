"""Runs one of ../shared/peers' bench_<fw>.py scripts with the LSTM LM's vocabulary changed
(their `common.LSTM["vocab"]`, 10k there): `vocab.py FW VOCAB [bench args...]`. The peers have
no sampled softmax, so at 100k this is their full-softmax step; results carry `--tag vocab<N>`."""
import os
import runpy
import sys

bench_dir = os.environ.get("PEERS_BENCH", "/tmp/peers/bench")
sys.path.insert(0, bench_dir)
import common  # noqa: E402  (the module the bench script imports as C)

fw, vocab = sys.argv[1], int(sys.argv[2])
common.LSTM["vocab"] = vocab
sys.argv = [os.path.join(bench_dir, f"bench_{fw}.py")] + sys.argv[3:] + ["--tag", f"vocab{vocab}"]
runpy.run_path(sys.argv[0], run_name="__main__")
