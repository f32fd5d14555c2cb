//! The paper's **Part** and **Stitch** (§4.2, sparse embeddings): `DynamicPartition` splits the
//! rows of a tensor by a destination index (which shard holds each id), `DynamicStitch`
//! reassembles rows computed apart into one tensor in their original order
//! (`ParallelDynamicStitch` is the same op, as on TensorFlow's CPU).

use super::output_count;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::{GraphError, Result};
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

pub fn op_defs() -> Vec<OpDef> {
    let mut defs = vec![OpDef::new("DynamicPartition", infer_dynamic_partition)
        .doc(
            "splits `data` into `num_partitions` tensors: the slices `data[i...]` with \
             `partitions[i...] == p` go, in order, to output p; `partitions` (int32, a prefix \
             of data's shape) must lie in [0, num_partitions)",
        )
        .input("data", DTypeSet::ANY)
        .input("partitions", DTypeSet::of(&[DType::I32]))
        .attr("num_partitions", AttrKind::Int)];
    for name in ["DynamicStitch", "ParallelDynamicStitch"] {
        defs.push(
            OpDef::new(name, infer_dynamic_stitch)
                .doc(
                    "N int32 `indices` then N `data` tensors: `merged[indices[m][i...], ...] = \
                     data[m][i..., ...]`, of shape [max index + 1, ...]; a later index \
                     overwrites an earlier equal one, rows no index names are zero",
                )
                .list_input("indices_then_data", DTypeSet::ANY, 2)
                .output("merged"),
        );
    }
    defs
}

fn infer_dynamic_partition(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let num = *ctx.attrs.int("num_partitions")?;
    if num < 1 {
        return Err(format!("num_partitions must be >= 1, got {num}"));
    }
    let num = output_count(num, "num_partitions")?;
    let (data, parts) = (&ctx.input(0).shape, &ctx.input(1).shape);
    let shape = match (data.dims(), parts.dims()) {
        (Some(d), Some(p)) => {
            check_prefix(p, d, "partitions", "data")?;
            let mut dims = vec![Dim::Unknown];
            dims.extend(d[p.len()..].iter().cloned());
            Shape::new(dims)
        }
        _ => Shape::unknown(),
    };
    Ok(vec![
        TensorType {
            dtype: ctx.dtype(0),
            shape
        };
        num
    ])
}

/// `prefix` must be a prefix of `full` (dims that may differ at run time are accepted).
fn check_prefix(prefix: &[Dim], full: &[Dim], what: &str, of: &str) -> Result<(), String> {
    let fits =
        prefix.len() <= full.len() && prefix.iter().zip(full).all(|(a, b)| a.merge(b).is_some());
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{what} shape {} must be a prefix of {of} shape {}",
            Shape::new(prefix.to_vec()),
            Shape::new(full.to_vec())
        ))
    }
}

fn infer_dynamic_stitch(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let total = ctx.inputs.len();
    if !total.is_multiple_of(2) {
        return Err(format!(
            "expects as many indices as data tensors, got {total} inputs in all"
        ));
    }
    let n = total / 2;
    for k in 0..n {
        if ctx.dtype(k) != DType::I32 {
            return Err(format!("indices[{k}] must be int32, got {}", ctx.dtype(k)));
        }
    }
    let dtype = ctx.dtype(n);
    let mut row: Option<Vec<Dim>> = None;
    for k in 0..n {
        let t = ctx.input(n + k);
        if t.dtype != dtype {
            return Err(format!(
                "data[{k}] has dtype {}, data[0] has {dtype}",
                t.dtype
            ));
        }
        let (Some(d), Some(i)) = (t.shape.dims(), ctx.input(k).shape.dims()) else {
            continue;
        };
        check_prefix(i, d, &format!("indices[{k}]"), &format!("data[{k}]"))?;
        let rest = d[i.len()..].to_vec();
        match &row {
            None => row = Some(rest),
            Some(r) => {
                let same =
                    r.len() == rest.len() && r.iter().zip(&rest).all(|(a, b)| a.merge(b).is_some());
                if !same {
                    return Err(format!(
                        "data[{k}] rows are {}, earlier data rows are {}",
                        Shape::new(rest),
                        Shape::new(r.clone())
                    ));
                }
            }
        }
    }
    let rows = (0..n)
        .map(|k| ctx.const_ints(k))
        .collect::<Option<Vec<_>>>()
        .map(|all| all.iter().flatten().copied().max().map_or(0, |m| m + 1))
        .filter(|&m| m >= 0)
        .map_or(Dim::Unknown, |m| Dim::Known(m as usize));
    let shape = match row {
        Some(r) => {
            let mut dims = vec![rows];
            dims.extend(r);
            Shape::new(dims)
        }
        None => Shape::unknown(),
    };
    Ok(vec![TensorType { dtype, shape }])
}

impl Graph {
    /// `DynamicPartition(data, partitions)` into `num_partitions` outputs.
    pub fn dynamic_partition(
        &mut self,
        data: Output,
        partitions: Output,
        num_partitions: usize,
    ) -> Result<Vec<Output>> {
        let id = self
            .build("DynamicPartition")
            .input(data)
            .input(partitions)
            .attr("num_partitions", num_partitions as i64)
            .finish()?;
        Ok((0..num_partitions).map(|i| Output::new(id, i)).collect())
    }

    /// `DynamicStitch(indices, data)`: one indices tensor per data tensor.
    pub fn dynamic_stitch(&mut self, indices: &[Output], data: &[Output]) -> Result<Output> {
        if indices.len() != data.len() || indices.is_empty() {
            return Err(GraphError::InvalidArgument {
                builder: "dynamic_stitch".into(),
                arg: "data".into(),
                message: format!(
                    "needs one data tensor per indices tensor (at least one), got {} indices \
                     and {} data",
                    indices.len(),
                    data.len()
                ),
            });
        }
        self.build("DynamicStitch")
            .inputs(indices.iter().copied())
            .inputs(data.iter().copied())
            .finish1()
    }
}
