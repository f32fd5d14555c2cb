#!/usr/bin/env python3
"""Loads a GraphDef exported by tfr (`tfr_tf::write_graph_def`) into TensorFlow and compares
its outputs with tfr's.

Not run by `cargo test` or CI (it needs `pip install tensorflow-cpu`). Usage:

    cargo run -p tfr-tf --example tf_interop -- OUT
    python3 scripts/check_graphdef_tf.py OUT/graphs [--rtol 1e-4] [--atol 1e-5]

For every model `M` the example writes, OUT/graphs/M/ holds `graph.pb` and `case.json`, which maps
TF tensor names to `.npy` files: `{"feeds": {"input:0": "feed0.npy"}, "fetches": {"probs:0":
"fetch0.npy"}}` (the fetches are tfr's values). For each model the script imports the graph
with `tf.graph_util.import_graph_def(..., name="")`, runs every fetch in a `tf.compat.v1.Session`
with the same feeds and checks each against tfr's value. It exits 1 on a mismatch or when
TensorFlow rejects the graph (printing TensorFlow's error, which names the node).
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args()

    import tensorflow as tf

    failed = 0
    models = sorted(d for d in os.listdir(args.outdir) if os.path.isdir(os.path.join(args.outdir, d)))
    for model in models:
        print(f"== {model}")
        failed += check(tf, os.path.join(args.outdir, model), args.rtol, args.atol)
    print(f"{len(models) - failed} of {len(models)} models agree with TensorFlow")
    return 1 if failed else 0


def check(tf, d, rtol, atol):
    graph_def = tf.compat.v1.GraphDef()
    with open(os.path.join(d, "graph.pb"), "rb") as f:
        graph_def.ParseFromString(f.read())
    with open(os.path.join(d, "case.json")) as f:
        case = json.load(f)
    feeds = {k: np.load(os.path.join(d, v)) for k, v in case["feeds"].items()}
    expected = {k: np.load(os.path.join(d, v)) for k, v in case["fetches"].items()}

    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except Exception as e:  # TensorFlow's message names the offending node
            print(f"TensorFlow rejected the graph: {e}")
            return 1
    print(f"imported {len(graph_def.node)} nodes")
    with tf.compat.v1.Session(graph=graph) as sess:
        names = sorted(expected)
        got = sess.run([graph.get_tensor_by_name(n) for n in names],
                       feed_dict={graph.get_tensor_by_name(k): v for k, v in feeds.items()})
    bad = 0
    for name, value in zip(names, got):
        want = expected[name]
        ok = value.shape == want.shape and np.allclose(value, want, rtol=rtol, atol=atol)
        diff = float(np.max(np.abs(value.astype(np.float64) - want.astype(np.float64)))) if value.size else 0.0
        print(f"{name}: shape {value.shape}, max abs diff {diff:.3g} {'ok' if ok else 'MISMATCH'}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
