//! LSTM layers: forward values against a plain-Rust reference of TF's BasicLSTMCell (gate
//! order i, j, f, o; forget bias 1.0), unrolled and loop implementations alike, gradients
//! against central differences (through the loop too), and errors naming the argument.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{gradients, DType, Graph, Output, Shape};
use tfr_nn::rnn::{lstm, LstmCell, LstmImpl, LstmOptions};

fn vals(n: usize, k: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((((i * 29 + k * 13) % 19) as f64) - 9.0) / 9.0 * scale)
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One reference step: x [b, d], c and h [b, u], kernel [(d + u), 4u], bias [4u].
#[allow(clippy::too_many_arguments)]
fn ref_step(
    x: &[f64],
    c: &[f64],
    h: &[f64],
    kernel: &[f64],
    bias: &[f64],
    b: usize,
    d: usize,
    u: usize,
    forget_bias: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut nc, mut nh) = (vec![0.0; b * u], vec![0.0; b * u]);
    for r in 0..b {
        let xh: Vec<f64> = x[r * d..(r + 1) * d]
            .iter()
            .chain(&h[r * u..(r + 1) * u])
            .copied()
            .collect();
        let z: Vec<f64> = (0..4 * u)
            .map(|col| {
                bias[col]
                    + (0..d + u)
                        .map(|k| xh[k] * kernel[k * 4 * u + col])
                        .sum::<f64>()
            })
            .collect();
        for q in 0..u {
            let (i, j, f, o) = (z[q], z[u + q], z[2 * u + q], z[3 * u + q]);
            let cc = c[r * u + q] * sigmoid(f + forget_bias) + sigmoid(i) * j.tanh();
            nc[r * u + q] = cc;
            nh[r * u + q] = cc.tanh() * sigmoid(o);
        }
    }
    (nc, nh)
}

/// The reference multi-layer LSTM over x [b, t, f]: (outputs [b, t, u], final (c, h) per layer).
#[allow(clippy::type_complexity)]
fn ref_lstm(
    x: &[f64],
    (b, t, f): (usize, usize, usize),
    u: usize,
    params: &[(Vec<f64>, Vec<f64>)],
) -> (Vec<f64>, Vec<(Vec<f64>, Vec<f64>)>) {
    // seq[s] is [b, depth]
    let mut seq: Vec<Vec<f64>> = (0..t)
        .map(|s| {
            (0..b)
                .flat_map(|r| x[(r * t + s) * f..(r * t + s + 1) * f].to_vec())
                .collect()
        })
        .collect();
    let mut depth = f;
    let mut finals = Vec::new();
    for (kernel, bias) in params {
        let (mut c, mut h) = (vec![0.0; b * u], vec![0.0; b * u]);
        let mut outs = Vec::new();
        for xs in &seq {
            (c, h) = ref_step(xs, &c, &h, kernel, bias, b, depth, u, 1.0);
            outs.push(h.clone());
        }
        finals.push((c, h));
        seq = outs;
        depth = u;
    }
    let mut out = vec![0.0; b * t * u];
    for (s, hs) in seq.iter().enumerate() {
        for r in 0..b {
            out[(r * t + s) * u..(r * t + s + 1) * u].copy_from_slice(&hs[r * u..(r + 1) * u]);
        }
    }
    (out, finals)
}

const B: usize = 2;
const T: usize = 3;
const F: usize = 4;
const U: usize = 3;

fn tensor(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    match dtype {
        DType::F32 => Tensor::new(shape, v.iter().map(|&x| x as f32).collect()).unwrap(),
        _ => Tensor::new(shape, v.to_vec()).unwrap(),
    }
}

/// Builds a 2-layer LSTM on a placeholder x; returns (graph, x, the lstm, feeds of parameters
/// with their reference values).
fn build(dtype: DType, imp: LstmImpl) -> (Graph, Output, tfr_nn::rnn::Lstm) {
    let mut g = Graph::new();
    let x = g.placeholder("x", dtype, Shape::known(&[B, T, F])).unwrap();
    let opts = LstmOptions {
        implementation: imp,
        seed: Some(1),
        ..Default::default()
    };
    let l = lstm(&mut g, "lstm", x, U, 2, &opts).unwrap();
    assert_eq!(g.shape(l.outputs).to_known(), Some(vec![B, T, U]));
    (g, x, l)
}

fn params() -> Vec<(Vec<f64>, Vec<f64>)> {
    vec![
        (vals((F + U) * 4 * U, 1, 0.6), vals(4 * U, 2, 0.3)),
        (vals((U + U) * 4 * U, 3, 0.6), vals(4 * U, 4, 0.3)),
    ]
}

/// Feeds: x, then each layer's kernel and bias values (fed over the variables' reads).
fn feeds(
    dtype: DType,
    x: Output,
    l: &tfr_nn::rnn::Lstm,
    xv: &[f64],
    ps: &[(Vec<f64>, Vec<f64>)],
) -> Vec<(Output, Tensor)> {
    let mut f = vec![(x, tensor(dtype, &[B, T, F], xv))];
    for (cell, (k, b)) in l.cells.iter().zip(ps) {
        let kd = cell.kernel.shape.to_known().unwrap();
        f.push((cell.kernel.value, tensor(dtype, &kd, k)));
        f.push((cell.bias.value, tensor(dtype, &[4 * U], b)));
    }
    f
}

#[test]
fn forward_matches_the_reference() {
    let xv = vals(B * T * F, 5, 1.0);
    let ps = params();
    let (want, finals) = ref_lstm(&xv, (B, T, F), U, &ps);
    for imp in [LstmImpl::Unrolled, LstmImpl::Loop, LstmImpl::Block] {
        let (g, x, l) = build(DType::F32, imp);
        let s = Session::new(&g, SessionOptions::default()).unwrap();
        let mut fetch = vec![l.outputs];
        for (c, h) in &l.final_state {
            fetch.push(*c);
            fetch.push(*h);
        }
        let out = s
            .run(&feeds(DType::F32, x, &l, &xv, &ps), &fetch, &[])
            .unwrap();
        let check = |got: &Tensor, want: &[f64], what: &str| {
            let got = got.to_f64_vec();
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 1e-5, "{imp:?} {what}: {got:?} vs {want:?}");
            }
        };
        check(&out[0], &want, "outputs");
        for (k, (c, h)) in finals.iter().enumerate() {
            check(&out[1 + 2 * k], c, "final c");
            check(&out[2 + 2 * k], h, "final h");
        }
    }
}

#[test]
fn one_cell_step_matches_the_reference() {
    let mut g = Graph::new();
    let cell = LstmCell::new(&mut g, "cell", F, U, 1.0, DType::F64, None).unwrap();
    let x = g.constant_from(&[B, F], vals(B * F, 1, 1.0)).unwrap();
    let c = g.constant_from(&[B, U], vals(B * U, 2, 1.0)).unwrap();
    let h = g.constant_from(&[B, U], vals(B * U, 3, 1.0)).unwrap();
    let (nc, nh) = cell.step(&mut g, x, (c, h)).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let bias = vals(4 * U, 4, 0.5);
    let out = s
        .run(
            &[(
                cell.bias.value,
                Tensor::new(&[4 * U], bias.clone()).unwrap(),
            )],
            &[nc, nh, cell.kernel.value],
            &[],
        )
        .unwrap();
    let kernel = out[2].to_f64_vec();
    let (wc, wh) = ref_step(
        &vals(B * F, 1, 1.0),
        &vals(B * U, 2, 1.0),
        &vals(B * U, 3, 1.0),
        &kernel,
        &bias,
        B,
        F,
        U,
        1.0,
    );
    for (got, want) in [(out[0].to_f64_vec(), wc), (out[1].to_f64_vec(), wh)] {
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }
}

fn check_gradients(imp: LstmImpl) {
    let (mut g, x, l) = build(DType::F64, imp);
    let c = g
        .constant_from(&[B, T, U], vals(B * T * U, 7, 1.0))
        .unwrap();
    let weighted = g.mul(l.outputs, c).unwrap();
    let a = g.reduce_sum(weighted, None, false).unwrap();
    let fc = g.reduce_sum(l.final_state[0].0, None, false).unwrap();
    let loss = g.add(a, fc).unwrap();
    let mut xs = vec![x];
    for cell in &l.cells {
        xs.push(cell.kernel.value);
        xs.push(cell.bias.value);
    }
    let grads: Vec<Output> = gradients(&mut g, &[loss], &xs, None)
        .unwrap()
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let xv = vals(B * T * F, 5, 1.0);
    let ps = params();
    let base = feeds(DType::F64, x, &l, &xv, &ps);
    let sym = s.run(&base, &grads, &[]).unwrap();
    let eps = 1e-6;
    for (i, (_, t)) in base.iter().enumerate() {
        let v = t.to_f64_vec();
        let sy = sym[i].to_f64_vec();
        // Every element of x and the biases; a spread of kernel elements (keeps the test fast).
        let stride = if v.len() > 40 { 7 } else { 1 };
        for k in (0..v.len()).step_by(stride) {
            let at = |d: f64| {
                let mut f = base.clone();
                let mut w = v.clone();
                w[k] += d;
                f[i].1 = Tensor::new(t.shape(), w).unwrap();
                s.run(&f, &[loss], &[]).unwrap()[0].to_f64_vec()[0]
            };
            let num = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (num - sy[k]).abs() < 1e-6 * (1.0 + num.abs()),
                "{imp:?} input {i} element {k}: numeric {num} vs symbolic {}",
                sy[k]
            );
        }
    }
}

#[test]
fn unrolled_gradients_match_central_differences() {
    check_gradients(LstmImpl::Unrolled);
}

#[test]
fn loop_gradients_match_central_differences() {
    check_gradients(LstmImpl::Loop);
}

#[test]
fn block_lstm_gradients_match_central_differences() {
    check_gradients(LstmImpl::Block);
}

#[test]
fn bad_inputs_are_errors() {
    let mut g = Graph::new();
    let flat = g
        .placeholder("f", DType::F32, Shape::known(&[B, F]))
        .unwrap();
    let e = lstm(&mut g, "l", flat, U, 1, &LstmOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x") && e.contains("[batch, time, features]"),
        "{e}"
    );
    let ints = g
        .placeholder("i", DType::I32, Shape::known(&[B, T, F]))
        .unwrap();
    let e = lstm(&mut g, "l", ints, U, 1, &LstmOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("int32"), "{e}");
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[B, T, F]))
        .unwrap();
    let e = lstm(&mut g, "l", x, U, 0, &LstmOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("num_layers"), "{e}");
    let z = g
        .constant_from(&[B, U + 1], vec![0f32; B * (U + 1)])
        .unwrap();
    let opts = LstmOptions {
        initial_state: Some(vec![(z, z)]),
        ..Default::default()
    };
    let e = lstm(&mut g, "l", x, U, 1, &opts).unwrap_err().to_string();
    assert!(e.contains("initial_state") && e.contains("[2, 3]"), "{e}");
    let cell = LstmCell::new(&mut g, "c", F, U, 1.0, DType::F32, None).unwrap();
    let wrong = g
        .constant_from(&[B, F + 2], vec![0f32; B * (F + 2)])
        .unwrap();
    let zs = g.constant_from(&[B, U], vec![0f32; B * U]).unwrap();
    let e = cell.step(&mut g, wrong, (zs, zs)).unwrap_err().to_string();
    assert!(e.contains("[batch, 4]"), "{e}");
}

/// The paper's LM, shrunk: a repeated batch is learned with either softmax.
#[test]
fn small_language_model_learns_a_batch() {
    use tfr_nn::models::lstm_lm::{lstm_lm, LstmLmConfig, Softmax};
    for softmax in [Softmax::Full, Softmax::Sampled(8)] {
        let mut g = Graph::new();
        let c = LstmLmConfig {
            vocab: 40,
            embedding: 8,
            hidden: 8,
            layers: 2,
            steps: 5,
            batch: 3,
            learning_rate: 1.0,
            ..LstmLmConfig::paper(40, softmax)
        };
        let m = lstm_lm(&mut g, &c).unwrap();
        let init = g.global_variables_initializer().unwrap();
        let s = Session::new(&g, SessionOptions::default()).unwrap();
        s.run(&[], &[], &[init]).unwrap();
        let ids: Vec<i32> = (0..15).map(|i| i * 7 % 40).collect();
        let tgt: Vec<i32> = (0..15).map(|i| (i * 7 + 7) % 40).collect();
        let feeds = [
            (m.ids, Tensor::new(&[3, 5], ids).unwrap()),
            (m.targets, Tensor::new(&[3, 5], tgt).unwrap()),
        ];
        let eval = |s: &Session| s.run(&feeds, &[m.eval_loss], &[]).unwrap()[0].to_f64_vec()[0];
        let before = eval(&s);
        assert!((before - 40f64.ln()).abs() < 0.5, "{before}");
        for _ in 0..200 {
            s.run(&feeds, &[], &[m.train]).unwrap();
        }
        let after = eval(&s);
        assert!(after < before * 0.6, "{softmax:?}: {before} -> {after}");
    }
}
