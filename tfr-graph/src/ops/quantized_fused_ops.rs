//! TensorFlow's fused quantized products (the oneDNN ops its quantization passes emit):
//! `QuantizedMatMulWithBias{,AndRelu}AndRequantize`, `QuantizedMatMulWithBiasAndDequantize` and
//! `QuantizedConv2DWithBias{,AndRelu}AndRequantize`. Each multiplies 8-bit codes with int32
//! accumulation, adds an f32 bias per output column or channel, optionally applies ReLU and
//! writes either 8-bit codes over a range fixed ahead of time (`min_freezed_output`,
//! `max_freezed_output`, from calibration) or f32 values, so a chain of layers stays in 8 bits
//! without an int32 tensor, a range search or an f32 round trip between them.
//!
//! tfr has no qint8, so the weights are quint8 with a zero point (as `QuantizedMatMul`'s);
//! only an f32 bias is accepted (TF also takes a qint32 one). Real values are
//! `(a - za)(b - zb) * step_a * step_b + bias` with `step` the real value of one code; the
//! 8-bit output is MIN_FIRST's mapping of its range, computed in f32 with ties to even (what the
//! oneDNN kernels do). The Dequantize form takes the frozen range inputs too, as TF's, and
//! ignores them.

use super::quantization_ops::Quantized;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

const QUINT8: DTypeSet = DTypeSet::of(&[DType::U8]);
const F32: DTypeSet = DTypeSet::of(&[DType::F32]);

/// The matrix products: (op, applies ReLU, writes 8-bit codes).
pub const FUSED_MATMULS: [(&str, bool, bool); 3] = [
    ("QuantizedMatMulWithBiasAndRequantize", false, true),
    ("QuantizedMatMulWithBiasAndReluAndRequantize", true, true),
    ("QuantizedMatMulWithBiasAndDequantize", false, false),
];

/// The convolutions: (op, applies ReLU).
pub const FUSED_CONVS: [(&str, bool); 2] = [
    ("QuantizedConv2DWithBiasAndRequantize", false),
    ("QuantizedConv2DWithBiasAndReluAndRequantize", true),
];

fn scalar_f32() -> TensorType {
    TensorType::new(DType::F32, Shape::scalar())
}

/// Inputs 3..9 are range ends (scalars); the bias (input 2) is a vector of `channels`.
fn check_bias_and_ranges(ctx: &InferCtx<'_>, channels: Dim) -> std::result::Result<(), String> {
    for i in 3..9 {
        let s = &ctx.input(i).shape;
        if s.rank().is_some_and(|r| r != 0) {
            return Err(format!(
                "input {i} (a range end) must be a scalar, got shape {s}"
            ));
        }
    }
    let bias = &ctx.input(2).shape;
    match bias.rank() {
        None => Ok(()),
        Some(1) => match (bias.dim(0), channels) {
            (Dim::Known(b), Dim::Known(c)) if b != c => Err(format!(
                "bias has {b} values, the product has {c} output columns"
            )),
            _ => Ok(()),
        },
        Some(_) => Err(format!("bias must be a vector, got shape {bias}")),
    }
}

fn matrix_dims(s: &Shape, transpose: bool, what: &str) -> std::result::Result<(Dim, Dim), String> {
    match s.rank() {
        None => Ok((Dim::Unknown, Dim::Unknown)),
        Some(2) if transpose => Ok((s.dim(1), s.dim(0))),
        Some(2) => Ok((s.dim(0), s.dim(1))),
        Some(_) => Err(format!("{what} must be a matrix, got shape {s}")),
    }
}

fn check_mode(ctx: &InferCtx<'_>) -> std::result::Result<(), String> {
    match ctx.attrs.string("input_quant_mode")?.as_str() {
        "MIN_FIRST" => Ok(()),
        m => Err(format!("input_quant_mode must be MIN_FIRST, got `{m}`")),
    }
}

fn infer_matmul(
    ctx: &InferCtx<'_>,
    requantize: bool,
) -> std::result::Result<Vec<TensorType>, String> {
    check_mode(ctx)?;
    let (m, ka) = matrix_dims(&ctx.input(0).shape, *ctx.attrs.boolean("transpose_a")?, "a")?;
    let (kb, n) = matrix_dims(&ctx.input(1).shape, *ctx.attrs.boolean("transpose_b")?, "b")?;
    if let (Dim::Known(x), Dim::Known(y)) = (&ka, &kb) {
        if x != y {
            return Err(format!(
                "the inner dims differ: a has {x} columns, b has {y} rows"
            ));
        }
    }
    check_bias_and_ranges(ctx, n.clone())?;
    let shape = Shape::new(vec![m, n]);
    Ok(if requantize {
        vec![
            TensorType::new(DType::U8, shape),
            scalar_f32(),
            scalar_f32(),
        ]
    } else {
        vec![TensorType::new(DType::F32, shape)]
    })
}

fn infer_matmul_requantize(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    infer_matmul(ctx, true)
}

fn infer_matmul_dequantize(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    infer_matmul(ctx, false)
}

fn infer_conv(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    if ctx.attrs.string("data_format")? != "NHWC" {
        return Err("quantized convolutions take NHWC inputs only".into());
    }
    let mut out = super::conv_pool_ops::infer_conv2d(ctx)?;
    let channels = out[0]
        .shape
        .rank()
        .map_or(Dim::Unknown, |r| out[0].shape.dim(r - 1));
    check_bias_and_ranges(ctx, channels)?;
    out[0].dtype = DType::U8;
    out.extend([scalar_f32(), scalar_f32()]);
    Ok(out)
}

fn product_inputs(op: OpDef, names: [&'static str; 9]) -> OpDef {
    let types = [QUINT8, QUINT8, F32, F32, F32, F32, F32, F32, F32];
    names
        .into_iter()
        .zip(types)
        .fold(op, |op, (name, t)| op.input(name, t))
}

pub fn op_defs() -> Vec<OpDef> {
    const MATMUL_INPUTS: [&str; 9] = [
        "a",
        "b",
        "bias",
        "min_a",
        "max_a",
        "min_b",
        "max_b",
        "min_freezed_output",
        "max_freezed_output",
    ];
    const CONV_INPUTS: [&str; 9] = [
        "input",
        "filter",
        "bias",
        "min_input",
        "max_input",
        "min_filter",
        "max_filter",
        "min_freezed_output",
        "max_freezed_output",
    ];
    let mut defs = Vec::new();
    for (name, relu, requantize) in FUSED_MATMULS {
        let infer = if requantize {
            infer_matmul_requantize
        } else {
            infer_matmul_dequantize
        };
        let doc = match (relu, requantize) {
            (false, true) => "a @ b of 8-bit matrices plus an f32 bias per column, as 8-bit codes over the frozen output range",
            (true, true) => "relu(a @ b + bias) of 8-bit matrices and an f32 bias, as 8-bit codes over the frozen output range",
            _ => "a @ b of 8-bit matrices plus an f32 bias per column, as f32 (the frozen range inputs are unused)",
        };
        let mut op = product_inputs(OpDef::new(name, infer).doc(doc), MATMUL_INPUTS);
        op = if requantize {
            op.output("out").output("min_out").output("max_out")
        } else {
            op.output("out")
        };
        defs.push(
            op.attr_default(
                "Toutput",
                AttrKind::DType,
                if requantize { DType::U8 } else { DType::F32 },
            )
            .attr_default("Tbias", AttrKind::DType, DType::F32)
            .attr_default("transpose_a", AttrKind::Bool, false)
            .attr_default("transpose_b", AttrKind::Bool, false)
            .attr_default("input_quant_mode", AttrKind::Str, "MIN_FIRST")
            .no_gradient(),
        );
    }
    for (name, relu) in FUSED_CONVS {
        let doc = if relu {
            "relu(conv2d(input, filter) + bias) of 8-bit input and filter (NHWC) and an f32 bias, as 8-bit codes over the frozen output range"
        } else {
            "conv2d(input, filter) + bias of 8-bit input and filter (NHWC) and an f32 bias, as 8-bit codes over the frozen output range"
        };
        let op = super::conv_pool_ops::conv_op(name, infer_conv).doc(doc);
        defs.push(
            product_inputs(op, CONV_INPUTS)
                .output("output")
                .output("min_output")
                .output("max_output")
                .attr_default("out_type", AttrKind::DType, DType::U8)
                .attr_default("Tbias", AttrKind::DType, DType::F32)
                .no_gradient(),
        );
    }
    defs
}

impl Graph {
    /// `relu?(a @ b + bias)` of 8-bit `a` and `b` and an f32 `bias`, as 8-bit codes over the
    /// frozen range `[min, max]` (f32 scalars).
    pub fn quantized_matmul_with_bias(
        &mut self,
        a: Quantized,
        b: Quantized,
        bias: Output,
        relu: bool,
        (min, max): (Output, Output),
    ) -> Result<Quantized> {
        let op = FUSED_MATMULS[usize::from(relu)].0;
        let id = self
            .build(op)
            .inputs([a.value, b.value, bias, a.min, a.max, b.min, b.max, min, max])
            .finish()?;
        Ok(Quantized::of(id))
    }

    /// `a @ b + bias` of 8-bit `a` and `b` and an f32 `bias`, as f32.
    pub fn quantized_matmul_with_bias_dequantize(
        &mut self,
        a: Quantized,
        b: Quantized,
        bias: Output,
    ) -> Result<Output> {
        let z = self.scalar(0f32)?;
        let id = self
            .build(FUSED_MATMULS[2].0)
            .inputs([a.value, b.value, bias, a.min, a.max, b.min, b.max, z, z])
            .finish()?;
        Ok(Output::new(id, 0))
    }

    /// `relu?(conv2d(x, filter) + bias)` (NHWC) as 8-bit codes over `[min, max]`.
    #[allow(clippy::too_many_arguments)]
    pub fn quantized_conv2d_with_bias(
        &mut self,
        x: Quantized,
        filter: Quantized,
        bias: Output,
        relu: bool,
        (min, max): (Output, Output),
        strides: &[i64],
        padding: &str,
    ) -> Result<Quantized> {
        let op = FUSED_CONVS[usize::from(relu)].0;
        let id = self
            .build(op)
            .inputs([
                x.value,
                filter.value,
                bias,
                x.min,
                x.max,
                filter.min,
                filter.max,
                min,
                max,
            ])
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .finish()?;
        Ok(Quantized::of(id))
    }
}
