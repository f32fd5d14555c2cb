//! Fused optimizer updates. Each kernel holds the write locks of the variables it updates (in
//! input order, so two kernels never wait on each other in a cycle), updates them in place when
//! no one else holds their buffers, and outputs the new value of `var`.

use super::cwise_ops::unsupported;
use super::matmul_op::{matmul_operands, parallel_work, MatMulElem};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::FloatElem;
use crate::resource::Var;
use crate::tensor::Tensor;
use std::sync::{Arc, RwLockWriteGuard};
use tfr_graph::{DTypeSet, Element};

/// The variable named by resource input `i`.
pub(crate) fn var_at(ctx: &KernelContext<'_>, i: usize) -> KResult<Arc<Var>> {
    let name = ctx
        .input(i)
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::invalid(format!("input {i}: empty resource handle")))?;
    ctx.resources.lookup(&name)
}

pub(crate) fn lock(var: &Var) -> KResult<RwLockWriteGuard<'_, Option<Tensor>>> {
    var.value
        .write()
        .map_err(|_| KernelError::internal("variable lock poisoned"))
}

/// The elements of a variable's value, made uniquely owned (copied only if shared).
fn owned<'a, T: FloatElem>(
    slot: &'a mut Option<Tensor>,
    var: &Var,
    grad: &Tensor,
) -> KResult<&'a mut [T]> {
    owned_as(slot, var, grad.shape())
}

/// [`owned`] for an update of shape `shape`.
pub(crate) fn owned_as<'a, T: Element>(
    slot: &'a mut Option<Tensor>,
    var: &Var,
    shape: &[usize],
) -> KResult<&'a mut [T]> {
    let t = slot.as_mut().ok_or_else(|| {
        KernelError::precondition(format!(
            "variable `{}` is not initialized; run its initializer first",
            var.name
        ))
    })?;
    if t.shape() != shape {
        return Err(KernelError::invalid(format!(
            "variable `{}` has shape {:?}, the gradient has shape {:?}",
            var.name,
            t.shape(),
            shape
        )));
    }
    if t.dtype() != T::DTYPE {
        return Err(KernelError::invalid(format!(
            "variable `{}` holds {}, the gradient is {}",
            var.name,
            t.dtype(),
            T::DTYPE
        )));
    }
    if t.slice_mut::<T>().is_none() {
        *t = Tensor::new(t.shape(), t.as_slice::<T>()?.to_vec())?;
    }
    t.slice_mut::<T>()
        .ok_or_else(|| KernelError::internal("a fresh copy is shared"))
}

fn scalar<T: FloatElem>(ctx: &KernelContext<'_>, i: usize) -> KResult<T> {
    Ok(ctx.input(i).scalar_value::<T>()?)
}

fn gradient_descent<T: FloatElem>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let var = var_at(ctx, 0)?;
        let alpha: T = scalar(ctx, 1)?;
        let delta = ctx.take_input(2);
        let mut slot = lock(&var)?;
        let w = owned::<T>(&mut slot, &var, &delta)?;
        w.iter_mut()
            .zip(delta.as_slice::<T>()?)
            .for_each(|(w, &d)| *w = *w - alpha * d);
        let out = slot
            .clone()
            .ok_or_else(|| KernelError::internal("variable emptied"))?;
        drop(slot);
        ctx.set_output(out);
        Ok(())
    })
}

/// `var -= alpha * (a @ b)`, the product accumulated into the variable by the matrix kernel.
fn gradient_descent_matmul<T: FloatElem + MatMulElem>(ta: bool, tb: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let var = var_at(ctx, 0)?;
        let alpha: T = scalar(ctx, 1)?;
        let (m, n, k, a, b) = matmul_operands::<T>(ctx.input(2), ctx.input(3), ta, tb)?;
        let mut slot = lock(&var)?;
        let w = owned_as::<T>(&mut slot, &var, &[m, n])?;
        T::matmul_update(m, n, k, a, b, w, T::zero() - alpha, parallel_work(m, n, k))?;
        let out = slot
            .clone()
            .ok_or_else(|| KernelError::internal("variable emptied"))?;
        drop(slot);
        ctx.set_output(out);
        Ok(())
    })
}

fn momentum<T: FloatElem>(nesterov: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (var, accum) = (var_at(ctx, 0)?, var_at(ctx, 1)?);
        let lr: T = scalar(ctx, 2)?;
        let grad = ctx.take_input(3);
        let mu: T = scalar(ctx, 4)?;
        let mut vs = lock(&var)?;
        let mut acs = lock(&accum)?;
        let a = owned::<T>(&mut acs, &accum, &grad)?;
        let w = owned::<T>(&mut vs, &var, &grad)?;
        for ((w, a), &g) in w.iter_mut().zip(a.iter_mut()).zip(grad.as_slice::<T>()?) {
            *a = mu * *a + g;
            *w = *w
                - if nesterov {
                    lr * (g + mu * *a)
                } else {
                    lr * *a
                };
        }
        let out = vs
            .clone()
            .ok_or_else(|| KernelError::internal("variable emptied"))?;
        drop((vs, acs));
        ctx.set_output(out);
        Ok(())
    })
}

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
        let grad = ctx.take_input(8);
        let mut vs = lock(&var)?;
        let mut ms = lock(&m)?;
        let mut vvs = lock(&v)?;
        let mm = owned::<T>(&mut ms, &m, &grad)?;
        let vv = owned::<T>(&mut vvs, &v, &grad)?;
        let w = owned::<T>(&mut vs, &var, &grad)?;
        let one = T::one();
        for (((w, m), v), &g) in w
            .iter_mut()
            .zip(mm.iter_mut())
            .zip(vv.iter_mut())
            .zip(grad.as_slice::<T>()?)
        {
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            *w = *w - (lr_t * *m / (v.sqrt() + eps) + lr_wd * *w);
        }
        let out = vs
            .clone()
            .ok_or_else(|| KernelError::internal("variable emptied"))?;
        drop((vs, ms, vvs));
        ctx.set_output(out);
        Ok(())
    })
}

/// The float dtype of the gradient (the last input) selects the kernel.
fn grad_dtype(init: &KernelInit<'_>) -> tfr_graph::DType {
    init.inputs
        .last()
        .map_or(tfr_graph::DType::F32, |t| t.dtype)
}

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("ResourceApplyGradientDescent", res, |init| Ok(dispatch_float!(grad_dtype(init), T => gradient_descent::<T>(), _ => return Err(unsupported(init)))));
    r.cpu("ResourceApplyGradientDescentMatMul", res, |init| {
        let ta = *init.attrs.boolean("transpose_a")?;
        let tb = *init.attrs.boolean("transpose_b")?;
        Ok(dispatch_float!(grad_dtype(init), T => gradient_descent_matmul::<T>(ta, tb), _ => return Err(unsupported(init))))
    });
    r.cpu("ResourceApplyMomentum", res, |init| {
        let nesterov = *init.attrs.boolean("use_nesterov")?;
        Ok(dispatch_float!(grad_dtype(init), T => momentum::<T>(nesterov), _ => return Err(unsupported(init))))
    });
    r.cpu("ResourceApplyAdam", res, |init| {
        Ok(dispatch_float!(grad_dtype(init), T => adam::<T>(), _ => return Err(unsupported(init))))
    });
}
