//! TensorFlow's conversions between real values and the codes of a `bits`-bit type whose
//! lowest code is `lowest` (0 for quint8, -2^31 for qint32), over the range `[min, max]`.
//! Encoding many values runs as a loop compiled per SIMD level (`encode_codes`), with the same
//! arithmetic as one value at a time.

use crate::kernels::simd::simd_fn;

/// The code of `x` (TF's `FloatToQuantizedUnclamped`): may lie outside the type.
pub fn float_to_code_unclamped(x: f32, min: f32, max: f32, bits: u32, lowest: i64) -> i64 {
    Encoder::new(min, max, bits, lowest).encode_unclamped(x)
}
/// The code of `x`, clamped to the type (TF's `FloatToQuantized`).
pub fn float_to_code(x: f32, min: f32, max: f32, bits: u32, lowest: i64) -> i64 {
    Encoder::new(min, max, bits, lowest).encode(x)
}
/// [`float_to_code`] with its constants computed once, for encoding many values.
#[derive(Clone, Copy)]
pub struct Encoder {
    degenerate: bool,
    scale: f64,
    /// `lowest - round(min * scale)`: the code offset.
    offset: f64,
    lowest: f64,
    highest: f64,
}
impl Encoder {
    pub fn new(min: f32, max: f32, bits: u32, lowest: i64) -> Encoder {
        let steps = (1u64 << bits) as f64;
        let range = (max as f64 - min as f64) * (steps / (steps - 1.0));
        let scale = steps / range;
        Encoder {
            degenerate: min == max,
            scale,
            offset: lowest as f64 - (min as f64 * scale).round(),
            lowest: lowest as f64,
            highest: (lowest as i128 + (1i128 << bits) - 1) as f64,
        }
    }
    #[inline]
    pub fn encode_unclamped(&self, x: f32) -> i64 {
        if self.degenerate {
            return 0;
        }
        ((x as f64 * self.scale).round() + self.offset) as i64
    }
    #[inline]
    pub fn encode(&self, x: f32) -> i64 {
        if self.degenerate {
            return 0;
        }
        ((x as f64 * self.scale).round() + self.offset).clamp(self.lowest, self.highest) as i64
    }
    /// [`Encoder::encode`] of each of `x` into `out`, for an 8-bit unsigned type.
    pub fn encode_u8(&self, x: &[f32], out: &mut [u8]) {
        if self.degenerate {
            out.fill(0);
            return;
        }
        debug_assert!(self.lowest == 0.0 && self.highest == 255.0);
        encode_codes(x, self.scale, self.offset, out);
    }
}

simd_fn! {
    /// `clamp(round(x * scale) + offset, 0, 255)` ([`Encoder::encode`]) over a slice.
    fn encode_codes<F>(x: &[f32], scale: f64, offset: f64, out: &mut [u8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            // `max` maps NaN to 0, as the one-value path's cast does.
            #[allow(clippy::manual_clamp)] // clamp would keep NaN
            let c = ((v as f64 * scale).round() + offset).max(0.0).min(255.0);
            // SAFETY: `c` is finite and within 0..=255.
            *o = unsafe { c.to_int_unchecked::<i32>() } as u8;
        }
    }
}
/// The real value of `code` (TF's `QuantizedToFloat`).
pub fn code_to_float(code: i64, min: f32, max: f32, bits: u32, lowest: i64) -> f32 {
    Decoder::new(min, max, bits, lowest).decode(code as f64)
}
/// [`code_to_float`] with its constants computed once, for decoding many codes.
#[derive(Clone, Copy)]
pub struct Decoder {
    degenerate: Option<f32>,
    min_rounded: f64,
    scale: f64,
    lowest: f64,
}
impl Decoder {
    pub fn new(min: f32, max: f32, bits: u32, lowest: i64) -> Decoder {
        let steps = (1u64 << bits) as f64;
        let range = (max as f64 - min as f64) * (steps / (steps - 1.0));
        let scale = range / steps;
        // TF rounds min to a code with the scale in f32.
        let min_rounded = (min as f64 / scale as f32 as f64).round() * scale as f32 as f64;
        Decoder {
            degenerate: (min == max).then_some(min),
            min_rounded,
            scale,
            lowest: lowest as f64,
        }
    }
    #[inline]
    pub fn decode(&self, code: f64) -> f32 {
        match self.degenerate {
            Some(min) => min,
            None => (self.min_rounded + (code - self.lowest) * self.scale) as f32,
        }
    }
}
/// The real value one code step stands for (TF's `FloatForOneQuantizedLevel`).
pub fn float_per_code(min: f32, max: f32, bits: u32) -> f32 {
    (max - min) / ((1u64 << bits) - 1) as f32
}
/// The range of an int32 product of two 8-bit ranges (TF's
/// `QuantizationRangeForMultiplication<quint8, quint8, qint32>`).
pub fn product_range(min_a: f32, max_a: f32, min_b: f32, max_b: f32) -> (f32, f32) {
    let one = float_per_code(min_a, max_a, 8) * float_per_code(min_b, max_b, 8);
    (one * i32::MIN as f32, one * i32::MAX as f32)
}
/// The symmetric int32 range a quantized sum is formed in (TF's
/// `GetOutputMinAndMaxForQuantizedAdd`): 2^17 times the largest input magnitude.
pub fn sum_range(min_a: f32, max_a: f32, min_b: f32, max_b: f32) -> (f32, f32) {
    let m = max_a.max(-min_a).max(max_b.max(-min_b)) * (1u32 << 17) as f32;
    (-m, m)
}
/// An 8-bit code re-expressed in another range and type (TF's `RequantizeInNewRange`).
#[allow(clippy::too_many_arguments)]
pub fn requantize(
    code: i64,
    min: f32,
    max: f32,
    (bits, lowest): (u32, i64),
    new_min: f32,
    new_max: f32,
    (new_bits, new_lowest): (u32, i64),
) -> i64 {
    let x = code_to_float(code, min, max, bits, lowest);
    float_to_code(x, new_min, new_max, new_bits, new_lowest)
}
/// quint8's (bits, lowest code).
pub const QUINT8: (u32, i64) = (8, 0);
/// qint32's (bits, lowest code).
pub const QINT32: (u32, i64) = (32, i32::MIN as i64);
