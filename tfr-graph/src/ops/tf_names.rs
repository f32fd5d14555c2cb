//! TensorFlow op names. Where a TensorFlow op has exactly the semantics of a tfr op (inputs in
//! the same order, same attributes, same values), its name is an alias: [`Graph::build`] and
//! the registry resolve it to the tfr op, so a node built as `AddV2` is stored as `Add`.
//! Where the semantics differ, the TensorFlow name is an op of its own (here: `Pad`, which has
//! no value input, beside `PadV2`; `Select`, TensorFlow's V1 select without broadcasting,
//! beside the broadcasting `SelectV2`; `RealDiv`, float-only, in `special_math_ops.rs`).
//!
//! TensorFlow names that are *not* accepted because a tfr op of that name has the newer
//! semantics: `Concat` (TF's V1 takes the axis first), `Gather` (TF's V1 has no axis input:
//! tfr's `Gather` reports the arity), `Reverse` (TF's V1 takes a bool mask).
//!
//! [`Graph::build`]: crate::Graph::build

use super::array_ops::infer_pad;
use crate::attr::AttrValue;
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::grad::GradCtx;
use crate::graph::{Output, TensorType};
use crate::op_def::{Gradient, InferCtx, OpDef};

/// (TensorFlow name, tfr op) pairs with identical semantics.
pub const TF_ALIASES: &[(&str, &str)] = &[
    // x + y with broadcasting; tfr's Add is TF's AddV2 (no string concatenation).
    ("AddV2", "Add"),
    // values..., axis last.
    ("ConcatV2", "Concat"),
    // params, indices, axis, attr batch_dims.
    ("GatherV2", "Gather"),
    // Broadcasting batch dims, adj_x / adj_y.
    ("BatchMatMulV2", "BatchMatMul"),
    // tensor, axis (int list).
    ("ReverseV2", "Reverse"),
    // TF's Mod is C's remainder (truncated: the sign follows x; fmod for floats), registered
    // for the same dtypes as TruncateMod (tensorflow/core/kernels/cwise_op_mod.cc).
    ("Mod", "TruncateMod"),
];

/// TensorFlow's type attributes (`T`, `Tidx`, ...). tfr infers dtypes from the inputs, so an op
/// does not declare them; a node built with one (as a graph written against TensorFlow's op
/// definitions is) keeps it only when it names the dtype of one of the node's inputs or
/// outputs (checked in `Graph::infer_node`).
pub const TF_TYPE_ATTRS: &[&str] = &[
    "T",
    "Tidx",
    "Tindices",
    "Tparams",
    "Taxis",
    "Tpaddings",
    "Tshape",
    "Tmultiples",
    "Tperm",
    "Tk",
    "TI",
    "Tlabels",
    "Tcond",
    "Tsegmentids",
    "Tnumsegments",
    "Treal",
    "Tout",
    "SrcT",
    "index_type",
];

/// Whether `name` = `value` is a TensorFlow attribute tfr infers instead of declaring: a type
/// attribute of [`TF_TYPE_ATTRS`], or `N`, the length of a list input (checked with the types).
pub fn is_tf_inferred_attr(name: &str, value: &AttrValue) -> bool {
    match value {
        AttrValue::DType(_) => TF_TYPE_ATTRS.contains(&name),
        AttrValue::Int(_) => name == "N",
        _ => false,
    }
}

/// Checks an undeclared TensorFlow attribute against the node: a type attribute must name the
/// dtype of an input or output, `N` the length of the op's list input.
pub fn check_tf_inferred_attr(
    def: &OpDef,
    name: &str,
    value: &AttrValue,
    inputs: &[TensorType],
    outputs: &[TensorType],
) -> std::result::Result<(), String> {
    match value {
        AttrValue::DType(dt) if !inputs.iter().chain(outputs).any(|t| t.dtype == *dt) => Err(
            format!("TensorFlow type attribute `{name}` = {dt} matches no input or output dtype"),
        ),
        AttrValue::Int(n) => {
            let fixed = def.inputs.iter().filter(|a| !a.list).count();
            let has_list = def.inputs.iter().any(|a| a.list);
            let len = inputs.len().saturating_sub(fixed) as i64;
            if has_list && *n == len {
                Ok(())
            } else {
                Err(format!(
                    "attribute `N` = {n} does not match the op's list input ({} tensors)",
                    if has_list { len } else { 0 }
                ))
            }
        }
        _ => Ok(()),
    }
}

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("Pad", infer_pad)
            .doc("TensorFlow's Pad: pads with zeros; paddings is [rank, 2] (PadV2 takes the value)")
            .input("input", DTypeSet::ANY)
            .input("paddings", DTypeSet::INDEX)
            .output("output"),
        OpDef::new("Select", infer_select_v1)
            .doc(
                "TensorFlow's Select (V1): t and e of one shape; condition a scalar (picks all \
                 of t or e), of t's shape, or a vector picking rows along t's first dim",
            )
            .input("condition", DTypeSet::BOOL)
            .input("t", DTypeSet::ANY)
            .input("e", DTypeSet::ANY)
            .output("output")
            .cheap(),
    ]
}

fn infer_select_v1(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[1, 2])?;
    let (c, t, e) = (
        &ctx.input(0).shape,
        &ctx.input(1).shape,
        &ctx.input(2).shape,
    );
    let shape = t
        .merge(e)
        .map_err(|m| format!("'then' {t} and 'else' {e} must have the same shape: {m}"))?;
    match (c.rank(), shape.rank()) {
        (Some(0), _) | (None, _) | (_, None) => {}
        (Some(1), Some(r)) if r > 1 => {
            if c.dim(0).merge(&shape.dim(0)).is_none() {
                return Err(format!(
                    "a vector condition {c} must match the first dim of 'then' {shape}"
                ));
            }
        }
        _ => {
            c.merge(&shape).map_err(|m| {
                format!("condition {c} must be a scalar, a vector or of the shape {shape}: {m}")
            })?;
        }
    }
    Ok(vec![TensorType { dtype, shape }])
}

// ---- gradients --------------------------------------------------------------------------------

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    vec![("Select", Gradient::Rule(select_v1_grad))]
}

/// As TensorFlow's `_SelectGrad`: Select(c, dy, 0) to t and Select(c, 0, dy) to e, with the
/// V1 op itself (same shapes, so nothing to sum).
fn select_v1_grad(ctx: &mut GradCtx<'_>) -> Result<Vec<Option<Output>>> {
    let (c, dy) = (ctx.input(0)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let zeros = g.zeros_like(dy)?;
    let dt = g
        .build("Select")
        .input(c)
        .input(dy)
        .input(zeros)
        .finish1()?;
    let de = g
        .build("Select")
        .input(c)
        .input(zeros)
        .input(dy)
        .finish1()?;
    Ok(vec![None, Some(dt), Some(de)])
}
