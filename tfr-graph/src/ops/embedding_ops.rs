//! Row access to variables (TensorFlow's `resource_variable_ops`): `ResourceGather` reads the
//! rows an embedding lookup needs under the variable's read lock, and the `ResourceScatter*`
//! ops update rows in place under its write lock. Neither touches the other rows, so their cost
//! is independent of the table's size.

use crate::attr::AttrKind;
use crate::dtype::DTypeSet;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::ops::state_ops::Variable;
use crate::shape::{Dim, Shape};

pub fn op_defs() -> Vec<OpDef> {
    let r = DTypeSet::RESOURCE;
    let idx = DTypeSet::INDEX;
    let mut defs = vec![OpDef::new("ResourceGather", infer_resource_gather)
        .doc(
            "rows `indices` of the variable (axis 0): `output[i..., :] = var[indices[i...], :]`; \
             an index outside [0, rows) is an error. Its gradient is sparse (IndexedSlices of \
             the variable's value, see `gradients::sparse_gradients`)",
        )
        .input("resource", r)
        .input("indices", idx)
        .output("output")
        .attr("dtype", AttrKind::DType)
        .stateful()
        // The dense machinery cannot carry a gradient into a resource handle; the sparse rule
        // in `embedding_grad.rs` does, as slices of the variable's value.
        .no_gradient()];
    for (name, doc) in [
        (
            "ResourceScatterAdd",
            "var[indices[i...], :] += updates[i..., :]; duplicate indices add up",
        ),
        (
            "ResourceScatterSub",
            "var[indices[i...], :] -= updates[i..., :]; duplicate indices add up",
        ),
        (
            "ResourceScatterUpdate",
            "var[indices[i...], :] = updates[i..., :]; of duplicate indices the last one wins",
        ),
    ] {
        defs.push(
            OpDef::new(name, infer_scatter)
                .doc(doc)
                .input("resource", r)
                .input("indices", idx)
                .input("updates", DTypeSet::NUMERIC)
                .stateful()
                .no_gradient(),
        );
    }
    defs
}

/// The rows' shape is the variable's, which the handle's type does not carry: the builder
/// ([`Graph::resource_gather`]) refines it from the variable.
fn infer_resource_gather(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: *ctx.attrs.dtype("dtype")?,
        shape: Shape::unknown(),
    }])
}

fn infer_scatter(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(Vec::new())
}

/// The static shape of `indices` followed by a variable's row shape (`var_shape[1..]`).
pub fn gathered_shape(indices: &Shape, var_shape: &Shape) -> Shape {
    match (indices.dims(), var_shape.dims()) {
        (Some(i), Some(v)) if !v.is_empty() => {
            let mut d: Vec<Dim> = i.to_vec();
            d.extend(v[1..].iter().cloned());
            Shape::new(d)
        }
        _ => Shape::unknown(),
    }
}

impl Graph {
    /// Rows `indices` of `var` (TensorFlow's `ResourceGather`), typed from the variable.
    pub fn resource_gather(&mut self, var: &Variable, indices: Output) -> Result<Output> {
        if var.shape.rank() == Some(0) {
            return Err(GraphError::InvalidArgument {
                builder: "resource_gather".into(),
                arg: "var".into(),
                message: format!("variable `{}` is a scalar: it has no rows", var.name),
            });
        }
        let out = self
            .build("ResourceGather")
            .input(var.handle)
            .input(indices)
            .attr("dtype", var.dtype)
            .finish1()?;
        let shape = gathered_shape(self.shape(indices), &var.shape);
        self.refine_output_shape(out, shape);
        Ok(out)
    }

    fn resource_scatter(
        &mut self,
        op: &str,
        var: &Variable,
        indices: Output,
        updates: Output,
    ) -> Result<NodeId> {
        let want = gathered_shape(self.shape(indices), &var.shape);
        let got = self.output_type(updates).clone();
        if got.dtype != var.dtype || got.shape.merge(&want).is_err() {
            return Err(GraphError::InvalidArgument {
                builder: op.into(),
                arg: "updates".into(),
                message: format!(
                    "`{}` is {got}, but the rows of variable `{}` at these indices are {}{want}",
                    self.output_name(updates),
                    var.name,
                    var.dtype
                ),
            });
        }
        self.build(op)
            .input(var.handle)
            .input(indices)
            .input(updates)
            .finish()
    }

    /// `var[indices] += updates` (duplicates add up).
    pub fn resource_scatter_add(
        &mut self,
        var: &Variable,
        indices: Output,
        updates: Output,
    ) -> Result<NodeId> {
        self.resource_scatter("ResourceScatterAdd", var, indices, updates)
    }
    /// `var[indices] -= updates` (duplicates add up).
    pub fn resource_scatter_sub(
        &mut self,
        var: &Variable,
        indices: Output,
        updates: Output,
    ) -> Result<NodeId> {
        self.resource_scatter("ResourceScatterSub", var, indices, updates)
    }
    /// `var[indices] = updates` (of duplicates the last wins).
    pub fn resource_scatter_update(
        &mut self,
        var: &Variable,
        indices: Output,
        updates: Output,
    ) -> Result<NodeId> {
        self.resource_scatter("ResourceScatterUpdate", var, indices, updates)
    }
}
