//! The dataflow executor.
//!
//! An [`Executable`] is the immutable per-step-signature state: kernels, edges as value slots,
//! pending counts, which read of a value is its last. Each run allocates only its per-step state
//! (value slots, pending counters). Two strategies share that state:
//! - sequential: nodes run in topological order on the caller's thread; the last reader of a
//!   value takes it, so a kernel holding the only reference may reuse the buffer in place;
//! - parallel: nodes become ready as their pending counts reach zero; cheap ones run inline,
//!   expensive ones are spawned on the session's rayon pool.
//!
//! [`Executable::run_traced`] records a timeline of the step (`executor/trace.rs`).

use crate::device::{needs_copy, DeviceBackend};
use crate::error::KResult;
use crate::error::{Error, KernelError, Result};
use crate::kernel::{find_kernel, DeviceType, KernelContext, KernelInit, OpKernel};
use crate::memory::MemorySpace;
use crate::resource::ResourceMgr;
use crate::tensor::{Scalar, Tensor};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use tfr_graph::passes::{StepGraph, ARG_OP};
use tfr_graph::{registry, Dim, Graph, Node, NodeId, TensorType};

#[derive(Clone, Copy, Debug)]
struct InputRef {
    slot: usize,
    /// In sequential order, no later node reads this slot and it is not fetched.
    last: bool,
}

struct ExecNode {
    name: String,
    op: String,
    kernel: Box<dyn OpKernel>,
    inputs: SmallVec<[InputRef; 4]>,
    out_base: usize,
    out_dtypes: SmallVec<[tfr_graph::DType; 2]>,
    /// Nodes that wait on this one (data or control), without repeats.
    consumers: Vec<usize>,
    /// Number of distinct nodes this one waits on.
    pending: u32,
    cheap: bool,
    /// The kernel has a scalar fast path (`OpKernel::compute_scalar`) and one output.
    scalar: bool,
}

/// What a feed must look like, for checking values before a step runs.
#[derive(Clone, Debug)]
pub struct FeedSpec {
    pub name: String,
    pub ty: TensorType,
}

/// The immutable, reusable program for one (feeds, fetches, targets) signature.
pub struct Executable {
    nodes: Vec<ExecNode>,
    num_values: usize,
    /// Per value slot: how many node inputs read it.
    readers: Vec<u32>,
    /// Per value slot: whether it is fetched (then never taken by a reader).
    fetched: Vec<bool>,
    /// Per value slot: whether anything reads or fetches it (else it is dropped at once).
    keep: Vec<bool>,
    fetch_slots: Vec<usize>,
    feeds: Vec<FeedSpec>,
    has_symbolic_feeds: bool,
    roots: Vec<usize>,
    parallel: bool,
    /// For graphs with control flow or TensorArrays: the frame-aware program that runs them.
    cf: Option<CfProgram>,
    cf_stats: CfCounters,
    /// Measured steps on the pool and on the caller's thread: where the next one runs.
    run_choice: RunChoice,
    /// The device's name, for step timelines (set by the session).
    device: String,
    /// The device, when its memory is not the host's: fetched values are copied back.
    backend: Option<Arc<dyn DeviceBackend>>,
}

impl Executable {
    /// Overrides the static types of feeds that were pruned away (they are still checked).
    pub fn set_feed_type(&mut self, k: usize, ty: TensorType) {
        self.feeds[k].ty = ty;
    }

    /// Names the device this executable runs on (in step timelines).
    pub fn set_device(&mut self, name: impl Into<String>) {
        self.device = name.into();
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// Where the values this executable computes live.
    pub fn memory_space(&self) -> MemorySpace {
        self.backend
            .as_ref()
            .map_or(MemorySpace::HOST, |b| b.memory_space())
    }

    /// Copies fetched values to host memory (one device-to-host copy each); values of a host
    /// executable are returned as they are.
    pub fn fetches_to_host(&self, values: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let Some(backend) = &self.backend else {
            return Ok(values);
        };
        values
            .into_iter()
            .enumerate()
            .map(|(k, t)| {
                if !needs_copy(&t, MemorySpace::HOST) {
                    return Ok(t);
                }
                backend.copy_to_host(t).map_err(|e| {
                    let slot = self.fetch_slots.get(k).copied().unwrap_or(0);
                    let node = self
                        .nodes
                        .iter()
                        .rev()
                        .find(|n| n.out_base <= slot)
                        .map_or_else(String::new, |n| n.name.clone());
                    Error::Kernel {
                        node,
                        op: "fetch".into(),
                        code: e.code,
                        message: format!("copying fetch {k} to the host: {}", e.message),
                    }
                })
            })
            .collect()
    }

    /// The node runs `trace` recorded, with names resolved (and taken out of `trace`).
    pub fn trace_stats(&self, trace: &StepTrace) -> Vec<NodeExecStats> {
        trace.resolve(
            |i| {
                self.nodes
                    .get(i as usize)
                    .map_or(("?", "?"), |n| (n.name.as_str(), n.op.as_str()))
            },
            |f| {
                self.cf
                    .as_ref()
                    .and_then(|p| p.frames.get(f as usize))
                    .map_or("", |t| t.name.as_str())
            },
        )
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Node names in execution order (for tests and debugging).
    pub fn node_ops(&self) -> Vec<(&str, &str)> {
        self.nodes
            .iter()
            .map(|n| (n.name.as_str(), n.op.as_str()))
            .collect()
    }

    fn check_feeds(&self, feeds: &[Tensor]) -> Result<()> {
        if feeds.len() != self.feeds.len() {
            return Err(Error::InvalidArgument {
                arg: "feeds".into(),
                message: format!(
                    "expected {} feed values, got {}",
                    self.feeds.len(),
                    feeds.len()
                ),
            });
        }
        for (spec, t) in self.feeds.iter().zip(feeds) {
            if t.dtype() != spec.ty.dtype || !spec.ty.shape.accepts(t.shape()) {
                return Err(Error::Feed {
                    name: spec.name.clone(),
                    expected: spec.ty.to_string(),
                    got: format!("{}{:?}", t.dtype(), t.shape()),
                });
            }
        }
        if self.has_symbolic_feeds {
            let mut bound: HashMap<&str, (usize, &str)> = HashMap::new();
            for (spec, t) in self.feeds.iter().zip(feeds) {
                for (d, &n) in spec
                    .ty
                    .shape
                    .dims()
                    .unwrap_or_default()
                    .iter()
                    .zip(t.shape())
                {
                    if let Dim::Sym(s) = d {
                        match bound.get(s.as_str()) {
                            Some(&(m, other)) if m != n => {
                                return Err(Error::Feed {
                                    name: spec.name.clone(),
                                    expected: format!("{s} = {m} (as bound by `{other}`)"),
                                    got: format!("{s} = {n}"),
                                })
                            }
                            _ => {
                                bound.insert(s, (n, &spec.name));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn kernel_error(node: &ExecNode, e: KernelError) -> Error {
        Error::Kernel {
            node: node.name.clone(),
            op: node.op.clone(),
            code: e.code,
            message: e.message,
        }
    }

    fn finish_node(node: &ExecNode, outputs: &[Tensor]) -> Result<()> {
        if outputs.len() != node.out_dtypes.len()
            || outputs
                .iter()
                .zip(&node.out_dtypes)
                .any(|(t, d)| t.dtype() != *d)
        {
            let got: Vec<String> = outputs.iter().map(|t| t.dtype().to_string()).collect();
            return Err(Self::kernel_error(
                node,
                KernelError::internal(format!(
                    "kernel produced [{}], declared {:?}",
                    got.join(", "),
                    node.out_dtypes
                )),
            ));
        }
        Ok(())
    }

    /// The control-flow machine's counts over this executable's steps (zero without control
    /// flow): frame instances, iterations and peak state, for checking how work scales.
    pub fn control_flow_stats(&self) -> ControlFlowStats {
        self.cf_stats.snapshot()
    }

    /// Runs one step with `feeds` in signature order; returns the fetched values.
    pub fn run(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<Tensor>> {
        self.run_traced(feeds, resources, pool, None)
    }

    /// [`run`](Self::run), recording each node run into `trace` when given (read it back with
    /// [`trace_stats`](Self::trace_stats)).
    pub fn run_traced(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: Option<&rayon::ThreadPool>,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        self.check_feeds(feeds)?;
        let _flush = crate::kernels::denormals::FlushDenormals::new();
        if let Some(prog) = &self.cf {
            return match pool {
                // A partition's transfers run on the sequential machine (it parks receives).
                Some(pool) if self.parallel && !prog.has_transfers => {
                    self.run_cf_parallel(prog, feeds, resources, pool, trace)
                }
                _ => self.run_cf_sequential(prog, feeds, resources, trace),
            };
        }
        match pool {
            Some(pool) if self.parallel => {
                let way = self.run_choice.next();
                let started = std::time::Instant::now();
                let out = match way {
                    Way::Polling => self.run_parallel(feeds, resources, pool, trace, true),
                    Way::Pool => self.run_parallel(feeds, resources, pool, trace, false),
                    Way::Caller => self.run_sequential(feeds, resources, trace),
                };
                self.run_choice.record(way, started.elapsed());
                out
            }
            _ => self.run_sequential(feeds, resources, trace),
        }
    }
}

/// Steps holding an op that may wait for another step (a queue's enqueue or dequeue) run on the
/// caller's thread: a waiting kernel then never holds a worker of the pool that the step it
/// waits for may need.
fn runs_on_caller(g: &Graph) -> bool {
    crate::kernels::data_flow_ops::step_may_block(g)
}

/// True when a node stands for a feed.
pub fn is_arg(node: &Node) -> bool {
    node.op == ARG_OP
}

// ---- control flow: frames, iterations and dead values ----------------------------------------
// The static program is in `executor/cf_program.rs`, one step's machine in `executor/frames.rs`.

mod cf_program;
mod cf_stats;
mod frames;
mod loop_plan;
mod trace;

use cf_program::{CfKind, CfNode, CfProgram, FrameTemplate};
use cf_stats::CfCounters;
pub use cf_stats::ControlFlowStats;
use frames::{Entry, FastCtx, IterState, Machine, Task};
use loop_plan::*;
pub use loop_plan::{loop_machine_code, set_loop_machine_code};
use trace::{outputs_bytes, Span};
pub use trace::{NodeExecStats, OpSummary, RunMetadata, RunOptions, StepTrace};

mod build;
mod cf_run;
mod dataflow;
mod keep_awake;
pub use keep_awake::set_step_polling;
mod run_choice;
use run_choice::{RunChoice, Way};

pub use build::{build_kernel, build_kernel_on};
use cf_run::{cf_node_error, forward_compute, TaOp};
