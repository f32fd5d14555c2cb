//! Optimizers as graph ops. `minimize` differentiates the loss with `tfr_graph::gradients`, then
//! adds, per variable, the update written with primitive ops and `AssignSub`/`Assign`. Slot
//! variables (momenta, moment estimates) are made with the model's variables, so one
//! `global_variables_initializer()` made after `minimize` initializes them too.

mod adagrad;
mod adam;
mod momentum;
mod rmsprop;
mod sgd;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use momentum::Momentum;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use tfr_graph::gradients::gradients;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, GraphError, NodeId, Output, Result};

/// A learning rate: a constant, or any scalar graph expression (a schedule).
#[derive(Clone, Copy, Debug)]
pub enum LearningRate {
    Constant(f32),
    Tensor(Output),
}

impl From<f32> for LearningRate {
    fn from(v: f32) -> Self {
        LearningRate::Constant(v)
    }
}

impl From<Output> for LearningRate {
    fn from(o: Output) -> Self {
        LearningRate::Tensor(o)
    }
}

impl LearningRate {
    /// The rate as a scalar of `like`'s dtype.
    pub(crate) fn output_like(&self, g: &mut Graph, like: Output) -> Result<Output> {
        match *self {
            LearningRate::Constant(v) => g.scalar_like(like, v as f64),
            LearningRate::Tensor(o) if g.dtype(o) == g.dtype(like) => Ok(o),
            LearningRate::Tensor(o) => {
                let t = g.dtype(like);
                g.cast(o, t)
            }
        }
    }
}

/// Values shared by every variable's update in one step (for example Adam's step count).
#[derive(Clone, Debug, Default)]
pub struct StepValues {
    pub values: Vec<Output>,
}

/// A training rule.
pub trait Optimizer {
    /// Name used as the scope of the optimizer's nodes and slot variables.
    fn name(&self) -> &str;

    /// Adds the per-step values all updates share (called once per `apply_gradients`).
    fn step_values(&mut self, _g: &mut Graph) -> Result<StepValues> {
        Ok(StepValues::default())
    }

    /// Adds the update of `var` by `grad`; returns an output that is ready once it is applied.
    fn update(
        &mut self,
        g: &mut Graph,
        grad: Output,
        var: &Variable,
        step: &StepValues,
    ) -> Result<Output>;

    /// Adds the updates for (gradient, variable) pairs and returns the train op. With a
    /// `global_step`, the train op also increments it after the updates.
    fn apply_gradients(
        &mut self,
        g: &mut Graph,
        grads_and_vars: &[(Output, Variable)],
        global_step: Option<&Variable>,
    ) -> Result<NodeId> {
        let name = self.name().to_string();
        g.with_scope(&name, |g| {
            let step = self.step_values(g)?;
            let mut done = Vec::with_capacity(grads_and_vars.len());
            for (grad, var) in grads_and_vars {
                done.push(self.update(g, *grad, var, &step)?.node);
            }
            let mut deps = done.clone();
            if let Some(gs) = global_step {
                let one = g.scalar_like(gs.value, 1.0)?;
                let inc = g.with_control_dependencies(&done, |g| g.assign_add(gs, one))?;
                deps.push(inc.node);
            }
            g.build("NoOp").name("train").control_inputs(deps).finish()
        })
    }

    /// Differentiates `loss` with respect to `vars` and applies the gradients.
    fn minimize(
        &mut self,
        g: &mut Graph,
        loss: Output,
        vars: &[Variable],
        global_step: Option<&Variable>,
    ) -> Result<NodeId> {
        let pairs = compute_gradients(g, loss, vars)?;
        self.apply_gradients(g, &pairs, global_step)
    }
}

/// (gradient, variable) pairs of `loss`; an error names a variable the loss does not depend on.
pub fn compute_gradients(
    g: &mut Graph,
    loss: Output,
    vars: &[Variable],
) -> Result<Vec<(Output, Variable)>> {
    let xs: Vec<Output> = vars.iter().map(|v| v.value).collect();
    let grads = gradients(g, &[loss], &xs, None)?;
    grads
        .into_iter()
        .zip(vars)
        .map(|(gr, v)| {
            gr.map(|gr| (gr, v.clone())).ok_or_else(|| {
                GraphError::Gradient(format!("the loss does not depend on variable `{}`", v.name))
            })
        })
        .collect()
}

/// A zero-initialized slot variable shaped like `var`, named `<var>/<slot>`.
pub(crate) fn slot(g: &mut Graph, var: &Variable, slot: &str, init: f64) -> Result<Variable> {
    let dims: Vec<i64> = var
        .shape
        .to_known()
        .unwrap_or_default()
        .iter()
        .map(|&d| d as i64)
        .collect();
    let value = g.scalar_like(var.value, init)?;
    let filled = g.fill(&dims, value)?;
    g.variable(&format!("{}/{slot}", var.name), filled)
}

/// Scales gradients so their global L2 norm is at most `clip_norm`; also returns the norm.
pub fn clip_by_global_norm(
    g: &mut Graph,
    grads: &[Output],
    clip_norm: f32,
) -> Result<(Vec<Output>, Output)> {
    let mut squares = Vec::with_capacity(grads.len());
    for &gr in grads {
        let sq = g.square(gr)?;
        let s = g.reduce_sum(sq, None, false)?;
        let s = if g.dtype(s) == tfr_graph::DType::F32 {
            s
        } else {
            g.cast(s, tfr_graph::DType::F32)?
        };
        squares.push(s);
    }
    let total = g.add_n(&squares)?;
    let norm = g.sqrt(total)?;
    let c = g.scalar(clip_norm)?;
    let denom = g.maximum(norm, c)?;
    let scale = g.div(c, denom)?;
    let mut out = Vec::with_capacity(grads.len());
    for &gr in grads {
        let sc = if g.dtype(gr) == tfr_graph::DType::F32 {
            scale
        } else {
            let t = g.dtype(gr);
            g.cast(scale, t)?
        };
        out.push(g.mul(gr, sc)?);
    }
    Ok((out, norm))
}
