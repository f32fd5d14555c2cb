//! Sparse gradient rules: the gradient of a gather with respect to the gathered tensor as
//! [`IndexedSlices`] (TensorFlow's `_GatherV2Grad` and `_ResourceGatherGrad`). The walk in
//! [`gradients`](crate::gradients) asks [`sparse_gradient_rule`] before an op's dense rule;
//! a rule that cannot answer (a gather along another axis) returns `None` and the dense rule
//! runs instead.

use crate::error::Result;
use crate::grad::{const_scalar, index_dtype, index_vector, shape_of, GradCtx};
use crate::graph::{Graph, Output};
use crate::indexed_slices::IndexedSlices;
use crate::shape::{Dim, Shape};

/// A rule giving the gradient of input 0 (the gathered tensor) as slices, or `None`.
pub type SparseGradFn = fn(&mut GradCtx<'_>) -> Result<Option<IndexedSlices>>;

/// The sparse rule of `op`, if it has one.
pub fn sparse_gradient_rule(op: &str) -> Option<SparseGradFn> {
    match op {
        "Gather" => Some(gather_slices),
        "ResourceGather" => Some(resource_gather_slices),
        _ => None,
    }
}

/// `Gather(params, indices, axis = 0)`: rows `indices` of params receive `dy`.
fn gather_slices(ctx: &mut GradCtx<'_>) -> Result<Option<IndexedSlices>> {
    let (params, idx, axis) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    if const_scalar(ctx.graph, axis) != Some(0) || ctx.grad(0).is_none() {
        return Ok(None);
    }
    let dy = ctx.dy()?;
    let params_shape = ctx.shape(params);
    let Some(row_shape) = params_shape
        .dims()
        .filter(|d| !d.is_empty())
        .map(|d| d[1..].to_vec())
    else {
        return Ok(None);
    };
    let dt = index_dtype(ctx.graph, idx);
    let Some((indices, values)) = flatten_rows(ctx.graph, idx, dy, &row_shape)? else {
        return Ok(None);
    };
    let dense_shape = shape_of(ctx.graph, params, dt)?;
    Ok(Some(IndexedSlices {
        indices,
        values,
        dense_shape,
    }))
}

/// `ResourceGather(var, indices)`: rows `indices` of the variable's value receive `dy`. The
/// variable's shape comes from its handle op (a `VarHandleOp`: variables have known shapes).
fn resource_gather_slices(ctx: &mut GradCtx<'_>) -> Result<Option<IndexedSlices>> {
    let (handle, idx) = (ctx.input(0)?, ctx.input(1)?);
    if ctx.grad(0).is_none() {
        return Ok(None);
    }
    let dy = ctx.dy()?;
    let producer = ctx.graph.node(handle.node);
    let var_shape = match producer.attrs.shape_opt("shape") {
        Some(s) if producer.op == "VarHandleOp" => s.clone(),
        _ => {
            return Err(ctx.error(format!(
                "the gradient of ResourceGather needs the handle of a variable (VarHandleOp), \
                 got `{}` ({})",
                producer.name, producer.op
            )))
        }
    };
    let Some(dims) = var_shape.to_known().filter(|d| !d.is_empty()) else {
        return Err(ctx.error(format!(
            "the gathered variable has shape {var_shape}; it needs a known shape of rank >= 1"
        )));
    };
    let row_shape: Vec<Dim> = dims[1..].iter().map(|&d| Dim::Known(d)).collect();
    let dt = index_dtype(ctx.graph, idx);
    let Some((indices, values)) = flatten_rows(ctx.graph, idx, dy, &row_shape)? else {
        return Ok(None);
    };
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    let dense_shape = index_vector(ctx.graph, &dims, dt)?;
    Ok(Some(IndexedSlices {
        indices,
        values,
        dense_shape,
    }))
}

/// Indices as a vector and `dy` as one row per index (`[n, row_shape...]`); `None` when the
/// rows' shape is needed but not known statically.
fn flatten_rows(
    g: &mut Graph,
    idx: Output,
    dy: Output,
    row_shape: &[Dim],
) -> Result<Option<(Output, Output)>> {
    match g.shape(idx).rank() {
        Some(1) => Ok(Some((idx, dy))),
        _ => {
            let Some(rest) = row_shape
                .iter()
                .map(|d| d.known().map(|k| k as i64))
                .collect::<Option<Vec<i64>>>()
            else {
                return Ok(None);
            };
            let indices = g.reshape(idx, &[-1])?;
            let mut target = vec![-1];
            target.extend(rest.iter().copied());
            let values = g.reshape(dy, &target)?;
            let mut refined = vec![g.shape(indices).dim(0)];
            refined.extend(row_shape.iter().cloned());
            g.refine_output_shape(values, Shape::new(refined));
            Ok(Some((indices, values)))
        }
    }
}
