//! Segment reductions (`UnsortedSegmentMax/Min`, `SparseSegmentSum/Mean/SqrtN`), `GatherNd`,
//! `ScatterNd` and `Unique`. Indices are checked: one outside its range is an
//! `InvalidArgument` naming its position, the value and the range (TensorFlow's CPU kernels).

use super::cwise_ops::unsupported;
use super::output_alloc::{alloc, num_elements, zeros};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_any, dispatch_float, dispatch_numeric};
use std::collections::HashMap;
use tfr_graph::{bf16, f16, DType, DTypeSet, Element};

type Factory = Result<Box<dyn OpKernel>, String>;

pub fn register(r: &mut KernelRegistry) {
    let numeric = DTypeSet::NUMERIC;
    r.cpu("UnsortedSegmentMax", numeric, |init| {
        Ok(dispatch_numeric!(init.dtype(), T => segment_extreme::<T>(true), _ => return Err(unsupported(init))))
    });
    r.cpu("UnsortedSegmentMin", numeric, |init| {
        Ok(dispatch_numeric!(init.dtype(), T => segment_extreme::<T>(false), _ => return Err(unsupported(init))))
    });
    r.cpu("SparseSegmentSum", numeric, |init| {
        Ok(dispatch_numeric!(init.dtype(), T => sparse_segment::<T>(Scale::One), _ => return Err(unsupported(init))))
    });
    r.cpu("SparseSegmentMean", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => sparse_segment::<T>(Scale::Count), _ => return Err(unsupported(init))))
    });
    r.cpu("SparseSegmentSqrtN", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => sparse_segment::<T>(Scale::SqrtCount), _ => return Err(unsupported(init))))
    });
    r.cpu("GatherNd", DTypeSet::ANY, |_| Ok(Box::new(gather_nd)));
    r.cpu("ScatterNd", DTypeSet::INDEX, scatter_nd_kernel);
    r.cpu("Unique", DTypeSet::NUMERIC, |init| {
        let out_idx = *init.attrs.dtype("out_idx")?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            unique(ctx, out_idx)
        }))
    });
}

/// The lowest finite value of `T` (TensorFlow's `numeric_limits<T>::lowest()`), or the highest.
fn extreme<T: Numeric>(lowest: bool) -> T {
    let finite = match T::DTYPE {
        DType::F32 => Some(f32::MAX as f64),
        DType::F64 => Some(f64::MAX),
        DType::F16 => Some(f16::MAX.to_f64()),
        DType::BF16 => Some(bf16::MAX.to_f64()),
        _ => None,
    };
    match (finite, lowest) {
        (Some(m), true) => T::from_f64(-m),
        (Some(m), false) => T::from_f64(m),
        (None, true) => T::min_value(),
        (None, false) => T::max_value(),
    }
}

/// The single non-negative integer of input `i`.
fn count_arg(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<usize> {
    match ctx.input_ints(i)?.as_slice() {
        [n] if *n >= 0 => Ok(*n as usize),
        other => Err(KernelError::invalid(format!(
            "{what} must be one value >= 0, got {other:?}"
        ))),
    }
}

/// `v` as a row number below `bound`, or an error naming `what[at]`.
fn row(v: i64, bound: usize, what: &str, at: usize) -> KResult<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&r| r < bound)
        .ok_or_else(|| KernelError::invalid(format!("{what}[{at}] = {v} is not in [0, {bound})")))
}

fn segment_extreme<T: Numeric>(max: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let num = count_arg(ctx, 2, "num_segments")?;
        let ids = ctx.input_ints(1)?;
        let (data, id_shape) = (ctx.input(0), ctx.input(1).shape());
        if !data.shape().starts_with(id_shape) {
            return Err(KernelError::invalid(format!(
                "segment_ids shape {id_shape:?} is not a prefix of data shape {:?}",
                data.shape()
            )));
        }
        let tail = &data.shape()[id_shape.len()..];
        let inner = num_elements(tail)?;
        let src = data.as_slice::<T>()?;
        let mut out = alloc::<T>(num_elements(&[num, inner])?)?;
        out.resize(num * inner, extreme::<T>(max));
        for (j, &id) in ids.iter().enumerate() {
            // A negative id drops its slice (TensorFlow's unsorted segment ops).
            if id < 0 {
                continue;
            }
            let r = row(id, num, "segment_ids", j)?;
            let dst = &mut out[r * inner..(r + 1) * inner];
            for (a, &b) in dst.iter_mut().zip(&src[j * inner..(j + 1) * inner]) {
                if (max && b > *a) || (!max && b < *a) {
                    *a = b;
                }
            }
        }
        let mut shape = Dims::from_slice(&[num]);
        shape.extend_from_slice(tail);
        ctx.set_output(Tensor::from_parts(shape, T::into_buffer(out)));
        Ok(())
    })
}

#[derive(Clone, Copy)]
enum Scale {
    One,
    Count,
    SqrtCount,
}

fn sparse_segment<T: Numeric>(scale: Scale) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let data = ctx.input(0);
        let Some((&rows, row_shape)) = data.shape().split_first() else {
            return Err(KernelError::invalid(
                "data must have rank >= 1, got a scalar",
            ));
        };
        let (indices, ids) = (ctx.input_ints(1)?, ctx.input_ints(2)?);
        if ctx.input(1).rank() != 1 || ctx.input(2).rank() != 1 || indices.len() != ids.len() {
            return Err(KernelError::invalid(format!(
                "indices {:?} and segment_ids {:?} must be vectors of one length",
                ctx.input(1).shape(),
                ctx.input(2).shape()
            )));
        }
        let mut segments = 0usize;
        for (j, &s) in ids.iter().enumerate() {
            let prev = if j == 0 { 0 } else { ids[j - 1] };
            if s < prev || s < 0 {
                return Err(KernelError::invalid(format!(
                    "segment_ids must be sorted and non-negative: segment_ids[{j}] = {s} after {prev}"
                )));
            }
            segments = s as usize + 1;
        }
        let inner = num_elements(row_shape)?;
        let src = data.as_slice::<T>()?;
        let mut out = alloc::<T>(num_elements(&[segments, inner])?)?;
        out.resize(segments * inner, T::ZERO);
        let mut counts = vec![0usize; segments];
        for (j, (&i, &s)) in indices.iter().zip(&ids).enumerate() {
            let r = row(i, rows, "indices", j)?;
            let s = s as usize;
            counts[s] += 1;
            let dst = &mut out[s * inner..(s + 1) * inner];
            dst.iter_mut()
                .zip(&src[r * inner..(r + 1) * inner])
                .for_each(|(a, &b)| *a = a.add(b));
        }
        for (s, &c) in counts.iter().enumerate() {
            let divisor = match (scale, c) {
                (Scale::One, _) | (_, 0) => continue,
                (Scale::Count, c) => T::from_f64(c as f64),
                (Scale::SqrtCount, c) => T::from_f64((c as f64).sqrt()),
            };
            out[s * inner..(s + 1) * inner]
                .iter_mut()
                .for_each(|a| *a = a.div(divisor));
        }
        let mut shape = Dims::from_slice(&[segments]);
        shape.extend_from_slice(row_shape);
        ctx.set_output(Tensor::from_parts(shape, T::into_buffer(out)));
        Ok(())
    })
}

/// The element offsets of `indices`' tuples (its last dim) into a tensor of shape `shape`, and
/// the slice length below them; an out-of-range tuple is an error naming it.
fn tuple_offsets(
    indices: &Tensor,
    values: &[i64],
    shape: &[usize],
) -> KResult<(Vec<usize>, usize)> {
    let Some((&k, _)) = indices.shape().split_last() else {
        return Err(KernelError::invalid(
            "indices must have rank >= 1, got a scalar",
        ));
    };
    if k > shape.len() {
        return Err(KernelError::invalid(format!(
            "index tuples of length {k} into a tensor of rank {}",
            shape.len()
        )));
    }
    let inner = num_elements(&shape[k..])?;
    let count = match values.len().checked_div(k) {
        Some(count) => count,
        None => num_elements(&indices.shape()[..indices.rank() - 1])?,
    };
    let mut offsets = Vec::with_capacity(count);
    for t in 0..count {
        let tuple = &values[t * k..(t + 1) * k];
        let mut off = 0usize;
        for (d, (&v, &n)) in tuple.iter().zip(shape).enumerate() {
            let i = usize::try_from(v).ok().filter(|&i| i < n).ok_or_else(|| {
                KernelError::invalid(format!(
                    "index tuple {t} = {tuple:?} is out of range: dim {d} has size {n}"
                ))
            })?;
            off = off * n + i;
        }
        offsets.push(off * inner);
    }
    Ok((offsets, inner))
}

fn gather_nd(ctx: &mut KernelContext<'_>) -> KResult {
    let (params, indices) = (ctx.input(0), ctx.input(1));
    let values = ctx.input_ints(1)?;
    let (offsets, inner) = tuple_offsets(indices, &values, params.shape())?;
    let k = indices.shape()[indices.rank() - 1];
    let mut shape: Dims = indices.shape()[..indices.rank() - 1].into();
    shape.extend_from_slice(&params.shape()[k..]);
    let out = dispatch_any!(params.dtype(), T => {
        let src = params.as_slice::<T>()?;
        let mut v = alloc::<T>(num_elements(&shape)?)?;
        for &o in &offsets {
            v.extend_from_slice(&src[o..o + inner]);
        }
        Tensor::from_parts(shape, T::into_buffer(v))
    }, _ => return Err(KernelError::internal("unhandled dtype")));
    ctx.set_output(out);
    Ok(())
}

fn scatter_nd_kernel(init: &KernelInit<'_>) -> Factory {
    let dtype = init.inputs.get(1).map_or(DType::F32, |t| t.dtype);
    Ok(
        dispatch_numeric!(dtype, T => Box::new(scatter_nd::<T>) as Box<dyn OpKernel>, _ => return Err(unsupported(init))),
    )
}

fn scatter_nd<T: Numeric>(ctx: &mut KernelContext<'_>) -> KResult {
    let shape: Vec<usize> = ctx
        .input_ints(2)?
        .into_iter()
        .map(|d| {
            usize::try_from(d)
                .map_err(|_| KernelError::invalid(format!("shape has a negative dim {d}")))
        })
        .collect::<KResult<_>>()?;
    let (indices, updates) = (ctx.input(0), ctx.input(1));
    let values = ctx.input_ints(0)?;
    let (offsets, inner) = tuple_offsets(indices, &values, &shape)?;
    let k = indices.shape()[indices.rank() - 1];
    let mut want: Vec<usize> = indices.shape()[..indices.rank() - 1].to_vec();
    want.extend_from_slice(&shape[k..]);
    if updates.shape() != want.as_slice() {
        return Err(KernelError::invalid(format!(
            "updates have shape {:?}; indices {:?} into shape {shape:?} need {want:?}",
            updates.shape(),
            indices.shape()
        )));
    }
    let src = updates.as_slice::<T>()?;
    let mut out = Tensor::from_parts(shape.as_slice().into(), zeros(T::DTYPE, &shape)?);
    let dst = out
        .slice_mut::<T>()
        .ok_or_else(|| KernelError::internal("a fresh buffer is shared"))?;
    for (t, &o) in offsets.iter().enumerate() {
        dst[o..o + inner]
            .iter_mut()
            .zip(&src[t * inner..(t + 1) * inner])
            .for_each(|(a, &b)| *a = a.add(b));
    }
    ctx.set_output(out);
    Ok(())
}

/// A hashable key per element: integers exactly, floats by their value's bits (`-0.0` is `0.0`).
fn unique_keys(x: &Tensor) -> Vec<u64> {
    (0..x.num_elements())
        .map(|i| {
            if x.dtype().is_integer() || x.dtype() == DType::Bool {
                x.get_i64(i) as u64
            } else {
                let v = x.get_f64(i);
                (if v == 0.0 { 0.0 } else { v }).to_bits()
            }
        })
        .collect()
}

fn unique(ctx: &mut KernelContext<'_>, out_idx: DType) -> KResult {
    let x = ctx.input(0);
    if x.rank() != 1 {
        return Err(KernelError::invalid(format!(
            "x must be a vector, got shape {:?}",
            x.shape()
        )));
    }
    let keys = unique_keys(x);
    let mut position: HashMap<u64, usize> = HashMap::with_capacity(keys.len());
    let mut firsts = Vec::new();
    let mut idx = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let p = *position.entry(*k).or_insert_with(|| {
            firsts.push(i);
            firsts.len() - 1
        });
        idx.push(p as i64);
    }
    let y = dispatch_numeric!(x.dtype(), T => {
        let src = x.as_slice::<T>()?;
        let v: Vec<T> = firsts.iter().map(|&i| src[i]).collect();
        Tensor::from_parts(Dims::from_slice(&[v.len()]), T::into_buffer(v))
    }, _ => return Err(KernelError::internal("unhandled dtype")));
    ctx.set_output(y);
    let idx = if out_idx == DType::I64 {
        Tensor::new(&[idx.len()], idx)?
    } else {
        let narrow = idx.iter().map(|&i| i as i32).collect::<Vec<i32>>();
        Tensor::new(&[narrow.len()], narrow)?
    };
    ctx.set_output(idx);
    Ok(())
}
