//! Kernels of `tfr_graph::ops::conv3d_ops`: DepthwiseConv2dNative, Conv3D and 3-D pooling with
//! their backprop ops, channels-last only (NHWC, NDHWC), as TensorFlow's CPU kernels.
//!
//! Everything runs on one geometry over three spatial dims ([`Geom`]; a 2-D op has depth 1),
//! whose window arithmetic is `nn_ops::window_geometry`, shared with the shape functions.
//! Convolutions are direct loops over the window taps: a regular convolution adds
//! `x[ic] * filter[tap, ic, :]` to every output channel, a depthwise one to the
//! `multiplier` channels `ic * multiplier ..` of its input channel. Forward and input backprop
//! run in parallel over output rows or images (disjoint writes); the filter backprop sums in
//! a fixed order, so results never depend on scheduling.

use super::cwise_ops::unsupported;
use super::output_alloc::num_elements;
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::FloatElem;
use crate::tensor::{Dims, Tensor};
use rayon::prelude::*;
use tfr_graph::ops::conv3d_ops::{Conv3dParams, Pool3dParams, VolumeFormat};
use tfr_graph::ops::nn_ops::{window_geometry, ConvParams, DataFormat, Padding};
use tfr_graph::{DType, DTypeSet};

type Factory = Result<Box<dyn OpKernel>, String>;

/// Outputs with fewer multiply-adds than this run on the calling thread.
const PAR_WORK: usize = 1 << 16;

fn invalid(m: impl Into<String>) -> KernelError {
    KernelError::invalid(m)
}

fn tensor<T: FloatElem>(dims: &[usize], data: Vec<T>) -> Tensor {
    Tensor::from_parts(Dims::from_slice(dims), T::into_buffer(data))
}

// ---- geometry --------------------------------------------------------------------------------

/// One windowed op over three spatial dims (depth, height, width), channels last.
#[derive(Clone, Debug)]
struct Geom {
    n: usize,
    input: [usize; 3],
    out: [usize; 3],
    window: [usize; 3],
    stride: [usize; 3],
    dilation: [usize; 3],
    pad: [usize; 3],
}

impl Geom {
    fn new(
        n: usize,
        input: [usize; 3],
        window: [usize; 3],
        stride: [usize; 3],
        dilation: [usize; 3],
        padding: Padding,
    ) -> KResult<Geom> {
        let mut out = [0; 3];
        let mut pad = [0; 3];
        for i in 0..3 {
            let (o, before, _) =
                window_geometry(input[i], window[i], stride[i], dilation[i], padding)
                    .map_err(invalid)?;
            out[i] = o;
            pad[i] = before;
        }
        num_elements(&[n, out[0], out[1], out[2]])?;
        Ok(Geom {
            n,
            input,
            out,
            window,
            stride,
            dilation,
            pad,
        })
    }
    fn in_spatial(&self) -> usize {
        self.input.iter().product()
    }
    fn out_spatial(&self) -> usize {
        self.out.iter().product()
    }
    fn taps(&self) -> usize {
        self.window.iter().product()
    }
    /// The input position of tap `t` of output position `o`, when inside the input.
    #[inline]
    fn tap_input(&self, o: usize, t: usize) -> Option<usize> {
        let [_, oh, ow] = self.out;
        let [_, wh, ww] = self.window;
        let pos = [o / (oh * ow), (o / ow) % oh, o % ow];
        let k = [t / (wh * ww), (t / ww) % wh, t % ww];
        let mut at = 0;
        for i in 0..3 {
            let v =
                (pos[i] * self.stride[i] + k[i] * self.dilation[i]) as isize - self.pad[i] as isize;
            if v < 0 || v as usize >= self.input[i] {
                return None;
            }
            at = at * self.input[i] + v as usize;
        }
        Some(at)
    }
    /// Calls `f(tap, input_position)` for each window tap of output position `o` (flat over
    /// the output's spatial dims) that lies inside the input, in scan order (d, h, w).
    #[inline]
    fn for_taps(&self, o: usize, mut f: impl FnMut(usize, usize)) {
        let [_, oh, ow] = self.out;
        let pos = [o / (oh * ow), (o / ow) % oh, o % ow];
        let mut start = [0isize; 3];
        for i in 0..3 {
            start[i] = (pos[i] * self.stride[i]) as isize - self.pad[i] as isize;
        }
        let [_, wh, ww] = self.window;
        let [_, ih, iw] = self.input;
        for kd in 0..self.window[0] {
            let d = start[0] + (kd * self.dilation[0]) as isize;
            if d < 0 || d as usize >= self.input[0] {
                continue;
            }
            for kh in 0..wh {
                let h = start[1] + (kh * self.dilation[1]) as isize;
                if h < 0 || h as usize >= ih {
                    continue;
                }
                for kw in 0..ww {
                    let w = start[2] + (kw * self.dilation[2]) as isize;
                    if w < 0 || w as usize >= iw {
                        continue;
                    }
                    let tap = (kd * wh + kh) * ww + kw;
                    f(tap, (d as usize * ih + h as usize) * iw + w as usize);
                }
            }
        }
    }
}

/// Applies `f(index, chunk)` to each `len`-long chunk of `data`, in parallel when the whole
/// job (`work` operations) is worth it.
fn chunks<T: Send>(
    data: &mut [T],
    len: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    if len == 0 || data.is_empty() {
        return;
    }
    if work >= PAR_WORK && rayon::current_num_threads() > 1 {
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
    }
}

// ---- convolution -----------------------------------------------------------------------------

/// A convolution: `filter` is `[taps, cin, row]`; a regular one has `row = cout` output
/// channels fed by every input channel, a depthwise one `row = multiplier` channels per input
/// channel (`cout = cin * multiplier`).
struct ConvSpec {
    g: Geom,
    cin: usize,
    row: usize,
    depthwise: bool,
}

impl ConvSpec {
    fn cout(&self) -> usize {
        if self.depthwise {
            self.cin * self.row
        } else {
            self.row
        }
    }
    /// The first output channel input channel `ic` feeds.
    #[inline]
    fn out_off(&self, ic: usize) -> usize {
        if self.depthwise {
            ic * self.row
        } else {
            0
        }
    }
    fn work(&self) -> usize {
        self.g.n * self.g.out_spatial() * self.g.taps() * self.cin * self.row
    }
}

fn conv_forward<T: FloatElem>(s: &ConvSpec, x: &[T], f: &[T]) -> KResult<Vec<T>> {
    let (osp, isp, cin, cout, row) = (s.g.out_spatial(), s.g.in_spatial(), s.cin, s.cout(), s.row);
    let mut out = vec![T::zero(); num_elements(&[s.g.n, osp, cout])?];
    chunks(&mut out, cout, s.work(), |k, orow| {
        let (b, o) = (k / osp, k % osp);
        s.g.for_taps(o, |t, i| {
            let xrow = &x[(b * isp + i) * cin..][..cin];
            let fblk = &f[t * cin * row..][..cin * row];
            for (ic, &xv) in xrow.iter().enumerate() {
                let dst = &mut orow[s.out_off(ic)..][..row];
                for (d, &w) in dst.iter_mut().zip(&fblk[ic * row..][..row]) {
                    *d = *d + xv * w;
                }
            }
        });
    });
    Ok(out)
}

fn conv_backprop_input<T: FloatElem>(s: &ConvSpec, f: &[T], dy: &[T]) -> KResult<Vec<T>> {
    let (osp, isp, cin, cout, row) = (s.g.out_spatial(), s.g.in_spatial(), s.cin, s.cout(), s.row);
    let mut dx = vec![T::zero(); num_elements(&[s.g.n, isp, cin])?];
    chunks(&mut dx, isp * cin, s.work(), |b, dxb| {
        for o in 0..osp {
            let dyrow = &dy[(b * osp + o) * cout..][..cout];
            s.g.for_taps(o, |t, i| {
                let fblk = &f[t * cin * row..][..cin * row];
                for ic in 0..cin {
                    let d = &dyrow[s.out_off(ic)..][..row];
                    let w = &fblk[ic * row..][..row];
                    let acc = d.iter().zip(w).fold(T::zero(), |a, (&dv, &wv)| a + dv * wv);
                    dxb[i * cin + ic] = dxb[i * cin + ic] + acc;
                }
            });
        }
    });
    Ok(dx)
}

fn conv_backprop_filter<T: FloatElem>(s: &ConvSpec, x: &[T], dy: &[T]) -> KResult<Vec<T>> {
    let (osp, isp, cin, cout, row) = (s.g.out_spatial(), s.g.in_spatial(), s.cin, s.cout(), s.row);
    let mut df = vec![T::zero(); num_elements(&[s.g.taps(), cin, row])?];
    if df.is_empty() {
        return Ok(df);
    }
    // One tap's block of the filter gradient per task: disjoint writes, a fixed summation order.
    chunks(&mut df, cin * row, s.work(), |t, dft| {
        for b in 0..s.g.n {
            for o in 0..osp {
                let dyrow = &dy[(b * osp + o) * cout..][..cout];
                if let Some(i) = s.g.tap_input(o, t) {
                    let xrow = &x[(b * isp + i) * cin..][..cin];
                    for (ic, &xv) in xrow.iter().enumerate() {
                        let d = &dyrow[s.out_off(ic)..][..row];
                        for (acc, &dv) in dft[ic * row..][..row].iter_mut().zip(d) {
                            *acc = *acc + xv * dv;
                        }
                    }
                }
            }
        }
    });
    Ok(df)
}

/// The dims of a tensor of rank `N`, or an error naming it.
fn dims_n<const N: usize>(t: &Tensor, what: &str, expect: &str) -> KResult<[usize; N]> {
    <[usize; N]>::try_from(t.shape()).map_err(|_| {
        invalid(format!(
            "{what} must be {N}-D {expect}, got shape {:?}",
            t.shape()
        ))
    })
}

/// A sizes input of `N` non-negative entries.
fn sizes_n<const N: usize>(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<[usize; N]> {
    let t = ctx.input(i);
    let v = ctx.input_ints(i)?;
    if t.rank() != 1 || v.len() != N || v.iter().any(|&x| x < 0) {
        return Err(invalid(format!(
            "{what} must be a vector of {N} non-negative sizes, got {v:?}"
        )));
    }
    let mut out = [0; N];
    for (o, &x) in out.iter_mut().zip(&v) {
        *o = x as usize;
    }
    Ok(out)
}

const NHWC: &str = "[batch, height, width, channels] (NHWC)";
const NDHWC: &str = "[batch, depth, height, width, channels] (NDHWC)";
const DW_FILTER: &str = "[height, width, in_channels, channel_multiplier]";
const FILTER3: &str = "[depth, height, width, in_channels, out_channels]";

/// Which convolution a kernel computes, with its attributes.
#[derive(Clone, Copy)]
enum Conv {
    Depthwise(ConvParams),
    Conv3d(Conv3dParams),
}

impl Conv {
    /// The spec for input dims and filter dims, both as read from tensors or sizes inputs.
    fn spec(&self, x: &[usize], f: &[usize]) -> KResult<ConvSpec> {
        let (n, input, c, window, fin, row, stride, dilation, padding) = match self {
            Conv::Depthwise(p) => (
                x[0],
                [1, x[1], x[2]],
                x[3],
                [1, f[0], f[1]],
                f[2],
                f[3],
                [1, p.strides[0], p.strides[1]],
                [1, p.dilations[0], p.dilations[1]],
                p.padding,
            ),
            Conv::Conv3d(p) => (
                x[0],
                [x[1], x[2], x[3]],
                x[4],
                [f[0], f[1], f[2]],
                f[3],
                f[4],
                p.strides,
                p.dilations,
                p.padding,
            ),
        };
        if c != fin {
            return Err(invalid(format!(
                "the input's channels ({c}, shape {x:?}) differ from the filter's in_channels \
                 ({fin}, filter shape {f:?})"
            )));
        }
        let g = Geom::new(n, input, window, stride, dilation, padding)?;
        let depthwise = matches!(self, Conv::Depthwise(_));
        Ok(ConvSpec {
            g,
            cin: c,
            row,
            depthwise,
        })
    }
    fn out_dims(&self, s: &ConvSpec) -> Vec<usize> {
        let [od, oh, ow] = s.g.out;
        match self {
            Conv::Depthwise(_) => vec![s.g.n, oh, ow, s.cout()],
            Conv::Conv3d(_) => vec![s.g.n, od, oh, ow, s.cout()],
        }
    }
    fn x_dims(&self, t: &Tensor, what: &str) -> KResult<Vec<usize>> {
        Ok(match self {
            Conv::Depthwise(_) => dims_n::<4>(t, what, NHWC)?.to_vec(),
            Conv::Conv3d(_) => dims_n::<5>(t, what, NDHWC)?.to_vec(),
        })
    }
    fn f_dims(&self, t: &Tensor) -> KResult<Vec<usize>> {
        Ok(match self {
            Conv::Depthwise(_) => dims_n::<4>(t, "filter", DW_FILTER)?.to_vec(),
            Conv::Conv3d(_) => dims_n::<5>(t, "filter", FILTER3)?.to_vec(),
        })
    }
    fn sizes(&self, ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<Vec<usize>> {
        Ok(match self {
            Conv::Depthwise(_) => sizes_n::<4>(ctx, i, what)?.to_vec(),
            Conv::Conv3d(_) => sizes_n::<5>(ctx, i, what)?.to_vec(),
        })
    }
    fn check_dy(&self, s: &ConvSpec, dy: &Tensor) -> KResult {
        let want = self.out_dims(s);
        if dy.shape() != want.as_slice() {
            return Err(invalid(format!(
                "out_backprop has shape {:?}, but the convolution's output has shape {want:?}",
                dy.shape()
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum ConvKind {
    Forward,
    BackpropInput,
    BackpropFilter,
}

fn conv_kernel<T: FloatElem>(conv: Conv, kind: ConvKind) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        match kind {
            ConvKind::Forward => {
                let s = conv.spec(
                    &conv.x_dims(ctx.input(0), "input")?,
                    &conv.f_dims(ctx.input(1))?,
                )?;
                let x = ctx.input(0).as_slice::<T>()?;
                let out = conv_forward(&s, x, ctx.input(1).as_slice::<T>()?)?;
                ctx.set_output(tensor(&conv.out_dims(&s), out));
            }
            ConvKind::BackpropInput => {
                let xd = conv.sizes(ctx, 0, "input_sizes")?;
                let s = conv.spec(&xd, &conv.f_dims(ctx.input(1))?)?;
                conv.check_dy(&s, ctx.input(2))?;
                let f = ctx.input(1).as_slice::<T>()?;
                let dx = conv_backprop_input(&s, f, ctx.input(2).as_slice::<T>()?)?;
                ctx.set_output(tensor(&xd, dx));
            }
            ConvKind::BackpropFilter => {
                let fd = conv.sizes(ctx, 1, "filter_sizes")?;
                let s = conv.spec(&conv.x_dims(ctx.input(0), "input")?, &fd)?;
                conv.check_dy(&s, ctx.input(2))?;
                let x = ctx.input(0).as_slice::<T>()?;
                let df = conv_backprop_filter(&s, x, ctx.input(2).as_slice::<T>()?)?;
                ctx.set_output(tensor(&fd, df));
            }
        }
        Ok(())
    })
}

// ---- 3-D pooling -----------------------------------------------------------------------------

/// TensorFlow's CPU MaxPool3DGrad routes a window's gradient to every element within this of
/// the window's maximum (`pooling_ops_3d.cc`).
const MAX_POOL3D_GRAD_TOLERANCE: f64 = 1e-5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum PoolKind {
    Max,
    Avg,
    MaxGrad,
    MaxGradGrad,
    AvgGrad,
}

fn pool_geom(p: &Pool3dParams, d: [usize; 5]) -> KResult<Geom> {
    Geom::new(
        d[0],
        [d[1], d[2], d[3]],
        p.ksize,
        p.strides,
        [1; 3],
        p.padding,
    )
}

fn check_shape(t: &Tensor, want: &[usize], what: &str, like: &str) -> KResult {
    if t.shape() != want {
        return Err(invalid(format!(
            "{what} has shape {:?}, but {like} has shape {want:?}",
            t.shape()
        )));
    }
    Ok(())
}

fn pooled_dims(g: &Geom, c: usize) -> [usize; 5] {
    [g.n, g.out[0], g.out[1], g.out[2], c]
}

/// Pooling forward (`Max`, `Avg`) or MaxPool3DGradGrad: one pooled output per window.
fn pool_windows<T: FloatElem>(
    g: &Geom,
    c: usize,
    x: &[T],
    kind: PoolKind,
    y: &[T],
    grad: &[T],
) -> KResult<Vec<T>> {
    let (osp, isp) = (g.out_spatial(), g.in_spatial());
    let mut out = vec![T::zero(); num_elements(&pooled_dims(g, c))?];
    let work = g.n * osp * g.taps() * c;
    chunks(&mut out, c, work, |k, orow| {
        let (b, o) = (k / osp, k % osp);
        let base = b * isp;
        match kind {
            PoolKind::Max => {
                orow.iter_mut().for_each(|v| *v = T::neg_infinity());
                g.for_taps(o, |_, i| {
                    for (v, &xv) in orow.iter_mut().zip(&x[(base + i) * c..][..c]) {
                        if xv > *v {
                            *v = xv;
                        }
                    }
                });
            }
            PoolKind::Avg => {
                let mut count = 0usize;
                g.for_taps(o, |_, i| {
                    count += 1;
                    for (v, &xv) in orow.iter_mut().zip(&x[(base + i) * c..][..c]) {
                        *v = *v + xv;
                    }
                });
                let n = T::from_f64(count.max(1) as f64);
                orow.iter_mut().for_each(|v| *v = *v / n);
            }
            _ => {
                // MaxPool3DGradGrad: `grad` at the first element equal to orig_output.
                let yrow = &y[k * c..][..c];
                let mut found = vec![false; c];
                g.for_taps(o, |_, i| {
                    let (xr, gr) = (&x[(base + i) * c..][..c], &grad[(base + i) * c..][..c]);
                    for ch in 0..c {
                        if !found[ch] && xr[ch] == yrow[ch] {
                            found[ch] = true;
                            orow[ch] = gr[ch];
                        }
                    }
                });
            }
        }
    });
    Ok(out)
}

/// MaxPool3DGrad and AvgPool3DGrad: each window's gradient spread over the input.
fn pool_grad<T: FloatElem>(
    g: &Geom,
    c: usize,
    kind: PoolKind,
    x: &[T],
    y: &[T],
    dy: &[T],
) -> KResult<Vec<T>> {
    let (osp, isp) = (g.out_spatial(), g.in_spatial());
    let mut dx = vec![T::zero(); num_elements(&[g.n, isp, c])?];
    let tol = T::from_f64(MAX_POOL3D_GRAD_TOLERANCE);
    let work = g.n * osp * g.taps() * c;
    chunks(&mut dx, isp * c, work, |b, dxb| {
        for o in 0..osp {
            let k = b * osp + o;
            let dyrow = &dy[k * c..][..c];
            if kind == PoolKind::AvgGrad {
                let mut count = 0usize;
                g.for_taps(o, |_, _| count += 1);
                let n = T::from_f64(count.max(1) as f64);
                g.for_taps(o, |_, i| {
                    for (d, &v) in dxb[i * c..][..c].iter_mut().zip(dyrow) {
                        *d = *d + v / n;
                    }
                });
            } else {
                let yrow = &y[k * c..][..c];
                g.for_taps(o, |_, i| {
                    let xr = &x[(b * isp + i) * c..][..c];
                    for ch in 0..c {
                        if (xr[ch] - yrow[ch]).abs() < tol {
                            dxb[i * c + ch] = dxb[i * c + ch] + dyrow[ch];
                        }
                    }
                });
            }
        }
    });
    Ok(dx)
}

fn pool_kernel<T: FloatElem>(p: Pool3dParams, kind: PoolKind) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        if kind == PoolKind::AvgGrad {
            let d = sizes_n::<5>(ctx, 0, "orig_input_shape")?;
            let g = pool_geom(&p, d)?;
            let pooled = pooled_dims(&g, d[4]);
            check_shape(ctx.input(1), &pooled, "grad", "the pooled orig_input_shape")?;
            let dx = pool_grad::<T>(&g, d[4], kind, &[], &[], ctx.input(1).as_slice::<T>()?)?;
            ctx.set_output(tensor(&d, dx));
            return Ok(());
        }
        let what = if matches!(kind, PoolKind::Max | PoolKind::Avg) {
            "input"
        } else {
            "orig_input"
        };
        let d = dims_n::<5>(ctx.input(0), what, NDHWC)?;
        let g = pool_geom(&p, d)?;
        let pooled = pooled_dims(&g, d[4]);
        let x = ctx.input(0).as_slice::<T>()?;
        let out = match kind {
            PoolKind::Max | PoolKind::Avg => {
                let out = pool_windows(&g, d[4], x, kind, &[], &[])?;
                ctx.set_output(tensor(&pooled, out));
                return Ok(());
            }
            PoolKind::MaxGrad => {
                check_shape(
                    ctx.input(1),
                    &pooled,
                    "orig_output",
                    "the pooled orig_input",
                )?;
                check_shape(ctx.input(2), &pooled, "grad", "the pooled orig_input")?;
                let (y, dy) = (ctx.input(1).as_slice::<T>()?, ctx.input(2).as_slice::<T>()?);
                tensor(&d, pool_grad(&g, d[4], kind, x, y, dy)?)
            }
            _ => {
                check_shape(
                    ctx.input(1),
                    &pooled,
                    "orig_output",
                    "the pooled orig_input",
                )?;
                check_shape(ctx.input(2), &d, "grad", "orig_input")?;
                let (y, gr) = (ctx.input(1).as_slice::<T>()?, ctx.input(2).as_slice::<T>()?);
                tensor(&pooled, pool_windows(&g, d[4], x, kind, y, gr)?)
            }
        };
        ctx.set_output(out);
        Ok(())
    })
}

// ---- registration ----------------------------------------------------------------------------

/// The float dtype of input `i` (for ops whose input 0 is a sizes vector).
fn float_input(init: &KernelInit<'_>, i: usize) -> DType {
    init.inputs.get(i).map_or(DType::F32, |t| t.dtype)
}

fn conv_factory(init: &KernelInit<'_>) -> Factory {
    let conv = if init.op.starts_with("Depthwise") {
        let p = ConvParams::from_attrs(init.attrs)?;
        if p.format != DataFormat::Nhwc {
            return Err(format!(
                "{} on CPU supports only data_format NHWC, got {}",
                init.op,
                p.format.name()
            ));
        }
        Conv::Depthwise(p)
    } else {
        let p = Conv3dParams::from_attrs(init.attrs)?;
        if p.format != VolumeFormat::Ndhwc {
            return Err(format!(
                "{} on CPU supports only data_format NDHWC, got {}",
                init.op,
                p.format.name()
            ));
        }
        Conv::Conv3d(p)
    };
    let (kind, dtype) = if init.op.contains("BackpropInput") {
        (ConvKind::BackpropInput, float_input(init, 1))
    } else if init.op.contains("BackpropFilter") {
        (ConvKind::BackpropFilter, init.dtype())
    } else {
        (ConvKind::Forward, init.dtype())
    };
    Ok(
        dispatch_float!(dtype, T => conv_kernel::<T>(conv, kind), _ => return Err(unsupported(init))),
    )
}

fn pool_factory(init: &KernelInit<'_>) -> Factory {
    let p = Pool3dParams::from_attrs(init.attrs)?;
    if p.format != VolumeFormat::Ndhwc {
        return Err(format!(
            "{} on CPU supports only data_format NDHWC, got {}",
            init.op,
            p.format.name()
        ));
    }
    let (kind, dtype) = match init.op {
        "MaxPool3D" => (PoolKind::Max, init.dtype()),
        "AvgPool3D" => (PoolKind::Avg, init.dtype()),
        "MaxPool3DGrad" => (PoolKind::MaxGrad, init.dtype()),
        "MaxPool3DGradGrad" => (PoolKind::MaxGradGrad, init.dtype()),
        _ => (PoolKind::AvgGrad, float_input(init, 1)),
    };
    Ok(dispatch_float!(dtype, T => pool_kernel::<T>(p, kind), _ => return Err(unsupported(init))))
}

pub fn register(r: &mut KernelRegistry) {
    let i32s = DTypeSet::of(&[DType::I32]);
    r.cpu("DepthwiseConv2dNative", DTypeSet::FLOAT, conv_factory);
    r.cpu("DepthwiseConv2dNativeBackpropInput", i32s, conv_factory);
    r.cpu(
        "DepthwiseConv2dNativeBackpropFilter",
        DTypeSet::FLOAT,
        conv_factory,
    );
    r.cpu("Conv3D", DTypeSet::FLOAT, conv_factory);
    r.cpu("Conv3DBackpropInputV2", DTypeSet::INDEX, conv_factory);
    r.cpu("Conv3DBackpropFilterV2", DTypeSet::FLOAT, conv_factory);
    for op in [
        "MaxPool3D",
        "AvgPool3D",
        "MaxPool3DGrad",
        "MaxPool3DGradGrad",
    ] {
        r.cpu(op, DTypeSet::FLOAT, pool_factory);
    }
    r.cpu("AvgPool3DGrad", i32s, pool_factory);
}
