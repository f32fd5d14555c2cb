//! The rendezvous through which `_Send` and `_Recv` of different partitions exchange tensors
//! within one step. The local one is in-process; a remote one (the distributed runtime)
//! implements the same trait over a transport.
//!
//! A value is sent once per key and step; inside control flow the key carries the frame
//! instance and the iteration (`tensor;frame;iteration`, see `kernels::sendrecv_ops`), and the
//! value may be *dead* (`None`): the receiver then produces a dead value too.
//!
//! Receiving comes in two forms: a blocking [`Rendezvous::recv`] (the kernels of graphs without
//! control flow, which run their nodes in one global order) and [`LocalRendezvous::recv_async`]
//! with a per-partition *mailbox* (the control-flow machine parks the receiving node and goes on
//! with other work; it only waits, in [`LocalRendezvous::wait`], when nothing else is ready).
//!
//! A rendezvous may have a *forwarder* (the distributed runtime's): a value sent under a key
//! whose receiver is in another process is handed to it instead of being kept here.
//!
//! The rendezvous knows how many partitions still run. When every one of them waits and no
//! value is on its way to any of them, no partition can ever send again: the step is aborted
//! with an error naming the keys waited for, instead of hanging.

use crate::error::{Code, KResult, KernelError};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// A received value: `None` when the sender's value was dead.
pub type Received = Option<Tensor>;

/// Takes a sent value whose receiver is elsewhere (`Ok`), or gives it back (`Err`) to be kept
/// for a receiver here.
pub type Forwarder = Arc<dyn Fn(&str, Received) -> Result<(), Received> + Send + Sync>;

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
    ready: HashMap<String, Received>,
    /// Keys received asynchronously before they were sent: (mailbox, token).
    waiters: HashMap<String, (usize, u64)>,
    /// Per mailbox: completed asynchronous receives, (token, value).
    mailboxes: Vec<VecDeque<(u64, Received)>>,
    aborted: Option<KernelError>,
    /// Partitions of the step still running (0: unknown, no deadlock detection).
    live: usize,
    /// Partitions blocked in `recv` (by key) or `wait` (by mailbox).
    blocked_keys: Vec<String>,
    blocked_mailboxes: HashSet<usize>,
}

impl State {
    fn abort_error(&self, what: &str) -> Option<KernelError> {
        self.aborted.as_ref().map(|e| KernelError {
            code: Code::Cancelled,
            message: format!("step aborted while {what}: {}", e.message),
        })
    }

    /// Every live partition waits and nothing is on its way to any of them.
    fn deadlocked(&self) -> bool {
        self.live > 0
            && self.blocked_keys.len() + self.blocked_mailboxes.len() >= self.live
            && self
                .blocked_keys
                .iter()
                .all(|k| !self.ready.contains_key(k))
            && self
                .blocked_mailboxes
                .iter()
                .all(|&m| self.mailboxes[m].is_empty())
    }

    fn abort_deadlock(&mut self) {
        let mut keys: Vec<&str> = self
            .blocked_keys
            .iter()
            .map(String::as_str)
            .chain(self.waiters.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        self.aborted.get_or_insert(KernelError::internal(format!(
            "every partition of the step waits for a value that no partition will send: [{}]",
            keys.join(", ")
        )));
    }
}

/// A rendezvous within one process.
#[derive(Default)]
pub struct LocalRendezvous {
    state: Mutex<State>,
    arrived: Condvar,
    forwarder: OnceLock<Forwarder>,
}

impl LocalRendezvous {
    /// A rendezvous for a step of `partitions` partitions (each calls
    /// [`LocalRendezvous::partition_done`] when it stops).
    pub fn for_partitions(partitions: usize) -> LocalRendezvous {
        let r = LocalRendezvous::default();
        if let Ok(mut s) = r.state.lock() {
            s.live = partitions;
        }
        r
    }

    fn lock(&self) -> KResult<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| KernelError::internal("rendezvous lock poisoned"))
    }

    fn wait_on<'a>(&self, s: MutexGuard<'a, State>) -> KResult<MutexGuard<'a, State>> {
        // The timeout only re-checks the state; a send or an abort wakes us at once.
        Ok(self
            .arrived
            .wait_timeout(s, Duration::from_millis(100))
            .map_err(|_| KernelError::internal("rendezvous lock poisoned"))?
            .0)
    }

    /// Hands values sent here to `forwarder` first (see [`Forwarder`]); the first one set
    /// stays.
    pub fn set_forwarder(&self, forwarder: Forwarder) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Sends `value` (`None`: dead) under `key`.
    pub fn send_value(&self, key: &str, value: Received) -> KResult {
        let mut s = self.lock()?;
        if let Some(e) = s.abort_error(&format!("sending `{key}`")) {
            return Err(e);
        }
        let value = match self.forwarder.get() {
            Some(forward) => {
                drop(s);
                match forward(key, value) {
                    Ok(()) => return Ok(()),
                    Err(value) => {
                        s = self.lock()?;
                        value
                    }
                }
            }
            None => value,
        };
        if let Some((mailbox, token)) = s.waiters.remove(key) {
            s.mailboxes[mailbox].push_back((token, value));
        } else if s.ready.insert(key.to_string(), value).is_some() {
            return Err(KernelError::internal(format!(
                "`{key}` was sent twice in one step"
            )));
        }
        drop(s);
        self.arrived.notify_all();
        Ok(())
    }

    /// A new mailbox for [`LocalRendezvous::recv_async`].
    pub fn mailbox(&self) -> KResult<usize> {
        let mut s = self.lock()?;
        s.mailboxes.push(VecDeque::new());
        Ok(s.mailboxes.len() - 1)
    }

    /// The value under `key` when it was sent already; otherwise it will be put in `mailbox`
    /// with `token` when it is (see [`LocalRendezvous::wait`]).
    pub fn recv_async(&self, key: &str, mailbox: usize, token: u64) -> KResult<Option<Received>> {
        let mut s = self.lock()?;
        if let Some(e) = s.abort_error(&format!("receiving `{key}`")) {
            return Err(e);
        }
        if let Some(v) = s.ready.remove(key) {
            return Ok(Some(v));
        }
        if mailbox >= s.mailboxes.len() {
            return Err(KernelError::internal(format!("no mailbox {mailbox}")));
        }
        if s.waiters
            .insert(key.to_string(), (mailbox, token))
            .is_some()
        {
            return Err(KernelError::internal(format!(
                "`{key}` is received twice in one step"
            )));
        }
        Ok(None)
    }

    /// Waits until `mailbox` holds values, and takes them.
    pub fn wait(&self, mailbox: usize) -> KResult<Vec<(u64, Received)>> {
        let mut s = self.lock()?;
        loop {
            if mailbox >= s.mailboxes.len() {
                return Err(KernelError::internal(format!("no mailbox {mailbox}")));
            }
            if !s.mailboxes[mailbox].is_empty() {
                return Ok(s.mailboxes[mailbox].drain(..).collect());
            }
            if let Some(e) = s.abort_error("waiting for values from other devices") {
                return Err(e);
            }
            s.blocked_mailboxes.insert(mailbox);
            if s.deadlocked() {
                s.abort_deadlock();
                self.arrived.notify_all();
            }
            s = self.wait_on(s)?;
            s.blocked_mailboxes.remove(&mailbox);
        }
    }

    /// A partition of the step stopped (it sends nothing more).
    pub fn partition_done(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.live = s.live.saturating_sub(1);
            if s.deadlocked() {
                s.abort_deadlock();
            }
        }
        self.arrived.notify_all();
    }
}

impl Rendezvous for LocalRendezvous {
    fn send(&self, key: &str, tensor: Tensor) -> KResult {
        self.send_value(key, Some(tensor))
    }

    fn recv(&self, key: &str) -> KResult<Tensor> {
        let mut s = self.lock()?;
        loop {
            if let Some(v) = s.ready.remove(key) {
                return v.ok_or_else(|| {
                    KernelError::internal(format!(
                        "`{key}` arrived dead outside control flow (the partitioner marks \
                         transfers of graphs with control flow)"
                    ))
                });
            }
            if let Some(e) = s.abort_error(&format!("receiving `{key}`")) {
                return Err(e);
            }
            s.blocked_keys.push(key.to_string());
            if s.deadlocked() {
                s.abort_deadlock();
                self.arrived.notify_all();
            }
            s = self.wait_on(s)?;
            if let Some(i) = s.blocked_keys.iter().position(|k| k == key) {
                s.blocked_keys.swap_remove(i);
            }
        }
    }

    fn abort(&self, error: KernelError) {
        if let Ok(mut s) = self.state.lock() {
            s.aborted.get_or_insert(error);
        }
        self.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_receive_before_and_after_send() {
        let r = LocalRendezvous::for_partitions(2);
        let mb = r.mailbox().unwrap();
        r.send_value("a", Some(Tensor::scalar(1.0f32))).unwrap();
        let got = r.recv_async("a", mb, 7).unwrap();
        assert_eq!(got, Some(Some(Tensor::scalar(1.0f32))));
        assert_eq!(r.recv_async("b", mb, 8).unwrap(), None);
        r.send_value("b", None).unwrap();
        assert_eq!(r.wait(mb).unwrap(), vec![(8, None)]);
    }

    #[test]
    fn waiting_everywhere_is_a_deadlock_error() {
        let r = LocalRendezvous::for_partitions(2);
        let mb = r.mailbox().unwrap();
        assert_eq!(r.recv_async("x", mb, 0).unwrap(), None);
        r.partition_done();
        let e = r.wait(mb).unwrap_err();
        assert!(
            e.message.contains("no partition will send"),
            "{}",
            e.message
        );
        assert!(e.message.contains('x'), "{}", e.message);
    }
}
