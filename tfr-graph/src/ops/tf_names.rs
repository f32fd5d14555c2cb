//! TensorFlow op names. Where a TensorFlow op has exactly the semantics of a tfr op (inputs in
//! the same order, same attributes, same values), its name is an alias: [`Graph::build`] and
//! the registry resolve it to the tfr op, so a node built as `AddV2` is stored as `Add`.
//! Where the semantics differ, the TensorFlow name is an op of its own (here: `Pad`, which has
//! no value input, beside `PadV2`; `RealDiv`, float-only, in `special_math_ops.rs`).
//!
//! TensorFlow names that are *not* accepted because a tfr op of that name has the newer
//! semantics: `Select` (tfr's broadcasts like `SelectV2`; TF's V1 also accepts a vector
//! condition matching the first dim), `Concat` (TF's V1 takes the axis first), `Gather` (TF's
//! V1 has no axis input: tfr's `Gather` reports the arity), `Reverse` (TF's V1 takes a bool
//! mask).
//!
//! [`Graph::build`]: crate::Graph::build

use super::array_ops::infer_pad;
use crate::dtype::DTypeSet;
use crate::op_def::OpDef;

/// (TensorFlow name, tfr op) pairs with identical semantics.
pub const TF_ALIASES: &[(&str, &str)] = &[
    // x + y with broadcasting; tfr's Add is TF's AddV2 (no string concatenation).
    ("AddV2", "Add"),
    // Broadcasting select.
    ("SelectV2", "Select"),
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

pub fn op_defs() -> Vec<OpDef> {
    vec![OpDef::new("Pad", infer_pad)
        .doc("TensorFlow's Pad: pads with zeros; paddings is [rank, 2] (PadV2 takes the value)")
        .input("input", DTypeSet::ANY)
        .input("paddings", DTypeSet::INDEX)
        .output("output")]
}
