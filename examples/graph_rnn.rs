//! An RNN written with `while_loop` in `graph!`: the loop over time steps, its gradient (a
//! backward loop) and Adam's updates are built and shape-checked while this example compiles.
//! The sequences have random lengths (the loop's trip count is read from the input's shape at
//! run time); the network learns to output the mean of the first feature over the sequence.
//!
//! ```sh
//! cargo run --release --example graph_rnn
//! ```

use ndarray::{Array2, Array3};
use tfr::graph;

graph! {
    /// An Elman RNN (tanh cell, 16 units) and a linear read-out of its last state.
    pub model Rnn<T, B> {
        seed = 3;
        /// Sequences, time first.
        input xs: f32[T, B, 2];
        /// What to predict for each sequence.
        input target: f32[B, 1];
        var wx: f32[2, 16] = glorot_uniform();
        var wh: f32[16, 16] = glorot_uniform();
        var bh: f32[16] = zeros();
        var wo: f32[16, 1] = glorot_uniform();
        var bo: f32[1] = zeros();
        let steps = gather(shape(xs), 0);
        let h0 = tanh(gather(xs, 0).matmul(wx) + bh);
        let (t, h) = while_loop(
            |t, h| t < steps,
            |t, h| {
                let x_t = gather(xs, t);
                (t + 1, tanh(x_t.matmul(wx) + h.matmul(wh) + bh))
            },
            (1, h0),
            maximum_iterations = 10000,
        );
        output pred = h.matmul(wo) + bo;
        output loss = mean_squared_error(pred, target);
        /// One Adam step on a batch.
        let train = minimize(loss, Adam(0.01));
    }
}

/// A small deterministic generator in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 23) as f32 - 1.0
    }
}

fn batch(t: usize, b: usize, rng: &mut Lcg) -> (Array3<f32>, Array2<f32>) {
    let xs = Array3::from_shape_fn((t, b, 2), |_| rng.next());
    let target = Array2::from_shape_fn((b, 1), |(j, _)| {
        (0..t).map(|s| xs[[s, j, 0]]).sum::<f32>() / t as f32
    });
    (xs, target)
}

fn main() -> std::process::ExitCode {
    tfr::cli::report(run())
}

fn run() -> tfr::Result<()> {
    let m = Rnn::new();
    let s = m.session()?;
    let mut rng = Lcg(1);
    for step in 0..=600 {
        let t = 2 + (rng.next().abs() * 10.0) as usize;
        let (xs, y) = batch(t, 32, &mut rng);
        let feeds = [m.xs.feed(&xs)?, m.target.feed(&y)?];
        let loss = s.run(&feeds, &m.loss, &[m.train])?.into_scalar();
        if step % 100 == 0 {
            println!("step {step:4}: length {t:2}, loss {loss:.5}");
        }
    }
    Ok(())
}
