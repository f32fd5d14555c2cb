//! Elementwise ops registered (their kernel shapes are in `cwise_kernels`): unary maps, binary
//! ops, comparisons, logical ops, select, clip, cast and add_n.

use super::broadcast::{broadcast_shape, for_each_broadcast};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::{FloatElem, Numeric};
use crate::tensor::Tensor;
use crate::{dispatch_any, dispatch_float, dispatch_numeric};
use tfr_graph::{Buffer, DType, DTypeSet, Element};

/// The error for a dtype a factory was registered for but does not handle.
pub fn unsupported(init: &KernelInit<'_>) -> String {
    format!("no CPU kernel for {} with dtype {}", init.op, init.dtype())
}

pub use super::cwise_kernels::{binary_apply, map_kernel, zip_kernel, zip_to_kernel};

/// Integer division ops fail on a zero divisor, as TensorFlow's do.
fn nonzero_divisor_kernel<T, F>(f: F) -> Box<dyn OpKernel>
where
    T: Numeric,
    F: Fn(T, T) -> T + Send + Sync + Copy + 'static,
{
    let inner = zip_kernel::<T, F>(f);
    Box::new(move |ctx: &mut KernelContext<'_>| {
        if !T::IS_FLOAT && ctx.input(1).as_slice::<T>()?.contains(&T::ZERO) {
            return Err(KernelError::invalid("integer division by zero"));
        }
        inner.compute(ctx)
    })
}

/// `v < 0`, written once generically (for u8 it is always false).
#[inline(always)]
fn is_negative<T: Numeric>(v: T) -> bool {
    v < T::ZERO
}

/// Floats: the quotient rounded to `T`, then floored, as TensorFlow's `floor(x / y)` (1 // 0.1
/// in f32 is 10: the f32 quotient rounds up to 10; numpy's divmod-based 9 differs).
#[inline(always)]
fn floor_div<T: Numeric>(a: T, b: T) -> T {
    if T::IS_FLOAT {
        T::from_f64(a.div(b).to_f64().floor())
    } else {
        let q = a.div(b);
        if a.rem(b) != T::ZERO && ((a < T::ZERO) != (b < T::ZERO)) {
            q.sub(T::ONE)
        } else {
            q
        }
    }
}

/// Integers: C's `/`. Floats: the quotient in `T`'s precision, then truncated (as TensorFlow's
/// float `TruncateDiv`).
#[inline(always)]
fn truncate_div<T: Numeric>(a: T, b: T) -> T {
    if T::IS_FLOAT {
        T::from_f64(a.div(b).to_f64().trunc())
    } else {
        a.div(b)
    }
}

#[inline(always)]
fn floor_mod<T: Numeric>(a: T, b: T) -> T {
    let r = a.rem(b);
    if r != T::ZERO && ((r < T::ZERO) != (b < T::ZERO)) {
        r.add(b)
    } else {
        r
    }
}

#[inline(always)]
pub(crate) fn neg<T: Numeric>(x: T) -> T {
    T::ZERO.sub(x)
}

#[inline(always)]
pub(crate) fn numeric_abs<T: Numeric>(x: T) -> T {
    if is_negative(x) {
        T::ZERO.sub(x)
    } else {
        x
    }
}

#[inline(always)]
pub(crate) fn square<T: Numeric>(x: T) -> T {
    x.mul(x)
}

#[inline(always)]
pub(crate) fn squared_difference<T: Numeric>(a: T, b: T) -> T {
    let d = a.sub(b);
    d.mul(d)
}

#[inline(always)]
pub(crate) fn maximum<T: Numeric>(a: T, b: T) -> T {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

#[inline(always)]
pub(crate) fn minimum<T: Numeric>(a: T, b: T) -> T {
    if a < b || a.is_nan() {
        a
    } else {
        b
    }
}

fn int_pow<T: Numeric>(base: T, exp: T) -> T {
    let mut e = exp.to_f64() as i64;
    let (mut acc, mut b) = (T::ONE, base);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.mul(b);
        }
        b = b.mul(b);
        e >>= 1;
    }
    acc
}

fn pow_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(dispatch_numeric!(init.dtype(), T => {
        if <T as Numeric>::IS_FLOAT {
            zip_kernel::<T, _>(|a: T, b: T| T::from_f64(a.to_f64().powf(b.to_f64())))
        } else {
            let inner = zip_kernel::<T, _>(int_pow::<T>);
            Box::new(move |ctx: &mut KernelContext<'_>| {
                if ctx.input(1).as_slice::<T>()?.iter().any(|&v| is_negative(v)) {
                    return Err(KernelError::invalid("integers to negative integer powers are not allowed"));
                }
                inner.compute(ctx)
            }) as Box<dyn OpKernel>
        }
    }, _ => return Err(unsupported(init))))
}

fn float_pow_fast(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(
        dispatch_float!(init.dtype(), T => zip_kernel::<T, _>(|a: T, b: T| a.powf(b)), _ => return pow_kernel(init)),
    )
}

/// Registers a float-only unary map given as `|x| expr`.
macro_rules! float_unary {
    ($r:ident, $op:literal, |$x:ident| $e:expr) => {
        $r.cpu($op, DTypeSet::FLOAT, |init| {
            Ok(dispatch_float!(init.dtype(), T => map_kernel::<T, _>(|$x: T| $e), _ => return Err(unsupported(init))))
        });
    };
}

/// Registers a unary map over every numeric type given as `|x| expr`.
macro_rules! numeric_unary {
    ($r:ident, $op:literal, |$x:ident| $e:expr) => {
        $r.cpu($op, DTypeSet::NUMERIC, |init| {
            Ok(dispatch_numeric!(init.dtype(), T => map_kernel::<T, _>(|$x: T| $e), _ => return Err(unsupported(init))))
        });
    };
}

/// Registers a binary op over every numeric type given as `|a, b| expr`.
macro_rules! numeric_binary {
    ($r:ident, $op:literal, $kernel:ident, |$a:ident, $b:ident| $e:expr) => {
        $r.cpu($op, DTypeSet::NUMERIC, |init| {
            Ok(dispatch_numeric!(init.dtype(), T => $kernel::<T, _>(|$a: T, $b: T| $e), _ => return Err(unsupported(init))))
        });
    };
}

/// Registers an ordering comparison over numeric types given as `|a, b| expr`.
macro_rules! ordering {
    ($r:ident, $op:literal, |$a:ident, $b:ident| $e:expr) => {
        $r.cpu($op, DTypeSet::NUMERIC, |init| {
            Ok(dispatch_numeric!(init.dtype(), T => zip_to_kernel::<T, bool, _>(|$a: T, $b: T| $e), _ => return Err(unsupported(init))))
        });
    };
}

/// Registers an equality comparison over numeric types and bool given as `|a, b| expr`.
macro_rules! comparison {
    ($r:ident, $op:literal, |$a:ident, $b:ident| $e:expr) => {
        $r.cpu($op, DTypeSet::NUMERIC_OR_BOOL, |init| {
            Ok(match init.dtype() {
                DType::Bool => zip_to_kernel::<bool, bool, _>(|$a: bool, $b: bool| $e),
                d => dispatch_numeric!(d, T => zip_to_kernel::<T, bool, _>(|$a: T, $b: T| $e), _ => return Err(unsupported(init))),
            })
        });
    };
}

pub fn register(r: &mut KernelRegistry) {
    numeric_unary!(r, "Neg", |x| neg(x));
    numeric_unary!(r, "Abs", |x| numeric_abs(x));
    numeric_unary!(r, "Sign", |x| if x > T::ZERO {
        T::ONE
    } else if is_negative(x) {
        T::ZERO.sub(T::ONE)
    } else {
        x
    });
    numeric_unary!(r, "Square", |x| square(x));
    float_unary!(r, "Sqrt", |x| x.sqrt());
    float_unary!(r, "Rsqrt", |x| x.sqrt().recip());
    float_unary!(r, "Exp", |x| x.exp());
    float_unary!(r, "Expm1", |x| x.exp_m1());
    float_unary!(r, "Log", |x| x.ln());
    float_unary!(r, "Log1p", |x| x.ln_1p());
    float_unary!(r, "Sin", |x| x.sin());
    float_unary!(r, "Cos", |x| x.cos());
    float_unary!(r, "Tanh", |x| x.tanh());
    float_unary!(r, "Sigmoid", |x| sigmoid(x));
    float_unary!(r, "Erf", |x| FloatElem::erf(x));
    float_unary!(r, "Floor", |x| x.floor());
    float_unary!(r, "Ceil", |x| x.ceil());
    float_unary!(r, "Round", |x| round_half_even(x));
    // Integers are already rounded (TensorFlow registers Round for int32 and int64 too).
    r.cpu("Round", DTypeSet::INDEX, |init| {
        Ok(dispatch_numeric!(init.dtype(), T => map_kernel::<T, _>(|x: T| x), _ => return Err(unsupported(init))))
    });
    float_unary!(r, "Reciprocal", |x| x.recip());

    numeric_binary!(r, "Add", zip_kernel, |a, b| a.add(b));
    numeric_binary!(r, "Sub", zip_kernel, |a, b| a.sub(b));
    numeric_binary!(r, "Mul", zip_kernel, |a, b| a.mul(b));
    numeric_binary!(r, "Div", nonzero_divisor_kernel, |a, b| a.div(b));
    numeric_binary!(r, "FloorDiv", nonzero_divisor_kernel, |a, b| floor_div(
        a, b
    ));
    numeric_binary!(r, "FloorMod", nonzero_divisor_kernel, |a, b| floor_mod(
        a, b
    ));
    numeric_binary!(r, "TruncateDiv", nonzero_divisor_kernel, |a, b| {
        truncate_div(a, b)
    });
    // Numeric::rem is C's `%` for integers and `fmod` for floats, TruncateMod's definition.
    numeric_binary!(r, "TruncateMod", nonzero_divisor_kernel, |a, b| a.rem(b));
    numeric_binary!(r, "SquaredDifference", zip_kernel, |a, b| {
        squared_difference(a, b)
    });
    numeric_binary!(r, "Maximum", zip_kernel, |a, b| maximum(a, b));
    numeric_binary!(r, "Minimum", zip_kernel, |a, b| minimum(a, b));
    r.cpu("Pow", DTypeSet::NUMERIC, float_pow_fast);

    comparison!(r, "Equal", |a, b| a == b);
    comparison!(r, "NotEqual", |a, b| a != b);
    ordering!(r, "Less", |a, b| a < b);
    ordering!(r, "LessEqual", |a, b| a <= b);
    ordering!(r, "Greater", |a, b| a > b);
    ordering!(r, "GreaterEqual", |a, b| a >= b);

    r.cpu("LogicalAnd", DTypeSet::BOOL, |_| {
        Ok(zip_kernel::<bool, _>(|a, b| a && b))
    });
    r.cpu("LogicalOr", DTypeSet::BOOL, |_| {
        Ok(zip_kernel::<bool, _>(|a, b| a || b))
    });
    r.cpu("LogicalNot", DTypeSet::BOOL, |_| {
        Ok(map_kernel::<bool, _>(|a| !a))
    });

    r.cpu("SelectV2", DTypeSet::BOOL, select_kernel);
    r.cpu("Select", DTypeSet::BOOL, select_v1_kernel);
    // TensorFlow's order, max(min(x, hi), lo): with lo > hi every element is lo (numpy's clip
    // gives hi).
    r.cpu("ClipByValue", DTypeSet::NUMERIC, |init| {
        Ok(dispatch_numeric!(init.dtype(), T => ternary_kernel::<T, T, T, T, _>(|x: T, lo: T, hi: T| maximum(minimum(x, hi), lo)), _ => return Err(unsupported(init))))
    });
    r.cpu("Cast", DTypeSet::ANY, cast_kernel);
    r.cpu("AddN", DTypeSet::NUMERIC, |init| Ok(dispatch_numeric!(init.dtype(), T => add_n_kernel::<T>(), _ => return Err(unsupported(init)))));
}

#[inline(always)]
pub(crate) fn sigmoid<T: FloatElem>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

#[inline(always)]
fn round_half_even<T: FloatElem>(x: T) -> T {
    let r = x.round();
    if (x - x.trunc()).abs() == T::from(0.5).unwrap_or(T::zero()) {
        let half = r / (T::one() + T::one());
        if half.floor() != half {
            return r - x.signum();
        }
    }
    r
}

/// `f(a, b, c)` with all three operands broadcast.
fn ternary_kernel<A, B, C, U, F>(f: F) -> Box<dyn OpKernel>
where
    A: Element + Copy,
    B: Element + Copy,
    C: Element + Copy,
    U: Element,
    F: Fn(A, B, C) -> U + Send + Sync + 'static,
{
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (a, b, c) = (ctx.input(0), ctx.input(1), ctx.input(2));
        let shape = broadcast_shape(&[a.shape(), b.shape(), c.shape()])?;
        let (av, bv, cv) = (a.as_slice::<A>()?, b.as_slice::<B>()?, c.as_slice::<C>()?);
        let mut out = Vec::with_capacity(shape.iter().product());
        if a.shape() == b.shape() && b.shape() == c.shape() {
            out.extend(av.iter().zip(bv).zip(cv).map(|((&x, &y), &z)| f(x, y, z)));
        } else {
            for_each_broadcast(&shape, [a.shape(), b.shape(), c.shape()], |_, [i, j, k]| {
                out.push(f(av[i], bv[j], cv[k]))
            });
        }
        ctx.set_output(Tensor::from_parts(shape, U::into_buffer(out)));
        Ok(())
    })
}

fn select_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = init
        .inputs
        .get(1)
        .map(|t| t.dtype)
        .ok_or("Select needs 3 inputs")?;
    Ok(dispatch_any!(dtype, T => select_typed::<T>(), _ => return Err(unsupported(init))))
}

fn select_typed<T: Element>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let (c, t, e) = (ctx.input(0), ctx.input(1), ctx.input(2));
        let shape = broadcast_shape(&[c.shape(), t.shape(), e.shape()])?;
        let (cv, tv, ev) = (
            c.as_slice::<bool>()?,
            t.as_slice::<T>()?,
            e.as_slice::<T>()?,
        );
        let mut out = Vec::with_capacity(shape.iter().product());
        for_each_broadcast(&shape, [c.shape(), t.shape(), e.shape()], |_, [i, j, k]| {
            out.push(if cv[i] { tv[j].clone() } else { ev[k].clone() })
        });
        ctx.set_output(Tensor::from_parts(shape, T::into_buffer(out)));
        Ok(())
    })
}

/// TensorFlow's Select (V1): `t` and `e` of one shape (no broadcasting); the condition is a
/// scalar (all of `t` or all of `e`), of their shape, or a vector choosing rows along dim 0.
fn select_v1_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = init
        .inputs
        .get(1)
        .map(|t| t.dtype)
        .ok_or("Select needs 3 inputs")?;
    Ok(dispatch_any!(dtype, T => select_v1_typed::<T>(), _ => return Err(unsupported(init))))
}

fn select_v1_typed<T: Element>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let (c, t, e) = (ctx.input(0), ctx.input(1), ctx.input(2));
        if t.shape() != e.shape() {
            return Err(KernelError::invalid(format!(
                "'then' and 'else' must have the same shape, got {:?} and {:?}",
                t.shape(),
                e.shape()
            )));
        }
        let cv = c.as_slice::<bool>()?;
        if c.rank() == 0 {
            let pick = if cv[0] { t.clone() } else { e.clone() };
            ctx.set_output(pick);
            return Ok(());
        }
        let (tv, ev) = (t.as_slice::<T>()?, e.as_slice::<T>()?);
        let row = if c.shape() == t.shape() {
            1
        } else if c.rank() == 1 && t.rank() > 1 && c.shape()[0] == t.shape()[0] {
            t.num_elements().checked_div(c.shape()[0]).unwrap_or(0)
        } else {
            return Err(KernelError::invalid(format!(
                "condition of shape {:?} must be a scalar, a vector of the first dim of 'then' \
                 or of the shape of 'then' {:?}",
                c.shape(),
                t.shape()
            )));
        };
        let out: Vec<T> = (0..tv.len())
            .map(|i| {
                if cv[i / row] {
                    tv[i].clone()
                } else {
                    ev[i].clone()
                }
            })
            .collect();
        ctx.set_output(Tensor::from_parts(t.dims().clone(), T::into_buffer(out)));
        Ok(())
    })
}

fn add_n_kernel<T: Numeric>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let n = ctx.num_inputs();
        let mut acc = ctx.take_input(0);
        for i in 1..n {
            if ctx.input(i).shape() != acc.shape() {
                return Err(KernelError::invalid(format!(
                    "input {i} has shape {:?}, input 0 has {:?}",
                    ctx.input(i).shape(),
                    acc.shape()
                )));
            }
        }
        if acc.slice_mut::<T>().is_none() {
            acc = Tensor::from_parts(
                acc.dims().clone(),
                T::into_buffer(acc.as_slice::<T>()?.to_vec()),
            );
        }
        for i in 1..n {
            let x = ctx.take_input(i);
            let xs = x.as_slice::<T>()?;
            let out = acc
                .slice_mut::<T>()
                .ok_or_else(|| KernelError::internal("accumulator is shared"))?;
            out.iter_mut().zip(xs).for_each(|(a, &b)| *a = a.add(b));
        }
        ctx.set_output(acc);
        Ok(())
    })
}

/// Converts between any two value dtypes: float to integer truncates toward zero, nonzero to
/// bool is true, bool to number is 0 or 1.
pub fn cast_tensor(x: &Tensor, to: DType) -> KResult<Tensor> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    if matches!(x.dtype(), DType::Resource | DType::String) {
        return Err(KernelError::invalid(format!(
            "cannot cast {} to {to}: it is not a number",
            x.dtype()
        )));
    }
    let b = x.buffer();
    let n = b.len();
    let from_float = x.dtype().is_float();
    let out = match to {
        // int64 rounds to f32 once (through f64 it could round twice: 2^53 + 2^29 + 1 would
        // give 2^53 instead of TensorFlow's and numpy's 2^53 + 2^30).
        DType::F32 if x.dtype() == DType::I64 => {
            Buffer::F32((0..n).map(|i| b.get_i64(i) as f32).collect())
        }
        DType::F32 => Buffer::F32((0..n).map(|i| b.get_f64(i) as f32).collect()),
        DType::F64 => Buffer::F64((0..n).map(|i| b.get_f64(i)).collect()),
        DType::F16 => Buffer::F16(
            (0..n)
                .map(|i| tfr_graph::f16::from_f64(b.get_f64(i)))
                .collect(),
        ),
        DType::BF16 => Buffer::BF16(
            (0..n)
                .map(|i| tfr_graph::bf16::from_f64(b.get_f64(i)))
                .collect(),
        ),
        DType::Bool => Buffer::Bool((0..n).map(|i| b.get_f64(i) != 0.0).collect()),
        DType::I32 if from_float => Buffer::I32((0..n).map(|i| b.get_f64(i) as i32).collect()),
        DType::I64 if from_float => Buffer::I64((0..n).map(|i| b.get_f64(i) as i64).collect()),
        DType::U8 if from_float => Buffer::U8((0..n).map(|i| b.get_f64(i) as u8).collect()),
        DType::I32 => Buffer::I32((0..n).map(|i| b.get_i64(i) as i32).collect()),
        DType::I64 => Buffer::I64((0..n).map(|i| b.get_i64(i)).collect()),
        DType::U8 => Buffer::U8((0..n).map(|i| b.get_i64(i) as u8).collect()),
        DType::Resource => return Err(KernelError::invalid("cannot cast to resource")),
        DType::String => {
            return Err(KernelError::invalid(format!(
                "cannot cast {} to string (not numeric)",
                x.dtype()
            )))
        }
    };
    Ok(Tensor::from_parts(x.dims().clone(), out))
}

fn cast_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let to = *init.attrs.dtype("DstT")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let out = cast_tensor(ctx.input(0), to)?;
        ctx.set_output(out);
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use crate::kernel::{kernel_registry, DeviceType, KernelContext, KernelInit};
    use crate::resource::ResourceMgr;
    use crate::tensor::{Scalar, Tensor};
    use tfr_graph::{Attrs, DType, Shape, TensorType};

    /// The scalar fast path gives what `compute` gives, for every elementwise op and dtype it
    /// answers for, and declines inputs of another dtype.
    #[test]
    fn scalar_path_agrees_with_compute() {
        let binary = [
            "Add",
            "Sub",
            "Mul",
            "Maximum",
            "Minimum",
            "Less",
            "LessEqual",
            "Greater",
            "GreaterEqual",
            "Equal",
            "NotEqual",
            "Pow",
        ];
        let unary = [
            "Neg", "Abs", "Square", "Sign", "Exp", "Sqrt", "Tanh", "Floor",
        ];
        let values = |d: DType| -> Vec<Tensor> {
            match d {
                DType::F32 => [-2.5f32, 0.0, 3.0, 1e30].map(Tensor::scalar).to_vec(),
                DType::F64 => [-2.5f64, 0.0, 3.0, f64::NAN].map(Tensor::scalar).to_vec(),
                DType::I32 => [-7i32, 0, 3, i32::MAX].map(Tensor::scalar).to_vec(),
                DType::I64 => [-7i64, 0, 3, i64::MIN].map(Tensor::scalar).to_vec(),
                _ => [0u8, 1, 200, 255].map(Tensor::scalar).to_vec(),
            }
        };
        let res = ResourceMgr::default();
        let mut answered = 0;
        for (ops, arity) in [(&binary[..], 2), (&unary[..], 1)] {
            for op in ops {
                for d in [DType::F32, DType::F64, DType::I32, DType::I64, DType::U8] {
                    let Some(factory) = kernel_registry().find(op, DeviceType::CPU, d) else {
                        continue;
                    };
                    let ins = vec![TensorType::new(d, Shape::scalar()); arity];
                    let attrs = Attrs::default();
                    let init = KernelInit {
                        node: "n",
                        op,
                        attrs: &attrs,
                        inputs: &ins,
                        outputs: &ins[..1],
                        device: None,
                    };
                    let k = factory(&init).unwrap();
                    if !k.has_scalar_path() {
                        continue;
                    }
                    let vs = values(d);
                    for a in &vs {
                        for b in &vs {
                            if arity == 2 && op == &"Pow" && d != DType::F32 && d != DType::F64 {
                                continue;
                            }
                            let args: Vec<Tensor> =
                                [a, b][..arity].iter().map(|t| (*t).clone()).collect();
                            let mut ctx = KernelContext::new(
                                args.iter().cloned().map(Some).collect(),
                                &res,
                                &[],
                            );
                            let want = k.compute(&mut ctx).map(|_| ctx.into_outputs());
                            let refs: Vec<&Scalar> =
                                args.iter().map(|t| t.scalar_ref().unwrap()).collect();
                            let mut out = Scalar::Bool(false);
                            let answered_here = k.compute_scalar(&refs, &mut out);
                            let Ok(want) = want else {
                                continue;
                            };
                            assert!(answered_here, "{op} {d} declined {args:?}");
                            answered += 1;
                            let want = &want[0];
                            let got = Tensor::from_scalar(out);
                            let same = got == *want
                                || got.to_f64_vec()[0].is_nan() && want.to_f64_vec()[0].is_nan();
                            assert!(same, "{op} {d} {args:?}: {got:?} != {want:?}");
                        }
                    }
                    // Another dtype: declined.
                    let other = Tensor::scalar(true);
                    let refs = vec![other.scalar_ref().unwrap(); arity];
                    assert!(
                        !k.compute_scalar(&refs, &mut Scalar::Bool(false)),
                        "{op} {d}"
                    );
                }
            }
        }
        assert!(answered > 300, "only {answered} cases ran the scalar path");
    }
}
