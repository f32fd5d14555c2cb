//! Training models defined with `graph!`: the loss must fall within a fixed number of steps,
//! deterministically with a graph seed.

use ndarray::{Array1, Array2};
use tfr::graph;

/// A tiny deterministic generator.
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

/// Two interleaved spirals: points [2n, 2] and labels [2n].
fn spirals(n: usize, seed: u64) -> (Array2<f32>, Array1<i32>) {
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
    (
        Array2::from_shape_vec((2 * n, 2), x).unwrap(),
        Array1::from_vec(y),
    )
}

graph! {
    /// Two tanh layers of 32 units and a softmax over two classes.
    pub model SpiralMlp<B> {
        seed = 42;
        input x: f32[B, 2];
        input labels: i32[B];
        scope "hidden0" {
            var w0: f32[2, 32] = glorot_uniform();
            var b0: f32[32] = zeros();
            let h0 = tanh(x.matmul(w0) + b0);
        }
        scope "hidden1" {
            var w1: f32[32, 32] = glorot_uniform();
            var b1: f32[32] = zeros();
            let h1 = tanh(h0.matmul(w1) + b1);
        }
        var w2: f32[32, 2] = glorot_uniform();
        var b2: f32[2] = zeros();
        output logits = h1.matmul(w2) + b2;
        output loss = sparse_softmax_cross_entropy(logits, labels);
        output accuracy = mean(cast(argmax(logits, 1) == cast(labels, i64), f32));
        let train = minimize(loss, Adam(0.02));
    }
}

fn train_spirals(steps: usize) -> (Vec<f32>, f32) {
    let (x, y) = spirals(100, 3);
    let m = SpiralMlp::new();
    let s = m.session().unwrap();
    let feeds = [m.x.feed(&x).unwrap(), m.labels.feed(&y).unwrap()];
    let losses: Vec<f32> = (0..steps)
        .map(|_| s.run(&feeds, &m.loss, &[m.train]).unwrap().into_scalar())
        .collect();
    let acc = s.run(&feeds, &m.accuracy, &[]).unwrap().into_scalar();
    (losses, acc)
}

#[test]
fn mlp_learns_two_spirals_deterministically() {
    let (losses, acc) = train_spirals(600);
    let last = *losses.last().unwrap();
    assert!(losses[0] > 0.5, "starts near chance: {}", losses[0]);
    assert!(last < 0.05, "final loss {last}");
    assert!(acc > 0.98, "accuracy {acc}");
    let (again, _) = train_spirals(600);
    assert_eq!(losses, again, "same seed, same trajectory");
}

graph! {
    /// Linear regression trained by plain gradient descent, written out with `grad`.
    model Linear<N> {
        input x: f32[N];
        input y: f32[N];
        var w: f32[] = 0.0;
        var b: f32[] = 0.0;
        let err = w * x + b - y;
        output loss = mean(square(err));
        let (dw, db) = grad(loss, wrt = [w, b]);
        let train = group([assign_sub(w, 0.1 * dw), assign_sub(b, 0.1 * db)]);
    }
}

#[test]
fn hand_written_gradient_descent_fits_a_line() {
    let m = Linear::new();
    let s = m.session().unwrap();
    let x = Array1::linspace(-1.0f32, 1.0, 21);
    let y = x.mapv(|v| 3.0 * v + 2.0);
    let feeds = [m.x.feed(&x).unwrap(), m.y.feed(&y).unwrap()];
    for _ in 0..300 {
        s.run(&feeds, (), &[m.train]).unwrap();
    }
    let (w, b, loss) = s.run(&feeds, (&m.w, &m.b, &m.loss), &[]).unwrap();
    assert!((w.into_scalar() - 3.0).abs() < 1e-3);
    assert!((b.into_scalar() - 2.0).abs() < 1e-3);
    assert!(loss.into_scalar() < 1e-5);
}

graph! {
    /// Every optimizer of the language trains the same least-squares problem.
    model Optimizers<N> {
        seed = 5;
        input x: f32[N, 3];
        input y: f32[N, 1];
        var w_sgd: f32[3, 1] = random_normal();
        var w_mom: f32[3, 1] = random_normal();
        var w_adam: f32[3, 1] = random_normal();
        var w_adamw: f32[3, 1] = random_normal();
        var w_rms: f32[3, 1] = random_normal();
        var w_ada: f32[3, 1] = random_normal();
        output l_sgd = mean_squared_error(x.matmul(w_sgd), y);
        output l_mom = mean_squared_error(x.matmul(w_mom), y);
        output l_adam = mean_squared_error(x.matmul(w_adam), y);
        output l_adamw = mean_squared_error(x.matmul(w_adamw), y);
        output l_rms = mean_squared_error(x.matmul(w_rms), y);
        output l_ada = mean_squared_error(x.matmul(w_ada), y);
        let t_sgd = minimize(l_sgd, Sgd(0.1), wrt = [w_sgd]);
        let t_mom = minimize(l_mom, Momentum(0.05, 0.9, nesterov = true), wrt = [w_mom]);
        let t_adam = minimize(l_adam, Adam(0.05, beta1 = 0.9, beta2 = 0.99), wrt = [w_adam]);
        let t_adamw = minimize(l_adamw, AdamW(0.05, 0.0001), wrt = [w_adamw]);
        let t_rms = minimize(l_rms, RmsProp(0.02), wrt = [w_rms]);
        let t_ada = minimize(l_ada, Adagrad(0.5), wrt = [w_ada]);
        let all = group([t_sgd, t_mom, t_adam, t_adamw, t_rms, t_ada]);
    }
}

#[test]
fn every_optimizer_trains() {
    let m = Optimizers::new();
    let s = m.session().unwrap();
    let x = Array2::from_shape_fn((32, 3), |(i, j)| ((i * 5 + j * 7) % 13) as f32 / 13.0 - 0.5);
    let truth = ndarray::array![[1.0f32], [-2.0], [0.5]];
    let y = x.dot(&truth);
    let feeds = [m.x.feed(&x).unwrap(), m.y.feed(&y).unwrap()];
    let fetch = (
        &m.l_sgd, &m.l_mom, &m.l_adam, &m.l_adamw, &m.l_rms, &m.l_ada,
    );
    let before = s.run(&feeds, fetch, &[]).unwrap();
    for _ in 0..400 {
        s.run(&feeds, (), &[m.all]).unwrap();
    }
    let after = s.run(&feeds, fetch, &[]).unwrap();
    let pairs = [
        ("sgd", before.0, after.0),
        ("momentum", before.1, after.1),
        ("adam", before.2, after.2),
        ("adamw", before.3, after.3),
        ("rmsprop", before.4, after.4),
        ("adagrad", before.5, after.5),
    ];
    for (name, b, a) in pairs {
        let (b, a) = (b.into_scalar(), a.into_scalar());
        assert!(a < 0.01 * b && a < 1e-2, "{name}: loss {b} -> {a}");
    }
}

graph! {
    /// A convolution, max pooling and a dense layer tell horizontal bars from vertical ones.
    model Bars<B> {
        seed = 3;
        input images: f32[B, 6, 6, 1];
        input labels: i32[B];
        var k: f32[3, 3, 1, 4] = he_normal();
        var kb: f32[4] = zeros();
        let c = relu(bias_add(conv2d(images, k), kb));
        let p = max_pool(c, 2);
        let flat = reshape(p, [B, 36]);
        var w: f32[36, 2] = glorot_uniform();
        var b: f32[2] = zeros();
        output logits = flat.matmul(w) + b;
        output loss = sparse_softmax_cross_entropy(logits, labels);
        let train = minimize(loss, Adam(0.05));
    }
}

#[test]
fn conv_net_tells_bars_apart() {
    let n = 12;
    let mut images = ndarray::Array4::<f32>::zeros((n, 6, 6, 1));
    let mut labels = Array1::<i32>::zeros(n);
    for i in 0..n {
        let (vertical, at) = (i % 2 == 1, i / 2);
        for j in 0..6 {
            let (r, c) = if vertical { (j, at) } else { (at, j) };
            images[[i, r, c, 0]] = 1.0;
        }
        labels[i] = vertical as i32;
    }
    let m = Bars::new();
    assert_eq!(m.graph().shape(m.logits.output).to_string(), "[B, 2]");
    let s = m.session().unwrap();
    let feeds = [
        m.images.feed(&images).unwrap(),
        m.labels.feed(&labels).unwrap(),
    ];
    let first = s.run(&feeds, &m.loss, &[m.train]).unwrap().into_scalar();
    let mut last = first;
    for _ in 0..150 {
        last = s.run(&feeds, &m.loss, &[m.train]).unwrap().into_scalar();
    }
    assert!(last < 0.05 && last < first, "loss {first} -> {last}");
}
