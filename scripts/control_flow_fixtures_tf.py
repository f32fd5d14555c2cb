#!/usr/bin/env python3
"""Writes frozen `tf.function`s with TF2 functional control flow (`While`/`StatelessWhile`,
`If`/`StatelessIf`, `Case`/`StatelessCase`, bodies in the graph's function library) for
tfr-tf's `tests/graphdef_control_flow.rs`, with TensorFlow's outputs as `.npy` files.

Not run by `cargo test` (it needs TensorFlow); its output is checked in under
tfr-tf/tests/fixtures/. Usage:

    python3 scripts/control_flow_fixtures_tf.py tfr-tf/tests/fixtures

Each case is a directory `OUT/cf_<name>/` read by `tfr_tf::npy::read_case`: `graph.pb`
(`convert_variables_to_constants_v2(..., lower_control_flow=False)`, so the functional ops
stay; where freezing still lowers them, as it does a `Case`, the concrete function's graph), `case.json` (feeds and fetches by tensor name), the `.npy` files. Cases:
- `while`: a `tf.while_loop` over a counter `i < n` with a [4] tensor and a scalar loop
  variable (`acc = acc * 1.1 + i`, `s += sum(acc)`), for n = 0, 1, 5;
- `cond`: `tf.cond` on a fed bool and `tf.cond` on `sum(x) > 0`, for both branches of each;
- `nested`: a `tf.cond` inside a `tf.while_loop` body and a `tf.while_loop` inside a
  `tf.cond` branch;
- `switch`: `tf.switch_case` with three branches, index 0, 1, 2 and out of range (7: the last
  branch, as TensorFlow does).
"""
import json
import os
import sys

import numpy as np


def freeze(tf, fn):
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    cf = fn.get_concrete_function()
    frozen = convert_variables_to_constants_v2(cf, lower_control_flow=False)
    return cf, frozen


def write_case(out, name, gd, feeds, fetches):
    d = os.path.join(out, f"cf_{name}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "graph.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    case = {"feeds": {}, "fetches": {}}
    for k, (tname, val) in enumerate(feeds):
        np.save(os.path.join(d, f"feed{k}.npy"), val)
        case["feeds"][tname] = f"feed{k}.npy"
    for k, (tname, val) in enumerate(fetches):
        np.save(os.path.join(d, f"fetch{k}.npy"), val)
        case["fetches"][tname] = f"fetch{k}.npy"
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f)
    ops = sorted({n.op for n in gd.node} | {n.op for fn in gd.library.function for n in fn.node_def})
    print(d, [o for o in ops if o in ("While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase")])


def run_cases(tf, out, name, fn, arg_sets):
    cf, frozen = freeze(tf, fn)
    functional = {"While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase"}
    gd = frozen.graph.as_graph_def()
    if not {n.op for n in gd.node} & functional:
        # Freezing lowered it (a `Case` becomes `_SwitchN`): the concrete function's graph.
        frozen = cf
        gd = cf.graph.as_graph_def()
    assert {n.op for n in gd.node} & functional, {n.op for n in gd.node}
    in_names = [t.name for t in frozen.inputs]
    out_names = [t.name for t in frozen.outputs]
    for suffix, args in arg_sets:
        res = frozen(*[tf.constant(a) for a in args])
        if not isinstance(res, (list, tuple)):
            res = [res]
        write_case(
            out,
            f"{name}_{suffix}",
            gd,
            list(zip(in_names, args)),
            [(n, np.asarray(r.numpy())) for n, r in zip(out_names, res)],
        )


def main():
    import tensorflow as tf

    out = sys.argv[1] if len(sys.argv) > 1 else "tfr-tf/tests/fixtures"
    rng = np.random.default_rng(18)
    x = rng.standard_normal(4).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.int32, name="n")])
    def while_fn(x, n):
        def body(i, acc, s):
            acc = acc * 1.1 + tf.cast(i, tf.float32)
            return i + 1, acc, s + tf.reduce_sum(acc)

        _, acc, s = tf.while_loop(lambda i, acc, s: i < n, body, (tf.constant(0), x, tf.constant(0.0)))
        return acc, s

    run_cases(tf, out, "while", while_fn, [(f"n{n}", (x, np.int32(n))) for n in (0, 1, 5)])

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.bool, name="flag")])
    def cond_fn(x, flag):
        a = tf.cond(flag, lambda: x * 2.0 + 1.0, lambda: tf.exp(x) - 3.0)
        b = tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.reduce_max(x) * a, lambda: -a)
        return a, b

    run_cases(tf, out, "cond", cond_fn, [
        ("tt", (np.abs(x), np.bool_(True))),
        ("tf", (np.abs(x), np.bool_(False))),
        ("ft", (-np.abs(x), np.bool_(True))),
        ("ff", (-np.abs(x), np.bool_(False))),
    ])

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.int32, name="n")])
    def nested_fn(x, n):
        def body(i, acc):
            acc = tf.cond(i % 2 == 0, lambda: acc * 2.0, lambda: acc - 1.0)
            return i + 1, acc

        _, acc = tf.while_loop(lambda i, acc: i < n, body, (tf.constant(0), x))

        def loop_branch():
            _, y = tf.while_loop(lambda j, y: j < n, lambda j, y: (j + 1, y * 0.5 + 1.0), (tf.constant(0), x))
            return y

        other = tf.cond(n > 2, loop_branch, lambda: x + 100.0)
        return acc, other

    run_cases(tf, out, "nested", nested_fn, [(f"n{n}", (x, np.int32(n))) for n in (0, 2, 5)])

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.int32, name="k")])
    def switch_fn(x, k):
        return tf.switch_case(k, [lambda: x * 3.0, lambda: tf.sin(x), lambda: x - 10.0])

    run_cases(tf, out, "switch", switch_fn, [(f"k{k}", (x, np.int32(k))) for k in (0, 1, 2, 7)])


if __name__ == "__main__":
    main()
