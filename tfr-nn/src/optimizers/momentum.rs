use super::{slot, LearningRate, Optimizer, StepValues};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, IndexedSlices, NodeId, Output, Result};

/// Momentum, as TensorFlow's: `accum = momentum * accum + grad; var -= lr * accum`, or with
/// Nesterov `var -= lr * (grad + momentum * accum)`.
pub struct Momentum {
    pub lr: LearningRate,
    pub momentum: f32,
    pub nesterov: bool,
    /// Apply with one fused kernel (`ResourceApplyMomentum`) instead of primitive ops.
    pub fused: bool,
}

impl Momentum {
    pub fn new(lr: impl Into<LearningRate>, momentum: f32, nesterov: bool) -> Momentum {
        Momentum {
            lr: lr.into(),
            momentum,
            nesterov,
            fused: true,
        }
    }
}

impl Optimizer for Momentum {
    fn name(&self) -> &str {
        "Momentum"
    }
    fn update(
        &mut self,
        g: &mut Graph,
        grad: Output,
        var: &Variable,
        _: &StepValues,
    ) -> Result<Output> {
        let accum = slot(g, var, "momentum", 0.0)?;
        let m = g.scalar_like(grad, self.momentum as f64)?;
        if self.fused {
            let lr = self.lr.output_like(g, grad)?;
            return g.resource_apply_momentum(var.handle, accum.handle, lr, grad, m, self.nesterov);
        }
        let decayed = g.mul(m, accum.value)?;
        let new_accum = g.add(decayed, grad)?;
        let stored = g.assign(&accum, new_accum)?;
        let lr = self.lr.output_like(g, grad)?;
        let direction = if self.nesterov {
            let look = g.mul(m, stored)?;
            g.add(grad, look)?
        } else {
            stored
        };
        let delta = g.mul(lr, direction)?;
        g.assign_sub(var, delta)
    }

    /// The same rule on the rows of the gradient only (`ResourceSparseApplyMomentum`): the
    /// momentum of other rows is not decayed, as in TensorFlow.
    fn update_sparse(
        &mut self,
        g: &mut Graph,
        grad: &IndexedSlices,
        var: &Variable,
        _: &StepValues,
    ) -> Result<NodeId> {
        let accum = slot(g, var, "momentum", 0.0)?;
        let m = g.scalar_like(grad.values, self.momentum as f64)?;
        let lr = self.lr.output_like(g, grad.values)?;
        g.resource_sparse_apply_momentum(
            var.handle,
            accum.handle,
            lr,
            grad.values,
            grad.indices,
            m,
            self.nesterov,
        )
    }
}
