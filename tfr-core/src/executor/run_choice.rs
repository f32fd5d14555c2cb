//! Where a step of a parallel executable runs: as a dataflow on the session's pool, or in
//! order on the caller's thread.
//!
//! Why choose: handing a step to the pool and waking the caller at its end costs tens of
//! microseconds on virtual machines (session 17: the int8 MLP at batch 1 took 42 µs through
//! the pool and 10-11 µs on one core), more than short steps gain from a second core. Which
//! is faster depends on the model, the machine and its load, so each executable measures
//! both: every [`PERIOD`] steps it runs a few on the pool and, if those were short, a few on
//! the caller's thread, then keeps to the faster until the next period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Steps between two trials of both ways.
const PERIOD: u64 = 256;
/// Steps of each way in a trial (the fastest of them counts).
const TRIAL: u64 = 3;
/// Pool steps at least this long never move to the caller's thread: the hand-off is then a
/// small part of the step, and the second core a large one.
const CALLER_MAX: Duration = Duration::from_micros(400);
/// Pool steps at least this long keep the pool's other workers polling
/// (`keep_awake.rs`); shorter ones are a few nodes, and a poller stealing one moves its
/// data to the other core (the int8 MLP at batch 1: 41 -> 53 µs with pollers).
const POLL_MIN: Duration = Duration::from_micros(80);

/// One executable's measurements.
pub(super) struct RunChoice {
    steps: AtomicU64,
    /// The fastest step of each way since its last trial began, in ns (`u64::MAX`: none).
    best_pool: AtomicU64,
    best_caller: AtomicU64,
    /// The last pool step, in ns.
    last_pool: AtomicU64,
}

impl Default for RunChoice {
    fn default() -> Self {
        RunChoice {
            steps: AtomicU64::new(0),
            best_pool: AtomicU64::new(u64::MAX),
            best_caller: AtomicU64::new(u64::MAX),
            last_pool: AtomicU64::new(0),
        }
    }
}

/// The way a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Way {
    Pool,
    Caller,
}

impl RunChoice {
    /// The way the next step runs.
    pub(super) fn next(&self) -> Way {
        let phase = self.steps.fetch_add(1, Ordering::Relaxed) % PERIOD;
        if phase == 0 {
            self.best_pool.store(u64::MAX, Ordering::Relaxed);
        }
        if phase < TRIAL {
            return Way::Pool;
        }
        let pool = self.best_pool.load(Ordering::Relaxed);
        if pool >= CALLER_MAX.as_nanos() as u64 {
            return Way::Pool;
        }
        if phase == TRIAL {
            self.best_caller.store(u64::MAX, Ordering::Relaxed);
        }
        if phase < 2 * TRIAL || self.best_caller.load(Ordering::Relaxed) < pool {
            Way::Caller
        } else {
            Way::Pool
        }
    }

    /// Records a step of `way` that took `took`.
    pub(super) fn record(&self, way: Way, took: Duration) {
        let ns = took.as_nanos().min(u64::MAX as u128 - 1) as u64;
        match way {
            Way::Pool => {
                self.best_pool.fetch_min(ns, Ordering::Relaxed);
                self.last_pool.store(ns, Ordering::Relaxed);
            }
            Way::Caller => {
                self.best_caller.fetch_min(ns, Ordering::Relaxed);
            }
        }
    }

    /// Whether the next pool step should keep the pool's workers polling.
    pub(super) fn poll_workers(&self) -> bool {
        self.last_pool.load(Ordering::Relaxed) >= POLL_MIN.as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &RunChoice, pool_us: u64, caller_us: u64) -> Way {
        let way = c.next();
        let us = if way == Way::Pool { pool_us } else { caller_us };
        c.record(way, Duration::from_micros(us));
        way
    }

    #[test]
    fn short_steps_move_to_the_caller_when_that_is_faster() {
        let c = RunChoice::default();
        let ways: Vec<Way> = (0..PERIOD + 10).map(|_| run(&c, 40, 11)).collect();
        assert!(ways[..3].iter().all(|&w| w == Way::Pool));
        assert!(ways[3..PERIOD as usize].iter().all(|&w| w == Way::Caller));
        // The next period tries the pool again, then goes back.
        let p = PERIOD as usize;
        assert!(ways[p..p + 3].iter().all(|&w| w == Way::Pool));
        assert!(ways[p + 3..].iter().all(|&w| w == Way::Caller));
    }

    #[test]
    fn short_steps_stay_on_the_pool_when_it_is_faster() {
        let c = RunChoice::default();
        let ways: Vec<Way> = (0..PERIOD).map(|_| run(&c, 100, 180)).collect();
        assert_eq!(ways.iter().filter(|&&w| w == Way::Caller).count(), 3);
        assert!(ways[6..].iter().all(|&w| w == Way::Pool));
    }

    #[test]
    fn long_steps_never_leave_the_pool() {
        let c = RunChoice::default();
        assert!((0..PERIOD).all(|_| run(&c, 2_000, 10) == Way::Pool));
        assert!(c.poll_workers());
    }
}
