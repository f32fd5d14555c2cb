//! Convolution, pooling, batch normalization and local response normalization: their op
//! definitions (with the backprop ops the gradient rules emit), shape functions and builder
//! methods. Their attributes and window arithmetic live in `nn_ops`.

use super::nn_ops::{
    merge_dim, window_dim, BatchNormParams, ConvParams, DataFormat, FusedActivation, LrnParams,
    PoolParams,
};
use super::shape_from_tensor;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

/// The default `strides`/`dilations` (all ones).
const ONES4: [i64; 4] = [1, 1, 1, 1];

pub(crate) fn conv_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr("strides", AttrKind::Ints)
        .attr("padding", AttrKind::Str)
        .attr_default("data_format", AttrKind::Str, "NHWC")
        .attr_default("dilations", AttrKind::Ints, ONES4.to_vec())
}

pub(crate) fn pool_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr("ksize", AttrKind::Ints)
        .attr("strides", AttrKind::Ints)
        .attr("padding", AttrKind::Str)
        .attr_default("data_format", AttrKind::Str, "NHWC")
}

fn batch_norm_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr_default("epsilon", AttrKind::Float, 1e-4)
        .attr_default("data_format", AttrKind::Str, "NHWC")
        .attr_default("is_training", AttrKind::Bool, true)
}

fn lrn_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr_default("depth_radius", AttrKind::Int, 5i64)
        .attr_default("bias", AttrKind::Float, 1.0)
        .attr_default("alpha", AttrKind::Float, 1.0)
        .attr_default("beta", AttrKind::Float, 0.5)
}

/// Convolution, pooling, batch normalization and LRN, with their backprop ops.
pub fn image_op_defs() -> Vec<OpDef> {
    vec![
        conv_op("Conv2D", infer_conv2d)
            .doc("2-D convolution (cross-correlation) of a 4-D input with a [h, w, in, out] filter")
            .input("input", DTypeSet::FLOAT)
            .input("filter", DTypeSet::FLOAT)
            .output("output"),
        conv_op("Conv2DBackpropInput", infer_conv2d_backprop_input)
            .doc("gradient of Conv2D with respect to its input, of shape `input_sizes`")
            .input("input_sizes", DTypeSet::INDEX)
            .input("filter", DTypeSet::FLOAT)
            .input("out_backprop", DTypeSet::FLOAT)
            .output("output"),
        conv_op("Conv2DBackpropFilter", infer_conv2d_backprop_filter)
            .doc("gradient of Conv2D with respect to its filter, of shape `filter_sizes`")
            .input("input", DTypeSet::FLOAT)
            .input("filter_sizes", DTypeSet::INDEX)
            .input("out_backprop", DTypeSet::FLOAT)
            .output("output"),
        conv_op("FusedConv2D", infer_fused_conv2d)
            .doc(
                "activation(Conv2D(input, filter) + bias) in one pass over the output, as \
                  TensorFlow's _FusedConv2D; activation is Relu, Relu6 or Linear",
            )
            .input("input", DTypeSet::FLOAT)
            .input("filter", DTypeSet::FLOAT)
            .input("bias", DTypeSet::FLOAT)
            .output("output")
            .attr_default("activation", AttrKind::Str, "Relu"),
        conv_op(
            "Conv2DBackpropFilterBias",
            infer_conv2d_backprop_filter_bias,
        )
        .doc(
            "Conv2DBackpropFilter and, from the same pass, the bias gradient (the sum of \
                  out_backprop over all but the channel dim)",
        )
        .input("input", DTypeSet::FLOAT)
        .input("filter_sizes", DTypeSet::INDEX)
        .input("out_backprop", DTypeSet::FLOAT)
        .output("filter_backprop")
        .output("bias_backprop"),
        pool_op("MaxPool", infer_pool)
            .doc("max over each window; padding never wins")
            .input("input", DTypeSet::FLOAT)
            .output("output"),
        pool_op("MaxPoolGrad", infer_max_pool_grad)
            .doc("routes each window's gradient to the first maximum of the window")
            .input("orig_input", DTypeSet::FLOAT)
            .input("orig_output", DTypeSet::FLOAT)
            .input("grad", DTypeSet::FLOAT)
            .output("output"),
        pool_op("MaxPoolGradGrad", infer_max_pool_grad_grad)
            .doc(
                "gathers, per window, `grad` at the window's first maximum (MaxPoolGrad's adjoint)",
            )
            .input("orig_input", DTypeSet::FLOAT)
            .input("orig_output", DTypeSet::FLOAT)
            .input("grad", DTypeSet::FLOAT)
            .output("output"),
        pool_op("AvgPool", infer_pool)
            .doc("mean over each window; with SAME, over the window's elements inside the input")
            .input("value", DTypeSet::FLOAT)
            .output("output"),
        pool_op("AvgPoolGrad", infer_avg_pool_grad)
            .doc("spreads each window's gradient evenly over the window's elements in the input")
            .input("orig_input_shape", DTypeSet::INDEX)
            .input("grad", DTypeSet::FLOAT)
            .output("output"),
        batch_norm_op("FusedBatchNorm", infer_fused_batch_norm)
            .doc(
                "batch normalization over all dims but channels; training mode uses the batch's \
                  statistics (batch_variance with Bessel's correction, reserve_space_2 without)",
            )
            .input("x", DTypeSet::FLOAT)
            .input("scale", DTypeSet::FLOAT)
            .input("offset", DTypeSet::FLOAT)
            .input("mean", DTypeSet::FLOAT)
            .input("variance", DTypeSet::FLOAT)
            .output("y")
            .output("batch_mean")
            .output("batch_variance")
            .output("reserve_space_1")
            .output("reserve_space_2"),
        batch_norm_op("FusedBatchNormGrad", infer_fused_batch_norm_grad)
            .doc(
                "gradients of FusedBatchNorm's y for x, scale and offset, from the saved mean and \
                  (biased) variance",
            )
            .input("y_backprop", DTypeSet::FLOAT)
            .input("x", DTypeSet::FLOAT)
            .input("scale", DTypeSet::FLOAT)
            .input("reserve_space_1", DTypeSet::FLOAT)
            .input("reserve_space_2", DTypeSet::FLOAT)
            .output("x_backprop")
            .output("scale_backprop")
            .output("offset_backprop"),
        lrn_op("LRN", infer_lrn)
            .doc(
                "local response normalization across channels (NHWC): \
                  x / (bias + alpha * sum of squares within depth_radius) ^ beta",
            )
            .input("input", DTypeSet::FLOAT)
            .output("output"),
        lrn_op("LRNGrad", infer_lrn_grad)
            .doc("gradient of LRN from the incoming gradient, LRN's input and its output")
            .input("input_grads", DTypeSet::FLOAT)
            .input("input_image", DTypeSet::FLOAT)
            .input("output_image", DTypeSet::FLOAT)
            .output("output"),
    ]
}

/// The dims of a 4-D image shape as (batch, height, width, channels); all unknown when the rank
/// is unknown.
fn image_dims(s: &Shape, what: &str, format: DataFormat) -> std::result::Result<[Dim; 4], String> {
    match s.dims() {
        None => Ok([Dim::Unknown, Dim::Unknown, Dim::Unknown, Dim::Unknown]),
        Some(d) if d.len() == 4 => Ok(format.nhwc(d)),
        Some(_) => Err(format!(
            "{what} must be 4-D ({}), got shape {s}",
            format.name()
        )),
    }
}

/// The dims [h, w, in, out] of a filter shape.
fn filter_dims(s: &Shape, what: &str) -> std::result::Result<[Dim; 4], String> {
    match s.dims() {
        None => Ok([Dim::Unknown, Dim::Unknown, Dim::Unknown, Dim::Unknown]),
        Some(d) if d.len() == 4 => {
            if d[..2].contains(&Dim::Known(0)) {
                return Err(format!(
                    "{what} must be at least 1x1 in its spatial dims, got shape {s}"
                ));
            }
            Ok([d[0].clone(), d[1].clone(), d[2].clone(), d[3].clone()])
        }
        Some(_) => Err(format!(
            "{what} must be 4-D [height, width, in_channels, out_channels], got shape {s}"
        )),
    }
}

fn image_shape(format: DataFormat, nhwc: [Dim; 4]) -> Shape {
    Shape::new(format.from_nhwc(nhwc).to_vec())
}

/// Conv2D's output shape, (batch, height, width, channels).
fn conv_output_dims(
    x: &[Dim; 4],
    f: &[Dim; 4],
    p: &ConvParams,
) -> std::result::Result<[Dim; 4], String> {
    merge_dim(&x[3], &f[2], || {
        "the input's channels differ from the filter's in_channels (filter dim 2)".to_string()
    })?;
    let oh = window_dim(&x[1], &f[0], p.strides[0], p.dilations[0], p.padding)?;
    let ow = window_dim(&x[2], &f[1], p.strides[1], p.dilations[1], p.padding)?;
    Ok([x[0].clone(), oh, ow, f[3].clone()])
}

pub(crate) fn infer_conv2d(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let p = ConvParams::from_attrs(ctx.attrs)?;
    let x = image_dims(&ctx.input(0).shape, "input", p.format)?;
    let f = filter_dims(&ctx.input(1).shape, "filter")?;
    let out = conv_output_dims(&x, &f, &p)?;
    Ok(vec![TensorType {
        dtype,
        shape: image_shape(p.format, out),
    }])
}

/// A 4-D shape read from a sizes input (a constant, else known rank with unknown dims).
fn sizes_shape(ctx: &InferCtx<'_>, i: usize, what: &str) -> std::result::Result<Shape, String> {
    let s = ctx.input(i).shape.clone();
    if s.rank().is_some_and(|r| r != 1) || s.dim(0).known().is_some_and(|n| n != 4) {
        return Err(format!("{what} must be a vector of 4 sizes, got shape {s}"));
    }
    Ok(match shape_from_tensor(ctx, i)? {
        sh if sh.rank().is_some() => sh,
        _ => Shape::unknown_dims(4),
    })
}

/// Checks that `out_backprop` has the shape Conv2D gives for `x` and `f`.
fn check_out_backprop(
    x: &[Dim; 4],
    f: &[Dim; 4],
    dy: &Shape,
    p: &ConvParams,
) -> std::result::Result<(), String> {
    let want = conv_output_dims(x, f, p)?;
    let got = image_dims(dy, "out_backprop", p.format)?;
    for (a, b) in want.iter().zip(&got) {
        if a.merge(b).is_none() {
            return Err(format!(
                "out_backprop has shape {dy}, but the convolution gives {}",
                image_shape(p.format, want.clone())
            ));
        }
    }
    Ok(())
}

fn infer_conv2d_backprop_input(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[1, 2])?;
    let p = ConvParams::from_attrs(ctx.attrs)?;
    let sizes = sizes_shape(ctx, 0, "input_sizes")?;
    let x = image_dims(&sizes, "input_sizes", p.format)?;
    let f = filter_dims(&ctx.input(1).shape, "filter")?;
    check_out_backprop(&x, &f, &ctx.input(2).shape, &p)?;
    let c = merge_dim(&x[3], &f[2], || {
        "input_sizes' channels differ from the filter's in_channels".to_string()
    })?;
    Ok(vec![TensorType {
        dtype,
        shape: image_shape(p.format, [x[0].clone(), x[1].clone(), x[2].clone(), c]),
    }])
}

fn infer_conv2d_backprop_filter(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 2])?;
    let p = ConvParams::from_attrs(ctx.attrs)?;
    let x = image_dims(&ctx.input(0).shape, "input", p.format)?;
    let sizes = sizes_shape(ctx, 1, "filter_sizes")?;
    let f = filter_dims(&sizes, "filter_sizes")?;
    check_out_backprop(&x, &f, &ctx.input(2).shape, &p)?;
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(f.to_vec()),
    }])
}

fn infer_fused_conv2d(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1, 2])?;
    FusedActivation::parse(ctx.attrs.string("activation")?)?;
    let p = ConvParams::from_attrs(ctx.attrs)?;
    let x = image_dims(&ctx.input(0).shape, "input", p.format)?;
    let f = filter_dims(&ctx.input(1).shape, "filter")?;
    let mut out = conv_output_dims(&x, &f, &p)?;
    let b = &ctx.input(2).shape;
    if b.rank().is_some_and(|r| r != 1) {
        return Err(format!("bias must be a vector, got shape {b}"));
    }
    out[3] = merge_dim(&out[3], &b.dim(0), || {
        "bias must have one entry per output channel (filter dim 3)".to_string()
    })?;
    Ok(vec![TensorType {
        dtype,
        shape: image_shape(p.format, out),
    }])
}

fn infer_conv2d_backprop_filter_bias(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let mut out = infer_conv2d_backprop_filter(ctx)?;
    let o = out[0].shape.dim(3);
    let dtype = out[0].dtype;
    out.push(TensorType {
        dtype,
        shape: Shape::new(vec![o]),
    });
    Ok(out)
}

/// A pooling op's output dims (batch, height, width, channels).
fn pool_output_dims(x: &[Dim; 4], p: &PoolParams) -> std::result::Result<[Dim; 4], String> {
    let oh = window_dim(&x[1], &Dim::Known(p.ksize[0]), p.strides[0], 1, p.padding)?;
    let ow = window_dim(&x[2], &Dim::Known(p.ksize[1]), p.strides[1], 1, p.padding)?;
    Ok([x[0].clone(), oh, ow, x[3].clone()])
}

pub(crate) fn infer_pool(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let p = PoolParams::from_attrs(ctx.attrs)?;
    let x = image_dims(&ctx.input(0).shape, "input", p.format)?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: image_shape(p.format, pool_output_dims(&x, &p)?),
    }])
}

/// Checks a pooling gradient's inputs: `pooled` (orig_output, and the incoming gradient when
/// `grad_is_pooled`) must have the pooled shape of `orig_input`.
fn check_pool_grad(
    ctx: &InferCtx<'_>,
    grad_is_pooled: bool,
) -> Result<(DType, Shape, Shape), String> {
    let dtype = ctx.same_dtype(&[0, 1, 2])?;
    let p = PoolParams::from_attrs(ctx.attrs)?;
    let x = image_dims(&ctx.input(0).shape, "orig_input", p.format)?;
    let pooled = image_shape(p.format, pool_output_dims(&x, &p)?);
    let input = ctx.input(0).shape.clone();
    let orig_out = pooled
        .merge(&ctx.input(1).shape)
        .map_err(|e| format!("orig_output does not have the pooled shape of orig_input: {e}"))?;
    let (grad_like, what) = if grad_is_pooled {
        (&orig_out, "orig_output")
    } else {
        (&input, "orig_input")
    };
    grad_like
        .merge(&ctx.input(2).shape)
        .map_err(|e| format!("grad must have the shape of {what}: {e}"))?;
    let input = if input.rank().is_some() {
        input
    } else {
        Shape::unknown_dims(4)
    };
    Ok((dtype, input, orig_out))
}

fn infer_max_pool_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let (dtype, input, _) = check_pool_grad(ctx, true)?;
    Ok(vec![TensorType {
        dtype,
        shape: input,
    }])
}

fn infer_max_pool_grad_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let (dtype, _, pooled) = check_pool_grad(ctx, false)?;
    Ok(vec![TensorType {
        dtype,
        shape: pooled,
    }])
}

fn infer_avg_pool_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let p = PoolParams::from_attrs(ctx.attrs)?;
    let sizes = sizes_shape(ctx, 0, "orig_input_shape")?;
    let x = image_dims(&sizes, "orig_input_shape", p.format)?;
    let pooled = image_shape(p.format, pool_output_dims(&x, &p)?);
    pooled
        .merge(&ctx.input(1).shape)
        .map_err(|e| format!("grad does not have the pooled shape of orig_input_shape: {e}"))?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(1),
        shape: sizes,
    }])
}

/// Checks a per-channel vector input of batch norm against the channel dim `c`.
fn channel_vector(
    ctx: &InferCtx<'_>,
    i: usize,
    what: &str,
    c: &Dim,
    may_be_empty: bool,
) -> std::result::Result<Dim, String> {
    let s = &ctx.input(i).shape;
    if s.rank().is_some_and(|r| r != 1) {
        return Err(format!("{what} must be a vector, got shape {s}"));
    }
    let d = s.dim(0);
    if may_be_empty && d == Dim::Known(0) {
        return Ok(c.clone());
    }
    merge_dim(c, &d, || {
        format!("{what} must have one entry per channel of x")
    })
}

fn infer_fused_batch_norm(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1, 2, 3, 4])?;
    let p = BatchNormParams::from_attrs(ctx.attrs)?;
    let x = image_dims(&ctx.input(0).shape, "x", p.format)?;
    let mut c = x[3].clone();
    for (i, what) in [(1, "scale"), (2, "offset")] {
        c = channel_vector(ctx, i, what, &c, false)?;
    }
    for (i, what) in [(3, "mean"), (4, "variance")] {
        c = channel_vector(ctx, i, what, &c, p.is_training)?;
    }
    let y = image_shape(
        p.format,
        [x[0].clone(), x[1].clone(), x[2].clone(), c.clone()],
    );
    let v = TensorType {
        dtype,
        shape: Shape::new(vec![c]),
    };
    Ok(vec![
        TensorType { dtype, shape: y },
        v.clone(),
        v.clone(),
        v.clone(),
        v,
    ])
}

fn infer_fused_batch_norm_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1, 2, 3, 4])?;
    let p = BatchNormParams::from_attrs(ctx.attrs)?;
    let xs = ctx
        .input(0)
        .shape
        .merge(&ctx.input(1).shape)
        .map_err(|e| format!("y_backprop and x must have one shape: {e}"))?;
    let x = image_dims(&xs, "x", p.format)?;
    let mut c = x[3].clone();
    for (i, what) in [(2, "scale"), (3, "reserve_space_1"), (4, "reserve_space_2")] {
        c = channel_vector(ctx, i, what, &c, false)?;
    }
    let v = TensorType {
        dtype,
        shape: Shape::new(vec![c.clone()]),
    };
    Ok(vec![
        TensorType {
            dtype,
            shape: image_shape(p.format, [x[0].clone(), x[1].clone(), x[2].clone(), c]),
        },
        v.clone(),
        v,
    ])
}

fn infer_lrn(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    LrnParams::from_attrs(ctx.attrs)?;
    image_dims(&ctx.input(0).shape, "input", DataFormat::Nhwc)?;
    let s = &ctx.input(0).shape;
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: if s.rank().is_some() {
            s.clone()
        } else {
            Shape::unknown_dims(4)
        },
    }])
}

fn infer_lrn_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1, 2])?;
    LrnParams::from_attrs(ctx.attrs)?;
    let mut s = ctx.input(0).shape.clone();
    for i in [1, 2] {
        s = s.merge(&ctx.input(i).shape).map_err(|e| {
            format!("input_grads, input_image and output_image need one shape: {e}")
        })?;
    }
    image_dims(&s, "input_image", DataFormat::Nhwc)?;
    if s.rank().is_none() {
        s = Shape::unknown_dims(4);
    }
    Ok(vec![TensorType { dtype, shape: s }])
}

/// The outputs of [`Graph::fused_batch_norm`].
#[derive(Clone, Copy, Debug)]
pub struct FusedBatchNorm {
    pub y: Output,
    /// The batch mean (training) or the given mean (inference).
    pub batch_mean: Output,
    /// The batch variance with Bessel's correction (training) or the given variance.
    pub batch_variance: Output,
}

impl Graph {
    /// `Conv2D` in NHWC with 4-entry `strides` and `padding` "SAME" or "VALID".
    pub fn conv2d(
        &mut self,
        input: Output,
        filter: Output,
        strides: &[i64],
        padding: &str,
    ) -> Result<Output> {
        self.conv2d_full(input, filter, strides, padding, "NHWC", &ONES4)
    }
    /// `Conv2D` with every attribute: `strides` and `dilations` have 4 entries in
    /// `data_format` order ("NHWC" or "NCHW").
    pub fn conv2d_full(
        &mut self,
        input: Output,
        filter: Output,
        strides: &[i64],
        padding: &str,
        data_format: &str,
        dilations: &[i64],
    ) -> Result<Output> {
        self.build("Conv2D")
            .input(input)
            .input(filter)
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .attr("data_format", data_format)
            .attr("dilations", dilations.to_vec())
            .finish1()
    }
    /// `FusedConv2D`: `activation(conv2d(input, filter) + bias)` ("Relu", "Relu6" or
    /// "Linear"), with every Conv2D attribute.
    #[allow(clippy::too_many_arguments)]
    pub fn fused_conv2d(
        &mut self,
        input: Output,
        filter: Output,
        bias: Output,
        strides: &[i64],
        padding: &str,
        data_format: &str,
        dilations: &[i64],
        activation: &str,
    ) -> Result<Output> {
        self.build("FusedConv2D")
            .inputs([input, filter, bias])
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .attr("data_format", data_format)
            .attr("dilations", dilations.to_vec())
            .attr("activation", activation)
            .finish1()
    }
    /// `MaxPool` with 4-entry `ksize` and `strides` in `data_format` order.
    pub fn max_pool(
        &mut self,
        input: Output,
        ksize: &[i64],
        strides: &[i64],
        padding: &str,
        data_format: &str,
    ) -> Result<Output> {
        self.pool("MaxPool", input, ksize, strides, padding, data_format)
    }
    /// `AvgPool` with 4-entry `ksize` and `strides` in `data_format` order.
    pub fn avg_pool(
        &mut self,
        input: Output,
        ksize: &[i64],
        strides: &[i64],
        padding: &str,
        data_format: &str,
    ) -> Result<Output> {
        self.pool("AvgPool", input, ksize, strides, padding, data_format)
    }
    fn pool(
        &mut self,
        op: &str,
        input: Output,
        ksize: &[i64],
        strides: &[i64],
        padding: &str,
        data_format: &str,
    ) -> Result<Output> {
        self.build(op)
            .input(input)
            .attr("ksize", ksize.to_vec())
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .attr("data_format", data_format)
            .finish1()
    }
    /// `FusedBatchNorm`. In training mode `mean` and `variance` may be empty vectors; the
    /// outputs are then the batch's statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn fused_batch_norm(
        &mut self,
        x: Output,
        scale: Output,
        offset: Output,
        mean: Output,
        variance: Output,
        epsilon: f64,
        data_format: &str,
        is_training: bool,
    ) -> Result<FusedBatchNorm> {
        let id = self
            .build("FusedBatchNorm")
            .inputs([x, scale, offset, mean, variance])
            .attr("epsilon", epsilon)
            .attr("data_format", data_format)
            .attr("is_training", is_training)
            .finish()?;
        Ok(FusedBatchNorm {
            y: Output::new(id, 0),
            batch_mean: Output::new(id, 1),
            batch_variance: Output::new(id, 2),
        })
    }
    /// Local response normalization over the channels of an NHWC tensor.
    pub fn lrn(
        &mut self,
        input: Output,
        depth_radius: i64,
        bias: f64,
        alpha: f64,
        beta: f64,
    ) -> Result<Output> {
        self.build("LRN")
            .input(input)
            .attr("depth_radius", depth_radius)
            .attr("bias", bias)
            .attr("alpha", alpha)
            .attr("beta", beta)
            .finish1()
    }
}
