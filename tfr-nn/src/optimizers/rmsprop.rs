use super::{slot, LearningRate, Optimizer, StepValues};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, Output, Result};

/// RMSProp, as TensorFlow's: `ms = rho ms + (1 - rho) g^2`,
/// `mom = momentum mom + lr g / sqrt(ms + eps)`, `var -= mom`.
pub struct RmsProp {
    pub lr: LearningRate,
    pub rho: f32,
    pub momentum: f32,
    pub epsilon: f32,
}

impl RmsProp {
    pub fn new(lr: impl Into<LearningRate>) -> RmsProp {
        RmsProp {
            lr: lr.into(),
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-10,
        }
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &str {
        "RMSProp"
    }
    fn update(
        &mut self,
        g: &mut Graph,
        grad: Output,
        var: &Variable,
        _: &StepValues,
    ) -> Result<Output> {
        let ms = slot(g, var, "rms", 1.0)?;
        let mom = slot(g, var, "momentum", 0.0)?;
        let rho = g.scalar_like(grad, self.rho as f64)?;
        let one_rho = g.scalar_like(grad, 1.0 - self.rho as f64)?;
        let g2 = g.square(grad)?;
        let a = g.mul(rho, ms.value)?;
        let b = g.mul(one_rho, g2)?;
        let ms_new = g.add(a, b)?;
        let ms_stored = g.assign(&ms, ms_new)?;
        let eps = g.scalar_like(grad, self.epsilon as f64)?;
        let shifted = g.add(ms_stored, eps)?;
        let root = g.rsqrt(shifted)?;
        let lr = self.lr.output_like(g, grad)?;
        let step = g.mul(grad, root)?;
        let step = g.mul(lr, step)?;
        let m = g.scalar_like(grad, self.momentum as f64)?;
        let carried = g.mul(m, mom.value)?;
        let mom_new = g.add(carried, step)?;
        let mom_stored = g.assign(&mom, mom_new)?;
        g.assign_sub(var, mom_stored)
    }
}
