//! BlockLSTM and BlockLSTMGrad against a plain-Rust reference of TensorFlow's definition, and
//! their error paths (gradients: `tests/gradient_cases/rnn_ops.rs`).

use tfr_graph::ops::rnn_ops::BlockLstmAttrs;
use tfr_graph::{DType, Graph, Output, Shape};

use crate::common::*;

/// Sizes of the reference problem.
const T: usize = 4;
const B: usize = 3;
const I: usize = 2;
const C: usize = 5;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// TensorFlow's BlockLSTM, step by step: (i, cs, f, o, ci, co, h), each [T, B, C].
#[allow(clippy::too_many_arguments)]
fn reference(
    steps: usize,
    x: &[f64],
    cs0: &[f64],
    h0: &[f64],
    w: &[f64],
    peep: [&[f64]; 3],
    b: &[f64],
    a: BlockLstmAttrs,
) -> Vec<Vec<f64>> {
    let mut outs = vec![vec![0.0; T * B * C]; 7];
    let (mut cs_prev, mut h_prev) = (cs0.to_vec(), h0.to_vec());
    let p = |v: &[f64], j: usize| if a.use_peephole { v[j] } else { 0.0 };
    for t in 0..steps {
        let mut cs_t = vec![0.0; B * C];
        let mut h_t = vec![0.0; B * C];
        for r in 0..B {
            let xh: Vec<f64> = x[(t * B + r) * I..(t * B + r + 1) * I]
                .iter()
                .chain(&h_prev[r * C..(r + 1) * C])
                .copied()
                .collect();
            let z: Vec<f64> = (0..4 * C)
                .map(|n| {
                    b[n] + xh
                        .iter()
                        .enumerate()
                        .map(|(k, v)| v * w[k * 4 * C + n])
                        .sum::<f64>()
                })
                .collect();
            for j in 0..C {
                let csp = cs_prev[r * C + j];
                let i = sigmoid(z[j] + csp * p(peep[0], j));
                let ci = z[C + j].tanh();
                let f = sigmoid(z[2 * C + j] + a.forget_bias as f64 + csp * p(peep[1], j));
                let mut cs = ci * i + csp * f;
                if a.cell_clip > 0.0 {
                    cs = cs.clamp(-(a.cell_clip as f64), a.cell_clip as f64);
                }
                let o = sigmoid(z[3 * C + j] + cs * p(peep[2], j));
                let co = cs.tanh();
                let k = (t * B + r) * C + j;
                for (out, v) in outs.iter_mut().zip([i, cs, f, o, ci, co, co * o]) {
                    out[k] = v;
                }
                cs_t[r * C + j] = cs;
                h_t[r * C + j] = co * o;
            }
        }
        (cs_prev, h_prev) = (cs_t, h_t);
    }
    outs
}

struct Problem {
    x: Vec<f64>,
    cs0: Vec<f64>,
    h0: Vec<f64>,
    w: Vec<f64>,
    peep: [Vec<f64>; 3],
    b: Vec<f64>,
}

fn problem() -> Problem {
    Problem {
        x: random(T * B * I, 1).iter().map(|v| 2.0 * v).collect(),
        cs0: random(B * C, 2),
        h0: random(B * C, 3),
        w: random((I + C) * 4 * C, 4),
        peep: [random(C, 5), random(C, 6), random(C, 7)],
        b: random(4 * C, 8),
    }
}

/// The graph of one BlockLSTM on constants of `dtype`.
fn build(p: &Problem, dtype: DType, steps: i64, a: BlockLstmAttrs) -> (Graph, Vec<Output>) {
    let mut g = Graph::new();
    let mut c = |shape: &[usize], v: &[f64]| -> Output {
        let o = g.constant_from(shape, v.to_vec()).unwrap();
        if dtype == DType::F64 {
            o
        } else {
            g.cast(o, dtype).unwrap()
        }
    };
    let ins = [
        c(&[T, B, I], &p.x),
        c(&[B, C], &p.cs0),
        c(&[B, C], &p.h0),
        c(&[I + C, 4 * C], &p.w),
        c(&[C], &p.peep[0]),
        c(&[C], &p.peep[1]),
        c(&[C], &p.peep[2]),
        c(&[4 * C], &p.b),
    ];
    let s = g.scalar(steps).unwrap();
    let r = g
        .block_lstm(
            [
                s, ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6], ins[7],
            ],
            a,
        )
        .unwrap();
    (g, vec![r.i, r.cs, r.f, r.o, r.ci, r.co, r.h])
}

#[test]
fn block_lstm_matches_the_reference() {
    let p = problem();
    let variants = [
        (BlockLstmAttrs::default(), T),
        (
            BlockLstmAttrs {
                forget_bias: 0.5,
                cell_clip: 0.3,
                use_peephole: true,
            },
            T,
        ),
        (BlockLstmAttrs::default(), 2),
        (BlockLstmAttrs::default(), 0),
    ];
    for (a, steps) in variants {
        let peep = [&p.peep[0][..], &p.peep[1], &p.peep[2]];
        let want = reference(steps, &p.x, &p.cs0, &p.h0, &p.w, peep, &p.b, a);
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-6)] {
            let (g, outs) = build(&p, dtype, steps as i64, a);
            let got = run(&g, &[], &outs);
            for (k, (gv, wv)) in got.iter().zip(&want).enumerate() {
                assert_eq!(gv.shape(), &[T, B, C]);
                for (x, y) in gv.to_f64_vec().iter().zip(wv) {
                    assert!(
                        (x - y).abs() <= tol,
                        "{a:?} steps {steps} {dtype} output {k}: {x} vs {y}"
                    );
                }
            }
        }
    }
}

/// Every input's placeholder (unknown shapes) and a BlockLSTM named `lstm` over them.
fn dynamic_graph() -> (Graph, Vec<Output>, Output) {
    let mut g = Graph::new();
    let mut xs = vec![g
        .placeholder("seq_len_max", DType::I64, Shape::unknown())
        .unwrap()];
    for k in 0..8 {
        xs.push(
            g.placeholder(&format!("in{k}"), DType::F32, Shape::unknown())
                .unwrap(),
        );
    }
    let h = Output::new(
        g.build("BlockLSTM")
            .name("lstm")
            .inputs(xs.iter().copied())
            .finish()
            .unwrap(),
        6,
    );
    (g, xs, h)
}

fn feeds(xs: &[Output], steps: i64, shapes: [&[usize]; 8]) -> Vec<(Output, tfr_core::Tensor)> {
    let mut f = vec![(xs[0], tfr_core::Tensor::scalar(steps))];
    for (k, s) in shapes.iter().enumerate() {
        let n = s.iter().product();
        f.push((xs[k + 1], t::<f32>(s, vec![0.1; n])));
    }
    f
}

#[test]
fn bad_inputs_are_errors_naming_the_node() {
    let good: [&[usize]; 8] = [
        &[T, B, I],
        &[B, C],
        &[B, C],
        &[I + C, 4 * C],
        &[C],
        &[C],
        &[C],
        &[4 * C],
    ];
    let (g, xs, h) = dynamic_graph();
    assert_eq!(
        run(&g, &feeds(&xs, T as i64, good), &[h])[0].shape(),
        &[T, B, C]
    );
    // `good` with input `k`'s shape replaced.
    let with = |k: usize, shape: &'static [usize]| {
        let mut shapes = good;
        shapes[k] = shape;
        shapes
    };
    let bad_w = with(3, &[I + C + 1, 4 * C]);
    let bad_x = with(0, &[T, B]);
    let bad_b = with(7, &[C]);
    for (shapes, steps, what) in [
        (bad_w, T as i64, "w must have shape"),
        (bad_x, T as i64, "x must be 3-D"),
        (bad_b, T as i64, "b must have shape"),
        (good, T as i64 + 1, "seq_len_max must be in [0, 4]"),
        (good, -1, "seq_len_max must be in [0, 4]"),
    ] {
        let e = run_err(&g, &feeds(&xs, steps, shapes), h).to_string();
        assert!(e.contains("`lstm`") && e.contains(what), "{what}: {e}");
    }
    // Static shapes: the shape function rejects them when the node is built.
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[T, B, I]))
        .unwrap();
    let s = g.scalar(T as i64).unwrap();
    let cs = g
        .placeholder("cs", DType::F32, Shape::known(&[B, C]))
        .unwrap();
    let w = g
        .placeholder("w", DType::F32, Shape::known(&[I + C, 4 * C]))
        .unwrap();
    let v = g.placeholder("v", DType::F32, Shape::known(&[C])).unwrap();
    let bad_b = g
        .placeholder("bb", DType::F32, Shape::known(&[3 * C]))
        .unwrap();
    let e = g
        .build("BlockLSTM")
        .name("static_lstm")
        .inputs([s, x, cs, cs, w, v, v, v, bad_b])
        .finish()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`static_lstm`") && e.contains("b's size"), "{e}");
    let short = g
        .placeholder("short", DType::F32, Shape::known(&[B, C + 1]))
        .unwrap();
    let e = g
        .build("BlockLSTM")
        .name("static_lstm2")
        .inputs([s, x, cs, short, w, v, v, v, v])
        .finish()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`static_lstm2`") && e.contains("cell dim"),
        "{e}"
    );
}

#[test]
fn gradients_reaching_the_gate_outputs_are_errors() {
    let p = problem();
    let (mut g, outs) = build(&p, DType::F64, T as i64, BlockLstmAttrs::default());
    let xin = g.node(outs[0].node).inputs[1];
    let e = tfr_graph::gradients(&mut g, &[outs[0]], &[xin], None).unwrap_err();
    assert!(e.to_string().contains("output `i`"), "{e}");
    let d = tfr_graph::gradients(&mut g, &[outs[6]], &[xin], None).unwrap();
    assert!(d[0].is_some());
}
