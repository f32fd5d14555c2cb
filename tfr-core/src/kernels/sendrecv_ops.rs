//! `_Send` / `_Recv`: the step's rendezvous is a session-state object whose key arrives as the
//! resource input, so transfers of graphs without control flow need nothing from the executor.
//!
//! In a graph with control flow the partitioner marks every transfer `frame_aware`: the
//! control-flow machine runs those itself (see [`StepTransfers`]), because a value may be dead
//! (a dead send still sends, as "dead", so the receiver is dead too) and may be sent once per
//! iteration: the key then carries the frame instance and the iteration.

use crate::device::{needs_copy, DeviceBackend};
use crate::error::{Code, KResult, KernelError};
use crate::kernel::DeviceType;
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::memory::MemorySpace;
use crate::rendezvous::{LocalRendezvous, Received, Rendezvous};
use crate::resource::ResourceMgr;
use crate::tensor::Tensor;
use std::sync::Arc;
use tfr_graph::{DTypeSet, Node};

/// The attribute the partitioner sets on the transfers of graphs with control flow.
pub const FRAME_AWARE: &str = "frame_aware";

/// True for a `_Send` or `_Recv` that the control-flow machine runs (see the module doc).
pub fn is_frame_aware_transfer(node: &Node) -> bool {
    matches!(node.op.as_str(), "_Send" | "_Recv") && node.attrs.bool_opt(FRAME_AWARE) == Some(&true)
}

/// The rendezvous key of `tensor_name` sent in iteration `iter` of the frame instance
/// identified by `frame` (0 and 0 outside loops).
pub fn transfer_key(tensor_name: &str, frame: u64, iter: u64) -> String {
    format!("{tensor_name};{frame:x};{iter}")
}

/// Hash of a frame's name, for [`frame_key`].
pub fn frame_name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// The key of a frame instance: the same in every partition for the instance of the frame
/// (by its name's hash) opened in iteration `parent_iter` of the parent instance `parent`.
pub fn frame_key(parent: u64, parent_iter: u64, name_hash: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (parent, parent_iter, name_hash).hash(&mut h);
    h.finish() | 1
}

/// The rendezvous a handle tensor names.
fn find_rendezvous(resources: &ResourceMgr, handle: &Tensor) -> KResult<Arc<LocalRendezvous>> {
    let key = handle
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::internal("empty rendezvous handle"))?;
    resources
        .find_state::<LocalRendezvous>(&key)?
        // Gone only when the step ended or was aborted on this task (e.g. another task of
        // the step failed while this partition was starting): a consequence, not a cause, so
        // cancelled (a distributed master reports the failure that caused it instead).
        .ok_or_else(|| KernelError {
            code: Code::Cancelled,
            message: format!("no rendezvous `{key}` in this step (it ended or was aborted)"),
        })
}

/// The rendezvous named by resource input `i`.
fn rendezvous(ctx: &KernelContext<'_>, i: usize) -> KResult<Arc<LocalRendezvous>> {
    find_rendezvous(ctx.resources, ctx.input(i))
}

/// One partition's frame-aware transfers in one step: sends, and receives parked until their
/// value arrives, each with a token of the caller's type (the machine's task).
pub(crate) struct StepTransfers<T> {
    rendezvous: Option<(Arc<LocalRendezvous>, usize)>,
    parked: Vec<Option<T>>,
    free: Vec<usize>,
    num_parked: usize,
}

impl<T> Default for StepTransfers<T> {
    fn default() -> Self {
        StepTransfers {
            rendezvous: None,
            parked: Vec::new(),
            free: Vec::new(),
            num_parked: 0,
        }
    }
}

impl<T> StepTransfers<T> {
    fn rendezvous(
        &mut self,
        resources: &ResourceMgr,
        handle: Option<&Tensor>,
    ) -> KResult<(Arc<LocalRendezvous>, usize)> {
        if let Some((r, m)) = &self.rendezvous {
            return Ok((r.clone(), *m));
        }
        let handle = handle.ok_or_else(|| KernelError::internal("no rendezvous handle"))?;
        let r = find_rendezvous(resources, handle)?;
        let m = r.mailbox()?;
        self.rendezvous = Some((r.clone(), m));
        Ok((r, m))
    }

    /// `_Send` with inputs (value, handle): sends the value, dead when it is `None`.
    pub fn send(
        &mut self,
        key: &str,
        inputs: &mut [Option<Tensor>],
        resources: &ResourceMgr,
    ) -> KResult {
        let (r, _) = self.rendezvous(resources, inputs.get(1).and_then(Option::as_ref))?;
        let value = inputs.first_mut().and_then(Option::take);
        r.send_value(key, value)
    }

    /// `_Recv` with input (handle): the value when it is there already; otherwise the
    /// receive is parked with `token` and comes back from [`StepTransfers::wait`].
    pub fn recv(
        &mut self,
        key: &str,
        inputs: &[Option<Tensor>],
        resources: &ResourceMgr,
        token: T,
    ) -> KResult<Option<(T, Received)>> {
        let (r, m) = self.rendezvous(resources, inputs.first().and_then(Option::as_ref))?;
        let slot = self.free.pop().unwrap_or(self.parked.len());
        match r.recv_async(key, m, slot as u64)? {
            Some(v) => {
                self.free.push(slot);
                Ok(Some((token, v)))
            }
            None => {
                if slot == self.parked.len() {
                    self.parked.push(Some(token));
                } else {
                    self.parked[slot] = Some(token);
                }
                self.num_parked += 1;
                Ok(None)
            }
        }
    }

    /// Receives are parked: the caller has nothing else to run until one completes.
    pub fn waiting(&self) -> bool {
        self.num_parked > 0
    }

    /// The tokens of the parked receives.
    pub fn parked(&self) -> impl Iterator<Item = &T> {
        self.parked.iter().flatten()
    }

    /// Waits for parked receives to complete; returns them with their tokens.
    pub fn wait(&mut self) -> KResult<Vec<(T, Received)>> {
        let Some((r, m)) = self.rendezvous.clone() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (slot, v) in r.wait(m)? {
            let token = self
                .parked
                .get_mut(slot as usize)
                .and_then(Option::take)
                .ok_or_else(|| KernelError::internal("a receive completed twice"))?;
            self.free.push(slot as usize);
            self.num_parked -= 1;
            out.push((token, v));
        }
        Ok(out)
    }
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

/// The device of a transfer kernel on a device with memory of its own.
fn device_of(init: &KernelInit<'_>) -> Result<Arc<dyn DeviceBackend>, String> {
    init.device
        .cloned()
        .ok_or_else(|| format!("`{}` ({}) needs the device it runs on", init.node, init.op))
}

/// `_Arg` on a device: the feed, copied into the device's memory (once per step).
fn device_arg_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let index = *init.attrs.int("index")? as usize;
    let dev = device_of(init)?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let t = ctx
            .feeds
            .get(index)
            .cloned()
            .ok_or_else(|| KernelError::internal(format!("feed {index} missing")))?;
        let t = if needs_copy(&t, dev.memory_space()) {
            dev.copy_from_host(t)?
        } else {
            t
        };
        ctx.set_output(t);
        Ok(())
    }))
}

/// `_Send` on a device: the value goes through the rendezvous in host memory, so the device
/// copies it out (the one copy of this crossing).
fn device_send_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let name = init.attrs.string("tensor_name")?.clone();
    let dev = device_of(init)?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let r = rendezvous(ctx, 1)?;
        let t = ctx.take_input(0);
        let t = if needs_copy(&t, MemorySpace::HOST) {
            dev.copy_to_host(t)?
        } else {
            t
        };
        r.send(&name, t)
    }))
}

/// `_Recv` on a device: the host value received, copied into the device's memory.
fn device_recv_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let name = init.attrs.string("tensor_name")?.clone();
    let dev = device_of(init)?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let r = rendezvous(ctx, 0)?;
        let t = r.recv(&name)?;
        let t = if needs_copy(&t, dev.memory_space()) {
            dev.copy_from_host(t)?
        } else {
            t
        };
        ctx.set_output(t);
        Ok(())
    }))
}

/// Registers `_Arg`, `_Send` and `_Recv` for `device`, a device type whose memory is not the
/// host's: feeds and received values are copied in, sent values copied out, each by the
/// device (`DeviceBackend::copy_from_host` / `copy_to_host`). Frame-aware transfers (steps
/// with control flow) are run by the executor and do not copy yet: keep such steps on the
/// host.
pub fn register_device_transfers(r: &mut KernelRegistry, device: DeviceType) {
    // Every dtype but strings, which stay in host memory (placement keeps them on the host).
    let all = DTypeSet::of(&tfr_graph::DType::ALL).without(tfr_graph::DType::String);
    r.register(tfr_graph::passes::ARG_OP, device, all, device_arg_kernel);
    r.register("_Send", device, all, device_send_kernel);
    r.register("_Recv", device, DTypeSet::RESOURCE, device_recv_kernel);
}
