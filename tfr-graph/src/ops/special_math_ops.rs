//! Elementwise special functions and TensorFlow's safe-division family: inverse and hyperbolic
//! trigonometry, log-gamma and polygamma, erfc, rint, NaN/Inf tests, atan2, xlogy, xdivy,
//! div_no_nan, real_div, logical_xor. Gradient rules: `special_math_grad.rs`.

use super::{broadcast_binary, same_as_input};
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};

/// Float-only unary maps: (name, summary). TensorFlow registers these for half, bfloat16,
/// float, double (and complex, which tfr lacks); tfr's CPU kernels cover f32 and f64.
pub const SPECIAL_UNARY_OPS: &[(&str, &str)] = &[
    ("Tan", "tangent"),
    ("Asin", "arcsine, NaN outside [-1, 1]"),
    ("Acos", "arccosine, NaN outside [-1, 1]"),
    ("Atan", "arctangent"),
    ("Sinh", "hyperbolic sine"),
    ("Cosh", "hyperbolic cosine"),
    ("Asinh", "inverse hyperbolic sine"),
    ("Acosh", "inverse hyperbolic cosine, NaN below 1"),
    (
        "Atanh",
        "inverse hyperbolic tangent, +-inf at +-1, NaN outside",
    ),
    ("Lgamma", "log |Gamma(x)|; +inf at non-positive integers"),
    (
        "Digamma",
        "Gamma'(x) / Gamma(x); NaN at non-positive integers (Eigen)",
    ),
    ("Erfc", "1 - erf(x), accurate for large x"),
    ("Rint", "nearest integer, ties to even"),
];

/// Float tests returning bool: (name, summary).
pub const FLOAT_TEST_OPS: &[(&str, &str)] = &[
    ("IsNan", "x is NaN"),
    ("IsInf", "x is +inf or -inf"),
    ("IsFinite", "x is neither NaN nor infinite"),
];

/// Float binary ops with broadcasting: (name, summary).
pub const SPECIAL_BINARY_OPS: &[(&str, &str)] = &[
    (
        "Atan2",
        "atan(y / x) in the quadrant of (x, y); inputs are (y, x)",
    ),
    ("Xlogy", "x * log(y), 0 where x == 0"),
    ("Xdivy", "x / y, 0 where x == 0"),
    ("DivNoNan", "x / y, 0 where y == 0"),
    ("RealDiv", "x / y for floats"),
    (
        "Polygamma",
        "polygamma(a, x): the a-th derivative of digamma; a a non-negative integer value",
    ),
];

pub fn op_defs() -> Vec<OpDef> {
    let mut defs = Vec::new();
    for &(name, doc) in SPECIAL_UNARY_OPS {
        defs.push(
            OpDef::new(name, same_as_input)
                .doc(doc)
                .input("x", DTypeSet::FLOAT)
                .output("y")
                .cheap(),
        );
    }
    for &(name, doc) in FLOAT_TEST_OPS {
        defs.push(
            OpDef::new(name, infer_float_test)
                .doc(doc)
                .input("x", DTypeSet::FLOAT)
                .output("y")
                .cheap(),
        );
    }
    for &(name, doc) in SPECIAL_BINARY_OPS {
        let (a, b) = match name {
            "Atan2" => ("y", "x"),
            "Polygamma" => ("a", "x"),
            _ => ("x", "y"),
        };
        defs.push(
            OpDef::new(name, broadcast_binary)
                .doc(doc)
                .input(a, DTypeSet::FLOAT)
                .input(b, DTypeSet::FLOAT)
                .output("z")
                .cheap(),
        );
    }
    defs.push(
        OpDef::new("LogicalXor", broadcast_binary)
            .doc("x != y for bools (TensorFlow composes logical_xor from and/or/not)")
            .input("x", DTypeSet::BOOL)
            .input("y", DTypeSet::BOOL)
            .output("z")
            .commutative()
            .cheap(),
    );
    defs
}

fn infer_float_test(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: DType::Bool,
        shape: ctx.input(0).shape.clone(),
    }])
}

macro_rules! unary_builders {
    ($($method:ident => $op:literal),* $(,)?) => {
        impl Graph {
            $(
                #[doc = concat!("Adds a `", $op, "` node.")]
                pub fn $method(&mut self, x: Output) -> Result<Output> {
                    self.build($op).input(x).finish1()
                }
            )*
        }
    };
}

macro_rules! binary_builders {
    ($($method:ident => $op:literal),* $(,)?) => {
        impl Graph {
            $(
                #[doc = concat!("Adds a `", $op, "` node (numpy broadcasting).")]
                pub fn $method(&mut self, x: Output, y: Output) -> Result<Output> {
                    self.build($op).input(x).input(y).finish1()
                }
            )*
        }
    };
}

unary_builders! {
    tan => "Tan", asin => "Asin", acos => "Acos", atan => "Atan", sinh => "Sinh",
    cosh => "Cosh", asinh => "Asinh", acosh => "Acosh", atanh => "Atanh", lgamma => "Lgamma",
    digamma => "Digamma", erfc => "Erfc", rint => "Rint", is_nan => "IsNan", is_inf => "IsInf",
    is_finite => "IsFinite",
}

binary_builders! {
    atan2 => "Atan2", xlogy => "Xlogy", xdivy => "Xdivy", div_no_nan => "DivNoNan",
    real_div => "RealDiv", polygamma => "Polygamma", logical_xor => "LogicalXor",
}
