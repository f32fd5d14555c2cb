//! Kernels of `tfr_graph::ops::quantization_ops`, with TensorFlow's arithmetic
//! (`quantization_utils.h`, `quantize_op.cc`, `dequantize_op.cc`, `fake_quant_ops_functor.h`):
//! a uint8 tensor stands for TF's quint8, an int32 one for qint32. The range math is in
//! [`codes`], shared by every kernel and by the tests' references.

use super::matmul_op::transpose_into;
use super::output_alloc::alloc;
use super::qgemm::{best_path, qgemm_packed, PackedB};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use tfr_graph::ops::quantization_ops::{QuantizeMode, RoundMode};
use tfr_graph::{DType, DTypeSet};

/// TensorFlow's conversions between real values and the codes of a `bits`-bit type whose
/// lowest code is `lowest` (0 for quint8, -2^31 for qint32), over the range `[min, max]`.
#[path = "quantization_codes.rs"]
pub mod codes;

use codes::{QINT32, QUINT8};

pub fn register(r: &mut KernelRegistry) {
    r.cpu("QuantizeV2", DTypeSet::of(&[DType::F32]), quantize_factory);
    r.cpu(
        "Dequantize",
        DTypeSet::of(&[DType::U8, DType::I32]),
        dequantize_factory,
    );
    r.cpu("QuantizedMatMul", DTypeSet::of(&[DType::U8]), |init| {
        let ta = init.attrs.bool_opt("transpose_a").copied().unwrap_or(false);
        let tb = init.attrs.bool_opt("transpose_b").copied().unwrap_or(false);
        // The last `b` and its packed form: a layer's weights are the same constant every step.
        let cache: Mutex<Option<(Tensor, Arc<PackedB>)>> = Mutex::new(None);
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_matmul(ctx, ta, tb, &cache)
        }))
    });
    r.cpu("QuantizedConcat", DTypeSet::of(&[DType::I32]), |_| {
        Ok(Box::new(quantized_concat))
    });
    r.cpu("QuantizedBiasAdd", DTypeSet::of(&[DType::U8]), |_| {
        Ok(Box::new(quantized_bias_add))
    });
    r.cpu(
        "QuantizedRelu",
        DTypeSet::of(&[DType::U8, DType::I32]),
        |_| Ok(Box::new(quantized_relu)),
    );
    r.cpu("Requantize", DTypeSet::of(&[DType::I32]), |_| {
        Ok(Box::new(requantize))
    });
    r.cpu("RequantizationRange", DTypeSet::of(&[DType::I32]), |_| {
        Ok(Box::new(requantization_range))
    });
    r.cpu(
        "FakeQuantWithMinMaxVars",
        DTypeSet::of(&[DType::F32]),
        |init| {
            let (lo, hi) = fake_quant_levels(init)?;
            Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
                fake_quant(ctx, lo, hi)
            }))
        },
    );
    r.cpu(
        "FakeQuantWithMinMaxVarsGradient",
        DTypeSet::of(&[DType::F32]),
        |init| {
            let (lo, hi) = fake_quant_levels(init)?;
            Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
                fake_quant_grad(ctx, lo, hi)
            }))
        },
    );
}

/// A range input's values (one per channel, or one), checked finite and ordered against `max`.
fn range_values(
    ctx: &KernelContext<'_>,
    min_i: usize,
    max_i: usize,
) -> KResult<(Vec<f32>, Vec<f32>)> {
    let min = ctx.input(min_i).as_slice::<f32>()?.to_vec();
    let max = ctx.input(max_i).as_slice::<f32>()?.to_vec();
    if min.len() != max.len() || min.is_empty() {
        return Err(KernelError::invalid(format!(
            "the range has {} minima and {} maxima",
            min.len(),
            max.len()
        )));
    }
    for (k, (&lo, &hi)) in min.iter().zip(&max).enumerate() {
        if !lo.is_finite() || !hi.is_finite() {
            return Err(KernelError::invalid(format!(
                "range {k} is [{lo}, {hi}]: both ends must be finite"
            )));
        }
        if lo > hi {
            return Err(KernelError::invalid(format!(
                "range {k} is [{lo}, {hi}]: min must not exceed max"
            )));
        }
    }
    Ok((min, max))
}

pub(super) fn scalar_range(
    ctx: &KernelContext<'_>,
    min_i: usize,
    max_i: usize,
) -> KResult<(f32, f32)> {
    let (min, max) = range_values(ctx, min_i, max_i)?;
    if min.len() != 1 {
        return Err(KernelError::invalid(format!(
            "expected one range, got {} (per-channel ranges are not accepted here)",
            min.len()
        )));
    }
    Ok((min[0], max[0]))
}

/// Sets a quantized op's three outputs: the codes and the real values of the range's ends.
pub(super) fn set_quantized(ctx: &mut KernelContext<'_>, codes: Tensor, lo: f32, hi: f32) {
    ctx.set_output(codes);
    ctx.set_output(Tensor::scalar(lo));
    ctx.set_output(Tensor::scalar(hi));
}

/// (outer, channels, inner) of a shape split at `axis` (-1: the whole tensor is one channel).
fn channel_split(shape: &[usize], axis: i64) -> KResult<(usize, usize, usize)> {
    if axis == -1 {
        return Ok((1, 1, shape.iter().product()));
    }
    let a = usize::try_from(axis)
        .ok()
        .filter(|&a| a < shape.len())
        .ok_or_else(|| {
            KernelError::invalid(format!("axis {axis} is out of range for shape {shape:?}"))
        })?;
    Ok((
        shape[..a].iter().product(),
        shape[a],
        shape[a + 1..].iter().product(),
    ))
}

/// One channel's elements of a tensor split (outer, channels, inner) along the channel axis.
struct Channel {
    outer: usize,
    channels: usize,
    inner: usize,
    ch: usize,
}

impl Channel {
    fn map<A: Copy, B>(&self, x: &[A], out: &mut [B], f: impl Fn(A) -> B) {
        self.each(x, out, |xs, os| {
            for (q, &v) in os.iter_mut().zip(xs) {
                *q = f(v);
            }
        });
    }
    /// `f` on each contiguous run of the channel's elements and its place in `out`.
    fn each<A, B>(&self, x: &[A], out: &mut [B], mut f: impl FnMut(&[A], &mut [B])) {
        for o in 0..self.outer {
            let base = (o * self.channels + self.ch) * self.inner;
            let end = base + self.inner;
            f(&x[base..end], &mut out[base..end]);
        }
    }
}

// ---- QuantizeV2 / Dequantize ------------------------------------------------------------------

struct QuantizeAttrs {
    mode: QuantizeMode,
    round: RoundMode,
    narrow: bool,
    axis: i64,
    ensure_minimum_range: f32,
}

fn quantize_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let mode = QuantizeMode::parse(init.attrs.string("mode")?)?;
    let round = RoundMode::parse(init.attrs.string("round_mode")?)?;
    if round == RoundMode::HalfToEven && mode != QuantizeMode::Scaled {
        return Err("round_mode HALF_TO_EVEN is only supported with mode SCALED".into());
    }
    let a = QuantizeAttrs {
        mode,
        round,
        narrow: *init.attrs.boolean("narrow_range")?,
        axis: *init.attrs.int("axis")?,
        ensure_minimum_range: *init.attrs.float("ensure_minimum_range")? as f32,
    };
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        quantize(ctx, &a)
    }))
}

fn round_with(x: f32, mode: RoundMode) -> f32 {
    match mode {
        RoundMode::HalfAwayFromZero => x.round(),
        RoundMode::HalfToEven => x.round_ties_even(),
    }
}

fn quantize(ctx: &mut KernelContext<'_>, a: &QuantizeAttrs) -> KResult {
    let input = ctx.input(0);
    let shape = input.shape().to_vec();
    let x = input.as_slice::<f32>()?;
    let (mins, maxs) = range_values(ctx, 1, 2)?;
    let (outer, channels, inner) = channel_split(&shape, a.axis)?;
    if mins.len() != channels {
        return Err(KernelError::invalid(format!(
            "{} ranges for {channels} channel(s) along axis {}",
            mins.len(),
            a.axis
        )));
    }
    let mut out: Vec<u8> = alloc(x.len())?;
    out.resize(x.len(), 0);
    let (mut out_min, mut out_max) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
    for ch in 0..channels {
        // TF widens the range to hold 0 and to span at least ensure_minimum_range.
        let (lo_in, hi_in) = (mins[ch], maxs[ch]);
        let mut lo = lo_in.min(0.0);
        let eps = lo_in.abs().max(hi_in.abs()).max(1.0) * a.ensure_minimum_range;
        let mut hi = hi_in.max(lo + eps).max(0.0);
        let slices = Channel {
            outer,
            channels,
            inner,
            ch,
        };
        match a.mode {
            QuantizeMode::MinCombined => {
                let scale = (255.0f64 / (hi - lo) as f64) as f32;
                slices.map(x, &mut out, |v| {
                    ((v.clamp(lo, hi) - lo) * scale + 0.5) as u8
                });
            }
            QuantizeMode::MinFirst => {
                let e = codes::Encoder::new(lo, hi, QUINT8.0, QUINT8.1);
                slices.each(x, &mut out, |xs, os| e.encode_u8(xs, os));
            }
            QuantizeMode::Scaled => {
                let min_code = if a.narrow { 1.0f32 } else { 0.0 };
                let max_code = 255.0f32;
                let from_min = if min_code * lo > 0.0 {
                    min_code / lo
                } else {
                    f32::MAX
                };
                let from_max = if max_code * hi > 0.0 {
                    max_code / hi
                } else {
                    f32::MAX
                };
                let scale = from_min.min(from_max);
                lo = min_code / scale;
                hi = max_code / scale;
                let round = a.round;
                slices.map(x, &mut out, |v| {
                    round_with(v.clamp(lo, hi) * scale, round).clamp(min_code, max_code) as u8
                });
            }
        }
        out_min.push(lo);
        out_max.push(hi);
    }
    let range_shape: &[usize] = if a.axis == -1 { &[] } else { &[channels] };
    ctx.set_output(Tensor::new(&shape, out)?);
    ctx.set_output(Tensor::new(range_shape, out_min)?);
    ctx.set_output(Tensor::new(range_shape, out_max)?);
    Ok(())
}

fn dequantize_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let mode = QuantizeMode::parse(init.attrs.string("mode")?)?;
    let narrow = *init.attrs.boolean("narrow_range")?;
    let axis = *init.attrs.int("axis")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        dequantize(ctx, mode, narrow, axis)
    }))
}

fn dequantize(ctx: &mut KernelContext<'_>, mode: QuantizeMode, narrow: bool, axis: i64) -> KResult {
    let input = ctx.input(0);
    let shape = input.shape().to_vec();
    let (mins, maxs) = range_values(ctx, 1, 2)?;
    let (outer, channels, inner) = channel_split(&shape, axis)?;
    if mins.len() != channels {
        return Err(KernelError::invalid(format!(
            "{} ranges for {channels} channel(s) along axis {axis}",
            mins.len()
        )));
    }
    let split = (outer, channels, inner);
    let out = match input.dtype() {
        DType::U8 => decode_all(
            input.as_slice::<u8>()?,
            QUINT8,
            split,
            &mins,
            &maxs,
            mode,
            narrow,
        )?,
        _ => decode_all(
            input.as_slice::<i32>()?,
            QINT32,
            split,
            &mins,
            &maxs,
            mode,
            narrow,
        )?,
    };
    ctx.set_output(Tensor::new(&shape, out)?);
    Ok(())
}

/// Every code of `x` as a real value, per channel, in `mode` (TF's Dequantize).
fn decode_all<C: Copy + Into<f64>>(
    x: &[C],
    (bits, lowest): (u32, i64),
    (outer, channels, inner): (usize, usize, usize),
    mins: &[f32],
    maxs: &[f32],
    mode: QuantizeMode,
    narrow: bool,
) -> KResult<Vec<f32>> {
    let highest = (lowest as i128 + (1i128 << bits) - 1) as f64;
    let mut out: Vec<f32> = alloc(x.len())?;
    out.resize(x.len(), 0.0);
    for ch in 0..channels {
        let (lo, hi) = (mins[ch], maxs[ch]);
        let slices = Channel {
            outer,
            channels,
            inner,
            ch,
        };
        match mode {
            QuantizeMode::MinCombined => {
                // Signed types are shifted by half their range (TF's half_range_).
                let half = if lowest < 0 {
                    (highest - lowest as f64 + 1.0) / 2.0
                } else {
                    0.0
                };
                let scale = (hi - lo) / (highest - lowest as f64) as f32;
                slices.map(x, &mut out, |q| ((q.into() + half) as f32) * scale + lo);
            }
            QuantizeMode::MinFirst => {
                let d = codes::Decoder::new(lo, hi, bits, lowest);
                slices.map(x, &mut out, |q| d.decode(q.into()));
            }
            QuantizeMode::Scaled => {
                let min_code = lowest as f64 + if narrow { 1.0 } else { 0.0 };
                let scale = if lowest == 0 {
                    hi / highest as f32
                } else {
                    (lo / min_code as f32).max(hi / highest as f32)
                };
                slices.map(x, &mut out, |q| q.into() as f32 * scale);
            }
        }
    }
    Ok(out)
}

// ---- QuantizedMatMul / QuantizedBiasAdd -------------------------------------------------------

/// A uint8 matrix operand as (rows, cols) after an optional transpose: borrowed as it is, or
/// transposed into a new buffer.
pub(super) fn matrix<'t>(
    t: &'t Tensor,
    transpose: bool,
    what: &str,
) -> KResult<(Cow<'t, [u8]>, usize, usize)> {
    let s = t.shape();
    if s.len() != 2 {
        return Err(KernelError::invalid(format!(
            "{what} must be a matrix, got shape {s:?}"
        )));
    }
    let v = t.as_slice::<u8>()?;
    if !transpose {
        return Ok((Cow::Borrowed(v), s[0], s[1]));
    }
    let mut out = vec![0u8; v.len()];
    transpose_into(v, s[0], s[1], &mut out);
    Ok((Cow::Owned(out), s[1], s[0]))
}

/// `b` prepared for the GEMM, reused while the input shares the cached tensor's buffer (holding
/// the tensor keeps that buffer alive, so sharing it means the same bytes).
pub(super) fn packed_b(
    b: &Tensor,
    transpose: bool,
    cache: &Mutex<Option<(Tensor, Arc<PackedB>)>>,
) -> KResult<Arc<PackedB>> {
    let mut slot = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, packed)) = slot.as_ref() {
        if t.shares_buffer_with(b) && t.shape() == b.shape() {
            return Ok(packed.clone());
        }
    }
    let (raw, k, n) = matrix(b, transpose, "b")?;
    let packed = Arc::new(PackedB::new(&raw, k, n, best_path()));
    *slot = Some((b.clone(), packed.clone()));
    Ok(packed)
}

fn quantized_matmul(
    ctx: &mut KernelContext<'_>,
    ta: bool,
    tb: bool,
    cache: &Mutex<Option<(Tensor, Arc<PackedB>)>>,
) -> KResult {
    let (min_a, max_a) = scalar_range(ctx, 2, 3)?;
    let (min_b, max_b) = scalar_range(ctx, 4, 5)?;
    let (a, m, k) = matrix(ctx.input(0), ta, "a")?;
    let b = packed_b(ctx.input(1), tb, cache)?;
    let (kb, n) = b.dims();
    if k != kb {
        return Err(KernelError::invalid(format!(
            "matrix size-incompatible: a is {m}x{k}, b is {kb}x{n} (after transposes)"
        )));
    }
    let za = codes::float_to_code_unclamped(0.0, min_a, max_a, QUINT8.0, QUINT8.1) as i32;
    let zb = codes::float_to_code_unclamped(0.0, min_b, max_b, QUINT8.0, QUINT8.1) as i32;
    let mut c: Vec<i32> = alloc(m * n)?;
    c.resize(m * n, 0);
    qgemm_packed(&a, &b, &mut c, m, za, zb);
    let (min_c, max_c) = codes::product_range(min_a, max_a, min_b, max_b);
    set_quantized(ctx, Tensor::new(&[m, n], c)?, min_c, max_c);
    Ok(())
}

fn quantized_bias_add(ctx: &mut KernelContext<'_>) -> KResult {
    let (min_x, max_x) = scalar_range(ctx, 2, 3)?;
    let (min_b, max_b) = scalar_range(ctx, 4, 5)?;
    let x = ctx.input(0);
    let bias = ctx.input(1).as_slice::<u8>()?;
    let shape = x.shape().to_vec();
    let channels = *shape.last().unwrap_or(&0);
    if shape.is_empty() || bias.len() != channels || ctx.input(1).shape().len() != 1 {
        return Err(KernelError::invalid(format!(
            "bias of shape {:?} must be a vector as long as the input's last dim (input {shape:?})",
            ctx.input(1).shape()
        )));
    }
    let (lo, hi) = codes::sum_range(min_x, max_x, min_b, max_b);
    let to_total = |code: u8, min: f32, max: f32| {
        codes::requantize(code as i64, min, max, QUINT8, lo, hi, QINT32)
    };
    let zero = codes::float_to_code(0.0, lo, hi, QINT32.0, QINT32.1);
    // Each of the 256 codes maps to one int32 code: a table per operand.
    let x_table: Vec<i64> = (0..=255u8).map(|c| to_total(c, min_x, max_x)).collect();
    let bias_total: Vec<i64> = bias.iter().map(|&c| to_total(c, min_b, max_b)).collect();
    let xs = x.as_slice::<u8>()?;
    let mut out: Vec<i32> = alloc(xs.len())?;
    for row in xs.chunks_exact(channels.max(1)) {
        for (&c, &bt) in row.iter().zip(&bias_total) {
            out.push(
                (x_table[c as usize] + bt - zero).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            );
        }
    }
    set_quantized(ctx, Tensor::new(&shape, out)?, lo, hi);
    Ok(())
}

// ---- QuantizedRelu / Requantize / RequantizationRange -----------------------------------------

fn quantized_relu(ctx: &mut KernelContext<'_>) -> KResult {
    let (lo, hi) = scalar_range(ctx, 1, 2)?;
    let x = ctx.input(0);
    let shape = x.shape().to_vec();
    let out: Vec<u8> = match x.dtype() {
        DType::U8 => {
            let zero = codes::float_to_code(0.0, lo, hi, QUINT8.0, QUINT8.1) as u8;
            x.as_slice::<u8>()?.iter().map(|&c| c.max(zero)).collect()
        }
        _ => {
            // int32 codes: relu in their range, then 8 bits over the same range (TF's out_type).
            let zero = codes::float_to_code(0.0, lo, hi, QINT32.0, QINT32.1);
            x.as_slice::<i32>()?
                .iter()
                .map(|&c| {
                    codes::requantize((c as i64).max(zero), lo, hi, QINT32, lo, hi, QUINT8) as u8
                })
                .collect()
        }
    };
    set_quantized(ctx, Tensor::new(&shape, out)?, lo, hi);
    Ok(())
}

fn requantize(ctx: &mut KernelContext<'_>) -> KResult {
    let (lo, hi) = scalar_range(ctx, 1, 2)?;
    let (new_lo, new_hi) = scalar_range(ctx, 3, 4)?;
    if new_lo > 0.0 {
        return Err(KernelError::invalid(format!(
            "requested_output_min must be <= 0, got {new_lo}"
        )));
    }
    let x = ctx.input(0);
    let shape = x.shape().to_vec();
    let out: Vec<u8> = x
        .as_slice::<i32>()?
        .iter()
        .map(|&c| codes::requantize(c as i64, lo, hi, QINT32, new_lo, new_hi, QUINT8) as u8)
        .collect();
    set_quantized(ctx, Tensor::new(&shape, out)?, new_lo, new_hi);
    Ok(())
}

fn requantization_range(ctx: &mut KernelContext<'_>) -> KResult {
    let (lo, hi) = scalar_range(ctx, 1, 2)?;
    let x = ctx.input(0).as_slice::<i32>()?;
    let (used_lo, used_hi) = match (x.iter().min(), x.iter().max()) {
        (Some(&a), Some(&b)) => (
            codes::code_to_float(a as i64, lo, hi, QINT32.0, QINT32.1),
            codes::code_to_float(b as i64, lo, hi, QINT32.0, QINT32.1),
        ),
        _ => (0.0, 0.0),
    };
    // As TF: the minimum is kept at or below zero, so 0.0 stays representable.
    ctx.set_output(Tensor::scalar(used_lo.min(0.0)));
    ctx.set_output(Tensor::scalar(used_hi));
    Ok(())
}

// ---- FakeQuantWithMinMaxVars ------------------------------------------------------------------

fn fake_quant_levels(init: &KernelInit<'_>) -> Result<(f32, f32), String> {
    let bits = *init.attrs.int("num_bits")?;
    if !(2..=16).contains(&bits) {
        return Err(format!("num_bits must be in [2, 16], got {bits}"));
    }
    let narrow = *init.attrs.boolean("narrow_range")?;
    Ok((if narrow { 1.0 } else { 0.0 }, ((1i64 << bits) - 1) as f32))
}

/// TF's `Nudge`: the range moved so that 0.0 falls on a level; (nudged min, max, scale).
pub fn nudge(min: f32, max: f32, quant_min: f32, quant_max: f32) -> (f32, f32, f32) {
    let scale = (max - min) / (quant_max - quant_min);
    let zero_from_min = quant_min - min / scale;
    let zero = if zero_from_min < quant_min {
        quant_min
    } else if zero_from_min > quant_max {
        quant_max
    } else {
        zero_from_min.round()
    };
    (
        (quant_min - zero) * scale,
        (quant_max - zero) * scale,
        scale,
    )
}

fn fake_quant_range(ctx: &KernelContext<'_>, lo: f32, hi: f32) -> KResult<(f32, f32, f32)> {
    let (min, max) = scalar_range(ctx, 1, 2)?;
    Ok(nudge(min, max, lo, hi))
}

fn fake_quant(ctx: &mut KernelContext<'_>, lo: f32, hi: f32) -> KResult {
    let (nmin, nmax, scale) = fake_quant_range(ctx, lo, hi)?;
    let inv = (hi - lo) / (nmax - nmin);
    let x = ctx.input(0);
    let shape = x.shape().to_vec();
    let out: Vec<f32> = x
        .as_slice::<f32>()?
        .iter()
        .map(|&v| {
            if scale == 0.0 || !scale.is_finite() {
                return nmin;
            }
            ((v.clamp(nmin, nmax) - nmin) * inv + 0.5).floor() * scale + nmin
        })
        .collect();
    ctx.set_output(Tensor::new(&shape, out)?);
    Ok(())
}

fn fake_quant_grad(ctx: &mut KernelContext<'_>, lo: f32, hi: f32) -> KResult {
    let g = ctx.input(0).as_slice::<f32>()?;
    let x = ctx.input(1);
    let shape = x.shape().to_vec();
    let xs = x.as_slice::<f32>()?;
    if g.len() != xs.len() {
        return Err(KernelError::invalid(format!(
            "gradients of shape {:?} do not match inputs of shape {shape:?}",
            ctx.input(0).shape()
        )));
    }
    let (min, max) = scalar_range(ctx, 2, 3)?;
    let (nmin, nmax, _) = nudge(min, max, lo, hi);
    let (mut below, mut above) = (0.0f32, 0.0f32);
    let dx: Vec<f32> = g
        .iter()
        .zip(xs)
        .map(|(&g, &v)| {
            if v < nmin {
                below += g;
                0.0
            } else if v > nmax {
                above += g;
                0.0
            } else {
                g
            }
        })
        .collect();
    set_quantized(ctx, Tensor::new(&shape, dx)?, below, above);
    Ok(())
}

// ---- QuantizedConcat --------------------------------------------------------------------------

fn quantized_concat(ctx: &mut KernelContext<'_>) -> KResult {
    let n = (ctx.num_inputs() - 1) / 3;
    let shape0 = ctx.input(1).shape().to_vec();
    let rank = shape0.len() as i64;
    let axis = ctx.input(0).scalar_value::<i32>()? as i64;
    if rank == 0 || axis < -rank || axis >= rank {
        return Err(KernelError::invalid(format!(
            "concat_dim {axis} is out of range for values of shape {shape0:?}"
        )));
    }
    let axis = axis.rem_euclid(rank) as usize;
    let mut ranges = Vec::with_capacity(n);
    for k in 0..n {
        ranges.push(scalar_range(ctx, 1 + n + k, 1 + 2 * n + k)?);
    }
    let lo = ranges.iter().map(|r| r.0).fold(f32::INFINITY, f32::min);
    let hi = ranges.iter().map(|r| r.1).fold(f32::NEG_INFINITY, f32::max);
    let outer: usize = shape0[..axis].iter().product();
    let inner: usize = shape0[axis + 1..].iter().product();
    let mut along = 0usize;
    // Each input's 256 codes re-expressed over [lo, hi] (TF's RequantizeInNewRange).
    let mut tables = Vec::with_capacity(n);
    for (k, &(min, max)) in ranges.iter().enumerate() {
        let s = ctx.input(1 + k).shape();
        if s.len() != shape0.len()
            || s.iter()
                .zip(&shape0)
                .enumerate()
                .any(|(d, (a, b))| d != axis && a != b)
        {
            return Err(KernelError::invalid(format!(
                "values[{k}] has shape {s:?}, which differs from values[0] {shape0:?} outside dim {axis}"
            )));
        }
        along += s[axis];
        let table: Vec<u8> = (0..=255u8)
            .map(|c| codes::requantize(c as i64, min, max, QUINT8, lo, hi, QUINT8) as u8)
            .collect();
        tables.push(table);
    }
    let mut out: Vec<u8> = alloc(outer * along * inner)?;
    for o in 0..outer {
        for (k, table) in tables.iter().enumerate() {
            let x = ctx.input(1 + k);
            let chunk = x.shape()[axis] * inner;
            let src = &x.as_slice::<u8>()?[o * chunk..(o + 1) * chunk];
            out.extend(src.iter().map(|&c| table[c as usize]));
        }
    }
    let mut shape = shape0;
    shape[axis] = along;
    set_quantized(ctx, Tensor::new(&shape, out)?, lo, hi);
    Ok(())
}
