//! A step on a task: its rendezvous, and its *outbox*, the values its partition sent for peers
//! to pull with `RecvTensor`/`RecvTensors`.
//!
//! The partition's non-frame-aware `_Send`s go to the outbox (through the rendezvous's
//! forwarder) instead of the rendezvous, and a pull waits there asynchronously (a oneshot, no
//! blocking thread). The outbox also knows when the step is over on this task: once the
//! partition's run ended well and peers took every value it sent, nothing can need the step
//! any more, so the task ends it itself and the master sends no `CleanupStep`.

use crate::cancel::CancelToken;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tfr_core::rendezvous::{LocalRendezvous, Received};
use tokio::sync::oneshot;

/// What a pull of a key gets.
pub(crate) enum Taken {
    Value(Received),
    /// The value is larger than the pull allows; it stays for a pull without a limit.
    TooLarge,
    /// The step ended (why); or the pull is refused (why).
    Ended(String),
}

/// A pull answered now, or later through the receiver.
pub(crate) enum Take {
    Now(Taken),
    Wait(oneshot::Receiver<Taken>),
}

/// One step on this task.
pub(crate) struct StepState {
    pub(crate) rendezvous: Arc<LocalRendezvous>,
    outbox: Mutex<Outbox>,
    /// Cancelled when the step ends here.
    pub(crate) ended: CancelToken,
}

#[derive(Default)]
struct Outbox {
    ready: HashMap<String, Received>,
    /// Pulls waiting for their key: (largest value they take, where to answer).
    waiting: HashMap<String, (Option<usize>, oneshot::Sender<Taken>)>,
    taken: HashSet<String>,
    /// Set when the partition's run ended well: the keys it sends.
    ran: Option<Arc<HashSet<String>>>,
    /// Why the step ended.
    ended: Option<String>,
}

fn size_of(v: &Received) -> usize {
    v.as_ref()
        .map_or(0, |t| t.num_elements() * t.dtype().size_of())
}

impl Outbox {
    fn complete(&self) -> bool {
        self.ran
            .as_ref()
            .is_some_and(|keys| keys.iter().all(|k| self.taken.contains(k)))
    }
}

impl StepState {
    pub(crate) fn new(rendezvous: Arc<LocalRendezvous>) -> StepState {
        StepState {
            rendezvous,
            outbox: Mutex::new(Outbox::default()),
            ended: CancelToken::new(),
        }
    }

    /// Keeps `value`, sent under `key` for a peer, or hands it to the pull waiting for it.
    /// True when that completes the step (see [`StepState::ran`]).
    pub(crate) fn put(&self, key: &str, value: Received) -> bool {
        let Ok(mut o) = self.outbox.lock() else {
            return false;
        };
        if o.ended.is_some() {
            return false;
        }
        let value = match o.waiting.remove(key) {
            Some((max, reply)) if max.is_none_or(|m| size_of(&value) <= m) => {
                match reply.send(Taken::Value(value)) {
                    Ok(()) => {
                        o.taken.insert(key.to_string());
                        return o.complete();
                    }
                    // The pull went away: keep the value for another.
                    Err(Taken::Value(v)) => v,
                    Err(_) => return false,
                }
            }
            Some((_, reply)) => {
                let _ = reply.send(Taken::TooLarge);
                value
            }
            None => value,
        };
        o.ready.insert(key.to_string(), value);
        false
    }

    /// Takes the value of `key` (at most `max` bytes, when given); the flag is true when the
    /// take completes the step.
    pub(crate) fn take(&self, key: &str, max: Option<usize>) -> (Take, bool) {
        let Ok(mut o) = self.outbox.lock() else {
            return (
                Take::Now(Taken::Ended("outbox lock poisoned".into())),
                false,
            );
        };
        if let Some(why) = &o.ended {
            return (Take::Now(Taken::Ended(why.clone())), false);
        }
        if let Some(v) = o.ready.get(key) {
            if max.is_some_and(|m| size_of(v) > m) {
                return (Take::Now(Taken::TooLarge), false);
            }
            let v = o.ready.remove(key).flatten();
            o.taken.insert(key.to_string());
            return (Take::Now(Taken::Value(v)), o.complete());
        }
        if o.waiting.contains_key(key) {
            return (
                Take::Now(Taken::Ended(format!(
                    "`{key}` is received twice in one step"
                ))),
                false,
            );
        }
        let (reply, rx) = oneshot::channel();
        o.waiting.insert(key.to_string(), (max, reply));
        (Take::Wait(rx), false)
    }

    /// The partition's run ended well; it sends `keys`. True when peers took them all already
    /// (or there are none): the step is over here.
    pub(crate) fn ran(&self, keys: &Arc<HashSet<String>>) -> bool {
        match self.outbox.lock() {
            Ok(mut o) => {
                o.ran = Some(keys.clone());
                o.complete()
            }
            Err(_) => false,
        }
    }

    /// The step ended: waiting pulls (and later ones) get `why`.
    pub(crate) fn end(&self, why: &str) {
        if let Ok(mut o) = self.outbox.lock() {
            o.ended.get_or_insert_with(|| why.to_string());
            o.ready.clear();
            for (_, (_, reply)) in o.waiting.drain() {
                let _ = reply.send(Taken::Ended(why.to_string()));
            }
        }
        self.ended.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfr_core::Tensor;

    fn keys(k: &[&str]) -> Arc<HashSet<String>> {
        Arc::new(k.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn the_step_completes_when_the_run_ended_and_every_value_was_taken() {
        let s = StepState::new(Arc::default());
        // A pull before the value: it waits, and the put hands the value over.
        let (t, done) = s.take("a", None);
        assert!(!done);
        let Take::Wait(mut rx) = t else {
            panic!("the pull should wait")
        };
        assert!(!s.put("a", Some(Tensor::scalar(1.0f32))));
        assert!(matches!(rx.try_recv(), Ok(Taken::Value(Some(_)))));
        // A value too large for a limited pull stays for an unlimited one.
        assert!(!s.put("b", Some(Tensor::new(&[4], vec![0.0f32; 4]).unwrap())));
        assert!(matches!(s.take("b", Some(8)).0, Take::Now(Taken::TooLarge)));
        assert!(!s.ran(&keys(&["a", "b"])));
        let (t, done) = s.take("b", None);
        assert!(matches!(t, Take::Now(Taken::Value(Some(_)))) && done);
        // After the end, pulls get the reason.
        s.end("over");
        assert!(matches!(s.take("c", None).0, Take::Now(Taken::Ended(w)) if w == "over"));
    }

    #[test]
    fn ending_the_step_answers_waiting_pulls() {
        let s = StepState::new(Arc::default());
        let Take::Wait(mut rx) = s.take("a", Some(100)).0 else {
            panic!("the pull should wait")
        };
        assert!(matches!(s.take("a", None).0, Take::Now(Taken::Ended(_))));
        s.end("aborted");
        assert!(matches!(rx.try_recv(), Ok(Taken::Ended(w)) if w == "aborted"));
        assert!(s.ended.is_cancelled());
        // A run that sends nothing completes the step at once.
        assert!(StepState::new(Arc::default()).ran(&keys(&[])));
    }
}
