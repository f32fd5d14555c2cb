//! Activations, softmax, bias addition and the fused cross-entropy losses.

use super::same_as_input;
use crate::attr::AttrKind;
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
