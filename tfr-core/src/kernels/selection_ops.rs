//! Kernels of `tfr_graph::ops::selection_ops`: Cumsum, Cumprod, TopKV2, Where, InTopKV2.

use super::cwise_ops::unsupported;
use super::output_alloc::{alloc, num_elements};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::Tensor;
use crate::{dispatch_float, dispatch_numeric};
use std::cmp::Ordering;
use tfr_graph::{DTypeSet, Element};

type Factory = Result<Box<dyn OpKernel>, String>;

pub fn register(r: &mut KernelRegistry) {
    r.cpu("Cumsum", DTypeSet::NUMERIC, |init| {
        scan_factory(init, false)
    });
    r.cpu("Cumprod", DTypeSet::NUMERIC, |init| {
        scan_factory(init, true)
    });
    r.cpu("TopKV2", DTypeSet::NUMERIC, |init| {
        Ok(dispatch_numeric!(init.dtype(), T => top_k::<T>(), _ => return Err(unsupported(init))))
    });
    r.cpu("Where", DTypeSet::NUMERIC_OR_BOOL, |_| {
        Ok(Box::new(where_kernel))
    });
    r.cpu("InTopKV2", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => in_top_k::<T>(), _ => return Err(unsupported(init))))
    });
}

/// A scalar integer input (`name` is its role).
fn scalar_int(ctx: &KernelContext<'_>, i: usize, name: &str) -> KResult<i64> {
    let t = ctx.input(i);
    if t.rank() != 0 || !t.dtype().is_integer() {
        return Err(KernelError::invalid(format!(
            "{name} must be an integer scalar, got {} of shape {:?}",
            t.dtype(),
            t.shape()
        )));
    }
    Ok(t.get_i64(0))
}

// ---- Cumsum / Cumprod -------------------------------------------------------------------------

fn scan_factory(init: &KernelInit<'_>, product: bool) -> Factory {
    let exclusive = init.attrs.bool_opt("exclusive").copied().unwrap_or(false);
    let reverse = init.attrs.bool_opt("reverse").copied().unwrap_or(false);
    Ok(
        dispatch_numeric!(init.dtype(), T => scan_kernel::<T>(product, exclusive, reverse), _ => return Err(unsupported(init))),
    )
}

fn scan_kernel<T: Numeric>(product: bool, exclusive: bool, reverse: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
        let axis = scalar_int(ctx, 1, "axis")?;
        let x = ctx.input(0);
        let shape = x.shape();
        let rank = shape.len() as i64;
        if rank == 0 {
            return Err(KernelError::invalid("x must be at least 1-D, got a scalar"));
        }
        if axis < -rank || axis >= rank {
            return Err(KernelError::invalid(format!(
                "axis {axis} is out of range for x of shape {shape:?}: expected a value in \
                 [{}, {rank})",
                -rank
            )));
        }
        let a = if axis < 0 { axis + rank } else { axis } as usize;
        let n = shape[a];
        let inner: usize = shape[a + 1..].iter().product();
        let outer: usize = shape[..a].iter().product();
        let src = x.as_slice::<T>()?;
        let mut out = src.to_vec();
        let (identity, op): (T, fn(T, T) -> T) = if product {
            (T::ONE, T::mul)
        } else {
            (T::ZERO, T::add)
        };
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = identity;
                for step in 0..n {
                    let j = if reverse { n - 1 - step } else { step };
                    let at = (o * n + j) * inner + i;
                    if exclusive {
                        out[at] = acc;
                        acc = op(acc, src[at]);
                    } else {
                        acc = op(acc, src[at]);
                        out[at] = acc;
                    }
                }
            }
        }
        let t = Tensor::from_parts(x.dims().clone(), T::into_buffer(out));
        ctx.set_output(t);
        Ok(())
    })
}

// ---- TopKV2 -----------------------------------------------------------------------------------

/// Descending by value, ties by ascending index; NaN sorts above every number (as a maximum).
fn top_order<T: Numeric>(row: &[T], a: usize, b: usize) -> Ordering {
    let (x, y) = (row[a], row[b]);
    let by_value = match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
    };
    by_value.then(a.cmp(&b))
}

fn top_k<T: Numeric>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| -> KResult {
        let k = scalar_int(ctx, 1, "k")?;
        let x = ctx.input(0);
        let shape = x.shape();
        let Some(&n) = shape.last() else {
            return Err(KernelError::invalid(
                "input must be at least 1-D, got a scalar",
            ));
        };
        if k < 0 {
            return Err(KernelError::invalid(format!(
                "k must be non-negative, got {k}"
            )));
        }
        if k as u64 > n as u64 {
            return Err(KernelError::invalid(format!(
                "input must have at least k columns: had {n}, needed {k} (input shape {shape:?})"
            )));
        }
        let k = k as usize;
        let rows = x.num_elements().checked_div(n).unwrap_or(0);
        let mut out_shape = x.dims().clone();
        *out_shape.last_mut().expect("rank >= 1") = k;
        let total = num_elements(&out_shape)?;
        let mut values = alloc::<T>(total)?;
        let mut indices = alloc::<i32>(total)?;
        if n > i32::MAX as usize {
            return Err(KernelError::invalid(format!(
                "rows of {n} elements do not fit int32 indices"
            )));
        }
        let src = x.as_slice::<T>()?;
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for r in 0..rows {
            let row = &src[r * n..(r + 1) * n];
            order.clear();
            order.extend(0..n);
            if k > 0 && k < n {
                order.select_nth_unstable_by(k - 1, |&a, &b| top_order(row, a, b));
            }
            order[..k].sort_unstable_by(|&a, &b| top_order(row, a, b));
            for &i in &order[..k] {
                values.push(row[i]);
                indices.push(i as i32);
            }
        }
        ctx.set_output(Tensor::from_parts(
            out_shape.clone(),
            T::into_buffer(values),
        ));
        ctx.set_output(Tensor::from_parts(out_shape, i32::into_buffer(indices)));
        Ok(())
    })
}

// ---- Where ------------------------------------------------------------------------------------

fn where_kernel(ctx: &mut KernelContext<'_>) -> KResult {
    let x = ctx.input(0);
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let buf = x.buffer();
    let hits: Vec<usize> = (0..x.num_elements())
        .filter(|&i| buf.get_f64(i) != 0.0)
        .collect();
    let total = hits
        .len()
        .checked_mul(rank)
        .ok_or_else(|| KernelError::invalid("Where: output size overflows"))?;
    let mut coords = alloc::<i64>(total)?;
    let mut idx = vec![0i64; rank];
    for &flat in &hits {
        let mut rest = flat;
        for d in (0..rank).rev() {
            idx[d] = (rest % shape[d]) as i64;
            rest /= shape[d];
        }
        coords.extend_from_slice(&idx);
    }
    let t = Tensor::from_parts([hits.len(), rank][..].into(), i64::into_buffer(coords));
    ctx.set_output(t);
    Ok(())
}

// ---- InTopKV2 ---------------------------------------------------------------------------------

fn in_top_k<T: Numeric>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| -> KResult {
        let k = scalar_int(ctx, 2, "k")?;
        let (p, t) = (ctx.input(0), ctx.input(1));
        let [batch, classes] = p.shape() else {
            return Err(KernelError::invalid(format!(
                "predictions must be 2-D, got shape {:?}",
                p.shape()
            )));
        };
        if t.shape() != [*batch] {
            return Err(KernelError::invalid(format!(
                "targets must be 1-D with one entry per row of predictions ({batch}), got \
                 shape {:?}",
                t.shape()
            )));
        }
        let (batch, classes) = (*batch, *classes);
        let preds = p.as_slice::<T>()?;
        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            let row = &preds[b * classes..(b + 1) * classes];
            let target = t.get_i64(b);
            // As TensorFlow: an out-of-range target or any non-finite prediction in the row
            // cannot be said to be in the top k; otherwise fewer than k classes strictly above
            // the target's prediction (so ties at the boundary count as in).
            let in_top = if target < 0 || target as u64 >= classes as u64 {
                false
            } else {
                let tv = row[target as usize].to_f64();
                let mut above = 0i64;
                let mut finite = true;
                for v in row {
                    let v = v.to_f64();
                    if !v.is_finite() {
                        finite = false;
                        break;
                    }
                    if v > tv {
                        above += 1;
                    }
                }
                finite && above < k
            };
            out.push(in_top);
        }
        ctx.set_output(Tensor::from_parts(
            [batch][..].into(),
            bool::into_buffer(out),
        ));
        Ok(())
    })
}
