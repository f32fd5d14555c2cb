//! Op definitions, one file per family. Each family exposes `op_defs()`; builder methods on
//! [`Graph`](crate::Graph) for its ops live in the same file. Gradient rules live in the matching
//! `<family>_grad.rs`.

pub mod accumulator_ops;
pub mod activation_ops;
pub mod array_builders;
pub mod array_grad;
pub mod array_ops;
mod builder_args;
pub mod candidate_sampling_ops;
pub mod control_flow_grad;
pub mod control_flow_ops;
pub mod conv3d_grad;
pub mod conv3d_ops;
pub mod conv_pool_ops;
pub mod data_flow_ops;
pub mod debug_ops;
pub mod einsum;
pub mod embedding_grad;
pub mod embedding_ops;
pub mod image_grad;
pub mod image_ops;
pub mod io_ops;
pub mod linalg_grad;
pub mod linalg_ops;
mod loop_checkpoints;
mod loop_saved_values;
pub mod math_grad;
pub mod math_ops;
pub mod nn_grad;
pub mod nn_ops;
pub mod partition_grad;
pub mod partition_ops;
pub mod quantization_ops;
pub mod quantized_fused_ops;
pub mod random_ops;
pub mod rnn_ops;
pub mod sampling_ops;
pub mod segment_grad;
pub mod segment_ops;
pub mod selection_ops;
pub mod sendrecv_ops;
pub mod sparse_training_ops;
pub mod special_math_grad;
pub mod special_math_ops;
pub mod state_ops;
pub mod strided_slice;
pub mod summary_ops;
mod tensor_array_grad;
pub mod tf_names;
pub mod training_ops;

use crate::dtype::DType;
use crate::graph::TensorType;
use crate::op_def::{normalize_axis, InferCtx, OpDef};
use crate::shape::{Dim, Shape, MAX_RANK};

/// The most outputs one node may have (`Split`'s `num_split`, `Unpack`'s `num`): counts read
/// from attributes are bounded before a type is allocated per output.
pub const MAX_NODE_OUTPUTS: usize = 1 << 20;

/// `count` checked against [`MAX_NODE_OUTPUTS`] (`what` names the attribute).
pub fn output_count(count: i64, what: &str) -> Result<usize, String> {
    usize::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_NODE_OUTPUTS)
        .ok_or_else(|| format!("{what} = {count} is outside [0, {MAX_NODE_OUTPUTS}]"))
}

/// Every op definition of every family, with the gradient rules of each family's
/// `<family>_grad.rs` table attached.
pub fn all_op_defs() -> Vec<OpDef> {
    let mut defs = Vec::new();
    defs.extend(math_ops::op_defs());
    defs.extend(array_ops::op_defs());
    defs.extend(nn_ops::op_defs());
    defs.extend(random_ops::op_defs());
    defs.extend(state_ops::op_defs());
    defs.extend(control_flow_ops::op_defs());
    defs.extend(sendrecv_ops::op_defs());
    defs.extend(data_flow_ops::op_defs());
    defs.extend(io_ops::op_defs());
    defs.extend(training_ops::op_defs());
    defs.extend(accumulator_ops::op_defs());
    defs.extend(partition_ops::op_defs());
    defs.extend(embedding_ops::op_defs());
    defs.extend(sparse_training_ops::op_defs());
    defs.extend(segment_ops::op_defs());
    defs.extend(tf_names::op_defs());
    defs.extend(special_math_ops::op_defs());
    defs.extend(activation_ops::op_defs());
    defs.extend(selection_ops::op_defs());
    defs.extend(debug_ops::op_defs());
    defs.extend(linalg_ops::op_defs());
    defs.extend(sampling_ops::op_defs());
    defs.extend(image_ops::op_defs());
    defs.extend(conv3d_ops::op_defs());
    defs.extend(candidate_sampling_ops::op_defs());
    defs.extend(quantization_ops::op_defs());
    defs.extend(quantized_fused_ops::op_defs());
    defs.extend(rnn_ops::op_defs());
    defs.extend(summary_ops::op_defs());
    for (op, gradient) in gradient_table() {
        if let Some(def) = defs.iter_mut().find(|d| d.name == op) {
            def.gradient = gradient;
        }
    }
    defs
}

/// (op, gradient) declarations from the families' gradient files. Filled by the gradient work;
/// an op can also declare `.no_gradient()` in its definition.
fn gradient_table() -> Vec<(&'static str, crate::op_def::Gradient)> {
    use crate::op_def::Gradient::NotDifferentiable;
    let mut table = Vec::new();
    table.extend(math_grad::gradients());
    table.extend(array_grad::gradients());
    table.extend(nn_grad::gradients());
    table.extend(partition_grad::gradients());
    table.extend(segment_grad::gradients());
    table.extend(special_math_grad::gradients());
    table.extend(activation_ops::gradients());
    table.extend(selection_ops::gradients());
    table.extend(debug_ops::gradients());
    table.extend(tf_names::gradients());
    table.extend(linalg_grad::gradients());
    table.extend(image_grad::gradients());
    table.extend(conv3d_grad::gradients());
    table.extend(quantization_ops::gradients());
    // Random draws and state ops: not differentiable (most declare it in their definitions).
    table.push(("RandomShuffle", NotDifferentiable));
    table.push(("ReadVariableOp", NotDifferentiable));
    table
}

// ---- shape functions shared across families ---------------------------------------------------

/// One output with the type of input 0.
pub fn same_as_input(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![ctx.input(0).clone()])
}

/// Elementwise binary op with numpy broadcasting; both inputs share the output dtype.
pub fn broadcast_binary(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let shape = ctx.input(0).shape.broadcast(&ctx.input(1).shape)?;
    Ok(vec![TensorType { dtype, shape }])
}

/// Elementwise comparison with broadcasting: a bool output.
pub fn broadcast_compare(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    ctx.same_dtype(&[0, 1])?;
    let shape = ctx.input(0).shape.broadcast(&ctx.input(1).shape)?;
    Ok(vec![TensorType {
        dtype: DType::Bool,
        shape,
    }])
}

/// No outputs (NoOp, assignments without a result).
pub fn no_outputs(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(Vec::new())
}

/// One output whose dtype and shape come from the `dtype` and `shape` attributes.
pub fn from_dtype_shape_attrs(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: *ctx.attrs.dtype("dtype")?,
        shape: ctx.attrs.shape("shape")?.clone(),
    }])
}

/// The shape described by a 1-D integer input (a shape tensor) when it is a graph constant;
/// otherwise a shape of known rank (from the shape tensor's length) with unknown dims.
pub fn shape_from_tensor(ctx: &InferCtx<'_>, i: usize) -> Result<Shape, String> {
    // The rank comes from the shape tensor's length: bound it before allocating that many dims
    // (a placeholder of shape [4294967295] would otherwise ask for ~100 GB here).
    if let Dim::Known(n) = ctx.input(i).shape.dim(0) {
        if n > MAX_RANK {
            return Err(format!(
                "a shape tensor of {n} elements describes a rank above the maximum {MAX_RANK}"
            ));
        }
    }
    if let Some(v) = ctx.const_ints(i) {
        let dims = v
            .iter()
            .map(|&d| match d {
                d if d >= 0 => Ok(Dim::Known(d as usize)),
                -1 => Ok(Dim::Unknown),
                d => Err(format!("shape has a negative dim {d}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shape = Shape::new(dims);
        shape.check_bounds()?;
        return Ok(shape);
    }
    Ok(match ctx.input(i).shape.dim(0) {
        Dim::Known(n) => Shape::unknown_dims(n),
        _ => Shape::unknown(),
    })
}

/// The axes a reduction runs over: the `axis` input's constant value (all axes when it is
/// empty and `reduce_all_on_empty`), normalized and deduplicated; `None` when not constant.
pub fn reduction_axes(ctx: &InferCtx<'_>, axis_input: usize) -> Result<Option<Vec<usize>>, String> {
    let Some(rank) = ctx.input(0).shape.rank() else {
        return Ok(None);
    };
    let Some(axes) = ctx.const_ints(axis_input) else {
        return Ok(None);
    };
    let mut out = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(Some(out))
}

/// Shape of a reduction of `input` over `axes` (`None` = unknown axes) with `keep_dims`.
pub fn reduced_shape(input: &Shape, axes: Option<&[usize]>, keep_dims: bool) -> Shape {
    let (Some(dims), Some(axes)) = (input.dims(), axes) else {
        return match (input.rank(), keep_dims) {
            (Some(r), true) => Shape::unknown_dims(r),
            _ => Shape::unknown(),
        };
    };
    let mut out = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        if axes.contains(&i) {
            if keep_dims {
                out.push(Dim::Known(1));
            }
        } else {
            out.push(d.clone());
        }
    }
    Shape::new(out)
}
