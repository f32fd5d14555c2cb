//! What each op becomes in a loop body compiled to machine code (see `jit.rs`): one table from
//! graph op name to an emitter of Cranelift IR. Every emitter computes, bit for bit, what the
//! op's kernel computes on one element (`cwise_ops`, `fused_elementwise`): the same operations
//! in the same order, IEEE arithmetic with no reassociation and no fused multiply-add, and
//! integer arithmetic wrapping as `Numeric`'s does. An emitter answers `None` for a dtype it
//! does not handle (integer division, half floats); that op then runs its interpreted
//! instructions through a call.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::FunctionBuilder;
use tfr_graph::fusion::ElementwiseOp;
use tfr_graph::DType;

/// Emits `op(args)` for operands of dtype `dtype`; the result has the op's output dtype (bool,
/// as an `i8` of 0 or 1, for comparisons).
pub(super) type Emitter = fn(&mut FunctionBuilder<'_>, DType, &[Value]) -> Option<Value>;

/// Graph op name to emitter. Integer division has none: its kernels check the divisor (and
/// have no scalar path, so a loop with one is never compiled).
const EMITTERS: &[(&str, Emitter)] = &[
    ("Add", add),
    ("AddV2", add),
    ("Sub", sub),
    ("Mul", mul),
    ("RealDiv", float_div),
    ("Neg", neg),
    ("Abs", abs),
    ("Square", square),
    ("SquaredDifference", squared_difference),
    ("Maximum", maximum),
    ("Minimum", minimum),
    ("Relu", relu),
    ("Sqrt", sqrt),
    ("Reciprocal", reciprocal),
    ("Rsqrt", rsqrt),
    ("Less", less),
    ("LessEqual", less_equal),
    ("Greater", greater),
    ("GreaterEqual", greater_equal),
    ("Equal", equal),
    ("NotEqual", not_equal),
    ("LogicalAnd", logical_and),
    ("LogicalOr", logical_or),
    ("LogicalNot", logical_not),
];

/// The emitter of graph op `op`, if it has one.
pub(super) fn emitter(op: &str) -> Option<Emitter> {
    EMITTERS.iter().find(|(name, _)| *name == op).map(|e| e.1)
}

/// How a dtype's values are computed on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Float,
    Signed,
    Unsigned,
    Bool,
}

/// The IR type a register of `dtype` is held in, and its class; `None` for dtypes compiled
/// code does not hold (half floats, strings, ...).
pub(super) fn ir_type(dtype: DType) -> Option<Type> {
    class(dtype).map(|c| c.0)
}

fn class(dtype: DType) -> Option<(Type, Class)> {
    Some(match dtype {
        DType::F32 => (types::F32, Class::Float),
        DType::F64 => (types::F64, Class::Float),
        DType::I32 => (types::I32, Class::Signed),
        DType::I64 => (types::I64, Class::Signed),
        DType::U8 => (types::I8, Class::Unsigned),
        DType::Bool => (types::I8, Class::Bool),
        _ => return None,
    })
}

fn zero(b: &mut FunctionBuilder<'_>, ty: Type) -> Value {
    match ty {
        types::F32 => b.ins().f32const(0.0f32),
        types::F64 => b.ins().f64const(0.0f64),
        _ => b.ins().iconst(ty, 0),
    }
}

fn one(b: &mut FunctionBuilder<'_>, ty: Type) -> Value {
    match ty {
        types::F32 => b.ins().f32const(1.0f32),
        types::F64 => b.ins().f64const(1.0f64),
        _ => b.ins().iconst(ty, 1),
    }
}

/// The operands of a unary op.
fn unary(args: &[Value]) -> Option<Value> {
    args.first().copied()
}

/// The operands of a binary op.
fn binary(args: &[Value]) -> Option<(Value, Value)> {
    match *args {
        [x, y, ..] => Some((x, y)),
        _ => None,
    }
}

/// Numbers only (not bools): floats with `float`, integers with `int` (wrapping).
fn arith(
    b: &mut FunctionBuilder<'_>,
    dtype: DType,
    args: &[Value],
    float: fn(&mut FunctionBuilder<'_>, Value, Value) -> Value,
    int: fn(&mut FunctionBuilder<'_>, Value, Value) -> Value,
) -> Option<Value> {
    let (x, y) = binary(args)?;
    match class(dtype)?.1 {
        Class::Float => Some(float(b, x, y)),
        Class::Signed | Class::Unsigned => Some(int(b, x, y)),
        Class::Bool => None,
    }
}

fn add(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    arith(
        b,
        dtype,
        args,
        |b, x, y| b.ins().fadd(x, y),
        |b, x, y| b.ins().iadd(x, y),
    )
}

fn sub(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    arith(
        b,
        dtype,
        args,
        |b, x, y| b.ins().fsub(x, y),
        |b, x, y| b.ins().isub(x, y),
    )
}

fn mul(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    arith(
        b,
        dtype,
        args,
        |b, x, y| b.ins().fmul(x, y),
        |b, x, y| b.ins().imul(x, y),
    )
}

fn float_div(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let (x, y) = binary(args)?;
    (class(dtype)?.1 == Class::Float).then(|| b.ins().fdiv(x, y))
}

/// `0 - x`, as the kernel computes it (so `Neg(0.0)` is `+0.0`, not the `-0.0` of `fneg`).
fn neg(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    let (ty, c) = class(dtype)?;
    let z = zero(b, ty);
    match c {
        Class::Float => Some(b.ins().fsub(z, x)),
        Class::Signed | Class::Unsigned => Some(b.ins().isub(z, x)),
        Class::Bool => None,
    }
}

/// `if x < 0 { 0 - x } else { x }` (so `-0.0` and NaN keep their sign, unlike `fabs`).
fn abs(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    let (ty, c) = class(dtype)?;
    let z = zero(b, ty);
    let (negative, negated) = match c {
        Class::Float => (b.ins().fcmp(FloatCC::LessThan, x, z), b.ins().fsub(z, x)),
        Class::Signed => (
            b.ins().icmp(IntCC::SignedLessThan, x, z),
            b.ins().isub(z, x),
        ),
        Class::Unsigned => return Some(x),
        Class::Bool => return None,
    };
    Some(b.ins().select(negative, negated, x))
}

fn square(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    mul(b, dtype, &[x, x])
}

fn squared_difference(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let d = sub(b, dtype, args)?;
    mul(b, dtype, &[d, d])
}

/// `if a > b || a.is_nan() { a } else { b }` (`ordered` is `>`), or with `<` for the minimum.
fn pick(
    b: &mut FunctionBuilder<'_>,
    dtype: DType,
    args: &[Value],
    ordered: (FloatCC, IntCC, IntCC),
) -> Option<Value> {
    let (x, y) = binary(args)?;
    let cond = match class(dtype)?.1 {
        Class::Float => {
            let beyond = b.ins().fcmp(ordered.0, x, y);
            let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
            b.ins().bor(beyond, nan)
        }
        Class::Signed => b.ins().icmp(ordered.1, x, y),
        Class::Unsigned => b.ins().icmp(ordered.2, x, y),
        Class::Bool => return None,
    };
    Some(b.ins().select(cond, x, y))
}

fn maximum(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let gt = (
        FloatCC::GreaterThan,
        IntCC::SignedGreaterThan,
        IntCC::UnsignedGreaterThan,
    );
    pick(b, dtype, args, gt)
}

fn minimum(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let lt = (
        FloatCC::LessThan,
        IntCC::SignedLessThan,
        IntCC::UnsignedLessThan,
    );
    pick(b, dtype, args, lt)
}

/// Floats only: `if x < 0 { 0 } else { x }` (NaN passes through).
fn relu(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    let (ty, c) = class(dtype)?;
    if c != Class::Float {
        return None;
    }
    let z = zero(b, ty);
    let negative = b.ins().fcmp(FloatCC::LessThan, x, z);
    Some(b.ins().select(negative, z, x))
}

/// Floats only: the correctly rounded square root (what `f32::sqrt` is).
fn sqrt(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    (class(dtype)?.1 == Class::Float).then(|| b.ins().sqrt(x))
}

/// Floats only: `1 / x` (what `recip` is).
fn reciprocal(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    let (ty, c) = class(dtype)?;
    if c != Class::Float {
        return None;
    }
    let o = one(b, ty);
    Some(b.ins().fdiv(o, x))
}

/// Floats only: `1 / sqrt(x)`, rounded twice as the kernel's `x.sqrt().recip()` is.
fn rsqrt(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let s = sqrt(b, dtype, args)?;
    reciprocal(b, dtype, &[s])
}

/// A comparison: floats ordered as Rust's operators are (false on NaN but for `!=`), signed
/// and unsigned integers by their dtype, bools as unsigned.
fn compare(
    b: &mut FunctionBuilder<'_>,
    dtype: DType,
    args: &[Value],
    cc: (FloatCC, IntCC, IntCC),
) -> Option<Value> {
    let (x, y) = binary(args)?;
    Some(match class(dtype)?.1 {
        Class::Float => b.ins().fcmp(cc.0, x, y),
        Class::Signed => b.ins().icmp(cc.1, x, y),
        Class::Unsigned | Class::Bool => b.ins().icmp(cc.2, x, y),
    })
}

fn less(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let cc = (
        FloatCC::LessThan,
        IntCC::SignedLessThan,
        IntCC::UnsignedLessThan,
    );
    compare(b, dtype, args, cc)
}

fn less_equal(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let cc = (
        FloatCC::LessThanOrEqual,
        IntCC::SignedLessThanOrEqual,
        IntCC::UnsignedLessThanOrEqual,
    );
    compare(b, dtype, args, cc)
}

fn greater(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let cc = (
        FloatCC::GreaterThan,
        IntCC::SignedGreaterThan,
        IntCC::UnsignedGreaterThan,
    );
    compare(b, dtype, args, cc)
}

fn greater_equal(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let cc = (
        FloatCC::GreaterThanOrEqual,
        IntCC::SignedGreaterThanOrEqual,
        IntCC::UnsignedGreaterThanOrEqual,
    );
    compare(b, dtype, args, cc)
}

fn equal(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    compare(b, dtype, args, (FloatCC::Equal, IntCC::Equal, IntCC::Equal))
}

/// `FloatCC::NotEqual` is "unordered or not equal": true on NaN, as Rust's `!=`.
fn not_equal(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let cc = (FloatCC::NotEqual, IntCC::NotEqual, IntCC::NotEqual);
    compare(b, dtype, args, cc)
}

/// Bools are 0 or 1, so the bitwise ops are the logical ones.
fn logical(
    b: &mut FunctionBuilder<'_>,
    dtype: DType,
    args: &[Value],
    op: fn(&mut FunctionBuilder<'_>, Value, Value) -> Value,
) -> Option<Value> {
    let (x, y) = binary(args)?;
    (dtype == DType::Bool).then(|| op(b, x, y))
}

fn logical_and(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    logical(b, dtype, args, |b, x, y| b.ins().band(x, y))
}

fn logical_or(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    logical(b, dtype, args, |b, x, y| b.ins().bor(x, y))
}

fn logical_not(b: &mut FunctionBuilder<'_>, dtype: DType, args: &[Value]) -> Option<Value> {
    let x = unary(args)?;
    (dtype == DType::Bool).then(|| b.ins().bxor_imm_u(x, 1))
}

/// The emitter of a fused region's op: that of the graph op it stands for.
pub(super) fn region_emitter(op: ElementwiseOp) -> Option<Emitter> {
    EMITTERS
        .iter()
        .find(|(name, _)| ElementwiseOp::of_graph_op(name) == Some(op))
        .map(|e| e.1)
}
