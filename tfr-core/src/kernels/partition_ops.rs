//! `DynamicPartition` and `DynamicStitch` (and its alias `ParallelDynamicStitch`): rows moved
//! by index, for every dtype. Indices outside their range are `InvalidArgument` errors naming
//! the position and the range, as TensorFlow's CPU kernels report them.

use super::output_alloc::{alloc, num_elements, zeros};
use crate::dispatch_any;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::{Dims, Tensor};
use tfr_graph::{DTypeSet, Element};

pub fn register(r: &mut KernelRegistry) {
    r.cpu("DynamicPartition", DTypeSet::ANY, dynamic_partition_kernel);
    for op in ["DynamicStitch", "ParallelDynamicStitch"] {
        r.cpu(op, DTypeSet::ANY, |_| Ok(Box::new(dynamic_stitch)));
    }
}

fn dynamic_partition_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let num = *init.attrs.int("num_partitions")?;
    let num = usize::try_from(num)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("num_partitions must be >= 1, got {num}"))?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        dynamic_partition(ctx, num)
    }))
}

/// The length of the rows below a prefix of `shape`, or an error when `prefix` is not one.
fn row_len(shape: &[usize], prefix: &[usize], what: &str, of: &str) -> KResult<usize> {
    if !shape.starts_with(prefix) {
        return Err(KernelError::invalid(format!(
            "{what} shape {prefix:?} must be a prefix of {of} shape {shape:?}"
        )));
    }
    num_elements(&shape[prefix.len()..])
}

fn dynamic_partition(ctx: &mut KernelContext<'_>, num: usize) -> KResult {
    let (data, parts) = (ctx.input(0), ctx.input(1));
    let inner = row_len(data.shape(), parts.shape(), "partitions", "data")?;
    let ids = ctx.input_ints(1)?;
    let mut counts = vec![0usize; num];
    for (i, &p) in ids.iter().enumerate() {
        let slot = usize::try_from(p)
            .ok()
            .filter(|&s| s < num)
            .ok_or_else(|| {
                KernelError::invalid(format!("partitions[{i}] = {p} is not in [0, {num})"))
            })?;
        counts[slot] += 1;
    }
    let tail = &data.shape()[parts.rank()..];
    let outputs = dispatch_any!(data.dtype(), T => partition_rows::<T>(data.as_slice::<T>()?, &ids, &counts, inner, tail)?,
        _ => return Err(KernelError::internal("unhandled dtype")));
    for t in outputs {
        ctx.set_output(t);
    }
    Ok(())
}

fn partition_rows<T: Element>(
    src: &[T],
    ids: &[i64],
    counts: &[usize],
    inner: usize,
    tail: &[usize],
) -> KResult<Vec<Tensor>> {
    let mut outs = Vec::with_capacity(counts.len());
    for &c in counts {
        outs.push(alloc::<T>(num_elements(&[c, inner])?)?);
    }
    for (i, &p) in ids.iter().enumerate() {
        outs[p as usize].extend_from_slice(&src[i * inner..(i + 1) * inner]);
    }
    Ok(outs
        .into_iter()
        .zip(counts)
        .map(|(v, &c)| {
            let mut shape = Dims::from_slice(&[c]);
            shape.extend_from_slice(tail);
            Tensor::from_parts(shape, T::into_buffer(v))
        })
        .collect())
}

fn dynamic_stitch(ctx: &mut KernelContext<'_>) -> KResult {
    let total = ctx.num_inputs();
    if !total.is_multiple_of(2) || total == 0 {
        return Err(KernelError::invalid(format!(
            "expects as many indices as data tensors, got {total} inputs"
        )));
    }
    let n = total / 2;
    let mut indices = Vec::with_capacity(n);
    let mut rows = 0usize;
    for k in 0..n {
        let idx = ctx.input_ints(k)?;
        for (i, &v) in idx.iter().enumerate() {
            if v < 0 {
                return Err(KernelError::invalid(format!(
                    "indices[{k}][{i}] = {v} is negative"
                )));
            }
            rows = rows.max(v as usize + 1);
        }
        indices.push(idx);
    }
    let first = ctx.input(n);
    let tail: Dims = first.shape()[ctx.input(0).rank().min(first.rank())..].into();
    let inner = num_elements(&tail)?;
    let dtype = first.dtype();
    for k in 0..n {
        let d = ctx.input(n + k);
        let len = row_len(
            d.shape(),
            ctx.input(k).shape(),
            &format!("indices[{k}]"),
            &format!("data[{k}]"),
        )?;
        if d.dtype() != dtype || d.shape()[ctx.input(k).rank()..] != tail[..] || len != inner {
            return Err(KernelError::invalid(format!(
                "data[{k}] is {} {:?}: its rows must be {dtype} {tail:?} like data[0]'s",
                d.dtype(),
                d.shape()
            )));
        }
    }
    let mut shape = Dims::from_slice(&[rows]);
    shape.extend_from_slice(&tail);
    let mut merged = Tensor::from_parts(shape.clone(), zeros(dtype, &shape)?);
    dispatch_any!(dtype, T => {
        let out = merged
            .slice_mut::<T>()
            .ok_or_else(|| KernelError::internal("a fresh buffer is shared"))?;
        for (k, idx) in indices.iter().enumerate() {
            let src = ctx.input(n + k).as_slice::<T>()?;
            for (i, &row) in idx.iter().enumerate() {
                let row = row as usize;
                out[row * inner..(row + 1) * inner].clone_from_slice(&src[i * inner..(i + 1) * inner]);
            }
        }
    }, _ => return Err(KernelError::internal("unhandled dtype")));
    ctx.set_output(merged);
    Ok(())
}
