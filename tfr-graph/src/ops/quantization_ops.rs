//! 8-bit quantized inference, with TensorFlow's op names and range conventions: a quantized
//! tensor is a `uint8` tensor (TF's `quint8`) or an `int32` accumulator (TF's `qint32`) that
//! travels with two f32 scalars, the real values its lowest and highest codes stand for.
//! `QuantizeV2`/`Dequantize` convert (modes MIN_COMBINED, MIN_FIRST, SCALED; per tensor, or
//! per channel along `axis`); `QuantizedMatMul` and `QuantizedBiasAdd` accumulate in int32;
//! `Requantize` and `RequantizationRange` bring an int32 result back to 8 bits; `QuantizedRelu`
//! clips in the quantized domain. `FakeQuantWithMinMaxVars` simulates 8-bit rounding in f32 for
//! quantization-aware training and is the only differentiable op here (its gradient, TF's
//! straight-through estimator, is at the end of this file).
//!
//! tfr has no `qint8`/`quint8` dtypes: `uint8` stands for `quint8` and `int32` for `qint32`.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::grad::GradCtx;
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{normalize_axis, Gradient, InferCtx, OpDef};
use crate::shape::{Dim, Shape};

/// How real values map to 8-bit codes (TensorFlow's `mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantizeMode {
    /// `q = round((x - min) * 255 / (max - min))`.
    MinCombined,
    /// Like MIN_COMBINED with `min` rounded to a code first, so that 0.0 is exactly representable.
    MinFirst,
    /// Symmetric: `q = round(x * scale)` with the range widened to be symmetric around zero.
    Scaled,
}

impl QuantizeMode {
    pub fn name(self) -> &'static str {
        match self {
            QuantizeMode::MinCombined => "MIN_COMBINED",
            QuantizeMode::MinFirst => "MIN_FIRST",
            QuantizeMode::Scaled => "SCALED",
        }
    }
    pub fn parse(s: &str) -> std::result::Result<QuantizeMode, String> {
        match s {
            "MIN_COMBINED" => Ok(QuantizeMode::MinCombined),
            "MIN_FIRST" => Ok(QuantizeMode::MinFirst),
            "SCALED" => Ok(QuantizeMode::Scaled),
            _ => Err(format!(
                "mode must be MIN_COMBINED, MIN_FIRST or SCALED, got `{s}`"
            )),
        }
    }
}

/// How `QuantizeV2` rounds (TensorFlow's `round_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundMode {
    HalfAwayFromZero,
    HalfToEven,
}

impl RoundMode {
    pub fn name(self) -> &'static str {
        match self {
            RoundMode::HalfAwayFromZero => "HALF_AWAY_FROM_ZERO",
            RoundMode::HalfToEven => "HALF_TO_EVEN",
        }
    }
    pub fn parse(s: &str) -> std::result::Result<RoundMode, String> {
        match s {
            "HALF_AWAY_FROM_ZERO" => Ok(RoundMode::HalfAwayFromZero),
            "HALF_TO_EVEN" => Ok(RoundMode::HalfToEven),
            _ => Err(format!(
                "round_mode must be HALF_AWAY_FROM_ZERO or HALF_TO_EVEN, got `{s}`"
            )),
        }
    }
}

const QUANTIZED: DTypeSet = DTypeSet::of(&[DType::U8, DType::I32]);
const QUINT8: DTypeSet = DTypeSet::of(&[DType::U8]);
const QINT32: DTypeSet = DTypeSet::of(&[DType::I32]);
const F32: DTypeSet = DTypeSet::of(&[DType::F32]);

fn scalar_f32() -> TensorType {
    TensorType::new(DType::F32, Shape::scalar())
}

/// Inputs `from..to` must be f32 scalars (a range's ends); `what` names them.
fn check_range_inputs(ctx: &InferCtx<'_>, idx: &[usize]) -> std::result::Result<(), String> {
    for &i in idx {
        if let Some(r) = ctx.input(i).shape.rank() {
            if r != 0 {
                return Err(format!(
                    "input {i} (a range end) must be a scalar, got shape {}",
                    ctx.input(i).shape
                ));
            }
        }
    }
    Ok(())
}

/// The range inputs of a per-tensor (axis -1: scalars) or per-channel (vectors of the channel
/// dim) quantization, and the shape of its min/max outputs.
fn range_shape(ctx: &InferCtx<'_>, data: &Shape, axis: i64) -> std::result::Result<Shape, String> {
    if axis == -1 {
        check_range_inputs(ctx, &[1, 2])?;
        return Ok(Shape::scalar());
    }
    let channels = match data.rank() {
        Some(rank) => data.dim(normalize_axis(axis, rank)?),
        None => Dim::Unknown,
    };
    for i in [1, 2] {
        let s = &ctx.input(i).shape;
        if let Some(r) = s.rank() {
            if r != 1 {
                return Err(format!(
                    "with axis {axis}, input {i} must be a vector of per-channel range ends, \
                     got shape {s}"
                ));
            }
            if let (Dim::Known(a), Dim::Known(b)) = (s.dim(0), channels.clone()) {
                if a != b {
                    return Err(format!(
                        "input {i} has {a} range ends, but dim {axis} of the data is {b}"
                    ));
                }
            }
        }
    }
    Ok(Shape::new(vec![channels]))
}

fn infer_quantize(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    QuantizeMode::parse(ctx.attrs.string("mode")?)?;
    RoundMode::parse(ctx.attrs.string("round_mode")?)?;
    let t = *ctx.attrs.dtype("T")?;
    if t != DType::U8 {
        return Err(format!("T must be uint8 (quint8), got {t}"));
    }
    let data = ctx.input(0).shape.clone();
    let range = range_shape(ctx, &data, *ctx.attrs.int("axis")?)?;
    Ok(vec![
        TensorType::new(t, data),
        TensorType::new(DType::F32, range.clone()),
        TensorType::new(DType::F32, range),
    ])
}

fn infer_dequantize(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    QuantizeMode::parse(ctx.attrs.string("mode")?)?;
    let data = ctx.input(0).shape.clone();
    range_shape(ctx, &data, *ctx.attrs.int("axis")?)?;
    Ok(vec![TensorType::new(DType::F32, data)])
}

fn matrix_dims(s: &Shape, transpose: bool, what: &str) -> std::result::Result<(Dim, Dim), String> {
    match s.rank() {
        None => Ok((Dim::Unknown, Dim::Unknown)),
        Some(2) if transpose => Ok((s.dim(1), s.dim(0))),
        Some(2) => Ok((s.dim(0), s.dim(1))),
        Some(_) => Err(format!("{what} must be a matrix, got shape {s}")),
    }
}

fn infer_quantized_matmul(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_range_inputs(ctx, &[2, 3, 4, 5])?;
    let (m, ka) = matrix_dims(&ctx.input(0).shape, *ctx.attrs.boolean("transpose_a")?, "a")?;
    let (kb, n) = matrix_dims(&ctx.input(1).shape, *ctx.attrs.boolean("transpose_b")?, "b")?;
    if let (Dim::Known(x), Dim::Known(y)) = (ka, kb) {
        if x != y {
            return Err(format!(
                "the inner dims differ: a has {x} columns, b has {y} rows"
            ));
        }
    }
    Ok(vec![
        TensorType::new(DType::I32, Shape::new(vec![m, n])),
        scalar_f32(),
        scalar_f32(),
    ])
}

fn infer_quantized_bias_add(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_range_inputs(ctx, &[2, 3, 4, 5])?;
    let input = &ctx.input(0).shape;
    let bias = &ctx.input(1).shape;
    if let Some(r) = bias.rank() {
        if r != 1 {
            return Err(format!("bias must be a vector, got shape {bias}"));
        }
    }
    if let Some(r) = input.rank() {
        if r == 0 {
            return Err("input must have at least one dim".into());
        }
        if let (Dim::Known(c), Dim::Known(b)) = (input.dim(r - 1), bias.dim(0)) {
            if c != b {
                return Err(format!(
                    "bias has {b} values, but the input's last dim is {c}"
                ));
            }
        }
    }
    Ok(vec![
        TensorType::new(DType::I32, input.clone()),
        scalar_f32(),
        scalar_f32(),
    ])
}

/// 8-bit codes of input 0's shape and their range; inputs `ranges` are range ends.
fn infer_to_quint8(
    ctx: &InferCtx<'_>,
    ranges: &[usize],
) -> std::result::Result<Vec<TensorType>, String> {
    check_range_inputs(ctx, ranges)?;
    let out = *ctx.attrs.dtype("out_type")?;
    if out != DType::U8 {
        return Err(format!("out_type must be uint8 (quint8), got {out}"));
    }
    Ok(vec![
        TensorType::new(out, ctx.input(0).shape.clone()),
        scalar_f32(),
        scalar_f32(),
    ])
}

fn infer_quantized_relu(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    infer_to_quint8(ctx, &[1, 2])
}

fn infer_requantize(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    infer_to_quint8(ctx, &[1, 2, 3, 4])
}

fn infer_requantization_range(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_range_inputs(ctx, &[1, 2])?;
    Ok(vec![scalar_f32(), scalar_f32()])
}

fn infer_quantized_conv2d(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_range_inputs(ctx, &[2, 3, 4, 5])?;
    if ctx.attrs.string("data_format")? != "NHWC" {
        return Err("quantized convolutions take NHWC inputs only".into());
    }
    let mut out = super::conv_pool_ops::infer_conv2d(ctx)?;
    out[0].dtype = DType::I32;
    out.extend([scalar_f32(), scalar_f32()]);
    Ok(out)
}

fn infer_quantized_pool(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_range_inputs(ctx, &[1, 2])?;
    if ctx.attrs.string("data_format")? != "NHWC" {
        return Err("quantized pooling takes NHWC inputs only".into());
    }
    let mut out = super::conv_pool_ops::infer_pool(ctx)?;
    out.extend([scalar_f32(), scalar_f32()]);
    Ok(out)
}

fn infer_quantized_concat(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let total = ctx.inputs.len() - 1;
    if total == 0 || !total.is_multiple_of(3) {
        return Err(format!(
            "expects N values, N input_mins and N input_maxes after concat_dim, got {total} inputs"
        ));
    }
    let n = total / 3;
    for k in 0..n {
        if ctx.dtype(1 + k) != DType::U8 {
            return Err(format!(
                "values[{k}] must be uint8 (quint8), got {}",
                ctx.dtype(1 + k)
            ));
        }
    }
    check_range_inputs(ctx, &(1 + n..1 + 3 * n).collect::<Vec<_>>())?;
    let ranks: Vec<Option<usize>> = (0..n).map(|k| ctx.input(1 + k).shape.rank()).collect();
    let rank = ranks.iter().flatten().next().copied();
    if let Some(r) = rank {
        if let Some(k) = ranks.iter().position(|x| x.is_some_and(|x| x != r)) {
            return Err(format!(
                "values[{k}] has rank {:?}, values[0] {r}",
                ranks[k]
            ));
        }
    }
    let shape = match (rank, ctx.const_ints(0).as_deref()) {
        (Some(r), Some(&[axis])) => {
            let axis = normalize_axis(axis, r)?;
            let mut dims: Vec<Dim> = (0..r).map(|d| ctx.input(1).shape.dim(d)).collect();
            let mut along = Some(0usize);
            for k in 0..n {
                let s = &ctx.input(1 + k).shape;
                for (d, dim) in dims.iter_mut().enumerate() {
                    if d == axis {
                        along = along.zip(s.dim(d).known()).map(|(a, b)| a + b);
                    } else if let Some(m) = dim.merge(&s.dim(d)) {
                        *dim = m;
                    } else {
                        return Err(format!(
                            "values[{k}] has shape {s}, which differs from values[0] outside dim {axis}"
                        ));
                    }
                }
            }
            dims[axis] = along.map_or(Dim::Unknown, Dim::Known);
            Shape::new(dims)
        }
        (Some(r), _) => Shape::unknown_dims(r),
        _ => Shape::unknown(),
    };
    Ok(vec![
        TensorType::new(DType::U8, shape),
        scalar_f32(),
        scalar_f32(),
    ])
}

fn check_num_bits(ctx: &InferCtx<'_>) -> std::result::Result<(), String> {
    let bits = *ctx.attrs.int("num_bits")?;
    if !(2..=16).contains(&bits) {
        return Err(format!("num_bits must be in [2, 16], got {bits}"));
    }
    check_range_inputs(ctx, &[1, 2])
}

fn infer_fake_quant(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_num_bits(ctx)?;
    Ok(vec![ctx.input(0).clone()])
}

fn infer_fake_quant_grad(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    // Inputs: gradients, inputs, min, max.
    let g = &ctx.input(0).shape;
    let x = &ctx.input(1).shape;
    if g.merge(x).is_err() {
        return Err(format!(
            "gradients of shape {g} do not match inputs of shape {x}"
        ));
    }
    for i in [2, 3] {
        if let Some(r) = ctx.input(i).shape.rank() {
            if r != 0 {
                return Err(format!(
                    "input {i} (a range end) must be a scalar, got shape {}",
                    ctx.input(i).shape
                ));
            }
        }
    }
    Ok(vec![ctx.input(1).clone(), scalar_f32(), scalar_f32()])
}

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("QuantizeV2", infer_quantize)
            .doc("f32 -> 8-bit codes over [min_range, max_range] (widened to hold 0); also outputs the range used")
            .input("input", F32)
            .input("min_range", F32)
            .input("max_range", F32)
            .output("output")
            .output("output_min")
            .output("output_max")
            .attr_default("T", AttrKind::DType, DType::U8)
            .attr_default("mode", AttrKind::Str, "MIN_COMBINED")
            .attr_default("round_mode", AttrKind::Str, "HALF_AWAY_FROM_ZERO")
            .attr_default("narrow_range", AttrKind::Bool, false)
            .attr_default("axis", AttrKind::Int, -1i64)
            .attr_default("ensure_minimum_range", AttrKind::Float, 0.01f64)
            .no_gradient(),
        OpDef::new("Dequantize", infer_dequantize)
            .doc("8-bit (or int32) codes over [min_range, max_range] -> f32")
            .input("input", QUANTIZED)
            .input("min_range", F32)
            .input("max_range", F32)
            .output("output")
            .attr_default("mode", AttrKind::Str, "MIN_COMBINED")
            .attr_default("narrow_range", AttrKind::Bool, false)
            .attr_default("axis", AttrKind::Int, -1i64)
            .attr_default("dtype", AttrKind::DType, DType::F32)
            .no_gradient(),
        OpDef::new("QuantizedMatMul", infer_quantized_matmul)
            .doc("a @ b of 8-bit matrices, int32 accumulation of (a - zero_a)(b - zero_b); the range of one int32 code is the product of the inputs'")
            .input("a", QUINT8)
            .input("b", QUINT8)
            .input("min_a", F32)
            .input("max_a", F32)
            .input("min_b", F32)
            .input("max_b", F32)
            .output("out")
            .output("min_out")
            .output("max_out")
            .attr_default("Toutput", AttrKind::DType, DType::I32)
            .attr_default("transpose_a", AttrKind::Bool, false)
            .attr_default("transpose_b", AttrKind::Bool, false)
            .attr_default("Tactivation", AttrKind::DType, DType::U8)
            .no_gradient(),
        super::conv_pool_ops::conv_op("QuantizedConv2D", infer_quantized_conv2d)
            .doc("2-D convolution of 8-bit input and filter (NHWC), int32 accumulation of (x - zero_x)(f - zero_f); SAME padding pads with the code of 0.0")
            .input("input", QUINT8)
            .input("filter", QUINT8)
            .input("min_input", F32)
            .input("max_input", F32)
            .input("min_filter", F32)
            .input("max_filter", F32)
            .output("output")
            .output("min_output")
            .output("max_output")
            .attr_default("out_type", AttrKind::DType, DType::I32)
            .no_gradient(),
        super::conv_pool_ops::pool_op("QuantizedMaxPool", infer_quantized_pool)
            .doc("max over each window of 8-bit codes (the range is kept)")
            .input("input", QUINT8)
            .input("min_input", F32)
            .input("max_input", F32)
            .output("output")
            .output("min_output")
            .output("max_output")
            .no_gradient(),
        super::conv_pool_ops::pool_op("QuantizedAvgPool", infer_quantized_pool)
            .doc("mean over each window's codes inside the input, truncated to a code (the range is kept)")
            .input("input", QUINT8)
            .input("min_input", F32)
            .input("max_input", F32)
            .output("output")
            .output("min_output")
            .output("max_output")
            .no_gradient(),
        OpDef::new("QuantizedConcat", infer_quantized_concat)
            .doc("concat_dim, then N 8-bit values, their N mins and N maxes: the values re-expressed over the widest range and joined along concat_dim")
            .input("concat_dim", DTypeSet::of(&[DType::I32]))
            .list_input("values_mins_maxes", DTypeSet::ANY, 3)
            .output("output")
            .output("output_min")
            .output("output_max")
            .no_gradient(),
        OpDef::new("QuantizedBiasAdd", infer_quantized_bias_add)
            .doc("8-bit input + 8-bit bias along the last dim, as int32 over a symmetric range 2^17 times the inputs' largest")
            .input("input", QUINT8)
            .input("bias", QUINT8)
            .input("min_input", F32)
            .input("max_input", F32)
            .input("min_bias", F32)
            .input("max_bias", F32)
            .output("output")
            .output("min_out")
            .output("max_out")
            .attr_default("out_type", AttrKind::DType, DType::I32)
            .no_gradient(),
        OpDef::new("QuantizedRelu", infer_quantized_relu)
            .doc("max(x, 0) on codes: codes below the code of 0.0 become it")
            .input("features", QUANTIZED)
            .input("min_features", F32)
            .input("max_features", F32)
            .output("activations")
            .output("min_activations")
            .output("max_activations")
            .attr_default("out_type", AttrKind::DType, DType::U8)
            .no_gradient(),
        OpDef::new("Requantize", infer_requantize)
            .doc("int32 codes over [input_min, input_max] -> 8-bit codes over the requested range (clamped)")
            .input("input", QINT32)
            .input("input_min", F32)
            .input("input_max", F32)
            .input("requested_output_min", F32)
            .input("requested_output_max", F32)
            .output("output")
            .output("output_min")
            .output("output_max")
            .attr_default("out_type", AttrKind::DType, DType::U8)
            .no_gradient(),
        OpDef::new("RequantizationRange", infer_requantization_range)
            .doc("the real range the int32 codes of the input actually use")
            .input("input", QINT32)
            .input("input_min", F32)
            .input("input_max", F32)
            .output("output_min")
            .output("output_max")
            .no_gradient(),
        OpDef::new("FakeQuantWithMinMaxVars", infer_fake_quant)
            .doc("x rounded to the nearest of 2^num_bits levels over [min, max] (nudged so 0 is a level), in f32")
            .input("inputs", F32)
            .input("min", F32)
            .input("max", F32)
            .output("outputs")
            .attr_default("num_bits", AttrKind::Int, 8i64)
            .attr_default("narrow_range", AttrKind::Bool, false)
            .cheap(),
        OpDef::new("FakeQuantWithMinMaxVarsGradient", infer_fake_quant_grad)
            .doc("FakeQuantWithMinMaxVars' gradient: passes inside the nudged range, to min/max below/above it")
            .input("gradients", F32)
            .input("inputs", F32)
            .input("min", F32)
            .input("max", F32)
            .output("backprops_wrt_input")
            .output("backprop_wrt_min")
            .output("backprop_wrt_max")
            .attr_default("num_bits", AttrKind::Int, 8i64)
            .attr_default("narrow_range", AttrKind::Bool, false)
            .no_gradient(),
    ]
}

/// A quantized tensor and the real values of its lowest and highest codes.
#[derive(Clone, Copy, Debug)]
pub struct Quantized {
    pub value: Output,
    pub min: Output,
    pub max: Output,
}

impl Quantized {
    /// Outputs 0, 1 and 2 of a quantized op's node.
    pub fn of(node: NodeId) -> Quantized {
        Quantized {
            value: Output::new(node, 0),
            min: Output::new(node, 1),
            max: Output::new(node, 2),
        }
    }
}

impl Graph {
    /// `QuantizeV2` to uint8 over `[min, max]`, per tensor.
    pub fn quantize(
        &mut self,
        x: Output,
        min: Output,
        max: Output,
        mode: QuantizeMode,
    ) -> Result<Quantized> {
        let id = self
            .build("QuantizeV2")
            .input(x)
            .input(min)
            .input(max)
            .attr("mode", mode.name())
            .finish()?;
        Ok(Quantized::of(id))
    }
    /// `Dequantize` of `q` back to f32.
    pub fn dequantize(&mut self, q: Quantized, mode: QuantizeMode) -> Result<Output> {
        self.build("Dequantize")
            .input(q.value)
            .input(q.min)
            .input(q.max)
            .attr("mode", mode.name())
            .finish1()
    }
    fn quantized_op3(
        &mut self,
        op: &str,
        inputs: &[Output],
        attrs: &[(&str, bool)],
    ) -> Result<Quantized> {
        let mut b = self.build(op).inputs(inputs.iter().copied());
        for &(name, v) in attrs {
            b = b.attr(name, v);
        }
        let id = b.finish()?;
        Ok(Quantized::of(id))
    }
    /// `QuantizedMatMul`: int32 `a @ b` with its range.
    pub fn quantized_matmul(
        &mut self,
        a: Quantized,
        b: Quantized,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<Quantized> {
        self.quantized_op3(
            "QuantizedMatMul",
            &[a.value, b.value, a.min, a.max, b.min, b.max],
            &[("transpose_a", transpose_a), ("transpose_b", transpose_b)],
        )
    }
    /// `QuantizedConv2D` (NHWC): int32 codes of the convolution and their range.
    pub fn quantized_conv2d(
        &mut self,
        x: Quantized,
        filter: Quantized,
        strides: [i64; 2],
        padding: &str,
    ) -> Result<Quantized> {
        let id = self
            .build("QuantizedConv2D")
            .inputs([x.value, filter.value, x.min, x.max, filter.min, filter.max])
            .attr("strides", vec![1, strides[0], strides[1], 1])
            .attr("padding", padding)
            .finish()?;
        Ok(Quantized::of(id))
    }
    /// `QuantizedMaxPool` or `QuantizedAvgPool` (`max`: which) over `ksize` windows (NHWC).
    pub fn quantized_pool(
        &mut self,
        x: Quantized,
        max: bool,
        ksize: [i64; 2],
        strides: [i64; 2],
        padding: &str,
    ) -> Result<Quantized> {
        let op = if max {
            "QuantizedMaxPool"
        } else {
            "QuantizedAvgPool"
        };
        let id = self
            .build(op)
            .inputs([x.value, x.min, x.max])
            .attr("ksize", vec![1, ksize[0], ksize[1], 1])
            .attr("strides", vec![1, strides[0], strides[1], 1])
            .attr("padding", padding)
            .finish()?;
        Ok(Quantized::of(id))
    }
    /// `QuantizedConcat` of `values` along `axis`, over the widest of their ranges.
    pub fn quantized_concat(&mut self, values: &[Quantized], axis: i64) -> Result<Quantized> {
        let axis = self.scalar(super::builder_args::checked_i32(
            "quantized_concat",
            "axis",
            axis,
        )?)?;
        let id = self
            .build("QuantizedConcat")
            .input(axis)
            .inputs(values.iter().map(|q| q.value))
            .inputs(values.iter().map(|q| q.min))
            .inputs(values.iter().map(|q| q.max))
            .finish()?;
        Ok(Quantized::of(id))
    }
    /// `QuantizedBiasAdd`: int32 `x + bias` along the last dim.
    pub fn quantized_bias_add(&mut self, x: Quantized, bias: Quantized) -> Result<Quantized> {
        self.quantized_op3(
            "QuantizedBiasAdd",
            &[x.value, bias.value, x.min, x.max, bias.min, bias.max],
            &[],
        )
    }
    /// `QuantizedRelu` of 8-bit or int32 codes, as 8-bit codes over the same range.
    pub fn quantized_relu(&mut self, x: Quantized) -> Result<Quantized> {
        self.quantized_op3("QuantizedRelu", &[x.value, x.min, x.max], &[])
    }
    /// `Requantize` int32 codes to uint8 over `[min, max]`.
    pub fn requantize(&mut self, x: Quantized, min: Output, max: Output) -> Result<Quantized> {
        self.quantized_op3("Requantize", &[x.value, x.min, x.max, min, max], &[])
    }
    /// `RequantizationRange`: the (min, max) real values `x`'s codes use.
    pub fn requantization_range(&mut self, x: Quantized) -> Result<(Output, Output)> {
        let id = self
            .build("RequantizationRange")
            .inputs([x.value, x.min, x.max])
            .finish()?;
        Ok((Output::new(id, 0), Output::new(id, 1)))
    }
    /// `FakeQuantWithMinMaxVars` with `num_bits` levels over `[min, max]`.
    pub fn fake_quant(
        &mut self,
        x: Output,
        min: Output,
        max: Output,
        num_bits: i64,
        narrow_range: bool,
    ) -> Result<Output> {
        self.build("FakeQuantWithMinMaxVars")
            .inputs([x, min, max])
            .attr("num_bits", num_bits)
            .attr("narrow_range", narrow_range)
            .finish1()
    }
}

// ---- gradients --------------------------------------------------------------------------------

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    vec![("FakeQuantWithMinMaxVars", Gradient::Rule(fake_quant_grad))]
}

/// TensorFlow's straight-through estimator: the gradient passes where the input lies inside the
/// nudged range; what falls below goes to `min`, what falls above to `max`.
fn fake_quant_grad(ctx: &mut GradCtx<'_>) -> Result<Vec<Option<Output>>> {
    let (x, min, max) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let dy = ctx.dy()?;
    let bits = *ctx.attrs().int("num_bits").unwrap_or(&8);
    let narrow = *ctx.attrs().boolean("narrow_range").unwrap_or(&false);
    let id = ctx
        .graph
        .build("FakeQuantWithMinMaxVarsGradient")
        .inputs([dy, x, min, max])
        .attr("num_bits", bits)
        .attr("narrow_range", narrow)
        .finish()?;
    Ok(vec![
        Some(Output::new(id, 0)),
        Some(Output::new(id, 1)),
        Some(Output::new(id, 2)),
    ])
}
