//! Random draws. Seeds follow TensorFlow: with neither a graph seed nor an op seed the draws are
//! nondeterministic; with either, a step sequence is reproducible.

use super::shape_from_tensor;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::value::TensorValue;

/// Ops drawing a tensor of a given shape: (name, summary).
pub const SHAPED_RANDOM_OPS: &[(&str, &str)] = &[
    ("RandomUniform", "uniform in [0, 1)"),
    ("RandomStandardNormal", "standard normal"),
    (
        "TruncatedNormal",
        "standard normal, redrawn beyond two standard deviations",
    ),
];

pub fn op_defs() -> Vec<OpDef> {
    let mut defs: Vec<OpDef> = SHAPED_RANDOM_OPS
        .iter()
        .map(|&(name, doc)| {
            OpDef::new(name, infer_shaped)
                .doc(doc)
                .input("shape", DTypeSet::INDEX)
                .output("output")
                .attr("dtype", AttrKind::DType)
                .attr_default("seed", AttrKind::Int, 0i64)
                .attr_default("seed2", AttrKind::Int, 0i64)
                .stateful()
                .no_gradient()
        })
        .collect();
    defs.push(
        OpDef::new("RandomShuffle", super::same_as_input)
            .doc("shuffles along the first dimension")
            .input("value", DTypeSet::ANY)
            .output("output")
            .attr_default("seed", AttrKind::Int, 0i64)
            .attr_default("seed2", AttrKind::Int, 0i64)
            .stateful(),
    );
    defs
}

fn infer_shaped(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = *ctx.attrs.dtype("dtype")?;
    if !DTypeSet::FLOAT.contains(dtype) {
        return Err(format!("dtype must be float32 or float64, got {dtype}"));
    }
    Ok(vec![TensorType {
        dtype,
        shape: shape_from_tensor(ctx, 0)?,
    }])
}

impl Graph {
    /// The (seed, seed2) pair of a new random op, as TensorFlow derives it from the graph seed
    /// and the op's own seed.
    pub fn random_seeds(&self, op_seed: Option<u64>) -> (i64, i64) {
        match (self.seed, op_seed) {
            (None, None) => (0, 0),
            (Some(g), None) => (g as i64, self.len() as i64 + 1),
            // (0, 0) would read as "no seed" in the kernel: TensorFlow maps it away.
            (Some(0), Some(0)) => (0, i32::MAX as i64),
            (g, Some(o)) => (g.unwrap_or(87654321) as i64, o as i64),
        }
    }

    fn shaped_random(
        &mut self,
        op: &str,
        shape: &[usize],
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Output> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.constant(TensorValue::new(&[dims.len()], dims).expect("length matches"))?;
        let (s1, s2) = self.random_seeds(seed);
        self.build(op)
            .input(s)
            .attr("dtype", dtype)
            .attr("seed", s1)
            .attr("seed2", s2)
            .finish1()
    }
    pub fn random_uniform(
        &mut self,
        shape: &[usize],
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Output> {
        self.shaped_random("RandomUniform", shape, dtype, seed)
    }
    pub fn random_normal(
        &mut self,
        shape: &[usize],
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Output> {
        self.shaped_random("RandomStandardNormal", shape, dtype, seed)
    }
    pub fn truncated_normal(
        &mut self,
        shape: &[usize],
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<Output> {
        self.shaped_random("TruncatedNormal", shape, dtype, seed)
    }
    pub fn random_shuffle(&mut self, x: Output, seed: Option<u64>) -> Result<Output> {
        let (s1, s2) = self.random_seeds(seed);
        self.build("RandomShuffle")
            .input(x)
            .attr("seed", s1)
            .attr("seed2", s2)
            .finish1()
    }
}
