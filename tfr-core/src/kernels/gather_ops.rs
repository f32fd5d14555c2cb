//! Gather (GatherV2, with batch dims) and OneHot.

use super::array_ops::{
    first, from_vec, index_values, invalid, norm_axis, position, scalar_arg, typed, Factory,
};
use super::output_alloc::{alloc, num_elements};
use crate::error::KResult;
use crate::kernel::{KernelContext, KernelInit, KernelRegistry};
use crate::tensor::Dims;
use tfr_graph::{DType, DTypeSet, Element};

// ---- gather, one_hot --------------------------------------------------------------------------

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

pub fn register(r: &mut KernelRegistry) {
    let any = DTypeSet::ANY;
    r.cpu("Gather", any, gather_kernel);
    r.cpu(
        "OneHot",
        DTypeSet::of(&[DType::I32, DType::I64, DType::U8]),
        one_hot_kernel,
    );
}
