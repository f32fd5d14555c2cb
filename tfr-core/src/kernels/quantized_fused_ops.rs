//! Kernels of `tfr_graph::ops::quantized_fused_ops`: the int8 GEMM of [`super::qgemm`] with an
//! output stage that adds the f32 bias, applies ReLU and writes 8-bit codes over the frozen
//! output range (or f32), on each piece of rows while it is in cache. [`OutputStage`] is the
//! arithmetic, shared with the tests' reference.

use super::output_alloc::alloc;
use super::qgemm::{qgemm_codes, qgemm_with, PackedB, Requantize, RowSource, Rows};
use super::quantization_ops::codes::{self, QUINT8};
use super::quantization_ops::{matrix, packed_b, scalar_range, set_quantized};
use super::quantized_spatial_ops::{conv_patches, packed_filter, FilterCache};
use super::simd::simd_fn;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelRegistry};
use crate::tensor::Tensor;
use tfr_graph::ops::nn_ops::ConvParams;
use tfr_graph::ops::quantized_fused_ops::{FUSED_CONVS, FUSED_MATMULS};
use tfr_graph::{DType, DTypeSet};

pub fn register(r: &mut KernelRegistry) {
    for (op, ..) in FUSED_MATMULS {
        r.cpu(op, DTypeSet::of(&[DType::U8]), |init| {
            let (_, relu, requantize) = *FUSED_MATMULS
                .iter()
                .find(|f| f.0 == init.op)
                .ok_or("not a fused quantized matmul")?;
            let ta = *init.attrs.boolean("transpose_a")?;
            let tb = *init.attrs.boolean("transpose_b")?;
            let cache = FilterCache::default();
            Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
                fused_matmul(ctx, (ta, tb), relu, requantize, &cache)
            }))
        });
    }
    for (op, _) in FUSED_CONVS {
        r.cpu(op, DTypeSet::of(&[DType::U8]), |init| {
            let (_, relu) = *FUSED_CONVS
                .iter()
                .find(|f| f.0 == init.op)
                .ok_or("not a fused quantized convolution")?;
            let p = ConvParams::from_attrs(init.attrs)?;
            let cache = FilterCache::default();
            Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
                fused_conv2d(ctx, &p, relu, &cache)
            }))
        });
    }
}

/// How a fused product turns an int32 sum `acc` of column `j` into its output:
/// `v = acc * scale + bias[j]`, `max(v, 0)` with ReLU, then as f32 or as the 8-bit code
/// `clamp(round_ties_even(v * per_unit) + offset, 0, 255)` (MIN_FIRST over the frozen range).
pub struct OutputStage {
    /// The real value of one unit of the sum: the product of the inputs' code steps.
    pub scale: f32,
    pub bias: Vec<f32>,
    pub relu: bool,
    /// Codes per real unit and the code of 0.0 (`-round_ties_even(min * per_unit)`).
    pub per_unit: f32,
    pub offset: f32,
}

impl OutputStage {
    /// The stage of a product of inputs with ranges `a` and `b` into the output range `out`
    /// (None: f32 output). The ranges are checked (finite, ordered; `out` not empty).
    pub fn new(
        a: (f32, f32),
        b: (f32, f32),
        bias: Vec<f32>,
        relu: bool,
        out: Option<(f32, f32)>,
    ) -> KResult<OutputStage> {
        let step = |(lo, hi): (f32, f32)| codes::float_per_code(lo, hi, QUINT8.0);
        let (per_unit, offset) = match out {
            Some((lo, hi)) => {
                if lo >= hi {
                    return Err(KernelError::invalid(format!(
                        "the frozen output range [{lo}, {hi}] is empty: min must be below max"
                    )));
                }
                let per_unit = (255.0f64 / (hi as f64 - lo as f64)) as f32;
                (per_unit, -(lo * per_unit).round_ties_even())
            }
            None => (0.0, 0.0),
        };
        Ok(OutputStage {
            scale: step(a) * step(b),
            bias,
            relu,
            per_unit,
            offset,
        })
    }

    /// The real value of a sum in column `j` (the reference of the vectorized loops).
    pub fn real(&self, acc: i32, j: usize) -> f32 {
        let v = acc as f32 * self.scale + self.bias[j];
        if self.relu {
            v.max(0.0)
        } else {
            v
        }
    }

    /// The 8-bit code of a real value.
    pub fn code(&self, v: f32) -> u8 {
        ((v * self.per_unit).round_ties_even() + self.offset).clamp(0.0, 255.0) as u8
    }

    /// Codes of the sums `acc` of columns `j0..` into `out`.
    pub fn codes(&self, j0: usize, acc: &[i32], out: &mut [u8]) {
        let bias = &self.bias[j0..j0 + acc.len()];
        stage_codes(
            acc,
            bias,
            self.scale,
            self.relu,
            self.per_unit,
            self.offset,
            out,
        );
    }

    /// The codes (m x n) of the product of `src`'s `m` rows and `b`: in the GEMM's tiles where
    /// it can, else on its pieces of int32 rows.
    #[allow(clippy::too_many_arguments)]
    fn product_codes<S: RowSource>(
        &self,
        src: &S,
        m: usize,
        b: &PackedB,
        za: i32,
        zb: i32,
    ) -> KResult<Vec<u8>> {
        let rq = Requantize {
            scale: self.scale,
            bias: &self.bias,
            relu: self.relu,
            per_unit: self.per_unit,
            offset: self.offset,
        };
        let n = b.dims().1;
        let mut out: Vec<u8> = alloc(m * n)?;
        if !qgemm_codes(src, m, b, za, zb, &rq, &mut out) {
            out.resize(m * n, 0);
            qgemm_with(src, m, b, za, zb, &mut out, |_, j0, v, o| {
                self.codes(j0, v, o)
            });
        }
        Ok(out)
    }

    /// Real values of the sums `acc` of columns `j0..` into `out`.
    pub fn reals(&self, j0: usize, acc: &[i32], out: &mut [f32]) {
        let bias = &self.bias[j0..j0 + acc.len()];
        stage_reals(acc, bias, self.scale, self.relu, out);
    }
}

simd_fn! {
    /// [`OutputStage::code`] of [`OutputStage::real`] over a piece of a row.
    fn stage_codes<F>(
        acc: &[i32],
        bias: &[f32],
        scale: f32,
        relu: bool,
        per_unit: f32,
        offset: f32,
        out: &mut [u8],
    ) {
        for ((o, &a), &b) in out.iter_mut().zip(acc).zip(bias) {
            let mut v = a as f32 * scale + b;
            if relu {
                v = v.max(0.0);
            }
            // `max` maps NaN to 0, as `OutputStage::code`'s cast does.
            #[allow(clippy::manual_clamp)] // clamp would keep NaN
            let c = ((v * per_unit).round_ties_even() + offset).max(0.0).min(255.0);
            // SAFETY: `c` is finite and within 0..=255.
            *o = unsafe { c.to_int_unchecked::<i32>() } as u8;
        }
    }
}

simd_fn! {
    /// [`OutputStage::real`] over a piece of a row.
    fn stage_reals<F>(acc: &[i32], bias: &[f32], scale: f32, relu: bool, out: &mut [f32]) {
        for ((o, &a), &b) in out.iter_mut().zip(acc).zip(bias) {
            let v = a as f32 * scale + b;
            *o = if relu { v.max(0.0) } else { v };
        }
    }
}

/// The f32 bias (input 2) of a product with `n` output columns.
fn bias_input(ctx: &KernelContext<'_>, n: usize) -> KResult<Vec<f32>> {
    let t = ctx.input(2);
    if t.shape() != [n] {
        return Err(KernelError::invalid(format!(
            "bias must be a vector of the {n} output columns, got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.as_slice::<f32>()?.to_vec())
}

fn zero_point(range: (f32, f32)) -> i32 {
    codes::float_to_code_unclamped(0.0, range.0, range.1, QUINT8.0, QUINT8.1) as i32
}

fn fused_matmul(
    ctx: &mut KernelContext<'_>,
    (ta, tb): (bool, bool),
    relu: bool,
    requantize: bool,
    cache: &FilterCache,
) -> KResult {
    let ra = scalar_range(ctx, 3, 4)?;
    let rb = scalar_range(ctx, 5, 6)?;
    let out_range = if requantize {
        Some(scalar_range(ctx, 7, 8)?)
    } else {
        None
    };
    let (a, m, k) = matrix(ctx.input(0), ta, "a")?;
    let b = packed_b(ctx.input(1), tb, cache)?;
    let (kb, n) = b.dims();
    if k != kb {
        return Err(KernelError::invalid(format!(
            "matrix size-incompatible: a is {m}x{k}, b is {kb}x{n} (after transposes)"
        )));
    }
    let stage = OutputStage::new(ra, rb, bias_input(ctx, n)?, relu, out_range)?;
    let (za, zb) = (zero_point(ra), zero_point(rb));
    let rows = Rows { a: &a, k };
    if let Some((lo, hi)) = out_range {
        let out = stage.product_codes(&rows, m, &b, za, zb)?;
        set_quantized(ctx, Tensor::new(&[m, n], out)?, lo, hi);
    } else {
        let mut out: Vec<f32> = alloc(m * n)?;
        out.resize(m * n, 0.0);
        qgemm_with(&rows, m, &b, za, zb, &mut out, |_, j0, v, o| {
            stage.reals(j0, v, o)
        });
        ctx.set_output(Tensor::new(&[m, n], out)?);
    }
    Ok(())
}

fn fused_conv2d(
    ctx: &mut KernelContext<'_>,
    p: &ConvParams,
    relu: bool,
    cache: &FilterCache,
) -> KResult {
    let rx = scalar_range(ctx, 3, 4)?;
    let rf = scalar_range(ctx, 5, 6)?;
    let (lo, hi) = scalar_range(ctx, 7, 8)?;
    let (patches, s, zx) = conv_patches(ctx, p, (3, 4))?;
    let b = packed_filter(ctx, cache)?;
    let stage = OutputStage::new(rx, rf, bias_input(ctx, s.oc)?, relu, Some((lo, hi)))?;
    let rows = s.n * s.oh * s.ow;
    let out = stage.product_codes(&patches, rows, &b, zx, zero_point(rf))?;
    set_quantized(ctx, Tensor::new(&[s.n, s.oh, s.ow, s.oc], out)?, lo, hi);
    Ok(())
}
