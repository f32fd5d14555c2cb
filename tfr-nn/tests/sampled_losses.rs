//! `sampled_softmax_loss` and `nce_loss` (issue 14): equal to the full softmax when the sampled
//! set is the whole vocabulary, against a plain-Rust reference, gradients against central
//! differences, sparse gradients to the class variables, and clear errors for bad shapes.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::indexed_slices::Gradient;
use tfr_graph::ops::candidate_sampling_ops::{SampledValues, Sampler};
use tfr_graph::{gradients, DType, Graph, Output, Shape};
use tfr_nn::optimizers::{compute_gradient_values, Optimizer, Sgd};
use tfr_nn::sampled_losses::{nce_loss, sampled_softmax_loss, SampledLossOptions};

const V: usize = 7;
const D: usize = 3;
const B: usize = 4;

fn vals(n: usize, k: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i * 37 + k * 11) % 23) as f64 - 11.0) / 9.0)
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn run(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output) -> Vec<f64> {
    let s = Session::new(g, SessionOptions::default()).unwrap();
    s.run(feeds, &[fetch], &[]).unwrap()[0].to_f64_vec()
}

/// Fixed sampled values: every class once, expected counts 1.
fn whole_vocab(g: &mut Graph, batch: usize, num_true: usize) -> SampledValues {
    SampledValues {
        sampled_candidates: g.constant_from(&[V], (0..V as i64).collect()).unwrap(),
        true_expected_count: g
            .constant_from(&[batch, num_true], vec![1f32; batch * num_true])
            .unwrap(),
        sampled_expected_count: g.constant_from(&[V], vec![1f32; V]).unwrap(),
    }
}

const LABELS: [i64; B] = [2, 0, 6, 2];

/// (full softmax cross-entropy, sampled softmax loss) per example.
fn full_and_sampled(opts_of: impl Fn(&mut Graph) -> SampledLossOptions) -> (Vec<f64>, Vec<f64>) {
    let mut g = Graph::new();
    let w = g.constant_from(&[V, D], f32s(&vals(V * D, 1))).unwrap();
    let b = g.constant_from(&[V], f32s(&vals(V, 2))).unwrap();
    let x = g.constant_from(&[B, D], f32s(&vals(B * D, 3))).unwrap();
    let labels = g.constant_from(&[B, 1], LABELS.to_vec()).unwrap();
    let opts = opts_of(&mut g);
    let loss = sampled_softmax_loss(&mut g, w, b, labels, x, V, V, &opts).unwrap();
    assert_eq!(g.shape(loss).to_known(), Some(vec![B]));
    let logits = g.matmul_t(x, w, false, true).unwrap();
    let logits = g.add(logits, b).unwrap();
    let flat = g.reshape(labels, &[-1]).unwrap();
    let full = g
        .sparse_softmax_cross_entropy_with_logits(logits, flat)
        .unwrap();
    (run(&g, &[], full), run(&g, &[], loss))
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + x.abs()),
            "[{i}]: {x} vs {y}\n{a:?}\n{b:?}"
        );
    }
}

#[test]
fn whole_vocabulary_sampled_equals_full_softmax() {
    let (full, sampled) = full_and_sampled(|g| SampledLossOptions {
        sampled_values: Some(whole_vocab(g, B, 1)),
        ..Default::default()
    });
    assert_close(&full, &sampled, 1e-5);
}

#[test]
fn uniform_sampler_over_the_whole_vocabulary_equals_full_softmax() {
    // Unique uniform draws of every class: every expected count is the same, so subtracting
    // its log shifts all logits equally and the softmax is the full one.
    let (full, sampled) = full_and_sampled(|_| SampledLossOptions {
        sampler: Sampler::Uniform,
        seed: Some(9),
        ..Default::default()
    });
    assert_close(&full, &sampled, 1e-5);
}

fn sigmoid_xent(x: f64, z: f64) -> f64 {
    x.max(0.0) - x * z + (-x.abs()).exp().ln_1p()
}

#[test]
fn nce_loss_matches_a_reference() {
    // num_true = 2, sampled classes 1, 2, 5 with counts; accidental hits kept (TF's default).
    let labels = [[2i64, 0], [6, 5], [3, 3], [1, 4]];
    let sampled = [1i64, 2, 5];
    let tc: Vec<f64> = (0..B * 2).map(|i| 0.1 + i as f64 / 20.0).collect();
    let sc = [0.3, 0.2, 0.6];
    let (w, b, x) = (vals(V * D, 1), vals(V, 2), vals(B * D, 3));
    let mut g = Graph::new();
    let wc = g.constant_from(&[V, D], f32s(&w)).unwrap();
    let bc = g.constant_from(&[V], f32s(&b)).unwrap();
    let xc = g.constant_from(&[B, D], f32s(&x)).unwrap();
    let lc = g
        .constant_from(&[B, 2], labels.iter().flatten().copied().collect())
        .unwrap();
    let sv = SampledValues {
        sampled_candidates: g.constant_from(&[3], sampled.to_vec()).unwrap(),
        true_expected_count: g.constant_from(&[B, 2], f32s(&tc)).unwrap(),
        sampled_expected_count: g.constant_from(&[3], f32s(&sc)).unwrap(),
    };
    let opts = SampledLossOptions {
        num_true: 2,
        sampled_values: Some(sv),
        ..Default::default()
    };
    let loss = nce_loss(&mut g, wc, bc, lc, xc, 3, V, &opts).unwrap();
    let got = run(&g, &[], loss);
    let logit = |r: usize, c: i64| {
        let c = c as usize;
        (0..D).map(|k| x[r * D + k] * w[c * D + k]).sum::<f64>() + b[c]
    };
    let want: Vec<f64> = (0..B)
        .map(|r| {
            let t: f64 = (0..2)
                .map(|j| {
                    let l = logit(r, labels[r][j]) - (tc[r * 2 + j] as f32 as f64).ln();
                    sigmoid_xent(l, 0.5)
                })
                .sum();
            let s: f64 = (0..3)
                .map(|k| sigmoid_xent(logit(r, sampled[k]) - (sc[k] as f32 as f64).ln(), 0.0))
                .sum();
            t + s
        })
        .collect();
    assert_close(&want, &got, 1e-5);
}

/// Loss graph over f64 placeholders w, b, x; returns (graph, [w, b, x], scalar loss).
fn gradient_graph(nce: bool) -> (Graph, Vec<Output>, Output) {
    let mut g = Graph::new();
    let w = g
        .placeholder("w", DType::F64, Shape::known(&[V, D]))
        .unwrap();
    let b = g.placeholder("b", DType::F64, Shape::known(&[V])).unwrap();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[B, D]))
        .unwrap();
    // Class 2 is a label and sampled: an accidental hit, removed in both losses here.
    let labels = g
        .constant_from(&[B, 2], vec![2i32, 0, 6, 5, 3, 3, 1, 4])
        .unwrap();
    let sv = SampledValues {
        sampled_candidates: g.constant_from(&[3], vec![1i64, 2, 5]).unwrap(),
        true_expected_count: g
            .constant_from(&[B, 2], (0..8).map(|i| 0.2 + i as f32 / 16.0).collect())
            .unwrap(),
        sampled_expected_count: g.constant_from(&[3], vec![0.3f32, 0.2, 0.6]).unwrap(),
    };
    let opts = SampledLossOptions {
        num_true: 2,
        sampled_values: Some(sv),
        remove_accidental_hits: Some(true),
        ..Default::default()
    };
    let per = if nce {
        nce_loss(&mut g, w, b, labels, x, 3, V, &opts).unwrap()
    } else {
        sampled_softmax_loss(&mut g, w, b, labels, x, 3, V, &opts).unwrap()
    };
    let c = g
        .constant_from(&[B], vec![1.0f64, -0.5, 2.0, 0.75])
        .unwrap();
    let weighted = g.mul(per, c).unwrap();
    let loss = g.reduce_sum(weighted, None, false).unwrap();
    (g, vec![w, b, x], loss)
}

fn check_gradients(nce: bool) {
    let (mut g, xs, loss) = gradient_graph(nce);
    let grads: Vec<Output> = gradients(&mut g, &[loss], &xs, None)
        .unwrap()
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    let shapes = [vec![V, D], vec![V], vec![B, D]];
    let values = [vals(V * D, 1), vals(V, 2), vals(B * D, 3)];
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let feeds = |vs: &[Vec<f64>]| -> Vec<(Output, Tensor)> {
        (0..3)
            .map(|i| (xs[i], Tensor::new(&shapes[i], vs[i].clone()).unwrap()))
            .collect()
    };
    let symbolic = s.run(&feeds(&values), &grads, &[]).unwrap();
    let eps = 1e-6;
    for i in 0..3 {
        let sym = symbolic[i].to_f64_vec();
        for k in 0..values[i].len() {
            let at = |delta: f64| {
                let mut v = values.to_vec();
                v[i][k] += delta;
                s.run(&feeds(&v), &[loss], &[]).unwrap()[0].to_f64_vec()[0]
            };
            let num = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (num - sym[k]).abs() <= 1e-6 * (1.0 + num.abs()),
                "nce={nce} input {i} element {k}: numeric {num} vs symbolic {}",
                sym[k]
            );
        }
    }
}

#[test]
fn sampled_softmax_gradients_match_central_differences() {
    check_gradients(false);
}

#[test]
fn nce_gradients_match_central_differences() {
    check_gradients(true);
}

#[test]
fn class_variables_get_sparse_gradients() {
    let rows = 1000;
    let mut g = Graph::new();
    let w0 = g.constant_from(&[rows, D], vec![0.5f32; rows * D]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let b0 = g.constant_from(&[rows], vec![0f32; rows]).unwrap();
    let b = g.variable("b", b0).unwrap();
    let x = g.constant_from(&[B, D], f32s(&vals(B * D, 3))).unwrap();
    let labels = g.constant_from(&[B, 1], LABELS.to_vec()).unwrap();
    let opts = SampledLossOptions {
        seed: Some(1),
        ..Default::default()
    };
    let per = sampled_softmax_loss(&mut g, &w, &b, labels, x, 16, rows, &opts).unwrap();
    let loss = g.reduce_mean(per, None, false).unwrap();
    let vars = [w.clone(), b.clone()];
    let grads = compute_gradient_values(&mut g, loss, &vars).unwrap();
    assert!(grads
        .iter()
        .all(|(gr, _)| matches!(gr, Gradient::Slices(_))));
    let step = Sgd::new(0.5)
        .apply_gradient_values(&mut g, &grads, None)
        .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    s.run(&[], &[], &[step]).unwrap();
    let after = s.run(&[], &[w.value], &[]).unwrap()[0]
        .to_vec::<f32>()
        .unwrap();
    let changed = (0..rows)
        .filter(|r| after[r * D..(r + 1) * D].iter().any(|&v| v != 0.5))
        .count();
    // The true classes and at most 16 sampled ones moved; everything else is untouched.
    assert!((1..=16 + B).contains(&changed), "{changed} rows changed");
}

#[test]
fn bad_shapes_are_clear_errors() {
    let mut g = Graph::new();
    let w = g.constant_from(&[V, D], vec![0f32; V * D]).unwrap();
    let b = g.constant_from(&[V], vec![0f32; V]).unwrap();
    let x = g.constant_from(&[B, D], vec![0f32; B * D]).unwrap();
    let labels = g.constant_from(&[B, 1], LABELS.to_vec()).unwrap();
    let o = SampledLossOptions::default();
    let expect = |g: &mut Graph,
                  w: Output,
                  b: Output,
                  l: Output,
                  x: Output,
                  classes: usize,
                  words: &[&str]| {
        let e = sampled_softmax_loss(g, w, b, l, x, 3, classes, &o)
            .unwrap_err()
            .to_string();
        for word in words {
            assert!(e.contains(word), "`{word}` not in: {e}");
        }
    };
    let x_wide = g
        .constant_from(&[B, D + 1], vec![0f32; B * (D + 1)])
        .unwrap();
    expect(
        &mut g,
        w,
        b,
        labels,
        x_wide,
        V,
        &["inputs", "dim = 3", "[4, 4]"],
    );
    let w_vec = g.constant_from(&[V], vec![0f32; V]).unwrap();
    expect(
        &mut g,
        w_vec,
        b,
        labels,
        x,
        V,
        &["weights", "[num_classes, dim]"],
    );
    expect(
        &mut g,
        w,
        b,
        labels,
        x,
        V + 1,
        &["weights", "num_classes = 8", "[7, 3]"],
    );
    let b_bad = g.constant_from(&[V - 1], vec![0f32; V - 1]).unwrap();
    expect(&mut g, w, b_bad, labels, x, V, &["biases", "[7]", "[6]"]);
    let few = g.constant_from(&[B - 1, 1], vec![1i64; B - 1]).unwrap();
    expect(
        &mut g,
        w,
        b,
        few,
        x,
        V,
        &["labels", "3 rows", "inputs have 4"],
    );
    let flat = g.constant_from(&[B], LABELS.to_vec()).unwrap();
    expect(
        &mut g,
        w,
        b,
        flat,
        x,
        V,
        &["labels", "[batch, num_true = 1]"],
    );
    let fl = g.constant_from(&[B, 1], vec![0f32; B]).unwrap();
    expect(
        &mut g,
        w,
        b,
        fl,
        x,
        V,
        &["labels", "int32 or int64", "float32"],
    );
    let e = sampled_softmax_loss(&mut g, w, b, labels, x, V + 1, V, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("range_max") && e.contains("num_sampled"), "{e}");
    // An out-of-range label fails the step, naming it.
    let bad = g.constant_from(&[B, 1], vec![0i64, 1, 70, 2]).unwrap();
    let loss = sampled_softmax_loss(&mut g, w, b, bad, x, 3, V, &o).unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let e = s.run(&[], &[loss], &[]).unwrap_err().to_string();
    assert!(e.contains("70"), "{e}");
}
