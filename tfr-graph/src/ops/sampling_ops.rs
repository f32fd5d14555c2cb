//! Multinomial sampling and counting: `Multinomial` (stateful random draws of class indices
//! from unnormalized log-probabilities, seeded like the other random ops), `Bincount` and
//! `DenseBincount`. None is differentiable.

use super::builder_args::checked_i32;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

type IResult = std::result::Result<Vec<TensorType>, String>;

/// The weight dtypes of the bincount ops.
const WEIGHTS: DTypeSet = DTypeSet::of(&[DType::I32, DType::I64, DType::F32, DType::F64]);

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("Multinomial", infer_multinomial)
            .doc(
                "`num_samples` class indices per row of `logits` [batch, classes], drawn with \
                 probabilities softmax(logits)",
            )
            .input("logits", DTypeSet::FLOAT)
            .input("num_samples", DTypeSet::of(&[DType::I32]))
            .output("output")
            .attr_default("seed", AttrKind::Int, 0i64)
            .attr_default("seed2", AttrKind::Int, 0i64)
            .attr_default("output_dtype", AttrKind::DType, DType::I64)
            .stateful()
            .no_gradient(),
        OpDef::new("Bincount", infer_bincount)
            .doc(
                "counts [size] of each value of `arr` (int32) below `size`, summing `weights` \
                 (same shape as arr, or empty for counts of 1)",
            )
            .input("arr", DTypeSet::of(&[DType::I32]))
            .input("size", DTypeSet::of(&[DType::I32]))
            .input("weights", WEIGHTS)
            .output("bins")
            .no_gradient(),
        OpDef::new("DenseBincount", infer_dense_bincount)
            .doc(
                "Bincount of a 1-D input ([size]) or of each row of a 2-D input ([rows, size]); \
                 `binary_output` gives 1 where a value occurs",
            )
            .input("input", DTypeSet::INDEX)
            .input("size", DTypeSet::INDEX)
            .input("weights", WEIGHTS)
            .output("output")
            .attr_default("binary_output", AttrKind::Bool, false)
            .no_gradient(),
    ]
}

fn infer_multinomial(ctx: &InferCtx<'_>) -> IResult {
    let out_dtype = *ctx.attrs.dtype("output_dtype")?;
    if !DTypeSet::INDEX.contains(out_dtype) {
        return Err(format!(
            "output_dtype must be int32 or int64, got {out_dtype}"
        ));
    }
    let l = &ctx.input(0).shape;
    if l.rank().is_some_and(|r| r != 2) {
        return Err(format!(
            "logits must be 2-D [batch, classes], got shape {l}"
        ));
    }
    let n = &ctx.input(1).shape;
    if n.rank().is_some_and(|r| r != 0) {
        return Err(format!("num_samples must be a scalar, got shape {n}"));
    }
    let samples = match ctx.const_ints(1) {
        Some(v) if v[0] < 0 => {
            return Err(format!("num_samples must be non-negative, got {}", v[0]))
        }
        Some(v) => Dim::Known(v[0] as usize),
        None => Dim::Unknown,
    };
    Ok(vec![TensorType {
        dtype: out_dtype,
        shape: Shape::new(vec![l.dim(0), samples]),
    }])
}

/// The dim given by the scalar `size` input `i`.
fn size_dim(ctx: &InferCtx<'_>, i: usize) -> std::result::Result<Dim, String> {
    let s = &ctx.input(i).shape;
    if s.rank().is_some_and(|r| r != 0) {
        return Err(format!("size must be a scalar, got shape {s}"));
    }
    match ctx.const_ints(i) {
        Some(v) if v[0] < 0 => Err(format!("size must be non-negative, got {}", v[0])),
        Some(v) => Ok(Dim::Known(v[0] as usize)),
        None => Ok(Dim::Unknown),
    }
}

/// Weights must have the input's shape or no elements.
fn check_weights(ctx: &InferCtx<'_>, input: usize) -> std::result::Result<(), String> {
    let (x, w) = (&ctx.input(input).shape, &ctx.input(2).shape);
    if w.num_elements() == Some(0) || x.merge(w).is_ok() {
        return Ok(());
    }
    Err(format!(
        "weights must have the shape of the input {x} or no elements, got shape {w}"
    ))
}

fn infer_bincount(ctx: &InferCtx<'_>) -> IResult {
    check_weights(ctx, 0)?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(2),
        shape: Shape::new(vec![size_dim(ctx, 1)?]),
    }])
}

fn infer_dense_bincount(ctx: &InferCtx<'_>) -> IResult {
    ctx.same_dtype(&[0, 1])?;
    check_weights(ctx, 0)?;
    let size = size_dim(ctx, 1)?;
    let x = &ctx.input(0).shape;
    let shape = match x.rank() {
        Some(1) => Shape::new(vec![size]),
        Some(2) => Shape::new(vec![x.dim(0), size]),
        Some(_) => return Err(format!("input must be 1-D or 2-D, got shape {x}")),
        None => Shape::unknown(),
    };
    Ok(vec![TensorType {
        dtype: ctx.dtype(2),
        shape,
    }])
}

impl Graph {
    /// `Multinomial`: `num_samples` draws per row of `logits` [batch, classes], indices of
    /// `output_dtype` (int32 or int64). Seeds as the other random ops.
    pub fn multinomial(
        &mut self,
        logits: Output,
        num_samples: i64,
        seed: Option<u64>,
        output_dtype: DType,
    ) -> Result<Output> {
        let n = self.scalar(checked_i32("multinomial", "num_samples", num_samples)?)?;
        let (s1, s2) = self.random_seeds(seed);
        self.build("Multinomial")
            .input(logits)
            .input(n)
            .attr("seed", s1)
            .attr("seed2", s2)
            .attr("output_dtype", output_dtype)
            .finish1()
    }
    /// `Bincount` of int32 `arr` into `size` bins, summing `weights` (an empty tensor: 1 each).
    pub fn bincount(&mut self, arr: Output, size: i64, weights: Output) -> Result<Output> {
        let s = self.scalar(checked_i32("bincount", "size", size)?)?;
        self.build("Bincount")
            .input(arr)
            .input(s)
            .input(weights)
            .finish1()
    }
}
