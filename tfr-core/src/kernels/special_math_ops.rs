//! Kernels of `tfr_graph::ops::special_math_ops`: special functions (computed in f64 for both
//! float types), float tests, atan2 and TensorFlow's safe divisions, logical xor.

use super::cwise_ops::{map_kernel, unsupported, zip_kernel};
use crate::dispatch_float;
use crate::error::KResult;
use crate::kernel::{KernelContext, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::Tensor;
use std::f64::consts::PI;
use tfr_graph::{DTypeSet, Element};

/// Registers a float unary map given as an `f64 -> f64` function.
macro_rules! f64_unary {
    ($r:ident, $op:literal, $f:expr) => {
        $r.cpu($op, DTypeSet::FLOAT, |init| {
            Ok(dispatch_float!(init.dtype(), T => map_kernel::<T, _>(|x: T| T::from_f64($f(x.to_f64()))), _ => return Err(unsupported(init))))
        });
    };
}

/// Registers a float binary op given as an `(f64, f64) -> f64` function.
macro_rules! f64_binary {
    ($r:ident, $op:literal, $f:expr) => {
        $r.cpu($op, DTypeSet::FLOAT, |init| {
            Ok(dispatch_float!(init.dtype(), T => zip_kernel::<T, _>(|a: T, b: T| T::from_f64($f(a.to_f64(), b.to_f64()))), _ => return Err(unsupported(init))))
        });
    };
}

/// Registers a float-to-bool test.
macro_rules! float_test {
    ($r:ident, $op:literal, $f:expr) => {
        $r.cpu($op, DTypeSet::FLOAT, |init| {
            Ok(dispatch_float!(init.dtype(), T => test_kernel::<T>(|x: T| $f(x.to_f64())), _ => return Err(unsupported(init))))
        });
    };
}

fn test_kernel<T: Element + Copy>(f: fn(T) -> bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
        let x = ctx.input(0);
        let out: Vec<bool> = x.as_slice::<T>()?.iter().map(|&v| f(v)).collect();
        let t = Tensor::from_parts(x.dims().clone(), bool::into_buffer(out));
        ctx.set_output(t);
        Ok(())
    })
}

pub fn register(r: &mut KernelRegistry) {
    // Single-precision inputs are computed in f64 and rounded once.
    f64_unary!(r, "Tan", f64::tan);
    f64_unary!(r, "Asin", f64::asin);
    f64_unary!(r, "Acos", f64::acos);
    f64_unary!(r, "Atan", f64::atan);
    f64_unary!(r, "Sinh", f64::sinh);
    f64_unary!(r, "Cosh", f64::cosh);
    f64_unary!(r, "Asinh", libm::asinh);
    f64_unary!(r, "Acosh", libm::acosh);
    f64_unary!(r, "Atanh", libm::atanh);
    f64_unary!(r, "Lgamma", libm::lgamma);
    f64_unary!(r, "Digamma", digamma);
    f64_unary!(r, "Erfc", libm::erfc);
    // rint rounds to the nearest integer, ties to even.
    f64_unary!(r, "Rint", libm::rint);
    float_test!(r, "IsNan", f64::is_nan);
    float_test!(r, "IsInf", f64::is_infinite);
    float_test!(r, "IsFinite", f64::is_finite);
    f64_binary!(r, "Atan2", f64::atan2);
    f64_binary!(r, "Xlogy", |x: f64, y: f64| if x == 0.0 {
        0.0
    } else {
        x * y.ln()
    });
    f64_binary!(r, "Xdivy", |x: f64, y: f64| if x == 0.0 {
        0.0
    } else {
        x / y
    });
    f64_binary!(r, "DivNoNan", |x: f64, y: f64| if y == 0.0 {
        0.0
    } else {
        x / y
    });
    f64_binary!(r, "Polygamma", polygamma);
    // RealDiv in the input's own precision (as Div), not through f64.
    r.cpu("RealDiv", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => zip_kernel::<T, _>(|a: T, b: T| a.div(b)), _ => return Err(unsupported(init))))
    });
    r.cpu("LogicalXor", DTypeSet::BOOL, |_| {
        Ok(zip_kernel::<bool, _>(|a, b| a != b))
    });
}

/// The digamma function psi(x) = Gamma'(x) / Gamma(x). NaN at the poles (0, -1, -2, ...) and
/// at -inf, as Eigen's `digamma`; reflection below 0, recurrence up to 10, then the
/// asymptotic series.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    let mut x = x;
    let mut acc = 0.0;
    if x <= 0.0 {
        if x == x.floor() {
            return f64::NAN;
        }
        // psi(1 - x) - psi(x) = pi / tan(pi x); reduce the argument for accuracy.
        acc -= PI / (PI * (x - x.round())).tan();
        x = 1.0 - x;
    }
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    // Bernoulli terms: -1/12 f + 1/120 f^2 - 1/252 f^3 + 1/240 f^4 - 1/132 f^5 + 691/32760 f^6
    let series = f
        * (-1.0 / 12.0
            + f * (1.0 / 120.0
                + f * (-1.0 / 252.0
                    + f * (1.0 / 240.0 + f * (-1.0 / 132.0 + f * (691.0 / 32760.0))))));
    acc + x.ln() - 0.5 / x + series
}

/// The Hurwitz zeta function zeta(s, q) = sum_k (k + q)^-s (Cephes' algorithm, as Eigen's
/// `zeta`): NaN for s < 1, +inf at s = 1; at a non-positive integer q, +inf for even integer
/// s and NaN otherwise.
// Cephes' constants, kept digit for digit as published.
#[allow(clippy::excessive_precision)]
pub fn zeta(s: f64, q: f64) -> f64 {
    const A: [f64; 12] = [
        12.0,
        -720.0,
        30240.0,
        -1209600.0,
        47900160.0,
        -1.8924375803183791606e9,
        7.47242496e10,
        -2.950130727918164224e12,
        1.1646782814350067249e14,
        -4.5979787224074726105e15,
        1.8152105401943546773e17,
        -7.1661652561756670113e18,
    ];
    const MACHEP: f64 = 1.11022302462515654042e-16;
    if s.is_nan() || q.is_nan() {
        return f64::NAN;
    }
    if s == 1.0 {
        return f64::INFINITY;
    }
    if s < 1.0 {
        return f64::NAN;
    }
    if q <= 0.0 {
        if q == q.floor() {
            return if s == s.floor() && (s as i64) % 2 == 0 {
                f64::INFINITY
            } else {
                f64::NAN
            };
        }
        if s != s.floor() {
            return f64::NAN;
        }
    }
    let mut sum = q.powf(-s);
    let mut a = q;
    let mut b = 0.0;
    let mut i = 0;
    while i < 9 || a <= 9.0 {
        i += 1;
        a += 1.0;
        b = a.powf(-s);
        sum += b;
        if (b / sum).abs() < MACHEP {
            return sum;
        }
    }
    let w = a;
    sum += b * w / (s - 1.0);
    sum -= 0.5 * b;
    let mut fac = 1.0;
    let mut k = 0.0;
    for coef in A {
        fac *= s + k;
        b /= w;
        let t = fac * b / coef;
        sum += t;
        if (t / sum).abs() < MACHEP {
            return sum;
        }
        k += 1.0;
        fac *= s + k;
        b /= w;
        k += 1.0;
    }
    sum
}

/// polygamma(n, x), the n-th derivative of digamma, for a non-negative integer n (NaN
/// otherwise): (-1)^(n+1) n! zeta(n + 1, x).
pub fn polygamma(n: f64, x: f64) -> f64 {
    if n.is_nan() || x.is_nan() || n < 0.0 || n != n.floor() {
        return f64::NAN;
    }
    if n == 0.0 {
        return digamma(x);
    }
    let mut factorial: f64 = 1.0;
    let mut k = 2.0;
    while k <= n && factorial.is_finite() {
        factorial *= k;
        k += 1.0;
    }
    let sign = if (n as i64) % 2 == 0 { -1.0 } else { 1.0 };
    sign * factorial * zeta(n + 1.0, x)
}
