//! Data-movement ops over [`CudaTensor`]s of any dtype that can live on the GPU: casts,
//! fills, transpose, slice, tile, broadcast, concat, pad, gather and segment sums, plus
//! reductions over arbitrary axes (a transpose that puts the reduced axes last, then the row
//! reduction). Shapes and dtypes are checked on the host; each op queues its kernels on the
//! device's stream.

use crate::device::CudaDevice;
use crate::kernels::MAX_RANK;
use crate::kernels_array::{cast_kernel_name, Strided, CAST_TYPES};
use crate::ops::{check_f32, elementwise_config, reduce};
use crate::tensor::{element_size, CudaTensor};
use crate::{CudaError, Result};
use cudarc::driver::PushKernelArg;
use tfr_graph::DType;

/// Row-major strides of `shape`.
pub fn strides_of(shape: &[usize]) -> Vec<i64> {
    let mut st = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for (s, &d) in st.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(d as i64);
    }
    st
}

fn strided(offset: i64, dims: &[usize], strides: &[i64]) -> Result<Strided> {
    if dims.len() > MAX_RANK {
        return Err(CudaError(format!(
            "strided copies support at most {MAX_RANK} dims, got {}",
            dims.len()
        )));
    }
    let mut s = Strided {
        rank: dims.len() as i32,
        offset,
        ..Default::default()
    };
    for (d, (&n, &st)) in dims.iter().zip(strides).enumerate() {
        s.dims[d] = n as i64;
        s.strides[d] = st;
    }
    Ok(s)
}

fn width(dtype: DType) -> Result<usize> {
    element_size(dtype)
}

/// `y[i] = x[offset(i)]` for every element of a new tensor of `shape` (see
/// [`crate::kernels_array`]); `s` must address only elements of `x`.
fn strided_gather(
    dev: &CudaDevice,
    x: &CudaTensor,
    shape: &[usize],
    s: &Strided,
) -> Result<CudaTensor> {
    let y = CudaTensor::uninit(dev, x.dtype(), shape)?;
    let n = y.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev
        .kernels()?
        .get(&format!("strided_gather_b{}", width(x.dtype())?))?;
    let (xp, yp) = (x.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&n).arg(s);
    // SAFETY: the kernel writes y at [0, n) (y's element count) and reads x at offsets
    // `s.offset + sum(coord[d] * s.strides[d])` for coord < s.dims; every caller builds `s` from
    // x's own strides and a window inside x's dims, so each offset is an element of x. Both
    // tensors have the kernel's element width; `Strided` has `TfrStrided`'s layout.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// `y[offset(i)] = x[i]` for every element of `x` (`s.dims` is x's shape); `s` must address
/// only elements of `y`, which has x's dtype.
fn strided_scatter(dev: &CudaDevice, x: &CudaTensor, y: &CudaTensor, s: &Strided) -> Result<()> {
    let n = x.num_elements() as u64;
    if n == 0 {
        return Ok(());
    }
    let f = dev
        .kernels()?
        .get(&format!("strided_scatter_b{}", width(x.dtype())?))?;
    let (xp, yp) = (x.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&n).arg(s);
    // SAFETY: reads x at [0, n) and writes y at offsets built by the callers from y's strides
    // and a window of x's dims placed inside y's dims, so every offset is an element of y;
    // x and y share the element width.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(())
}

/// `x` with its axes permuted: output dim `d` is input dim `perm[d]`.
pub fn transpose(dev: &CudaDevice, x: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
    let r = x.rank();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(CudaError(format!(
            "Transpose: perm {perm:?} is not a permutation of the {r} dims of {:?}",
            x.shape()
        )));
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    let st = strides_of(x.shape());
    let dims: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let strides: Vec<i64> = perm.iter().map(|&p| st[p]).collect();
    strided_gather(dev, x, &dims, &strided(0, &dims, &strides)?)
}

/// The window `[begin, begin + size)` of `x`.
pub fn slice(
    dev: &CudaDevice,
    x: &CudaTensor,
    begin: &[usize],
    size: &[usize],
) -> Result<CudaTensor> {
    let r = x.rank();
    let fits = begin.len() == r
        && size.len() == r
        && (0..r).all(|d| {
            begin[d]
                .checked_add(size[d])
                .is_some_and(|e| e <= x.shape()[d])
        });
    if !fits {
        return Err(CudaError(format!(
            "Slice: begin {begin:?} and size {size:?} do not fit in {:?}",
            x.shape()
        )));
    }
    let st = strides_of(x.shape());
    let offset = begin.iter().zip(&st).map(|(&b, &s)| b as i64 * s).sum();
    strided_gather(dev, x, size, &strided(offset, size, &st)?)
}

/// `x` repeated `multiples[d]` times along each dim `d`.
pub fn tile(dev: &CudaDevice, x: &CudaTensor, multiples: &[usize]) -> Result<CudaTensor> {
    let r = x.rank();
    if multiples.len() != r || 2 * r > MAX_RANK {
        return Err(CudaError(format!(
            "Tile: needs one multiple per dim of {:?} (at most {} dims), got {multiples:?}",
            x.shape(),
            MAX_RANK / 2
        )));
    }
    // Output dim d splits into (repeat, position): the repeat has stride 0.
    let st = strides_of(x.shape());
    let (mut dims, mut strides) = (Vec::new(), Vec::new());
    for d in 0..r {
        dims.extend([multiples[d], x.shape()[d]]);
        strides.extend([0, st[d]]);
    }
    let shape: Vec<usize> = (0..r).map(|d| multiples[d] * x.shape()[d]).collect();
    let y = strided_gather(dev, x, &dims, &strided(0, &dims, &strides)?)?;
    y.reshaped(&shape)
}

/// `x` broadcast (numpy rules) to `shape`.
pub fn broadcast_to(dev: &CudaDevice, x: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
    let r = shape.len();
    let off = r.checked_sub(x.rank());
    let ok = off.is_some_and(|off| {
        x.shape()
            .iter()
            .enumerate()
            .all(|(j, &d)| d == 1 || d == shape[j + off])
    });
    let Some(off) = off.filter(|_| ok) else {
        return Err(CudaError(format!(
            "BroadcastTo: {:?} does not broadcast to {shape:?}",
            x.shape()
        )));
    };
    let st = strides_of(x.shape());
    let mut strides = vec![0i64; r];
    for (j, &d) in x.shape().iter().enumerate() {
        if d != 1 {
            strides[j + off] = st[j];
        }
    }
    strided_gather(dev, x, shape, &strided(0, shape, &strides)?)
}

/// The inputs joined along `axis` (all of one dtype, equal in every other dim).
pub fn concat(dev: &CudaDevice, xs: &[&CudaTensor], axis: usize) -> Result<CudaTensor> {
    let first = xs
        .first()
        .ok_or_else(|| CudaError("ConcatV2: needs at least one input".into()))?;
    let r = first.rank();
    if axis >= r {
        return Err(CudaError(format!(
            "ConcatV2: axis {axis} is out of range for rank {r}"
        )));
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for (i, x) in xs.iter().enumerate() {
        let same = x.rank() == r
            && x.dtype() == first.dtype()
            && (0..r).all(|d| d == axis || x.shape()[d] == first.shape()[d]);
        if !same {
            return Err(CudaError(format!(
                "ConcatV2: input {i} ({} {:?}) does not match input 0 ({} {:?}) off axis {axis}",
                x.dtype(),
                x.shape(),
                first.dtype(),
                first.shape()
            )));
        }
        shape[axis] += x.shape()[axis];
    }
    let y = CudaTensor::uninit(dev, first.dtype(), &shape)?;
    let st = strides_of(&shape);
    let mut at = 0i64;
    for x in xs {
        strided_scatter(dev, x, &y, &strided(at * st[axis], x.shape(), &st)?)?;
        at += x.shape()[axis] as i64;
    }
    Ok(y)
}

/// `x` padded with `value` (a scalar of x's dtype; zeros without one):
/// `paddings[d] = (before, after)`.
pub fn pad(
    dev: &CudaDevice,
    x: &CudaTensor,
    paddings: &[(usize, usize)],
    value: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    if paddings.len() != x.rank() {
        return Err(CudaError(format!(
            "Pad: needs one (before, after) per dim of {:?}, got {paddings:?}",
            x.shape()
        )));
    }
    let shape: Vec<usize> = x
        .shape()
        .iter()
        .zip(paddings)
        .map(|(&d, &(b, a))| d + b + a)
        .collect();
    let y = match value {
        Some(v) if v.dtype() != x.dtype() => {
            return Err(CudaError(format!(
                "Pad: the value is {}, the input {}",
                v.dtype(),
                x.dtype()
            )))
        }
        Some(v) => fill(dev, &shape, v)?,
        None => CudaTensor::zeros(dev, x.dtype(), &shape)?,
    };
    let st = strides_of(&shape);
    let offset = paddings
        .iter()
        .zip(&st)
        .map(|(&(b, _), &s)| b as i64 * s)
        .sum();
    strided_scatter(dev, x, &y, &strided(offset, x.shape(), &st)?)?;
    Ok(y)
}

/// `x` converted to `to` (Rust's `as` semantics; nonzero is true).
pub fn cast(dev: &CudaDevice, x: &CudaTensor, to: DType) -> Result<CudaTensor> {
    let name_of = |d: DType| match d {
        DType::F32 => Some("f32"),
        DType::F64 => Some("f64"),
        DType::I32 => Some("i32"),
        DType::I64 => Some("i64"),
        DType::U8 => Some("u8"),
        DType::Bool => Some("bool"),
        _ => None,
    };
    let (Some(from), Some(to_name)) = (name_of(x.dtype()), name_of(to)) else {
        let names: Vec<&str> = CAST_TYPES.iter().map(|t| t.0).collect();
        return Err(CudaError(format!(
            "Cast: no CUDA kernel from {} to {to} (dtypes: {names:?})",
            x.dtype()
        )));
    };
    let y = CudaTensor::uninit(dev, to, x.shape())?;
    let n = x.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get(&cast_kernel_name(from, to_name))?;
    let (xp, yp) = (x.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&n);
    // SAFETY: `cast_<from>_to_<to>(const From* x, To* y, u64 n)` reads x and writes y at
    // [0, n); x holds n elements of `from` and y was allocated for n elements of `to`.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// A tensor of `shape` whose every element is the one element of `value`.
pub fn fill(dev: &CudaDevice, shape: &[usize], value: &CudaTensor) -> Result<CudaTensor> {
    if value.num_elements() != 1 {
        return Err(CudaError(format!(
            "Fill: the value must be a scalar, got shape {:?}",
            value.shape()
        )));
    }
    let y = CudaTensor::uninit(dev, value.dtype(), shape)?;
    let n = y.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev
        .kernels()?
        .get(&format!("fill_value_b{}", width(value.dtype())?))?;
    let (vp, yp) = (value.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&vp).arg(&yp).arg(&n);
    // SAFETY: reads one element of `value` (checked above) and writes y at [0, n); both have
    // the kernel's element width.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// A tensor like `x` of ones.
pub fn ones_like(dev: &CudaDevice, x: &CudaTensor) -> Result<CudaTensor> {
    let y = CudaTensor::uninit(dev, x.dtype(), x.shape())?;
    let n = y.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let name = format!("fill_const_b{}", width(x.dtype())?);
    let f = dev.kernels()?.get(&name)?;
    let yp = y.ptr();
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&yp).arg(&n);
    // The bits of 1 in each dtype, passed at the kernel's element width.
    let (b8, b32, b64): (u8, u32, u64);
    match x.dtype() {
        DType::F32 => {
            b32 = 1.0f32.to_bits();
            launch.arg(&b32);
        }
        DType::F64 => {
            b64 = 1.0f64.to_bits();
            launch.arg(&b64);
        }
        DType::I32 => {
            b32 = 1;
            launch.arg(&b32);
        }
        DType::I64 => {
            b64 = 1;
            launch.arg(&b64);
        }
        DType::U8 | DType::Bool => {
            b8 = 1;
            launch.arg(&b8);
        }
        other => {
            return Err(CudaError(format!(
                "OnesLike: no CUDA kernel for dtype {other}"
            )))
        }
    }
    // SAFETY: `fill_const_bN(T* y, u64 n, T value)` writes y at [0, n); y holds n elements of
    // width N and the value pushed above has exactly that width.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// `params` gathered along `axis` at `indices` (int32 or int64): shape
/// `params[..axis] + indices + params[axis + 1..]`. An index out of range gives zeros (the
/// CPU kernel reports an error; checking here would wait for the GPU).
pub fn gather(
    dev: &CudaDevice,
    params: &CudaTensor,
    indices: &CudaTensor,
    axis: usize,
) -> Result<CudaTensor> {
    if axis >= params.rank() {
        return Err(CudaError(format!(
            "Gather: axis {axis} is out of range for params of shape {:?}",
            params.shape()
        )));
    }
    let idx = match indices.dtype() {
        DType::I32 => "i32",
        DType::I64 => "i64",
        other => {
            return Err(CudaError(format!(
                "Gather: indices must be int32 or int64, got {other}"
            )))
        }
    };
    let p = params.shape();
    let mut shape = p[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&p[axis + 1..]);
    let y = CudaTensor::uninit(dev, params.dtype(), &shape)?;
    let n = y.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let (nidx, axis_dim) = (indices.num_elements() as u64, p[axis] as u64);
    let inner = p[axis + 1..].iter().product::<usize>() as u64;
    let name = format!("gather_b{}_{idx}", width(params.dtype())?);
    let f = dev.kernels()?.get(&name)?;
    let (pp, ip, yp) = (params.ptr(), indices.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch
        .arg(&pp)
        .arg(&ip)
        .arg(&yp)
        .arg(&n)
        .arg(&nidx)
        .arg(&axis_dim)
        .arg(&inner);
    // SAFETY: writes y at [0, n) with n = outer * nidx * inner; reads indices at [0, nidx) and
    // params at (o * axis_dim + ix) * inner + k only for 0 <= ix < axis_dim, o < outer and
    // k < inner, all inside params (outer * axis_dim * inner elements).
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// Sums of the f32 rows of `data` by segment: `ids` (int32 or int64) has the leading dims of
/// `data`; the result is `[segments] + data[ids.rank..]`. Negative or out-of-range ids are
/// dropped. The summation order depends on scheduling (atomic adds).
pub fn unsorted_segment_sum(
    dev: &CudaDevice,
    data: &CudaTensor,
    ids: &CudaTensor,
    segments: usize,
) -> Result<CudaTensor> {
    check_f32("UnsortedSegmentSum", data)?;
    let k = ids.rank();
    if k > data.rank() || data.shape()[..k] != *ids.shape() {
        return Err(CudaError(format!(
            "UnsortedSegmentSum: segment ids of shape {:?} must be a prefix of the data's {:?}",
            ids.shape(),
            data.shape()
        )));
    }
    let idx = match ids.dtype() {
        DType::I32 => "i32",
        DType::I64 => "i64",
        other => {
            return Err(CudaError(format!(
                "UnsortedSegmentSum: segment ids must be int32 or int64, got {other}"
            )))
        }
    };
    let mut shape = vec![segments];
    shape.extend_from_slice(&data.shape()[k..]);
    let y = CudaTensor::zeros(dev, DType::F32, &shape)?;
    let n = data.num_elements() as u64;
    let inner = data.shape()[k..].iter().product::<usize>() as u64;
    if n == 0 || inner == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get(&format!("segment_sum_f32_{idx}"))?;
    let (xp, ip, yp, segs) = (data.ptr(), ids.ptr(), y.ptr(), segments as u64);
    let mut launch = dev.stream().launch_builder(f);
    launch
        .arg(&xp)
        .arg(&ip)
        .arg(&yp)
        .arg(&n)
        .arg(&inner)
        .arg(&segs);
    // SAFETY: reads data at [0, n) and ids at [0, n / inner) (ids holds the leading dims of
    // data); adds into y at s * inner + j only for 0 <= s < segments and j < inner, inside y's
    // segments * inner elements.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// `op` (a reduction of [`crate::kernels::REDUCTIONS_F32`]) over `axes` (distinct, in range):
/// the reduced axes are moved last by one transpose, then each row is reduced.
pub fn reduce_axes(
    dev: &CudaDevice,
    op: &str,
    x: &CudaTensor,
    axes: &[usize],
    keep_dims: bool,
) -> Result<CudaTensor> {
    let r = x.rank();
    let mut reduced = vec![false; r];
    for &a in axes {
        if a >= r || std::mem::replace(&mut reduced[a], true) {
            return Err(CudaError(format!(
                "{op}: axes {axes:?} must be distinct dims of a rank-{r} tensor"
            )));
        }
    }
    let kept: Vec<usize> = (0..r).filter(|&d| !reduced[d]).collect();
    let gone: Vec<usize> = (0..r).filter(|&d| reduced[d]).collect();
    let perm: Vec<usize> = kept.iter().chain(&gone).copied().collect();
    let rows: usize = kept.iter().map(|&d| x.shape()[d]).product();
    let cols: usize = gone.iter().map(|&d| x.shape()[d]).product();
    let moved = transpose(dev, x, &perm)?;
    let y = reduce(dev, op, &moved.reshaped(&[rows, cols])?, false)?;
    let shape: Vec<usize> = (0..r)
        .filter_map(|d| match (reduced[d], keep_dims) {
            (false, _) => Some(x.shape()[d]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    y.reshaped(&shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides_of(&[]), Vec::<i64>::new());
    }

    #[test]
    fn strided_refuses_too_many_dims() {
        assert!(strided(0, &[1; 9], &[0; 9]).is_err());
        let s = strided(5, &[2, 3], &[3, 1]).unwrap();
        assert_eq!((s.rank, s.offset, s.dims[1], s.strides[0]), (2, 5, 3, 3));
    }
}
