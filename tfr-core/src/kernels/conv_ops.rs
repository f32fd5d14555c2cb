//! Image kernels: Conv2D and its two backprops, max and average pooling with their gradients,
//! fused batch normalization and local response normalization.
//!
//! Everything computes in NHWC; NCHW tensors are transposed in and out (TensorFlow's CPU
//! kernels support only NHWC for most of these). The window arithmetic (output sizes, SAME
//! padding) is `tfr_graph::ops::nn_ops::window_geometry`, shared with the shape functions.
//!
//! Convolution is im2col + gemm. The output pixels ("rows", `batch * out_h * out_w` of them)
//! are cut into chunks whose patch matrix (`rows x kh*kw*in`) stays in cache; each chunk is
//! copied and multiplied by the filter on one thread, chunks run in parallel on rayon:
//! - forward: `out[rows, o] = patches[rows, k] @ filter[k, o]`;
//! - filter backprop: `dfilter[k, o] = sum over chunks of patches^T @ dy[rows, o]`, in four
//!   parts per thread, each summing its own contiguous run of chunks, the partial sums added
//!   in a fixed order (so a result depends only on the thread count, never on scheduling);
//! - input backprop: per image (images write disjoint parts of dx),
//!   `dpatches[rows, k] = dy @ filter^T`, scattered back (col2im).
//!
//! A pointwise convolution (1x1 filter, stride 1) needs no patches: the input is the patch
//! matrix. Filters with few products per output (`DIRECT_K`, e.g. a first layer on one
//! channel) run as direct loops over a zero-padded copy of the input, accumulating register
//! tiles. Pooling, batch norm and LRN run over images or rows in parallel. Parallel loops make
//! small tasks (`task_pieces`), so a thread preempted by the OS delays a little of the work,
//! not half of it.

use super::cwise_ops::unsupported;
use super::matmul_op::{gemm_product, MatMulElem, MatRef};
use super::simd::{madd, simd_fn};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::{FloatElem, Numeric};
use crate::tensor::{Dims, Tensor};
use rayon::prelude::*;
use std::ops::Range;
use tfr_graph::ops::nn_ops::{
    BatchNormParams, ConvParams, DataFormat, FusedActivation, LrnParams, PoolParams,
};
use tfr_graph::{DType, DTypeSet};

/// Products with fewer multiply-adds than this run on the calling thread.
const PAR_WORK: usize = 1 << 18;
/// Bytes of patch matrix per chunk of output rows (about half of a core's L2).
const PATCH_BYTES: usize = 384 << 10;
/// Convolutions with fewer products per output (`kh * kw * in_channels`) than this run as
/// direct loops: the patch matrix would be too thin for gemm to pay off.
const DIRECT_K: usize = 64;
/// Output rows per task of the direct convolution (a multiple of its tiles' 12 and 24 pixels).
const DIRECT_ROWS: usize = 96;
/// Output rows per call of the direct filter backprop.
const DIRECT_FILTER_ROWS: usize = 384;

// ---- gemm ----------------------------------------------------------------------------------

/// Float types with a gemm: f32 and f64 (crate-private).
pub(crate) trait ConvElem: FloatElem + MatMulElem + Send + Sync + 'static {}
impl ConvElem for f32 {}
impl ConvElem for f64 {}

/// A strided matrix operand (the matrix-product kernels' type).
type Mat<'a, T> = MatRef<'a, T>;

/// `dst = a @ b` (or `dst += a @ b` when `accumulate`) for an `m x k` matrix `a` and a `k x n`
/// matrix `b` into the row-major `m x n` block `dst`, through the matrix-product kernels' gemm.
#[allow(clippy::too_many_arguments)]
fn gemm_into<T: ConvElem>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    dst: &mut [T],
    accumulate: bool,
    parallel: bool,
) -> KResult {
    gemm_product(m, n, k, a, b, dst, accumulate, T::one(), T::one(), parallel)
}

// ---- shapes and layouts ----------------------------------------------------------------------

/// Elements per task, at most, of the parallel loops over outputs (more when one piece is
/// larger): enough work per task to hide rayon's overhead, and tasks small enough that a
/// preempted thread delays little.
const TASK_ELEMS: usize = 1 << 15;

/// How many `len`-long pieces one task of a parallel loop takes, at most.
fn task_pieces(len: usize) -> usize {
    (TASK_ELEMS / len.max(1)).max(1)
}

/// A vector of `n` zeros filled piece by piece: each `chunk`-long piece (the last may be
/// shorter) is handed to `f(scratch, index, piece)`, in parallel when asked (in tasks of a few
/// pieces, each with its own `init()` scratch).
fn build_zeroed<T: ConvElem, S>(
    n: usize,
    chunk: usize,
    parallel: bool,
    init: impl Fn() -> S + Send + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) -> KResult + Send + Sync,
) -> KResult<Vec<T>> {
    // `vec!` of zeros is `calloc` for f32 and f64: fresh pages from the OS come zeroed, with
    // no pass over them here (a page is touched first by the task that writes it).
    let mut v = vec![T::zero(); n];
    let chunk = chunk.max(1);
    if parallel {
        // Small tasks (`task_pieces`): a thread that the OS preempts holds up one task, not
        // half of the output.
        v.par_chunks_mut(chunk)
            .enumerate()
            .with_max_len(task_pieces(chunk))
            .try_for_each_init(&init, |s, (i, piece)| f(s, i, piece))?;
    } else {
        let mut s = init();
        v.chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(i, piece)| f(&mut s, i, piece))?;
    }
    Ok(v)
}

/// The product of `dims`, or an error when it overflows.
fn checked_len(dims: &[usize]) -> KResult<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::invalid(format!("shape {dims:?} is too large")))
}

/// The dims of a 4-D tensor, or an error naming it.
fn dims4(t: &Tensor, what: &str, expect: &str) -> KResult<[usize; 4]> {
    match *t.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref s => Err(KernelError::invalid(format!(
            "{what} must be 4-D {expect}, got shape {s:?}"
        ))),
    }
}

/// A 4-entry sizes input (`input_sizes`, `filter_sizes`, `orig_input_shape`).
fn sizes4(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<[usize; 4]> {
    let v = ctx.input_ints(i)?;
    match *v.as_slice() {
        [a, b, c, d] if v.iter().all(|&x| x >= 0) => {
            Ok([a as usize, b as usize, c as usize, d as usize])
        }
        _ => Err(KernelError::invalid(format!(
            "{what} must be 4 non-negative sizes, got {v:?}"
        ))),
    }
}

/// Transposes NCHW data to NHWC; `dims` are (n, c, h, w).
fn nchw_to_nhwc<T: Copy + Send + Sync>(x: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let hw = h * w;
    let mut out = Vec::with_capacity(x.len());
    for img in 0..n {
        let src = &x[img * c * hw..(img + 1) * c * hw];
        for p in 0..hw {
            out.extend((0..c).map(|ch| src[ch * hw + p]));
        }
    }
    out
}

/// Transposes NHWC data to NCHW; `dims` are (n, h, w, c).
fn nhwc_to_nchw<T: Copy + Send + Sync>(x: &[T], [n, h, w, c]: [usize; 4]) -> Vec<T> {
    let hw = h * w;
    let mut out = Vec::with_capacity(x.len());
    for img in 0..n {
        let src = &x[img * c * hw..(img + 1) * c * hw];
        for ch in 0..c {
            out.extend((0..hw).map(|p| src[p * c + ch]));
        }
    }
    out
}

/// An input image tensor as NHWC data and its (n, h, w, c) dims.
fn image_in<'a, T: ConvElem>(
    t: &'a Tensor,
    what: &str,
    format: DataFormat,
) -> KResult<(std::borrow::Cow<'a, [T]>, [usize; 4])> {
    let expect = match format {
        DataFormat::Nhwc => "[batch, height, width, channels] (NHWC)",
        DataFormat::Nchw => "[batch, channels, height, width] (NCHW)",
    };
    let d = dims4(t, what, expect)?;
    let data = t.as_slice::<T>()?;
    Ok(match format {
        DataFormat::Nhwc => (data.into(), d),
        DataFormat::Nchw => (nchw_to_nhwc(data, d).into(), format.nhwc(&d)),
    })
}

/// An NHWC result as a tensor in `format`.
fn image_out<T: ConvElem>(data: Vec<T>, nhwc: [usize; 4], format: DataFormat) -> Tensor {
    let (data, dims) = match format {
        DataFormat::Nhwc => (data, nhwc),
        DataFormat::Nchw => (nhwc_to_nchw(&data, nhwc), format.from_nhwc(nhwc)),
    };
    Tensor::from_parts(Dims::from_slice(&dims), T::into_buffer(data))
}

/// Converts a sizes vector given in `format` order to (n, h, w, c).
fn sizes_nhwc(sizes: [usize; 4], format: DataFormat) -> [usize; 4] {
    format.nhwc(&sizes)
}

/// The clipped range `[start, start + window)` of input indices, `start` possibly negative.
#[inline]
fn clip(start: isize, window: usize, limit: usize) -> Range<usize> {
    let lo = start.max(0) as usize;
    let hi = (start + window as isize).clamp(0, limit as isize) as usize;
    lo..hi.max(lo)
}

// ---- convolution -----------------------------------------------------------------------------

/// The sizes of one convolution, in NHWC.
#[derive(Clone, Copy, Debug)]
struct ConvGeom {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    fh: usize,
    fw: usize,
    o: usize,
    oh: usize,
    ow: usize,
    pad_t: usize,
    pad_l: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
}

impl ConvGeom {
    /// Checks an input (n, h, w, c) against a filter (fh, fw, in, out).
    fn new(x: [usize; 4], f: [usize; 4], p: &ConvParams) -> KResult<ConvGeom> {
        let [n, h, w, c] = x;
        let [fh, fw, fc, o] = f;
        if fc != c {
            return Err(KernelError::invalid(format!(
                "the input has {c} channels but the filter expects {fc} (filter shape {f:?}, \
                 [height, width, in_channels, out_channels])"
            )));
        }
        if fh == 0 || fw == 0 {
            return Err(KernelError::invalid(format!(
                "the filter must be at least 1x1, got shape {f:?}"
            )));
        }
        let [(oh, pad_t), (ow, pad_l)] = p
            .geometry([h, w], [fh, fw])
            .map_err(|e| KernelError::invalid(format!("input {h}x{w}, filter {fh}x{fw}: {e}")))?;
        let g = ConvGeom {
            n,
            h,
            w,
            c,
            fh,
            fw,
            o,
            oh,
            ow,
            pad_t,
            pad_l,
            sh: p.strides[0],
            sw: p.strides[1],
            dh: p.dilations[0],
            dw: p.dilations[1],
        };
        checked_len(&[n, h, w, c])?;
        checked_len(&[n, oh, ow, o])?;
        checked_len(&[n, oh, ow, fh, fw, c])?;
        if g.direct() {
            // The zero-padded copy of the input the direct loops read.
            let span = |out: usize, s: usize, f: usize, d: usize| {
                ((out.max(1) - 1).checked_mul(s)?).checked_add((f - 1).checked_mul(d)? + 1)
            };
            let hp = span(oh, g.sh, fh, g.dh);
            let wp = span(ow, g.sw, fw, g.dw);
            match (hp, wp) {
                (Some(hp), Some(wp)) => {
                    checked_len(&[n, hp.max(h + pad_t), wp.max(w + pad_l), c])?;
                }
                _ => {
                    return Err(KernelError::invalid(format!(
                        "filter {fh}x{fw} with dilations {:?} is too large",
                        p.dilations
                    )))
                }
            }
        }
        Ok(g)
    }
    fn k(&self) -> usize {
        self.fh * self.fw * self.c
    }
    fn rows(&self) -> usize {
        self.n * self.oh * self.ow
    }
    fn out_dims(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.o]
    }
    /// 1x1 filter, stride 1 (hence no padding): the input is its own patch matrix.
    fn direct(&self) -> bool {
        self.k() < DIRECT_K
    }
    fn pointwise(&self) -> bool {
        self.fh == 1 && self.fw == 1 && self.sh == 1 && self.sw == 1
    }
    /// Rows per chunk: a patch matrix of about `PATCH_BYTES`, at least 8 rows.
    fn chunk<T>(&self) -> usize {
        (PATCH_BYTES / (self.k() * std::mem::size_of::<T>()).max(1)).max(8)
    }
    fn work(&self) -> usize {
        self.rows().saturating_mul(self.k()).saturating_mul(self.o)
    }

    /// Copies the patches of output rows `rows` (global row = (n * oh + y) * ow + x) into
    /// `col`, one `k`-long row each, zeros where the window hangs over the padding.
    fn im2col<T: Copy + num_traits::Zero>(&self, x: &[T], rows: Range<usize>, col: &mut [T]) {
        let (k, c) = (self.k(), self.c);
        let span = self.fw * c;
        let per_image = self.oh * self.ow;
        for (r, dst) in rows.zip(col.chunks_exact_mut(k)) {
            let (img, rem) = (r / per_image, r % per_image);
            let (oy, ox) = (rem / self.ow, rem % self.ow);
            let y0 = (oy * self.sh) as isize - self.pad_t as isize;
            let x0 = (ox * self.sw) as isize - self.pad_l as isize;
            for (kh, block) in dst.chunks_exact_mut(span).enumerate() {
                let iy = y0 + (kh * self.dh) as isize;
                if iy < 0 || iy >= self.h as isize {
                    block.fill(T::zero());
                    continue;
                }
                let base = (img * self.h + iy as usize) * self.w;
                if self.dw == 1 {
                    let xs = clip(x0, self.fw, self.w);
                    let before = (xs.start as isize - x0) as usize * c;
                    let len = xs.len() * c;
                    block[..before].fill(T::zero());
                    block[before..before + len]
                        .copy_from_slice(&x[(base + xs.start) * c..(base + xs.end) * c]);
                    block[before + len..].fill(T::zero());
                } else {
                    for (kw, cell) in block.chunks_exact_mut(c).enumerate() {
                        let ix = x0 + (kw * self.dw) as isize;
                        if ix < 0 || ix >= self.w as isize {
                            cell.fill(T::zero());
                        } else {
                            let at = (base + ix as usize) * c;
                            cell.copy_from_slice(&x[at..at + c]);
                        }
                    }
                }
            }
        }
    }

    /// Adds the patch gradients of the rows `rows` of one image (rows counted within the
    /// image) back onto that image's input gradient `dx` (h * w * c).
    fn col2im<T: Copy + std::ops::Add<Output = T>>(
        &self,
        col: &[T],
        rows: Range<usize>,
        dx: &mut [T],
    ) {
        let (k, c) = (self.k(), self.c);
        for (r, src) in rows.zip(col.chunks_exact(k)) {
            let (oy, ox) = (r / self.ow, r % self.ow);
            let y0 = (oy * self.sh) as isize - self.pad_t as isize;
            let x0 = (ox * self.sw) as isize - self.pad_l as isize;
            for (kh, block) in src.chunks_exact(self.fw * c).enumerate() {
                let iy = y0 + (kh * self.dh) as isize;
                if iy < 0 || iy >= self.h as isize {
                    continue;
                }
                let base = iy as usize * self.w;
                for (kw, cell) in block.chunks_exact(c).enumerate() {
                    let ix = x0 + (kw * self.dw) as isize;
                    if ix < 0 || ix >= self.w as isize {
                        continue;
                    }
                    let at = (base + ix as usize) * c;
                    dx[at..at + c]
                        .iter_mut()
                        .zip(cell)
                        .for_each(|(d, &v)| *d = *d + v);
                }
            }
        }
    }
}

/// Lanes of one accumulator vector of the direct convolution (a 512-bit register of f32).
const LANES: usize = 16;

/// The input of a direct convolution, zero-padded so every tap of every output pixel lies
/// inside, with the offset of each filter row (tap and input channel) from a pixel's base.
struct Padded<T> {
    data: Vec<T>,
    hp: usize,
    wp: usize,
    offsets: Vec<usize>,
    /// The largest of `offsets` (0 when there are none).
    max_off: usize,
}

impl ConvGeom {
    fn padded<T: ConvElem>(&self, x: &[T]) -> Padded<T> {
        let c = self.c;
        let hp =
            ((self.oh.max(1) - 1) * self.sh + (self.fh - 1) * self.dh + 1).max(self.h + self.pad_t);
        let wp =
            ((self.ow.max(1) - 1) * self.sw + (self.fw - 1) * self.dw + 1).max(self.w + self.pad_l);
        let mut data = vec![T::zero(); self.n * hp * wp * c];
        for img in 0..self.n {
            for y in 0..self.h {
                let src =
                    &x[((img * self.h + y) * self.w) * c..((img * self.h + y + 1) * self.w) * c];
                let at = ((img * hp + y + self.pad_t) * wp + self.pad_l) * c;
                data[at..at + self.w * c].copy_from_slice(src);
            }
        }
        let mut offsets = Vec::with_capacity(self.k());
        for kh in 0..self.fh {
            for kw in 0..self.fw {
                for ci in 0..c {
                    offsets.push((kh * self.dh * wp + kw * self.dw) * c + ci);
                }
            }
        }
        let max_off = offsets.iter().copied().max().unwrap_or(0);
        Padded {
            data,
            hp,
            wp,
            offsets,
            max_off,
        }
    }
    /// The offset in the padded input of output row `r`'s window corner.
    #[inline(always)]
    fn base(&self, p: &Padded<impl Copy>, r: usize) -> usize {
        let per_image = self.oh * self.ow;
        let (img, rem) = (r / per_image, r % per_image);
        let (oy, ox) = (rem / self.ow, rem % self.ow);
        ((img * p.hp + oy * self.sh) * p.wp + ox * self.sw) * self.c
    }
    /// The window corners of the output rows `r0 .. r0 + rows`, or None when some tap of
    /// one of them would fall outside the padded input (never, for a `Padded` of this
    /// geometry: the direct loops read it without bounds checks after this test).
    fn bases<T: Copy>(&self, p: &Padded<T>, r0: usize, rows: usize) -> Option<Vec<usize>> {
        let bases: Vec<usize> = (r0..r0 + rows).map(|r| self.base(p, r)).collect();
        let fits = |&b: &usize| b.checked_add(p.max_off).is_some_and(|e| e < p.data.len());
        bases.iter().all(fits).then_some(bases)
    }
}

/// One tile of the direct forward convolution: `P` output pixels (window corners `bases`) by
/// `CB` blocks of `LANES` output channels from `c0`, accumulated in registers over every
/// filter row (`offsets`, the rows of `f`, each `o` long). Requires `c0 + CB * LANES <= o`.
///
/// # Safety
/// `bases[p] + offsets[t]` must be an index of `xd` for every `p` and `t`.
#[inline(always)]
unsafe fn forward_tile<T: ConvElem, const FMA: bool, const P: usize, const CB: usize>(
    xd: &[T],
    bases: &[usize; P],
    offsets: &[usize],
    f: &[T],
    o: usize,
    c0: usize,
) -> [[[T; LANES]; CB]; P] {
    let mut acc = [[[T::zero(); LANES]; CB]; P];
    for (t, &off) in offsets.iter().enumerate() {
        let row = &f[t * o + c0..t * o + c0 + CB * LANES];
        let mut w = [[T::zero(); LANES]; CB];
        for (b, wb) in w.iter_mut().enumerate() {
            wb.copy_from_slice(&row[b * LANES..(b + 1) * LANES]);
        }
        for p in 0..P {
            // SAFETY: the caller guarantees `bases[p] + off` is inside `xd`.
            let xv = unsafe { *xd.get_unchecked(bases[p] + off) };
            for b in 0..CB {
                for j in 0..LANES {
                    acc[p][b][j] = madd::<T, FMA>(xv, w[b][j], acc[p][b][j]);
                }
            }
        }
    }
    acc
}

/// The direct forward convolution of the rows with window corners `bases` into `out` (whole
/// rows of `o`), for the `CB` channel blocks from `c0`, in tiles of `P` pixels (the last tile
/// padded with copies of the last pixel, whose results are dropped).
///
/// # Safety
/// Every `bases[r] + offsets[t]` must be an index of `xd`; `bases` is not empty.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_blocks<T: ConvElem, const FMA: bool, const P: usize, const CB: usize>(
    xd: &[T],
    bases: &[usize],
    offsets: &[usize],
    f: &[T],
    o: usize,
    c0: usize,
    out: &mut [T],
) {
    let rows = bases.len();
    let mut g0 = 0;
    while g0 < rows {
        let np = P.min(rows - g0);
        let mut bs = [bases[rows - 1]; P];
        bs[..np].copy_from_slice(&bases[g0..g0 + np]);
        // SAFETY: every entry of `bs` is one of `bases`, which the caller vouches for.
        let acc = unsafe { forward_tile::<T, FMA, P, CB>(xd, &bs, offsets, f, o, c0) };
        for (p, ap) in acc.iter().enumerate().take(np) {
            for (b, ab) in ap.iter().enumerate() {
                let at = (g0 + p) * o + c0 + b * LANES;
                out[at..at + LANES].copy_from_slice(ab);
            }
        }
        g0 += np;
    }
}

simd_fn! {
    /// Direct convolution of the output rows starting at global row `r0` (`out` holds whole
    /// rows of `o`): tiles of pixels by one or two blocks of `LANES` output channels
    /// accumulate in registers over every filter row; channels past the last full block are
    /// computed row by row.
    fn direct_forward_rows<T: ConvElem, FMA>(g: &ConvGeom, xp: &Padded<T>, f: &[T], r0: usize, out: &mut [T]) {
        let o = g.o;
        let k = xp.offsets.len();
        let rows = out.len() / o.max(1);
        if rows == 0 || f.len() < k * o {
            return;
        }
        let bases = match g.bases(xp, r0, rows) {
            Some(b) => b,
            None => return,
        };
        let (xd, offs) = (&xp.data[..], &xp.offsets[..]);
        let blocks = o / LANES;
        let mut cb = 0;
        while cb < blocks {
            // SAFETY: `g.bases` checked every base plus the largest offset against `xd`.
            if blocks - cb >= 2 {
                unsafe { forward_blocks::<T, FMA, 12, 2>(xd, &bases, offs, f, o, cb * LANES, out) };
                cb += 2;
            } else {
                unsafe { forward_blocks::<T, FMA, 24, 1>(xd, &bases, offs, f, o, cb * LANES, out) };
                cb += 1;
            }
        }
        if blocks * LANES < o {
            for (p, &b) in bases.iter().enumerate() {
                let dst = &mut out[p * o + blocks * LANES..(p + 1) * o];
                dst.fill(T::zero());
                for (t, &off) in offs.iter().enumerate() {
                    let xv = xd[b + off];
                    let wr = &f[t * o + blocks * LANES..(t + 1) * o];
                    for (d, &wv) in dst.iter_mut().zip(wr) {
                        *d = madd::<T, FMA>(xv, wv, *d);
                    }
                }
            }
        }
    }
}

/// One pass of the direct filter backprop: `NT` filter rows (`offs`, the first `n` real, the
/// others copies whose sums are dropped) by `CB` blocks of `LANES` channels from `c0`,
/// accumulated in registers over the rows (window corners `bases`, gradients the rows of
/// `dy`, each `o` long), then added into rows `t0 ..` of `acc` (k x o).
///
/// # Safety
/// Every `bases[r] + offs[q]` must be an index of `xd`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn filter_pass<T: ConvElem, const FMA: bool, const NT: usize, const CB: usize>(
    xd: &[T],
    bases: &[usize],
    offs: &[usize],
    dy: &[T],
    o: usize,
    c0: usize,
    t0: usize,
    acc: &mut [T],
) {
    let n = offs.len().min(NT);
    if n == 0 {
        return;
    }
    let mut os = [offs[0]; NT];
    os[..n].copy_from_slice(&offs[..n]);
    let mut s = [[[T::zero(); LANES]; CB]; NT];
    for (r, &b) in bases.iter().enumerate() {
        let row = &dy[r * o + c0..r * o + c0 + CB * LANES];
        let mut d = [[T::zero(); LANES]; CB];
        for (bb, db) in d.iter_mut().enumerate() {
            db.copy_from_slice(&row[bb * LANES..(bb + 1) * LANES]);
        }
        for q in 0..NT {
            // SAFETY: `os[q]` is one of `offs`, and the caller guarantees `b + offs[_]` is
            // inside `xd`.
            let xv = unsafe { *xd.get_unchecked(b + os[q]) };
            for bb in 0..CB {
                for j in 0..LANES {
                    s[q][bb][j] = madd::<T, FMA>(xv, d[bb][j], s[q][bb][j]);
                }
            }
        }
    }
    for (q, sq) in s.iter().enumerate().take(n) {
        for (bb, sb) in sq.iter().enumerate() {
            let at = (t0 + q) * o + c0 + bb * LANES;
            for (a, &v) in acc[at..at + LANES].iter_mut().zip(sb) {
                *a = *a + v;
            }
        }
    }
}

simd_fn! {
    /// Adds the filter gradient of the output rows starting at `r0` (their gradients `dy`,
    /// whole rows of `o`) into `acc` (k x o): passes of up to 12 (24) filter rows by two
    /// (one) blocks of `LANES` channels accumulate in registers over the rows; channels past
    /// the last full block are summed tap by tap.
    fn direct_filter_rows<T: ConvElem, FMA>(g: &ConvGeom, xp: &Padded<T>, dy: &[T], r0: usize, acc: &mut [T]) {
        let o = g.o;
        let k = xp.offsets.len();
        let rows = dy.len() / o.max(1);
        if rows == 0 || k == 0 || acc.len() < k * o {
            return;
        }
        let bases = match g.bases(xp, r0, rows) {
            Some(b) => b,
            None => return,
        };
        let (xd, offs) = (&xp.data[..], &xp.offsets[..]);
        let blocks = o / LANES;
        // Runs the passes over all filter rows with `CB` channel blocks, passes of at most
        // `$big` rows split evenly, each rounded up to one of the three sizes.
        macro_rules! passes {
            ($cb:literal, $small:literal, $mid:literal, $big:literal, $c0:expr) => {{
                let per = k.div_ceil(k.div_ceil($big));
                let mut t0 = 0;
                while t0 < k {
                    let n = per.min(k - t0);
                    let of = &offs[t0..t0 + n];
                    // SAFETY: `g.bases` checked every base plus the largest offset against
                    // `xd`.
                    unsafe {
                        if n <= $small {
                            filter_pass::<T, FMA, $small, $cb>(xd, &bases, of, dy, o, $c0, t0, acc)
                        } else if n <= $mid {
                            filter_pass::<T, FMA, $mid, $cb>(xd, &bases, of, dy, o, $c0, t0, acc)
                        } else {
                            filter_pass::<T, FMA, $big, $cb>(xd, &bases, of, dy, o, $c0, t0, acc)
                        }
                    }
                    t0 += n;
                }
            }};
        }
        let mut cb = 0;
        while cb < blocks {
            if blocks - cb >= 2 {
                passes!(2, 6, 9, 12, cb * LANES);
                cb += 2;
            } else {
                passes!(1, 8, 16, 24, cb * LANES);
                cb += 1;
            }
        }
        if blocks * LANES < o {
            for (t, &off) in offs.iter().enumerate() {
                let ar = &mut acc[t * o + blocks * LANES..(t + 1) * o];
                for (r, &b) in bases.iter().enumerate() {
                    let xv = xd[b + off];
                    let d = &dy[r * o + blocks * LANES..(r + 1) * o];
                    for (a, &dv) in ar.iter_mut().zip(d) {
                        *a = madd::<T, FMA>(xv, dv, *a);
                    }
                }
            }
        }
    }
}

/// The filter as a `k x o` matrix.
fn filter_mat<'a, T>(f: &'a [T], g: &ConvGeom) -> Mat<'a, T> {
    Mat {
        data: f,
        rs: g.o,
        cs: 1,
    }
}

/// What FusedConv2D applies to each output row after the convolution.
#[derive(Clone, Copy)]
struct Epilogue<'a, T> {
    bias: &'a [T],
    act: FusedActivation,
}

simd_fn! {
    /// `act(row + bias)` on each `bias.len()`-long row of `out`.
    fn apply_epilogue<T: ConvElem, FMA>(out: &mut [T], bias: &[T], act: FusedActivation) {
        let six = <T as Numeric>::from_f64(6.0);
        for row in out.chunks_exact_mut(bias.len().max(1)) {
            for (v, &b) in row.iter_mut().zip(bias) {
                let z = *v + b;
                *v = match act {
                    FusedActivation::Linear => z,
                    // max(z, 0) that passes NaN through, like Relu's kernel.
                    FusedActivation::Relu => if z < T::zero() { T::zero() } else { z },
                    FusedActivation::Relu6 => {
                        let r = if z < T::zero() { T::zero() } else { z };
                        if r > six { six } else { r }
                    }
                };
            }
        }
    }
}

impl<T: ConvElem> Epilogue<'_, T> {
    fn apply(&self, out: &mut [T]) {
        apply_epilogue(out, self.bias, self.act);
    }
}

/// Conv2D in NHWC: `x` is (n, h, w, c), `f` is (fh, fw, c, o); with an epilogue, each chunk
/// of output rows gets its bias and activation while it is still in cache.
fn conv_forward<T: ConvElem>(
    g: &ConvGeom,
    x: &[T],
    f: &[T],
    ep: Option<Epilogue<'_, T>>,
) -> KResult<Vec<T>> {
    let (rows, k, o) = (g.rows(), g.k(), g.o);
    let finish = |dst: &mut [T]| {
        if let Some(ep) = &ep {
            ep.apply(dst);
        }
    };
    if rows * o == 0 || k == 0 {
        let mut out = vec![T::zero(); rows * o];
        finish(&mut out);
        return Ok(out);
    }
    let fm = filter_mat(f, g);
    let parallel = g.work() >= PAR_WORK && rayon::current_num_threads() > 1;
    if g.direct() {
        let xp = g.padded(x);
        if g.bases(&xp, rows - 1, 1).is_none() {
            return Err(KernelError::internal("the padded input misses a window"));
        }
        return build_zeroed(
            rows * o,
            DIRECT_ROWS * o,
            parallel,
            || (),
            |_, i, dst| {
                direct_forward_rows(g, &xp, f, i * DIRECT_ROWS, dst);
                finish(dst);
                Ok(())
            },
        );
    }
    if g.pointwise() {
        let mut out = vec![T::zero(); rows * o];
        let xm = Mat {
            data: x,
            rs: k,
            cs: 1,
        };
        gemm_into(rows, o, k, xm, fm, &mut out, false, parallel)?;
        if ep.is_some() {
            for_rows(&mut out, DIRECT_ROWS * o, parallel, |_, dst| finish(dst));
        }
        return Ok(out);
    }
    let chunk = g.chunk::<T>();
    let scratch = || vec![T::zero(); chunk.min(rows) * k];
    build_zeroed(rows * o, chunk * o, parallel, scratch, |buf, i, dst| {
        let r0 = i * chunk;
        let nr = dst.len() / o;
        let patches = &mut buf[..nr * k];
        g.im2col(x, r0..r0 + nr, patches);
        let pm = Mat {
            data: &*patches,
            rs: k,
            cs: 1,
        };
        gemm_into(nr, o, k, pm, fm, dst, false, false)?;
        finish(dst);
        Ok(())
    })
}

simd_fn! {
    /// Adds the column sums of `rows` (whole rows of `acc.len()`) into `acc`.
    fn add_column_sums<T: ConvElem, FMA>(rows: &[T], acc: &mut [T]) {
        for row in rows.chunks_exact(acc.len().max(1)) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = *a + v;
            }
        }
    }
}

/// The gradient of Conv2D for its filter: (fh, fw, c, o) from `x` and `dy` (n, oh, ow, o);
/// with `bias`, followed by the bias gradient (the column sums of `dy`, `o` more values)
/// from the same pass over `dy`.
fn conv_backprop_filter<T: ConvElem>(
    g: &ConvGeom,
    x: &[T],
    dy: &[T],
    bias: bool,
) -> KResult<Vec<T>> {
    let (rows, k, o) = (g.rows(), g.k(), g.o);
    let kb = k * o + if bias { o } else { 0 };
    let mut df = vec![T::zero(); kb];
    if df.is_empty() || rows == 0 {
        return Ok(df);
    }
    if k * o == 0 {
        add_column_sums(dy, &mut df[k * o..]);
        return Ok(df);
    }
    let parallel = g.work() >= PAR_WORK && rayon::current_num_threads() > 1;
    let dym = |r: Range<usize>| Mat {
        data: &dy[r.start * o..r.end * o],
        rs: o,
        cs: 1,
    };
    if g.pointwise() {
        let xt = Mat {
            data: x,
            rs: 1,
            cs: k,
        };
        gemm_into(k, o, rows, xt, dym(0..rows), &mut df, false, parallel)?;
        if bias {
            add_column_sums(dy, &mut df[k * o..]);
        }
        return Ok(df);
    }
    let chunk = if g.direct() {
        DIRECT_FILTER_ROWS
    } else {
        g.chunk::<T>()
    };
    let chunks = rows.div_ceil(chunk);
    // Four parts per thread, one task each: a thread preempted by the OS holds up a quarter
    // of its share, and the others take the rest.
    let parts = if parallel {
        (4 * rayon::current_num_threads()).min(chunks)
    } else {
        1
    };
    let per = chunks.div_ceil(parts);
    let xp = match g.direct() {
        true => Some(g.padded(x)),
        false => None,
    };
    if let Some(xp) = &xp {
        if g.bases(xp, rows - 1, 1).is_none() {
            return Err(KernelError::internal("the padded input misses a window"));
        }
    }
    // Part `p` sums the chunks p * per .. (p + 1) * per into `acc` (k * o, then the bias).
    let part = |p: usize, acc: &mut [T]| -> KResult {
        let (acc, acc_b) = acc.split_at_mut(k * o);
        if bias {
            let r = (p * per * chunk).min(rows)..((p + 1) * per * chunk).min(rows);
            add_column_sums(&dy[r.start * o..r.end * o], acc_b);
        }
        if let Some(xp) = &xp {
            for ci in p * per..((p + 1) * per).min(chunks) {
                let r = ci * chunk..((ci + 1) * chunk).min(rows);
                direct_filter_rows(g, xp, &dy[r.start * o..r.end * o], r.start, acc);
            }
            return Ok(());
        }
        let mut buf = vec![T::zero(); chunk.min(rows) * k];
        let mut first = true;
        for ci in p * per..((p + 1) * per).min(chunks) {
            let r = ci * chunk..((ci + 1) * chunk).min(rows);
            let patches = &mut buf[..r.len() * k];
            g.im2col(x, r.clone(), patches);
            let pt = Mat {
                data: &*patches,
                rs: 1,
                cs: k,
            };
            gemm_into(k, o, r.len(), pt, dym(r), acc, !first, false)?;
            first = false;
        }
        Ok(())
    };
    if parts == 1 {
        part(0, &mut df)?;
        return Ok(df);
    }
    let partials = (0..parts)
        .into_par_iter()
        .with_max_len(1)
        .map(|p| {
            let mut acc = vec![T::zero(); kb];
            part(p, &mut acc).map(|_| acc)
        })
        .collect::<KResult<Vec<_>>>()?;
    for acc in &partials {
        df.iter_mut().zip(acc).for_each(|(d, &v)| *d = *d + v);
    }
    Ok(df)
}

/// The gradient of Conv2D for its input: (n, h, w, c) from the filter and `dy`.
fn conv_backprop_input<T: ConvElem>(g: &ConvGeom, f: &[T], dy: &[T]) -> KResult<Vec<T>> {
    let (k, o) = (g.k(), g.o);
    let img = g.h * g.w * g.c;
    if g.n * img == 0 || g.rows() == 0 || o == 0 {
        return Ok(vec![T::zero(); g.n * img]);
    }
    // filter^T as a row-major o x k matrix (gemm packs it fast in this layout).
    let mut ftd = vec![T::zero(); o * k];
    for (kk, row) in f.chunks_exact(o).enumerate() {
        for (oc, &v) in row.iter().enumerate() {
            ftd[oc * k + kk] = v;
        }
    }
    let ft = Mat {
        data: &ftd[..],
        rs: k,
        cs: 1,
    };
    let parallel = g.work() >= PAR_WORK && rayon::current_num_threads() > 1;
    if g.pointwise() {
        let rows = g.rows();
        let dym = Mat {
            data: dy,
            rs: o,
            cs: 1,
        };
        let mut dx = vec![T::zero(); g.n * img];
        gemm_into(rows, k, o, dym, ft, &mut dx, false, parallel)?;
        return Ok(dx);
    }
    let per_image = g.oh * g.ow;
    let chunk = g.chunk::<T>().min(per_image);
    // Few images: let gemm split each product instead.
    let inner_parallel = parallel && g.n < rayon::current_num_threads();
    let scratch = || vec![T::zero(); chunk * k];
    build_zeroed(
        g.n * img,
        img,
        parallel && !inner_parallel,
        scratch,
        |buf, i, dxi| {
            let dyi = &dy[i * per_image * o..(i + 1) * per_image * o];
            for r0 in (0..per_image).step_by(chunk) {
                let r = r0..(r0 + chunk).min(per_image);
                let patches = &mut buf[..r.len() * k];
                let dym = Mat {
                    data: &dyi[r.start * o..r.end * o],
                    rs: o,
                    cs: 1,
                };
                gemm_into(r.len(), k, o, dym, ft, patches, false, inner_parallel)?;
                g.col2im(patches, r, dxi);
            }
            Ok(())
        },
    )
}

/// The filter's dims (fh, fw, in, out).
fn filter_dims(t: &Tensor) -> KResult<[usize; 4]> {
    dims4(t, "filter", "[height, width, in_channels, out_channels]")
}

/// Checks that `dy` has the shape the convolution gives.
fn check_dy(g: &ConvGeom, dy: &Tensor, format: DataFormat) -> KResult {
    let want = format.from_nhwc(g.out_dims());
    if dy.shape() != want {
        return Err(KernelError::invalid(format!(
            "out_backprop has shape {:?}, but the convolution's output has shape {want:?} ({})",
            dy.shape(),
            format.name()
        )));
    }
    Ok(())
}

fn conv2d_kernel<T: ConvElem>(p: ConvParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, xd) = image_in::<T>(ctx.input(0), "input", p.format)?;
        let g = ConvGeom::new(xd, filter_dims(ctx.input(1))?, &p)?;
        let out = conv_forward(&g, &x, ctx.input(1).as_slice::<T>()?, None)?;
        ctx.set_output(image_out(out, g.out_dims(), p.format));
        Ok(())
    })
}

fn conv2d_backprop_input_kernel<T: ConvElem>(p: ConvParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let xd = sizes_nhwc(sizes4(ctx, 0, "input_sizes")?, p.format);
        let g = ConvGeom::new(xd, filter_dims(ctx.input(1))?, &p)?;
        check_dy(&g, ctx.input(2), p.format)?;
        let (dy, _) = image_in::<T>(ctx.input(2), "out_backprop", p.format)?;
        let dx = conv_backprop_input(&g, ctx.input(1).as_slice::<T>()?, &dy)?;
        ctx.set_output(image_out(dx, xd, p.format));
        Ok(())
    })
}

fn conv2d_backprop_filter_kernel<T: ConvElem>(p: ConvParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let fd = sizes4(ctx, 1, "filter_sizes")?;
        let (x, xd) = image_in::<T>(ctx.input(0), "input", p.format)?;
        let g = ConvGeom::new(xd, fd, &p)?;
        check_dy(&g, ctx.input(2), p.format)?;
        let (dy, _) = image_in::<T>(ctx.input(2), "out_backprop", p.format)?;
        let df = conv_backprop_filter(&g, &x, &dy, false)?;
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&fd),
            T::into_buffer(df),
        ));
        Ok(())
    })
}

fn fused_conv2d_kernel<T: ConvElem>(p: ConvParams, act: FusedActivation) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, xd) = image_in::<T>(ctx.input(0), "input", p.format)?;
        let g = ConvGeom::new(xd, filter_dims(ctx.input(1))?, &p)?;
        let bias = ctx.input(2);
        if bias.shape() != [g.o] {
            return Err(KernelError::invalid(format!(
                "bias must be a vector of {} entries (the filter's out_channels), got shape {:?}",
                g.o,
                bias.shape()
            )));
        }
        let ep = Epilogue {
            bias: bias.as_slice::<T>()?,
            act,
        };
        let out = conv_forward(&g, &x, ctx.input(1).as_slice::<T>()?, Some(ep))?;
        ctx.set_output(image_out(out, g.out_dims(), p.format));
        Ok(())
    })
}

fn conv2d_backprop_filter_bias_kernel<T: ConvElem>(p: ConvParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let fd = sizes4(ctx, 1, "filter_sizes")?;
        let (x, xd) = image_in::<T>(ctx.input(0), "input", p.format)?;
        let g = ConvGeom::new(xd, fd, &p)?;
        check_dy(&g, ctx.input(2), p.format)?;
        let (dy, _) = image_in::<T>(ctx.input(2), "out_backprop", p.format)?;
        let mut df = conv_backprop_filter(&g, &x, &dy, true)?;
        let db = df.split_off(g.k() * g.o);
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&fd),
            T::into_buffer(df),
        ));
        ctx.set_output(vector(db));
        Ok(())
    })
}

// ---- pooling ---------------------------------------------------------------------------------

/// The sizes of one pooling, in NHWC.
#[derive(Clone, Copy, Debug)]
struct PoolGeom {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pad_t: usize,
    pad_l: usize,
}

impl PoolGeom {
    fn new(x: [usize; 4], p: &PoolParams) -> KResult<PoolGeom> {
        let [n, h, w, c] = x;
        let [(oh, pad_t), (ow, pad_l)] = p.geometry([h, w]).map_err(|e| {
            KernelError::invalid(format!(
                "input {h}x{w}, window {}x{}: {e}",
                p.ksize[0], p.ksize[1]
            ))
        })?;
        checked_len(&[n, h, w, c])?;
        Ok(PoolGeom {
            n,
            h,
            w,
            c,
            oh,
            ow,
            kh: p.ksize[0],
            kw: p.ksize[1],
            sh: p.strides[0],
            sw: p.strides[1],
            pad_t,
            pad_l,
        })
    }
    fn out_dims(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.c]
    }
    fn in_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }
    fn out_len(&self) -> usize {
        self.n * self.oh * self.ow * self.c
    }
    /// The input rows and columns of output (oy, ox)'s window, clipped to the input.
    fn window(&self, oy: usize, ox: usize) -> (Range<usize>, Range<usize>) {
        let y0 = (oy * self.sh) as isize - self.pad_t as isize;
        let x0 = (ox * self.sw) as isize - self.pad_l as isize;
        (clip(y0, self.kh, self.h), clip(x0, self.kw, self.w))
    }
    /// Whether a parallel loop pays off.
    fn parallel(&self) -> bool {
        self.out_len().saturating_mul(self.kh * self.kw) >= PAR_WORK
            && rayon::current_num_threads() > 1
    }
}

/// Runs `f(row, out_row)` over `rows`-many `len`-long rows of `out`, in parallel when asked.
fn for_rows<T: Send>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    if len == 0 {
        return;
    }
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .with_max_len(task_pieces(len))
            .for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// The offsets within one image of the first maximum of each channel in output (oy, ox)'s
/// window; ties go to the first position in row-major order, as in TensorFlow. `best` and
/// `at` have `c` entries. False when the window holds no input element (then `at` is stale).
#[inline(always)]
fn window_argmax<T: ConvElem>(
    g: &PoolGeom,
    x_img: &[T],
    oy: usize,
    ox: usize,
    best: &mut [T],
    at: &mut [usize],
) -> bool {
    let (ys, xs) = g.window(oy, ox);
    let c = g.c;
    let mut first = true;
    for iy in ys {
        for ix in xs.clone() {
            let base = (iy * g.w + ix) * c;
            let px = &x_img[base..base + c];
            if first {
                best.copy_from_slice(px);
                at.iter_mut().enumerate().for_each(|(j, a)| *a = base + j);
                first = false;
                continue;
            }
            for (j, ((b, a), &v)) in best.iter_mut().zip(at.iter_mut()).zip(px).enumerate() {
                if v > *b {
                    *b = v;
                    *a = base + j;
                }
            }
        }
    }
    !first
}

simd_fn! {
    /// One row (`oy`) of max-pooled outputs of one image.
    fn max_pool_row<T: ConvElem, FMA>(g: &PoolGeom, x_img: &[T], oy: usize, dst: &mut [T]) {
        let c = g.c;
        for (ox, px) in dst.chunks_exact_mut(c).enumerate() {
            let (ys, xs) = g.window(oy, ox);
            px.fill(T::neg_infinity());
            for iy in ys {
                let row = &x_img[(iy * g.w + xs.start) * c..(iy * g.w + xs.end) * c];
                for v in row.chunks_exact(c) {
                    for (o, &v) in px.iter_mut().zip(v) {
                        *o = if v > *o { v } else { *o };
                    }
                }
            }
        }
    }
}

fn max_pool<T: ConvElem>(g: &PoolGeom, x: &[T]) -> KResult<Vec<T>> {
    let img = g.h * g.w * g.c;
    if g.out_len() == 0 {
        return Ok(Vec::new());
    }
    build_zeroed(
        g.out_len(),
        g.ow * g.c,
        g.parallel(),
        || (),
        |_, row, dst| {
            let (n, oy) = (row / g.oh, row % g.oh);
            max_pool_row(g, &x[n * img..(n + 1) * img], oy, dst);
            Ok(())
        },
    )
}

simd_fn! {
    /// MaxPoolGrad of one image: each output's gradient goes to its window's first maximum.
    /// `best` and `at` are scratch rows of `c`.
    fn max_pool_grad_image<T: ConvElem, FMA>(
        g: &PoolGeom,
        x_img: &[T],
        dy_img: &[T],
        dxi: &mut [T],
        best: &mut [T],
        at: &mut [usize],
    ) {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                if !window_argmax(g, x_img, oy, ox, best, at) {
                    continue;
                }
                let d = &dy_img[(oy * g.ow + ox) * g.c..][..g.c];
                for (&a, &v) in at.iter().zip(d) {
                    dxi[a] = dxi[a] + v;
                }
            }
        }
    }
}

simd_fn! {
    /// MaxPoolGrad of one image when no two windows overlap (strides at least the window):
    /// each window's elements are written once, the gradient at the first maximum (the
    /// first element greater than all before it, as in `window_argmax`) and zero elsewhere;
    /// branch-free over the channels. `best` and `which` (the maximum's position in the
    /// window, as a float) are scratch rows of `c`; elements outside every window keep their
    /// zero.
    fn max_pool_grad_disjoint<T: ConvElem, FMA>(
        g: &PoolGeom,
        x_img: &[T],
        dy_img: &[T],
        dxi: &mut [T],
        best: &mut [T],
        which: &mut [T],
    ) {
        let c = g.c;
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (ys, xs) = g.window(oy, ox);
                if ys.is_empty() || xs.is_empty() {
                    continue;
                }
                let mut j = 0usize;
                for iy in ys.clone() {
                    for ix in xs.clone() {
                        let px = &x_img[(iy * g.w + ix) * c..][..c];
                        if j == 0 {
                            best.copy_from_slice(px);
                            which.fill(T::zero());
                        } else {
                            let jf = <T as Numeric>::from_f64(j as f64);
                            for ((b, w), &v) in best.iter_mut().zip(which.iter_mut()).zip(px) {
                                let gt = v > *b;
                                *b = if gt { v } else { *b };
                                *w = if gt { jf } else { *w };
                            }
                        }
                        j += 1;
                    }
                }
                let d = &dy_img[(oy * g.ow + ox) * c..][..c];
                let mut j = 0usize;
                for iy in ys {
                    for ix in xs.clone() {
                        let jf = <T as Numeric>::from_f64(j as f64);
                        let dst = &mut dxi[(iy * g.w + ix) * c..][..c];
                        for ((o, &w), &v) in dst.iter_mut().zip(which.iter()).zip(d) {
                            *o = if w == jf { v } else { T::zero() };
                        }
                        j += 1;
                    }
                }
            }
        }
    }
}

/// MaxPoolGrad: each output's gradient goes to its window's first maximum.
fn max_pool_grad<T: ConvElem>(g: &PoolGeom, x: &[T], dy: &[T]) -> KResult<Vec<T>> {
    let (img, oimg) = (g.h * g.w * g.c, g.oh * g.ow * g.c);
    if img == 0 {
        return Ok(vec![T::zero(); g.in_len()]);
    }
    let disjoint = g.sh >= g.kh && g.sw >= g.kw;
    let image = |_: &mut (), n: usize, dxi: &mut [T]| -> KResult {
        let (x_img, dy_img) = (&x[n * img..(n + 1) * img], &dy[n * oimg..(n + 1) * oimg]);
        if disjoint {
            let (mut best, mut which) = (vec![T::zero(); g.c], vec![T::zero(); g.c]);
            max_pool_grad_disjoint(g, x_img, dy_img, dxi, &mut best, &mut which);
        } else {
            let (mut best, mut at) = (vec![T::zero(); g.c], vec![0usize; g.c]);
            max_pool_grad_image(g, x_img, dy_img, dxi, &mut best, &mut at);
        }
        Ok(())
    };
    build_zeroed(g.in_len(), img, g.parallel(), || (), image)
}

/// MaxPoolGradGrad: each output takes `grad` (shaped like the input) at its window's first
/// maximum.
fn max_pool_grad_grad<T: ConvElem>(g: &PoolGeom, x: &[T], grad: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); g.out_len()];
    let (img, oimg) = (g.h * g.w * g.c, g.oh * g.ow * g.c);
    for_rows(&mut out, oimg, g.parallel(), |n, oi| {
        let (x_img, g_img) = (&x[n * img..(n + 1) * img], &grad[n * img..(n + 1) * img]);
        let mut best = vec![T::zero(); g.c];
        let mut at = vec![0usize; g.c];
        for (p, px) in oi.chunks_exact_mut(g.c).enumerate() {
            if !window_argmax(g, x_img, p / g.ow, p % g.ow, &mut best, &mut at) {
                continue;
            }
            for (o, &a) in px.iter_mut().zip(at.iter()) {
                *o = g_img[a];
            }
        }
    });
    out
}

/// AvgPool: the mean over the window's elements inside the input (SAME padding does not
/// count the padding, as in TensorFlow).
fn avg_pool<T: ConvElem>(g: &PoolGeom, x: &[T]) -> Vec<T> {
    let mut out = vec![T::zero(); g.out_len()];
    let img = g.h * g.w * g.c;
    for_rows(&mut out, g.ow * g.c, g.parallel(), |row, dst| {
        let (n, oy) = (row / g.oh, row % g.oh);
        let x_img = &x[n * img..(n + 1) * img];
        for (ox, px) in dst.chunks_exact_mut(g.c).enumerate() {
            let (ys, xs) = g.window(oy, ox);
            let count = ys.len() * xs.len();
            for iy in ys {
                for ix in xs.clone() {
                    let base = (iy * g.w + ix) * g.c;
                    for (o, &v) in px.iter_mut().zip(&x_img[base..base + g.c]) {
                        *o = *o + v;
                    }
                }
            }
            let inv = T::one() / cast::<T>(count.max(1) as f64);
            px.iter_mut().for_each(|v| *v = *v * inv);
        }
    });
    out
}

/// AvgPoolGrad: each output's gradient spread evenly over its window's elements.
fn avg_pool_grad<T: ConvElem>(g: &PoolGeom, dy: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); g.in_len()];
    let (img, oimg) = (g.h * g.w * g.c, g.oh * g.ow * g.c);
    for_rows(&mut dx, img, g.parallel(), |n, dxi| {
        let dy_img = &dy[n * oimg..(n + 1) * oimg];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (ys, xs) = g.window(oy, ox);
                let count = ys.len() * xs.len();
                let inv = T::one() / cast::<T>(count.max(1) as f64);
                let d = &dy_img[(oy * g.ow + ox) * g.c..][..g.c];
                for iy in ys {
                    for ix in xs.clone() {
                        let base = (iy * g.w + ix) * g.c;
                        for (o, &v) in dxi[base..base + g.c].iter_mut().zip(d) {
                            *o = *o + v * inv;
                        }
                    }
                }
            }
        }
    });
    dx
}

/// Checks that a pooled tensor (orig_output, or a gradient of it) has the pooled shape.
fn check_pooled(g: &PoolGeom, t: &Tensor, what: &str, format: DataFormat) -> KResult {
    let want = format.from_nhwc(g.out_dims());
    if t.shape() != want {
        return Err(KernelError::invalid(format!(
            "{what} has shape {:?}, but pooling the input gives {want:?} ({})",
            t.shape(),
            format.name()
        )));
    }
    Ok(())
}

/// Checks that `t` has the input's shape.
fn check_same(t: &Tensor, like: &Tensor, what: &str, like_what: &str) -> KResult {
    if t.shape() != like.shape() {
        return Err(KernelError::invalid(format!(
            "{what} has shape {:?}, but {like_what} has shape {:?}",
            t.shape(),
            like.shape()
        )));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Pool {
    Max,
    Avg,
}

fn pool_kernel<T: ConvElem>(p: PoolParams, kind: Pool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, xd) = image_in::<T>(ctx.input(0), "input", p.format)?;
        let g = PoolGeom::new(xd, &p)?;
        let out = match kind {
            Pool::Max => max_pool(&g, &x)?,
            Pool::Avg => avg_pool(&g, &x),
        };
        ctx.set_output(image_out(out, g.out_dims(), p.format));
        Ok(())
    })
}

/// MaxPoolGrad (`grad_grad == false`) and MaxPoolGradGrad.
fn max_pool_grad_kernel<T: ConvElem>(p: PoolParams, grad_grad: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, xd) = image_in::<T>(ctx.input(0), "orig_input", p.format)?;
        let g = PoolGeom::new(xd, &p)?;
        check_pooled(&g, ctx.input(1), "orig_output", p.format)?;
        if grad_grad {
            check_same(ctx.input(2), ctx.input(0), "grad", "orig_input")?;
            let (d, _) = image_in::<T>(ctx.input(2), "grad", p.format)?;
            let out = max_pool_grad_grad(&g, &x, &d);
            ctx.set_output(image_out(out, g.out_dims(), p.format));
        } else {
            check_pooled(&g, ctx.input(2), "grad", p.format)?;
            let (d, _) = image_in::<T>(ctx.input(2), "grad", p.format)?;
            let dx = max_pool_grad(&g, &x, &d)?;
            ctx.set_output(image_out(dx, xd, p.format));
        }
        Ok(())
    })
}

fn avg_pool_grad_kernel<T: ConvElem>(p: PoolParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let xd = sizes_nhwc(sizes4(ctx, 0, "orig_input_shape")?, p.format);
        let g = PoolGeom::new(xd, &p)?;
        check_pooled(&g, ctx.input(1), "grad", p.format)?;
        let (d, _) = image_in::<T>(ctx.input(1), "grad", p.format)?;
        let dx = avg_pool_grad(&g, &d);
        ctx.set_output(image_out(dx, xd, p.format));
        Ok(())
    })
}

// ---- batch normalization ---------------------------------------------------------------------

/// Sums over the rows of an `r x c` matrix into `acc_len` f64 accumulators, by
/// `f(row_index, row, acc)`; rows are split in a fixed number of parts, added in order, so
/// results do not depend on scheduling.
fn channel_sums<T: ConvElem>(
    data: &[T],
    c: usize,
    acc_len: usize,
    f: impl Fn(usize, &[T], &mut [f64]) + Send + Sync,
) -> Vec<f64> {
    let rows = data.len().checked_div(c).unwrap_or(0);
    let parts = if data.len() >= PAR_WORK && rayon::current_num_threads() > 1 {
        8.min(rows)
    } else {
        1
    };
    if parts <= 1 {
        let mut acc = vec![0.0; acc_len];
        for (i, row) in data.chunks_exact(c.max(1)).enumerate() {
            f(i, row, &mut acc);
        }
        return acc;
    }
    let per = rows.div_ceil(parts);
    let partials: Vec<Vec<f64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut acc = vec![0.0; acc_len];
            let r = p * per..((p + 1) * per).min(rows);
            for (i, row) in data[r.start * c..r.end * c].chunks_exact(c).enumerate() {
                f(r.start + i, row, &mut acc);
            }
            acc
        })
        .collect();
    let mut acc = vec![0.0; acc_len];
    for part in partials {
        acc.iter_mut().zip(part).for_each(|(a, v)| *a += v);
    }
    acc
}

/// Checks a per-channel vector input.
fn channel_input<'a, T: ConvElem>(
    ctx: &'a KernelContext<'_>,
    i: usize,
    what: &str,
    c: usize,
) -> KResult<&'a [T]> {
    let t = ctx.input(i);
    if t.shape() != [c] {
        return Err(KernelError::invalid(format!(
            "{what} must be a vector of {c} entries (one per channel of x), got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.as_slice::<T>()?)
}

fn cast<T: ConvElem>(v: f64) -> T {
    <T as Numeric>::from_f64(v)
}

fn vector<T: ConvElem>(v: Vec<T>) -> Tensor {
    Tensor::from_parts(Dims::from_slice(&[v.len()]), T::into_buffer(v))
}

fn fused_batch_norm_kernel<T: ConvElem>(p: BatchNormParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, xd) = image_in::<T>(ctx.input(0), "x", p.format)?;
        let c = xd[3];
        let rows = xd[0] * xd[1] * xd[2];
        let scale = channel_input::<T>(ctx, 1, "scale", c)?;
        let offset = channel_input::<T>(ctx, 2, "offset", c)?;
        let (mean, var): (Vec<f64>, Vec<f64>) = if p.is_training {
            for (i, what) in [(3, "mean"), (4, "variance")] {
                let s = ctx.input(i).shape();
                if s != [0] && s != [c] {
                    return Err(KernelError::invalid(format!(
                        "{what} must be empty or a vector of {c} entries in training mode, \
                         got shape {s:?}"
                    )));
                }
            }
            let n = rows as f64;
            let sums = channel_sums(&x, c, c, |_, row, acc| {
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v.to_f64());
            });
            let mean: Vec<f64> = sums.iter().map(|s| s / n).collect();
            let sq = channel_sums(&x, c, c, |_, row, acc| {
                for ((a, &v), m) in acc.iter_mut().zip(row).zip(&mean) {
                    let d = v.to_f64() - m;
                    *a += d * d;
                }
            });
            (mean, sq.iter().map(|s| s / n).collect())
        } else {
            let m = channel_input::<T>(ctx, 3, "mean", c)?;
            let v = channel_input::<T>(ctx, 4, "variance", c)?;
            let f = |s: &[T]| s.iter().map(|&v| Numeric::to_f64(v)).collect();
            (f(m), f(v))
        };
        // y = x * a + b per channel.
        let (mut a, mut b) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for j in 0..c {
            let inv = 1.0 / (var[j] + p.epsilon).sqrt();
            let s = scale[j].to_f64() * inv;
            a.push(cast::<T>(s));
            b.push(cast::<T>(offset[j].to_f64() - mean[j] * s));
        }
        let mut y = x.into_owned();
        let parallel = y.len() >= PAR_WORK && rayon::current_num_threads() > 1;
        for_rows(&mut y, c * 64, parallel, |_, chunk| {
            for row in chunk.chunks_exact_mut(c) {
                for ((v, &a), &b) in row.iter_mut().zip(&a).zip(&b) {
                    *v = *v * a + b;
                }
            }
        });
        ctx.set_output(image_out(y, xd, p.format));
        let to_t = |v: &[f64]| v.iter().map(|&x| cast::<T>(x)).collect::<Vec<T>>();
        if p.is_training {
            let bessel = if rows > 1 {
                rows as f64 / (rows - 1) as f64
            } else {
                1.0
            };
            let corrected: Vec<f64> = var.iter().map(|v| v * bessel).collect();
            ctx.set_output(vector(to_t(&mean)));
            ctx.set_output(vector(to_t(&corrected)));
        } else {
            ctx.set_output(vector(to_t(&mean)));
            ctx.set_output(vector(to_t(&var)));
        }
        ctx.set_output(vector(to_t(&mean)));
        ctx.set_output(vector(to_t(&var)));
        Ok(())
    })
}

fn fused_batch_norm_grad_kernel<T: ConvElem>(p: BatchNormParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        check_same(ctx.input(0), ctx.input(1), "y_backprop", "x")?;
        let (x, xd) = image_in::<T>(ctx.input(1), "x", p.format)?;
        let (dy, _) = image_in::<T>(ctx.input(0), "y_backprop", p.format)?;
        let c = xd[3];
        let rows = xd[0] * xd[1] * xd[2];
        let f64s = |s: &[T]| -> Vec<f64> { s.iter().map(|&v| Numeric::to_f64(v)).collect() };
        let scale = f64s(channel_input::<T>(ctx, 2, "scale", c)?);
        let mean = f64s(channel_input::<T>(ctx, 3, "reserve_space_1", c)?);
        let var = f64s(channel_input::<T>(ctx, 4, "reserve_space_2", c)?);
        let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + p.epsilon).sqrt()).collect();
        // both[j] = sum(dy), both[c + j] = sum(dy * (x - mean)) for channel j.
        let both = channel_sums(&dy, c, 2 * c, |i, row, acc| {
            let xr = &x[i * c..(i + 1) * c];
            let (s1, s2) = acc.split_at_mut(c);
            for j in 0..c {
                let d = row[j].to_f64();
                s1[j] += d;
                s2[j] += d * (xr[j].to_f64() - mean[j]);
            }
        });
        let (sum_dy, sum_dyc) = both.split_at(c);
        let dscale: Vec<f64> = (0..c).map(|j| sum_dyc[j] * inv[j]).collect();
        let doffset = sum_dy.to_vec();
        // dx = k1 * dy + k2 * x + k3 per channel.
        let n = rows.max(1) as f64;
        let (mut k1, mut k2, mut k3) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..c {
            let si = scale[j] * inv[j];
            if p.is_training {
                // scale * inv * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - m) * inv
                let q = dscale[j] / n * inv[j];
                k1.push(cast::<T>(si));
                k2.push(cast::<T>(-si * q));
                k3.push(cast::<T>(si * (q * mean[j] - sum_dy[j] / n)));
            } else {
                k1.push(cast::<T>(si));
                k2.push(T::zero());
                k3.push(T::zero());
            }
        }
        let mut dx = dy.into_owned();
        let parallel = dx.len() >= PAR_WORK && rayon::current_num_threads() > 1;
        for_rows(&mut dx, c * 64, parallel, |blk, chunk| {
            let x0 = blk * c * 64;
            for (r, row) in chunk.chunks_exact_mut(c).enumerate() {
                let xr = &x[x0 + r * c..x0 + (r + 1) * c];
                for j in 0..c {
                    row[j] = row[j] * k1[j] + xr[j] * k2[j] + k3[j];
                }
            }
        });
        ctx.set_output(image_out(dx, xd, p.format));
        let to_t = |v: &[f64]| v.iter().map(|&x| cast::<T>(x)).collect::<Vec<T>>();
        ctx.set_output(vector(to_t(&dscale)));
        ctx.set_output(vector(to_t(&doffset)));
        Ok(())
    })
}

// ---- local response normalization -----------------------------------------------------------

/// `bias + alpha * sum of squares of row[j - r ..= j + r]` for each channel j, in f64.
fn lrn_norms<T: ConvElem>(row: &[T], p: &LrnParams, norms: &mut [f64]) {
    let c = row.len();
    for (j, n) in norms.iter_mut().enumerate() {
        let lo = j.saturating_sub(p.depth_radius);
        let hi = (j + p.depth_radius + 1).min(c);
        let s: f64 = row[lo..hi]
            .iter()
            .map(|v| {
                let v = Numeric::to_f64(*v);
                v * v
            })
            .sum();
        *n = p.bias + p.alpha * s;
    }
}

fn lrn_kernel<T: ConvElem>(p: LrnParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let [_, _, _, c] = dims4(ctx.input(0), "input", "[batch, height, width, channels]")?;
        let x = ctx.input(0).as_slice::<T>()?;
        let mut y = vec![T::zero(); x.len()];
        let parallel = x.len() >= PAR_WORK / 4 && rayon::current_num_threads() > 1;
        for_rows(&mut y, c, parallel, |i, out| {
            let row = &x[i * c..(i + 1) * c];
            let mut norms = vec![0.0; c];
            lrn_norms(row, &p, &mut norms);
            for ((o, &v), &n) in out.iter_mut().zip(row).zip(&norms) {
                *o = cast::<T>(v.to_f64() * n.powf(-p.beta));
            }
        });
        let dims = Dims::from_slice(ctx.input(0).shape());
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(y)));
        Ok(())
    })
}

/// LRNGrad: dx_k = g_k N_k^-beta - 2 alpha beta x_k sum_{j: |j - k| <= r} g_j y_j / N_j.
fn lrn_grad_kernel<T: ConvElem>(p: LrnParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let [_, _, _, c] = dims4(
            ctx.input(1),
            "input_image",
            "[batch, height, width, channels]",
        )?;
        check_same(ctx.input(0), ctx.input(1), "input_grads", "input_image")?;
        check_same(ctx.input(2), ctx.input(1), "output_image", "input_image")?;
        let g = ctx.input(0).as_slice::<T>()?;
        let x = ctx.input(1).as_slice::<T>()?;
        let y = ctx.input(2).as_slice::<T>()?;
        let mut dx = vec![T::zero(); x.len()];
        let parallel = x.len() >= PAR_WORK / 4 && rayon::current_num_threads() > 1;
        for_rows(&mut dx, c, parallel, |i, out| {
            let r = i * c..(i + 1) * c;
            let (gr, xr, yr) = (&g[r.clone()], &x[r.clone()], &y[r]);
            let mut norms = vec![0.0; c];
            lrn_norms(xr, &p, &mut norms);
            let f = |v: T| v.to_f64();
            let t: Vec<f64> = (0..c).map(|j| f(gr[j]) * f(yr[j]) / norms[j]).collect();
            for (k, o) in out.iter_mut().enumerate() {
                let lo = k.saturating_sub(p.depth_radius);
                let hi = (k + p.depth_radius + 1).min(c);
                let s: f64 = t[lo..hi].iter().sum();
                let v = f(gr[k]) * norms[k].powf(-p.beta) - 2.0 * p.alpha * p.beta * f(xr[k]) * s;
                *o = cast::<T>(v);
            }
        });
        let dims = Dims::from_slice(ctx.input(1).shape());
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(dx)));
        Ok(())
    })
}

// ---- registration ----------------------------------------------------------------------------

/// The float dtype of input `i` (for ops whose input 0 is a sizes vector).
fn float_input(init: &KernelInit<'_>, i: usize) -> DType {
    init.inputs.get(i).map_or(DType::F32, |t| t.dtype)
}

fn conv_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let p = ConvParams::from_attrs(init.attrs)?;
    let dtype = if init.op == "Conv2DBackpropInput" {
        float_input(init, 1)
    } else {
        init.dtype()
    };
    let act = match init.op {
        "FusedConv2D" => FusedActivation::parse(init.attrs.string("activation")?)?,
        _ => FusedActivation::Linear,
    };
    Ok(dispatch_float!(dtype, T => match init.op {
        "Conv2D" => conv2d_kernel::<T>(p),
        "FusedConv2D" => fused_conv2d_kernel::<T>(p, act),
        "Conv2DBackpropInput" => conv2d_backprop_input_kernel::<T>(p),
        "Conv2DBackpropFilterBias" => conv2d_backprop_filter_bias_kernel::<T>(p),
        _ => conv2d_backprop_filter_kernel::<T>(p),
    }, _ => return Err(unsupported(init))))
}

fn pool_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let p = PoolParams::from_attrs(init.attrs)?;
    let dtype = if init.op == "AvgPoolGrad" {
        float_input(init, 1)
    } else {
        init.dtype()
    };
    Ok(dispatch_float!(dtype, T => match init.op {
        "MaxPool" => pool_kernel::<T>(p, Pool::Max),
        "AvgPool" => pool_kernel::<T>(p, Pool::Avg),
        "MaxPoolGrad" => max_pool_grad_kernel::<T>(p, false),
        "MaxPoolGradGrad" => max_pool_grad_kernel::<T>(p, true),
        _ => avg_pool_grad_kernel::<T>(p),
    }, _ => return Err(unsupported(init))))
}

fn batch_norm_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let p = BatchNormParams::from_attrs(init.attrs)?;
    Ok(dispatch_float!(init.dtype(), T => match init.op {
        "FusedBatchNorm" => fused_batch_norm_kernel::<T>(p),
        _ => fused_batch_norm_grad_kernel::<T>(p),
    }, _ => return Err(unsupported(init))))
}

fn lrn_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let p = LrnParams::from_attrs(init.attrs)?;
    Ok(dispatch_float!(init.dtype(), T => match init.op {
        "LRN" => lrn_kernel::<T>(p),
        _ => lrn_grad_kernel::<T>(p),
    }, _ => return Err(unsupported(init))))
}

pub fn register(r: &mut KernelRegistry) {
    r.cpu("Conv2D", DTypeSet::FLOAT, conv_factory);
    r.cpu("Conv2DBackpropInput", DTypeSet::INDEX, conv_factory);
    r.cpu("Conv2DBackpropFilter", DTypeSet::FLOAT, conv_factory);
    r.cpu("FusedConv2D", DTypeSet::FLOAT, conv_factory);
    r.cpu("Conv2DBackpropFilterBias", DTypeSet::FLOAT, conv_factory);
    for op in ["MaxPool", "AvgPool", "MaxPoolGrad", "MaxPoolGradGrad"] {
        r.cpu(op, DTypeSet::FLOAT, pool_factory);
    }
    r.cpu("AvgPoolGrad", DTypeSet::INDEX, pool_factory);
    r.cpu("FusedBatchNorm", DTypeSet::FLOAT, batch_norm_factory);
    r.cpu("FusedBatchNormGrad", DTypeSet::FLOAT, batch_norm_factory);
    r.cpu("LRN", DTypeSet::FLOAT, lrn_factory);
    r.cpu("LRNGrad", DTypeSet::FLOAT, lrn_factory);
}
