//! Kernels for constants, feeds, identity and data movement.

use crate::error::KernelError;
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use tfr_graph::DTypeSet;

fn const_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let value = Tensor::from_value(init.attrs.tensor("value")?);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        ctx.set_output(value.clone());
        Ok(())
    }))
}

fn arg_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let index = *init.attrs.int("index")? as usize;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let t = ctx
            .feeds
            .get(index)
            .cloned()
            .ok_or_else(|| KernelError::internal(format!("feed {index} missing")))?;
        ctx.set_output(t);
        Ok(())
    }))
}

fn placeholder_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let expected = init
        .outputs
        .first()
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(Box::new(move |_: &mut KernelContext<'_>| {
        Err(KernelError::invalid(format!(
            "placeholder must be fed a value of {expected}"
        )))
    }))
}

fn identity_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let x = ctx.take_input(0);
        ctx.set_output(x);
        Ok(())
    }))
}

fn no_op_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|_: &mut KernelContext<'_>| Ok(())))
}

pub fn register(r: &mut KernelRegistry) {
    let all = DTypeSet::of(&tfr_graph::DType::ALL);
    r.cpu("Const", all, const_kernel);
    r.cpu(tfr_graph::passes::ARG_OP, all, arg_kernel);
    r.cpu("Placeholder", all, placeholder_kernel);
    r.cpu("Identity", all, identity_kernel);
    r.cpu("StopGradient", all, identity_kernel);
    r.cpu("NoOp", all, no_op_kernel);
}
