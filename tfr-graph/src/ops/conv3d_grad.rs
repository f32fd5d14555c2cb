//! Gradient rules of `conv3d_ops.rs`. A convolution's backprop ops are bilinear in their two
//! tensor inputs, so their gradients are the other backprop op and the forward convolution
//! (as for Conv2D in `nn_grad.rs`); a pooling's gradient op is linear in its gradient input,
//! whose adjoint is the pooling's other gradient op (MaxPool3DGrad <-> MaxPool3DGradGrad) or the
//! pooling itself (AvgPool3DGrad).

use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::error::Result;
use crate::grad::{shape_of, GradCtx};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::Rule;
    vec![
        ("DepthwiseConv2dNative", Rule(depthwise_grad)),
        (
            "DepthwiseConv2dNativeBackpropInput",
            Rule(depthwise_backprop_input_grad),
        ),
        (
            "DepthwiseConv2dNativeBackpropFilter",
            Rule(depthwise_backprop_filter_grad),
        ),
        ("Conv3D", Rule(conv3d_grad)),
        ("Conv3DBackpropInputV2", Rule(conv3d_backprop_input_grad)),
        ("Conv3DBackpropFilterV2", Rule(conv3d_backprop_filter_grad)),
        ("MaxPool3D", Rule(max_pool3d_grad)),
        ("MaxPool3DGrad", Rule(max_pool3d_grad_grad)),
        ("MaxPool3DGradGrad", Rule(max_pool3d_grad_grad_grad)),
        ("AvgPool3D", Rule(avg_pool3d_grad)),
        ("AvgPool3DGrad", Rule(avg_pool3d_grad_grad)),
    ]
}

const CONV_ATTRS: &[&str] = &["strides", "padding", "data_format", "dilations"];
const POOL_ATTRS: &[&str] = &["ksize", "strides", "padding", "data_format"];

type Attrs = Vec<(&'static str, AttrValue)>;

fn copied(ctx: &GradCtx<'_>, names: &[&'static str]) -> Attrs {
    names
        .iter()
        .filter_map(|&n| ctx.attrs().get(n).map(|v| (n, v.clone())))
        .collect()
}

/// A node of `op` with `inputs` and `attrs`, refined to the static shape of `like`.
fn node1(
    g: &mut Graph,
    op: &str,
    inputs: &[Output],
    attrs: &Attrs,
    like: Option<Output>,
) -> Result<Output> {
    let mut b = g.build(op).inputs(inputs.iter().copied());
    for (k, v) in attrs {
        b = b.attr(k, v.clone());
    }
    let out = b.finish1()?;
    if let Some(like) = like {
        let s = g.shape(like).clone();
        g.refine_output_shape(out, s);
    }
    Ok(out)
}

/// The three ops of one convolution family.
struct ConvOps {
    forward: &'static str,
    input: &'static str,
    filter: &'static str,
}

const DEPTHWISE: ConvOps = ConvOps {
    forward: "DepthwiseConv2dNative",
    input: "DepthwiseConv2dNativeBackpropInput",
    filter: "DepthwiseConv2dNativeBackpropFilter",
};

const CONV3D: ConvOps = ConvOps {
    forward: "Conv3D",
    input: "Conv3DBackpropInputV2",
    filter: "Conv3DBackpropFilterV2",
};

/// The input backprop of `dy` against `filter`, shaped like `x`.
fn input_grad(
    g: &mut Graph,
    ops: &ConvOps,
    x: Output,
    f: Output,
    dy: Output,
    a: &Attrs,
) -> Result<Output> {
    let sizes = shape_of(g, x, DType::I32)?;
    node1(g, ops.input, &[sizes, f, dy], a, Some(x))
}

/// The filter backprop of `dy` against `x`, shaped like `filter`.
fn filter_grad(
    g: &mut Graph,
    ops: &ConvOps,
    x: Output,
    f: Output,
    dy: Output,
    a: &Attrs,
) -> Result<Output> {
    let sizes = shape_of(g, f, DType::I32)?;
    node1(g, ops.filter, &[x, sizes, dy], a, Some(f))
}

fn forward_grad(ctx: &mut GradCtx<'_>, ops: &ConvOps) -> Grads {
    let (x, f, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let a = copied(ctx, CONV_ATTRS);
    let (want_x, want_f) = (ctx.wants(0), ctx.wants(1));
    let g = &mut *ctx.graph;
    let dx = match want_x {
        true => Some(input_grad(g, ops, x, f, dy, &a)?),
        false => None,
    };
    let df = match want_f {
        true => Some(filter_grad(g, ops, x, f, dy, &a)?),
        false => None,
    };
    Ok(vec![dx, df])
}

/// `BackpropInput(sizes, filter, dy)` is bilinear in (filter, dy).
fn backprop_input_grad(ctx: &mut GradCtx<'_>, ops: &ConvOps) -> Grads {
    let (f, dy, d) = (ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let a = copied(ctx, CONV_ATTRS);
    let (want_f, want_dy) = (ctx.wants(1), ctx.wants(2));
    let g = &mut *ctx.graph;
    let df = match want_f {
        true => Some(filter_grad(g, ops, d, f, dy, &a)?),
        false => None,
    };
    let ddy = match want_dy {
        true => Some(node1(g, ops.forward, &[d, f], &a, Some(dy))?),
        false => None,
    };
    Ok(vec![None, df, ddy])
}

/// `BackpropFilter(x, sizes, dy)` is bilinear in (x, dy).
fn backprop_filter_grad(ctx: &mut GradCtx<'_>, ops: &ConvOps) -> Grads {
    let (x, dy, d) = (ctx.input(0)?, ctx.input(2)?, ctx.dy()?);
    let a = copied(ctx, CONV_ATTRS);
    let (want_x, want_dy) = (ctx.wants(0), ctx.wants(2));
    let g = &mut *ctx.graph;
    let dx = match want_x {
        true => Some(input_grad(g, ops, x, d, dy, &a)?),
        false => None,
    };
    let ddy = match want_dy {
        true => Some(node1(g, ops.forward, &[x, d], &a, Some(dy))?),
        false => None,
    };
    Ok(vec![dx, None, ddy])
}

fn depthwise_grad(ctx: &mut GradCtx<'_>) -> Grads {
    forward_grad(ctx, &DEPTHWISE)
}
fn depthwise_backprop_input_grad(ctx: &mut GradCtx<'_>) -> Grads {
    backprop_input_grad(ctx, &DEPTHWISE)
}
fn depthwise_backprop_filter_grad(ctx: &mut GradCtx<'_>) -> Grads {
    backprop_filter_grad(ctx, &DEPTHWISE)
}
fn conv3d_grad(ctx: &mut GradCtx<'_>) -> Grads {
    forward_grad(ctx, &CONV3D)
}
fn conv3d_backprop_input_grad(ctx: &mut GradCtx<'_>) -> Grads {
    backprop_input_grad(ctx, &CONV3D)
}
fn conv3d_backprop_filter_grad(ctx: &mut GradCtx<'_>) -> Grads {
    backprop_filter_grad(ctx, &CONV3D)
}

fn max_pool3d_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, dy) = (ctx.input(0)?, ctx.output(0), ctx.dy()?);
    let a = copied(ctx, POOL_ATTRS);
    let dx = node1(ctx.graph, "MaxPool3DGrad", &[x, y, dy], &a, Some(x))?;
    Ok(vec![Some(dx)])
}

/// MaxPool3DGrad is linear in `grad` (the inputs only choose where it goes).
fn max_pool3d_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, d) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let a = copied(ctx, POOL_ATTRS);
    let r = node1(ctx.graph, "MaxPool3DGradGrad", &[x, y, d], &a, Some(y))?;
    Ok(vec![None, None, Some(r)])
}

fn max_pool3d_grad_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, d) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let a = copied(ctx, POOL_ATTRS);
    let r = node1(ctx.graph, "MaxPool3DGrad", &[x, y, d], &a, Some(x))?;
    Ok(vec![None, None, Some(r)])
}

fn avg_pool3d_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let a = copied(ctx, POOL_ATTRS);
    let g = &mut *ctx.graph;
    let sizes = shape_of(g, x, DType::I32)?;
    Ok(vec![Some(node1(
        g,
        "AvgPool3DGrad",
        &[sizes, dy],
        &a,
        Some(x),
    )?)])
}

/// AvgPool3DGrad is linear in `grad`; its adjoint is AvgPool3D.
fn avg_pool3d_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (grad, d) = (ctx.input(1)?, ctx.dy()?);
    let a = copied(ctx, POOL_ATTRS);
    let r = node1(ctx.graph, "AvgPool3D", &[d], &a, Some(grad))?;
    Ok(vec![None, Some(r)])
}
