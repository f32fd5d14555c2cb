//! Gradient rules of the nn family (`nn_ops.rs`): activations, softmax, bias addition and the
//! fused cross-entropy losses (whose forward kernels already compute the backprop).

use crate::error::Result;
use crate::grad::{sum_axes, GradCtx};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;

/// SELU's constants, as in TensorFlow.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// (op, gradient) for every op of `nn_ops.rs`.
pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::Rule;
    vec![
        ("Relu", Rule(relu_grad)),
        ("Relu6", Rule(relu6_grad)),
        ("Elu", Rule(elu_grad)),
        ("Selu", Rule(selu_grad)),
        ("Softplus", Rule(softplus_grad)),
        ("Softmax", Rule(softmax_grad)),
        ("LogSoftmax", Rule(log_softmax_grad)),
        ("BiasAdd", Rule(bias_add_grad)),
        ("SoftmaxCrossEntropyWithLogits", Rule(softmax_xent_grad)),
        (
            "SparseSoftmaxCrossEntropyWithLogits",
            Rule(sparse_softmax_xent_grad),
        ),
        ("ReluGrad", Rule(relu_grad_grad)),
        ("BiasAddGrad", Rule(bias_add_grad_grad)),
    ]
}

/// (x, y, dy) of a single-input activation.
fn activation(ctx: &GradCtx<'_>) -> Result<(Output, Output, Output)> {
    Ok((ctx.input(0)?, ctx.output(0), ctx.dy()?))
}

fn relu_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (_, y, dy) = activation(ctx)?;
    let d = ctx.graph.build("ReluGrad").input(dy).input(y).finish1()?;
    Ok(vec![Some(d)])
}

/// `ReluGrad(dy, f)` is linear in `dy`; `f` only selects.
fn relu_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (f, d) = (ctx.input(1)?, ctx.dy()?);
    let r = ctx.graph.build("ReluGrad").input(d).input(f).finish1()?;
    Ok(vec![Some(r), None])
}

fn relu6_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, _, dy) = activation(ctx)?;
    let g = &mut *ctx.graph;
    let zero = g.scalar_like(x, 0.0)?;
    let six = g.scalar_like(x, 6.0)?;
    let above = g.greater(x, zero)?;
    let below = g.less(x, six)?;
    let inside = g.logical_and(above, below)?;
    let zeros = g.zeros_like(dy)?;
    Ok(vec![Some(g.select(inside, dy, zeros)?)])
}

fn elu_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // x > 0: 1; else e^x = y + 1
    let (x, y, dy) = activation(ctx)?;
    let g = &mut *ctx.graph;
    let zero = g.scalar_like(x, 0.0)?;
    let pos = g.greater(x, zero)?;
    let one = g.scalar_like(y, 1.0)?;
    let slope = g.add(y, one)?;
    let neg = g.mul(dy, slope)?;
    Ok(vec![Some(g.select(pos, dy, neg)?)])
}

fn selu_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // x > 0: scale; else scale * alpha * e^x = y + scale * alpha
    let (x, y, dy) = activation(ctx)?;
    let g = &mut *ctx.graph;
    let zero = g.scalar_like(x, 0.0)?;
    let pos = g.greater(x, zero)?;
    let scale = g.scalar_like(x, SELU_SCALE)?;
    let sa = g.scalar_like(x, SELU_SCALE * SELU_ALPHA)?;
    let p = g.mul(dy, scale)?;
    let slope = g.add(y, sa)?;
    let n = g.mul(dy, slope)?;
    Ok(vec![Some(g.select(pos, p, n)?)])
}

fn softplus_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, _, dy) = activation(ctx)?;
    let g = &mut *ctx.graph;
    let s = g.sigmoid(x)?;
    Ok(vec![Some(g.mul(dy, s)?)])
}

/// The vector-Jacobian product of softmax over the last axis: `(d - sum(d * s)) * s`.
fn softmax_vjp(g: &mut Graph, d: Output, s: Output) -> Result<Output> {
    let ds = g.mul(d, s)?;
    let sum = sum_axes(g, ds, &[-1], true)?;
    let c = g.sub(d, sum)?;
    g.mul(c, s)
}

fn softmax_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (_, y, dy) = activation(ctx)?;
    Ok(vec![Some(softmax_vjp(ctx.graph, dy, y)?)])
}

fn log_softmax_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dy - sum(dy) * softmax, softmax = e^y
    let (_, y, dy) = activation(ctx)?;
    let g = &mut *ctx.graph;
    let sum = sum_axes(g, dy, &[-1], true)?;
    let s = g.exp(y)?;
    let t = g.mul(sum, s)?;
    Ok(vec![Some(g.sub(dy, t)?)])
}

fn data_format(ctx: &GradCtx<'_>) -> String {
    ctx.attrs()
        .string_opt("data_format")
        .cloned()
        .unwrap_or_else(|| "NHWC".into())
}

fn bias_add_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let dy = ctx.dy()?;
    let format = data_format(ctx);
    let db = if ctx.wants(1) {
        Some(
            ctx.graph
                .build("BiasAddGrad")
                .input(dy)
                .attr("data_format", format)
                .finish1()?,
        )
    } else {
        None
    };
    Ok(vec![Some(dy), db])
}

/// `BiasAddGrad` sums over all but the channel dim: its gradient broadcasts back along them.
fn bias_add_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, d) = (ctx.input(0)?, ctx.dy()?);
    let format = data_format(ctx);
    let g = &mut *ctx.graph;
    let zeros = g.zeros_like(x)?;
    let r = g
        .build("BiasAdd")
        .input(zeros)
        .input(d)
        .attr("data_format", format)
        .finish1()?;
    Ok(vec![Some(r)])
}

/// The fused losses output (loss, backprop = softmax - labels). The gradient reaching the
/// loss scales the backprop row by row; a gradient reaching the backprop output itself (when a
/// gradient is differentiated again) goes through softmax's Jacobian, as TensorFlow does, and
/// to the dense labels negated.
fn xent_grads(ctx: &mut GradCtx<'_>, dense_labels: bool) -> Grads {
    let features = ctx.input(0)?;
    let (d_loss, d_backprop) = (ctx.grad(0), ctx.grad(1));
    let backprop = ctx.output(1);
    let want_labels = dense_labels && ctx.wants(1);
    let g = &mut *ctx.graph;
    let mut df = Vec::new();
    let mut dl = Vec::new();
    if let Some(d) = d_loss {
        let col = g.expand_dims(d, -1)?;
        df.push(g.mul(col, backprop)?);
        if want_labels {
            let ls = g.log_softmax(features)?;
            let nls = g.neg(ls)?;
            dl.push(g.mul(col, nls)?);
        }
    }
    if let Some(d) = d_backprop {
        let s = g.softmax(features)?;
        df.push(softmax_vjp(g, d, s)?);
        if want_labels {
            dl.push(g.neg(d)?);
        }
    }
    let sum = |g: &mut Graph, parts: Vec<Output>| -> Result<Option<Output>> {
        Ok(match parts.len() {
            0 => None,
            1 => Some(parts[0]),
            _ => Some(g.add_n(&parts)?),
        })
    };
    let df = sum(g, df)?;
    let dl = sum(g, dl)?;
    Ok(vec![df, dl])
}

fn softmax_xent_grad(ctx: &mut GradCtx<'_>) -> Grads {
    xent_grads(ctx, true)
}

fn sparse_softmax_xent_grad(ctx: &mut GradCtx<'_>) -> Grads {
    xent_grads(ctx, false)
}
