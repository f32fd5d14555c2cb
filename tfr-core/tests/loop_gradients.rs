//! Gradients through `while_loop` bodies (issue 17):
//! - gradient rules that read a constant input (an axis, a permutation, paddings, a shape) work
//!   inside a loop body, where the constant enters through an `Enter`, and keep the static
//!   shapes and constant shape vectors they have outside loops;
//! - higher-order gradients through loops (checked against central differences of the first
//!   derivative), and errors, never zeros, where a path cannot be differentiated.

mod common;

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
