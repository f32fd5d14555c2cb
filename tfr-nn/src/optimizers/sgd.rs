use super::{LearningRate, Optimizer, StepValues};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, IndexedSlices, NodeId, Output, Result};

/// Plain gradient descent: `var -= lr * grad`.
pub struct Sgd {
    pub lr: LearningRate,
    /// Apply with one fused kernel (`ResourceApplyGradientDescent`) instead of primitive ops.
    pub fused: bool,
}

impl Sgd {
    pub fn new(lr: impl Into<LearningRate>) -> Sgd {
        Sgd {
            lr: lr.into(),
            fused: true,
        }
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &str {
        "SGD"
    }
    fn update(
        &mut self,
        g: &mut Graph,
        grad: Output,
        var: &Variable,
        _: &StepValues,
    ) -> Result<Output> {
        let lr = self.lr.output_like(g, grad)?;
        if self.fused {
            return g.resource_apply_gradient_descent(var.handle, lr, grad);
        }
        let delta = g.mul(lr, grad)?;
        g.assign_sub(var, delta)
    }

    /// `var[indices] -= lr * values`: fused (`ResourceSparseApplyGradientDescent`) or as
    /// `ResourceScatterSub`, TensorFlow's composition.
    fn update_sparse(
        &mut self,
        g: &mut Graph,
        grad: &IndexedSlices,
        var: &Variable,
        _: &StepValues,
    ) -> Result<NodeId> {
        let lr = self.lr.output_like(g, grad.values)?;
        if self.fused {
            return g.resource_sparse_apply_gradient_descent(
                var.handle,
                lr,
                grad.values,
                grad.indices,
            );
        }
        let delta = g.mul(lr, grad.values)?;
        g.resource_scatter_sub(var, grad.indices, delta)
    }
}
