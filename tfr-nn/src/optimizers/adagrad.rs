use super::{slot, LearningRate, Optimizer, StepValues};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, IndexedSlices, NodeId, Output, Result};

/// Adagrad, as TensorFlow's: `accum += g^2; var -= lr g / sqrt(accum)`, accumulators starting
/// at `initial_accumulator_value` (0.1).
pub struct Adagrad {
    pub lr: LearningRate,
    pub initial_accumulator_value: f32,
}

impl Adagrad {
    pub fn new(lr: impl Into<LearningRate>) -> Adagrad {
        Adagrad {
            lr: lr.into(),
            initial_accumulator_value: 0.1,
        }
    }
}

impl Optimizer for Adagrad {
    fn name(&self) -> &str {
        "Adagrad"
    }
    fn update(
        &mut self,
        g: &mut Graph,
        grad: Output,
        var: &Variable,
        _: &StepValues,
    ) -> Result<Output> {
        let accum = slot(g, var, "accumulator", self.initial_accumulator_value as f64)?;
        let g2 = g.square(grad)?;
        let grown = g.assign_add(&accum, g2)?;
        let root = g.rsqrt(grown)?;
        let lr = self.lr.output_like(g, grad)?;
        let scaled = g.mul(grad, root)?;
        let delta = g.mul(lr, scaled)?;
        g.assign_sub(var, delta)
    }

    /// The same rule on the rows of the gradient only (`ResourceSparseApplyAdagrad`).
    fn update_sparse(
        &mut self,
        g: &mut Graph,
        grad: &IndexedSlices,
        var: &Variable,
        _: &StepValues,
    ) -> Result<NodeId> {
        let accum = slot(g, var, "accumulator", self.initial_accumulator_value as f64)?;
        let lr = self.lr.output_like(g, grad.values)?;
        g.resource_sparse_apply_adagrad(var.handle, accum.handle, lr, grad.values, grad.indices)
    }
}
