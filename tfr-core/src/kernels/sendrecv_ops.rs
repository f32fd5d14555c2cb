//! `_Send` / `_Recv`: the step's rendezvous is a session-state object whose key arrives as the
//! resource input, so transfers need nothing from the executor.

use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::rendezvous::LocalRendezvous;
use crate::rendezvous::Rendezvous;
use std::sync::Arc;
use tfr_graph::DTypeSet;

/// The rendezvous named by resource input `i`.
fn rendezvous(ctx: &KernelContext<'_>, i: usize) -> KResult<Arc<LocalRendezvous>> {
    let key = ctx
        .input(i)
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::internal("empty rendezvous handle"))?;
    ctx.resources
        .find_state::<LocalRendezvous>(&key)?
        .ok_or_else(|| KernelError::internal(format!("no rendezvous `{key}` in this step")))
}

fn send_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let name = init.attrs.string("tensor_name")?.clone();
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let r = rendezvous(ctx, 1)?;
        let t = ctx.take_input(0);
        r.send(&name, t)
    }))
}

fn recv_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let name = init.attrs.string("tensor_name")?.clone();
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let r = rendezvous(ctx, 0)?;
        let t = r.recv(&name)?;
        ctx.set_output(t);
        Ok(())
    }))
}

pub fn register(r: &mut KernelRegistry) {
    let all = DTypeSet::of(&tfr_graph::DType::ALL);
    r.cpu("_Send", all, send_kernel);
    r.cpu("_Recv", DTypeSet::RESOURCE, recv_kernel);
}
