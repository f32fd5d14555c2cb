//! Where and how a step of a parallel executable runs: as a dataflow on the session's pool
//! with its idle workers polling for work (`keep_awake.rs`), on the pool without them, or in
//! order on the caller's thread.
//!
//! Why choose: each wins somewhere, by a lot, on the machines these figures come from
//! (2-vCPU VMs, session 17):
//! - handing a step to the pool and waking the caller at its end costs tens of microseconds,
//!   more than short steps gain from a second core (the int8 MLP at batch 1 took 42 µs
//!   through the pool, 14 µs on the caller's thread);
//! - polling workers make longer steps up to 10-20% faster on a quiet machine (LeNet int8 at
//!   batch 64: 1.39 -> 1.27 ms), but with another process busy on one core they made the MLP
//!   steps 22-33% slower (the poller takes the core from the step's own worker);
//! - short steps lose with pollers (a stolen node moves its data to the other core).
//!
//! The model, the machine and its load decide, so each executable measures: every [`PERIOD`]
//! steps it runs [`TRIAL`] steps each way (the caller's thread only when pool steps are
//! short) and keeps to the fastest until the next period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Steps between two trials.
const PERIOD: u64 = 256;
/// Steps of each way in a trial (the fastest of them counts).
const TRIAL: u64 = 3;
/// Pool steps at least this long never move to the caller's thread: the hand-off is then a
/// small part of the step, and the second core a large one.
const CALLER_MAX: Duration = Duration::from_micros(400);

/// The way a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Way {
    /// On the pool, its idle workers polling for work.
    Polling,
    /// On the pool, its idle workers left to sleep.
    Pool,
    /// In order on the caller's thread.
    Caller,
}

const WAYS: [Way; 3] = [Way::Polling, Way::Pool, Way::Caller];

/// One executable's measurements.
pub(super) struct RunChoice {
    steps: AtomicU64,
    /// Per way (in `WAYS` order), the fastest step since its trial began, in ns (`u64::MAX`:
    /// none).
    best: [AtomicU64; 3],
}

impl Default for RunChoice {
    fn default() -> Self {
        RunChoice {
            steps: AtomicU64::new(0),
            best: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }
}

impl RunChoice {
    /// The way the next step runs.
    pub(super) fn next(&self) -> Way {
        let phase = self.steps.fetch_add(1, Ordering::Relaxed) % PERIOD;
        let trial = (phase / TRIAL) as usize;
        if let Some(&way) = WAYS.get(trial) {
            if phase.is_multiple_of(TRIAL) {
                self.best[trial].store(u64::MAX, Ordering::Relaxed);
            }
            if way != Way::Caller || self.pool_steps_short() {
                return way;
            }
        }
        self.fastest()
    }

    /// Records a step of `way` that took `took`.
    pub(super) fn record(&self, way: Way, took: Duration) {
        let ns = took.as_nanos().min(u64::MAX as u128 - 1) as u64;
        self.best[Self::index(way)].fetch_min(ns, Ordering::Relaxed);
    }

    fn index(way: Way) -> usize {
        WAYS.iter().position(|&w| w == way).unwrap_or(0)
    }

    fn best(&self, way: Way) -> u64 {
        self.best[Self::index(way)].load(Ordering::Relaxed)
    }

    fn pool_steps_short(&self) -> bool {
        self.best(Way::Polling).min(self.best(Way::Pool)) < CALLER_MAX.as_nanos() as u64
    }

    /// The way with the fastest step in its last trial (the caller's thread only while pool
    /// steps are short).
    fn fastest(&self) -> Way {
        let mut choice = Way::Polling;
        for way in [Way::Pool, Way::Caller] {
            if way == Way::Caller && !self.pool_steps_short() {
                continue;
            }
            if self.best(way) < self.best(choice) {
                choice = way;
            }
        }
        choice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one step whose length in µs per way is `us` (polling, pool, caller).
    fn run(c: &RunChoice, us: [u64; 3]) -> Way {
        let way = c.next();
        c.record(way, Duration::from_micros(us[RunChoice::index(way)]));
        way
    }

    fn count(ways: &[Way], way: Way) -> usize {
        ways.iter().filter(|&&w| w == way).count()
    }

    #[test]
    fn each_way_is_tried_and_the_fastest_kept() {
        let c = RunChoice::default();
        let ways: Vec<Way> = (0..2 * PERIOD).map(|_| run(&c, [40, 30, 11])).collect();
        let p = PERIOD as usize;
        let t = TRIAL as usize;
        for period in [0, p] {
            assert!(ways[period..period + t].iter().all(|&w| w == Way::Polling));
            assert!(ways[period + t..period + 2 * t]
                .iter()
                .all(|&w| w == Way::Pool));
            assert!(ways[period + 2 * t..period + p]
                .iter()
                .all(|&w| w == Way::Caller));
        }
    }

    #[test]
    fn without_pollers_when_they_are_slower() {
        let c = RunChoice::default();
        let ways: Vec<Way> = (0..PERIOD)
            .map(|_| run(&c, [2_100, 1_700, 1_000]))
            .collect();
        assert_eq!(count(&ways, Way::Polling), 3);
        assert_eq!(count(&ways, Way::Caller), 0, "long steps stay on the pool");
        assert!(ways[6..].iter().all(|&w| w == Way::Pool));
    }

    #[test]
    fn with_pollers_when_they_are_faster() {
        let c = RunChoice::default();
        let ways: Vec<Way> = (0..PERIOD).map(|_| run(&c, [100, 130, 180])).collect();
        assert_eq!(count(&ways, Way::Pool), 3);
        assert_eq!(count(&ways, Way::Caller), 3);
        assert!(ways[9..].iter().all(|&w| w == Way::Polling));
    }
}
