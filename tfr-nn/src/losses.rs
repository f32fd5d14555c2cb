//! Losses, reduced to a scalar mean over every element (over the batch for per-example
//! losses).

use tfr_graph::{Graph, Output, Result};

/// Mean cross-entropy of softmax(logits) against integer class labels.
pub fn sparse_softmax_cross_entropy(
    g: &mut Graph,
    logits: Output,
    labels: Output,
) -> Result<Output> {
    let per_example = g.sparse_softmax_cross_entropy_with_logits(logits, labels)?;
    g.reduce_mean(per_example, None, false)
}

/// Mean cross-entropy of softmax(logits) against label distributions.
pub fn softmax_cross_entropy(g: &mut Graph, logits: Output, labels: Output) -> Result<Output> {
    let per_example = g.softmax_cross_entropy_with_logits(logits, labels)?;
    g.reduce_mean(per_example, None, false)
}

/// Mean squared error.
pub fn mean_squared_error(g: &mut Graph, predictions: Output, targets: Output) -> Result<Output> {
    let d = g.sub(predictions, targets)?;
    let sq = g.square(d)?;
    g.reduce_mean(sq, None, false)
}

/// Elementwise cross-entropy of sigmoid(logits) against targets in [0, 1], computed as
/// TensorFlow does without overflow: `max(x, 0) - x * z + log(1 + exp(-|x|))`.
pub fn sigmoid_cross_entropy_with_logits(
    g: &mut Graph,
    logits: Output,
    labels: Output,
) -> Result<Output> {
    let relu = g.relu(logits)?;
    let xz = g.mul(logits, labels)?;
    let a = g.sub(relu, xz)?;
    let abs = g.abs(logits)?;
    let neg = g.neg(abs)?;
    let e = g.exp(neg)?;
    let l = g.log1p(e)?;
    g.add(a, l)
}

/// Mean of [`sigmoid_cross_entropy_with_logits`] (multi-label or binary classification).
pub fn sigmoid_cross_entropy(g: &mut Graph, logits: Output, labels: Output) -> Result<Output> {
    let per_element = sigmoid_cross_entropy_with_logits(g, logits, labels)?;
    g.reduce_mean(per_element, None, false)
}

/// Mean Huber loss with threshold `delta`: `d^2 / 2` where `|d| <= delta`, else
/// `delta * (|d| - delta / 2)`, for `d = predictions - targets`. Written as TensorFlow does,
/// `0.5 q^2 + delta (|d| - q)` with `q = min(|d|, delta)`, so its gradient is exact at the
/// threshold.
pub fn huber(g: &mut Graph, predictions: Output, targets: Output, delta: f64) -> Result<Output> {
    let d = g.sub(predictions, targets)?;
    let abs = g.abs(d)?;
    let dl = g.scalar_like(abs, delta)?;
    let q = g.minimum(abs, dl)?;
    let q2 = g.square(q)?;
    let half = g.scalar_like(abs, 0.5)?;
    let quad = g.mul(q2, half)?;
    let lin = g.sub(abs, q)?;
    let lin = g.mul(lin, dl)?;
    let per_element = g.add(quad, lin)?;
    g.reduce_mean(per_element, None, false)
}
