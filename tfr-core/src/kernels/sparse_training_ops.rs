//! Sparse optimizer updates (`ResourceSparseApply*`): only the rows named by `indices` of the
//! variable and its slots are read and written, in place under their write locks (taken in
//! input order, like the dense kernels). Duplicate indices are summed first, so each row is
//! updated once; the other rows are never touched (bit-identical). The per-row formulas are the
//! dense kernels' (`training_ops.rs`), so a touched row gets exactly the dense update.

use super::cwise_ops::unsupported;
use super::embedding_ops::checked_rows;
use super::output_alloc::num_elements;
use super::training_ops::{lock, owned_as, var_at};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::FloatElem;
use crate::resource::Var;
use crate::tensor::Tensor;
use std::collections::HashMap;
use tfr_graph::DTypeSet;

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("ResourceSparseApplyGradientDescent", res, |init| {
        Ok(dispatch_float!(float_dtype(init), T => gradient_descent::<T>(), _ => return Err(unsupported(init))))
    });
    r.cpu("ResourceSparseApplyMomentum", res, |init| {
        let nesterov = *init.attrs.boolean("use_nesterov")?;
        Ok(dispatch_float!(float_dtype(init), T => momentum::<T>(nesterov), _ => return Err(unsupported(init))))
    });
    r.cpu("ResourceSparseApplyAdagrad", res, |init| {
        Ok(dispatch_float!(float_dtype(init), T => adagrad::<T>(), _ => return Err(unsupported(init))))
    });
    r.cpu("ResourceSparseApplyAdam", res, |init| {
        Ok(dispatch_float!(float_dtype(init), T => adam::<T>(), _ => return Err(unsupported(init))))
    });
}

/// The float dtype of the update (the learning rate and gradient share it).
fn float_dtype(init: &KernelInit<'_>) -> tfr_graph::DType {
    init.inputs
        .iter()
        .map(|t| t.dtype)
        .find(|d| d.is_float())
        .unwrap_or(tfr_graph::DType::F32)
}

/// A sparse gradient checked against its variable and with duplicate rows summed (in order of
/// first occurrence).
struct Rows<T> {
    /// Distinct row numbers.
    rows: Vec<usize>,
    /// `rows.len() * inner` gradient values.
    grad: Vec<T>,
    /// Elements per row.
    inner: usize,
    /// The variable's shape (its slots have it too).
    shape: Vec<usize>,
}

impl<T: FloatElem> Rows<T> {
    fn row(&self, k: usize) -> &[T] {
        &self.grad[k * self.inner..(k + 1) * self.inner]
    }
}

/// Reads and checks `grad` (input `grad_at`) and `indices` (input `indices_at`) against the
/// variable whose value `slot` holds.
fn rows_of<T: FloatElem>(
    ctx: &KernelContext<'_>,
    var: &Var,
    slot: &Option<Tensor>,
    grad_at: usize,
    indices_at: usize,
) -> KResult<Rows<T>> {
    let shape = slot
        .as_ref()
        .ok_or_else(|| {
            KernelError::precondition(format!(
                "variable `{}` is not initialized; run its initializer first",
                var.name
            ))
        })?
        .shape()
        .to_vec();
    let (grad, index_tensor) = (ctx.input(grad_at), ctx.input(indices_at));
    if index_tensor.rank() != 1 {
        return Err(KernelError::invalid(format!(
            "indices must be a vector, got shape {:?}",
            index_tensor.shape()
        )));
    }
    let Some((&num_rows, row_shape)) = shape.split_first() else {
        return Err(KernelError::invalid(format!(
            "variable `{}` is a scalar: it has no rows to update",
            var.name
        )));
    };
    let indices = ctx.input_ints(indices_at)?;
    let mut want = vec![indices.len()];
    want.extend_from_slice(row_shape);
    if grad.shape() != want.as_slice() {
        return Err(KernelError::invalid(format!(
            "grad has shape {:?}; for {} indices into variable `{}` of shape {shape:?} it must be \
             {want:?}",
            grad.shape(),
            indices.len(),
            var.name
        )));
    }
    let at = checked_rows(&indices, num_rows)?;
    let inner = num_elements(row_shape)?;
    let src = grad.as_slice::<T>()?;
    let mut first: HashMap<usize, usize> = HashMap::with_capacity(at.len());
    let mut rows = Vec::with_capacity(at.len());
    let mut summed: Vec<T> = Vec::with_capacity(src.len());
    for (k, &r) in at.iter().enumerate() {
        let g = &src[k * inner..(k + 1) * inner];
        match first.get(&r) {
            Some(&j) => summed[j * inner..(j + 1) * inner]
                .iter_mut()
                .zip(g)
                .for_each(|(a, &b)| *a = *a + b),
            None => {
                first.insert(r, rows.len());
                rows.push(r);
                summed.extend_from_slice(g);
            }
        }
    }
    Ok(Rows {
        rows,
        grad: summed,
        inner,
        shape,
    })
}

fn scalar<T: FloatElem>(ctx: &KernelContext<'_>, i: usize) -> KResult<T> {
    Ok(ctx.input(i).scalar_value::<T>()?)
}

/// Row `r` of a flat table with rows of `inner` elements.
fn row_mut<T>(w: &mut [T], r: usize, inner: usize) -> &mut [T] {
    &mut w[r * inner..(r + 1) * inner]
}

fn gradient_descent<T: FloatElem>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let var = var_at(ctx, 0)?;
        let alpha: T = scalar(ctx, 1)?;
        let mut slot = lock(&var)?;
        let rows = rows_of::<T>(ctx, &var, &slot, 2, 3)?;
        let w = owned_as::<T>(&mut slot, &var, &rows.shape)?;
        for (k, &r) in rows.rows.iter().enumerate() {
            row_mut(w, r, rows.inner)
                .iter_mut()
                .zip(rows.row(k))
                .for_each(|(w, &d)| *w = *w - alpha * d);
        }
        Ok(())
    })
}

fn momentum<T: FloatElem>(nesterov: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (var, accum) = (var_at(ctx, 0)?, var_at(ctx, 1)?);
        let lr: T = scalar(ctx, 2)?;
        let mu: T = scalar(ctx, 5)?;
        let mut vs = lock(&var)?;
        let mut acs = lock(&accum)?;
        let rows = rows_of::<T>(ctx, &var, &vs, 3, 4)?;
        let a = owned_as::<T>(&mut acs, &accum, &rows.shape)?;
        let w = owned_as::<T>(&mut vs, &var, &rows.shape)?;
        for (k, &r) in rows.rows.iter().enumerate() {
            let (wr, ar) = (row_mut(w, r, rows.inner), row_mut(a, r, rows.inner));
            for ((w, a), &g) in wr.iter_mut().zip(ar.iter_mut()).zip(rows.row(k)) {
                *a = mu * *a + g;
                *w = *w
                    - if nesterov {
                        lr * (g + mu * *a)
                    } else {
                        lr * *a
                    };
            }
        }
        Ok(())
    })
}

/// As the composed dense Adagrad of `tfr-nn`: `accum += g^2; var -= lr * (g * rsqrt(accum))`.
fn adagrad<T: FloatElem>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let (var, accum) = (var_at(ctx, 0)?, var_at(ctx, 1)?);
        let lr: T = scalar(ctx, 2)?;
        let mut vs = lock(&var)?;
        let mut acs = lock(&accum)?;
        let rows = rows_of::<T>(ctx, &var, &vs, 3, 4)?;
        let a = owned_as::<T>(&mut acs, &accum, &rows.shape)?;
        let w = owned_as::<T>(&mut vs, &var, &rows.shape)?;
        for (k, &r) in rows.rows.iter().enumerate() {
            let (wr, ar) = (row_mut(w, r, rows.inner), row_mut(a, r, rows.inner));
            for ((w, a), &g) in wr.iter_mut().zip(ar.iter_mut()).zip(rows.row(k)) {
                *a = *a + g * g;
                *w = *w - lr * (g * a.sqrt().recip());
            }
        }
        Ok(())
    })
}

/// Lazy Adam: the dense kernel's formula on the touched rows only.
fn adam<T: FloatElem>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let (var, m, v) = (var_at(ctx, 0)?, var_at(ctx, 1)?, var_at(ctx, 2)?);
        let (lr_t, b1, b2, eps, lr_wd): (T, T, T, T, T) = (
            scalar(ctx, 3)?,
            scalar(ctx, 4)?,
            scalar(ctx, 5)?,
            scalar(ctx, 6)?,
            scalar(ctx, 7)?,
        );
        let mut vs = lock(&var)?;
        let mut ms = lock(&m)?;
        let mut vvs = lock(&v)?;
        let rows = rows_of::<T>(ctx, &var, &vs, 8, 9)?;
        let mm = owned_as::<T>(&mut ms, &m, &rows.shape)?;
        let vv = owned_as::<T>(&mut vvs, &v, &rows.shape)?;
        let w = owned_as::<T>(&mut vs, &var, &rows.shape)?;
        let one = T::one();
        for (k, &r) in rows.rows.iter().enumerate() {
            let inner = rows.inner;
            let (wr, mr, vr) = (
                row_mut(w, r, inner),
                row_mut(mm, r, inner),
                row_mut(vv, r, inner),
            );
            for (((w, m), v), &g) in wr
                .iter_mut()
                .zip(mr.iter_mut())
                .zip(vr.iter_mut())
                .zip(rows.row(k))
            {
                *m = b1 * *m + (one - b1) * g;
                *v = b2 * *v + (one - b2) * g * g;
                *w = *w - (lr_t * *m / (v.sqrt() + eps) + lr_wd * *w);
            }
        }
        Ok(())
    })
}
