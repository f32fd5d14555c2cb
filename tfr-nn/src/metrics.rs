//! Metrics as graph ops: each returns a scalar (the fraction of the batch that is right).

use tfr_graph::{DType, Graph, GraphError, Output, Result};

fn check_labels(g: &Graph, labels: Output, what: &str) -> Result<()> {
    if g.dtype(labels).is_integer() {
        return Ok(());
    }
    Err(GraphError::InvalidNode {
        node: what.into(),
        op: "ArgMax".into(),
        message: format!("labels must be integer class ids, got {}", g.dtype(labels)),
    })
}

/// The fraction of rows whose largest logit (first one on ties) is at the label, as f32:
/// `mean(argmax(logits, -1) == labels)`.
pub fn accuracy(g: &mut Graph, logits: Output, labels: Output) -> Result<Output> {
    check_labels(g, labels, "accuracy")?;
    let predicted = g.argmax(logits, -1)?;
    let dt = g.dtype(predicted);
    let labels = if g.dtype(labels) == dt {
        labels
    } else {
        g.cast(labels, dt)?
    };
    let hit = g.equal(predicted, labels)?;
    let hit = g.cast(hit, DType::F32)?;
    g.reduce_mean(hit, None, false)
}

/// The fraction of rows whose label is among the `k` largest logits, as f32. Like
/// TensorFlow's `in_top_k`, a label counts when fewer than `k` logits are strictly larger
/// than its own (so ties at the boundary count as in).
pub fn top_k_accuracy(g: &mut Graph, logits: Output, labels: Output, k: usize) -> Result<Output> {
    check_labels(g, labels, "top_k_accuracy")?;
    let classes = g
        .shape(logits)
        .dims()
        .and_then(|d| d.last())
        .and_then(|d| d.known())
        .ok_or_else(|| GraphError::InvalidNode {
            node: "top_k_accuracy".into(),
            op: "OneHot".into(),
            message: format!(
                "needs logits with a known number of classes, got shape {}",
                g.shape(logits)
            ),
        })?;
    let on = g.scalar_like(logits, 1.0)?;
    let off = g.scalar_like(logits, 0.0)?;
    let mask = g.one_hot(labels, classes, on, off)?;
    let picked = g.mul(logits, mask)?;
    let target = g.reduce_sum(picked, Some(&[-1]), true)?;
    let larger = g.greater(logits, target)?;
    let larger = g.cast(larger, DType::F32)?;
    let count = g.reduce_sum(larger, Some(&[-1]), false)?;
    let kk = g.scalar(k as f32)?;
    let hit = g.less(count, kk)?;
    let hit = g.cast(hit, DType::F32)?;
    g.reduce_mean(hit, None, false)
}
