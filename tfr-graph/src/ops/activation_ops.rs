//! Activations and losses TensorFlow has beside the `nn_ops.rs` set: LeakyRelu, Softsign,
//! L2Loss. Their gradient rules (at the end of this file) are written with graph ops.

use super::same_as_input;
use crate::attr::AttrKind;
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::grad::GradCtx;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{Gradient, InferCtx, OpDef};
use crate::shape::Shape;

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("LeakyRelu", same_as_input)
            .doc("x if x > 0 else alpha * x")
            .input("features", DTypeSet::FLOAT)
            .output("activations")
            .attr_default("alpha", AttrKind::Float, 0.2f64)
            .cheap(),
        OpDef::new("Softsign", same_as_input)
            .doc("x / (1 + |x|)")
            .input("features", DTypeSet::FLOAT)
            .output("activations")
            .cheap(),
        OpDef::new("L2Loss", infer_l2_loss)
            .doc("sum(t^2) / 2, a scalar")
            .input("t", DTypeSet::FLOAT)
            .output("output"),
    ]
}

fn infer_l2_loss(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: Shape::scalar(),
    }])
}

impl Graph {
    /// `LeakyRelu` with slope `alpha` below zero.
    pub fn leaky_relu(&mut self, x: Output, alpha: f64) -> Result<Output> {
        self.build("LeakyRelu")
            .input(x)
            .attr("alpha", alpha)
            .finish1()
    }
    pub fn softsign(&mut self, x: Output) -> Result<Output> {
        self.build("Softsign").input(x).finish1()
    }
    /// `sum(x^2) / 2`.
    pub fn l2_loss(&mut self, x: Output) -> Result<Output> {
        self.build("L2Loss").input(x).finish1()
    }
}

// ---- gradients --------------------------------------------------------------------------------

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::Rule;
    vec![
        ("LeakyRelu", Rule(leaky_relu_grad)),
        ("Softsign", Rule(softsign_grad)),
        ("L2Loss", Rule(l2_loss_grad)),
    ]
}

fn leaky_relu_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dy where x > 0, alpha * dy elsewhere (TensorFlow's LeakyReluGrad).
    let alpha = ctx.attrs().float_opt("alpha").copied().unwrap_or(0.2);
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let zero = g.scalar_like(x, 0.0)?;
    let pos = g.greater(x, zero)?;
    let a = g.scalar_like(x, alpha)?;
    let scaled = g.mul(dy, a)?;
    Ok(vec![Some(g.select(pos, dy, scaled)?)])
}

fn softsign_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dy / (1 + |x|)^2
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let one = g.scalar_like(x, 1.0)?;
    let ax = g.abs(x)?;
    let d = g.add(one, ax)?;
    let d2 = g.square(d)?;
    Ok(vec![Some(g.div(dy, d2)?)])
}

fn l2_loss_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    Ok(vec![Some(ctx.graph.mul(x, dy)?)])
}
