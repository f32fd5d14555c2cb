//! Row access to variables: `ResourceGather` copies the rows it is asked for under the
//! variable's read lock (never the table), the `ResourceScatter*` kernels update rows in place
//! under its write lock (copying the table only if a step still holds its old value).

use super::output_alloc::{alloc, num_elements};
use super::training_ops::{lock, owned_as, var_at};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_any, dispatch_numeric};
use tfr_graph::{DType, DTypeSet, Element};

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("ResourceGather", res, resource_gather_kernel);
    r.cpu("ResourceScatterAdd", res, |init| {
        scatter_kernel(init, ScatterOp::Add)
    });
    r.cpu("ResourceScatterSub", res, |init| {
        scatter_kernel(init, ScatterOp::Sub)
    });
    r.cpu("ResourceScatterUpdate", res, |init| {
        scatter_kernel(init, ScatterOp::Update)
    });
}

/// `indices` checked against `rows`: each as a row number, or an error naming its position.
pub(crate) fn checked_rows(indices: &[i64], rows: usize) -> KResult<Vec<usize>> {
    indices
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            usize::try_from(v)
                .ok()
                .filter(|&r| r < rows)
                .ok_or_else(|| {
                    KernelError::invalid(format!("indices[{i}] = {v} is not in [0, {rows})"))
                })
        })
        .collect()
}

fn resource_gather_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = *init.attrs.dtype("dtype")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let var = var_at(ctx, 0)?;
        let indices = ctx.input_ints(1)?;
        let index_shape: Dims = ctx.input(1).shape().into();
        let guard = var
            .value
            .read()
            .map_err(|_| KernelError::internal("variable lock poisoned"))?;
        let table = guard.as_ref().ok_or_else(|| {
            KernelError::precondition(format!(
                "variable `{}` is not initialized; run its initializer first",
                var.name
            ))
        })?;
        if table.dtype() != dtype {
            return Err(KernelError::invalid(format!(
                "variable `{}` holds {}, gathered as {dtype}",
                var.name,
                table.dtype()
            )));
        }
        let Some((&rows, row_shape)) = table.shape().split_first() else {
            return Err(KernelError::invalid(format!(
                "variable `{}` is a scalar: it has no rows to gather",
                var.name
            )));
        };
        let rows_at = checked_rows(&indices, rows)?;
        let inner = num_elements(row_shape)?;
        let mut shape = index_shape;
        shape.extend_from_slice(row_shape);
        let out = dispatch_any!(dtype, T => gather_rows::<T>(table.as_slice::<T>()?, &rows_at, inner, shape)?,
            _ => return Err(KernelError::internal("unhandled dtype")));
        drop(guard);
        ctx.set_output(out);
        Ok(())
    }))
}

fn gather_rows<T: Element>(
    src: &[T],
    rows: &[usize],
    inner: usize,
    shape: Dims,
) -> KResult<Tensor> {
    let mut v = alloc::<T>(num_elements(&shape)?)?;
    for &r in rows {
        v.extend_from_slice(&src[r * inner..(r + 1) * inner]);
    }
    Ok(Tensor::from_parts(shape, T::into_buffer(v)))
}

#[derive(Clone, Copy)]
enum ScatterOp {
    Add,
    Sub,
    Update,
}

fn scatter_kernel(init: &KernelInit<'_>, op: ScatterOp) -> Result<Box<dyn OpKernel>, String> {
    let dtype = init.inputs.get(2).map_or(DType::F32, |t| t.dtype);
    Ok(
        dispatch_numeric!(dtype, T => scatter::<T>(op), _ => return Err(super::cwise_ops::unsupported(init))),
    )
}

fn scatter<T: Numeric>(op: ScatterOp) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let var = var_at(ctx, 0)?;
        let indices = ctx.input_ints(1)?;
        let updates = ctx.input(2);
        let mut slot = lock(&var)?;
        let shape: Vec<usize> = match slot.as_ref() {
            Some(t) => t.shape().to_vec(),
            None => {
                return Err(KernelError::precondition(format!(
                    "variable `{}` is not initialized; run its initializer first",
                    var.name
                )))
            }
        };
        let Some((&rows, row_shape)) = shape.split_first() else {
            return Err(KernelError::invalid(format!(
                "variable `{}` is a scalar: it has no rows to update",
                var.name
            )));
        };
        let mut want: Vec<usize> = ctx.input(1).shape().to_vec();
        want.extend_from_slice(row_shape);
        if updates.shape() != want.as_slice() {
            return Err(KernelError::invalid(format!(
                "updates have shape {:?}; the rows of variable `{}` at indices of shape {:?} \
                 are {want:?}",
                updates.shape(),
                var.name,
                ctx.input(1).shape()
            )));
        }
        let rows_at = checked_rows(&indices, rows)?;
        let inner = num_elements(row_shape)?;
        let src = updates.as_slice::<T>()?;
        let w = owned_as::<T>(&mut slot, &var, &shape)?;
        for (k, &r) in rows_at.iter().enumerate() {
            let dst = &mut w[r * inner..(r + 1) * inner];
            let s = &src[k * inner..(k + 1) * inner];
            match op {
                ScatterOp::Add => dst.iter_mut().zip(s).for_each(|(a, &b)| *a = a.add(b)),
                ScatterOp::Sub => dst.iter_mut().zip(s).for_each(|(a, &b)| *a = a.sub(b)),
                ScatterOp::Update => dst.copy_from_slice(s),
            }
        }
        Ok(())
    })
}
