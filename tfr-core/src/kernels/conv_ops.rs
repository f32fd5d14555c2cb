//! Conv2D and its two backprops (and FusedConv2D, Conv2DBackpropFilterBias), in NHWC. The
//! window arithmetic (output sizes, SAME padding) is `tfr_graph::ops::nn_ops::window_geometry`,
//! shared with the shape functions.
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
//! channel) run as the direct loops of `conv_direct`.

use super::conv_direct::{direct_filter_rows, direct_forward_rows};
use super::cwise_ops::unsupported;
use super::simd::simd_fn;
use super::spatial_common::{
    build_zeroed, checked_len, clip, dims4, float_input, for_rows, gemm_into, image_in, image_out,
    sizes4, sizes_nhwc, vector, ConvElem, Mat, PAR_WORK,
};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use rayon::prelude::*;
use std::ops::Range;
use tfr_graph::ops::nn_ops::{ConvParams, DataFormat, FusedActivation};
use tfr_graph::DTypeSet;

/// Bytes of patch matrix per chunk of output rows (about half of a core's L2).
const PATCH_BYTES: usize = 384 << 10;
/// Convolutions with fewer products per output (`kh * kw * in_channels`) than this run as
/// direct loops: the patch matrix would be too thin for gemm to pay off.
const DIRECT_K: usize = 64;
/// Output rows per task of the direct convolution (a multiple of its tiles' 12 and 24 pixels).
const DIRECT_ROWS: usize = 96;
/// Output rows per call of the direct filter backprop.
const DIRECT_FILTER_ROWS: usize = 384;

// ---- convolution -----------------------------------------------------------------------------

/// The sizes of one convolution, in NHWC.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvGeom {
    pub(super) n: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c: usize,
    pub(super) fh: usize,
    pub(super) fw: usize,
    pub(super) o: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) pad_t: usize,
    pub(super) pad_l: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) dh: usize,
    pub(super) dw: usize,
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
    pub(super) fn k(&self) -> usize {
        self.fh * self.fw * self.c
    }
    pub(super) fn rows(&self) -> usize {
        self.n * self.oh * self.ow
    }
    pub(super) fn out_dims(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.o]
    }
    /// 1x1 filter, stride 1 (hence no padding): the input is its own patch matrix.
    pub(super) fn direct(&self) -> bool {
        self.k() < DIRECT_K
    }
    pub(super) fn pointwise(&self) -> bool {
        self.fh == 1 && self.fw == 1 && self.sh == 1 && self.sw == 1
    }
    /// Rows per chunk: a patch matrix of about `PATCH_BYTES`, at least 8 rows.
    pub(super) fn chunk<T>(&self) -> usize {
        (PATCH_BYTES / (self.k() * std::mem::size_of::<T>()).max(1)).max(8)
    }
    pub(super) fn work(&self) -> usize {
        self.rows().saturating_mul(self.k()).saturating_mul(self.o)
    }

    /// Copies the patches of output rows `rows` (global row = (n * oh + y) * ow + x) into
    /// `col`, one `k`-long row each, zeros where the window hangs over the padding.
    pub(super) fn im2col<T: Copy + num_traits::Zero>(
        &self,
        x: &[T],
        rows: Range<usize>,
        col: &mut [T],
    ) {
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
    pub(super) fn col2im<T: Copy + std::ops::Add<Output = T>>(
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

// ---- registration ----------------------------------------------------------------------------

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

pub fn register(r: &mut KernelRegistry) {
    r.cpu("Conv2D", DTypeSet::FLOAT, conv_factory);
    r.cpu("Conv2DBackpropInput", DTypeSet::INDEX, conv_factory);
    r.cpu("Conv2DBackpropFilter", DTypeSet::FLOAT, conv_factory);
    r.cpu("FusedConv2D", DTypeSet::FLOAT, conv_factory);
    r.cpu("Conv2DBackpropFilterBias", DTypeSet::FLOAT, conv_factory);
}
