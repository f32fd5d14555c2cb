#!/usr/bin/env python3
"""Writes the small TensorFlow graphs behind tfr-tf's non-frozen and function-library import
tests (`tfr-tf/tests/graphdef_variables.rs`, `tfr-tf/tests/graphdef_functions.rs`), with
TensorFlow's own outputs as `.npy` files.

Not run by `cargo test` or CI (it needs `pip install tensorflow-cpu`); its output is checked
in under tfr-tf/tests/fixtures/. Usage:

    python3 scripts/graphdef_fixtures_tf.py tfr-tf/tests/fixtures

OUT/tf1_mlp/: a TF1-style graph (not frozen) of a 2-layer MLP with resource variables
(`VarHandleOp`, constant initial values so that running `init` in tfr gives TensorFlow's),
an MSE loss, a `GradientDescentOptimizer` step (`ResourceApplyGradientDescent`) named `train`
and a `tf.compat.v1.train.Saver` (the `save/` subgraph of string ops). Files: `graph.pb`,
`x.npy`, `y.npy` (feeds), `logits0.npy`, `loss0.npy` (after `init`), `<var>.after.npy`,
`logits1.npy` (after one `train` step), `<var>.alt.npy` and `logits_alt.npy` (the variables
set to other values, for a restore from a tfr checkpoint); `<var>` is the shared name with
`/` as `.`.

OUT/tf_function/: `concrete_function.graph.as_graph_def()` of a `tf.function` that calls
other `tf.function`s (nested: the graph's library holds their FunctionDefs, calls are
`PartitionedCall`/`StatefulPartitionedCall`), plus a TF1 `Defun` called as a node whose op is
the function's name. Files: `graph.pb`, `x.npy`, `w.npy` (feeds), `out.npy`, `aux.npy`,
`defun.npy` (fetches; `case.json` names them).
"""
import json
import os
import sys

import numpy as np


def tf1_mlp(tf, out):
    v1 = tf.compat.v1
    rng = np.random.default_rng(18)
    shapes = {
        "dense/kernel": (4, 8),
        "dense/bias": (8,),
        "out/kernel": (8, 3),
        "out/bias": (3,),
    }
    init = {k: rng.standard_normal(s).astype(np.float32) * 0.5 for k, s in shapes.items()}
    alt = {k: rng.standard_normal(s).astype(np.float32) * 0.5 for k, s in shapes.items()}
    x_val = rng.standard_normal((5, 4)).astype(np.float32)
    y_val = rng.standard_normal((5, 3)).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, (None, 4), name="x")
        y = v1.placeholder(tf.float32, (None, 3), name="y")
        vs = {
            k: v1.get_variable(
                k, shape=s, initializer=v1.constant_initializer(init[k]), use_resource=True
            )
            for k, s in shapes.items()
        }
        h = tf.nn.relu(tf.matmul(x, vs["dense/kernel"]) + vs["dense/bias"])
        logits = tf.add(tf.matmul(h, vs["out/kernel"]), vs["out/bias"], name="logits")
        loss = tf.reduce_mean(tf.square(logits - y), name="loss")
        train = v1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
        init_op = v1.global_variables_initializer()
        v1.train.Saver()
        assert init_op.name == "init"
        with v1.Session(graph=g) as s:
            s.run(init_op)
            feeds = {x: x_val, y: y_val}
            l0, loss0 = s.run([logits, loss], feeds)
            s.run(train, feeds)
            after = s.run(vs)
            l1 = s.run(logits, feeds)
            for k, v in vs.items():
                v.load(alt[k], s)
            l_alt = s.run(logits, feeds)
        gd = g.as_graph_def()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "graph.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    np.save(os.path.join(out, "x.npy"), x_val)
    np.save(os.path.join(out, "y.npy"), y_val)
    np.save(os.path.join(out, "logits0.npy"), l0)
    np.save(os.path.join(out, "loss0.npy"), np.float32(loss0))
    np.save(os.path.join(out, "logits1.npy"), l1)
    np.save(os.path.join(out, "logits_alt.npy"), l_alt)
    for k in shapes:
        stem = k.replace("/", ".")
        np.save(os.path.join(out, f"{stem}.after.npy"), after[k])
        np.save(os.path.join(out, f"{stem}.alt.npy"), alt[k])
    print(out, sorted({n.op for n in gd.node}))


def tf_function(tf, out):
    from tensorflow.python.framework import function as tf1_function

    rng = np.random.default_rng(7)
    x_val = rng.standard_normal((3, 4)).astype(np.float32)
    w_val = rng.standard_normal((4, 5)).astype(np.float32)

    @tf.function
    def inner(a, b):
        return tf.nn.relu(tf.matmul(a, b)), tf.reduce_sum(a * 2.0, axis=1)

    @tf.function
    def middle(a, b):
        h, s = inner(a, b)
        h2, _ = inner(a, b * 0.5)
        return tf.tanh(h + h2), s

    @tf.function(
        input_signature=[
            tf.TensorSpec((3, 4), tf.float32, name="x"),
            tf.TensorSpec((4, 5), tf.float32, name="w"),
        ]
    )
    def outer(x, w):
        m, s = middle(x, w)
        return {"out": tf.identity(m * 3.0, name="out"), "aux": tf.identity(s - 1.0, name="aux")}

    cf = outer.get_concrete_function()
    gd = cf.graph.as_graph_def()
    res = outer(tf.constant(x_val), tf.constant(w_val))

    # A TF1 `Defun`: called by a node whose op is the function's name.
    @tf1_function.Defun(tf.float32, tf.float32)
    def scaled_diff(a, b):
        return (a - b) * 0.25

    g = tf.Graph()
    with g.as_default():
        gx = tf.compat.v1.placeholder(tf.float32, (3, 4), name="x")
        gy = tf.compat.v1.placeholder(tf.float32, (3, 4), name="y")
        d = tf.identity(scaled_diff(gx, gy), name="defun")
        with tf.compat.v1.Session(graph=g) as s:
            y_val = rng.standard_normal((3, 4)).astype(np.float32)
            defun_val = s.run(d, {gx: x_val, gy: y_val})
        gd_defun = g.as_graph_def()

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "graph.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    with open(os.path.join(out, "defun.pb"), "wb") as f:
        f.write(gd_defun.SerializeToString())
    np.save(os.path.join(out, "x.npy"), x_val)
    np.save(os.path.join(out, "w.npy"), w_val)
    np.save(os.path.join(out, "y.npy"), y_val)
    np.save(os.path.join(out, "out.npy"), res["out"].numpy())
    np.save(os.path.join(out, "aux.npy"), res["aux"].numpy())
    np.save(os.path.join(out, "defun.npy"), defun_val)
    case = {
        "feeds": {cf.inputs[0].name: "x.npy", cf.inputs[1].name: "w.npy"},
        # The `tf.identity` nodes named in `outer` (the graph's outputs `Identity*` read them).
        "fetches": {"out:0": "out.npy", "aux:0": "aux.npy"},
    }
    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f)
    print(out, sorted({n.op for n in gd.node}), [f.signature.name for f in gd.library.function])
    print(out, sorted({n.op for n in gd_defun.node}))


def main():
    import tensorflow as tf

    out = sys.argv[1] if len(sys.argv) > 1 else "tfr-tf/tests/fixtures"
    tf1_mlp(tf, os.path.join(out, "tf1_mlp"))
    tf_function(tf, os.path.join(out, "tf_function"))


if __name__ == "__main__":
    main()
