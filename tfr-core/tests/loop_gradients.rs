//! Gradients through `while_loop` bodies (issue 17):
//! - gradient rules that read a constant input (an axis, a permutation, paddings, a shape) work
//!   inside a loop body, where the constant enters through an `Enter`, and keep the static
//!   shapes and constant shape vectors they have outside loops;
//! - higher-order gradients through loops (checked against central differences of the first
//!   derivative), and errors, never zeros, where a path cannot be differentiated.

use crate::common;

use common::assert_close;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, GraphError, Output, Shape};

type GResult<T> = Result<T, GraphError>;

fn seq() -> SessionOptions {
    SessionOptions {
        inter_op_threads: 1,
        ..SessionOptions::default()
    }
}

/// Central difference of `f` at `x` along each coordinate.
fn numeric_gradient(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], h: f64) -> Vec<f64> {
    (0..x.len())
        .map(|k| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[k] += h;
            down[k] -= h;
            let s = |v: Vec<f64>| v.iter().sum::<f64>();
            (s(f(&up)) - s(f(&down))) / (2.0 * h)
        })
        .collect()
}

// ---- rules reading constants inside a loop body ------------------------------------------------

/// A shape-preserving step on a [2, 3] value that uses one op with a constant input.
type Step = fn(&mut Graph, Output) -> GResult<Output>;

fn steps() -> Vec<(&'static str, Step)> {
    vec![
        ("gather", |g, v| {
            let idx = g.constant(tfr_graph::TensorValue::new(&[3], vec![2i32, 0, 1]).unwrap())?;
            g.gather(v, idx, 1)
        }),
        ("transpose", |g, v| {
            let t = g.transpose(v, &[1, 0])?;
            let s = g.sin(t)?;
            g.transpose(s, &[1, 0])
        }),
        ("concat_slice", |g, v| {
            let sq = g.mul(v, v)?;
            let c = g.concat(&[v, sq], 1)?;
            let a = g.slice(c, &[0, 1], &[2, 3])?;
            let b = g.slice(c, &[0, 2], &[2, 3])?;
            g.add(a, b)
        }),
        ("pad", |g, v| {
            let p = g.pad(v, &[(1, 0), (0, 2)], 0.5)?;
            let s = g.sin(p)?;
            g.slice(s, &[0, 1], &[2, 3])
        }),
        ("tile_reduce_sum", |g, v| {
            let t = g.tile(v, &[2, 1])?;
            let s = g.sin(t)?;
            let r = g.reduce_sum(s, Some(&[0]), false)?;
            g.mul(v, r)
        }),
        ("reduce_sum_keep_dims", |g, v| {
            let r = g.reduce_sum(v, Some(&[1]), true)?;
            let s = g.sin(r)?;
            g.mul(v, s)
        }),
        ("reduce_mean", |g, v| {
            let r = g.reduce_mean(v, Some(&[0]), false)?;
            g.mul(v, r)
        }),
        ("reshape", |g, v| {
            let r = g.reshape(v, &[3, 2])?;
            let s = g.sin(r)?;
            g.reshape(s, &[2, 3])
        }),
    ]
}

/// y = sum(sin(x after `trips` applications of `step`)), the steps run in a while_loop when
/// `in_loop`, else unrolled.
fn build_steps(step: Step, trips: i32, in_loop: bool) -> GResult<(Graph, Output, Output)> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[2, 3]))?;
    let mut r = x;
    if in_loop {
        let zero = g.scalar(0i32)?;
        let out = g.while_loop(
            |g, v| {
                let n = g.scalar(trips)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let next = step(g, v[1])?;
                let half = g.scalar(0.5f64)?;
                let damped = g.mul(next, half)?;
                Ok(vec![g.add(v[0], one)?, damped])
            },
            &[zero, x],
            &WhileOptions::default(),
        )?;
        r = out[1];
    } else {
        for _ in 0..trips {
            let next = step(&mut g, r)?;
            let half = g.scalar(0.5f64)?;
            r = g.mul(next, half)?;
        }
    }
    let s = g.sin(r)?;
    let y = g.reduce_sum(s, None, false)?;
    Ok((g, x, y))
}

/// Ops that compute a shape, an axis list or offsets when the step runs.
const RUNTIME_SHAPE_OPS: &[&str] = &[
    "Shape",
    "Size",
    "Rank",
    "ReducedShape",
    "BroadcastGradientArgs",
    "ConcatOffset",
    "InvertPermutation",
];

#[test]
fn rules_reading_constants_work_inside_a_loop_body() {
    let xv: Vec<f64> = common::random(6, 17);
    for (name, step) in steps() {
        let (mut g, x, y) = build_steps(step, 3, true).unwrap();
        let before = g.len();
        let dx = gradients(&mut g, &[y], &[x], None)
            .unwrap_or_else(|e| panic!("{name}: building the gradient failed: {e}"))[0]
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        // The rules emit constant shape vectors inside the backward loop, as they do outside.
        let runtime: Vec<String> = g.nodes()[before..]
            .iter()
            .filter(|n| RUNTIME_SHAPE_OPS.contains(&n.op.as_str()))
            .map(|n| format!("{} ({})", n.name, n.op))
            .collect();
        assert!(
            runtime.is_empty(),
            "{name}: runtime shape ops in the gradient of the loop: {runtime:?}"
        );
        assert_eq!(g.shape(dx), &Shape::known(&[2, 3]), "{name}");
        let s = Session::new(&g, seq()).unwrap();
        let feed = |v: &[f64]| vec![(x, Tensor::new(&[2, 3], v.to_vec()).unwrap())];
        let got = s.run(&feed(&xv), &[dx], &[]).unwrap()[0].to_f64_vec();
        let f = |v: &[f64]| s.run(&feed(v), &[y], &[]).unwrap()[0].to_f64_vec();
        let want = numeric_gradient(f, &xv, 1e-6);
        assert_close(&got, &want, 1e-6, name);
        // The same steps unrolled give the same gradient.
        let (mut u, ux, uy) = build_steps(step, 3, false).unwrap();
        let du = gradients(&mut u, &[uy], &[ux], None).unwrap()[0].unwrap();
        let unrolled = Session::new(&u, seq())
            .unwrap()
            .run(
                &[(ux, Tensor::new(&[2, 3], xv.clone()).unwrap())],
                &[du],
                &[],
            )
            .unwrap()[0]
            .to_f64_vec();
        assert_close(&got, &unrolled, 1e-10, &format!("{name} vs unrolled"));
    }
}

#[test]
fn static_shapes_inside_a_loop_body_are_known_as_outside() {
    // Each step's forward values have the static shapes inside a loop body that they have
    // outside, including a shape passed through an Identity of a constant.
    for (name, step) in steps() {
        let (inside, _, _) = build_steps(step, 1, true).unwrap();
        let (outside, _, _) = build_steps(step, 1, false).unwrap();
        let shapes = |g: &Graph| -> Vec<(String, Shape)> {
            g.nodes()
                .iter()
                .filter(|n| {
                    !matches!(
                        n.op.as_str(),
                        "Enter" | "Merge" | "Switch" | "Exit" | "NextIteration" | "LoopCond"
                    ) && n.outputs.iter().all(|o| o.dtype == DType::F64)
                })
                .flat_map(|n| n.outputs.iter().map(|o| (n.op.clone(), o.shape.clone())))
                .collect()
        };
        let (a, b) = (shapes(&inside), shapes(&outside));
        assert!(
            b.iter().all(|(_, s)| s.to_known().is_some()),
            "{name}: {b:?}"
        );
        assert!(
            a.iter().all(|(_, s)| s.to_known().is_some()),
            "{name}: unknown static shapes inside the loop: {a:?}"
        );
    }
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[2, 3]))
        .unwrap();
    let zero = g.scalar(0i32).unwrap();
    let out = g
        .while_loop(
            |g, v| {
                let n = g.scalar(2i32)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let dims = g.constant(tfr_graph::TensorValue::new(&[2], vec![3i32, 2]).unwrap())?;
                let dims = g.identity(dims)?;
                let r = g.reshape_to(v[1], dims)?;
                assert_eq!(g.shape(r), &Shape::known(&[3, 2]));
                let back = g.reshape(r, &[2, 3])?;
                Ok(vec![g.add(v[0], one)?, back])
            },
            &[zero, x],
            &WhileOptions::default(),
        )
        .unwrap();
    assert_eq!(g.shape(out[1]), &Shape::known(&[2, 3]));
}

// ---- higher-order gradients through loops ------------------------------------------------------

/// `[y, dy/dx, d²y/dx², ...]` up to `order`, each derivative built by differentiating the one
/// before (x and y scalars; the ys of vector-valued derivatives are summed).
fn derivatives(g: &mut Graph, x: Output, y: Output, order: usize) -> Vec<Output> {
    let mut out = vec![y];
    for k in 0..order {
        let last = *out.last().unwrap();
        let d = gradients(g, &[last], &[x], None)
            .unwrap_or_else(|e| panic!("derivative {}: {e}", k + 1))[0]
            .unwrap_or_else(|| panic!("derivative {}: no gradient", k + 1));
        out.push(d);
    }
    out
}

/// Checks each derivative of order >= 1 against the central difference of the one before, at
/// each of `points`, and that the highest one is not identically zero.
fn check_derivatives(
    g: &Graph,
    x: Output,
    feeds: &[(Output, Tensor)],
    ds: &[Output],
    points: &[f64],
    what: &str,
) {
    check_derivatives_with(g, x, feeds, ds, points, what, seq());
    // The dataflow machine on a pool runs independent nodes in any order: the flows alone
    // must order each gradient array's writes before its reads.
    check_derivatives_with(g, x, feeds, ds, points, what, SessionOptions::default());
}

fn check_derivatives_with(
    g: &Graph,
    x: Output,
    feeds: &[(Output, Tensor)],
    ds: &[Output],
    points: &[f64],
    what: &str,
    options: SessionOptions,
) {
    let s = Session::new(g, options).unwrap();
    let eval = |xv: f64| -> Vec<f64> {
        let mut f = feeds.to_vec();
        f.push((x, Tensor::scalar(xv)));
        s.run(&f, ds, &[])
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .iter()
            .map(|t| t.scalar_value::<f64>().unwrap())
            .collect()
    };
    let h = 1e-5;
    let mut highest_nonzero = false;
    for &xv in points {
        let (at, up, down) = (eval(xv), eval(xv + h), eval(xv - h));
        for k in 1..ds.len() {
            let numeric = (up[k - 1] - down[k - 1]) / (2.0 * h);
            let tol = 1e-5 * (1.0 + numeric.abs());
            assert!(
                (at[k] - numeric).abs() <= tol,
                "{what}: derivative {k} at x = {xv} is {}, central difference {numeric}",
                at[k]
            );
        }
        highest_nonzero |= at[ds.len() - 1].abs() > 1e-6;
    }
    assert!(highest_nonzero, "{what}: the highest derivative is zero");
}

#[test]
fn second_and_third_derivatives_of_a_simple_loop() {
    let (mut g, x, y) = simple_loop(&WhileOptions::default()).unwrap();
    let ds = derivatives(&mut g, x, y, 3);
    check_derivatives(&g, x, &[], &ds, &[-0.7, 0.1, 0.9], "simple loop");
}

#[test]
fn second_derivative_of_a_checkpointed_loop_is_an_error_naming_the_op() {
    // The first derivative recomputes from checkpoints; differentiating that again would need
    // the gradient of a keep-first write, which has none: an error, never a silent zero.
    let (mut g, x, y) = simple_loop(&WhileOptions::default().gradient_checkpoints(2)).unwrap();
    let d1 = gradients(&mut g, &[y], &[x], None).unwrap()[0].unwrap();
    let err = gradients(&mut g, &[d1], &[x], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TensorArrayWriteV3") && err.contains("keep_first"),
        "{err}"
    );
}

/// v <- sin(v) * 1.3 + 0.2 v², four times; returns (graph, x, result).
fn simple_loop(options: &WhileOptions) -> GResult<(Graph, Output, Output)> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let zero = g.scalar(0i32).unwrap();
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(4i32)?;
            g.less(v[0], n)
        },
        |g, v| {
            let one = g.scalar(1i32)?;
            let s = g.sin(v[1])?;
            let k = g.scalar(1.3f64)?;
            let a = g.mul(s, k)?;
            let sq = g.mul(v[1], v[1])?;
            let c = g.scalar(0.2f64)?;
            let b = g.mul(sq, c)?;
            Ok(vec![g.add(v[0], one)?, g.add(a, b)?])
        },
        &[zero, x],
        options,
    )?;
    Ok((g, x, r[1]))
}

#[test]
fn second_derivative_of_a_loop_with_a_data_dependent_trip_count() {
    // v <- 1.5 v + 0.1 sin(v) c while v < 10: the trip count depends on x; c is fed.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let c = g.placeholder("c", DType::F64, Shape::scalar()).unwrap();
    let r = g
        .while_loop(
            |g, v| {
                let ten = g.scalar(10.0f64)?;
                g.less(v[0], ten)
            },
            |g, v| {
                let k = g.scalar(1.5f64)?;
                let a = g.mul(v[0], k)?;
                let s = g.sin(v[0])?;
                let sc = g.mul(s, c)?;
                let t = g.scalar(0.1f64)?;
                let b = g.mul(sc, t)?;
                let sq = g.mul(v[0], v[0])?;
                let q = g.mul(sq, t)?;
                let ab = g.add(a, b)?;
                Ok(vec![g.add(ab, q)?])
            },
            &[x],
            &WhileOptions::default(),
        )
        .unwrap();
    let ds = derivatives(&mut g, x, r[0], 2);
    let feeds = [(c, Tensor::scalar(0.8f64))];
    check_derivatives(
        &g,
        x,
        &feeds,
        &ds,
        &[0.31, 1.2, 2.9, 6.1],
        "data-dependent trips",
    );
}

#[test]
fn second_derivative_of_nested_loops_with_a_cond_in_the_body() {
    // for i < 3: for j < i + 1: v = cond(v > 0.5, sin(v) v, 0.4 v² + v) * 0.8
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let zero = g.scalar(0i32).unwrap();
    let r = g
        .while_loop(
            |g, v| {
                let three = g.scalar(3i32)?;
                g.less(v[0], three)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let limit = g.add(v[0], one)?;
                let zero = g.scalar(0i32)?;
                let inner = g.while_loop(
                    |g, u| g.less(u[0], limit),
                    |g, u| {
                        let one = g.scalar(1i32)?;
                        let half = g.scalar(0.5f64)?;
                        let p = g.greater(u[1], half)?;
                        let y = g.cond(
                            p,
                            |g| {
                                let s = g.sin(u[1])?;
                                Ok(vec![g.mul(s, u[1])?])
                            },
                            |g| {
                                let sq = g.mul(u[1], u[1])?;
                                let k = g.scalar(0.4f64)?;
                                let a = g.mul(sq, k)?;
                                Ok(vec![g.add(a, u[1])?])
                            },
                        )?;
                        let k = g.scalar(0.8f64)?;
                        Ok(vec![g.add(u[0], one)?, g.mul(y[0], k)?])
                    },
                    &[zero, v[1]],
                    &WhileOptions::default(),
                )?;
                Ok(vec![g.add(v[0], one)?, inner[1]])
            },
            &[zero, x],
            &WhileOptions::default(),
        )
        .unwrap();
    let ds = derivatives(&mut g, x, r[1], 2);
    check_derivatives(
        &g,
        x,
        &[],
        &ds,
        &[0.2, 0.7, 1.4],
        "nested loops with a cond",
    );
}

#[test]
fn a_merge_that_is_no_cond_or_loop_fails_to_differentiate_instead_of_giving_none() {
    // A Merge built by hand is neither a cond's nor a loop's: its gradient is unknown, and
    // treating it as constant would give a silent None (zeros).
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let s = g.sin(x).unwrap();
    let m = g.build("Merge").input(s).input(x).finish().unwrap();
    let y = g.mul(Output::new(m, 0), x).unwrap();
    let err = gradients(&mut g, &[y], &[x], None).unwrap_err().to_string();
    assert!(
        err.contains("Merge") && err.contains("cannot be differentiated"),
        "{err}"
    );
}

#[test]
fn second_derivative_of_a_cond_outside_loops() {
    // y = cond(x > 0, x³, sin(x) x): the first derivative's Merge (the gradient of the
    // branch Switch) is differentiated again through the taken branch.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let zero = g.scalar(0.0f64).unwrap();
    let p = g.greater(x, zero).unwrap();
    let y = g
        .cond(
            p,
            |g| {
                let sq = g.mul(x, x)?;
                Ok(vec![g.mul(sq, x)?])
            },
            |g| {
                let s = g.sin(x)?;
                Ok(vec![g.mul(s, x)?])
            },
        )
        .unwrap();
    let ds = derivatives(&mut g, x, y[0], 3);
    check_derivatives(&g, x, &[], &ds, &[-1.1, -0.3, 0.4, 1.7], "cond");
}

#[test]
fn mixed_second_derivatives_through_a_loop_invariant() {
    // v <- tanh(v w) + 0.3 v, n times (n fed, w an invariant of the loop), y = sum(v) with v a
    // vector: the Hessian-vector products of y in (x, w) against central differences of the
    // first derivatives.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[2])).unwrap();
    let w = g.placeholder("w", DType::F64, Shape::scalar()).unwrap();
    let n = g.placeholder("n", DType::I32, Shape::scalar()).unwrap();
    let zero = g.scalar(0i32).unwrap();
    let r = g
        .while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let one = g.scalar(1i32)?;
                let vw = g.mul(v[1], w)?;
                let t = g.tanh(vw)?;
                let k = g.scalar(0.3f64)?;
                let kv = g.mul(v[1], k)?;
                Ok(vec![g.add(v[0], one)?, g.add(t, kv)?])
            },
            &[zero, x],
            &WhileOptions::default(),
        )
        .unwrap();
    let y = g.reduce_sum(r[1], None, false).unwrap();
    let first = gradients(&mut g, &[y], &[x, w], None).unwrap();
    let (dx, dw) = (first[0].unwrap(), first[1].unwrap());
    // z = dx · u + dw: its gradient is H (u, 1).
    let u = g
        .constant(tfr_graph::TensorValue::new(&[2], vec![0.7f64, -1.3]).unwrap())
        .unwrap();
    let dxu = g.mul(dx, u).unwrap();
    let s = g.reduce_sum(dxu, None, false).unwrap();
    let z = g.add(s, dw).unwrap();
    let second = gradients(&mut g, &[z], &[x, w], None).unwrap();
    let (hx, hw) = (second[0].unwrap(), second[1].unwrap());
    let sess = Session::new(&g, seq()).unwrap();
    let feeds = |xv: &[f64], wv: f64| {
        vec![
            (x, Tensor::new(&[2], xv.to_vec()).unwrap()),
            (w, Tensor::scalar(wv)),
            (n, Tensor::scalar(3i32)),
        ]
    };
    let (xv, wv) = (vec![0.4, -0.9], 0.8);
    let out = sess.run(&feeds(&xv, wv), &[hx, hw], &[]).unwrap();
    let zf = |xv: &[f64], wv: f64| -> Vec<f64> {
        vec![sess.run(&feeds(xv, wv), &[z], &[]).unwrap()[0]
            .scalar_value::<f64>()
            .unwrap()]
    };
    let want_x = numeric_gradient(|v| zf(v, wv), &xv, 1e-5);
    let want_w = numeric_gradient(|v| zf(&xv, v[0]), &[wv], 1e-5);
    assert_close(&out[0].to_f64_vec(), &want_x, 1e-5, "d z / d x");
    assert_close(&out[1].to_f64_vec(), &want_w, 1e-5, "d z / d w");
    assert!(want_x.iter().chain(&want_w).any(|v| v.abs() > 1e-3));
}
