//! Depthwise 2-D convolution, 3-D convolution and 3-D pooling (TensorFlow's
//! DepthwiseConv2dNative, Conv3D, MaxPool3D, AvgPool3D) with their backprop ops. Gradient
//! rules are in `conv3d_grad.rs`.
//!
//! The window arithmetic is `nn_ops::window_geometry` (shared with Conv2D and the 2-D pools);
//! depthwise convolution takes Conv2D's attributes (`nn_ops::ConvParams`). As in TensorFlow,
//! the shape functions accept channels-first layouts (NCHW, NCDHW) while the CPU kernels run
//! only channels-last ones.

use super::nn_ops::{merge_dim, window_dim, ConvParams, Padding};
use super::shape_from_tensor;
use crate::attr::{AttrKind, Attrs};
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

type InferResult = std::result::Result<Vec<TensorType>, String>;
type Res<T> = std::result::Result<T, String>;

/// The layout of a 5-D volume tensor: TensorFlow's `data_format` of the 3-D ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeFormat {
    Ndhwc,
    Ncdhw,
}

impl VolumeFormat {
    pub fn parse(s: &str) -> Res<VolumeFormat> {
        match s {
            "NDHWC" => Ok(VolumeFormat::Ndhwc),
            "NCDHW" => Ok(VolumeFormat::Ncdhw),
            other => Err(format!("data_format must be NDHWC or NCDHW, got {other:?}")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            VolumeFormat::Ndhwc => "NDHWC",
            VolumeFormat::Ncdhw => "NCDHW",
        }
    }
    /// (batch, depth, height, width, channels) of dims in this layout.
    pub fn ndhwc<T: Clone>(self, d: &[T]) -> [T; 5] {
        match self {
            VolumeFormat::Ndhwc => [
                d[0].clone(),
                d[1].clone(),
                d[2].clone(),
                d[3].clone(),
                d[4].clone(),
            ],
            VolumeFormat::Ncdhw => [
                d[0].clone(),
                d[2].clone(),
                d[3].clone(),
                d[4].clone(),
                d[1].clone(),
            ],
        }
    }
    /// The dims in this layout of (batch, depth, height, width, channels).
    pub fn from_ndhwc<T>(self, [n, d, h, w, c]: [T; 5]) -> [T; 5] {
        match self {
            VolumeFormat::Ndhwc => [n, d, h, w, c],
            VolumeFormat::Ncdhw => [n, c, d, h, w],
        }
    }
}

/// The (depth, height, width) entries of a 5-entry `strides`/`ksize`/`dilations` attribute in
/// `format` order; its batch and channel entries must be 1.
pub fn spatial_attr3(attrs: &Attrs, name: &str, format: VolumeFormat) -> Res<[usize; 3]> {
    let v = attrs.ints(name)?;
    if v.len() != 5 {
        return Err(format!(
            "{name} must have 5 entries (one per dim of {}), got {v:?}",
            format.name()
        ));
    }
    if v.iter().any(|&x| !(1..=(1 << 31)).contains(&x)) {
        return Err(format!("{name} must be positive, got {v:?}"));
    }
    let [n, d, h, w, c] = format.ndhwc(v);
    if n != 1 || c != 1 {
        return Err(format!(
            "{name} must be 1 in the batch and channel dims, got {v:?} ({})",
            format.name()
        ));
    }
    Ok([d as usize, h as usize, w as usize])
}

/// The parsed attributes of Conv3D and its backprop ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dParams {
    pub format: VolumeFormat,
    pub padding: Padding,
    pub strides: [usize; 3],
    pub dilations: [usize; 3],
}

impl Conv3dParams {
    pub fn from_attrs(attrs: &Attrs) -> Res<Conv3dParams> {
        let format = VolumeFormat::parse(attrs.string("data_format")?)?;
        Ok(Conv3dParams {
            format,
            padding: Padding::parse(attrs.string("padding")?)?,
            strides: spatial_attr3(attrs, "strides", format)?,
            dilations: spatial_attr3(attrs, "dilations", format)?,
        })
    }
}

/// The parsed attributes of the 3-D pooling ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool3dParams {
    pub format: VolumeFormat,
    pub padding: Padding,
    pub ksize: [usize; 3],
    pub strides: [usize; 3],
}

impl Pool3dParams {
    pub fn from_attrs(attrs: &Attrs) -> Res<Pool3dParams> {
        let format = VolumeFormat::parse(attrs.string("data_format")?)?;
        Ok(Pool3dParams {
            format,
            padding: Padding::parse(attrs.string("padding")?)?,
            ksize: spatial_attr3(attrs, "ksize", format)?,
            strides: spatial_attr3(attrs, "strides", format)?,
        })
    }
}

// ---- shape helpers ---------------------------------------------------------------------------

/// The dims of a rank-`rank` shape, `rank` unknown dims when its rank is unknown.
fn dims_of(s: &Shape, rank: usize, what: &str, layout: &str) -> Res<Vec<Dim>> {
    match s.dims() {
        None => Ok(vec![Dim::Unknown; rank]),
        Some(d) if d.len() == rank => Ok(d.to_vec()),
        Some(_) => Err(format!("{what} must be {rank}-D {layout}, got shape {s}")),
    }
}

/// A vector of `rank` sizes read from a sizes input (constant, else unknown dims).
fn sizes_shape(ctx: &InferCtx<'_>, i: usize, rank: usize, what: &str) -> Res<Shape> {
    let s = ctx.input(i).shape.clone();
    if s.rank().is_some_and(|r| r != 1) || s.dim(0).known().is_some_and(|n| n != rank) {
        return Err(format!(
            "{what} must be a vector of {rank} sizes, got shape {s}"
        ));
    }
    Ok(match shape_from_tensor(ctx, i)? {
        sh if sh.rank() == Some(rank) => sh,
        sh if sh.rank().is_some() => {
            return Err(format!("{what} must hold {rank} sizes, got {sh}"));
        }
        _ => Shape::unknown_dims(rank),
    })
}

/// The output spatial dims of a window over `x` (spatial dims only).
fn window_out(
    x: &[Dim],
    window: &[Dim],
    strides: &[usize],
    dilations: &[usize],
    padding: Padding,
) -> Res<Vec<Dim>> {
    (0..x.len())
        .map(|i| window_dim(&x[i], &window[i], strides[i], dilations[i], padding))
        .collect()
}

/// Checks that a gradient input has the shape the forward op gives.
fn check_grad_shape(want: &Shape, got: &Shape, what: &str) -> Res<()> {
    want.merge(got)
        .map(|_| ())
        .map_err(|_| format!("{what} has shape {got}, but the forward op gives {want}"))
}

fn check_filter_spatial(f: &[Dim], spatial: usize, what: &str) -> Res<()> {
    if f[..spatial].contains(&Dim::Known(0)) {
        return Err(format!("{what} must be at least 1 in each spatial dim"));
    }
    Ok(())
}

// ---- depthwise convolution -------------------------------------------------------------------

const DW_FILTER: &str = "[height, width, in_channels, channel_multiplier]";

/// (input NHWC, filter) dims -> the output shape in the op's layout.
fn depthwise_out(x: &[Dim], f: &[Dim], p: &ConvParams) -> Res<Shape> {
    check_filter_spatial(f, 2, "filter")?;
    merge_dim(&x[3], &f[2], || {
        "the input's channels differ from the filter's in_channels (filter dim 2)".into()
    })?;
    let sp = window_out(&x[1..3], &f[..2], &p.strides, &p.dilations, p.padding)?;
    let c = x[3].merge(&f[2]).unwrap_or(Dim::Unknown).mul(&f[3]);
    let nhwc = [x[0].clone(), sp[0].clone(), sp[1].clone(), c];
    Ok(Shape::new(p.format.from_nhwc(nhwc).to_vec()))
}

/// Depthwise convolution's attributes: Conv2D's, and no explicit paddings.
fn depthwise_params(attrs: &Attrs) -> Res<ConvParams> {
    if let Some(v) = attrs
        .ints_opt("explicit_paddings")
        .filter(|v| !v.is_empty())
    {
        return Err(format!(
            "explicit_paddings are not supported (padding must be SAME or VALID), got {v:?}"
        ));
    }
    ConvParams::from_attrs(attrs)
}

fn image_nhwc(s: &Shape, what: &str, p: &ConvParams) -> Res<Vec<Dim>> {
    let layout = format!("({})", p.format.name());
    Ok(p.format.nhwc(&dims_of(s, 4, what, &layout)?).to_vec())
}

fn infer_depthwise(ctx: &InferCtx<'_>) -> InferResult {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let p = depthwise_params(ctx.attrs)?;
    let x = image_nhwc(&ctx.input(0).shape, "input", &p)?;
    let f = dims_of(&ctx.input(1).shape, 4, "filter", DW_FILTER)?;
    let shape = depthwise_out(&x, &f, &p)?;
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_depthwise_backprop_input(ctx: &InferCtx<'_>) -> InferResult {
    let dtype = ctx.same_dtype(&[1, 2])?;
    let p = depthwise_params(ctx.attrs)?;
    let sizes = sizes_shape(ctx, 0, 4, "input_sizes")?;
    let x = image_nhwc(&sizes, "input_sizes", &p)?;
    let f = dims_of(&ctx.input(1).shape, 4, "filter", DW_FILTER)?;
    let want = depthwise_out(&x, &f, &p)?;
    check_grad_shape(&want, &ctx.input(2).shape, "out_backprop")?;
    Ok(vec![TensorType {
        dtype,
        shape: sizes,
    }])
}

fn infer_depthwise_backprop_filter(ctx: &InferCtx<'_>) -> InferResult {
    let dtype = ctx.same_dtype(&[0, 2])?;
    let p = depthwise_params(ctx.attrs)?;
    let x = image_nhwc(&ctx.input(0).shape, "input", &p)?;
    let sizes = sizes_shape(ctx, 1, 4, "filter_sizes")?;
    let f = dims_of(&sizes, 4, "filter_sizes", DW_FILTER)?;
    let want = depthwise_out(&x, &f, &p)?;
    check_grad_shape(&want, &ctx.input(2).shape, "out_backprop")?;
    Ok(vec![TensorType {
        dtype,
        shape: sizes,
    }])
}

// ---- 3-D convolution -------------------------------------------------------------------------

const FILTER3: &str = "[depth, height, width, in_channels, out_channels]";

fn volume(s: &Shape, what: &str, format: VolumeFormat) -> Res<Vec<Dim>> {
    let layout = format!("({})", format.name());
    Ok(format.ndhwc(&dims_of(s, 5, what, &layout)?).to_vec())
}

fn to_layout(format: VolumeFormat, d: Vec<Dim>) -> Shape {
    let [n, a, b, c, ch]: [Dim; 5] = d
        .try_into()
        .unwrap_or(std::array::from_fn(|_| Dim::Unknown));
    Shape::new(format.from_ndhwc([n, a, b, c, ch]).to_vec())
}

fn conv3d_out(x: &[Dim], f: &[Dim], p: &Conv3dParams) -> Res<Shape> {
    check_filter_spatial(f, 3, "filter")?;
    merge_dim(&x[4], &f[3], || {
        "the input's channels differ from the filter's in_channels (filter dim 3)".into()
    })?;
    let mut out = vec![x[0].clone()];
    out.extend(window_out(
        &x[1..4],
        &f[..3],
        &p.strides,
        &p.dilations,
        p.padding,
    )?);
    out.push(f[4].clone());
    Ok(to_layout(p.format, out))
}

fn infer_conv3d(ctx: &InferCtx<'_>) -> InferResult {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let p = Conv3dParams::from_attrs(ctx.attrs)?;
    let x = volume(&ctx.input(0).shape, "input", p.format)?;
    let f = dims_of(&ctx.input(1).shape, 5, "filter", FILTER3)?;
    let shape = conv3d_out(&x, &f, &p)?;
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_conv3d_backprop_input(ctx: &InferCtx<'_>) -> InferResult {
    let dtype = ctx.same_dtype(&[1, 2])?;
    let p = Conv3dParams::from_attrs(ctx.attrs)?;
    let sizes = sizes_shape(ctx, 0, 5, "input_sizes")?;
    let x = volume(&sizes, "input_sizes", p.format)?;
    let f = dims_of(&ctx.input(1).shape, 5, "filter", FILTER3)?;
    let want = conv3d_out(&x, &f, &p)?;
    check_grad_shape(&want, &ctx.input(2).shape, "out_backprop")?;
    Ok(vec![TensorType {
        dtype,
        shape: sizes,
    }])
}

fn infer_conv3d_backprop_filter(ctx: &InferCtx<'_>) -> InferResult {
    let dtype = ctx.same_dtype(&[0, 2])?;
    let p = Conv3dParams::from_attrs(ctx.attrs)?;
    let x = volume(&ctx.input(0).shape, "input", p.format)?;
    let sizes = sizes_shape(ctx, 1, 5, "filter_sizes")?;
    let f = dims_of(&sizes, 5, "filter_sizes", FILTER3)?;
    let want = conv3d_out(&x, &f, &p)?;
    check_grad_shape(&want, &ctx.input(2).shape, "out_backprop")?;
    Ok(vec![TensorType {
        dtype,
        shape: sizes,
    }])
}

// ---- 3-D pooling -----------------------------------------------------------------------------

fn pool3d_out(x: &[Dim], p: &Pool3dParams) -> Res<Shape> {
    let window: Vec<Dim> = p.ksize.iter().map(|&k| Dim::Known(k)).collect();
    let mut out = vec![x[0].clone()];
    out.extend(window_out(
        &x[1..4],
        &window,
        &p.strides,
        &[1; 3],
        p.padding,
    )?);
    out.push(x[4].clone());
    Ok(to_layout(p.format, out))
}

fn infer_pool3d(ctx: &InferCtx<'_>) -> InferResult {
    let p = Pool3dParams::from_attrs(ctx.attrs)?;
    let x = volume(&ctx.input(0).shape, "input", p.format)?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: pool3d_out(&x, &p)?,
    }])
}

/// MaxPool3DGrad (`grad_is_pooled`: output like orig_input) and MaxPool3DGradGrad (grad like
/// orig_input, output pooled).
fn infer_max_pool3d_grads(ctx: &InferCtx<'_>, grad_is_pooled: bool) -> InferResult {
    let dtype = ctx.same_dtype(&[0, 1, 2])?;
    let p = Pool3dParams::from_attrs(ctx.attrs)?;
    let input = &ctx.input(0).shape;
    let x = volume(input, "orig_input", p.format)?;
    let pooled = pool3d_out(&x, &p)?;
    let pooled = pooled
        .merge(&ctx.input(1).shape)
        .map_err(|e| format!("orig_output does not have the pooled shape of orig_input: {e}"))?;
    let input = if input.rank().is_some() {
        input.clone()
    } else {
        Shape::unknown_dims(5)
    };
    let (like, out, what) = match grad_is_pooled {
        true => (&pooled, &input, "orig_output"),
        false => (&input, &pooled, "orig_input"),
    };
    like.merge(&ctx.input(2).shape)
        .map_err(|e| format!("grad must have the shape of {what}: {e}"))?;
    Ok(vec![TensorType {
        dtype,
        shape: out.clone(),
    }])
}

fn infer_max_pool3d_grad(ctx: &InferCtx<'_>) -> InferResult {
    infer_max_pool3d_grads(ctx, true)
}

fn infer_max_pool3d_grad_grad(ctx: &InferCtx<'_>) -> InferResult {
    infer_max_pool3d_grads(ctx, false)
}

fn infer_avg_pool3d_grad(ctx: &InferCtx<'_>) -> InferResult {
    let p = Pool3dParams::from_attrs(ctx.attrs)?;
    let sizes = sizes_shape(ctx, 0, 5, "orig_input_shape")?;
    let x = volume(&sizes, "orig_input_shape", p.format)?;
    let pooled = pool3d_out(&x, &p)?;
    check_grad_shape(&pooled, &ctx.input(1).shape, "grad")?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(1),
        shape: sizes,
    }])
}

// ---- definitions -----------------------------------------------------------------------------

const ONES4: [i64; 4] = [1; 4];
const ONES5: [i64; 5] = [1; 5];

fn depthwise_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr("strides", AttrKind::Ints)
        .attr("padding", AttrKind::Str)
        .attr_default("data_format", AttrKind::Str, "NHWC")
        .attr_default("dilations", AttrKind::Ints, ONES4.to_vec())
        // TensorFlow's attribute for padding "EXPLICIT", which tfr does not support: only the
        // empty default is accepted (checked in the shape function).
        .attr_default("explicit_paddings", AttrKind::Ints, Vec::<i64>::new())
}

fn conv3d_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr("strides", AttrKind::Ints)
        .attr("padding", AttrKind::Str)
        .attr_default("data_format", AttrKind::Str, "NDHWC")
        .attr_default("dilations", AttrKind::Ints, ONES5.to_vec())
}

fn pool3d_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr("ksize", AttrKind::Ints)
        .attr("strides", AttrKind::Ints)
        .attr("padding", AttrKind::Str)
        .attr_default("data_format", AttrKind::Str, "NDHWC")
}

const I32: DTypeSet = DTypeSet::of(&[DType::I32]);

pub fn op_defs() -> Vec<OpDef> {
    vec![
        depthwise_op("DepthwiseConv2dNative", infer_depthwise)
            .doc(
                "depthwise 2-D convolution: each input channel convolved with its own \
                 channel_multiplier filters; output channel c * multiplier + m",
            )
            .input("input", DTypeSet::FLOAT)
            .input("filter", DTypeSet::FLOAT)
            .output("output"),
        depthwise_op(
            "DepthwiseConv2dNativeBackpropInput",
            infer_depthwise_backprop_input,
        )
        .doc("gradient of DepthwiseConv2dNative with respect to its input")
        .input("input_sizes", I32)
        .input("filter", DTypeSet::FLOAT)
        .input("out_backprop", DTypeSet::FLOAT)
        .output("output"),
        depthwise_op(
            "DepthwiseConv2dNativeBackpropFilter",
            infer_depthwise_backprop_filter,
        )
        .doc("gradient of DepthwiseConv2dNative with respect to its filter")
        .input("input", DTypeSet::FLOAT)
        .input("filter_sizes", I32)
        .input("out_backprop", DTypeSet::FLOAT)
        .output("output"),
        conv3d_op("Conv3D", infer_conv3d)
            .doc("3-D convolution (cross-correlation) of a 5-D input with a [d, h, w, in, out] filter")
            .input("input", DTypeSet::FLOAT)
            .input("filter", DTypeSet::FLOAT)
            .output("output"),
        conv3d_op("Conv3DBackpropInputV2", infer_conv3d_backprop_input)
            .doc("gradient of Conv3D with respect to its input, of shape `input_sizes`")
            .input("input_sizes", DTypeSet::INDEX)
            .input("filter", DTypeSet::FLOAT)
            .input("out_backprop", DTypeSet::FLOAT)
            .output("output"),
        conv3d_op("Conv3DBackpropFilterV2", infer_conv3d_backprop_filter)
            .doc("gradient of Conv3D with respect to its filter, of shape `filter_sizes`")
            .input("input", DTypeSet::FLOAT)
            .input("filter_sizes", I32)
            .input("out_backprop", DTypeSet::FLOAT)
            .output("output"),
        pool3d_op("MaxPool3D", infer_pool3d)
            .doc("max over each 3-D window; padding never wins")
            .input("input", DTypeSet::FLOAT)
            .output("output"),
        pool3d_op("MaxPool3DGrad", infer_max_pool3d_grad)
            .doc(
                "MaxPool3D's gradient, as TensorFlow's CPU kernel: each window's gradient goes to \
                 every element of the window within 1e-5 of its maximum",
            )
            .input("orig_input", DTypeSet::FLOAT)
            .input("orig_output", DTypeSet::FLOAT)
            .input("grad", DTypeSet::FLOAT)
            .output("output"),
        pool3d_op("MaxPool3DGradGrad", infer_max_pool3d_grad_grad)
            .doc("gathers, per window, `grad` at the window's first element equal to orig_output")
            .input("orig_input", DTypeSet::FLOAT)
            .input("orig_output", DTypeSet::FLOAT)
            .input("grad", DTypeSet::FLOAT)
            .output("output"),
        pool3d_op("AvgPool3D", infer_pool3d)
            .doc("mean over each 3-D window's elements inside the input")
            .input("input", DTypeSet::FLOAT)
            .output("output"),
        pool3d_op("AvgPool3DGrad", infer_avg_pool3d_grad)
            .doc("spreads each window's gradient evenly over its elements inside the input")
            .input("orig_input_shape", I32)
            .input("grad", DTypeSet::FLOAT)
            .output("output"),
    ]
}

// ---- builders --------------------------------------------------------------------------------

impl Graph {
    /// `DepthwiseConv2dNative` in NHWC: `filter` is [h, w, in, multiplier], `strides` and
    /// `dilations` have 4 entries.
    pub fn depthwise_conv2d_native(
        &mut self,
        input: Output,
        filter: Output,
        strides: &[i64],
        padding: &str,
        dilations: &[i64],
    ) -> Result<Output> {
        self.build("DepthwiseConv2dNative")
            .input(input)
            .input(filter)
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .attr("dilations", dilations.to_vec())
            .finish1()
    }
    /// `Conv3D` in NDHWC: `filter` is [d, h, w, in, out], `strides` and `dilations` have 5
    /// entries.
    pub fn conv3d(
        &mut self,
        input: Output,
        filter: Output,
        strides: &[i64],
        padding: &str,
        dilations: &[i64],
    ) -> Result<Output> {
        self.build("Conv3D")
            .input(input)
            .input(filter)
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .attr("dilations", dilations.to_vec())
            .finish1()
    }
    /// `MaxPool3D` in NDHWC with 5-entry `ksize` and `strides`.
    pub fn max_pool3d(
        &mut self,
        input: Output,
        ksize: &[i64],
        strides: &[i64],
        padding: &str,
    ) -> Result<Output> {
        self.pool3d("MaxPool3D", input, ksize, strides, padding)
    }
    /// `AvgPool3D` in NDHWC with 5-entry `ksize` and `strides`.
    pub fn avg_pool3d(
        &mut self,
        input: Output,
        ksize: &[i64],
        strides: &[i64],
        padding: &str,
    ) -> Result<Output> {
        self.pool3d("AvgPool3D", input, ksize, strides, padding)
    }
    fn pool3d(
        &mut self,
        op: &str,
        input: Output,
        ksize: &[i64],
        strides: &[i64],
        padding: &str,
    ) -> Result<Output> {
        self.build(op)
            .input(input)
            .attr("ksize", ksize.to_vec())
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .finish1()
    }
}
