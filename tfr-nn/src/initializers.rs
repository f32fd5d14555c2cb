//! Variable initializers as graph expressions (they run once, in the init step). Each returns
//! an f32 tensor of the given static shape; [`Initializer`] names one for the layers.

use tfr_graph::{DType, Graph, Output, Result, TensorValue};

/// The stddev of a standard normal truncated to two stddevs (TruncatedNormal's draws), so
/// truncated initializers can be rescaled to the stddev they promise (as Keras does).
const TRUNCATED_STDDEV: f32 = 0.879_625_7;

/// Uniform in [-limit, limit).
pub fn uniform(g: &mut Graph, shape: &[usize], limit: f32, seed: Option<u64>) -> Result<Output> {
    random_uniform(g, shape, -limit, limit, seed)
}

/// Uniform in [lo, hi).
pub fn random_uniform(
    g: &mut Graph,
    shape: &[usize],
    lo: f32,
    hi: f32,
    seed: Option<u64>,
) -> Result<Output> {
    let u = g.random_uniform(shape, DType::F32, seed)?;
    let scale = g.scalar(hi - lo)?;
    let shift = g.scalar(lo)?;
    let scaled = g.mul(u, scale)?;
    g.add(scaled, shift)
}

/// Normal with the given mean and stddev.
pub fn normal(
    g: &mut Graph,
    shape: &[usize],
    mean: f32,
    stddev: f32,
    seed: Option<u64>,
) -> Result<Output> {
    let n = g.random_normal(shape, DType::F32, seed)?;
    affine(g, n, stddev, mean)
}

/// Normal with the given mean and stddev, redrawn beyond two stddevs (TensorFlow's
/// `truncated_normal`: `stddev` is that of the untruncated normal).
pub fn truncated_normal(
    g: &mut Graph,
    shape: &[usize],
    mean: f32,
    stddev: f32,
    seed: Option<u64>,
) -> Result<Output> {
    let n = g.truncated_normal(shape, DType::F32, seed)?;
    affine(g, n, stddev, mean)
}

fn affine(g: &mut Graph, x: Output, scale: f32, shift: f32) -> Result<Output> {
    let s = g.scalar(scale)?;
    let y = g.mul(x, s)?;
    if shift == 0.0 {
        return Ok(y);
    }
    let b = g.scalar(shift)?;
    g.add(y, b)
}

/// Glorot (Xavier) uniform: limit sqrt(6 / (fan_in + fan_out)).
pub fn glorot_uniform(g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
    let (fan_in, fan_out) = fans(shape);
    uniform(g, shape, (6.0 / (fan_in + fan_out) as f32).sqrt(), seed)
}

/// Glorot (Xavier) normal: truncated normal with stddev sqrt(2 / (fan_in + fan_out)).
pub fn glorot_normal(g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
    let (fan_in, fan_out) = fans(shape);
    let std = (2.0 / (fan_in + fan_out) as f32).sqrt() / TRUNCATED_STDDEV;
    truncated_normal(g, shape, 0.0, std, seed)
}

/// He normal: truncated normal with stddev sqrt(2 / fan_in) (corrected for truncation as Keras).
pub fn he_normal(g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
    let (fan_in, _) = fans(shape);
    let std = (2.0 / fan_in as f32).sqrt() / TRUNCATED_STDDEV;
    truncated_normal(g, shape, 0.0, std, seed)
}

/// He uniform: limit sqrt(6 / fan_in).
pub fn he_uniform(g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
    let (fan_in, _) = fans(shape);
    uniform(g, shape, (6.0 / fan_in as f32).sqrt(), seed)
}

/// A constant-filled tensor.
pub fn constant(g: &mut Graph, shape: &[usize], value: f32) -> Result<Output> {
    let n: usize = shape.iter().product();
    let v = TensorValue::new(shape, vec![value; n]).ok_or_else(|| {
        tfr_graph::GraphError::InvalidNode {
            node: "constant".into(),
            op: "Const".into(),
            message: format!("{n} values do not fill shape {shape:?}"),
        }
    })?;
    g.constant(v)
}

/// Zeros.
pub fn zeros(g: &mut Graph, shape: &[usize]) -> Result<Output> {
    constant(g, shape, 0.0)
}

/// Ones.
pub fn ones(g: &mut Graph, shape: &[usize]) -> Result<Output> {
    constant(g, shape, 1.0)
}

/// (fan_in, fan_out) of a dense [in, out] or conv [h, w, in, out] kernel; at least 1 each.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let (i, o) = match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [i, o] => (*i, *o),
        s => {
            let receptive: usize = s[..s.len() - 2].iter().product();
            (s[s.len() - 2] * receptive, s[s.len() - 1] * receptive)
        }
    };
    (i.max(1), o.max(1))
}

/// An initializer, by name, for the layers' options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f32),
    /// Uniform in [lo, hi).
    Uniform {
        lo: f32,
        hi: f32,
    },
    Normal {
        mean: f32,
        stddev: f32,
    },
    TruncatedNormal {
        mean: f32,
        stddev: f32,
    },
    GlorotUniform,
    GlorotNormal,
    HeNormal,
    HeUniform,
}

impl Initializer {
    /// The initial value of a variable of `shape`.
    pub fn build(self, g: &mut Graph, shape: &[usize], seed: Option<u64>) -> Result<Output> {
        match self {
            Initializer::Zeros => zeros(g, shape),
            Initializer::Ones => ones(g, shape),
            Initializer::Constant(v) => constant(g, shape, v),
            Initializer::Uniform { lo, hi } => random_uniform(g, shape, lo, hi, seed),
            Initializer::Normal { mean, stddev } => normal(g, shape, mean, stddev, seed),
            Initializer::TruncatedNormal { mean, stddev } => {
                truncated_normal(g, shape, mean, stddev, seed)
            }
            Initializer::GlorotUniform => glorot_uniform(g, shape, seed),
            Initializer::GlorotNormal => glorot_normal(g, shape, seed),
            Initializer::HeNormal => he_normal(g, shape, seed),
            Initializer::HeUniform => he_uniform(g, shape, seed),
        }
    }
}
