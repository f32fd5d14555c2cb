//! MaxPool and AvgPool with their gradients (MaxPoolGrad, MaxPoolGradGrad, AvgPoolGrad), in
//! NHWC, over images or rows in parallel.

use super::cwise_ops::unsupported;
use super::simd::simd_fn;
use super::spatial_common::{
    build_zeroed, cast, check_same, checked_len, clip, float_input, for_rows, image_in, image_out,
    sizes4, sizes_nhwc, ConvElem, PAR_WORK,
};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::Tensor;
use std::ops::Range;
use tfr_graph::ops::nn_ops::{DataFormat, PoolParams};
use tfr_graph::DTypeSet;

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

pub fn register(r: &mut KernelRegistry) {
    for op in ["MaxPool", "AvgPool", "MaxPoolGrad", "MaxPoolGradGrad"] {
        r.cpu(op, DTypeSet::FLOAT, pool_factory);
    }
    r.cpu("AvgPoolGrad", DTypeSet::INDEX, pool_factory);
}
