//! Kernels for constants, feeds, identity and data movement.
//!
//! Data-movement kernels are written once, generically over the element type (`T: Element`),
//! and dispatched on the tensor's dtype at run time, so every value dtype works. They copy
//! contiguous runs (`extend_from_slice`) wherever the layout allows: a strided view is first
//! coalesced so that its innermost contiguous block is as long as possible, and kernels whose
//! output equals their input (identity perms, full slices, reshapes) return the input buffer
//! without copying.

use super::cwise_ops::cast_tensor;
use super::output_alloc::{alloc, num_elements};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_any, dispatch_numeric};
use smallvec::SmallVec;
use tfr_graph::ops::array_ops::{strided_slice_masks, StridedSliceMasks, StridedSliceSpec};
use tfr_graph::{DType, DTypeSet, Element};

/// Runs `$body` with `$T` bound to the element type of `$dtype` (any dtype).
macro_rules! typed {
    ($dtype:expr, $T:ident => $body:expr) => {
        dispatch_any!($dtype, $T => $body, _ => return Err(KernelError::internal("unhandled dtype")))
    };
}

// ---- helpers ----------------------------------------------------------------------------------

type Factory = Result<Box<dyn OpKernel>, String>;

fn stateless(f: fn(&mut KernelContext<'_>) -> KResult) -> Factory {
    Ok(Box::new(f))
}

fn invalid(message: String) -> KernelError {
    KernelError::invalid(message)
}

/// Row-major strides (in elements) of a shape.
fn strides_of(shape: &[usize]) -> SmallVec<[usize; 8]> {
    let mut s: SmallVec<[usize; 8]> = SmallVec::from_elem(1, shape.len());
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn from_vec<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_parts(shape.into(), T::into_buffer(v))
}

/// The integer values of input `i`, which must be a 1-D tensor (`name` is its role).
fn vector_arg(ctx: &KernelContext<'_>, i: usize, name: &str) -> KResult<Vec<i64>> {
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
fn scalar_arg(ctx: &KernelContext<'_>, i: usize, name: &str) -> KResult<i64> {
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
fn norm_axis(axis: i64, rank: usize, what: &str) -> KResult<usize> {
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
fn first<T: Element>(t: &Tensor) -> KResult<T> {
    t.as_slice::<T>()?
        .first()
        .cloned()
        .ok_or_else(|| invalid("expected a value, got an empty tensor".into()))
}

/// Integer indices as i64, read through a typed slice (no per-element dtype match).
fn index_values(t: &Tensor, name: &str) -> KResult<Vec<i64>> {
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
fn gather_strided<T: Element>(
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
fn strided_copy(
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
fn interleave<T: Element>(parts: &[&[T]], chunks: &[usize], outer: usize) -> KResult<Vec<T>> {
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
fn deinterleave<T: Element>(
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

// ---- transpose, slices, reverse, tile, broadcast (strided views) ------------------------------

fn transpose(ctx: &mut KernelContext<'_>) -> KResult {
    let perm = vector_arg(ctx, 1, "perm")?;
    let x = ctx.take_input(0);
    let r = x.rank();
    let perm: Vec<usize> = if perm.is_empty() {
        (0..r).rev().collect()
    } else {
        let bad = || {
            invalid(format!(
                "perm {perm:?} is not a permutation of the {r} axes of an input of shape {:?}",
                x.shape()
            ))
        };
        if perm.len() != r {
            return Err(bad());
        }
        let mut seen = vec![false; r];
        let mut out = Vec::with_capacity(r);
        for &p in &perm {
            let a = norm_axis(p, r, "perm entry").map_err(|_| bad())?;
            if std::mem::replace(&mut seen[a], true) {
                return Err(bad());
            }
            out.push(a);
        }
        out
    };
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        ctx.set_output(x);
        return Ok(());
    }
    let in_strides = strides_of(x.shape());
    let shape: Dims = perm.iter().map(|&p| x.shape()[p]).collect();
    let strides: SmallVec<[isize; 8]> = perm.iter().map(|&p| in_strides[p] as isize).collect();
    let out = strided_copy(&x, 0, &shape, &strides, &shape)?;
    ctx.set_output(out);
    Ok(())
}

fn slice(ctx: &mut KernelContext<'_>) -> KResult {
    let begin = vector_arg(ctx, 1, "begin")?;
    let size = vector_arg(ctx, 2, "size")?;
    let x = ctx.take_input(0);
    let shape = x.shape();
    if begin.len() != shape.len() || size.len() != shape.len() {
        return Err(invalid(format!(
            "begin {begin:?} and size {size:?} must have one entry per dim of the input, \
             whose shape is {shape:?}"
        )));
    }
    let mut out: Dims = Dims::new();
    for (i, (&b, &z)) in begin.iter().zip(&size).enumerate() {
        let n = shape[i] as i64;
        let ok = (0..=n).contains(&b) && (z == -1 || (0..=n - b).contains(&z));
        if !ok {
            return Err(invalid(format!(
                "slice begin {b} size {z} is out of range for dim {i} of input shape {shape:?}: \
                 expected 0 <= begin <= {n} and 0 <= begin + size <= {n} (size -1 takes the rest)"
            )));
        }
        out.push(if z == -1 { n - b } else { z } as usize);
    }
    if out[..] == *shape {
        ctx.set_output(x);
        return Ok(());
    }
    let in_strides = strides_of(shape);
    let offset = if out.contains(&0) {
        0
    } else {
        begin
            .iter()
            .zip(&in_strides)
            .map(|(&b, &s)| b as usize * s)
            .sum()
    };
    let strides: SmallVec<[isize; 8]> = in_strides.iter().map(|&s| s as isize).collect();
    let y = strided_copy(&x, offset, &out, &strides, &out)?;
    ctx.set_output(y);
    Ok(())
}

fn strided_slice_kernel(init: &KernelInit<'_>) -> Factory {
    let masks = strided_slice_masks(init.attrs)?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        strided_slice(ctx, masks)
    }))
}

fn strided_slice(ctx: &mut KernelContext<'_>, masks: StridedSliceMasks) -> KResult {
    let begin = vector_arg(ctx, 1, "begin")?;
    let end = vector_arg(ctx, 2, "end")?;
    let strides = vector_arg(ctx, 3, "strides")?;
    let x = ctx.take_input(0);
    let spec =
        StridedSliceSpec::resolve(x.shape(), &begin, &end, &strides, masks).map_err(|e| {
            invalid(format!(
                "{e} (input shape {:?}, begin {begin:?}, end {end:?}, strides {strides:?})",
                x.shape()
            ))
        })?;
    let full = spec
        .dims
        .iter()
        .zip(x.shape())
        .all(|(&(start, step, count), &n)| start == 0 && step == 1 && count == n);
    if full {
        ctx.set_output(x.reshaped(&spec.output_shape)?);
        return Ok(());
    }
    let in_strides = strides_of(x.shape());
    let counts: Dims = spec.dims.iter().map(|d| d.2).collect();
    let empty = counts.contains(&0);
    let offset = if empty {
        0
    } else {
        // Every start lies inside its dim when the view is not empty.
        spec.dims
            .iter()
            .zip(&in_strides)
            .map(|(d, &s)| d.0 as usize * s)
            .sum()
    };
    let steps: SmallVec<[isize; 8]> = spec
        .dims
        .iter()
        .zip(&in_strides)
        // A dim taking one element never steps (its stride may be huge).
        .map(|(d, &s)| {
            if d.2 <= 1 {
                0
            } else {
                d.1 as isize * s as isize
            }
        })
        .collect();
    let y = strided_copy(&x, offset, &counts, &steps, &spec.output_shape)?;
    ctx.set_output(y);
    Ok(())
}

fn reverse(ctx: &mut KernelContext<'_>) -> KResult {
    let axes = vector_arg(ctx, 1, "axis")?;
    let x = ctx.take_input(0);
    let r = x.rank();
    let mut flip = vec![false; r];
    for &a in &axes {
        let i = norm_axis(a, r, "axis")
            .map_err(|e| invalid(format!("{} (input shape {:?})", e.message, x.shape())))?;
        if std::mem::replace(&mut flip[i], true) {
            return Err(invalid(format!(
                "axis {i} is specified more than once in {axes:?}"
            )));
        }
    }
    let shape = x.shape();
    if !flip.iter().zip(shape).any(|(&f, &n)| f && n > 1) || x.num_elements() == 0 {
        ctx.set_output(x);
        return Ok(());
    }
    let in_strides = strides_of(shape);
    let mut offset = 0;
    let mut strides: SmallVec<[isize; 8]> = SmallVec::new();
    for i in 0..r {
        if flip[i] {
            offset += (shape[i] - 1) * in_strides[i];
            strides.push(-(in_strides[i] as isize));
        } else {
            strides.push(in_strides[i] as isize);
        }
    }
    let y = strided_copy(&x, offset, shape, &strides, shape)?;
    ctx.set_output(y);
    Ok(())
}

fn tile(ctx: &mut KernelContext<'_>) -> KResult {
    let multiples = vector_arg(ctx, 1, "multiples")?;
    let x = ctx.take_input(0);
    let shape = x.shape();
    if multiples.len() != shape.len() || multiples.iter().any(|&m| m < 0) {
        return Err(invalid(format!(
            "multiples must hold {} non-negative entries (one per dim of input shape {shape:?}), \
             got {multiples:?}",
            shape.len()
        )));
    }
    if multiples.iter().all(|&m| m == 1) {
        ctx.set_output(x);
        return Ok(());
    }
    // View the output as [m0, d0, m1, d1, ...] with stride 0 along each multiple.
    let in_strides = strides_of(shape);
    let mut view = Dims::new();
    let mut strides: SmallVec<[isize; 8]> = SmallVec::new();
    let mut out = Dims::new();
    for i in 0..shape.len() {
        let m = multiples[i] as usize;
        view.extend([m, shape[i]]);
        strides.extend([0, in_strides[i] as isize]);
        out.push(shape[i].checked_mul(m).ok_or_else(|| {
            invalid(format!("tiling shape {shape:?} by {multiples:?} overflows"))
        })?);
    }
    let y = strided_copy(&x, 0, &view, &strides, &out)?;
    ctx.set_output(y);
    Ok(())
}

fn broadcast_to(ctx: &mut KernelContext<'_>) -> KResult {
    let target = vector_arg(ctx, 1, "shape")?;
    let x = ctx.take_input(0);
    let shape = x.shape();
    if let Some(&d) = target.iter().find(|&&d| d < 0) {
        return Err(invalid(format!(
            "target shape {target:?} has a negative dim {d}"
        )));
    }
    let out: Dims = target.iter().map(|&d| d as usize).collect();
    if out[..] == *shape {
        ctx.set_output(x);
        return Ok(());
    }
    let bad = |detail: String| {
        invalid(format!(
            "cannot broadcast a tensor of shape {shape:?} to shape {target:?}: {detail}"
        ))
    };
    if shape.len() > out.len() {
        return Err(bad(format!(
            "the target has rank {}, lower than the input's {}",
            out.len(),
            shape.len()
        )));
    }
    let lead = out.len() - shape.len();
    let in_strides = strides_of(shape);
    let mut strides: SmallVec<[isize; 8]> = SmallVec::from_elem(0, out.len());
    for (i, &n) in shape.iter().enumerate() {
        let o = out[lead + i];
        if n == o {
            strides[lead + i] = in_strides[i] as isize;
        } else if n != 1 {
            return Err(bad(format!("input dim {i} is {n}, expected {o} or 1")));
        }
    }
    let y = strided_copy(&x, 0, &out, &strides, &out)?;
    ctx.set_output(y);
    Ok(())
}

// ---- pad --------------------------------------------------------------------------------------

/// Appends the padded block of `src` (shape `shape`) to `out`; `out_block[d]` is the number of
/// output elements per index of dim `d`.
fn pad_into<T: Element>(
    src: &[T],
    shape: &[usize],
    pads: &[(usize, usize)],
    out_block: &[usize],
    v: &T,
    out: &mut Vec<T>,
) {
    let (before, after) = pads[0];
    out.resize(out.len() + before * out_block[0], v.clone());
    if shape.len() == 1 {
        out.extend_from_slice(src);
    } else {
        let in_block: usize = shape[1..].iter().product();
        for i in 0..shape[0] {
            pad_into(
                &src[i * in_block..(i + 1) * in_block],
                &shape[1..],
                &pads[1..],
                &out_block[1..],
                v,
                out,
            );
        }
    }
    out.resize(out.len() + after * out_block[0], v.clone());
}

fn pad(ctx: &mut KernelContext<'_>) -> KResult {
    let x = ctx.take_input(0);
    let p = ctx.input(1);
    let r = x.rank();
    if p.shape() != [r, 2] {
        return Err(invalid(format!(
            "paddings must have shape [{r}, 2] for an input of shape {:?}, got shape {:?}",
            x.shape(),
            p.shape()
        )));
    }
    let flat = ctx.input_ints(1)?;
    if let Some(&v) = flat.iter().find(|&&v| v < 0) {
        return Err(invalid(format!(
            "paddings must be non-negative, got {v} in {flat:?}"
        )));
    }
    // TensorFlow's `Pad` has no value input and pads with zeros; `PadV2` takes a scalar.
    let zero;
    let c = if ctx.num_inputs() > 2 {
        ctx.input(2)
    } else {
        zero = cast_tensor(&Tensor::scalar(0i32), x.dtype())?;
        &zero
    };
    if c.num_elements() != 1 || c.rank() > 0 || c.dtype() != x.dtype() {
        return Err(invalid(format!(
            "constant_value must be a {} scalar, got {}{:?}",
            x.dtype(),
            c.dtype(),
            c.shape()
        )));
    }
    let pads: Vec<(usize, usize)> = flat
        .chunks(2)
        .map(|w| (w[0] as usize, w[1] as usize))
        .collect();
    if pads.iter().all(|&(a, b)| a == 0 && b == 0) {
        ctx.set_output(x);
        return Ok(());
    }
    let mut out = Dims::new();
    for (i, (&n, &(a, b))) in x.shape().iter().zip(&pads).enumerate() {
        out.push(
            n.checked_add(a)
                .and_then(|v| v.checked_add(b))
                .ok_or_else(|| invalid(format!("padding dim {i} overflows")))?,
        );
    }
    let total = num_elements(&out)?;
    let block = strides_of(&out);
    let y = typed!(x.dtype(), T => {
        let v = first::<T>(c)?;
        let mut data = alloc::<T>(total)?;
        if x.num_elements() == 0 {
            data.resize(total, v);
        } else {
            pad_into(x.as_slice::<T>()?, x.shape(), &pads, &block, &v, &mut data);
        }
        from_vec(&out, data)
    });
    ctx.set_output(y);
    Ok(())
}

// ---- concat / split / pack / unpack -----------------------------------------------------------

fn concat(ctx: &mut KernelContext<'_>) -> KResult {
    let n = ctx.num_inputs() - 1;
    let axis = scalar_arg(ctx, n, "axis")?;
    let first = ctx.input(0);
    let rank = first.rank();
    if rank == 0 {
        return Err(invalid(
            "cannot concatenate scalars (values[0] has shape []); use Pack to stack them".into(),
        ));
    }
    let a = norm_axis(axis, rank, "axis").map_err(|e| {
        invalid(format!(
            "{} (values[0] has shape {:?})",
            e.message,
            first.shape()
        ))
    })?;
    let mut total_axis = 0usize;
    for k in 0..n {
        let t = ctx.input(k);
        let same = t.rank() == rank
            && t.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(i, (x, y))| i == a || x == y);
        if t.dtype() != first.dtype() || !same {
            return Err(invalid(format!(
                "values[{k}] is {}{:?}, expected {} with shape {:?} in every dim but axis {a}",
                t.dtype(),
                t.shape(),
                first.dtype(),
                first.shape()
            )));
        }
        total_axis += t.shape()[a];
    }
    if n == 1 {
        let x = ctx.take_input(0);
        ctx.set_output(x);
        return Ok(());
    }
    let mut out: Dims = first.dims().clone();
    out[a] = total_axis;
    let outer: usize = out[..a].iter().product();
    let chunks: Vec<usize> = (0..n)
        .map(|k| ctx.input(k).shape()[a..].iter().product())
        .collect();
    let y = typed!(first.dtype(), T => {
        let parts = (0..n)
            .map(|k| ctx.input(k).as_slice::<T>())
            .collect::<Result<Vec<_>, _>>()?;
        from_vec(&out, interleave(&parts, &chunks, outer)?)
    });
    ctx.set_output(y);
    Ok(())
}

fn pack_kernel(init: &KernelInit<'_>) -> Factory {
    let axis = *init.attrs.int("axis")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let n = ctx.num_inputs();
        let first = ctx.input(0);
        let r = first.rank();
        let a = norm_axis(axis, r + 1, "axis").map_err(|_| {
            invalid(format!(
                "axis {axis} is out of range for stacking values of shape {:?}: expected a \
                 value in [{}, {r}]",
                first.shape(),
                -(r as i64) - 1
            ))
        })?;
        for k in 1..n {
            let t = ctx.input(k);
            if t.shape() != first.shape() || t.dtype() != first.dtype() {
                return Err(invalid(format!(
                    "values[{k}] is {}{:?}, expected {}{:?} like values[0]",
                    t.dtype(),
                    t.shape(),
                    first.dtype(),
                    first.shape()
                )));
            }
        }
        let mut out: Dims = first.dims().clone();
        out.insert(a, n);
        if n == 1 {
            let x = ctx.take_input(0);
            ctx.set_output(x.reshaped(&out)?);
            return Ok(());
        }
        let outer: usize = first.shape()[..a].iter().product();
        let chunk: usize = first.shape()[a..].iter().product();
        let y = typed!(first.dtype(), T => {
            let parts = (0..n)
                .map(|k| ctx.input(k).as_slice::<T>())
                .collect::<Result<Vec<_>, _>>()?;
            from_vec(&out, interleave(&parts, &vec![chunk; n], outer)?)
        });
        ctx.set_output(y);
        Ok(())
    }))
}

fn split_kernel(init: &KernelInit<'_>) -> Factory {
    let num = *init.attrs.int("num_split")?;
    if num < 1 {
        return Err(format!("num_split must be at least 1, got {num}"));
    }
    let num = num as usize;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let axis = scalar_arg(ctx, 0, "axis")?;
        let x = ctx.take_input(1);
        let shape = x.shape();
        let a = norm_axis(axis, shape.len(), "axis")
            .map_err(|e| invalid(format!("{} (value has shape {shape:?})", e.message)))?;
        if !shape[a].is_multiple_of(num) {
            return Err(invalid(format!(
                "cannot split dim {a} of size {} (value shape {shape:?}) into {num} equal \
                 parts: expected a size divisible by {num}",
                shape[a]
            )));
        }
        if num == 1 {
            ctx.set_output(x);
            return Ok(());
        }
        let mut out: Dims = x.dims().clone();
        out[a] /= num;
        let outer: usize = shape[..a].iter().product();
        let row: usize = shape[a..].iter().product();
        let part = row / num;
        let pieces: Vec<(usize, usize)> = (0..num).map(|k| (k * part, part)).collect();
        typed!(x.dtype(), T => {
            for v in deinterleave(x.as_slice::<T>()?, row, outer, &pieces)? {
                ctx.set_output(from_vec(&out, v));
            }
        });
        Ok(())
    }))
}

fn unpack_kernel(init: &KernelInit<'_>) -> Factory {
    let num = *init.attrs.int("num")?;
    let axis = *init.attrs.int("axis")?;
    if num < 0 {
        return Err(format!("num must be non-negative, got {num}"));
    }
    let num = num as usize;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.take_input(0);
        let shape = x.shape();
        let a = norm_axis(axis, shape.len(), "axis")
            .map_err(|e| invalid(format!("{} (value has shape {shape:?})", e.message)))?;
        if shape[a] != num {
            return Err(invalid(format!(
                "cannot unpack dim {a} of value shape {shape:?} into {num} tensors: expected \
                 size {num}, got {}",
                shape[a]
            )));
        }
        let mut out: Dims = x.dims().clone();
        out.remove(a);
        if num == 1 {
            ctx.set_output(x.reshaped(&out)?);
            return Ok(());
        }
        let outer: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 1..].iter().product();
        let pieces: Vec<(usize, usize)> = (0..num).map(|k| (k * inner, inner)).collect();
        typed!(x.dtype(), T => {
            for v in deinterleave(x.as_slice::<T>()?, num * inner, outer, &pieces)? {
                ctx.set_output(from_vec(&out, v));
            }
        });
        Ok(())
    }))
}

// ---- gather, one_hot --------------------------------------------------------------------------

/// `[i, j, ..]`: the position of flat element `flat` in a tensor of shape `shape`.
fn position(flat: usize, shape: &[usize]) -> String {
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

fn gather_kernel(init: &KernelInit<'_>) -> Factory {
    let batch_dims = init.attrs.int_opt("batch_dims").copied().unwrap_or(0);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        gather(ctx, batch_dims)
    }))
}

/// GatherV2: `out[b.., p.., i.., s..] = params[b.., p.., indices[b.., i..], s..]`, where the
/// first `batch_dims` dims are shared by params and indices.
fn gather(ctx: &mut KernelContext<'_>, batch_dims: i64) -> KResult {
    let axis = scalar_arg(ctx, 2, "axis")?;
    let params = ctx.input(0);
    let indices = ctx.input(1);
    let ps = params.shape();
    let is = indices.shape();
    if ps.is_empty() {
        return Err(invalid(
            "params must be at least 1-D, got a scalar".to_string(),
        ));
    }
    let a = norm_axis(axis, ps.len(), "axis")
        .map_err(|e| invalid(format!("{} (params shape {ps:?})", e.message)))?;
    let b = tfr_graph::ops::array_ops::gather_batch_dims(batch_dims, a, ps.len(), is.len())
        .map_err(invalid)?;
    if ps[..b] != is[..b] {
        return Err(invalid(format!(
            "the first batch_dims = {b} dims of params {ps:?} and indices {is:?} must match"
        )));
    }
    let dim = ps[a];
    let idx = index_values(indices, "indices")?;
    let mut offsets = Vec::with_capacity(idx.len());
    for (k, &i) in idx.iter().enumerate() {
        if i < 0 || i as u64 >= dim as u64 {
            return Err(invalid(format!(
                "indices{} = {i} is not in [0, {dim}) (gathering along axis {a} of params with \
                 shape {ps:?})",
                position(k, is)
            )));
        }
        offsets.push(i as usize);
    }
    let mut out: Dims = ps[..a].into();
    out.extend_from_slice(&is[b..]);
    out.extend_from_slice(&ps[a + 1..]);
    let batches: usize = ps[..b].iter().product();
    let outer: usize = ps[b..a].iter().product();
    let inner: usize = ps[a + 1..].iter().product();
    let per_batch = offsets.len().checked_div(batches).unwrap_or(0);
    let total = num_elements(&out)?;
    let y = typed!(params.dtype(), T => {
        let src = params.as_slice::<T>()?;
        let mut v = alloc::<T>(total)?;
        for bi in 0..batches {
            let ids = &offsets[bi * per_batch..(bi + 1) * per_batch];
            for o in 0..outer {
                let start = (bi * outer + o) * dim * inner;
                let block = &src[start..start + dim * inner];
                for &i in ids {
                    v.extend_from_slice(&block[i * inner..(i + 1) * inner]);
                }
            }
        }
        from_vec(&out, v)
    });
    ctx.set_output(y);
    Ok(())
}

/// One-hot rows: `out[p, d, s] = on` where `idx[p, s] == d`, else `off`; indices outside
/// `[0, depth)` leave their row all `off`.
fn one_hot_values<T: Element>(
    idx: &[i64],
    prefix: usize,
    depth: usize,
    suffix: usize,
    on: T,
    off: T,
) -> KResult<Vec<T>> {
    let total = prefix * depth * suffix;
    let mut v = alloc::<T>(total)?;
    v.resize(total, off);
    for p in 0..prefix {
        for s in 0..suffix {
            let i = idx[p * suffix + s];
            if i >= 0 && (i as u64) < depth as u64 {
                v[(p * depth + i as usize) * suffix + s] = on.clone();
            }
        }
    }
    Ok(v)
}

fn one_hot_kernel(init: &KernelInit<'_>) -> Factory {
    let axis = *init.attrs.int("axis")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let depth = scalar_arg(ctx, 1, "depth")?;
        let (indices, on, off) = (ctx.input(0), ctx.input(2), ctx.input(3));
        if depth < 0 {
            return Err(invalid(format!("depth must be non-negative, got {depth}")));
        }
        let depth = depth as usize;
        let r = indices.rank();
        let a = match axis {
            -1 => r,
            a if (0..=r as i64).contains(&a) => a as usize,
            _ => {
                return Err(invalid(format!(
                    "axis {axis} is out of range for indices of shape {:?}: expected -1 or a \
                     value in [0, {r}]",
                    indices.shape()
                )))
            }
        };
        for (name, t) in [("on_value", on), ("off_value", off)] {
            if t.num_elements() != 1 || t.rank() > 0 || t.dtype() != on.dtype() {
                return Err(invalid(format!(
                    "{name} must be a {} scalar, got {}{:?}",
                    on.dtype(),
                    t.dtype(),
                    t.shape()
                )));
            }
        }
        let mut out: Dims = indices.dims().clone();
        out.insert(a, depth);
        num_elements(&out)?; // rules out an overflowing depth
        let prefix: usize = indices.shape()[..a].iter().product();
        let suffix: usize = indices.shape()[a..].iter().product();
        let idx = index_values(indices, "indices")?;
        let y = typed!(on.dtype(), T => {
            let v = one_hot_values(&idx, prefix, depth, suffix, first::<T>(on)?, first::<T>(off)?)?;
            from_vec(&out, v)
        });
        ctx.set_output(y);
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
    r.cpu("Transpose", any, |_| stateless(transpose));
    r.cpu("Slice", any, |_| stateless(slice));
    r.cpu("StridedSlice", any, strided_slice_kernel);
    r.cpu("Reverse", any, |_| stateless(reverse));
    r.cpu("Tile", any, |_| stateless(tile));
    r.cpu("BroadcastTo", any, |_| stateless(broadcast_to));
    r.cpu("PadV2", any, |_| stateless(pad));
    r.cpu("Pad", any, |_| stateless(pad));
    r.cpu("Concat", any, |_| stateless(concat));
    r.cpu("Split", DTypeSet::INDEX, split_kernel);
    r.cpu("Pack", any, pack_kernel);
    r.cpu("Unpack", any, unpack_kernel);
    r.cpu("Gather", any, gather_kernel);
    r.cpu(
        "OneHot",
        DTypeSet::of(&[DType::I32, DType::I64, DType::U8]),
        one_hot_kernel,
    );
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
