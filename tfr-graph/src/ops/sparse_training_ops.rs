//! Sparse optimizer updates (TensorFlow's `ResourceSparseApply*`): the gradient is the rows
//! `grad` of the variable at `indices` (an `IndexedSlices`), and only those rows of the
//! variable and of its slots are read and written, in place under their write locks. Duplicate
//! indices are summed first (TensorFlow's optimizers deduplicate before applying), so a row
//! named twice is updated once with the sum of its gradients. Untouched rows stay bit-identical.
//!
//! Adam is TensorFlow's *lazy* Adam (`LazyAdamOptimizer`): the moment estimates `m` and `v` of
//! rows absent from the gradient are not decayed in that step, unlike dense Adam where every
//! row's moments decay every step. This is what makes its cost proportional to the rows touched;
//! on the touched rows one step equals the dense step. AdamW's decay (`lr_wd * var`) likewise
//! applies to the touched rows only.

use crate::attr::AttrKind;
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};

pub fn op_defs() -> Vec<OpDef> {
    let (r, f, idx) = (DTypeSet::RESOURCE, DTypeSet::FLOAT, DTypeSet::INDEX);
    vec![
        OpDef::new("ResourceSparseApplyGradientDescent", check_sparse_update)
            .doc("var[indices] -= alpha * grad (duplicates summed)")
            .input("var", r)
            .input("alpha", f)
            .input("grad", f)
            .input("indices", idx)
            .stateful()
            .no_gradient(),
        OpDef::new("ResourceSparseApplyMomentum", check_sparse_update)
            .doc(
                "on rows `indices`: accum = momentum * accum + grad; var -= lr * accum \
                 (Nesterov: lr * (grad + momentum * accum))",
            )
            .input("var", r)
            .input("accum", r)
            .input("lr", f)
            .input("grad", f)
            .input("indices", idx)
            .input("momentum", f)
            .attr_default("use_nesterov", AttrKind::Bool, false)
            .stateful()
            .no_gradient(),
        OpDef::new("ResourceSparseApplyAdagrad", check_sparse_update)
            .doc("on rows `indices`: accum += grad^2; var -= lr * grad / sqrt(accum)")
            .input("var", r)
            .input("accum", r)
            .input("lr", f)
            .input("grad", f)
            .input("indices", idx)
            .stateful()
            .no_gradient(),
        OpDef::new("ResourceSparseApplyAdam", check_sparse_update)
            .doc(
                "lazy Adam on rows `indices`: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; \
                 var -= lr_t m / (sqrt(v) + eps) + lr_wd var; other rows' m and v are untouched",
            )
            .input("var", r)
            .input("m", r)
            .input("v", r)
            .input("lr_t", f)
            .input("beta1", f)
            .input("beta2", f)
            .input("epsilon", f)
            .input("lr_wd", f)
            .input("grad", f)
            .input("indices", idx)
            .stateful()
            .no_gradient(),
    ]
}

/// No outputs. Every float input shares the gradient's dtype, and the gradient has one row per
/// index (`grad` is `[len(indices), ...]`, `indices` a vector).
fn check_sparse_update(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let n = ctx.inputs.len();
    // Momentum takes its `momentum` after the indices; the others end with (grad, indices).
    let (grad_at, indices_at) = match ctx.op {
        "ResourceSparseApplyMomentum" => (3, 4),
        _ => (n.saturating_sub(2), n.saturating_sub(1)),
    };
    let (Some(grad), Some(indices)) = (ctx.inputs.get(grad_at), ctx.inputs.get(indices_at)) else {
        return Err(format!("missing inputs: got {n}"));
    };
    for (i, t) in ctx.inputs.iter().enumerate() {
        if t.dtype.is_float() && t.dtype != grad.dtype {
            return Err(format!(
                "input {i} has dtype {}, the gradient has {}",
                t.dtype, grad.dtype
            ));
        }
    }
    if indices.shape.rank().is_some_and(|r| r != 1) {
        return Err(format!(
            "indices must be a vector, got shape {}",
            indices.shape
        ));
    }
    if grad.shape.rank() == Some(0) || grad.shape.dim(0).merge(&indices.shape.dim(0)).is_none() {
        return Err(format!(
            "grad {} must have one row per index, indices are {}",
            grad.shape, indices.shape
        ));
    }
    Ok(Vec::new())
}

impl Graph {
    /// `var[indices] -= alpha * grad`.
    pub fn resource_sparse_apply_gradient_descent(
        &mut self,
        var: Output,
        alpha: Output,
        grad: Output,
        indices: Output,
    ) -> Result<NodeId> {
        self.build("ResourceSparseApplyGradientDescent")
            .inputs([var, alpha, grad, indices])
            .finish()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn resource_sparse_apply_momentum(
        &mut self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
        indices: Output,
        momentum: Output,
        nesterov: bool,
    ) -> Result<NodeId> {
        self.build("ResourceSparseApplyMomentum")
            .inputs([var, accum, lr, grad, indices, momentum])
            .attr("use_nesterov", nesterov)
            .finish()
    }

    pub fn resource_sparse_apply_adagrad(
        &mut self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
        indices: Output,
    ) -> Result<NodeId> {
        self.build("ResourceSparseApplyAdagrad")
            .inputs([var, accum, lr, grad, indices])
            .finish()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn resource_sparse_apply_adam(
        &mut self,
        var: Output,
        m: Output,
        v: Output,
        lr_t: Output,
        beta1: Output,
        beta2: Output,
        epsilon: Output,
        lr_wd: Output,
        grad: Output,
        indices: Output,
    ) -> Result<NodeId> {
        self.build("ResourceSparseApplyAdam")
            .inputs([var, m, v, lr_t, beta1, beta2, epsilon, lr_wd, grad, indices])
            .finish()
    }
}
