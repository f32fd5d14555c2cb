//! Variable kernels. A variable lives in the session's [`ResourceMgr`](crate::resource::ResourceMgr);
//! handles carry its shared name. Updates hold the variable's write lock for the whole
//! read-modify-write, so concurrent steps never lose an update.

use super::cwise_ops::{unsupported, zip_kernel};
use crate::dispatch_numeric;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::resource::Var;
use crate::tensor::Tensor;
use std::sync::Arc;
use tfr_graph::{DType, DTypeSet};

fn handle_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let name = init.attrs.string("shared_name")?.clone();
    let dtype = *init.attrs.dtype("dtype")?;
    let shape = init.attrs.shape("shape")?.clone();
    let handle = Tensor::scalar(name.clone());
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        ctx.resources.variable(&name, dtype, &shape)?;
        ctx.set_output(handle.clone());
        Ok(())
    }))
}

/// The variable a handle input names.
fn variable(ctx: &KernelContext<'_>) -> KResult<Arc<Var>> {
    let name = ctx
        .input(0)
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::invalid("empty resource handle"))?;
    ctx.resources.lookup(&name)
}

fn read_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = *init.attrs.dtype("dtype")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let var = variable(ctx)?;
        if var.dtype != dtype {
            return Err(KernelError::invalid(format!(
                "variable `{}` holds {}, read as {dtype}",
                var.name, var.dtype
            )));
        }
        let v = var.read()?;
        ctx.set_output(v);
        Ok(())
    }))
}

fn is_initialized_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let var = variable(ctx)?;
        let init = var.value.read().map(|v| v.is_some()).unwrap_or(false);
        ctx.set_output(Tensor::scalar(init));
        Ok(())
    }))
}

fn assign_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let var = variable(ctx)?;
        let value = ctx.take_input(1);
        var.check(&value)?;
        *var.value
            .write()
            .map_err(|_| KernelError::internal("variable lock poisoned"))? = Some(value.clone());
        ctx.set_output(value);
        Ok(())
    }))
}

/// AssignAdd / AssignSub: `var = f(var, delta)` under the variable's write lock, in place when
/// no step still holds the old value.
fn update_kernel<T: Numeric>(f: fn(T, T) -> T) -> Box<dyn OpKernel> {
    let apply = zip_kernel::<T, _>(f);
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let var = variable(ctx)?;
        let delta = ctx.take_input(1);
        let mut slot = var
            .value
            .write()
            .map_err(|_| KernelError::internal("variable lock poisoned"))?;
        let old = slot.take().ok_or_else(|| {
            KernelError::precondition(format!(
                "variable `{}` is not initialized; run its initializer first",
                var.name
            ))
        })?;
        if old.shape() != delta.shape() {
            let msg = format!(
                "variable `{}` has shape {:?}, update has shape {:?}",
                var.name,
                old.shape(),
                delta.shape()
            );
            *slot = Some(old);
            return Err(KernelError::invalid(msg));
        }
        let mut inner = KernelContext::new(
            [Some(old.clone()), Some(delta)].into_iter().collect(),
            ctx.resources,
            &[],
        );
        drop(old);
        let result = apply.compute(&mut inner);
        let new = inner.into_outputs().pop();
        match (result, new) {
            (Ok(()), Some(new)) => {
                *slot = Some(new.clone());
                ctx.set_output(new);
                Ok(())
            }
            (r, _) => r.and(Err(KernelError::internal("update produced no value"))),
        }
    })
}

fn assign_add(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = init.inputs.get(1).map_or(DType::F32, |t| t.dtype);
    Ok(
        dispatch_numeric!(dtype, T => update_kernel::<T>(|a, b| a.add(b)), _ => return Err(unsupported(init))),
    )
}

fn assign_sub(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = init.inputs.get(1).map_or(DType::F32, |t| t.dtype);
    Ok(
        dispatch_numeric!(dtype, T => update_kernel::<T>(|a, b| a.sub(b)), _ => return Err(unsupported(init))),
    )
}

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("VarHandleOp", res, handle_kernel);
    r.cpu("ReadVariableOp", res, read_kernel);
    r.cpu("VarIsInitializedOp", res, is_initialized_kernel);
    r.cpu("AssignVariableOp", res, assign_kernel);
    r.cpu("AssignAddVariableOp", res, assign_add);
    r.cpu("AssignSubVariableOp", res, assign_sub);
}
