use super::{slot, LearningRate, Optimizer, StepValues};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, IndexedSlices, NodeId, Output, Result};

/// Adam (Kingma & Ba), as TensorFlow's: with `t` the step number (from 1),
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`.
pub struct Adam {
    pub lr: LearningRate,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// Decoupled weight decay (AdamW); 0 for Adam.
    pub weight_decay: f32,
    /// Apply with one fused kernel (`ResourceApplyAdam`) instead of primitive ops.
    pub fused: bool,
    name: &'static str,
    iterations: Option<Variable>,
}

impl Adam {
    pub fn new(lr: impl Into<LearningRate>) -> Adam {
        Adam {
            lr: lr.into(),
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
            fused: true,
            name: "Adam",
            iterations: None,
        }
    }
    pub fn with_betas(mut self, beta1: f32, beta2: f32) -> Adam {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// Uses primitive ops instead of the fused `ResourceApplyAdam` kernel.
    pub fn composed(mut self) -> Adam {
        self.fused = false;
        self
    }
    pub fn with_epsilon(mut self, epsilon: f32) -> Adam {
        self.epsilon = epsilon;
        self
    }
}

/// AdamW (Loshchilov & Hutter): Adam plus `var -= lr * weight_decay * var`, decoupled from the
/// gradient.
pub struct AdamW;

impl AdamW {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(lr: impl Into<LearningRate>, weight_decay: f32) -> Adam {
        Adam {
            weight_decay,
            name: "AdamW",
            ..Adam::new(lr)
        }
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &str {
        self.name
    }

    /// Increments the step counter and computes `lr_t` factors from it.
    fn step_values(&mut self, g: &mut Graph) -> Result<StepValues> {
        let iterations = match &self.iterations {
            Some(v) => v.clone(),
            None => {
                let zero = g.scalar(0.0f32)?;
                let v = g.variable("iterations", zero)?;
                self.iterations = Some(v.clone());
                v
            }
        };
        let one = g.scalar(1.0f32)?;
        let t = g.assign_add(&iterations, one)?;
        let b1 = g.scalar(self.beta1)?;
        let b2 = g.scalar(self.beta2)?;
        let b1t = g.pow(b1, t)?;
        let b2t = g.pow(b2, t)?;
        let one_minus_b1t = g.sub(one, b1t)?;
        let one_minus_b2t = g.sub(one, b2t)?;
        let root = g.sqrt(one_minus_b2t)?;
        let correction = g.div(root, one_minus_b1t)?;
        Ok(StepValues {
            values: vec![correction],
        })
    }

    fn update(
        &mut self,
        g: &mut Graph,
        grad: Output,
        var: &Variable,
        step: &StepValues,
    ) -> Result<Output> {
        let m = slot(g, var, "m", 0.0)?;
        let v = slot(g, var, "v", 0.0)?;
        let b1 = g.scalar_like(grad, self.beta1 as f64)?;
        let b2 = g.scalar_like(grad, self.beta2 as f64)?;
        if self.fused {
            let (lr_t, eps, lr_wd) = self.fused_factors(g, grad, step)?;
            return g.resource_apply_adam(
                var.handle, m.handle, v.handle, lr_t, b1, b2, eps, lr_wd, grad,
            );
        }
        let one_b1 = g.scalar_like(grad, 1.0 - self.beta1 as f64)?;
        let one_b2 = g.scalar_like(grad, 1.0 - self.beta2 as f64)?;
        let m_old = g.mul(b1, m.value)?;
        let m_new_part = g.mul(one_b1, grad)?;
        let m_new = g.add(m_old, m_new_part)?;
        let m_stored = g.assign(&m, m_new)?;
        let g2 = g.square(grad)?;
        let v_old = g.mul(b2, v.value)?;
        let v_new_part = g.mul(one_b2, g2)?;
        let v_new = g.add(v_old, v_new_part)?;
        let v_stored = g.assign(&v, v_new)?;
        let lr = self.lr.output_like(g, grad)?;
        let correction = if g.dtype(grad) == DType::F32 {
            step.values[0]
        } else {
            let t = g.dtype(grad);
            g.cast(step.values[0], t)?
        };
        let lr_t = g.mul(lr, correction)?;
        let denom_root = g.sqrt(v_stored)?;
        let eps = g.scalar_like(grad, self.epsilon as f64)?;
        let denom = g.add(denom_root, eps)?;
        let ratio = g.div(m_stored, denom)?;
        let mut delta = g.mul(lr_t, ratio)?;
        if self.weight_decay != 0.0 {
            let wd = g.scalar_like(grad, self.weight_decay as f64)?;
            let lr_wd = g.mul(lr, wd)?;
            let decay = g.mul(lr_wd, var.value)?;
            delta = g.add(delta, decay)?;
        }
        g.assign_sub(var, delta)
    }

    /// Lazy Adam (`ResourceSparseApplyAdam`, TensorFlow's `LazyAdamOptimizer`): only the rows
    /// of the gradient are updated, their moments included; other rows' moments do not decay
    /// this step (dense Adam decays them all). On the touched rows a step equals the dense one.
    fn update_sparse(
        &mut self,
        g: &mut Graph,
        grad: &IndexedSlices,
        var: &Variable,
        step: &StepValues,
    ) -> Result<NodeId> {
        let m = slot(g, var, "m", 0.0)?;
        let v = slot(g, var, "v", 0.0)?;
        let values = grad.values;
        let b1 = g.scalar_like(values, self.beta1 as f64)?;
        let b2 = g.scalar_like(values, self.beta2 as f64)?;
        let (lr_t, eps, lr_wd) = self.fused_factors(g, values, step)?;
        g.resource_sparse_apply_adam(
            var.handle,
            m.handle,
            v.handle,
            lr_t,
            b1,
            b2,
            eps,
            lr_wd,
            values,
            grad.indices,
        )
    }
}

impl Adam {
    /// `lr_t` (the rate with the bias correction), epsilon and `lr * weight_decay`, typed like
    /// `grad`: the scalars of the fused kernels.
    fn fused_factors(
        &self,
        g: &mut Graph,
        grad: Output,
        step: &StepValues,
    ) -> Result<(Output, Output, Output)> {
        let lr = self.lr.output_like(g, grad)?;
        let correction = if g.dtype(grad) == DType::F32 {
            step.values[0]
        } else {
            let t = g.dtype(grad);
            g.cast(step.values[0], t)?
        };
        let lr_t = g.mul(lr, correction)?;
        let eps = g.scalar_like(grad, self.epsilon as f64)?;
        let wd = g.scalar_like(grad, self.weight_decay as f64)?;
        let lr_wd = g.mul(lr, wd)?;
        Ok((lr_t, eps, lr_wd))
    }
}
