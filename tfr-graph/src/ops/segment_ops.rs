//! Segment reductions, n-d gathers and scatters, and `Unique` (TensorFlow's `math_ops`
//! segment family and `array_ops.gather_nd`/`scatter_nd`). `UnsortedSegmentSum` itself is in
//! `math_ops.rs` (the dense gather gradient emits it).

use super::math_ops::infer_unsorted_segment_sum;
use super::shape_from_tensor;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

pub fn op_defs() -> Vec<OpDef> {
    let idx = DTypeSet::INDEX;
    let mut defs = Vec::new();
    for (name, doc) in [
        (
            "UnsortedSegmentMax",
            "the maximum of the slices of `data` of each segment; an empty segment is the \
             dtype's lowest value",
        ),
        (
            "UnsortedSegmentMin",
            "the minimum of the slices of `data` of each segment; an empty segment is the \
             dtype's highest value",
        ),
    ] {
        defs.push(
            OpDef::new(name, infer_unsorted_segment_sum)
                .doc(doc)
                .input("data", DTypeSet::NUMERIC)
                .input("segment_ids", idx)
                .input("num_segments", idx)
                .output("output"),
        );
    }
    for (name, dtypes, doc) in [
        (
            "SparseSegmentSum",
            DTypeSet::NUMERIC,
            "output[s] = sum of data[indices[j]] over j with segment_ids[j] == s (segment_ids \
             sorted; the output has segment_ids[-1] + 1 rows)",
        ),
        (
            "SparseSegmentMean",
            DTypeSet::FLOAT,
            "SparseSegmentSum divided by each segment's size (empty segments are zero)",
        ),
        (
            "SparseSegmentSqrtN",
            DTypeSet::FLOAT,
            "SparseSegmentSum divided by the square root of each segment's size",
        ),
    ] {
        defs.push(
            OpDef::new(name, infer_sparse_segment)
                .doc(doc)
                .input("data", dtypes)
                .input("indices", idx)
                .input("segment_ids", idx)
                .output("output"),
        );
    }
    defs.push(
        OpDef::new("GatherNd", infer_gather_nd)
            .doc(
                "slices of `params` at the index tuples of `indices`' last dim: the output is \
                 indices.shape[:-1] + params.shape[K:]",
            )
            .input("params", DTypeSet::ANY)
            .input("indices", idx)
            .output("output"),
    );
    defs.push(
        OpDef::new("ScatterNd", infer_scatter_nd)
            .doc("zeros of `shape` with `updates` added at the index tuples of `indices`")
            .input("indices", idx)
            .input("updates", DTypeSet::NUMERIC)
            .input("shape", idx)
            .output("output"),
    );
    defs.push(
        OpDef::new("Unique", infer_unique)
            .doc(
                "the distinct values of a vector in order of first occurrence, and for each \
                 element its position in them",
            )
            .input("x", DTypeSet::ANY)
            .output("y")
            .output("idx")
            .attr_default("out_idx", AttrKind::DType, DType::I32)
            .no_gradient(),
    );
    defs
}

fn vector_dim(t: &TensorType, what: &str) -> Result<Dim, String> {
    match t.shape.rank() {
        Some(1) => Ok(t.shape.dim(0)),
        None => Ok(Dim::Unknown),
        Some(_) => Err(format!("{what} must be a vector, got shape {}", t.shape)),
    }
}

fn infer_sparse_segment(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let n = vector_dim(ctx.input(1), "indices")?;
    let m = vector_dim(ctx.input(2), "segment_ids")?;
    if n.merge(&m).is_none() {
        return Err(format!(
            "indices {} and segment_ids {} differ in length",
            ctx.input(1).shape,
            ctx.input(2).shape
        ));
    }
    let shape = match ctx.input(0).shape.dims() {
        Some([]) => return Err("data must have rank >= 1, got a scalar".into()),
        Some(d) => {
            let mut dims = vec![Dim::Unknown];
            dims.extend(d[1..].iter().cloned());
            Shape::new(dims)
        }
        None => Shape::unknown(),
    };
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape,
    }])
}

fn infer_gather_nd(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.dtype(0);
    let (Some(p), Some(i)) = (ctx.input(0).shape.dims(), ctx.input(1).shape.dims()) else {
        return Ok(vec![TensorType {
            dtype,
            shape: Shape::unknown(),
        }]);
    };
    let Some((last, outer)) = i.split_last() else {
        return Err("indices must have rank >= 1, got a scalar".into());
    };
    let shape = match last.known() {
        Some(k) if k > p.len() => {
            return Err(format!(
                "index tuples of length {k} into params of rank {}",
                p.len()
            ))
        }
        Some(k) => {
            let mut dims = outer.to_vec();
            dims.extend(p[k..].iter().cloned());
            Shape::new(dims)
        }
        None => Shape::unknown(),
    };
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_scatter_nd(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if ctx.input(0).shape.rank() == Some(0) {
        return Err("indices must have rank >= 1, got a scalar".into());
    }
    Ok(vec![TensorType {
        dtype: ctx.dtype(1),
        shape: shape_from_tensor(ctx, 2)?,
    }])
}

fn infer_unique(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let x = ctx.input(0);
    if x.shape.rank().is_some_and(|r| r != 1) {
        return Err(format!("x must be a vector, got shape {}", x.shape));
    }
    let out_idx = *ctx.attrs.dtype("out_idx")?;
    if !matches!(out_idx, DType::I32 | DType::I64) {
        return Err(format!("out_idx must be int32 or int64, got {out_idx}"));
    }
    Ok(vec![
        TensorType {
            dtype: x.dtype,
            shape: Shape::new(vec![Dim::Unknown]),
        },
        TensorType {
            dtype: out_idx,
            shape: x.shape.clone(),
        },
    ])
}

impl Graph {
    fn segment_op(&mut self, op: &str, data: Output, ids: Output, num: Output) -> Result<Output> {
        self.build(op).input(data).input(ids).input(num).finish1()
    }
    pub fn unsorted_segment_sum(
        &mut self,
        data: Output,
        ids: Output,
        num: Output,
    ) -> Result<Output> {
        self.segment_op("UnsortedSegmentSum", data, ids, num)
    }
    pub fn unsorted_segment_max(
        &mut self,
        data: Output,
        ids: Output,
        num: Output,
    ) -> Result<Output> {
        self.segment_op("UnsortedSegmentMax", data, ids, num)
    }
    pub fn unsorted_segment_min(
        &mut self,
        data: Output,
        ids: Output,
        num: Output,
    ) -> Result<Output> {
        self.segment_op("UnsortedSegmentMin", data, ids, num)
    }
    /// The mean of each segment (TensorFlow's `unsorted_segment_mean`, a composition): the sum
    /// divided by the segment's size, an empty segment zero.
    pub fn unsorted_segment_mean(
        &mut self,
        data: Output,
        ids: Output,
        num: Output,
    ) -> Result<Output> {
        let sum = self.unsorted_segment_sum(data, ids, num)?;
        let ones = self.build("OnesLike").input(data).finish1()?;
        let count = self.unsorted_segment_sum(ones, ids, num)?;
        let one = self.scalar_like(count, 1.0)?;
        let safe = self.maximum(count, one)?;
        self.div(sum, safe)
    }
    pub fn sparse_segment_sum(
        &mut self,
        data: Output,
        indices: Output,
        ids: Output,
    ) -> Result<Output> {
        self.segment_op("SparseSegmentSum", data, indices, ids)
    }
    pub fn sparse_segment_mean(
        &mut self,
        data: Output,
        indices: Output,
        ids: Output,
    ) -> Result<Output> {
        self.segment_op("SparseSegmentMean", data, indices, ids)
    }
    pub fn sparse_segment_sqrt_n(
        &mut self,
        data: Output,
        indices: Output,
        ids: Output,
    ) -> Result<Output> {
        self.segment_op("SparseSegmentSqrtN", data, indices, ids)
    }
    pub fn gather_nd(&mut self, params: Output, indices: Output) -> Result<Output> {
        self.build("GatherNd")
            .input(params)
            .input(indices)
            .finish1()
    }
    pub fn scatter_nd(
        &mut self,
        indices: Output,
        updates: Output,
        shape: Output,
    ) -> Result<Output> {
        self.build("ScatterNd")
            .input(indices)
            .input(updates)
            .input(shape)
            .finish1()
    }
    /// `(y, idx)`: the distinct values of `x` and each element's position in them.
    pub fn unique(&mut self, x: Output) -> Result<(Output, Output)> {
        let id = self.build("Unique").input(x).finish()?;
        Ok((Output::new(id, 0), Output::new(id, 1)))
    }
}
