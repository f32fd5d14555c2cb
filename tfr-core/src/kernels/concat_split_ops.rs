//! Concat, Split, Pack and Unpack: contiguous runs interleaved or de-interleaved along an axis.

use super::array_ops::{
    deinterleave, from_vec, interleave, invalid, norm_axis, scalar_arg, stateless, typed, Factory,
};
use crate::error::KResult;
use crate::kernel::{KernelContext, KernelInit, KernelRegistry};
use crate::tensor::Dims;
use tfr_graph::DTypeSet;

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

pub fn register(r: &mut KernelRegistry) {
    let any = DTypeSet::ANY;
    r.cpu("Concat", any, |_| stateless(concat));
    r.cpu("Split", DTypeSet::INDEX, split_kernel);
    r.cpu("Pack", any, pack_kernel);
    r.cpu("Unpack", any, unpack_kernel);
}
