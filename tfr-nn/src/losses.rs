//! Losses, reduced to a scalar mean over the batch.

use tfr_graph::{Graph, Output, Result};

/// Mean cross-entropy of softmax(logits) against integer class labels.
pub fn sparse_softmax_cross_entropy(g: &mut Graph, logits: Output, labels: Output) -> Result<Output> {
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
