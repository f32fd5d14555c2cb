//! Kernels for constants, feeds, identity, the shape-only ops (Reshape, ExpandDims, Squeeze,
//! Shape, Size, Rank), Fill/ZerosLike/OnesLike and Range, and the data-movement helpers that
//! `strided_view_ops`, `concat_split_ops` and `gather_ops` share.
//!
//! Data-movement kernels are written once, generically over the element type (`T: Element`),
//! and dispatched on the tensor's dtype at run time, so every value dtype works. They copy
//! contiguous runs (`extend_from_slice`) wherever the layout allows: a strided view is first
//! coalesced so that its innermost contiguous block is as long as possible, and kernels whose
//! output equals their input (identity perms, full slices, reshapes) return the input buffer
//! without copying.

use super::cwise_ops::cast_tensor;
use super::output_alloc::{alloc, num_elements};
use crate::dispatch_numeric;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use smallvec::SmallVec;
use tfr_graph::{DType, DTypeSet, Element};

/// Runs `$body` with `$T` bound to the element type of `$dtype` (any dtype).
macro_rules! typed {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::dispatch_any!($dtype, $T => $body, _ => return Err($crate::error::KernelError::internal("unhandled dtype")))
    };
}
pub(super) use typed;

// ---- helpers ----------------------------------------------------------------------------------

pub(super) type Factory = Result<Box<dyn OpKernel>, String>;

pub(super) fn stateless(f: fn(&mut KernelContext<'_>) -> KResult) -> Factory {
    Ok(Box::new(f))
}

pub(super) fn invalid(message: String) -> KernelError {
    KernelError::invalid(message)
}

/// Row-major strides (in elements) of a shape.
pub(super) fn strides_of(shape: &[usize]) -> SmallVec<[usize; 8]> {
    let mut s: SmallVec<[usize; 8]> = SmallVec::from_elem(1, shape.len());
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

pub(super) fn from_vec<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_parts(shape.into(), T::into_buffer(v))
}

/// The integer values of input `i`, which must be a 1-D tensor (`name` is its role).
pub(super) fn vector_arg(ctx: &KernelContext<'_>, i: usize, name: &str) -> KResult<Vec<i64>> {
    let t = ctx.input(i);
    if t.rank() != 1 {
        return Err(invalid(format!(
            "{name} must be a 1-D tensor, got shape {:?}",
            t.shape()
        )));
    }
    ctx.input_ints(i)
        .map_err(|e| invalid(format!("{name}: {}", e.message)))
}

/// The single integer of input `i` (a scalar or a one-element vector).
pub(super) fn scalar_arg(ctx: &KernelContext<'_>, i: usize, name: &str) -> KResult<i64> {
    let t = ctx.input(i);
    if t.num_elements() != 1 || t.rank() > 1 {
        return Err(invalid(format!(
            "{name} must be a scalar, got shape {:?}",
            t.shape()
        )));
    }
    ctx.input_ints(i)
        .map_err(|e| invalid(format!("{name}: {}", e.message)))?
        .first()
        .copied()
        .ok_or_else(|| invalid(format!("{name} is empty")))
}

/// Normalizes `axis` against `rank` (an axis in `[-rank, rank)`).
pub(super) fn norm_axis(axis: i64, rank: usize, what: &str) -> KResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(invalid(format!(
            "{what} {axis} is out of range for rank {rank}: expected a value in [{}, {r})",
            -r
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// The first element of a tensor (callers check that it has one).
pub(super) fn first<T: Element>(t: &Tensor) -> KResult<T> {
    t.as_slice::<T>()?
        .first()
        .cloned()
        .ok_or_else(|| invalid("expected a value, got an empty tensor".into()))
}

/// Integer indices as i64, read through a typed slice (no per-element dtype match).
pub(super) fn index_values(t: &Tensor, name: &str) -> KResult<Vec<i64>> {
    match t.dtype() {
        DType::I32 => Ok(t.as_slice::<i32>()?.iter().map(|&v| v as i64).collect()),
        DType::I64 => Ok(t.as_slice::<i64>()?.to_vec()),
        DType::U8 => Ok(t.as_slice::<u8>()?.iter().map(|&v| v as i64).collect()),
        other => Err(invalid(format!("{name} must be integer, got {other}"))),
    }
}

/// A strided view of `src` copied out in row-major order of `shape`: element `(i0, i1, ..)`
/// comes from `src[offset + Σ ik * strides[k]]`. Dims are coalesced first, so a run that is
/// contiguous in `src` is copied as one slice; zero strides repeat, stride -1 reverses.
pub(super) fn gather_strided<T: Element>(
    src: &[T],
    offset: usize,
    shape: &[usize],
    strides: &[isize],
) -> KResult<Vec<T>> {
    let total = num_elements(shape)?;
    let mut out = alloc::<T>(total)?;
    if total == 0 {
        return Ok(out);
    }
    let mut dims: SmallVec<[(usize, isize); 8]> = SmallVec::new();
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        match dims.last_mut() {
            Some(last) if last.1 == s * n as isize => {
                last.0 *= n;
                last.1 = s;
            }
            _ => dims.push((n, s)),
        }
    }
    let Some(&(inner, step)) = dims.last() else {
        out.push(src[offset].clone());
        return Ok(out);
    };
    let outer = &dims[..dims.len() - 1];
    let mut idx: SmallVec<[usize; 8]> = SmallVec::from_elem(0, outer.len());
    let mut base = offset as isize;
    loop {
        let b = base as usize;
        match step {
            1 => out.extend_from_slice(&src[b..b + inner]),
            0 => out.extend(std::iter::repeat_n(src[b].clone(), inner)),
            -1 => {
                let start = out.len();
                out.extend_from_slice(&src[b + 1 - inner..=b]);
                out[start..].reverse();
            }
            _ => {
                let mut p = base;
                for _ in 0..inner {
                    out.push(src[p as usize].clone());
                    p += step;
                }
            }
        }
        let mut d = outer.len();
        loop {
            if d == 0 {
                return Ok(out);
            }
            d -= 1;
            idx[d] += 1;
            base += outer[d].1;
            if idx[d] < outer[d].0 {
                break;
            }
            base -= outer[d].1 * outer[d].0 as isize;
            idx[d] = 0;
        }
    }
}

/// A strided view of `x` (see [`gather_strided`]) as a new tensor of shape `out_shape`, which
/// has as many elements as `shape`.
pub(super) fn strided_copy(
    x: &Tensor,
    offset: usize,
    shape: &[usize],
    strides: &[isize],
    out_shape: &[usize],
) -> KResult<Tensor> {
    typed!(x.dtype(), T => {
        let v = gather_strided(x.as_slice::<T>()?, offset, shape, strides)?;
        Ok(from_vec(out_shape, v))
    })
}

/// For each of `outer` rows, the `chunks[k]` elements of row `o` of every `parts[k]` in turn
/// (concatenation along an axis, or stacking when chunks are equal).
pub(super) fn interleave<T: Element>(
    parts: &[&[T]],
    chunks: &[usize],
    outer: usize,
) -> KResult<Vec<T>> {
    let row: usize = chunks.iter().sum();
    let mut out = alloc::<T>(row * outer)?;
    for o in 0..outer {
        for (p, &c) in parts.iter().zip(chunks) {
            out.extend_from_slice(&p[o * c..(o + 1) * c]);
        }
    }
    Ok(out)
}

/// The inverse of [`interleave`]: rows of `row` elements of `src`, each cut into pieces
/// `(start, len)`; piece `k` of every row goes to output `k`.
pub(super) fn deinterleave<T: Element>(
    src: &[T],
    row: usize,
    outer: usize,
    pieces: &[(usize, usize)],
) -> KResult<Vec<Vec<T>>> {
    let mut outs = pieces
        .iter()
        .map(|&(_, len)| alloc::<T>(len * outer))
        .collect::<KResult<Vec<_>>>()?;
    for o in 0..outer {
        let r = &src[o * row..(o + 1) * row];
        for (out, &(start, len)) in outs.iter_mut().zip(pieces) {
            out.extend_from_slice(&r[start..start + len]);
        }
    }
    Ok(outs)
}

/// `[i, j, ..]`: the position of flat element `flat` in a tensor of shape `shape`.
pub(super) fn position(flat: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    let mut rest = flat;
    for d in (0..shape.len()).rev() {
        if shape[d] > 0 {
            idx[d] = rest % shape[d];
            rest /= shape[d];
        }
    }
    let parts: Vec<String> = idx.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

// ---- constants, feeds, identity ---------------------------------------------------------------

fn const_kernel(init: &KernelInit<'_>) -> Factory {
    let value = Tensor::from_value(init.attrs.tensor("value")?);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        ctx.set_output(value.clone());
        Ok(())
    }))
}

fn arg_kernel(init: &KernelInit<'_>) -> Factory {
    let index = *init.attrs.int("index")? as usize;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let t = ctx
            .feeds
            .get(index)
            .cloned()
            .ok_or_else(|| KernelError::internal(format!("feed {index} missing")))?;
        ctx.set_output(t);
        Ok(())
    }))
}

fn placeholder_kernel(init: &KernelInit<'_>) -> Factory {
    let expected = init
        .outputs
        .first()
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(Box::new(move |_: &mut KernelContext<'_>| {
        Err(KernelError::invalid(format!(
            "placeholder must be fed a value of {expected}"
        )))
    }))
}

fn identity(ctx: &mut KernelContext<'_>) -> KResult {
    let x = ctx.take_input(0);
    ctx.set_output(x);
    Ok(())
}

fn no_op(_: &mut KernelContext<'_>) -> KResult {
    Ok(())
}

// ---- shape-only ops (zero-copy) ---------------------------------------------------------------

fn reshape(ctx: &mut KernelContext<'_>) -> KResult {
    let target = vector_arg(ctx, 1, "shape")?;
    let x = ctx.take_input(0);
    let n = x.num_elements();
    let mut infer = None;
    let mut known = 1usize;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => infer = Some(i),
            -1 => {
                return Err(invalid(format!(
                    "at most one dim of the target shape may be -1, got {target:?}"
                )))
            }
            d if d < 0 => {
                return Err(invalid(format!(
                    "target shape {target:?} has a negative dim {d}; only -1 is allowed"
                )))
            }
            d => {
                known = known.checked_mul(d as usize).ok_or_else(|| {
                    invalid(format!("target shape {target:?} has too many elements"))
                })?
            }
        }
    }
    let mut dims: Dims = target.iter().map(|&d| d.max(0) as usize).collect();
    let fits = match infer {
        Some(i) if known != 0 && n.is_multiple_of(known) => {
            dims[i] = n / known;
            true
        }
        Some(_) => false,
        None => known == n,
    };
    if !fits {
        return Err(invalid(format!(
            "cannot reshape a tensor of {n} elements (shape {:?}) to shape {target:?}, {}",
            x.shape(),
            match infer {
                Some(_) if known == 0 => {
                    "whose -1 dim cannot be inferred next to a dim of size 0".to_string()
                }
                Some(_) => format!("which needs a multiple of {known} elements to fill the -1 dim"),
                None => format!("which has {known} elements"),
            }
        )));
    }
    ctx.set_output(x.reshaped(&dims)?);
    Ok(())
}

fn expand_dims(ctx: &mut KernelContext<'_>) -> KResult {
    let axis = scalar_arg(ctx, 1, "axis")?;
    let x = ctx.take_input(0);
    let r = x.rank();
    let a = norm_axis(axis, r + 1, "axis").map_err(|_| {
        invalid(format!(
            "axis {axis} is out of range for an input of shape {:?}: expected a value in [{}, {r}]",
            x.shape(),
            -(r as i64) - 1
        ))
    })?;
    let mut dims: Dims = x.dims().clone();
    dims.insert(a, 1);
    ctx.set_output(x.reshaped(&dims)?);
    Ok(())
}

fn squeeze_kernel(init: &KernelInit<'_>) -> Factory {
    let axes = init.attrs.ints("squeeze_dims")?.clone();
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.take_input(0);
        let shape = x.shape();
        let mut chosen = vec![axes.is_empty(); shape.len()];
        for &a in &axes {
            let i = norm_axis(a, shape.len(), "squeeze dim")
                .map_err(|e| invalid(format!("{} (input shape {shape:?})", e.message)))?;
            if shape[i] != 1 {
                return Err(invalid(format!(
                    "cannot squeeze dim {i} of input shape {shape:?}: expected size 1, got {}",
                    shape[i]
                )));
            }
            chosen[i] = true;
        }
        let dims: Dims = shape
            .iter()
            .zip(&chosen)
            .filter(|&(&d, &c)| !(c && d == 1))
            .map(|(&d, _)| d)
            .collect();
        ctx.set_output(x.reshaped(&dims)?);
        Ok(())
    }))
}

// ---- fill, zeros/ones like, shape, size, rank, range ------------------------------------------

/// A tensor of `shape` with every element `v` (a one-element tensor).
fn filled(v: &Tensor, shape: &[usize]) -> KResult<Tensor> {
    let total = num_elements(shape)?;
    typed!(v.dtype(), T => {
        let x = first::<T>(v)?;
        let mut data = alloc::<T>(total)?;
        data.resize(total, x);
        Ok(from_vec(shape, data))
    })
}

fn fill(ctx: &mut KernelContext<'_>) -> KResult {
    let dims = vector_arg(ctx, 0, "dims")?;
    let v = ctx.input(1);
    if v.num_elements() != 1 || v.rank() > 0 {
        return Err(invalid(format!(
            "value must be a scalar, got shape {:?}",
            v.shape()
        )));
    }
    if let Some(&d) = dims.iter().find(|&&d| d < 0) {
        return Err(invalid(format!(
            "dims must be non-negative, got {d} in {dims:?}"
        )));
    }
    let shape: Dims = dims.iter().map(|&d| d as usize).collect();
    let y = filled(v, &shape)?;
    ctx.set_output(y);
    Ok(())
}

fn zeros_like(ctx: &mut KernelContext<'_>) -> KResult {
    let x = ctx.input(0);
    let y = Tensor::zeros(x.dtype(), x.shape());
    ctx.set_output(y);
    Ok(())
}

fn ones_like(ctx: &mut KernelContext<'_>) -> KResult {
    let x = ctx.input(0);
    let one = cast_tensor(&Tensor::scalar(1.0f64), x.dtype())?;
    let y = filled(&one, x.shape())?;
    ctx.set_output(y);
    Ok(())
}

fn out_type(init: &KernelInit<'_>) -> Result<DType, String> {
    match *init.attrs.dtype("out_type")? {
        t @ (DType::I32 | DType::I64) => Ok(t),
        t => Err(format!("out_type must be int32 or int64, got {t}")),
    }
}

/// Integers as a tensor of `dtype` (int32 or int64); an error when one does not fit int32.
fn int_tensor(shape: &[usize], values: &[usize], dtype: DType, what: &str) -> KResult<Tensor> {
    Ok(match dtype {
        DType::I32 => {
            let v = values
                .iter()
                .map(|&d| i32::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    invalid(format!(
                        "{what} {values:?} does not fit int32; use out_type int64"
                    ))
                })?;
            from_vec(shape, v)
        }
        _ => from_vec(shape, values.iter().map(|&d| d as i64).collect::<Vec<_>>()),
    })
}

fn shape_kernel(init: &KernelInit<'_>) -> Factory {
    let t = out_type(init)?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.input(0);
        let y = int_tensor(&[x.rank()], x.shape(), t, "shape")?;
        ctx.set_output(y);
        Ok(())
    }))
}

fn size_kernel(init: &KernelInit<'_>) -> Factory {
    let t = out_type(init)?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.input(0);
        let y = int_tensor(&[], &[x.num_elements()], t, "size")?;
        ctx.set_output(y);
        Ok(())
    }))
}

fn rank(ctx: &mut KernelContext<'_>) -> KResult {
    let r = ctx.input(0).rank() as i32;
    ctx.set_output(Tensor::scalar(r));
    Ok(())
}

/// TensorFlow's Range requires `start <= limit` when `delta > 0` and `start >= limit` when
/// `delta < 0` (an error, where numpy's arange would be empty).
fn range_direction<V: PartialOrd + Default + std::fmt::Display>(s: V, l: V, d: V) -> KResult {
    if d > V::default() && s > l {
        return Err(invalid(format!(
            "Requires start <= limit when delta > 0: {s}/{l}"
        )));
    }
    if d < V::default() && s < l {
        return Err(invalid(format!(
            "Requires start >= limit when delta < 0: {s}/{l}"
        )));
    }
    Ok(())
}

fn range_typed<T: Numeric>(ctx: &mut KernelContext<'_>) -> KResult {
    for (k, name) in ["start", "limit", "delta"].iter().enumerate() {
        let t = ctx.input(k);
        if t.num_elements() != 1 || t.rank() > 0 {
            return Err(invalid(format!(
                "{name} must be a scalar, got shape {:?}",
                t.shape()
            )));
        }
    }
    let y = if T::IS_FLOAT {
        let [s, l, d] = [0, 1, 2].map(|k| ctx.input(k).get_f64(0));
        if d == 0.0 {
            return Err(invalid(format!(
                "delta must not be 0 (start {s}, limit {l})"
            )));
        }
        range_direction(s, l, d)?;
        // As TensorFlow: ceil(|(limit - start) / delta|) computed in T (in f32, 0.3 / 0.1 is
        // 3, where f64 gives 3.0000001 and one more element).
        let q = T::from_f64(l).sub(T::from_f64(s)).div(T::from_f64(d));
        let c = q.to_f64().abs().ceil();
        if !c.is_finite() || c >= isize::MAX as f64 {
            return Err(invalid(format!(
                "range from {s} to {l} by {d} does not have a finite size"
            )));
        }
        let count = c.max(0.0) as usize;
        let mut v = alloc::<T>(count)?;
        v.extend((0..count).map(|i| T::from_f64(s + i as f64 * d)));
        from_vec(&[count], v)
    } else {
        // Exact integer arithmetic (i64 values beyond 2^53 must not go through f64).
        let [s, l, d] = [0, 1, 2].map(|k| ctx.input(k).get_i64(0) as i128);
        if d == 0 {
            return Err(invalid(format!(
                "delta must not be 0 (start {s}, limit {l})"
            )));
        }
        range_direction(s, l, d)?;
        let diff = l - s;
        let count = if diff == 0 || (diff > 0) != (d > 0) {
            0
        } else {
            usize::try_from((diff.abs() + d.abs() - 1) / d.abs())
                .map_err(|_| invalid(format!("range from {s} to {l} is too large")))?
        };
        let mut v = alloc::<i64>(count)?;
        v.extend((0..count).map(|i| (s + i as i128 * d) as i64));
        cast_tensor(&from_vec(&[count], v), T::DTYPE)?
    };
    ctx.set_output(y);
    Ok(())
}

fn range_kernel(init: &KernelInit<'_>) -> Factory {
    Ok(
        dispatch_numeric!(init.dtype(), T => Box::new(range_typed::<T>) as Box<dyn OpKernel>,
        _ => return Err(super::cwise_ops::unsupported(init))),
    )
}

pub fn register(r: &mut KernelRegistry) {
    let all = DTypeSet::of(&DType::ALL);
    let any = DTypeSet::ANY;
    // Shape-only ops move strings too (no element is read).
    let moves = DTypeSet::ANY_OR_STRING;
    r.cpu("Const", all, const_kernel);
    r.cpu(tfr_graph::passes::ARG_OP, all, arg_kernel);
    r.cpu("Placeholder", all, placeholder_kernel);
    r.cpu("Identity", all, |_| stateless(identity));
    r.cpu("StopGradient", all, |_| stateless(identity));
    r.cpu("NoOp", all, |_| stateless(no_op));

    r.cpu("Reshape", moves, |_| stateless(reshape));
    r.cpu("ExpandDims", moves, |_| stateless(expand_dims));
    r.cpu("Squeeze", moves, squeeze_kernel);
    r.cpu("Fill", DTypeSet::INDEX, |_| stateless(fill));
    r.cpu("ZerosLike", any, |_| stateless(zeros_like));
    r.cpu("OnesLike", any, |_| stateless(ones_like));
    r.cpu("Shape", moves, shape_kernel);
    r.cpu("Size", moves, size_kernel);
    r.cpu("Rank", moves, |_| stateless(rank));
    r.cpu("Range", DTypeSet::NUMERIC, range_kernel);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_gather_coalesces_and_handles_negative_and_zero_strides() {
        let src: Vec<i32> = (0..12).collect();
        // Transpose of [3, 4] -> [4, 3].
        let t = gather_strided(&src, 0, &[4, 3], &[1, 4]).unwrap();
        assert_eq!(t, vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // Reverse the last axis of [3, 4].
        let r = gather_strided(&src, 3, &[3, 4], &[4, -1]).unwrap();
        assert_eq!(r, vec![3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8]);
        // Broadcast a row [4] to [2, 4] and a column to [3, 2].
        let b = gather_strided(&src[..4], 0, &[2, 4], &[0, 1]).unwrap();
        assert_eq!(b, vec![0, 1, 2, 3, 0, 1, 2, 3]);

        let c = gather_strided(&src[..3], 0, &[3, 2], &[1, 0]).unwrap();
        assert_eq!(c, vec![0, 0, 1, 1, 2, 2]);
        // Step 2 over the whole buffer, and a scalar view.
        let s = gather_strided(&src, 1, &[6], &[2]).unwrap();
        assert_eq!(s, vec![1, 3, 5, 7, 9, 11]);
        assert_eq!(gather_strided(&src, 5, &[1, 1], &[4, 1]).unwrap(), vec![5]);
        assert!(gather_strided(&src, 0, &[0, 4], &[4, 1])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn positions_are_multi_indices() {
        assert_eq!(position(5, &[2, 3]), "[1, 2]");
        assert_eq!(position(0, &[]), "[]");
        assert_eq!(strides_of(&[2, 3, 4]).to_vec(), vec![12, 4, 1]);
    }
}
