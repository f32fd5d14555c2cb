//! Variable initializers as graph expressions (they run once, in the init step).

use tfr_graph::{DType, Graph, Output, Result, TensorValue};

/// Uniform in [-limit, limit).
pub fn uniform(g: &mut Graph, shape: &[usize], limit: f32, seed: Option<u64>) -> Result<Output> {
    let u = g.random_uniform(shape, DType::F32, seed)?;
    let scale = g.scalar(2.0 * limit)?;
    let shift = g.scalar(limit)?;
    let scaled = g.mul(u, scale)?;
    g.sub(scaled, shift)
}

/// Glorot (Xavier) uniform: limit sqrt(6 / (fan_in + fan_out)).
pub fn glorot_uniform(g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
    let (fan_in, fan_out) = fans(shape);
    uniform(g, shape, (6.0 / (fan_in + fan_out) as f32).sqrt(), seed)
}

/// He normal: truncated normal with stddev sqrt(2 / fan_in) (corrected for truncation as Keras).
pub fn he_normal(g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
    let (fan_in, _) = fans(shape);
    let t = g.truncated_normal(shape, DType::F32, seed)?;
    let std = g.scalar((2.0 / fan_in as f32).sqrt() / 0.879_625_7)?;
    g.mul(t, std)
}

/// A constant-filled tensor.
pub fn constant(g: &mut Graph, shape: &[usize], value: f32) -> Result<Output> {
    let n = shape.iter().product();
    g.constant(TensorValue::new(shape, vec![value; n]).expect("length matches"))
}

/// (fan_in, fan_out) of a dense [in, out] or conv [h, w, in, out] kernel.
fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [i, o] => (*i, *o),
        s => {
            let receptive: usize = s[..s.len() - 2].iter().product();
            (s[s.len() - 2] * receptive, s[s.len() - 1] * receptive)
        }
    }
}
