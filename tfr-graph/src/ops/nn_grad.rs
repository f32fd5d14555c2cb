//! Gradient rules of the nn family (`nn_ops.rs`): activations, softmax, bias addition, the
//! fused cross-entropy losses (whose forward kernels already compute the backprop), and the
//! image ops (convolution, pooling, batch normalization, LRN) with their backprop ops.

use super::nn_ops::{BatchNormParams, DataFormat, FusedActivation};
use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::error::Result;
use crate::grad::{shape_of, sum_axes, GradCtx};
use crate::graph::{Graph, NodeId, Output};
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
    .into_iter()
    .chain(image_gradients())
    .collect()
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
    // As TensorFlow's SeluGrad, which selects on the output: y < 0 (x < 0): scale * alpha * e^x =
    // y + scale * alpha; elsewhere, x = 0 included, scale.
    let (_, y, dy) = activation(ctx)?;
    let g = &mut *ctx.graph;
    let zero = g.scalar_like(y, 0.0)?;
    let neg = g.less(y, zero)?;
    let scale = g.scalar_like(y, SELU_SCALE)?;
    let sa = g.scalar_like(y, SELU_SCALE * SELU_ALPHA)?;
    let p = g.mul(dy, scale)?;
    let slope = g.add(y, sa)?;
    let n = g.mul(dy, slope)?;
    Ok(vec![Some(g.select(neg, n, p)?)])
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

// ---- convolution, pooling, batch normalization, LRN -------------------------------------------

/// (op, gradient) for the image ops of `nn_ops.rs` and their backprop ops.
fn image_gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::{NotDifferentiable, Rule};
    vec![
        ("Conv2D", Rule(conv2d_grad)),
        ("Conv2DBackpropInput", Rule(conv2d_backprop_input_grad)),
        ("Conv2DBackpropFilter", Rule(conv2d_backprop_filter_grad)),
        ("FusedConv2D", Rule(fused_conv2d_grad)),
        (
            "Conv2DBackpropFilterBias",
            Rule(conv2d_backprop_filter_bias_grad),
        ),
        ("MaxPool", Rule(max_pool_grad)),
        ("MaxPoolGrad", Rule(max_pool_grad_grad)),
        ("MaxPoolGradGrad", Rule(max_pool_grad_grad_grad)),
        ("AvgPool", Rule(avg_pool_grad)),
        ("AvgPoolGrad", Rule(avg_pool_grad_grad)),
        ("FusedBatchNorm", Rule(fused_batch_norm_grad)),
        // As in TensorFlow's CPU registry, no second derivatives through these two.
        ("FusedBatchNormGrad", NotDifferentiable),
        ("LRN", Rule(lrn_grad)),
        ("LRNGrad", NotDifferentiable),
    ]
}

/// The forward node's attributes named in `names` (those it has), to copy onto backward nodes.
fn copied_attrs(ctx: &GradCtx<'_>, names: &[&'static str]) -> Vec<(&'static str, AttrValue)> {
    names
        .iter()
        .filter_map(|&n| ctx.attrs().get(n).map(|v| (n, v.clone())))
        .collect()
}

const CONV_ATTRS: &[&str] = &["strides", "padding", "data_format", "dilations"];
const POOL_ATTRS: &[&str] = &["ksize", "strides", "padding", "data_format"];
const BN_ATTRS: &[&str] = &["epsilon", "data_format", "is_training"];
const LRN_ATTRS: &[&str] = &["depth_radius", "bias", "alpha", "beta"];

/// Adds a node of `op` with `inputs` and the copied attributes.
fn node(
    g: &mut Graph,
    op: &str,
    inputs: &[Output],
    attrs: &[(&'static str, AttrValue)],
) -> Result<NodeId> {
    let mut b = g.build(op).inputs(inputs.iter().copied());
    for (k, v) in attrs {
        b = b.attr(k, v.clone());
    }
    b.finish()
}

fn node1(
    g: &mut Graph,
    op: &str,
    inputs: &[Output],
    attrs: &[(&'static str, AttrValue)],
) -> Result<Output> {
    Ok(Output::new(node(g, op, inputs, attrs)?, 0))
}

/// `Conv2DBackpropInput` giving a gradient shaped like `x`.
fn conv_input_grad(
    g: &mut Graph,
    x: Output,
    filter: Output,
    dy: Output,
    attrs: &[(&'static str, AttrValue)],
) -> Result<Output> {
    let sizes = shape_of(g, x, DType::I32)?;
    let out = node1(g, "Conv2DBackpropInput", &[sizes, filter, dy], attrs)?;
    let s = g.shape(x).clone();
    g.refine_output_shape(out, s);
    Ok(out)
}

/// `Conv2DBackpropFilter` giving a gradient shaped like `filter`.
fn conv_filter_grad(
    g: &mut Graph,
    x: Output,
    filter: Output,
    dy: Output,
    attrs: &[(&'static str, AttrValue)],
) -> Result<Output> {
    let sizes = shape_of(g, filter, DType::I32)?;
    let out = node1(g, "Conv2DBackpropFilter", &[x, sizes, dy], attrs)?;
    let s = g.shape(filter).clone();
    g.refine_output_shape(out, s);
    Ok(out)
}

fn conv2d_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, f, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let attrs = copied_attrs(ctx, CONV_ATTRS);
    let (want_x, want_f) = (ctx.wants(0), ctx.wants(1));
    let g = &mut *ctx.graph;
    let dx = match want_x {
        true => Some(conv_input_grad(g, x, f, dy, &attrs)?),
        false => None,
    };
    let df = match want_f {
        true => Some(conv_filter_grad(g, x, f, dy, &attrs)?),
        false => None,
    };
    Ok(vec![dx, df])
}

/// `Conv2DBackpropInput(sizes, filter, dy)` is bilinear in (filter, dy): the filter's gradient
/// is the filter backprop of the incoming gradient against `dy`, and `dy`'s is a convolution.
fn conv2d_backprop_input_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (f, dy, d) = (ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let attrs = copied_attrs(ctx, CONV_ATTRS);
    let (want_f, want_dy) = (ctx.wants(1), ctx.wants(2));
    let g = &mut *ctx.graph;
    let df = match want_f {
        true => Some(conv_filter_grad(g, d, f, dy, &attrs)?),
        false => None,
    };
    let ddy = match want_dy {
        true => Some(node1(g, "Conv2D", &[d, f], &attrs)?),
        false => None,
    };
    Ok(vec![None, df, ddy])
}

/// `Conv2DBackpropFilter(x, sizes, dy)` is bilinear in (x, dy).
fn conv2d_backprop_filter_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy, d) = (ctx.input(0)?, ctx.input(2)?, ctx.dy()?);
    let attrs = copied_attrs(ctx, CONV_ATTRS);
    let (want_x, want_dy) = (ctx.wants(0), ctx.wants(2));
    let g = &mut *ctx.graph;
    let dx = match want_x {
        true => Some(conv_input_grad(g, x, d, dy, &attrs)?),
        false => None,
    };
    let ddy = match want_dy {
        true => Some(node1(g, "Conv2D", &[x, d], &attrs)?),
        false => None,
    };
    Ok(vec![dx, None, ddy])
}

/// FusedConv2D: the activation's gradient, then the input backprop and the fused filter and
/// bias backprop of it.
fn fused_conv2d_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, f, y, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0), ctx.dy()?);
    let act = ctx
        .attrs()
        .string("activation")
        .and_then(|a| FusedActivation::parse(a))
        .map_err(|e| ctx.error(e))?;
    let attrs = copied_attrs(ctx, CONV_ATTRS);
    let (want_x, want_fb) = (ctx.wants(0), ctx.wants(1) || ctx.wants(2));
    let g = &mut *ctx.graph;
    let dz = match act {
        FusedActivation::Linear => dy,
        FusedActivation::Relu => g.build("ReluGrad").input(dy).input(y).finish1()?,
        FusedActivation::Relu6 => {
            let zero = g.scalar_like(y, 0.0)?;
            let six = g.scalar_like(y, 6.0)?;
            let above = g.greater(y, zero)?;
            let below = g.less(y, six)?;
            let inside = g.logical_and(above, below)?;
            let zeros = g.zeros_like(dy)?;
            g.select(inside, dy, zeros)?
        }
    };
    let dx = match want_x {
        true => Some(conv_input_grad(g, x, f, dz, &attrs)?),
        false => None,
    };
    let (df, db) = if want_fb {
        let sizes = shape_of(g, f, DType::I32)?;
        let id = node(g, "Conv2DBackpropFilterBias", &[x, sizes, dz], &attrs)?;
        let fs = g.shape(f).clone();
        g.refine_output_shape(Output::new(id, 0), fs);
        (Some(Output::new(id, 0)), Some(Output::new(id, 1)))
    } else {
        (None, None)
    };
    Ok(vec![dx, df, db])
}

/// `Conv2DBackpropFilterBias(x, sizes, dz)`: the filter part is bilinear in (x, dz) like
/// Conv2DBackpropFilter; the bias part sums `dz`, so its gradient broadcasts back.
fn conv2d_backprop_filter_bias_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dz) = (ctx.input(0)?, ctx.input(2)?);
    let (g_filter, g_bias) = (ctx.grad(0), ctx.grad(1));
    let attrs = copied_attrs(ctx, CONV_ATTRS);
    let format = data_format(ctx);
    let (want_x, want_dz) = (ctx.wants(0), ctx.wants(2));
    let g = &mut *ctx.graph;
    let dx = match (g_filter, want_x) {
        (Some(d), true) => Some(conv_input_grad(g, x, d, dz, &attrs)?),
        _ => None,
    };
    let mut ddz = Vec::new();
    if want_dz {
        if let Some(d) = g_filter {
            ddz.push(node1(g, "Conv2D", &[x, d], &attrs)?);
        }
        if let Some(d) = g_bias {
            let zeros = g.zeros_like(dz)?;
            ddz.push(
                g.build("BiasAdd")
                    .input(zeros)
                    .input(d)
                    .attr("data_format", format)
                    .finish1()?,
            );
        }
    }
    Ok(vec![dx, None, sum_parts(g, &ddz)?])
}

fn max_pool_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, dy) = (ctx.input(0)?, ctx.output(0), ctx.dy()?);
    let attrs = copied_attrs(ctx, POOL_ATTRS);
    Ok(vec![Some(node1(
        ctx.graph,
        "MaxPoolGrad",
        &[x, y, dy],
        &attrs,
    )?)])
}

/// `MaxPoolGrad` is linear in its incoming gradient (the inputs only choose where it goes);
/// its adjoint gathers at the chosen positions.
fn max_pool_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, d) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let attrs = copied_attrs(ctx, POOL_ATTRS);
    let r = node1(ctx.graph, "MaxPoolGradGrad", &[x, y, d], &attrs)?;
    Ok(vec![None, None, Some(r)])
}

fn max_pool_grad_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, d) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let attrs = copied_attrs(ctx, POOL_ATTRS);
    let r = node1(ctx.graph, "MaxPoolGrad", &[x, y, d], &attrs)?;
    Ok(vec![None, None, Some(r)])
}

fn avg_pool_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let attrs = copied_attrs(ctx, POOL_ATTRS);
    let g = &mut *ctx.graph;
    let sizes = shape_of(g, x, DType::I32)?;
    let out = node1(g, "AvgPoolGrad", &[sizes, dy], &attrs)?;
    let s = g.shape(x).clone();
    g.refine_output_shape(out, s);
    Ok(vec![Some(out)])
}

/// `AvgPoolGrad` is linear in its gradient input; its adjoint is `AvgPool` itself.
fn avg_pool_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let d = ctx.dy()?;
    let attrs = copied_attrs(ctx, POOL_ATTRS);
    Ok(vec![None, Some(node1(ctx.graph, "AvgPool", &[d], &attrs)?)])
}

/// A per-channel vector `v` shaped to broadcast against a 4-D tensor in `format`.
fn channel_broadcastable(g: &mut Graph, v: Output, format: DataFormat) -> Result<Output> {
    match format {
        DataFormat::Nhwc => Ok(v),
        DataFormat::Nchw => g.reshape(v, &[-1, 1, 1]),
    }
}

/// Sums the parts, `None` when there are none.
fn sum_parts(g: &mut Graph, parts: &[Output]) -> Result<Option<Output>> {
    Ok(match parts {
        [] => None,
        [one] => Some(*one),
        more => Some(g.add_n(more)?),
    })
}

/// The number of elements per channel of `x` (batch * height * width), as a scalar like `x`.
fn per_channel_count(g: &mut Graph, x: Output, scale: Output) -> Result<Output> {
    if let (Some(n), Some(c)) = (g.shape(x).num_elements(), g.shape(scale).num_elements()) {
        return g.scalar_like(x, (n / c.max(1)) as f64);
    }
    let dtype = g.dtype(x);
    let n = g.size(x)?;
    let c = g.size(scale)?;
    let n = g.cast(n, dtype)?;
    let c = g.cast(c, dtype)?;
    g.div(n, c)
}

/// FusedBatchNorm: the gradient reaching `y` goes through `FusedBatchNormGrad`; gradients
/// reaching the statistics outputs (which TensorFlow drops) are added exactly: in training mode
/// the batch mean and variance depend on `x`, in inference mode they are the given mean and
/// variance.
fn fused_batch_norm_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, scale) = (ctx.input(0)?, ctx.input(1)?);
    let var_in = ctx.input(4)?;
    let p = BatchNormParams::from_attrs(ctx.attrs()).map_err(|e| ctx.error(e))?;
    let attrs = copied_attrs(ctx, BN_ATTRS);
    let (rs1, rs2) = (ctx.output(3), ctx.output(4));
    let d: Vec<Option<Output>> = (0..5).map(|i| ctx.grad(i)).collect();
    let want_stats = ctx.wants(3) || ctx.wants(4);
    let g = &mut *ctx.graph;
    let (mut dx, mut dmean, mut dvar) = (Vec::new(), Vec::new(), Vec::new());
    let (mut dscale, mut doffset) = (None, None);
    if let Some(dy) = d[0] {
        let id = node(g, "FusedBatchNormGrad", &[dy, x, scale, rs1, rs2], &attrs)?;
        let (ds, dof) = (Output::new(id, 1), Output::new(id, 2));
        dx.push(Output::new(id, 0));
        (dscale, doffset) = (Some(ds), Some(dof));
        if !p.is_training && want_stats {
            // y = scale * (x - mean) * r + offset with r = rsqrt(variance + epsilon), so
            // dmean = -sum(dy) * scale * r and dvariance = -scale * r^2 * dscale / 2.
            let eps = g.scalar_like(var_in, p.epsilon)?;
            let ve = g.add(var_in, eps)?;
            let r = g.rsqrt(ve)?;
            let sr = g.mul(scale, r)?;
            let t = g.mul(dof, sr)?;
            dmean.push(g.neg(t)?);
            let r2 = g.mul(sr, r)?;
            let t = g.mul(ds, r2)?;
            let half = g.scalar_like(var_in, -0.5)?;
            dvar.push(g.mul(t, half)?);
        }
    }
    let (d_mean_out, d_var_out): (Vec<Output>, Vec<Output>) = (
        [d[1], d[3]].into_iter().flatten().collect(),
        [d[2], d[4]].into_iter().flatten().collect(),
    );
    if p.is_training {
        if !d_mean_out.is_empty() || !d_var_out.is_empty() {
            let n = per_channel_count(g, x, scale)?;
            let inv_n = g.reciprocal(n)?;
            if let Some(dm) = sum_parts(g, &d_mean_out)? {
                let t = g.mul(dm, inv_n)?;
                let t = channel_broadcastable(g, t, p.format)?;
                let zeros = g.zeros_like(x)?;
                dx.push(g.add(zeros, t)?);
            }
            // batch_variance = v * n / max(n - 1, 1), reserve_space_2 = v (biased), and
            // dv/dx = 2 (x - mean) / n.
            let mut dv = Vec::new();
            if let Some(d2) = d[2] {
                let one = g.scalar_like(x, 1.0)?;
                let nm1 = g.sub(n, one)?;
                let nm1 = g.maximum(nm1, one)?;
                let bessel = g.div(n, nm1)?;
                dv.push(g.mul(d2, bessel)?);
            }
            dv.extend(d[4]);
            if let Some(dv) = sum_parts(g, &dv)? {
                let two = g.scalar_like(x, 2.0)?;
                let k = g.mul(dv, inv_n)?;
                let k = g.mul(k, two)?;
                let k = channel_broadcastable(g, k, p.format)?;
                let m = channel_broadcastable(g, rs1, p.format)?;
                let centered = g.sub(x, m)?;
                dx.push(g.mul(centered, k)?);
            }
        }
    } else {
        dmean.extend(d_mean_out);
        dvar.extend(d_var_out);
    }
    let dx = sum_parts(g, &dx)?;
    let (dmean, dvar) = if p.is_training {
        (None, None)
    } else {
        (sum_parts(g, &dmean)?, sum_parts(g, &dvar)?)
    };
    Ok(vec![dx, dscale, doffset, dmean, dvar])
}

fn lrn_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, dy) = (ctx.input(0)?, ctx.output(0), ctx.dy()?);
    let attrs = copied_attrs(ctx, LRN_ATTRS);
    Ok(vec![Some(node1(
        ctx.graph,
        "LRNGrad",
        &[dy, x, y],
        &attrs,
    )?)])
}
