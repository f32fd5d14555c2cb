//! Kernels of `tfr_graph::ops::image_ops`: MirrorPad and MirrorPadGrad, DepthToSpace and
//! SpaceToDepth, SpaceToBatchND and BatchToSpaceND (data movement, every value dtype), and the
//! resizes ResizeBilinear / ResizeNearestNeighbor with their gradients (NHWC).
//!
//! The resize arithmetic follows TensorFlow's CPU kernels (`image_resizer_state.h`,
//! `resize_bilinear_op.cc`, `resize_nearest_neighbor_op.cc`) in f32: the scale is
//! `in / out` (or `(in - 1) / (out - 1)` with `align_corners` and more than one output), a
//! source coordinate is `out * scale` (legacy) or `(out + 0.5) * scale - 0.5` (half-pixel
//! centers; nearest neighbor drops the `- 0.5`), bilinear interpolation clamps its lower and
//! upper neighbors into the image and nearest neighbor rounds (`align_corners`) or floors.

use super::cwise_ops::unsupported;
use super::output_alloc::{alloc, num_elements, zeros};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_any, dispatch_float, dispatch_numeric};
use tfr_graph::ops::image_ops::{
    block_size_attr, check_block_shape, check_mirror_padding, padding_pairs, resize_attrs,
    MirrorMode,
};
use tfr_graph::ops::nn_ops::DataFormat;
use tfr_graph::{DType, DTypeSet, Element};

type Factory = Result<Box<dyn OpKernel>, String>;
/// (before, after) per dim.
type Pairs = Vec<(usize, usize)>;

fn invalid(m: impl Into<String>) -> KernelError {
    KernelError::invalid(m)
}

fn output<T: Element>(dims: &[usize], data: Vec<T>) -> Tensor {
    Tensor::from_parts(Dims::from_slice(dims), T::into_buffer(data))
}

/// The row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The `[n, 2]` (before, after) pairs of integer input `i`, checked against `rank` rows.
fn pairs_input(
    ctx: &KernelContext<'_>,
    i: usize,
    rank: usize,
    what: &str,
) -> KResult<Vec<(usize, usize)>> {
    let t = ctx.input(i);
    if t.shape() != [rank, 2] {
        return Err(invalid(format!(
            "{what} must have shape [{rank}, 2], got shape {:?}",
            t.shape()
        )));
    }
    let v = ctx.input_ints(i)?;
    let pairs = padding_pairs(&v, rank, what).map_err(invalid)?;
    Ok(pairs
        .into_iter()
        .map(|(a, b)| (a as usize, b as usize))
        .collect())
}

// ---- MirrorPad -------------------------------------------------------------------------------

/// Calls `f(k, offset)` for every element `k` (row-major) of the tensor whose axis `a` picks
/// source index `maps[a][j]`; `offset` is that element's offset in the source of `strides`.
fn for_each_mapped(maps: &[Vec<usize>], src_strides: &[usize], mut f: impl FnMut(usize, usize)) {
    let rank = maps.len();
    if rank == 0 {
        f(0, 0);
        return;
    }
    if maps.iter().any(Vec::is_empty) {
        return;
    }
    let mut idx = vec![0usize; rank];
    let mut k = 0;
    loop {
        let base: usize = (0..rank - 1)
            .map(|a| maps[a][idx[a]] * src_strides[a])
            .sum();
        for &j in &maps[rank - 1] {
            f(k, base + j * src_strides[rank - 1]);
            k += 1;
        }
        let mut a = rank - 1;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            idx[a] += 1;
            if idx[a] < maps[a].len() {
                break;
            }
            idx[a] = 0;
        }
    }
}

/// Per axis, the source index of every padded index.
fn mirror_maps(mode: MirrorMode, dims: &[usize], pairs: &[(usize, usize)]) -> Vec<Vec<usize>> {
    dims.iter()
        .zip(pairs)
        .map(|(&d, &(a, b))| {
            (0..d + a + b)
                .map(|o| mode.source(o as i64 - a as i64, d as i64) as usize)
                .collect()
        })
        .collect()
}

fn check_mirror(mode: MirrorMode, dims: &[usize], pairs: &[(usize, usize)]) -> KResult {
    for (axis, (&d, &(a, b))) in dims.iter().zip(pairs).enumerate() {
        check_mirror_padding(mode, axis, (a as i64, b as i64), d).map_err(invalid)?;
    }
    Ok(())
}

fn mirror_pad<T: Element>(mode: MirrorMode) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.input(0);
        let dims = x.shape().to_vec();
        let pairs = pairs_input(ctx, 1, dims.len(), "paddings")?;
        check_mirror(mode, &dims, &pairs)?;
        let maps = mirror_maps(mode, &dims, &pairs);
        let out_dims: Vec<usize> = maps.iter().map(Vec::len).collect();
        let src = x.as_slice::<T>()?;
        let mut out = alloc(num_elements(&out_dims)?)?;
        for_each_mapped(&maps, &strides(&dims), |_, s| out.push(src[s].clone()));
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

fn mirror_pad_grad<T: Numeric>(mode: MirrorMode) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let dy = ctx.input(0);
        let padded = dy.shape().to_vec();
        let pairs = pairs_input(ctx, 1, padded.len(), "paddings")?;
        let mut dims = Vec::with_capacity(padded.len());
        for (axis, (&n, &(a, b))) in padded.iter().zip(&pairs).enumerate() {
            let inner = n.checked_sub(a.saturating_add(b)).ok_or_else(|| {
                invalid(format!(
                    "axis {axis} of the padded gradient has size {n}, less than its paddings \
                     ({a}, {b})"
                ))
            })?;
            dims.push(inner);
        }
        check_mirror(mode, &dims, &pairs)?;
        let maps = mirror_maps(mode, &dims, &pairs);
        let src = dy.as_slice::<T>()?;
        let mut out = vec![T::ZERO; num_elements(&dims)?];
        for_each_mapped(&maps, &strides(&dims), |k, s| out[s] = out[s].add(src[k]));
        ctx.set_output(output(&dims, out));
        Ok(())
    })
}

// ---- DepthToSpace / SpaceToDepth ---------------------------------------------------------------

fn dims4(t: &Tensor, what: &str) -> KResult<[usize; 4]> {
    match *t.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref s => Err(invalid(format!(
            "{what} must be 4-D [batch, height, width, channels] (NHWC), got shape {s:?}"
        ))),
    }
}

fn depth_to_space<T: Element>(bs: usize) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.input(0);
        let [n, h, w, c] = dims4(x, "input")?;
        if c % (bs * bs) != 0 {
            return Err(invalid(format!(
                "the input's depth ({c}) must be divisible by block_size * block_size ({})",
                bs * bs
            )));
        }
        let oc = c / (bs * bs);
        let out_dims = [n, h * bs, w * bs, oc];
        let src = x.as_slice::<T>()?;
        let mut out = alloc(num_elements(&out_dims)?)?;
        for b in 0..n {
            for oy in 0..h * bs {
                for ox in 0..w * bs {
                    let pix = ((b * h + oy / bs) * w + ox / bs) * c;
                    let start = pix + ((oy % bs) * bs + ox % bs) * oc;
                    out.extend_from_slice(&src[start..start + oc]);
                }
            }
        }
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

fn space_to_depth<T: Element>(bs: usize) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.input(0);
        let [n, h, w, c] = dims4(x, "input")?;
        for (what, v) in [("height", h), ("width", w)] {
            if v % bs != 0 {
                return Err(invalid(format!(
                    "the input's {what} ({v}) must be divisible by block_size ({bs})"
                )));
            }
        }
        let out_dims = [n, h / bs, w / bs, c * bs * bs];
        let src = x.as_slice::<T>()?;
        let mut out = alloc(num_elements(&out_dims)?)?;
        for b in 0..n {
            for oy in 0..h / bs {
                for ox in 0..w / bs {
                    for by in 0..bs {
                        for bx in 0..bs {
                            let start = ((b * h + oy * bs + by) * w + ox * bs + bx) * c;
                            out.extend_from_slice(&src[start..start + c]);
                        }
                    }
                }
            }
        }
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

// ---- SpaceToBatchND / BatchToSpaceND -----------------------------------------------------------

/// One SpaceToBatchND mapping between a "space" tensor `[batch, space..., rest...]` and a
/// "batch" tensor `[batch * prod(block), bspace..., rest...]`.
struct SpaceBatch {
    batch: usize,
    space: Vec<usize>,
    bspace: Vec<usize>,
    block: Vec<usize>,
    /// Leading padding (SpaceToBatchND) or crop (BatchToSpaceND) per spatial dim.
    lo: Vec<usize>,
    inner: usize,
}

impl SpaceBatch {
    /// Calls `f(batch_offset, space_offset)` for every `inner`-long run of the batch tensor
    /// that maps inside the space tensor.
    fn walk(&self, mut f: impl FnMut(usize, usize)) {
        let m = self.block.len();
        let prod: usize = self.block.iter().product();
        let bspatial: usize = self.bspace.iter().product();
        let sstride = strides(&self.space);
        let space_len: usize = self.space.iter().product();
        let mut off = vec![0usize; m];
        let mut idx = vec![0usize; m];
        for ob in 0..self.batch * prod {
            let (b, mut blk) = (ob % self.batch, ob / self.batch);
            for i in (0..m).rev() {
                off[i] = blk % self.block[i];
                blk /= self.block[i];
            }
            idx.iter_mut().for_each(|v| *v = 0);
            for k in 0..bspatial {
                let mut s = 0;
                let mut inside = true;
                for i in 0..m {
                    let p = (idx[i] * self.block[i] + off[i]) as isize - self.lo[i] as isize;
                    if p < 0 || p as usize >= self.space[i] {
                        inside = false;
                        break;
                    }
                    s += p as usize * sstride[i];
                }
                if inside {
                    f(
                        (ob * bspatial + k) * self.inner,
                        (b * space_len + s) * self.inner,
                    );
                }
                for i in (0..m).rev() {
                    idx[i] += 1;
                    if idx[i] < self.bspace[i] {
                        break;
                    }
                    idx[i] = 0;
                }
            }
        }
    }
}

/// Reads and checks block_shape (input 1) and paddings/crops (input 2) against `x`.
fn space_batch_args(ctx: &KernelContext<'_>, what: &str) -> KResult<(Vec<usize>, Pairs)> {
    let bt = ctx.input(1);
    if bt.rank() != 1 {
        return Err(invalid(format!(
            "block_shape must be a vector, got shape {:?}",
            bt.shape()
        )));
    }
    let block = ctx.input_ints(1)?;
    check_block_shape(&block).map_err(invalid)?;
    let m = block.len();
    let x = ctx.input(0);
    if x.rank() < m + 1 {
        return Err(invalid(format!(
            "input must have rank at least {} (batch + {m} block dims), got shape {:?}",
            m + 1,
            x.shape()
        )));
    }
    let pairs = pairs_input(ctx, 2, m, what)?;
    Ok((block.iter().map(|&b| b as usize).collect(), pairs))
}

fn space_to_batch<T: Element>(dtype: DType) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (block, pairs) = space_batch_args(ctx, "paddings")?;
        let x = ctx.input(0);
        let d = x.shape();
        let m = block.len();
        let mut bspace = Vec::with_capacity(m);
        for i in 0..m {
            let (lo, hi) = pairs[i];
            let padded = d[i + 1]
                .checked_add(lo)
                .and_then(|v| v.checked_add(hi))
                .ok_or_else(|| invalid(format!("padding spatial dim {i} overflows")))?;
            if padded % block[i] != 0 {
                return Err(invalid(format!(
                    "padded spatial dim {i} ({} + {lo} + {hi} = {padded}) must be divisible by \
                     block_shape[{i}] = {}",
                    d[i + 1],
                    block[i]
                )));
            }
            bspace.push(padded / block[i]);
        }
        let prod = num_elements(&block)?;
        let mut out_dims = vec![d[0]
            .checked_mul(prod)
            .ok_or_else(|| invalid("the output batch overflows"))?];
        out_dims.extend(&bspace);
        out_dims.extend(&d[m + 1..]);
        let sb = SpaceBatch {
            batch: d[0],
            space: d[1..=m].to_vec(),
            bspace,
            lo: pairs.iter().map(|p| p.0).collect(),
            inner: d[m + 1..].iter().product(),
            block,
        };
        let src = x.as_slice::<T>()?;
        let mut out = T::from_buffer(zeros(dtype, &out_dims)?)
            .map_err(|_| KernelError::internal("zeros of the wrong dtype"))?;
        let inner = sb.inner;
        sb.walk(|bo, so| out[bo..bo + inner].clone_from_slice(&src[so..so + inner]));
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

fn batch_to_space<T: Element>(dtype: DType) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (block, pairs) = space_batch_args(ctx, "crops")?;
        let x = ctx.input(0);
        let d = x.shape();
        let m = block.len();
        let prod = num_elements(&block)?;
        if !d[0].is_multiple_of(prod) {
            return Err(invalid(format!(
                "the input's batch ({}) must be divisible by the product of block_shape \
                 {block:?} ({prod})",
                d[0]
            )));
        }
        let mut space = Vec::with_capacity(m);
        for i in 0..m {
            let (lo, hi) = pairs[i];
            let full = d[i + 1]
                .checked_mul(block[i])
                .ok_or_else(|| invalid(format!("spatial dim {i} times its block overflows")))?;
            if lo.saturating_add(hi) > full {
                return Err(invalid(format!(
                    "crops ({lo}, {hi}) of spatial dim {i} exceed its size {} * block_shape[{i}] \
                     {} = {full}",
                    d[i + 1],
                    block[i]
                )));
            }
            space.push(full - lo - hi);
        }
        let mut out_dims = vec![d[0] / prod];
        out_dims.extend(&space);
        out_dims.extend(&d[m + 1..]);
        let sb = SpaceBatch {
            batch: d[0] / prod,
            space,
            bspace: d[1..=m].to_vec(),
            lo: pairs.iter().map(|p| p.0).collect(),
            inner: d[m + 1..].iter().product(),
            block,
        };
        let src = x.as_slice::<T>()?;
        let mut out = T::from_buffer(zeros(dtype, &out_dims)?)
            .map_err(|_| KernelError::internal("zeros of the wrong dtype"))?;
        let inner = sb.inner;
        sb.walk(|bo, so| out[so..so + inner].clone_from_slice(&src[bo..bo + inner]));
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

// ---- resizing --------------------------------------------------------------------------------

/// TensorFlow's `CalculateResizeScale`.
fn resize_scale(in_size: usize, out_size: usize, align_corners: bool) -> f32 {
    if align_corners && out_size > 1 {
        (in_size - 1) as f32 / (out_size - 1) as f32
    } else {
        in_size as f32 / out_size as f32
    }
}

/// One output coordinate's bilinear neighbors and weight of the upper one.
#[derive(Clone, Copy)]
struct Interp {
    lower: usize,
    upper: usize,
    lerp: f32,
}

fn bilinear_weights(out: usize, inp: usize, scale: f32, half_pixel: bool) -> Vec<Interp> {
    (0..out)
        .map(|i| {
            let v = if half_pixel {
                (i as f32 + 0.5) * scale - 0.5
            } else {
                i as f32 * scale
            };
            let f = v.floor();
            Interp {
                lower: (f as i64).max(0) as usize,
                upper: (v.ceil() as i64).min(inp as i64 - 1).max(0) as usize,
                lerp: v - f,
            }
        })
        .collect()
}

fn nearest_indices(out: usize, inp: usize, scale: f32, align: bool, half: bool) -> Vec<usize> {
    (0..out)
        .map(|i| {
            let v = if half {
                (i as f32 + 0.5) * scale
            } else {
                i as f32 * scale
            };
            let j = if align { v.round() } else { v.floor() } as i64;
            j.min(inp as i64 - 1).max(0) as usize
        })
        .collect()
}

/// The positive `[height, width]` of the int32[2] `size` input.
fn size_input(ctx: &KernelContext<'_>, i: usize) -> KResult<[usize; 2]> {
    let t = ctx.input(i);
    if t.shape() != [2] {
        return Err(invalid(format!(
            "size must be a vector of 2 elements (new height, new width), got shape {:?}",
            t.shape()
        )));
    }
    match *ctx.input_ints(i)?.as_slice() {
        [h, w] if h > 0 && w > 0 => Ok([h as usize, w as usize]),
        ref v => Err(invalid(format!("size must be positive, got {v:?}"))),
    }
}

fn check_nonempty(d: [usize; 4], what: &str) -> KResult {
    if d[1] == 0 || d[2] == 0 {
        return Err(invalid(format!(
            "{what} must have a non-zero height and width, got shape {d:?}"
        )));
    }
    Ok(())
}

/// The resize geometry of one axis: per resized index, its source index and weight.
struct Axes {
    y: Vec<Interp>,
    x: Vec<Interp>,
}

fn bilinear_axes(orig: [usize; 4], resized: [usize; 2], align: bool, half: bool) -> Axes {
    let sy = resize_scale(orig[1], resized[0], align);
    let sx = resize_scale(orig[2], resized[1], align);
    Axes {
        y: bilinear_weights(resized[0], orig[1], sy, half),
        x: bilinear_weights(resized[1], orig[2], sx, half),
    }
}

fn resize_bilinear<T: Numeric>(align: bool, half: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let d = dims4(ctx.input(0), "images")?;
        check_nonempty(d, "images")?;
        let [oh, ow] = size_input(ctx, 1)?;
        let [n, h, w, c] = d;
        let ax = bilinear_axes(d, [oh, ow], align, half);
        let src = ctx.input(0).as_slice::<T>()?;
        let at = |b: usize, y: usize, x: usize, ch: usize| {
            src[((b * h + y) * w + x) * c + ch].to_f64() as f32
        };
        let out_dims = [n, oh, ow, c];
        let mut out: Vec<f32> = alloc(num_elements(&out_dims)?)?;
        for b in 0..n {
            for yi in &ax.y {
                for xi in &ax.x {
                    for ch in 0..c {
                        let tl = at(b, yi.lower, xi.lower, ch);
                        let tr = at(b, yi.lower, xi.upper, ch);
                        let bl = at(b, yi.upper, xi.lower, ch);
                        let br = at(b, yi.upper, xi.upper, ch);
                        let top = tl + (tr - tl) * xi.lerp;
                        let bottom = bl + (br - bl) * xi.lerp;
                        out.push(top + (bottom - top) * yi.lerp);
                    }
                }
            }
        }
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

fn resize_bilinear_grad<T: Numeric>(align: bool, half: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let [gn, gh, gw, gc] = dims4(ctx.input(0), "grads")?;
        let d = dims4(ctx.input(1), "original_image")?;
        check_nonempty(d, "original_image")?;
        let [n, h, w, c] = d;
        if gn != n || gc != c {
            return Err(invalid(format!(
                "grads of shape {:?} must have the batch and channels of original_image {d:?}",
                [gn, gh, gw, gc]
            )));
        }
        let ax = bilinear_axes(d, [gh, gw], align, half);
        let g = ctx.input(0).as_slice::<f32>()?;
        let mut out = vec![T::ZERO; num_elements(&d)?];
        let mut add = |b: usize, y: usize, x: usize, ch: usize, v: f32| {
            let k = ((b * h + y) * w + x) * c + ch;
            out[k] = out[k].add(T::from_f64(v as f64));
        };
        let mut k = 0;
        for b in 0..n {
            for yi in &ax.y {
                for xi in &ax.x {
                    for ch in 0..c {
                        let v = g[k];
                        k += 1;
                        let (iy, ix) = (1.0 - yi.lerp, 1.0 - xi.lerp);
                        add(b, yi.lower, xi.lower, ch, v * iy * ix);
                        add(b, yi.lower, xi.upper, ch, v * iy * xi.lerp);
                        add(b, yi.upper, xi.lower, ch, v * yi.lerp * ix);
                        add(b, yi.upper, xi.upper, ch, v * yi.lerp * xi.lerp);
                    }
                }
            }
        }
        ctx.set_output(output(&d, out));
        Ok(())
    })
}

/// Per resized row and column, the original index (`orig` the original image's dims).
fn nearest_axes(orig: [usize; 4], resized: [usize; 2], align: bool, half: bool) -> [Vec<usize>; 2] {
    let sy = resize_scale(orig[1], resized[0], align);
    let sx = resize_scale(orig[2], resized[1], align);
    [
        nearest_indices(resized[0], orig[1], sy, align, half),
        nearest_indices(resized[1], orig[2], sx, align, half),
    ]
}

fn resize_nearest<T: Numeric>(align: bool, half: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let d = dims4(ctx.input(0), "images")?;
        check_nonempty(d, "images")?;
        let [oh, ow] = size_input(ctx, 1)?;
        let [n, h, w, c] = d;
        let [ys, xs] = nearest_axes(d, [oh, ow], align, half);
        let src = ctx.input(0).as_slice::<T>()?;
        let out_dims = [n, oh, ow, c];
        let mut out = alloc(num_elements(&out_dims)?)?;
        for b in 0..n {
            for &y in &ys {
                for &x in &xs {
                    let s = ((b * h + y) * w + x) * c;
                    out.extend_from_slice(&src[s..s + c]);
                }
            }
        }
        ctx.set_output(output(&out_dims, out));
        Ok(())
    })
}

fn resize_nearest_grad<T: Numeric>(align: bool, half: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let [n, gh, gw, c] = dims4(ctx.input(0), "grads")?;
        let [h, w] = size_input(ctx, 1)?;
        let d = [n, h, w, c];
        if gh == 0 || gw == 0 {
            return Err(invalid(format!(
                "grads must have a non-zero height and width, got shape {:?}",
                [n, gh, gw, c]
            )));
        }
        let [ys, xs] = nearest_axes(d, [gh, gw], align, half);
        let g = ctx.input(0).as_slice::<T>()?;
        let mut out = vec![T::ZERO; num_elements(&d)?];
        let mut k = 0;
        for b in 0..n {
            for &y in &ys {
                for &x in &xs {
                    let s = ((b * h + y) * w + x) * c;
                    for ch in 0..c {
                        out[s + ch] = out[s + ch].add(g[k]);
                        k += 1;
                    }
                }
            }
        }
        ctx.set_output(output(&d, out));
        Ok(())
    })
}

// ---- registration ----------------------------------------------------------------------------

fn mirror_factory(init: &KernelInit<'_>) -> Factory {
    let mode = MirrorMode::parse(init.attrs.string("mode")?)?;
    Ok(match init.op {
        "MirrorPad" => {
            dispatch_any!(init.dtype(), T => mirror_pad::<T>(mode), _ => return Err(unsupported(init)))
        }
        _ => dispatch_numeric!(init.dtype(), T => mirror_pad_grad::<T>(mode),
            _ => return Err(unsupported(init))),
    })
}

fn block_factory(init: &KernelInit<'_>) -> Factory {
    let bs = block_size_attr(init.attrs)?;
    let format = DataFormat::parse(init.attrs.string("data_format")?)?;
    if format != DataFormat::Nhwc {
        return Err(format!(
            "{} on CPU supports only data_format NHWC, got {}",
            init.op,
            format.name()
        ));
    }
    Ok(match init.op {
        "DepthToSpace" => {
            dispatch_any!(init.dtype(), T => depth_to_space::<T>(bs), _ => return Err(unsupported(init)))
        }
        _ => {
            dispatch_any!(init.dtype(), T => space_to_depth::<T>(bs), _ => return Err(unsupported(init)))
        }
    })
}

fn space_batch_factory(init: &KernelInit<'_>) -> Factory {
    let dtype = init.dtype();
    Ok(match init.op {
        "SpaceToBatchND" => {
            dispatch_any!(dtype, T => space_to_batch::<T>(dtype), _ => return Err(unsupported(init)))
        }
        _ => {
            dispatch_any!(dtype, T => batch_to_space::<T>(dtype), _ => return Err(unsupported(init)))
        }
    })
}

fn resize_factory(init: &KernelInit<'_>) -> Factory {
    let (align, half) = resize_attrs(init.attrs)?;
    Ok(match init.op {
        "ResizeBilinear" => dispatch_numeric!(init.dtype(), T => resize_bilinear::<T>(align, half),
            _ => return Err(unsupported(init))),
        "ResizeBilinearGrad" => {
            let dt = init.inputs.get(1).map_or(DType::F32, |t| t.dtype);
            dispatch_float!(dt, T => resize_bilinear_grad::<T>(align, half),
                _ => return Err(unsupported(init)))
        }
        "ResizeNearestNeighbor" => {
            dispatch_numeric!(init.dtype(), T => resize_nearest::<T>(align, half),
            _ => return Err(unsupported(init)))
        }
        _ => dispatch_numeric!(init.dtype(), T => resize_nearest_grad::<T>(align, half),
            _ => return Err(unsupported(init))),
    })
}

pub fn register(r: &mut KernelRegistry) {
    r.cpu("MirrorPad", DTypeSet::ANY, mirror_factory);
    r.cpu("MirrorPadGrad", DTypeSet::NUMERIC, mirror_factory);
    r.cpu("DepthToSpace", DTypeSet::ANY, block_factory);
    r.cpu("SpaceToDepth", DTypeSet::ANY, block_factory);
    r.cpu("SpaceToBatchND", DTypeSet::ANY, space_batch_factory);
    r.cpu("BatchToSpaceND", DTypeSet::ANY, space_batch_factory);
    r.cpu("ResizeBilinear", DTypeSet::NUMERIC, resize_factory);
    r.cpu(
        "ResizeBilinearGrad",
        DTypeSet::of(&[DType::F32]),
        resize_factory,
    );
    r.cpu("ResizeNearestNeighbor", DTypeSet::NUMERIC, resize_factory);
    r.cpu(
        "ResizeNearestNeighborGrad",
        DTypeSet::NUMERIC,
        resize_factory,
    );
}
