//! TensorFlow's type attributes (`T`, `Tidx`, `N`, ...), which tfr infers from the inputs but
//! TensorFlow requires on every NodeDef. Export adds them from the node's input and output
//! dtypes; import passes them to tfr, which checks them against the node.

use tfr_graph::{AttrValue, DType};

/// Where a type attribute's value comes from.
#[derive(Clone, Copy)]
enum Src {
    /// The dtype of input `i`.
    In(usize),
    /// The dtype of the last input.
    Last,
    /// The dtype of output `i`.
    Out(usize),
    /// The number of inputs less this many fixed ones (the length of a list input).
    Count(usize),
}
use Src::*;

/// Ops whose type attributes are not just `T` = the first input's dtype. An op missing here
/// with inputs gets `T`; one listed with an empty slice gets none.
const TABLE: &[(&str, &[(&str, Src)])] = &[
    ("Const", &[("dtype", Out(0))]),
    ("Placeholder", &[]),
    ("NoOp", &[]),
    ("VarHandleOp", &[]),
    ("ReadVariableOp", &[]),
    ("VarIsInitializedOp", &[]),
    ("AssignVariableOp", &[("dtype", In(1))]),
    ("AssignAddVariableOp", &[("dtype", In(1))]),
    ("AssignSubVariableOp", &[("dtype", In(1))]),
    ("Cast", &[("SrcT", In(0))]),
    (
        "GatherV2",
        &[("Tparams", In(0)), ("Tindices", In(1)), ("Taxis", In(2))],
    ),
    ("ResourceGather", &[("Tindices", In(1))]),
    ("Range", &[("Tidx", In(0))]),
    ("Fill", &[("T", In(1)), ("index_type", In(0))]),
    ("OneHot", &[("T", In(2)), ("TI", In(0))]),
    ("Pack", &[("T", In(0)), ("N", Count(0))]),
    ("AddN", &[("T", In(0)), ("N", Count(0))]),
    ("ConcatV2", &[("T", In(0)), ("N", Count(1)), ("Tidx", Last)]),
    ("Select", &[("T", In(1))]),
    ("SelectV2", &[("T", In(1))]),
    ("Reshape", &[("T", In(0)), ("Tshape", In(1))]),
    ("Sum", &[("T", In(0)), ("Tidx", In(1))]),
    ("Mean", &[("T", In(0)), ("Tidx", In(1))]),
    ("Max", &[("T", In(0)), ("Tidx", In(1))]),
    ("Min", &[("T", In(0)), ("Tidx", In(1))]),
    ("Prod", &[("T", In(0)), ("Tidx", In(1))]),
    ("All", &[("Tidx", In(1))]),
    ("Any", &[("Tidx", In(1))]),
    ("ArgMax", &[("T", In(0)), ("Tidx", In(1))]),
    ("ArgMin", &[("T", In(0)), ("Tidx", In(1))]),
    ("Transpose", &[("T", In(0)), ("Tperm", In(1))]),
    ("ExpandDims", &[("T", In(0)), ("Tdim", In(1))]),
    ("Tile", &[("T", In(0)), ("Tmultiples", In(1))]),
    ("Pad", &[("T", In(0)), ("Tpaddings", In(1))]),
    ("PadV2", &[("T", In(0)), ("Tpaddings", In(1))]),
    ("MirrorPad", &[("T", In(0)), ("Tpaddings", In(1))]),
    ("Slice", &[("T", In(0)), ("Index", In(1))]),
    ("StridedSlice", &[("T", In(0)), ("Index", In(1))]),
    ("BroadcastTo", &[("T", In(0)), ("Tidx", In(1))]),
    ("ReverseV2", &[("T", In(0)), ("Tidx", In(1))]),
    ("Cumsum", &[("T", In(0)), ("Tidx", In(1))]),
    ("Cumprod", &[("T", In(0)), ("Tidx", In(1))]),
    ("Split", &[("T", In(1))]),
    ("LogicalAnd", &[]),
    ("LogicalOr", &[]),
    ("LogicalNot", &[]),
    ("Size", &[("T", In(0))]),
    (
        "SparseSoftmaxCrossEntropyWithLogits",
        &[("T", In(0)), ("Tlabels", In(1))],
    ),
    ("FusedBatchNorm", &[("T", In(0))]),
    ("FusedBatchNormV3", &[("T", In(0)), ("U", In(1))]),
    (
        "UnsortedSegmentSum",
        &[("T", In(0)), ("Tindices", In(1)), ("Tnumsegments", In(2))],
    ),
    ("InTopKV2", &[("T", In(1))]),
    ("Bincount", &[("T", In(2))]),
    ("ScalarSummary", &[("T", In(1))]),
    ("HistogramSummary", &[("T", In(1))]),
    ("ImageSummary", &[("T", In(1))]),
    ("MergeSummary", &[("N", Count(0))]),
    ("Merge", &[("T", In(0)), ("N", Count(0))]),
];

/// The type attributes TensorFlow expects on a node of TF op `op` with these input and output
/// dtypes (those the node already has are kept by the caller).
pub fn type_attrs(op: &str, inputs: &[DType], outputs: &[DType]) -> Vec<(&'static str, AttrValue)> {
    let pick = |s: Src| -> Option<AttrValue> {
        match s {
            In(i) => inputs.get(i).map(|&t| AttrValue::DType(t)),
            Last => inputs.last().map(|&t| AttrValue::DType(t)),
            Out(i) => outputs.get(i).map(|&t| AttrValue::DType(t)),
            Count(fixed) => Some(AttrValue::Int(inputs.len().saturating_sub(fixed) as i64)),
        }
    };
    match TABLE.iter().find(|(name, _)| *name == op) {
        Some((_, attrs)) => attrs
            .iter()
            .filter_map(|&(name, s)| pick(s).map(|v| (name, v)))
            .collect(),
        None => pick(In(0)).map(|v| vec![("T", v)]).unwrap_or_default(),
    }
}

/// Attributes TensorFlow writes that tfr's ops do not declare and that import may drop: those
/// whose value has no effect on the result (or only when it is TensorFlow's default).
pub fn ignorable(attr: &str, value: &AttrValue) -> bool {
    match (attr, value) {
        ("use_cudnn_on_gpu", _) | ("debug_name", _) => true,
        // MatMul/BatchMatMul hints (TF 2.x) that an operand is a gradient: no effect on values.
        ("grad_a" | "grad_b" | "grad_x" | "grad_y", AttrValue::Bool(_)) => true,
        ("explicit_paddings", AttrValue::Ints(v)) => v.is_empty(),
        ("container", AttrValue::Str(s)) => s.is_empty(),
        ("allowed_devices", AttrValue::Ints(v)) => v.is_empty(),
        ("incompatible_shape_error", AttrValue::Bool(b)) => *b,
        ("exponential_avg_factor", AttrValue::Float(f)) => *f == 1.0,
        ("validate_shape", _) => true,
        // tfr's updates always hold the variable's lock for the whole read-modify-write.
        ("use_locking", AttrValue::Bool(_)) => true,
        _ => false,
    }
}
