//! Activations, softmax, bias addition and the fused cross-entropy losses; and the attributes
//! and window arithmetic of the image ops (padding, data format, `ConvParams`, `PoolParams`,
//! `BatchNormParams`, `LrnParams`, `FusedActivation`), shared by their op definitions in
//! `conv_pool_ops`, the kernels and the 3-D and quantized variants.

use super::same_as_input;
use crate::attr::{AttrKind, Attrs};
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

/// Elementwise activations: (name, summary).
pub const ACTIVATIONS: &[(&str, &str)] = &[
    ("Relu", "max(x, 0)"),
    ("Relu6", "min(max(x, 0), 6)"),
    ("Elu", "x if x > 0 else e^x - 1"),
    (
        "Selu",
        "scale * (x if x > 0 else alpha * (e^x - 1)), TensorFlow's constants",
    ),
    ("Softplus", "log(1 + e^x)"),
];

pub fn op_defs() -> Vec<OpDef> {
    let mut defs: Vec<OpDef> = ACTIVATIONS
        .iter()
        .map(|&(name, doc)| {
            OpDef::new(name, same_as_input)
                .doc(doc)
                .input("features", DTypeSet::FLOAT)
                .output("activations")
                .cheap()
        })
        .collect();
    defs.push(
        OpDef::new("Softmax", infer_logits)
            .doc("softmax over the last axis")
            .input("logits", DTypeSet::FLOAT)
            .output("softmax"),
    );
    defs.push(
        OpDef::new("LogSoftmax", infer_logits)
            .doc("log of softmax over the last axis, computed stably")
            .input("logits", DTypeSet::FLOAT)
            .output("logsoftmax"),
    );
    defs.push(
        OpDef::new("BiasAdd", infer_bias_add)
            .doc("adds a 1-D bias along the channel dim (last for NHWC, 1 for NCHW)")
            .input("value", DTypeSet::NUMERIC)
            .input("bias", DTypeSet::NUMERIC)
            .output("output")
            .attr_default("data_format", AttrKind::Str, "NHWC")
            .cheap(),
    );
    defs.push(OpDef::new("SoftmaxCrossEntropyWithLogits", infer_softmax_xent)
        .doc("per-row cross-entropy of softmax(features) against label distributions, and its gradient")
        .input("features", DTypeSet::FLOAT).input("labels", DTypeSet::FLOAT)
        .output("loss").output("backprop"));
    defs.push(OpDef::new("SparseSoftmaxCrossEntropyWithLogits", infer_sparse_xent)
        .doc("per-row cross-entropy of softmax(features) against class indices, and its gradient")
        .input("features", DTypeSet::FLOAT).input("labels", DTypeSet::INDEX)
        .output("loss").output("backprop"));
    defs.extend(gradient_op_defs());
    defs.extend(super::conv_pool_ops::image_op_defs());
    defs
}

fn infer_logits(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if ctx.input(0).shape.rank() == Some(0) {
        return Err("logits must have rank >= 1".into());
    }
    same_as_input(ctx)
}

fn infer_bias_add(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let (v, b) = (&ctx.input(0).shape, &ctx.input(1).shape);
    if b.rank().is_some_and(|r| r != 1) {
        return Err(format!("bias must be 1-D, got shape {b}"));
    }
    let nchw = ctx.attrs.string("data_format")? == "NCHW";
    if !nchw && ctx.attrs.string("data_format")? != "NHWC" {
        return Err(format!(
            "data_format must be NHWC or NCHW, got {}",
            ctx.attrs.string("data_format")?
        ));
    }
    let Some(r) = v.rank() else {
        return Ok(vec![TensorType {
            dtype,
            shape: v.clone(),
        }]);
    };
    let min_rank = if nchw { 3 } else { 2 };
    if r < min_rank {
        return Err(format!("value must have rank >= {min_rank}, got shape {v}"));
    }
    let c = if nchw { 1 } else { r - 1 };
    let mut dims = v.dims().unwrap_or_default().to_vec();
    dims[c] = dims[c].merge(&b.dim(0)).ok_or_else(|| {
        format!(
            "bias has {} entries but value's channel dim is {} (value {v})",
            b.dim(0),
            v.dim(c)
        )
    })?;
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(dims),
    }])
}

fn batch_dim(s: &Shape, what: &str) -> Result<Dim, String> {
    match s.rank() {
        Some(2) | None => Ok(s.dim(0)),
        Some(_) => Err(format!(
            "{what} must be a matrix [batch, classes], got shape {s}"
        )),
    }
}

fn infer_softmax_xent(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let (f, l) = (&ctx.input(0).shape, &ctx.input(1).shape);
    batch_dim(f, "features")?;
    batch_dim(l, "labels")?;
    let shape = f
        .merge(l)
        .map_err(|e| format!("features and labels disagree: {e}"))?;
    Ok(vec![
        TensorType {
            dtype,
            shape: Shape::new(vec![shape.dim(0)]),
        },
        TensorType {
            dtype,
            shape: if shape.rank().is_some() {
                shape
            } else {
                Shape::unknown_dims(2)
            },
        },
    ])
}

fn infer_sparse_xent(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let (f, l) = (&ctx.input(0).shape, &ctx.input(1).shape);
    let b = batch_dim(f, "features")?;
    if l.rank().is_some_and(|r| r != 1) {
        return Err(format!("labels must be a vector [batch], got shape {l}"));
    }
    let b = b
        .merge(&l.dim(0))
        .ok_or_else(|| format!("features {f} and labels {l} disagree on the batch"))?;
    let dtype = ctx.dtype(0);
    Ok(vec![
        TensorType {
            dtype,
            shape: Shape::new(vec![b.clone()]),
        },
        TensorType {
            dtype,
            shape: Shape::new(vec![b, f.dim(1)]),
        },
    ])
}

impl Graph {
    pub fn relu(&mut self, x: Output) -> Result<Output> {
        self.build("Relu").input(x).finish1()
    }
    pub fn relu6(&mut self, x: Output) -> Result<Output> {
        self.build("Relu6").input(x).finish1()
    }
    pub fn elu(&mut self, x: Output) -> Result<Output> {
        self.build("Elu").input(x).finish1()
    }
    pub fn selu(&mut self, x: Output) -> Result<Output> {
        self.build("Selu").input(x).finish1()
    }
    pub fn softplus(&mut self, x: Output) -> Result<Output> {
        self.build("Softplus").input(x).finish1()
    }
    pub fn softmax(&mut self, logits: Output) -> Result<Output> {
        self.build("Softmax").input(logits).finish1()
    }
    pub fn log_softmax(&mut self, logits: Output) -> Result<Output> {
        self.build("LogSoftmax").input(logits).finish1()
    }
    pub fn bias_add(&mut self, value: Output, bias: Output) -> Result<Output> {
        self.build("BiasAdd").input(value).input(bias).finish1()
    }
    /// Per-example loss of `softmax_cross_entropy_with_logits` (labels are distributions).
    pub fn softmax_cross_entropy_with_logits(
        &mut self,
        logits: Output,
        labels: Output,
    ) -> Result<Output> {
        self.build("SoftmaxCrossEntropyWithLogits")
            .input(logits)
            .input(labels)
            .finish1()
    }
    /// Per-example loss of `sparse_softmax_cross_entropy_with_logits` (labels are class ids).
    pub fn sparse_softmax_cross_entropy_with_logits(
        &mut self,
        logits: Output,
        labels: Output,
    ) -> Result<Output> {
        self.build("SparseSoftmaxCrossEntropyWithLogits")
            .input(logits)
            .input(labels)
            .finish1()
    }
}

// ---- ops emitted by the gradient rules (nn_grad.rs) -------------------------------------------

/// Fused backward ops of activations and bias addition.
pub fn gradient_op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("ReluGrad", infer_relu_grad)
            .doc("`gradients` where `features` > 0, else 0 (features may be Relu's input or output)")
            .input("gradients", DTypeSet::FLOAT)
            .input("features", DTypeSet::FLOAT)
            .output("backprops")
            .cheap(),
        OpDef::new("BiasAddGrad", infer_bias_add_grad)
            .doc("sum of `out_backprop` over every dim but the channel dim (last for NHWC, 1 for NCHW)")
            .input("out_backprop", DTypeSet::NUMERIC)
            .output("output")
            .attr_default("data_format", AttrKind::Str, "NHWC"),
    ]
}

fn infer_relu_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let shape = ctx
        .input(0)
        .shape
        .merge(&ctx.input(1).shape)
        .map_err(|e| format!("gradients and features need one shape: {e}"))?;
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_bias_add_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let format = ctx.attrs.string("data_format")?;
    let nchw = match format.as_str() {
        "NHWC" => false,
        "NCHW" => true,
        other => return Err(format!("data_format must be NHWC or NCHW, got {other}")),
    };
    let s = &ctx.input(0).shape;
    let channels = match s.rank() {
        None => Dim::Unknown,
        Some(r) if r < if nchw { 3 } else { 2 } => {
            return Err(format!("out_backprop has too few dims for {format}: {s}"))
        }
        Some(r) => s.dim(if nchw { 1 } else { r - 1 }),
    };
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: Shape::new(vec![channels]),
    }])
}

// ---- convolution, pooling and normalization ---------------------------------------------------

/// How a windowed op (convolution, pooling) pads its input: TensorFlow's `padding` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output size `ceil(input / stride)`; the padding needed to reach it is split with the odd
    /// element after (TensorFlow's arithmetic).
    Same,
    /// Only windows that lie wholly inside the input.
    Valid,
}

impl Padding {
    pub fn parse(s: &str) -> std::result::Result<Padding, String> {
        match s {
            "SAME" => Ok(Padding::Same),
            "VALID" => Ok(Padding::Valid),
            other => Err(format!("padding must be SAME or VALID, got {other:?}")),
        }
    }
}

/// The layout of a 4-D image tensor: TensorFlow's `data_format` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    Nhwc,
    Nchw,
}

impl DataFormat {
    pub fn parse(s: &str) -> std::result::Result<DataFormat, String> {
        match s {
            "NHWC" => Ok(DataFormat::Nhwc),
            "NCHW" => Ok(DataFormat::Nchw),
            other => Err(format!("data_format must be NHWC or NCHW, got {other:?}")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Nhwc => "NHWC",
            DataFormat::Nchw => "NCHW",
        }
    }
    /// The axes of (batch, height, width, channels) in this layout.
    pub fn axes(self) -> [usize; 4] {
        match self {
            DataFormat::Nhwc => [0, 1, 2, 3],
            DataFormat::Nchw => [0, 2, 3, 1],
        }
    }
    /// (batch, height, width, channels) of a 4-D shape in this layout.
    pub fn nhwc<T: Clone>(self, dims: &[T]) -> [T; 4] {
        self.axes().map(|a| dims[a].clone())
    }
    /// The 4-D shape in this layout of (batch, height, width, channels).
    pub fn from_nhwc<T: Clone>(self, [n, h, w, c]: [T; 4]) -> [T; 4] {
        match self {
            DataFormat::Nhwc => [n, h, w, c],
            DataFormat::Nchw => [n, c, h, w],
        }
    }
}

/// TensorFlow's window arithmetic along one spatial dim: (output size, padding before, padding
/// after). The effective window is `(window - 1) * dilation + 1`. VALID needs the effective
/// window to fit in the input; SAME gives `ceil(input / stride)` outputs and pads
/// `max((out - 1) * stride + effective - input, 0)`, half before (rounded down).
pub fn window_geometry(
    input: usize,
    window: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> std::result::Result<(usize, usize, usize), String> {
    if window == 0 {
        return Err("the window (filter or ksize) must be at least 1 in each spatial dim".into());
    }
    if stride == 0 || dilation == 0 {
        return Err(format!(
            "stride and dilation must be positive, got {stride} and {dilation}"
        ));
    }
    let effective = (window - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| format!("window {window} with dilation {dilation} is too large"))?;
    match padding {
        Padding::Valid => {
            if input < effective {
                return Err(format!(
                    "the window ({effective} elements with dilation) is larger than the input \
                     ({input}) with VALID padding"
                ));
            }
            Ok(((input - effective) / stride + 1, 0, 0))
        }
        Padding::Same => {
            let out = input.div_ceil(stride);
            let needed = (out.saturating_sub(1) * stride)
                .checked_add(effective)
                .ok_or_else(|| format!("window {window} with dilation {dilation} is too large"))?
                .saturating_sub(input);
            Ok((out, needed / 2, needed - needed / 2))
        }
    }
}

/// The (height, width) entries of a 4-entry `strides`/`ksize`/`dilations` attribute given in
/// `format` order; its batch and channel entries must be 1.
pub fn spatial_attr(
    attrs: &Attrs,
    name: &str,
    format: DataFormat,
) -> std::result::Result<[usize; 2], String> {
    let v = attrs.ints(name)?;
    if v.len() != 4 {
        return Err(format!(
            "{name} must have 4 entries (one per dim of {}), got {v:?}",
            format.name()
        ));
    }
    if v.iter().any(|&x| x < 1) {
        return Err(format!("{name} must be positive, got {v:?}"));
    }
    let [n, h, w, c] = format.axes();
    if v[n] != 1 || v[c] != 1 {
        return Err(format!(
            "{name} must be 1 in the batch and channel dims, got {v:?} ({})",
            format.name()
        ));
    }
    Ok([v[h] as usize, v[w] as usize])
}

/// The parsed attributes of Conv2D and its backprop ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    pub format: DataFormat,
    pub padding: Padding,
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
}

impl ConvParams {
    pub fn from_attrs(attrs: &Attrs) -> std::result::Result<ConvParams, String> {
        let format = DataFormat::parse(attrs.string("data_format")?)?;
        Ok(ConvParams {
            format,
            padding: Padding::parse(attrs.string("padding")?)?,
            strides: spatial_attr(attrs, "strides", format)?,
            dilations: spatial_attr(attrs, "dilations", format)?,
        })
    }
    /// (out, pad_before) along height and width for an input of `[h, w]` and a filter of
    /// `[fh, fw]`.
    pub fn geometry(
        &self,
        input: [usize; 2],
        filter: [usize; 2],
    ) -> std::result::Result<[(usize, usize); 2], String> {
        let mut out = [(0, 0); 2];
        for i in 0..2 {
            let (o, before, _) = window_geometry(
                input[i],
                filter[i],
                self.strides[i],
                self.dilations[i],
                self.padding,
            )?;
            out[i] = (o, before);
        }
        Ok(out)
    }
}

/// The parsed attributes of the pooling ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    pub format: DataFormat,
    pub padding: Padding,
    pub ksize: [usize; 2],
    pub strides: [usize; 2],
}

impl PoolParams {
    pub fn from_attrs(attrs: &Attrs) -> std::result::Result<PoolParams, String> {
        let format = DataFormat::parse(attrs.string("data_format")?)?;
        Ok(PoolParams {
            format,
            padding: Padding::parse(attrs.string("padding")?)?,
            ksize: spatial_attr(attrs, "ksize", format)?,
            strides: spatial_attr(attrs, "strides", format)?,
        })
    }
    /// (out, pad_before) along height and width for an input of `[h, w]`.
    pub fn geometry(&self, input: [usize; 2]) -> std::result::Result<[(usize, usize); 2], String> {
        let mut out = [(0, 0); 2];
        for i in 0..2 {
            let (o, before, _) =
                window_geometry(input[i], self.ksize[i], self.strides[i], 1, self.padding)?;
            out[i] = (o, before);
        }
        Ok(out)
    }
}

/// The parsed attributes of FusedBatchNorm and its gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    pub format: DataFormat,
    pub epsilon: f64,
    pub is_training: bool,
}

impl BatchNormParams {
    pub fn from_attrs(attrs: &Attrs) -> std::result::Result<BatchNormParams, String> {
        let epsilon = *attrs.float("epsilon")?;
        if epsilon.is_nan() || epsilon < 0.0 {
            return Err(format!("epsilon must be >= 0, got {epsilon}"));
        }
        Ok(BatchNormParams {
            format: DataFormat::parse(attrs.string("data_format")?)?,
            epsilon,
            is_training: *attrs.boolean("is_training")?,
        })
    }
}

/// The parsed attributes of LRN and its gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnParams {
    pub depth_radius: usize,
    pub bias: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl LrnParams {
    pub fn from_attrs(attrs: &Attrs) -> std::result::Result<LrnParams, String> {
        let r = *attrs.int("depth_radius")?;
        if !(0..=(1 << 20)).contains(&r) {
            return Err(format!("depth_radius must be in [0, 2^20], got {r}"));
        }
        Ok(LrnParams {
            depth_radius: r as usize,
            bias: *attrs.float("bias")?,
            alpha: *attrs.float("alpha")?,
            beta: *attrs.float("beta")?,
        })
    }
}

/// The static size of a windowed op's output along one dim.
pub(crate) fn window_dim(
    input: &Dim,
    window: &Dim,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> std::result::Result<Dim, String> {
    Ok(match (input, window.known()) {
        (Dim::Known(i), Some(w)) => {
            Dim::Known(window_geometry(*i, w, stride, dilation, padding)?.0)
        }
        (Dim::Known(i), None) if padding == Padding::Same => Dim::Known(i.div_ceil(stride)),
        (d, _) if padding == Padding::Same && stride == 1 => d.clone(),
        _ => Dim::Unknown,
    })
}

/// Merges two dims or explains the conflict.
pub(crate) fn merge_dim(
    a: &Dim,
    b: &Dim,
    what: impl Fn() -> String,
) -> std::result::Result<Dim, String> {
    a.merge(b).ok_or_else(|| format!("{}: {a} vs {b}", what()))
}

/// The activations FusedConv2D applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedActivation {
    Linear,
    Relu,
    Relu6,
}

impl FusedActivation {
    pub fn parse(s: &str) -> std::result::Result<FusedActivation, String> {
        match s {
            "Linear" => Ok(FusedActivation::Linear),
            "Relu" => Ok(FusedActivation::Relu),
            "Relu6" => Ok(FusedActivation::Relu6),
            other => Err(format!(
                "activation must be Linear, Relu or Relu6, got {other:?}"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            FusedActivation::Linear => "Linear",
            FusedActivation::Relu => "Relu",
            FusedActivation::Relu6 => "Relu6",
        }
    }
}
