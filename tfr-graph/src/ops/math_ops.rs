//! Elementwise math, comparisons, reductions and matrix products.

use super::builder_args::{checked_i32, checked_i32s, checked_int_literal};
use super::{broadcast_binary, broadcast_compare, reduced_shape, reduction_axes, same_as_input};
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::fusion::{region_shape, ElementwiseProgram};
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{normalize_axis, InferCtx, OpDef};
use crate::shape::{Dim, Shape};
use crate::value::{Element, TensorValue};

/// Unary elementwise ops: (name, accepted dtypes, summary).
pub const UNARY_OPS: &[(&str, DTypeSet, &str)] = &[
    ("Neg", DTypeSet::SIGNED, "-x"),
    ("Abs", DTypeSet::SIGNED, "|x|"),
    ("Sign", DTypeSet::SIGNED, "-1, 0 or 1 by the sign of x"),
    ("Square", DTypeSet::NUMERIC, "x * x"),
    ("Sqrt", DTypeSet::FLOAT, "square root"),
    ("Rsqrt", DTypeSet::FLOAT, "1 / sqrt(x)"),
    ("Exp", DTypeSet::FLOAT, "e^x"),
    ("Expm1", DTypeSet::FLOAT, "e^x - 1, accurate near 0"),
    ("Log", DTypeSet::FLOAT, "natural logarithm"),
    ("Log1p", DTypeSet::FLOAT, "log(1 + x), accurate near 0"),
    ("Sin", DTypeSet::FLOAT, "sine"),
    ("Cos", DTypeSet::FLOAT, "cosine"),
    ("Tanh", DTypeSet::FLOAT, "hyperbolic tangent"),
    ("Sigmoid", DTypeSet::FLOAT, "1 / (1 + e^-x)"),
    ("Erf", DTypeSet::FLOAT, "Gauss error function"),
    ("Floor", DTypeSet::FLOAT, "largest integer <= x"),
    ("Ceil", DTypeSet::FLOAT, "smallest integer >= x"),
    (
        "Round",
        DTypeSet::SIGNED,
        "nearest integer, ties to even (banker's rounding)",
    ),
    ("Reciprocal", DTypeSet::FLOAT, "1 / x"),
];

/// Binary elementwise ops with numpy broadcasting: (name, dtypes, commutative, summary).
pub const BINARY_OPS: &[(&str, DTypeSet, bool, &str)] = &[
    ("Add", DTypeSet::NUMERIC, true, "x + y"),
    ("Sub", DTypeSet::NUMERIC, false, "x - y"),
    ("Mul", DTypeSet::NUMERIC, true, "x * y"),
    (
        "Div",
        DTypeSet::NUMERIC,
        false,
        "x / y; integers truncate toward zero",
    ),
    ("FloorDiv", DTypeSet::NUMERIC, false, "floor(x / y)"),
    (
        "FloorMod",
        DTypeSet::NUMERIC,
        false,
        "x - floor(x / y) * y: the sign follows y",
    ),
    (
        "TruncateDiv",
        DTypeSet::NUMERIC,
        false,
        "x / y rounded toward zero (C semantics: -7 / 2 = -3)",
    ),
    (
        "TruncateMod",
        DTypeSet::SIGNED,
        false,
        "x - trunc(x / y) * y (C's % and fmod): the sign follows x",
    ),
    ("SquaredDifference", DTypeSet::SIGNED, true, "(x - y)^2"),
    ("Pow", DTypeSet::NUMERIC, false, "x ^ y"),
    ("Maximum", DTypeSet::NUMERIC, true, "max(x, y)"),
    ("Minimum", DTypeSet::NUMERIC, true, "min(x, y)"),
];

/// Comparisons with broadcasting, returning bool: (name, dtypes).
pub const COMPARE_OPS: &[(&str, DTypeSet)] = &[
    ("Equal", DTypeSet::NUMERIC_OR_BOOL),
    ("NotEqual", DTypeSet::NUMERIC_OR_BOOL),
    ("Less", DTypeSet::NUMERIC),
    ("LessEqual", DTypeSet::NUMERIC),
    ("Greater", DTypeSet::NUMERIC),
    ("GreaterEqual", DTypeSet::NUMERIC),
];

/// Reductions over the axes given by input 1, with `keep_dims`: (name, dtypes).
pub const REDUCTION_OPS: &[(&str, DTypeSet)] = &[
    ("Sum", DTypeSet::NUMERIC),
    ("Mean", DTypeSet::NUMERIC),
    ("Max", DTypeSet::NUMERIC),
    ("Min", DTypeSet::NUMERIC),
    ("Prod", DTypeSet::NUMERIC),
    ("All", DTypeSet::BOOL),
    ("Any", DTypeSet::BOOL),
    ("LogSumExp", DTypeSet::FLOAT),
];

pub fn op_defs() -> Vec<OpDef> {
    let mut defs = Vec::new();
    for &(name, dtypes, doc) in UNARY_OPS {
        defs.push(
            OpDef::new(name, same_as_input)
                .doc(doc)
                .input("x", dtypes)
                .output("y")
                .cheap(),
        );
    }
    for &(name, dtypes, commutative, doc) in BINARY_OPS {
        let mut d = OpDef::new(name, broadcast_binary)
            .doc(doc)
            .input("x", dtypes)
            .input("y", dtypes)
            .output("z")
            .cheap();
        d.commutative = commutative;
        defs.push(d);
    }
    for &(name, dtypes) in COMPARE_OPS {
        let commutative = matches!(name, "Equal" | "NotEqual");
        let mut d = OpDef::new(name, broadcast_compare)
            .input("x", dtypes)
            .input("y", dtypes)
            .output("z")
            .cheap();
        d.commutative = commutative;
        defs.push(d);
    }
    defs.push(
        OpDef::new("LogicalAnd", broadcast_binary)
            .input("x", DTypeSet::BOOL)
            .input("y", DTypeSet::BOOL)
            .output("z")
            .commutative()
            .cheap(),
    );
    defs.push(
        OpDef::new("LogicalOr", broadcast_binary)
            .input("x", DTypeSet::BOOL)
            .input("y", DTypeSet::BOOL)
            .output("z")
            .commutative()
            .cheap(),
    );
    defs.push(
        OpDef::new("LogicalNot", same_as_input)
            .input("x", DTypeSet::BOOL)
            .output("y")
            .cheap(),
    );
    defs.push(
        OpDef::new("SelectV2", infer_select)
            .doc("condition ? t : e elementwise, all three broadcast (TensorFlow's SelectV2)")
            .input("condition", DTypeSet::BOOL)
            .input("t", DTypeSet::ANY)
            .input("e", DTypeSet::ANY)
            .output("output")
            .cheap(),
    );
    defs.push(
        OpDef::new("ClipByValue", infer_clip)
            .doc("max(min(t, clip_max), clip_min) (clip_min when clip_min > clip_max), bounds broadcast against t")
            .input("t", DTypeSet::NUMERIC)
            .input("clip_value_min", DTypeSet::NUMERIC)
            .input("clip_value_max", DTypeSet::NUMERIC)
            .output("output")
            .cheap(),
    );
    defs.push(
        OpDef::new("Cast", infer_cast)
            .doc("converts to DstT; float to int truncates toward zero, nonzero to bool is true")
            .input("x", DTypeSet::ANY)
            .output("y")
            .attr("DstT", AttrKind::DType)
            .attr_default("Truncate", AttrKind::Bool, false)
            .cheap(),
    );
    defs.push(
        OpDef::new("AddN", infer_add_n)
            .doc("sum of all inputs, which share one shape and dtype")
            .list_input("inputs", DTypeSet::NUMERIC, 1)
            .output("sum")
            .commutative()
            .cheap(),
    );
    for &(name, dtypes) in REDUCTION_OPS {
        defs.push(
            OpDef::new(name, infer_reduction)
                .input("input", dtypes)
                .input("axis", DTypeSet::INDEX)
                .output("output")
                .attr_default("keep_dims", AttrKind::Bool, false),
        );
    }
    for name in ["ArgMax", "ArgMin"] {
        defs.push(
            OpDef::new(name, infer_arg_reduction)
                .doc("index of the extreme value along `dimension`; ties give the smallest index")
                .input("input", DTypeSet::NUMERIC)
                .input("dimension", DTypeSet::INDEX)
                .output("output")
                .attr_default("output_type", AttrKind::DType, DType::I64),
        );
    }
    defs.push(
        OpDef::new("MatMul", infer_matmul)
            .doc("a @ b of rank-2 tensors, optionally transposing either")
            .input("a", DTypeSet::NUMERIC)
            .input("b", DTypeSet::NUMERIC)
            .output("product")
            .attr_default("transpose_a", AttrKind::Bool, false)
            .attr_default("transpose_b", AttrKind::Bool, false),
    );
    defs.push(
        OpDef::new("MatMulBiasAdd", infer_matmul_bias_add)
            .doc(
                "a @ b + bias, the bias a vector over the product's columns: MatMul and its \
                 bias add in one pass (the product is accumulated onto the bias rows); made by \
                 the fusion pass",
            )
            .input("a", DTypeSet::FLOAT)
            .input("b", DTypeSet::FLOAT)
            .input("bias", DTypeSet::FLOAT)
            .output("product")
            .attr_default("transpose_a", AttrKind::Bool, false)
            .attr_default("transpose_b", AttrKind::Bool, false)
            .no_gradient(),
    );
    defs.push(
        OpDef::new("FusedElementwise", infer_fused_elementwise)
            .doc(
                "a region of float elementwise ops evaluated in one pass, block by block: the \
                 `program` attribute holds [op, a, b] triples over the inputs and earlier \
                 results (fusion::ElementwiseProgram); inputs have the output's shape or one \
                 element; made by the fusion pass",
            )
            .list_input("inputs", DTypeSet::FLOAT, 1)
            .output("y")
            .attr("program", AttrKind::Ints)
            // As cheap as the elementwise ops it replaces: a loop of them keeps the sequential
            // machine and its loop plans.
            .cheap()
            .no_gradient(),
    );
    defs.push(
        OpDef::new("BatchMatMul", infer_batch_matmul)
            .doc("batched x @ y over the last two dims, batch dims broadcast (BatchMatMulV2)")
            .input("x", DTypeSet::NUMERIC)
            .input("y", DTypeSet::NUMERIC)
            .output("output")
            .attr_default("adj_x", AttrKind::Bool, false)
            .attr_default("adj_y", AttrKind::Bool, false),
    );
    defs.extend(gradient_op_defs());
    defs
}

fn infer_select(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[1, 2])?;
    let s = ctx
        .input(0)
        .shape
        .broadcast(&ctx.input(1).shape)?
        .broadcast(&ctx.input(2).shape)?;
    Ok(vec![TensorType { dtype, shape: s }])
}

fn infer_clip(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1, 2])?;
    let s = ctx
        .input(0)
        .shape
        .broadcast(&ctx.input(1).shape)?
        .broadcast(&ctx.input(2).shape)?;
    Ok(vec![TensorType { dtype, shape: s }])
}

fn infer_cast(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: *ctx.attrs.dtype("DstT")?,
        shape: ctx.input(0).shape.clone(),
    }])
}

fn infer_add_n(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let idx: Vec<usize> = (0..ctx.inputs.len()).collect();
    let dtype = ctx.same_dtype(&idx)?;
    let mut shape = Shape::unknown();
    for t in ctx.inputs {
        shape = shape
            .merge(&t.shape)
            .map_err(|e| format!("all inputs need one shape: {e}"))?;
    }
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_reduction(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let keep = *ctx.attrs.boolean("keep_dims")?;
    if ctx.input(1).shape.rank().is_some_and(|r| r > 1) {
        return Err(format!(
            "axis must be a scalar or vector, got shape {}",
            ctx.input(1).shape
        ));
    }
    let axes = reduction_axes(ctx, 1)?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: reduced_shape(&ctx.input(0).shape, axes.as_deref(), keep),
    }])
}

fn infer_arg_reduction(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let out = *ctx.attrs.dtype("output_type")?;
    if !DTypeSet::INDEX.contains(out) {
        return Err(format!("output_type must be int32 or int64, got {out}"));
    }
    let shape = match (ctx.input(0).shape.rank(), ctx.const_ints(1)) {
        (Some(0), _) => return Err("input must have rank >= 1".into()),
        (Some(r), Some(a)) if a.len() == 1 => {
            let axis = normalize_axis(a[0], r)?;
            reduced_shape(&ctx.input(0).shape, Some(&[axis]), false)
        }
        (Some(r), _) => Shape::unknown_dims(r - 1),
        _ => Shape::unknown(),
    };
    Ok(vec![TensorType { dtype: out, shape }])
}

/// The (rows, cols) of a matrix operand after an optional transpose.
fn matrix_dims(s: &Shape, transpose: bool, what: &str) -> Result<(Dim, Dim), String> {
    match s.rank() {
        None => Ok((Dim::Unknown, Dim::Unknown)),
        Some(r) if r < 2 => Err(format!("{what} must have rank >= 2, got shape {s}")),
        Some(r) => {
            let (a, b) = (s.dim(r - 2), s.dim(r - 1));
            Ok(if transpose { (b, a) } else { (a, b) })
        }
    }
}

fn check_inner(k1: &Dim, k2: &Dim, a: &Shape, b: &Shape) -> Result<(), String> {
    if k1.merge(k2).is_none() {
        return Err(format!(
            "inner dimensions differ: a is {a}, b is {b}; {k1} != {k2}"
        ));
    }
    Ok(())
}

fn infer_matmul(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![matmul_type(ctx, 0, 1)?])
}

/// The product's type; the bias must be a vector as long as the product has columns.
fn infer_fused_elementwise(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    ElementwiseProgram::from_attr(ctx.inputs.len(), ctx.attrs.ints("program")?)?;
    let idx: Vec<usize> = (0..ctx.inputs.len()).collect();
    let dtype = ctx.same_dtype(&idx)?;
    let shapes: Vec<&Shape> = ctx.inputs.iter().map(|t| &t.shape).collect();
    Ok(vec![TensorType {
        dtype,
        shape: region_shape(&shapes)?,
    }])
}

fn infer_matmul_bias_add(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let product = matmul_type(ctx, 0, 1)?;
    let bias = ctx.input(2);
    if bias.dtype != product.dtype {
        return Err(format!(
            "bias has dtype {}, the product has {}",
            bias.dtype, product.dtype
        ));
    }
    if bias.shape.rank().is_some_and(|r| r != 1) {
        return Err(format!("bias must be a vector, got shape {}", bias.shape));
    }
    let columns = product.shape.dim(1);
    if columns.merge(&bias.shape.dim(0)).is_none() {
        return Err(format!(
            "bias has shape {} but the product has {} columns",
            bias.shape, columns
        ));
    }
    Ok(vec![product])
}

/// The type of `MatMul(input a, input b)` with the node's `transpose_a`/`transpose_b` attrs;
/// shared with the fused ops that contain a matrix product.
pub(crate) fn matmul_type(ctx: &InferCtx<'_>, ia: usize, ib: usize) -> Result<TensorType, String> {
    let dtype = ctx.same_dtype(&[ia, ib])?;
    let (a, b) = (&ctx.input(ia).shape, &ctx.input(ib).shape);
    for (s, w) in [(a, "a"), (b, "b")] {
        if s.rank().is_some_and(|r| r != 2) {
            return Err(format!("{w} must be a matrix, got shape {s}"));
        }
    }
    let (m, k1) = matrix_dims(a, *ctx.attrs.boolean("transpose_a")?, "a")?;
    let (k2, n) = matrix_dims(b, *ctx.attrs.boolean("transpose_b")?, "b")?;
    check_inner(&k1, &k2, a, b)?;
    Ok(TensorType {
        dtype,
        shape: Shape::new(vec![m, n]),
    })
}

fn infer_batch_matmul(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let (x, y) = (&ctx.input(0).shape, &ctx.input(1).shape);
    let (m, k1) = matrix_dims(x, *ctx.attrs.boolean("adj_x")?, "x")?;
    let (k2, n) = matrix_dims(y, *ctx.attrs.boolean("adj_y")?, "y")?;
    check_inner(&k1, &k2, x, y)?;
    let (Some(xd), Some(yd)) = (x.dims(), y.dims()) else {
        return Ok(vec![TensorType {
            dtype,
            shape: Shape::unknown(),
        }]);
    };
    let batch = Shape::new(xd[..xd.len() - 2].to_vec())
        .broadcast(&Shape::new(yd[..yd.len() - 2].to_vec()))
        .map_err(|e| format!("batch dimensions: {e}"))?;
    let mut dims = batch.dims().map(<[Dim]>::to_vec).unwrap_or_default();
    dims.push(m);
    dims.push(n);
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(dims),
    }])
}

// ---- builder API ------------------------------------------------------------------------------

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

macro_rules! reduction_builders {
    ($($method:ident => $op:literal),* $(,)?) => {
        impl Graph {
            $(
                #[doc = concat!("Adds a `", $op, "` reduction over `axes` (all axes when `None`).")]
                pub fn $method(&mut self, x: Output, axes: Option<&[i64]>, keep_dims: bool) -> Result<Output> {
                    let axis = self.axes_const(x, axes)?;
                    self.build($op).input(x).input(axis).attr("keep_dims", keep_dims).finish1()
                }
            )*
        }
    };
}

unary_builders! {
    neg => "Neg", abs => "Abs", sign => "Sign", square => "Square", sqrt => "Sqrt",
    rsqrt => "Rsqrt", exp => "Exp", expm1 => "Expm1", log => "Log", log1p => "Log1p",
    sin => "Sin", cos => "Cos", tanh => "Tanh", sigmoid => "Sigmoid", erf => "Erf",
    floor => "Floor", ceil => "Ceil", round => "Round", reciprocal => "Reciprocal",
    logical_not => "LogicalNot",
}

binary_builders! {
    add => "Add", sub => "Sub", mul => "Mul", div => "Div", floor_div => "FloorDiv",
    floor_mod => "FloorMod", truncate_div => "TruncateDiv", truncate_mod => "TruncateMod",
    squared_difference => "SquaredDifference", pow => "Pow", maximum => "Maximum", minimum => "Minimum",
    equal => "Equal", not_equal => "NotEqual", less => "Less", less_equal => "LessEqual",
    greater => "Greater", greater_equal => "GreaterEqual", logical_and => "LogicalAnd",
    logical_or => "LogicalOr",
}

reduction_builders! {
    reduce_sum => "Sum", reduce_mean => "Mean", reduce_max => "Max", reduce_min => "Min",
    reduce_prod => "Prod", reduce_all => "All", reduce_any => "Any",
    reduce_logsumexp => "LogSumExp",
}

impl Graph {
    /// A constant axis list for a reduction of `x`: `axes`, or every axis of `x` when `None`.
    pub fn axes_const(&mut self, x: Output, axes: Option<&[i64]>) -> Result<Output> {
        let list: Vec<i32> = match axes {
            Some(a) => checked_i32s("axes_const", "axes", a)?,
            None => match self.shape(x).rank() {
                Some(r) => (0..checked_i32("axes_const", "rank", r)?).collect(),
                None => {
                    let r = self.rank(x)?;
                    let zero = self.scalar(0i32)?;
                    let one = self.scalar(1i32)?;
                    return self.range(zero, r, one);
                }
            },
        };
        self.constant(TensorValue::new(&[list.len()], list).expect("length matches"))
    }

    /// `Cast` to `dtype`.
    pub fn cast(&mut self, x: Output, dtype: DType) -> Result<Output> {
        self.build("Cast").input(x).attr("DstT", dtype).finish1()
    }

    /// `SelectV2`: `cond ? t : e` with broadcasting.
    pub fn select(&mut self, cond: Output, t: Output, e: Output) -> Result<Output> {
        self.build("SelectV2")
            .input(cond)
            .input(t)
            .input(e)
            .finish1()
    }

    pub fn clip_by_value(&mut self, x: Output, lo: Output, hi: Output) -> Result<Output> {
        self.build("ClipByValue")
            .input(x)
            .input(lo)
            .input(hi)
            .finish1()
    }

    pub fn add_n(&mut self, xs: &[Output]) -> Result<Output> {
        self.build("AddN").inputs(xs.iter().copied()).finish1()
    }

    pub fn argmax(&mut self, x: Output, axis: i64) -> Result<Output> {
        let a = self.scalar(axis)?;
        self.build("ArgMax").input(x).input(a).finish1()
    }

    pub fn argmin(&mut self, x: Output, axis: i64) -> Result<Output> {
        let a = self.scalar(axis)?;
        self.build("ArgMin").input(x).input(a).finish1()
    }

    pub fn matmul(&mut self, a: Output, b: Output) -> Result<Output> {
        self.matmul_t(a, b, false, false)
    }

    pub fn matmul_t(&mut self, a: Output, b: Output, ta: bool, tb: bool) -> Result<Output> {
        self.build("MatMul")
            .input(a)
            .input(b)
            .attr("transpose_a", ta)
            .attr("transpose_b", tb)
            .finish1()
    }

    pub fn batch_matmul(
        &mut self,
        x: Output,
        y: Output,
        adj_x: bool,
        adj_y: bool,
    ) -> Result<Output> {
        self.build("BatchMatMul")
            .input(x)
            .input(y)
            .attr("adj_x", adj_x)
            .attr("adj_y", adj_y)
            .finish1()
    }

    /// A scalar constant.
    pub fn scalar<T: Element>(&mut self, v: T) -> Result<Output> {
        self.constant(TensorValue::scalar(v))
    }

    /// A scalar constant of the same dtype as `like` (for literals in expressions).
    pub fn scalar_like(&mut self, like: Output, v: f64) -> Result<Output> {
        let value = match self.dtype(like) {
            DType::F32 => TensorValue::scalar(v as f32),
            DType::F64 => TensorValue::scalar(v),
            DType::I32 => {
                let range = (i32::MIN as f64, i32::MAX as f64);
                TensorValue::scalar(checked_int_literal("scalar_like", "v", v, range)? as i32)
            }
            DType::I64 => {
                // i64::MAX as f64 rounds up to 2^63, which does not fit: stop just below it.
                let range = (i64::MIN as f64, (i64::MAX as f64).next_down());
                TensorValue::scalar(checked_int_literal("scalar_like", "v", v, range)? as i64)
            }
            DType::U8 => {
                let range = (0.0, u8::MAX as f64);
                TensorValue::scalar(checked_int_literal("scalar_like", "v", v, range)? as u8)
            }
            DType::Bool => TensorValue::scalar(v != 0.0),
            other => {
                return Err(crate::error::GraphError::InvalidNode {
                    node: self.output_name(like),
                    op: "Const".into(),
                    message: format!("no scalar literal of dtype {other}"),
                })
            }
        };
        self.constant(value)
    }
}

// ---- ops emitted by the gradient rules (math_grad.rs) -----------------------------------------

/// Ops that gradient rules emit: the scatter-add behind dense `Gather` gradients and the
/// keep-dims shape of a reduction, computed when a step runs.
pub fn gradient_op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("UnsortedSegmentSum", infer_unsorted_segment_sum)
            .doc(
                "sums the slices of `data` into `num_segments` rows by `segment_ids`, whose \
                 shape is a prefix of data's; every id must lie in [0, num_segments)",
            )
            .input("data", DTypeSet::NUMERIC)
            .input("segment_ids", DTypeSet::INDEX)
            .input("num_segments", DTypeSet::INDEX)
            .output("output"),
        OpDef::new("ReducedShape", infer_reduced_shape)
            .doc("`input_shape` with 1 at `axes`: the keep_dims shape of a reduction")
            .input("input_shape", DTypeSet::INDEX)
            .input("axes", DTypeSet::INDEX)
            .output("output")
            .cheap(),
    ]
}

pub(crate) fn infer_unsorted_segment_sum(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.dtype(0);
    if ctx.input(2).shape.rank().is_some_and(|r| r > 1) {
        return Err(format!(
            "num_segments must be a scalar, got shape {}",
            ctx.input(2).shape
        ));
    }
    let num = match ctx.const_ints(2).as_deref() {
        Some([n]) if *n >= 0 => Dim::Known(*n as usize),
        Some(v) => return Err(format!("num_segments must be one value >= 0, got {v:?}")),
        None => Dim::Unknown,
    };
    let (Some(data), Some(ids)) = (ctx.input(0).shape.dims(), ctx.input(1).shape.dims()) else {
        return Ok(vec![TensorType {
            dtype,
            shape: Shape::unknown(),
        }]);
    };
    if ids.len() > data.len() {
        return Err(format!(
            "segment_ids {} must be a prefix of data's shape {}",
            ctx.input(1).shape,
            ctx.input(0).shape
        ));
    }
    for (i, (a, b)) in ids.iter().zip(data).enumerate() {
        if a.merge(b).is_none() {
            return Err(format!(
                "segment_ids {} must be a prefix of data's shape {}: dim {i} differs",
                ctx.input(1).shape,
                ctx.input(0).shape
            ));
        }
    }
    let mut dims = vec![num];
    dims.extend(data[ids.len()..].iter().cloned());
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(dims),
    }])
}

fn infer_reduced_shape(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if ctx.input(0).shape.rank().is_some_and(|r| r != 1) {
        return Err(format!(
            "input_shape must be a vector, got shape {}",
            ctx.input(0).shape
        ));
    }
    Ok(vec![ctx.input(0).clone()])
}
