//! Step timelines: what `RunOptions { trace: true }` records (TensorFlow's
//! `RunOptions(trace_level=FULL_TRACE)` and `RunMetadata.step_stats`).
//!
//! A traced step hands each executable a [`StepTrace`]; the run strategies stamp a node's
//! start and end around its kernel and push one raw event (node index, frame template,
//! iteration, thread, instants, output bytes) under a lock. Names are resolved only when the
//! step is over ([`Executable::trace_stats`](super::Executable::trace_stats)). Without
//! tracing the strategies hold `None` and test it once before and once after each node: no
//! timestamp, no allocation.

use crate::tensor::Tensor;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Options of one step (see `Session::run_with_options`).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Record a timeline of the step: one [`NodeExecStats`] per node run.
    pub trace: bool,
}

/// What a step recorded besides its values (empty unless [`RunOptions::trace`] was set).
#[derive(Clone, Debug, Default)]
pub struct RunMetadata {
    /// One entry per node executed, sorted by start time. Nodes a control-flow step found
    /// dead (an untaken branch) did not run and have none; a node run in several loop
    /// iterations has one per iteration.
    pub step_stats: Vec<NodeExecStats>,
    /// Wall time of the whole step (feed checks to fetched values), in µs.
    pub step_us: f64,
}

/// One node's execution in a traced step.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeExecStats {
    /// The node's name in the step graph (after pruning and optimization).
    pub node: String,
    pub op: String,
    /// The device that ran it (`/job:localhost/replica:0/task:0/device:CPU:0`).
    pub device: String,
    /// A small number naming the OS thread that ran it (stable for the process's life).
    pub thread: u64,
    /// That thread's name, or `thread-<n>`.
    pub thread_name: String,
    /// The loop frame it ran in (`""` outside loops) and the iteration of that frame.
    pub frame: String,
    pub iteration: u64,
    /// Start and end of its computation, in µs since the step started.
    pub start_us: f64,
    pub end_us: f64,
    /// Total bytes of its outputs (elements times `DType::size_of`; dead outputs count 0).
    pub output_bytes: u64,
}

/// Time spent in one op type over a step (see [`RunMetadata::op_summary`]).
#[derive(Clone, Debug, PartialEq)]
pub struct OpSummary {
    pub op: String,
    /// Nodes (or node iterations) of this op run.
    pub count: usize,
    /// Sum of their durations, in µs.
    pub total_us: f64,
    /// `total_us` over the step's wall time: with parallel execution, shares may add up to
    /// more than 1.
    pub share: f64,
    pub output_bytes: u64,
}

impl RunMetadata {
    /// Total time by op type, most expensive first (ties by name).
    pub fn op_summary(&self) -> Vec<OpSummary> {
        let mut by_op: BTreeMap<&str, OpSummary> = BTreeMap::new();
        for s in &self.step_stats {
            let e = by_op.entry(&s.op).or_insert_with(|| OpSummary {
                op: s.op.clone(),
                count: 0,
                total_us: 0.0,
                share: 0.0,
                output_bytes: 0,
            });
            e.count += 1;
            e.total_us += (s.end_us - s.start_us).max(0.0);
            e.output_bytes += s.output_bytes;
        }
        let mut v: Vec<OpSummary> = by_op.into_values().collect();
        for e in &mut v {
            e.share = if self.step_us > 0.0 {
                e.total_us / self.step_us
            } else {
                0.0
            };
        }
        v.sort_by(|a, b| b.total_us.total_cmp(&a.total_us).then(a.op.cmp(&b.op)));
        v
    }

    /// [`op_summary`](Self::op_summary) as a text table of at most `top` rows (the rest
    /// summed into one), with the step's wall time.
    pub fn op_summary_table(&self, top: usize) -> String {
        use std::fmt::Write;
        let rows = self.op_summary();
        let mut s = format!(
            "step {:.1} µs, {} node runs\n{:<36} {:>7} {:>12} {:>7} {:>12}\n",
            self.step_us,
            self.step_stats.len(),
            "op",
            "count",
            "total µs",
            "share",
            "out bytes"
        );
        let mut line = |op: &str, count: usize, total: f64, share: f64, bytes: u64| {
            let _ = writeln!(
                s,
                "{op:<36} {count:>7} {total:>12.1} {:>6.1}% {bytes:>12}",
                100.0 * share
            );
        };
        for r in rows.iter().take(top) {
            line(&r.op, r.count, r.total_us, r.share, r.output_bytes);
        }
        if rows.len() > top {
            let rest = &rows[top..];
            line(
                &format!("({} other ops)", rest.len()),
                rest.iter().map(|r| r.count).sum(),
                rest.iter().map(|r| r.total_us).sum(),
                rest.iter().map(|r| r.share).sum(),
                rest.iter().map(|r| r.output_bytes).sum(),
            );
        }
        s
    }

    /// The step as Chrome trace-event JSON (the object form, `{"traceEvents": [..]}`): one
    /// complete (`"X"`) event per node run, `pid` the device and `tid` the thread, named by
    /// op with the node, frame, iteration and output bytes as `args`; metadata (`"M"`)
    /// events name the processes (devices) and threads. Opens in Perfetto
    /// (ui.perfetto.dev) and chrome://tracing.
    pub fn to_chrome_trace(&self) -> String {
        let mut devices: Vec<&str> = Vec::new();
        let mut threads: BTreeMap<(usize, u64), &str> = BTreeMap::new();
        let mut events: Vec<Value> = Vec::with_capacity(self.step_stats.len() + 8);
        for s in &self.step_stats {
            let pid = match devices.iter().position(|d| *d == s.device) {
                Some(p) => p,
                None => {
                    devices.push(&s.device);
                    devices.len() - 1
                }
            };
            threads.entry((pid, s.thread)).or_insert(&s.thread_name);
            let mut args = json!({ "node": s.node, "output_bytes": s.output_bytes });
            if !s.frame.is_empty() {
                args["frame"] = json!(s.frame);
                args["iteration"] = json!(s.iteration);
            }
            events.push(json!({
                "name": s.op,
                "cat": "op",
                "ph": "X",
                "ts": s.start_us,
                "dur": (s.end_us - s.start_us).max(0.0),
                "pid": pid,
                "tid": s.thread,
                "args": args,
            }));
        }
        for (pid, d) in devices.iter().enumerate() {
            events.push(json!({
                "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                "args": { "name": d },
            }));
            events.push(json!({
                "name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                "args": { "sort_index": pid },
            }));
        }
        for ((pid, tid), name) in threads {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": { "name": name },
            }));
        }
        json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": { "step_us": self.step_us, "producer": "tfr" },
        })
        .to_string()
    }
}

/// One node run, before names are resolved.
pub(crate) struct RawEvent {
    pub(crate) node: u32,
    /// Frame template (0: the root frame) and iteration.
    pub(crate) frame: u32,
    pub(crate) iter: u64,
    pub(crate) thread: (u64, Arc<str>),
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) bytes: u64,
}

/// The recorder of one executable's share of a traced step.
pub struct StepTrace {
    start: Instant,
    device: String,
    events: Mutex<Vec<RawEvent>>,
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD: (u64, Arc<str>) = {
        let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        let name = std::thread::current()
            .name()
            .map_or_else(|| format!("thread-{id}"), str::to_string);
        (id, name.into())
    };
}

impl StepTrace {
    /// A recorder for the part of a step run on `device`; times count from `start` (the
    /// step's start, shared by every partition).
    pub fn new(device: impl Into<String>, start: Instant) -> StepTrace {
        StepTrace {
            start,
            device: device.into(),
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub(crate) fn record(&self, node: u32, frame: u32, iter: u64, start: Instant, bytes: u64) {
        let end = Instant::now();
        let thread = THREAD.with(Clone::clone);
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RawEvent {
                node,
                frame,
                iter,
                thread,
                start,
                end,
                bytes,
            });
    }

    /// Takes the recorded events and resolves them with `name` (node index -> (node, op))
    /// and `frame_name` (frame template -> name).
    pub(crate) fn resolve<'a>(
        &self,
        name: impl Fn(u32) -> (&'a str, &'a str),
        frame_name: impl Fn(u32) -> &'a str,
    ) -> Vec<NodeExecStats> {
        let raw = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let us = |t: Instant| t.saturating_duration_since(self.start).as_nanos() as f64 / 1e3;
        raw.into_iter()
            .map(|e| {
                let (node, op) = name(e.node);
                NodeExecStats {
                    node: node.to_string(),
                    op: op.to_string(),
                    device: self.device.clone(),
                    thread: e.thread.0,
                    thread_name: e.thread.1.to_string(),
                    frame: frame_name(e.frame).to_string(),
                    iteration: e.iter,
                    start_us: us(e.start),
                    end_us: us(e.end),
                    output_bytes: e.bytes,
                }
            })
            .collect()
    }
}

/// Bytes of a tensor's elements (`DType::size_of` each; a resource handle counts 8).
pub(crate) fn tensor_bytes(t: &Tensor) -> u64 {
    (t.num_elements() * t.dtype().size_of()) as u64
}

/// Output bytes of a node's outputs (`None`: dead, counts nothing).
pub(crate) fn outputs_bytes<'t>(outs: impl IntoIterator<Item = Option<&'t Tensor>>) -> u64 {
    outs.into_iter().flatten().map(tensor_bytes).sum()
}

/// A node's run being timed: `None` when the step is not traced (then starting and ending
/// it cost one branch each, no timestamp).
pub(crate) struct Span<'t>(Option<(&'t StepTrace, Instant)>);

impl<'t> Span<'t> {
    #[inline(always)]
    pub(crate) fn start(trace: Option<&'t StepTrace>) -> Span<'t> {
        Span(trace.map(|t| (t, Instant::now())))
    }

    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Records the run of `node` in (`frame` template, `iter`); `bytes` is called only when
    /// tracing.
    #[inline(always)]
    pub(crate) fn end(self, node: u32, frame: u32, iter: u64, bytes: impl FnOnce() -> u64) {
        if let Some((t, start)) = self.0 {
            t.record(node, frame, iter, start, bytes());
        }
    }
}
