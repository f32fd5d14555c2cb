use super::{LearningRate, Optimizer, StepValues};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, Output, Result};

/// Plain gradient descent: `var -= lr * grad`.
pub struct Sgd {
    pub lr: LearningRate,
}

impl Sgd {
    pub fn new(lr: impl Into<LearningRate>) -> Sgd {
        Sgd { lr: lr.into() }
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &str {
        "SGD"
    }
    fn update(&mut self, g: &mut Graph, grad: Output, var: &Variable, _: &StepValues) -> Result<Output> {
        let lr = self.lr.output_like(g, grad)?;
        let delta = g.mul(lr, grad)?;
        g.assign_sub(var, delta)
    }
}
