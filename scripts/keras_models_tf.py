#!/usr/bin/env python3
"""Builds real Keras architectures with random weights in TensorFlow, freezes each to a
GraphDef, runs it on a fixed input and times it, for tfr to import and compare
(`cargo run --release -p tfr-tf --example run_graphdefs -- OUTDIR`).

Not run by `cargo test` or CI (it needs `pip install tensorflow-cpu`). Usage:

    python3 scripts/keras_models_tf.py OUTDIR [--models mobilenet_v2,resnet50,...] [--batch 2]

For every model `M`, OUTDIR/M/ gets `graph.pb` (the frozen inference graph: variables folded
into constants), `case.json` (`{"feeds": {"x:0": "feed0.npy"}, "fetches": {"Identity:0":
"fetch0.npy", <logits>: "fetch1.npy"}, "tf_ms": median}`) and the `.npy` files: the same format as
scripts/check_graphdef_tf.py reads, with TensorFlow's outputs as the expected values. The
timing is the median of `--runs` calls of the frozen graph in a `tf.compat.v1.Session` with
intra/inter-op threads left at TensorFlow's defaults.
"""
import argparse
import json
import os
import time

import numpy as np


def transformer_encoder(tf, seq=32, dim=64, heads=4, ff=128, layers=2):
    inp = tf.keras.Input(shape=(seq, dim), name="tokens")
    h = inp
    for i in range(layers):
        att = tf.keras.layers.MultiHeadAttention(num_heads=heads, key_dim=dim // heads, name=f"mha{i}")(h, h)
        h = tf.keras.layers.LayerNormalization(name=f"ln{i}a")(h + att)
        f = tf.keras.layers.Dense(ff, activation="gelu", name=f"ff{i}a")(h)
        f = tf.keras.layers.Dense(dim, name=f"ff{i}b")(f)
        h = tf.keras.layers.LayerNormalization(name=f"ln{i}b")(h + f)
    out = tf.keras.layers.GlobalAveragePooling1D()(h)
    out = tf.keras.layers.Dense(10, activation="softmax")(out)
    return tf.keras.Model(inp, out), (seq, dim)


def build(tf, name):
    apps = tf.keras.applications
    if name == "mobilenet_v2":
        return apps.MobileNetV2(weights=None, input_shape=(96, 96, 3)), (96, 96, 3)
    if name == "resnet50":
        return apps.ResNet50(weights=None, input_shape=(64, 64, 3)), (64, 64, 3)
    if name == "inception_v3":
        return apps.InceptionV3(weights=None, input_shape=(96, 96, 3)), (96, 96, 3)
    if name == "transformer":
        return transformer_encoder(tf)
    raise SystemExit(f"unknown model {name}")


def freeze(tf, model, shape, batch):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((batch,) + shape, tf.float32, name="x")
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    return gd, frozen.inputs[0].name, frozen.outputs[0].name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--models", default="mobilenet_v2,resnet50,inception_v3,transformer")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(7)
    for name in args.models.split(","):
        model, shape = build(tf, name)
        gd, inp, out = freeze(tf, model, shape, args.batch)
        d = os.path.join(args.outdir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "graph.pb"), "wb") as f:
            f.write(gd.SerializeToString())
        x = np.random.default_rng(1).uniform(-1, 1, (args.batch,) + shape).astype(np.float32)
        g = tf.Graph()
        with g.as_default():
            tf.graph_util.import_graph_def(gd, name="")
        # The classifier's logits too (the input of its last Softmax): with random weights the
        # probabilities can be nearly uniform, which would make the comparison weak.
        softmax = [n for n in gd.node if n.op == "Softmax"][-1]
        logits = softmax.input[0] if ":" in softmax.input[0] else softmax.input[0] + ":0"
        with tf.compat.v1.Session(graph=g) as s:
            y, z = s.run([out, logits], {inp: x})
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                s.run(out, {inp: x})
                times.append((time.perf_counter() - t0) * 1e3)
        np.save(os.path.join(d, "feed0.npy"), x)
        np.save(os.path.join(d, "fetch0.npy"), y)
        np.save(os.path.join(d, "fetch1.npy"), z)
        case = {
            "feeds": {inp: "feed0.npy"},
            "fetches": {out: "fetch0.npy", logits: "fetch1.npy"},
            "tf_ms": float(np.median(times)),
        }
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(case, f)
        ops = sorted({n.op for n in gd.node})
        print(f"{name}: {len(gd.node)} nodes, TF {case['tf_ms']:.2f} ms median; ops: {' '.join(ops)}")


if __name__ == "__main__":
    main()
