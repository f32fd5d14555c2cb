//! Learning-rate schedules as graph ops of a step counter (an integer variable's value).

use tfr_graph::{DType, Graph, Output, Result, TensorValue};

fn step_as_float(g: &mut Graph, step: Output) -> Result<Output> {
    if g.dtype(step) == DType::F32 {
        Ok(step)
    } else {
        g.cast(step, DType::F32)
    }
}

/// `lr * rate^(step / decay_steps)`, with an integer exponent when `staircase`.
pub fn exponential_decay(
    g: &mut Graph,
    lr: f32,
    step: Output,
    decay_steps: f32,
    rate: f32,
    staircase: bool,
) -> Result<Output> {
    let s = step_as_float(g, step)?;
    let d = g.scalar(decay_steps)?;
    let mut p = g.div(s, d)?;
    if staircase {
        p = g.floor(p)?;
    }
    let r = g.scalar(rate)?;
    let f = g.pow(r, p)?;
    let l = g.scalar(lr)?;
    g.mul(l, f)
}

/// Cosine decay from `lr` to `lr * alpha` over `decay_steps`, then flat.
pub fn cosine_decay(
    g: &mut Graph,
    lr: f32,
    step: Output,
    decay_steps: f32,
    alpha: f32,
) -> Result<Output> {
    let s = step_as_float(g, step)?;
    let d = g.scalar(decay_steps)?;
    let zero = g.scalar(0.0f32)?;
    let clipped = g.clip_by_value(s, zero, d)?;
    let frac = g.div(clipped, d)?;
    let pi = g.scalar(std::f32::consts::PI)?;
    let angle = g.mul(frac, pi)?;
    let c = g.cos(angle)?;
    let one = g.scalar(1.0f32)?;
    let half = g.scalar(0.5f32)?;
    let cp1 = g.add(c, one)?;
    let cosine = g.mul(half, cp1)?;
    let a = g.scalar(alpha)?;
    let one_minus_a = g.scalar(1.0 - alpha)?;
    let scaled = g.mul(one_minus_a, cosine)?;
    let decayed = g.add(scaled, a)?;
    let l = g.scalar(lr)?;
    g.mul(l, decayed)
}

/// `values[i]` while `step <= boundaries[i]` (and the last value after the last boundary).
pub fn piecewise_constant(
    g: &mut Graph,
    step: Output,
    boundaries: &[f32],
    values: &[f32],
) -> Result<Output> {
    if values.len() != boundaries.len() + 1 {
        return Err(tfr_graph::GraphError::InvalidNode {
            node: "piecewise_constant".into(),
            op: "SelectV2".into(),
            message: format!(
                "needs one more value than boundaries, got {} values and {} boundaries",
                values.len(),
                boundaries.len()
            ),
        });
    }
    let s = step_as_float(g, step)?;
    let mut out = g.constant(TensorValue::scalar(values[values.len() - 1]))?;
    for (b, v) in boundaries.iter().zip(values).rev() {
        let bound = g.scalar(*b)?;
        let below = g.less_equal(s, bound)?;
        let val = g.scalar(*v)?;
        out = g.select(below, val, out)?;
    }
    Ok(out)
}
