//! The rendezvous through which `_Send` and `_Recv` kernels of different partitions exchange
//! tensors within one step. The local one is in-process; a remote one (the distributed
//! runtime) implements the same trait over a transport.

use crate::error::{Code, KResult, KernelError};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Exchanges tensors by key within one step.
pub trait Rendezvous: Send + Sync {
    /// Makes `tensor` available under `key`; each key is sent once per step.
    fn send(&self, key: &str, tensor: Tensor) -> KResult;
    /// Waits for the tensor sent under `key`, or for the step to be aborted.
    fn recv(&self, key: &str) -> KResult<Tensor>;
    /// Wakes every waiting `recv` with `error` (a partition failed).
    fn abort(&self, error: KernelError);
}

#[derive(Default)]
struct State {
    ready: HashMap<String, Tensor>,
    aborted: Option<KernelError>,
}

/// A rendezvous within one process.
#[derive(Default)]
pub struct LocalRendezvous {
    state: Mutex<State>,
    arrived: Condvar,
}

impl LocalRendezvous {
    fn lock(&self) -> KResult<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| KernelError::internal("rendezvous lock poisoned"))
    }
}

impl Rendezvous for LocalRendezvous {
    fn send(&self, key: &str, tensor: Tensor) -> KResult {
        let mut s = self.lock()?;
        if s.ready.insert(key.to_string(), tensor).is_some() {
            return Err(KernelError::internal(format!(
                "`{key}` was sent twice in one step"
            )));
        }
        drop(s);
        self.arrived.notify_all();
        Ok(())
    }

    fn recv(&self, key: &str) -> KResult<Tensor> {
        let mut s = self.lock()?;
        loop {
            if let Some(e) = &s.aborted {
                return Err(KernelError {
                    code: Code::Cancelled,
                    message: format!("step aborted while receiving `{key}`: {}", e.message),
                });
            }
            if let Some(t) = s.ready.remove(key) {
                return Ok(t);
            }
            // The timeout only re-checks the state; a send or an abort wakes us at once.
            s = self
                .arrived
                .wait_timeout(s, Duration::from_millis(100))
                .map_err(|_| KernelError::internal("rendezvous lock poisoned"))?
                .0;
        }
    }

    fn abort(&self, error: KernelError) {
        if let Ok(mut s) = self.state.lock() {
            s.aborted.get_or_insert(error);
        }
        self.arrived.notify_all();
    }
}
