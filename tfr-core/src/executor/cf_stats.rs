//! Counters of the control-flow machine's work, summed over an executable's steps: how many
//! frame instances and iterations it made, and its peak state (for scaling tests of nested
//! loops; updated once per step, so they cost a few atomic adds per step).

use std::sync::atomic::{AtomicU64, Ordering};

/// What the control-flow machine did over the steps of one executable (see
/// [`super::Executable::control_flow_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlFlowStats {
    /// Steps run on the control-flow machine.
    pub steps: u64,
    /// Frame instances created: one per loop entered in a parent iteration (dead ones too).
    pub frames: u64,
    /// Iterations started, each frame's first and last (predicate false) one included; a
    /// simple loop run by its plan counts the same iterations.
    pub iterations: u64,
    /// Of those, the iterations run by loop bodies compiled to machine code.
    pub machine_code_iterations: u64,
    /// The most frame instances alive at once in one step.
    pub peak_frames: u64,
    /// The most per-iteration states allocated in one step (retired ones are reused).
    pub peak_iteration_states: u64,
}

/// One step's counts, kept by the machine without atomics.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct StepCounts {
    pub(super) frames: u64,
    pub(super) iterations: u64,
    pub(super) machine_code_iterations: u64,
    pub(super) iteration_states: u64,
}

#[derive(Debug, Default)]
pub(super) struct CfCounters {
    steps: AtomicU64,
    frames: AtomicU64,
    iterations: AtomicU64,
    machine_code_iterations: AtomicU64,
    peak_frames: AtomicU64,
    peak_iteration_states: AtomicU64,
}

impl CfCounters {
    /// Adds one finished step (`live_frames`: the machine's frame table size, its peak).
    pub(super) fn record(&self, step: &StepCounts, live_frames: usize) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.frames.fetch_add(step.frames, Ordering::Relaxed);
        self.iterations
            .fetch_add(step.iterations, Ordering::Relaxed);
        self.machine_code_iterations
            .fetch_add(step.machine_code_iterations, Ordering::Relaxed);
        self.peak_frames
            .fetch_max(live_frames as u64, Ordering::Relaxed);
        self.peak_iteration_states
            .fetch_max(step.iteration_states, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> ControlFlowStats {
        ControlFlowStats {
            steps: self.steps.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            iterations: self.iterations.load(Ordering::Relaxed),
            machine_code_iterations: self.machine_code_iterations.load(Ordering::Relaxed),
            peak_frames: self.peak_frames.load(Ordering::Relaxed),
            peak_iteration_states: self.peak_iteration_states.load(Ordering::Relaxed),
        }
    }
}
