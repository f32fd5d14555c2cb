//! End-to-end training on data the test generates: the loss must fall below a threshold within
//! a fixed number of steps, and the run must be deterministic with a graph seed.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Dim, Graph, Shape};
use tfr_nn::layers::{dense, Activation};
use tfr_nn::losses::sparse_softmax_cross_entropy;
use tfr_nn::optimizers::{Adam, Optimizer, Sgd};

/// A tiny deterministic generator (tests must not depend on a crate's stream).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// Two interleaved spirals: (points [2n, 2], labels [2n]).
fn spirals(n: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let mut rng = Lcg(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for class in 0..2 {
        for i in 0..n {
            let t = i as f32 / n as f32;
            let angle = t * 3.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
            let r = 0.1 + t;
            x.push(r * angle.cos() + 0.02 * (rng.next() - 0.5));
            x.push(r * angle.sin() + 0.02 * (rng.next() - 0.5));
            y.push(class);
        }
    }
    (x, y)
}

/// Trains and returns the loss after each step.
fn train(
    hidden: &[usize],
    mut opt: impl Optimizer,
    steps: usize,
    x: &[f32],
    y: &[i32],
    seed: u64,
) -> Vec<f32> {
    let mut g = Graph::new();
    g.seed = Some(seed);
    let n = y.len();
    let xs = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(2)]),
        )
        .unwrap();
    let ys = g
        .placeholder("y", DType::I32, Shape::new(vec![Dim::Sym("B".into())]))
        .unwrap();
    let mut h = xs;
    let mut vars = Vec::new();
    for (i, &units) in hidden.iter().enumerate() {
        let l = dense(
            &mut g,
            &format!("hidden{i}"),
            h,
            units,
            Activation::Tanh,
            None,
        )
        .unwrap();
        vars.extend([l.kernel, l.bias]);
        h = l.output;
    }
    let out = dense(&mut g, "logits", h, 2, Activation::Linear, None).unwrap();
    vars.extend([out.kernel, out.bias]);
    let loss = sparse_softmax_cross_entropy(&mut g, out.output, ys).unwrap();
    let train = opt.minimize(&mut g, loss, &vars, None).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let step = s.make_callable(&[xs, ys], &[loss], &[train]).unwrap();
    let feeds = [
        Tensor::new(&[n, 2], x.to_vec()).unwrap(),
        Tensor::new(&[n], y.to_vec()).unwrap(),
    ];
    (0..steps)
        .map(|_| step.call(&feeds).unwrap()[0].scalar_value::<f32>().unwrap())
        .collect()
}

#[test]
fn logistic_regression_separates_two_blobs() {
    let mut rng = Lcg(7);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let c = i % 2;
        let center = if c == 0 { -1.0 } else { 1.0 };
        x.push(center + rng.next() - 0.5);
        x.push(-center + rng.next() - 0.5);
        y.push(c);
    }
    let losses = train(&[], Sgd::new(0.5), 100, &x, &y, 1);
    assert!(losses[0] > 0.3, "starts untrained: {}", losses[0]);
    assert!(
        *losses.last().unwrap() < 0.05,
        "final loss {}",
        losses.last().unwrap()
    );
}

#[test]
fn mlp_learns_two_spirals_deterministically() {
    let (x, y) = spirals(100, 3);
    let losses = train(&[32, 32], Adam::new(0.02), 600, &x, &y, 42);
    let last = *losses.last().unwrap();
    assert!(losses[0] > 0.5, "starts near chance: {}", losses[0]);
    assert!(last < 0.05, "final loss {last}");
    let again = train(&[32, 32], Adam::new(0.02), 600, &x, &y, 42);
    assert_eq!(losses, again, "same seed, same trajectory");
    let other = train(&[32, 32], Adam::new(0.02), 5, &x, &y, 43);
    assert_ne!(
        losses[..5],
        other[..],
        "another seed, another initialization"
    );
}
