//! Workers that poll for work through a step instead of sleeping between its parallel parts.
//!
//! Why: a rayon worker with nothing to do sleeps after a few dozen yields, and waking it is
//! slow on virtual machines. On the 2-vCPU machines these figures come from (session 17), two
//! 100 µs halves joined after a 50 µs pause took 166 µs, after 1 ms 202 µs: the sleeper joined
//! late or never. A training step is dozens of short parallel sections (each product, each
//! wide elementwise op) with serial gaps between them, so each section paid that wake-up.
//! During a parallel step, every worker but the one running the step's first node runs a
//! poller: it executes whatever work the pool has (`rayon::yield_now`) and spins otherwise,
//! until the step ends or it has found nothing for [`IDLE_LIMIT`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a poller spins without finding work before it leaves its worker to sleep: long
/// enough to bridge a step's serial gaps, short enough that a step waiting on something
/// slow (a queue, a long serial kernel) does not burn a core.
const IDLE_LIMIT: Duration = Duration::from_micros(500);

/// 0: not decided yet; 1: on; 2: off.
static POLLING: AtomicU8 = AtomicU8::new(0);

/// Turns the pollers on (the default) or off for this process (`TFR_POLL=0` turns them off
/// too): for comparing the two.
pub fn set_step_polling(on: bool) {
    POLLING.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

fn polling() -> bool {
    match POLLING.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("TFR_POLL").map_or(true, |v| v != "0");
            set_step_polling(on);
            on
        }
    }
}

/// The end of a step, as the pollers see it.
pub(super) struct StepAwake {
    /// Whether this step has pollers (chosen by `run_choice.rs`, and polling is on).
    active: bool,
    /// Nodes still to run; the step's work is over at zero.
    remaining: AtomicUsize,
    done: AtomicBool,
}

impl StepAwake {
    /// A step of `nodes` nodes, with pollers when `wanted` (the executable's measurements
    /// chose them) and polling is on.
    pub(super) fn new(nodes: usize, wanted: bool) -> Self {
        StepAwake {
            active: wanted && nodes > 0 && polling(),
            remaining: AtomicUsize::new(nodes),
            done: AtomicBool::new(false),
        }
    }

    /// Starts a poller for each worker of the current pool but one, if the step has them.
    /// Spawn them before the step's own work: a worker pops its newest job first, so the
    /// step's first node runs at once on this worker and the pollers are left to the others
    /// to steal.
    pub(super) fn start<'s>(&'s self, scope: &rayon::Scope<'s>) {
        if !self.active {
            return;
        }
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(move |_| self.poll());
        }
    }

    /// Counts a node run; the last ends the pollers. Without pollers, nothing is counted.
    pub(super) fn node_done(&self) {
        if self.active && self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Tells the pollers the step has no more work.
    pub(super) fn finish(&self) {
        self.done.store(true, Ordering::Release);
    }

    fn poll(&self) {
        // A worker waiting inside a node (for the other half of a parallel section) may pick
        // a poller from its own queue; polling there would hold that node up until the
        // poller gives up, so such a poller ends at once.
        if NODE_DEPTH.with(Cell::get) > 0 {
            return;
        }
        let mut last_work = Instant::now();
        let mut spins = 0u32;
        while !self.done.load(Ordering::Acquire) {
            if let Some(rayon::Yield::Executed) = rayon::yield_now() {
                last_work = Instant::now();
                continue;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            // The clock is read now and then: it costs more than a poll.
            if spins.is_multiple_of(64) && last_work.elapsed() >= IDLE_LIMIT {
                return;
            }
        }
    }
}

thread_local! {
    /// How many nodes this thread is inside (a node's kernel may run others' work nested).
    static NODE_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` (a node's kernel) marked as inside a node for [`StepAwake`]'s pollers.
pub(super) fn in_node<R>(f: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            NODE_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    NODE_DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}
