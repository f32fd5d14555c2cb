//! Kernels of the quantized spatial ops (NHWC): `QuantizedConv2D` as the int8 GEMM of
//! [`super::qgemm`] over 8-bit patches gathered a tile of rows at a time (padding with the
//! input's code of 0.0, so that padded taps contribute nothing; the filter packed once), `QuantizedMaxPool` and `QuantizedAvgPool` on codes (TF's average
//! sums codes in int32 and truncates).

use super::output_alloc::alloc;
use super::qgemm::{best_path, qgemm_with, PackedB, RowSource};
use super::quantization_ops::codes::{self, QUINT8};
use super::quantization_ops::{scalar_range, set_quantized};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelRegistry};
use crate::tensor::Tensor;
use std::sync::{Arc, Mutex};
use tfr_graph::ops::nn_ops::{ConvParams, PoolParams};
use tfr_graph::{DType, DTypeSet};

pub fn register(r: &mut KernelRegistry) {
    r.cpu("QuantizedConv2D", DTypeSet::of(&[DType::U8]), |init| {
        let p = ConvParams::from_attrs(init.attrs)?;
        let cache = FilterCache::default();
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_conv2d(ctx, &p, &cache)
        }))
    });
    r.cpu("QuantizedMaxPool", DTypeSet::of(&[DType::U8]), |init| {
        let p = PoolParams::from_attrs(init.attrs)?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_pool(ctx, &p, true)
        }))
    });
    r.cpu("QuantizedAvgPool", DTypeSet::of(&[DType::U8]), |init| {
        let p = PoolParams::from_attrs(init.attrs)?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_pool(ctx, &p, false)
        }))
    });
}

pub(super) fn dims4(t: &Tensor, what: &str) -> KResult<[usize; 4]> {
    t.shape()
        .try_into()
        .map_err(|_| KernelError::invalid(format!("{what} must be 4-D, got shape {:?}", t.shape())))
}

/// A convolution's geometry, checked against its input and filter.
pub(super) struct ConvShape {
    pub n: usize,
    pub oh: usize,
    pub ow: usize,
    pub oc: usize,
}

/// The patches of an NHWC input as the rows of the GEMM's `a` (row `(b, oy, ox)`, columns in the
/// filter's (fy, fx, c) order), taps outside the input taking `pad`.
pub(super) struct Patches<'a> {
    x: &'a [u8],
    dims: [usize; 4],
    window: [usize; 2],
    out: [usize; 2],
    pad_before: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pad: u8,
}

impl RowSource for Patches<'_> {
    fn fill(&self, i: usize, dst: &mut [u8]) {
        let [_, h, w, c] = self.dims;
        let [fh, fw] = self.window;
        let [oh, ow] = self.out;
        let (b, oy, ox) = (i / (oh * ow), i / ow % oh, i % ow);
        let [sh, sw] = self.strides;
        let [dh, dw] = self.dilations;
        let x0 = (ox * sw) as isize - self.pad_before[1] as isize;
        let row_len = fw * c;
        for fy in 0..fh {
            let y = (oy * sh + fy * dh) as isize - self.pad_before[0] as isize;
            if y < 0 || y >= h as isize {
                dst[fy * row_len..(fy + 1) * row_len].fill(self.pad);
                continue;
            }
            let line = (b * h + y as usize) * w;
            if dw == 1 && x0 >= 0 && x0 as usize + fw <= w {
                // The window's row is contiguous in NHWC.
                let src = (line + x0 as usize) * c;
                let at = fy * row_len;
                if row_len <= 8 && src + 8 <= self.x.len() && at + 8 <= dst.len() {
                    // A few bytes (a first layer's single channel): one 8-byte move instead of
                    // a call; the bytes past the row are rewritten by the next row or lie in
                    // the padding past k, which meets zero rows of `b`.
                    dst[at..at + 8].copy_from_slice(&self.x[src..src + 8]);
                } else {
                    dst[at..at + row_len].copy_from_slice(&self.x[src..src + row_len]);
                }
                continue;
            }
            let row = &mut dst[fy * row_len..(fy + 1) * row_len];
            for fx in 0..fw {
                let xx = x0 + (fx * dw) as isize;
                let tap = &mut row[fx * c..(fx + 1) * c];
                if xx < 0 || xx >= w as isize {
                    tap.fill(self.pad);
                } else {
                    let src = (line + xx as usize) * c;
                    tap.copy_from_slice(&self.x[src..src + c]);
                }
            }
        }
    }
}

/// The patches of a quantized convolution's input (inputs 0 and 1, the input's range at inputs
/// `range`), the GEMM's shape and the input's zero point.
pub(super) fn conv_patches<'a>(
    ctx: &'a KernelContext<'_>,
    p: &ConvParams,
    range: (usize, usize),
) -> KResult<(Patches<'a>, ConvShape, i32)> {
    let (min_x, max_x) = scalar_range(ctx, range.0, range.1)?;
    let [n, h, w, c] = dims4(ctx.input(0), "input")?;
    let [fh, fw, fc, oc] = dims4(ctx.input(1), "filter")?;
    if fc != c {
        return Err(KernelError::invalid(format!(
            "the filter takes {fc} input channels, the input has {c}"
        )));
    }
    let [(oh, ph), (ow, pw)] = p.geometry([h, w], [fh, fw]).map_err(KernelError::invalid)?;
    let zx = codes::float_to_code_unclamped(0.0, min_x, max_x, QUINT8.0, QUINT8.1);
    let pad = u8::try_from(zx).map_err(|_| {
        KernelError::invalid(format!(
            "the input range [{min_x}, {max_x}] does not hold 0.0, so padding has no code"
        ))
    })?;
    let patches = Patches {
        x: ctx.input(0).as_slice::<u8>()?,
        dims: [n, h, w, c],
        window: [fh, fw],
        out: [oh, ow],
        pad_before: [ph, pw],
        strides: p.strides,
        dilations: p.dilations,
        pad,
    };
    let shape = ConvShape { n, oh, ow, oc };
    Ok((patches, shape, zx as i32))
}

/// The filter (input 1) as the GEMM's packed `b` ([fh * fw * c, oc]), reused while the input
/// shares the cached tensor's buffer.
pub(super) fn packed_filter(ctx: &KernelContext<'_>, cache: &FilterCache) -> KResult<Arc<PackedB>> {
    let f = ctx.input(1);
    let mut slot = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, packed)) = slot.as_ref() {
        if t.shares_buffer_with(f) && t.shape() == f.shape() {
            return Ok(packed.clone());
        }
    }
    let oc = *f.shape().last().unwrap_or(&0);
    let k = f.num_elements() / oc.max(1);
    let packed = Arc::new(PackedB::new(f.as_slice::<u8>()?, k, oc, best_path()));
    *slot = Some((f.clone(), packed.clone()));
    Ok(packed)
}

/// The last filter and its packed form: a layer's weights are the same constant every step.
pub(super) type FilterCache = Mutex<Option<(Tensor, Arc<PackedB>)>>;

fn quantized_conv2d(ctx: &mut KernelContext<'_>, p: &ConvParams, cache: &FilterCache) -> KResult {
    let (min_x, max_x) = scalar_range(ctx, 2, 3)?;
    let (min_f, max_f) = scalar_range(ctx, 4, 5)?;
    let (patches, s, zx) = conv_patches(ctx, p, (2, 3))?;
    let zf = codes::float_to_code_unclamped(0.0, min_f, max_f, QUINT8.0, QUINT8.1);
    let b = packed_filter(ctx, cache)?;
    let rows = s.n * s.oh * s.ow;
    let mut out: Vec<i32> = alloc(rows * s.oc)?;
    out.resize(rows * s.oc, 0);
    qgemm_with(&patches, rows, &b, zx, zf as i32, &mut out, |_, _, v, o| {
        o.copy_from_slice(v)
    });
    let (lo, hi) = codes::product_range(min_x, max_x, min_f, max_f);
    set_quantized(ctx, Tensor::new(&[s.n, s.oh, s.ow, s.oc], out)?, lo, hi);
    Ok(())
}

fn quantized_pool(ctx: &mut KernelContext<'_>, p: &PoolParams, max: bool) -> KResult {
    let (lo, hi) = scalar_range(ctx, 1, 2)?;
    let [n, h, w, c] = dims4(ctx.input(0), "input")?;
    let [(oh, ph), (ow, pw)] = p.geometry([h, w]).map_err(KernelError::invalid)?;
    let x = ctx.input(0).as_slice::<u8>()?;
    let [kh, kw] = p.ksize;
    let [sh, sw] = p.strides;
    let mut out: Vec<u8> = alloc(n * oh * ow * c)?;
    out.resize(n * oh * ow * c, 0);
    let mut acc = vec![0u32; c];
    let mut px = 0;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = &mut out[px * c..(px + 1) * c];
                px += 1;
                acc.fill(0);
                let mut count = 0u32;
                for i in 0..kh {
                    let y = (oy * sh + i) as isize - ph as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    for j in 0..kw {
                        let xx = (ox * sw + j) as isize - pw as isize;
                        if xx < 0 || xx >= w as isize {
                            continue;
                        }
                        count += 1;
                        let src = ((b * h + y as usize) * w + xx as usize) * c;
                        let tap = &x[src..src + c];
                        if max {
                            // Codes are ordered as their values: the max on bytes.
                            for (m, &v) in o.iter_mut().zip(tap) {
                                *m = (*m).max(v);
                            }
                        } else {
                            for (a, &v) in acc.iter_mut().zip(tap) {
                                *a += v as u32;
                            }
                        }
                    }
                }
                if !max {
                    let count = count.max(1);
                    for (m, &a) in o.iter_mut().zip(&acc) {
                        *m = (a / count) as u8;
                    }
                }
            }
        }
    }
    set_quantized(ctx, Tensor::new(&[n, oh, ow, c], out)?, lo, hi);
    Ok(())
}
