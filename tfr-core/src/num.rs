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
    /// `row[j] = exp(row[j] - shift)` for every `j`, returning the sum of the results: the
    /// inner pass of softmax-like kernels, where `shift` is the row's maximum (so the
    /// arguments are at most zero). f32 uses [`exp_nonpositive_f32`] (vectorized, within 2 ulp
    /// of `expf`), f64 the library's `exp`.
    fn exp_shifted_sum(row: &mut [Self], shift: Self) -> Self;
}
impl FloatElem for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    fn exp_shifted_sum(row: &mut [f32], shift: f32) -> f32 {
        // Two passes: the exponentials alone vectorize, with the sum in the same loop they
        // do not. Eight partial sums shorten the chain (and round less).
        row.iter_mut()
            .for_each(|v| *v = exp_nonpositive_f32(*v - shift));
        let mut lanes = [0.0f32; 8];
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += v;
            }
        }
        lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
    }
}
impl FloatElem for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn exp_shifted_sum(row: &mut [f64], shift: f64) -> f64 {
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - shift).exp();
            sum += *v;
        }
        sum
    }
}

/// `e^x` for `x <= 0` (and NaN), without branches or library calls so that loops over slices
/// vectorize: `x = n ln 2 + r` with `|r| <= ln 2 / 2` (Cody and Waite's two-part `ln 2`), a
/// degree-6 polynomial for `e^r` (Cephes' `expf` coefficients) and `2^n` built in the exponent
/// bits. Within 2 ulp of `expf`; results below `2^-126` (`x < -87.3`, where `expf` gives
/// subnormals) are flushed to zero, NaN stays NaN and positive arguments saturate at `e^0 = 1`.
#[inline(always)]
pub fn exp_nonpositive_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer (round to nearest even) held in the mantissa.
    const ROUND: f32 = 12_582_912.0;
    let tiny = x < -87.3;
    // NaN passes both comparisons and stays NaN.
    let xc = if x > 0.0 { 0.0 } else { x };
    let xc = if tiny { 0.0 } else { xc };
    let t = xc * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n is in [-126, 0]: 2^n is a normal number with exponent bits n + 127.
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits((k.wrapping_add(127) as u32) << 23);
    if tiny {
        0.0
    } else {
        er * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_expf() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp_nonpositive_f32(x), x.exp());
            let rel = ((got - want) / want).abs() as f64;
            worst = worst.max(rel);
            x += 0.000_97;
        }
        // 2 ulp of 1.0 is 2.4e-7.
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive_f32(0.0), 1.0);
        assert_eq!(exp_nonpositive_f32(-0.0), 1.0);
        assert_eq!(exp_nonpositive_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive_f32(-100.0), 0.0);
        assert!(exp_nonpositive_f32(f32::NAN).is_nan());
        let mut row = [
            0.0f32,
            -1.0,
            -2.0,
            f32::NEG_INFINITY,
            1.0,
            0.5,
            -0.5,
            -3.0,
            -4.0,
        ];
        let sum = f32::exp_shifted_sum(&mut row, 1.0);
        let want: Vec<f32> = [
            0.0f32,
            -1.0,
            -2.0,
            f32::NEG_INFINITY,
            1.0,
            0.5,
            -0.5,
            -3.0,
            -4.0,
        ]
        .iter()
        .map(|v| (v - 1.0).exp())
        .collect();
        for (g, w) in row.iter().zip(&want) {
            assert!((g - w).abs() <= 2.5e-7 * w.abs(), "{g} vs {w}");
        }
        assert!((sum - want.iter().sum::<f32>()).abs() < 1e-6);
    }
}
