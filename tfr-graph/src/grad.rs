//! The gradient-rule interface. Rules live beside their op families (`ops/math_grad.rs`, ...);
//! `gradients` (issue 3) walks the graph backwards and calls them.

use crate::error::Result;
use crate::graph::{Graph, NodeId, Output};

/// What a gradient rule sees: the graph to add backward nodes to, the forward node, and the
/// gradient flowing into each of its outputs (`None` where no gradient flows).
pub struct GradCtx<'a> {
    pub graph: &'a mut Graph,
    pub node: NodeId,
    pub out_grads: &'a [Option<Output>],
}

/// A gradient rule: returns one optional gradient per input of the forward node.
pub type GradFn = fn(&mut GradCtx<'_>) -> Result<Vec<Option<Output>>>;
