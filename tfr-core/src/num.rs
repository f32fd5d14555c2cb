//! Numeric element traits the generic kernels are written against.

use num_traits::Float;
use tfr_graph::Element;

/// An element type with arithmetic kernels (f32, f64, i32, i64, u8). Integer arithmetic wraps
/// on overflow, as in TensorFlow.
pub trait Numeric: Element + Copy + PartialOrd + Default {
    const ZERO: Self;
    const ONE: Self;
    const IS_FLOAT: bool;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Division; integers truncate toward zero (the caller rules out a zero divisor).
    fn div(self, o: Self) -> Self;
    /// Remainder with the sign of the dividend (C's `%`/`fmod`).
    fn rem(self, o: Self) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_nan(self) -> bool;
    /// The lowest and highest values (infinities for floats).
    fn min_value() -> Self;
    fn max_value() -> Self;
}

macro_rules! int_numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const IS_FLOAT: bool = false;
            #[inline(always)] fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)] fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)] fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)] fn div(self, o: Self) -> Self { self.wrapping_div(o) }
            #[inline(always)] fn rem(self, o: Self) -> Self { self.wrapping_rem(o) }
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as Self }
            #[inline(always)] fn is_nan(self) -> bool { false }
            fn min_value() -> Self { <$t>::MIN }
            fn max_value() -> Self { <$t>::MAX }
        }
    )*};
}
int_numeric!(i32, i64, u8);

macro_rules! float_numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const IS_FLOAT: bool = true;
            #[inline(always)] fn add(self, o: Self) -> Self { self + o }
            #[inline(always)] fn sub(self, o: Self) -> Self { self - o }
            #[inline(always)] fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)] fn div(self, o: Self) -> Self { self / o }
            #[inline(always)] fn rem(self, o: Self) -> Self { self % o }
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as Self }
            #[inline(always)] fn is_nan(self) -> bool { <$t>::is_nan(self) }
            fn min_value() -> Self { <$t>::NEG_INFINITY }
            fn max_value() -> Self { <$t>::INFINITY }
        }
    )*};
}
float_numeric!(f32, f64);

/// Float element types (f32, f64), with the transcendental functions.
pub trait FloatElem: Numeric + Float + num_traits::FloatConst {
    fn erf(self) -> Self;
}
impl FloatElem for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
    }
}
impl FloatElem for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
}
