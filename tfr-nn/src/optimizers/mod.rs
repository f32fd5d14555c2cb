//! Optimizers as graph ops. `minimize` differentiates the loss with `tfr_graph::gradients`, then
//! adds, per variable, the update written with primitive ops and `AssignSub`/`Assign`. Slot
//! variables (momenta, moment estimates) are made with the model's variables, so one
//! `global_variables_initializer()` made after `minimize` initializes them too.
//!
//! A variable read only through gathers (an embedding table) gets a sparse gradient
//! ([`Gradient::Slices`]): `minimize` applies it with the `ResourceSparseApply*` ops, which
//! touch only the rows read, so a step costs the same whatever the table's size.

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

use tfr_graph::gradients::{sparse_gradients, UnconnectedGradients};
use tfr_graph::indexed_slices::Gradient;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, GraphError, IndexedSlices, NodeId, Output, Result};

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

    /// Adds the update of rows `grad.indices` of `var` by `grad.values`; returns a node that
    /// has run once it is applied. By default the gradient is made dense and applied by
    /// [`Optimizer::update`]; the optimizers with a `ResourceSparseApply*` op use it instead.
    fn update_sparse(
        &mut self,
        g: &mut Graph,
        grad: &IndexedSlices,
        var: &Variable,
        step: &StepValues,
    ) -> Result<NodeId> {
        let dense = grad.to_dense(g, Some(&var.shape))?;
        Ok(self.update(g, dense, var, step)?.node)
    }

    /// Adds the updates for (gradient, variable) pairs and returns the train op. With a
    /// `global_step`, the train op also increments it after the updates.
    fn apply_gradients(
        &mut self,
        g: &mut Graph,
        grads_and_vars: &[(Output, Variable)],
        global_step: Option<&Variable>,
    ) -> Result<NodeId> {
        let pairs: Vec<(Gradient, Variable)> = grads_and_vars
            .iter()
            .map(|(gr, v)| (Gradient::Dense(*gr), v.clone()))
            .collect();
        self.apply_gradient_values(g, &pairs, global_step)
    }

    /// [`Optimizer::apply_gradients`] for gradients that may be sparse: slices are applied
    /// with [`Optimizer::update_sparse`].
    fn apply_gradient_values(
        &mut self,
        g: &mut Graph,
        grads_and_vars: &[(Gradient, Variable)],
        global_step: Option<&Variable>,
    ) -> Result<NodeId> {
        let name = self.name().to_string();
        g.with_scope(&name, |g| {
            let step = self.step_values(g)?;
            let mut done = Vec::with_capacity(grads_and_vars.len());
            for (grad, var) in grads_and_vars {
                done.push(match grad {
                    Gradient::Dense(d) => self.update(g, *d, var, &step)?.node,
                    Gradient::Slices(s) => self.update_sparse(g, s, var, &step)?,
                });
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
        let pairs = compute_gradient_values(g, loss, vars)?;
        self.apply_gradient_values(g, &pairs, global_step)
    }
}

/// (gradient, variable) pairs of `loss`; an error names a variable the loss does not depend on.
pub fn compute_gradients(
    g: &mut Graph,
    loss: Output,
    vars: &[Variable],
) -> Result<Vec<(Output, Variable)>> {
    compute_gradient_values(g, loss, vars)?
        .into_iter()
        .map(|(gr, v)| Ok((gr.to_dense(g, Some(&v.shape))?, v)))
        .collect()
}

/// (gradient, variable) pairs of `loss`, with the gradient of a variable read only through
/// gathers kept sparse ([`Gradient::Slices`]); an error names a variable the loss does not
/// depend on.
pub fn compute_gradient_values(
    g: &mut Graph,
    loss: Output,
    vars: &[Variable],
) -> Result<Vec<(Gradient, Variable)>> {
    let xs: Vec<Output> = vars.iter().map(|v| v.value).collect();
    let grads = sparse_gradients(g, &[loss], &xs, None, UnconnectedGradients::None)?;
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
    let values: Vec<Gradient> = grads.iter().map(|&o| Gradient::Dense(o)).collect();
    let (clipped, norm) = clip_gradient_values_by_global_norm(g, &values, clip_norm)?;
    let dense = clipped
        .iter()
        .map(|c| c.to_dense(g, None))
        .collect::<Result<Vec<_>>>()?;
    Ok((dense, norm))
}

/// [`clip_by_global_norm`] for gradients that may be sparse. As in TensorFlow, a sparse
/// gradient's norm is that of its values (rows named twice count twice) and it stays sparse:
/// its values are scaled, its indices kept.
pub fn clip_gradient_values_by_global_norm(
    g: &mut Graph,
    grads: &[Gradient],
    clip_norm: f32,
) -> Result<(Vec<Gradient>, Output)> {
    let values_of = |gr: &Gradient| match gr {
        Gradient::Dense(d) => *d,
        Gradient::Slices(s) => s.values,
    };
    let mut squares = Vec::with_capacity(grads.len());
    for gr in grads {
        let sq = g.square(values_of(gr))?;
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
    for gr in grads {
        let v = values_of(gr);
        let sc = if g.dtype(v) == tfr_graph::DType::F32 {
            scale
        } else {
            let t = g.dtype(v);
            g.cast(scale, t)?
        };
        let scaled = g.mul(v, sc)?;
        out.push(match gr {
            Gradient::Dense(_) => Gradient::Dense(scaled),
            Gradient::Slices(s) => Gradient::Slices(IndexedSlices {
                values: scaled,
                ..*s
            }),
        });
    }
    Ok((out, norm))
}
