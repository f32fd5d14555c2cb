//! An MLP defined with `graph!`: its graph (with the backward pass and Adam's updates) is built
//! and shape-checked while this example compiles. It learns two interleaved spirals.
//!
//! ```sh
//! cargo run --release --example graph_mlp
//! ```

use ndarray::{Array1, Array2};
use tfr::graph;

graph! {
    /// Two hidden tanh layers and a softmax over two classes.
    pub model Mlp<B> {
        seed = 42;
        /// Points in the plane.
        input x: f32[B, 2];
        /// Their classes, 0 or 1.
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
        /// One Adam step on the batch.
        let train = minimize(loss, Adam(0.02));
    }
}

/// Two interleaved spirals of `n` points each.
fn spirals(n: usize) -> (Array2<f32>, Array1<i32>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for class in 0..2 {
        for i in 0..n {
            let t = i as f32 / n as f32;
            let angle = t * 3.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
            let r = 0.1 + t;
            x.push(r * angle.cos());
            x.push(r * angle.sin());
            y.push(class);
        }
    }
    (
        Array2::from_shape_vec((2 * n, 2), x).expect("2n points"),
        Array1::from_vec(y),
    )
}

fn main() -> std::process::ExitCode {
    tfr::cli::report(run())
}

fn run() -> tfr::Result<()> {
    let model = Mlp::new();
    println!(
        "the graph has {} nodes (forward, gradients, Adam)",
        model.graph().len()
    );
    let session = model.session()?;
    let (x, y) = spirals(100);
    let feeds = [model.x.feed(&x)?, model.labels.feed(&y)?];
    for step in 0..=600 {
        let loss = session.run(&feeds, &model.loss, &[model.train])?;
        if step % 100 == 0 {
            println!("step {step:4}: loss {:.4}", loss.into_scalar());
        }
    }
    let accuracy = session.run(&feeds, &model.accuracy, &[])?;
    println!("accuracy: {:.1}%", 100.0 * accuracy.into_scalar());
    Ok(())
}
