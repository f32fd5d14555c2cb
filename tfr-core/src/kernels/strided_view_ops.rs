//! Transpose, Slice, StridedSlice, Reverse, Tile, BroadcastTo and Pad: each output is a strided
//! view of its input (`gather_strided`, which coalesces the view so that its innermost
//! contiguous run is as long as possible), or the input itself when the view is the identity.

use super::array_ops::{
    first, from_vec, invalid, norm_axis, stateless, strided_copy, strides_of, typed, vector_arg,
    Factory,
};
use super::cwise_ops::cast_tensor;
use super::output_alloc::{alloc, num_elements};
use crate::error::KResult;
use crate::kernel::{KernelContext, KernelInit, KernelRegistry};
use crate::tensor::{Dims, Tensor};
use smallvec::SmallVec;
use tfr_graph::ops::strided_slice::{strided_slice_masks, StridedSliceMasks, StridedSliceSpec};
use tfr_graph::{DTypeSet, Element};

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

pub fn register(r: &mut KernelRegistry) {
    let any = DTypeSet::ANY;
    r.cpu("Transpose", any, |_| stateless(transpose));
    r.cpu("Slice", any, |_| stateless(slice));
    r.cpu("StridedSlice", any, strided_slice_kernel);
    r.cpu("Reverse", any, |_| stateless(reverse));
    r.cpu("Tile", any, |_| stateless(tile));
    r.cpu("BroadcastTo", any, |_| stateless(broadcast_to));
    r.cpu("PadV2", any, |_| stateless(pad));
    r.cpu("Pad", any, |_| stateless(pad));
}
