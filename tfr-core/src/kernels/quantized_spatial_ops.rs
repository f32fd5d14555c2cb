//! Kernels of the quantized spatial ops (NHWC): `QuantizedConv2D` as the int8 GEMM of
//! [`super::qgemm`] over 8-bit patches gathered a tile of rows at a time (padding with the
//! input's code of 0.0, so that padded taps contribute nothing; the filter packed once), `QuantizedMaxPool` and `QuantizedAvgPool` on codes (TF's average
//! sums codes in int32 and truncates).

use super::output_alloc::alloc;
use super::qgemm::{best_path, qgemm_with, InPlace, PackedB, RowSource};
use super::quantization_ops::codes::{self, QUINT8};
use super::quantization_ops::{scalar_range, set_quantized};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelRegistry};
use crate::tensor::Tensor;
use rayon::prelude::*;
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
/// filter's (fy, fx, c) order). The input is copied once into a frame of `pad` codes as large as
/// the windows reach, so every tap lies inside it and each window row is one contiguous copy.
pub(super) struct Patches {
    /// The padded input, [n, hp, wp, c].
    x: Vec<u8>,
    hp: usize,
    wp: usize,
    c: usize,
    window: [usize; 2],
    out: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
}

impl Patches {
    #[allow(clippy::too_many_arguments)]
    fn new(
        x: &[u8],
        [n, h, w, c]: [usize; 4],
        window: [usize; 2],
        out: [usize; 2],
        [ph, pw]: [usize; 2],
        strides: [usize; 2],
        dilations: [usize; 2],
        pad: u8,
    ) -> KResult<Patches> {
        let reach =
            |o: usize, s: usize, f: usize, d: usize| (o.max(1) - 1) * s + (f.max(1) - 1) * d + 1;
        let hp = reach(out[0], strides[0], window[0], dilations[0]);
        let wp = reach(out[1], strides[1], window[1], dilations[1]);
        let size = n * hp * wp * c;
        let mut padded: Vec<u8> = alloc(size)?;
        padded.resize(size, pad);
        // Columns of the frame that hold input columns: xp = x + pw.
        let cols = w.min(wp.saturating_sub(pw));
        for b in 0..n {
            for yp in ph..hp.min(ph + h) {
                let src = ((b * h + yp - ph) * w) * c;
                let dst = ((b * hp + yp) * wp + pw) * c;
                padded[dst..dst + cols * c].copy_from_slice(&x[src..src + cols * c]);
            }
        }
        Ok(Patches {
            x: padded,
            hp,
            wp,
            c,
            window,
            out,
            strides,
            dilations,
        })
    }

    /// Row `(b, oy, ox)` into `dst` (what lies past the row's k bytes may be written too).
    #[inline]
    fn fill_one(&self, (b, oy, ox): (usize, usize, usize), dst: &mut [u8]) {
        let c = self.c;
        let [fh, fw] = self.window;
        let [sh, sw] = self.strides;
        let [dh, dw] = self.dilations;
        let row_len = fw * c;
        let corner = (b * self.hp + oy * sh) * self.wp + ox * sw;
        for fy in 0..fh {
            let src = (corner + fy * dh * self.wp) * c;
            let at = fy * row_len;
            if dw != 1 {
                for fx in 0..fw {
                    let s = src + fx * dw * c;
                    dst[at + fx * c..at + (fx + 1) * c].copy_from_slice(&self.x[s..s + c]);
                }
            } else if row_len <= 8 && src + 8 <= self.x.len() && at + 8 <= dst.len() {
                // A few bytes (a first layer's single channel): one 8-byte move instead of a
                // call; the bytes past the row are rewritten by the next row or lie in the
                // padding past k, which meets zero rows of `b`.
                dst[at..at + 8].copy_from_slice(&self.x[src..src + 8]);
            } else {
                dst[at..at + row_len].copy_from_slice(&self.x[src..src + row_len]);
            }
        }
    }
}

impl Patches {
    /// [`RowSource::fill_rows`] for windows one pixel apart in width (each window row one run
    /// of `fw * c` bytes), each window row one move of `N` bytes (`fw * c` rounded up) that
    /// the compiler unrolls into a few vector moves: no call per window row, one bounds check
    /// per patch. What a move writes past a window row is rewritten by the next one, or lies
    /// past the row's k bytes (rewritten by the next row, or the kernel's padding, which meets
    /// zero rows of `b`); patches too near the end of the frame or `dst` take
    /// [`Patches::fill_one`].
    fn fill_rows_moves<const N: usize>(
        &self,
        i0: usize,
        rows: usize,
        dst: &mut [u8],
        stride: usize,
    ) {
        let [oh, ow] = self.out;
        let c = self.c;
        let [fh, fw] = self.window;
        let row_len = fw * c;
        debug_assert!(row_len <= N && self.dilations[1] == 1);
        let step = self.dilations[0] * self.wp * c;
        let (mut b, mut oy, mut ox) = (i0 / (oh * ow), i0 / ow % oh, i0 % ow);
        for r in 0..rows {
            let d = &mut dst[r * stride..];
            let first = ((b * self.hp + oy * self.strides[0]) * self.wp + ox * self.strides[1]) * c;
            if fh == 0
                || first + (fh - 1) * step + N > self.x.len()
                || (fh - 1) * row_len + N > d.len()
            {
                self.fill_one((b, oy, ox), d);
            } else {
                let (x, d) = (self.x.as_ptr(), d.as_mut_ptr());
                for fy in 0..fh {
                    // SAFETY: the moves read at most to `first + (fh - 1) * step + N <= x.len()`
                    // and write at most to `(fh - 1) * row_len + N <= d.len()` (checked above);
                    // the frame and `dst` are distinct buffers.
                    unsafe {
                        let (s, t) = (x.add(first + fy * step), d.add(fy * row_len));
                        // At most 128 bytes a copy, which the compiler writes as moves.
                        let head = N.min(128);
                        std::ptr::copy_nonoverlapping(s, t, head);
                        if N > head {
                            std::ptr::copy_nonoverlapping(s.add(head), t.add(head), N - head);
                        }
                    }
                }
            }
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    b += 1;
                }
            }
        }
    }
}

impl RowSource for Patches {
    fn fill(&self, i: usize, dst: &mut [u8]) {
        let [oh, ow] = self.out;
        self.fill_one((i / (oh * ow), i / ow % oh, i % ow), dst);
    }

    fn in_place(&self) -> Option<InPlace<'_>> {
        let [fh, fw] = self.window;
        let c = self.c;
        let seg_len = fw * c;
        // Each window row one run of bytes whose groups of 4 meet the packed filter's groups.
        (self.dilations[1] == 1 && fh > 0 && seg_len > 0 && seg_len.is_multiple_of(4)).then(|| {
            InPlace {
                data: &self.x,
                out: self.out,
                steps: [
                    self.hp * self.wp * c,
                    self.strides[0] * self.wp * c,
                    self.strides[1] * c,
                ],
                segments: fh,
                seg_len,
                seg_step: self.dilations[0] * self.wp * c,
            }
        })
    }

    fn fill_rows(&self, i0: usize, rows: usize, dst: &mut [u8], stride: usize) {
        if self.dilations[1] == 1 {
            let (i, d, st) = (i0, &mut *dst, stride);
            match self.window[1] * self.c {
                0 => {}
                1..=8 => return self.fill_rows_moves::<8>(i, rows, d, st),
                9..=16 => return self.fill_rows_moves::<16>(i, rows, d, st),
                17..=32 => return self.fill_rows_moves::<32>(i, rows, d, st),
                33..=64 => return self.fill_rows_moves::<64>(i, rows, d, st),
                65..=96 => return self.fill_rows_moves::<96>(i, rows, d, st),
                97..=128 => return self.fill_rows_moves::<128>(i, rows, d, st),
                129..=160 => return self.fill_rows_moves::<160>(i, rows, d, st),
                161..=192 => return self.fill_rows_moves::<192>(i, rows, d, st),
                _ => {}
            }
        }
        let [oh, ow] = self.out;
        let (mut b, mut oy, mut ox) = (i0 / (oh * ow), i0 / ow % oh, i0 % ow);
        for r in 0..rows {
            self.fill_one((b, oy, ox), &mut dst[r * stride..]);
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    b += 1;
                }
            }
        }
    }
}

/// The patches of a quantized convolution's input (inputs 0 and 1, the input's range at inputs
/// `range`), the GEMM's shape and the input's zero point.
pub(super) fn conv_patches(
    ctx: &KernelContext<'_>,
    p: &ConvParams,
    range: (usize, usize),
) -> KResult<(Patches, ConvShape, i32)> {
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
    let patches = Patches::new(
        ctx.input(0).as_slice::<u8>()?,
        [n, h, w, c],
        [fh, fw],
        [oh, ow],
        [ph, pw],
        p.strides,
        p.dilations,
        pad,
    )?;
    Ok((patches, ConvShape { n, oh, ow, oc }, zx as i32))
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
    // One image's output pixels.
    let image = |b: usize, out: &mut [u8]| {
        let mut acc = vec![0u32; c];
        for (px, o) in out.chunks_exact_mut(c.max(1)).enumerate() {
            let (oy, ox) = (px / ow, px % ow);
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
    };
    let per_image = oh * ow * c;
    if per_image > 0 {
        if out.len() * kh * kw >= 1 << 18 {
            out.par_chunks_mut(per_image)
                .enumerate()
                .for_each(|(b, o)| image(b, o));
        } else {
            for (b, o) in out.chunks_mut(per_image).enumerate() {
                image(b, o);
            }
        }
    }
    set_quantized(ctx, Tensor::new(&[n, oh, ow, c], out)?, lo, hi);
    Ok(())
}
