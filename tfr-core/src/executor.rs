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

use crate::error::{Error, KernelError, Result};
use crate::kernel::{kernel_registry, DeviceType, KernelContext, KernelInit, OpKernel};
use crate::resource::ResourceMgr;
use crate::tensor::{Scalar, Tensor};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
    /// The device's name, for step timelines (set by the session).
    device: String,
}

/// Builds a kernel for one node on the CPU.
pub fn build_kernel(node: &Node, graph: &Graph) -> Result<Box<dyn OpKernel>> {
    let inputs: Vec<TensorType> = node
        .inputs
        .iter()
        .map(|&o| graph.output_type(o).clone())
        .collect();
    let init = KernelInit {
        node: &node.name,
        op: &node.op,
        attrs: &node.attrs,
        inputs: &inputs,
        outputs: &node.outputs,
    };
    let dtype = init.dtype();
    let factory = kernel_registry()
        .find(&node.op, DeviceType::Cpu, dtype)
        .ok_or_else(|| Error::NoKernel {
            node: node.name.clone(),
            op: node.op.clone(),
            dtype: dtype.to_string(),
        })?;
    factory(&init).map_err(|message| Error::Kernel {
        node: node.name.clone(),
        op: node.op.clone(),
        code: crate::error::Code::InvalidArgument,
        message,
    })
}

impl Executable {
    /// Builds the program for a pruned and optimized step graph (nodes in topological order).
    /// `feed_names` names each feed for error messages.
    pub fn build(
        step: &StepGraph,
        feed_names: &[String],
        inter_op_threads: usize,
    ) -> Result<Executable> {
        let g = &step.graph;
        let mut out_base = Vec::with_capacity(g.len());
        let mut num_values = 0;
        for node in g.nodes() {
            out_base.push(num_values);
            num_values += node.outputs.len();
        }
        let slot = |o: tfr_graph::Output| out_base[o.node.index()] + o.index as usize;
        let mut readers = vec![0u32; num_values];
        let mut fetched = vec![false; num_values];
        for &f in &step.fetches {
            fetched[slot(f)] = true;
        }
        let mut last_reader: HashMap<usize, (usize, usize)> = HashMap::new();
        for (i, node) in g.nodes().iter().enumerate() {
            for (k, &o) in node.inputs.iter().enumerate() {
                readers[slot(o)] += 1;
                last_reader.insert(slot(o), (i, k));
            }
        }
        let mut nodes = Vec::with_capacity(g.len());
        let mut expensive = 0;
        for (i, node) in g.nodes().iter().enumerate() {
            let kernel = build_kernel(node, g)?;
            let inputs = node
                .inputs
                .iter()
                .enumerate()
                .map(|(k, &o)| {
                    let s = slot(o);
                    InputRef {
                        slot: s,
                        last: !fetched[s] && last_reader.get(&s) == Some(&(i, k)),
                    }
                })
                .collect();
            let cheap = registry().get(&node.op).is_some_and(|d| d.cheap);
            expensive += usize::from(!cheap);
            let scalar = kernel.has_scalar_path() && node.outputs.len() == 1;
            nodes.push(ExecNode {
                name: node.name.clone(),
                op: node.op.clone(),
                scalar,
                kernel,
                inputs,
                out_base: out_base[i],
                out_dtypes: node.outputs.iter().map(|t| t.dtype).collect(),
                consumers: Vec::new(),
                pending: 0,
                cheap,
            });
        }
        for (i, node) in g.nodes().iter().enumerate() {
            let mut sources: Vec<usize> = node
                .inputs
                .iter()
                .map(|o| o.node.index())
                .chain(node.control_inputs.iter().map(|c| c.index()))
                .collect();
            sources.sort_unstable();
            sources.dedup();
            nodes[i].pending = sources.len() as u32;
            for s in sources {
                nodes[s].consumers.push(i);
            }
        }
        let roots = (0..nodes.len())
            .filter(|&i| nodes[i].pending == 0)
            .collect();
        let mut feeds = vec![
            FeedSpec {
                name: String::new(),
                ty: TensorType::new(tfr_graph::DType::F32, tfr_graph::Shape::unknown())
            };
            step.feeds.len()
        ];
        for (k, arg) in step.feeds.iter().enumerate() {
            let name = feed_names
                .get(k)
                .cloned()
                .unwrap_or_else(|| format!("feed {k}"));
            let ty = match arg {
                Some(id) => g.node(*id).outputs[0].clone(),
                None => TensorType::new(tfr_graph::DType::F32, tfr_graph::Shape::unknown()),
            };
            feeds[k] = FeedSpec { name, ty };
        }
        // Feeds that nothing needed still must be well-typed: keep their original static type.
        let has_symbolic_feeds = feeds.iter().any(|f| {
            f.ty.shape
                .dims()
                .is_some_and(|d| d.iter().any(|x| matches!(x, Dim::Sym(_))))
        });
        let has_cf = g.nodes().iter().any(|n| {
            tfr_graph::ops::control_flow_ops::is_control_flow_op(&n.op)
                || tfr_graph::ops::control_flow_ops::is_tensor_array_op(&n.op)
                || crate::kernels::sendrecv_ops::is_frame_aware_transfer(n)
        });
        let cf = if has_cf {
            let mut prog = CfProgram::build(g, &step.fetches)?;
            prog.mark_scalar_steps(&nodes);
            Some(prog)
        } else {
            None
        };
        Ok(Executable {
            nodes,
            num_values,
            keep: readers
                .iter()
                .zip(&fetched)
                .map(|(&r, &f)| r > 0 || f)
                .collect(),
            readers,
            fetched,
            fetch_slots: step.fetches.iter().map(|&f| slot(f)).collect(),
            feeds,
            has_symbolic_feeds,
            roots,
            // With loops, one expensive node may run in several iterations at once.
            parallel: inter_op_threads > 1
                && (expensive >= 2 || has_cf && expensive >= 1)
                && !runs_on_caller(g),
            cf,
            cf_stats: CfCounters::default(),
            device: "/device:CPU:0".into(),
        })
    }

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
            Some(pool) if self.parallel => self.run_parallel(feeds, resources, pool, trace),
            _ => self.run_sequential(feeds, resources, trace),
        }
    }

    fn run_sequential(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(self.num_values);
        values.resize_with(self.num_values, || None);
        // One context reused for every node: no per-node allocation or large moves.
        let mut ctx = KernelContext::new(SmallVec::new(), resources, feeds);
        for (i, node) in self.nodes.iter().enumerate() {
            ctx.reset_inputs();
            for r in &node.inputs {
                let v = if r.last {
                    values[r.slot].take()
                } else {
                    values[r.slot].clone()
                };
                match v {
                    Some(t) => ctx.push_input(t),
                    None => {
                        return Err(Self::kernel_error(
                            node,
                            KernelError::internal("an input value is missing"),
                        ))
                    }
                }
            }
            let span = Span::start(trace);
            node.kernel
                .compute(&mut ctx)
                .map_err(|e| Self::kernel_error(node, e))?;
            Self::finish_node(node, ctx.outputs())?;
            span.end(i as u32, 0, 0, || {
                outputs_bytes(ctx.outputs().iter().map(Some))
            });
            for (k, t) in ctx.drain_outputs().enumerate() {
                let s = node.out_base + k;
                if self.keep[s] {
                    values[s] = Some(t);
                }
            }
        }
        self.fetch_slots
            .iter()
            .map(|&s| {
                values[s].clone().ok_or_else(|| Error::InvalidArgument {
                    arg: "fetches".into(),
                    message: "a fetched value was not produced".into(),
                })
            })
            .collect()
    }

    fn run_parallel(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: &rayon::ThreadPool,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let state = StepState {
            values: (0..self.num_values)
                .map(|s| Mutex::new((None, self.readers[s])))
                .collect(),
            pending: self
                .nodes
                .iter()
                .map(|n| AtomicU32::new(n.pending))
                .collect(),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            feeds,
            resources,
            trace,
        };
        pool.scope(|scope| {
            for &r in &self.roots {
                let state = &state;
                scope.spawn(move |s| self.process(s, state, r));
            }
        });
        if let Some(e) = state.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        self.fetch_slots
            .iter()
            .map(|&s| {
                state.values[s]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .clone()
                    .ok_or_else(|| Error::InvalidArgument {
                        arg: "fetches".into(),
                        message: "a fetched value was not produced".into(),
                    })
            })
            .collect()
    }

    fn run_node(&self, state: &StepState<'_>, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let mut inputs: SmallVec<[Option<Tensor>; 4]> = SmallVec::with_capacity(node.inputs.len());
        for r in &node.inputs {
            let mut slot = state.values[r.slot]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            slot.1 -= 1;
            let v = if slot.1 == 0 && !self.fetched[r.slot] {
                slot.0.take()
            } else {
                slot.0.clone()
            };
            if v.is_none() {
                return Err(Self::kernel_error(
                    node,
                    KernelError::internal("an input value is missing"),
                ));
            }
            inputs.push(v);
        }
        let mut ctx = KernelContext::new(inputs, state.resources, state.feeds);
        let span = Span::start(state.trace);
        node.kernel
            .compute(&mut ctx)
            .map_err(|e| Self::kernel_error(node, e))?;
        let outputs = ctx.into_outputs();
        Self::finish_node(node, &outputs)?;
        span.end(i as u32, 0, 0, || outputs_bytes(outputs.iter().map(Some)));
        for (k, t) in outputs.into_iter().enumerate() {
            let s = node.out_base + k;
            if self.keep[s] {
                state.values[s].lock().unwrap_or_else(|p| p.into_inner()).0 = Some(t);
            }
        }
        Ok(())
    }

    /// Runs node `i`, then the nodes it makes ready: cheap ones and one expensive one inline,
    /// other expensive ones on the pool.
    fn process<'s>(&'s self, scope: &rayon::Scope<'s>, state: &'s StepState<'s>, i: usize) {
        let mut inline = vec![i];
        while let Some(n) = inline.pop() {
            if state.failed.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = self.run_node(state, n) {
                state.failed.store(true, Ordering::Relaxed);
                let mut slot = state.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                return;
            }
            let mut kept_expensive = false;
            for &c in &self.nodes[n].consumers {
                if state.pending[c].fetch_sub(1, Ordering::AcqRel) == 1 {
                    if self.nodes[c].cheap || !kept_expensive {
                        kept_expensive |= !self.nodes[c].cheap;
                        inline.push(c);
                    } else {
                        scope.spawn(move |s| self.process(s, state, c));
                    }
                }
            }
        }
    }
}

struct StepState<'a> {
    /// Per slot: the value and how many reads remain.
    values: Vec<Mutex<(Option<Tensor>, u32)>>,
    pending: Vec<AtomicU32>,
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    feeds: &'a [Tensor],
    resources: &'a ResourceMgr,
    trace: Option<&'a StepTrace>,
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
use trace::{outputs_bytes, Span};
pub use trace::{NodeExecStats, OpSummary, RunMetadata, RunOptions, StepTrace};

/// A node made ready, with its inputs taken (parallel machine).
struct Job {
    t: Task,
    dead: bool,
    inputs: SmallVec<[Option<Tensor>; 4]>,
}

struct CfShared<'a, 'p> {
    machine: Mutex<Machine<'p>>,
    arrays: TensorArrays,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    feeds: &'a [Tensor],
    resources: &'a ResourceMgr,
    trace: Option<&'a StepTrace>,
}

use crate::kernels::control_flow_ops::{TaOp, TensorArrays};
use crate::kernels::sendrecv_ops::StepTransfers;

impl Executable {
    /// Computes node `t` of a control-flow program on `inputs` (`None` = dead) into `outs`
    /// (`None` = dead). A dead node produces dead outputs without running.
    #[allow(clippy::too_many_arguments)]
    fn cf_compute(
        &self,
        prog: &CfProgram,
        t: Task,
        dead: bool,
        inputs: &mut SmallVec<[Option<Tensor>; 4]>,
        ctx: &mut KernelContext<'_>,
        outs: &mut SmallVec<[Option<Tensor>; 2]>,
        arrays: &TensorArrays,
    ) -> Result<()> {
        outs.clear();
        let node = &prog.nodes[t.node as usize];
        let en = &self.nodes[t.node as usize];
        let n_out = en.out_dtypes.len();
        let internal = |m: &str| Self::kernel_error(en, KernelError::internal(m));
        // A write that keeps dead values runs when only its value is dead.
        let dead_write = matches!(&node.kind, CfKind::TensorArray(ta)
            if ta.op == TaOp::Write && ta.keep_dead
                && [0usize, 1, 3].iter().all(|&i| inputs.get(i).is_some_and(Option::is_some)));
        if dead && !dead_write {
            outs.extend((0..n_out).map(|_| None));
            return Ok(());
        }
        match &node.kind {
            CfKind::Merge { .. }
            | CfKind::Switch
            | CfKind::LoopCond
            | CfKind::Enter { .. }
            | CfKind::Exit { .. }
            | CfKind::NextIteration
            | CfKind::Forward => {
                return forward_compute(prog, t, false, inputs, outs);
            }
            CfKind::Send(_) | CfKind::Recv(_) => {
                return Err(internal(
                    "transfers run on the sequential machine (cf_transfer)",
                ));
            }
            CfKind::TensorArray(ta) => {
                let r = arrays
                    .run(ta, inputs, &prog.flow)
                    .map_err(|e| Self::kernel_error(en, e))?;
                outs.extend(r);
            }
            CfKind::Kernel => {
                ctx.reset_inputs();
                for v in inputs.drain(..) {
                    match v {
                        Some(v) => ctx.push_input(v),
                        None => return Err(internal("an input value is missing")),
                    }
                }
                en.kernel
                    .compute(ctx)
                    .map_err(|e| Self::kernel_error(en, e))?;
                Self::finish_node(en, ctx.outputs())?;
                outs.extend(ctx.drain_outputs().map(Some));
            }
        }
        Ok(())
    }

    fn cf_fetch(prog: &CfProgram, fetched: Vec<Entry>) -> Result<Vec<Tensor>> {
        fetched
            .into_iter()
            .enumerate()
            .map(|(k, e)| {
                let name = prog.fetch_names.get(k).map_or("?", String::as_str);
                match e {
                    Entry::Live(t) => Ok(t),
                    Entry::Dead => Err(Error::InvalidArgument {
                        arg: "fetches".into(),
                        message: format!(
                            "`{name}` is dead in this step: it lies on a branch that did not run"
                        ),
                    }),
                    Entry::Empty => Err(Error::InvalidArgument {
                        arg: "fetches".into(),
                        message: format!("`{name}` was not produced"),
                    }),
                }
            })
            .collect()
    }

    fn run_cf_sequential(
        &self,
        prog: &CfProgram,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let arrays = TensorArrays::default();
        let mut m = Machine::new(prog);
        m.fast = Some(FastCtx {
            exec: self,
            arrays: &arrays,
            resources,
            feeds,
            trace,
        });
        let mut ready: Vec<Task> = Vec::with_capacity(64);
        m.start(&mut ready);
        let mut ctx = KernelContext::new(SmallVec::new(), resources, feeds);
        let mut inputs: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
        let mut outs: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
        let mut transfers: StepTransfers<Task> = StepTransfers::default();
        loop {
            while let Some(t) = ready.pop() {
                let dead = m.take_inputs(t, &mut inputs);
                let span = Span::start(trace.filter(|_| !dead && prog.timed(t.node)));
                let transfer = if prog.has_transfers {
                    cf_transfer(prog, &m, &mut transfers, t, dead, &mut inputs, resources)?
                } else {
                    Transfer::NotOne
                };
                match transfer {
                    Transfer::NotOne => {
                        self.cf_compute(prog, t, dead, &mut inputs, &mut ctx, &mut outs, &arrays)?
                    }
                    Transfer::Done(v) => {
                        outs.clear();
                        outs.extend(v);
                    }
                    Transfer::Parked => continue,
                }
                span.end(t.node, prog.nodes[t.node as usize].frame, t.iter, || {
                    outputs_bytes(outs.iter().map(Option::as_ref))
                });
                m.propagate(t, dead, &mut outs, &mut ready);
                m.finish(t, &mut ready);
                if let Some(e) = m.error.take() {
                    return Err(e);
                }
            }
            if !transfers.waiting() {
                break;
            }
            // Nothing else to run: wait for parked receives (or the step's abort).
            let waited = transfers.wait().map_err(|e| {
                let n = transfers.parked().next().map_or(u32::MAX, |t| t.node);
                cf_node_error(prog, n, e)
            });
            for (t, v) in waited? {
                outs.clear();
                let dead = v.is_none();
                outs.push(v);
                m.propagate(t, dead, &mut outs, &mut ready);
                m.finish(t, &mut ready);
                if let Some(e) = m.error.take() {
                    return Err(e);
                }
            }
        }
        self.cf_stats.record(&m.counts, m.frames.len());
        Self::cf_fetch(prog, m.fetched)
    }

    fn run_cf_parallel(
        &self,
        prog: &CfProgram,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: &rayon::ThreadPool,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let mut m = Machine::new(prog);
        let mut ready = Vec::new();
        m.start(&mut ready);
        let jobs: Vec<Job> = ready
            .drain(..)
            .map(|t| {
                let mut inputs = SmallVec::new();
                let dead = m.take_inputs(t, &mut inputs);
                Job { t, dead, inputs }
            })
            .collect();
        let sh = CfShared {
            machine: Mutex::new(m),
            arrays: TensorArrays::default(),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            feeds,
            resources,
            trace,
        };
        pool.scope(|s| {
            let sh = &sh;
            for j in jobs {
                s.spawn(move |s| self.cf_worker(prog, s, sh, j));
            }
        });
        if let Some(e) = sh.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let m = sh.machine.into_inner().unwrap_or_else(|p| p.into_inner());
        self.cf_stats.record(&m.counts, m.frames.len());
        Self::cf_fetch(prog, m.fetched)
    }

    /// Runs `job` and the nodes it makes ready: cheap ones and one expensive one on this
    /// thread, other expensive ones on the pool.
    fn cf_worker<'s, 'a: 's, 'p: 's>(
        &'s self,
        prog: &'s CfProgram,
        scope: &rayon::Scope<'s>,
        sh: &'s CfShared<'a, 'p>,
        job: Job,
    ) {
        let mut local = vec![job];
        let mut ctx = KernelContext::new(SmallVec::new(), sh.resources, sh.feeds);
        let mut outs: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
        let mut ready: Vec<Task> = Vec::new();
        while let Some(mut j) = local.pop() {
            if sh.failed.load(Ordering::Relaxed) {
                return;
            }
            let span = Span::start(sh.trace.filter(|_| !j.dead && prog.timed(j.t.node)));
            let r = self.cf_compute(
                prog,
                j.t,
                j.dead,
                &mut j.inputs,
                &mut ctx,
                &mut outs,
                &sh.arrays,
            );
            if let Err(e) = r {
                sh.failed.store(true, Ordering::Relaxed);
                let mut slot = sh.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                return;
            }
            span.end(
                j.t.node,
                prog.nodes[j.t.node as usize].frame,
                j.t.iter,
                || outputs_bytes(outs.iter().map(Option::as_ref)),
            );
            let mut m = sh.machine.lock().unwrap_or_else(|p| p.into_inner());
            m.propagate(j.t, j.dead, &mut outs, &mut ready);
            m.finish(j.t, &mut ready);
            if let Some(e) = m.error.take() {
                sh.failed.store(true, Ordering::Relaxed);
                let mut slot = sh.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                return;
            }
            let mut kept_expensive = false;
            for t in ready.drain(..) {
                let mut inputs = SmallVec::new();
                let dead = m.take_inputs(t, &mut inputs);
                let next = Job { t, dead, inputs };
                let cheap = dead || self.nodes[t.node as usize].cheap;
                if cheap || !kept_expensive {
                    kept_expensive |= !cheap;
                    local.push(next);
                } else {
                    scope.spawn(move |s| self.cf_worker(prog, s, sh, next));
                }
            }
        }
    }
}

/// What [`cf_transfer`] did with a node.
enum Transfer {
    /// Not a frame-aware transfer: the caller computes it.
    NotOne,
    /// A send (no outputs) or a receive whose value was there (`None`: dead).
    Done(Option<Option<Tensor>>),
    /// A receive waiting for its value; it comes back from `StepTransfers::wait`.
    Parked,
}

/// Runs node `t` when it is a frame-aware `_Send` or `_Recv`: the key names the frame instance
/// and iteration; a dead send sends "dead", a receive dead by its control inputs receives
/// nothing and is dead.
fn cf_transfer(
    prog: &CfProgram,
    m: &Machine<'_>,
    transfers: &mut StepTransfers<Task>,
    t: Task,
    dead: bool,
    inputs: &mut SmallVec<[Option<Tensor>; 4]>,
    resources: &ResourceMgr,
) -> Result<Transfer> {
    let key = |name: &str| {
        let frame = m.frames[t.frame as usize].as_ref().map_or(0, |f| f.key);
        crate::kernels::sendrecv_ops::transfer_key(name, frame, t.iter)
    };
    let err = |e| cf_node_error(prog, t.node, e);
    match &prog.nodes[t.node as usize].kind {
        CfKind::Send(name) => {
            if dead {
                if let Some(v) = inputs.first_mut() {
                    *v = None;
                }
            }
            transfers.send(&key(name), inputs, resources).map_err(err)?;
            Ok(Transfer::Done(None))
        }
        CfKind::Recv(_) if dead => Ok(Transfer::Done(Some(None))),
        CfKind::Recv(name) => Ok(
            match transfers
                .recv(&key(name), inputs, resources, t)
                .map_err(err)?
            {
                Some((_, v)) => Transfer::Done(Some(v)),
                None => Transfer::Parked,
            },
        ),
        _ => Ok(Transfer::NotOne),
    }
}

/// The error of node `n` of a control-flow program, run by the machine itself.
fn cf_node_error(prog: &CfProgram, n: u32, e: KernelError) -> Error {
    let (node, op) = prog.names.get(n as usize).cloned().unwrap_or_default();
    Error::Kernel {
        node,
        op,
        code: e.code,
        message: e.message,
    }
}

/// Computes a forwarding node (Merge, Switch, LoopCond, Enter, Exit, NextIteration, Identity):
/// moves its input to the right output. A dead node has dead outputs.
fn forward_compute(
    prog: &CfProgram,
    t: Task,
    dead: bool,
    inputs: &mut SmallVec<[Option<Tensor>; 4]>,
    outs: &mut SmallVec<[Option<Tensor>; 2]>,
) -> Result<()> {
    outs.clear();
    let node = &prog.nodes[t.node as usize];
    if dead {
        outs.extend((0..node.out_edges.len()).map(|_| None));
        return Ok(());
    }
    let bool_of = |v: Option<&Tensor>, what: &str| {
        v.and_then(|p| p.as_slice::<bool>().ok())
            .and_then(|p| p.first().copied())
            .ok_or_else(|| {
                cf_node_error(
                    prog,
                    t.node,
                    KernelError::invalid(format!("{what} must be a bool scalar")),
                )
            })
    };
    match &node.kind {
        CfKind::Merge { .. } => {
            let (i, v) = inputs
                .iter_mut()
                .enumerate()
                .find_map(|(i, v)| v.take().map(|v| (i, v)))
                .ok_or_else(|| {
                    cf_node_error(
                        prog,
                        t.node,
                        KernelError::internal("a live Merge has no live input"),
                    )
                })?;
            outs.push(Some(v));
            let wanted = node.out_edges.get(1).is_some_and(|e| !e.is_empty());
            outs.push(wanted.then(|| Tensor::scalar(i as i32)));
        }
        CfKind::Switch => {
            let pred = bool_of(inputs.get(1).and_then(Option::as_ref), "pred")?;
            let data = inputs.first_mut().and_then(Option::take);
            if pred {
                outs.push(None);
                outs.push(data);
            } else {
                outs.push(data);
                outs.push(None);
            }
        }
        CfKind::LoopCond => {
            let v = inputs.first_mut().and_then(Option::take);
            let holds = bool_of(v.as_ref(), "the loop predicate")?;
            let frame = &prog.frames[node.frame as usize];
            if let Some(max) = frame.maximum_iterations {
                if holds && t.iter >= max {
                    return Err(cf_node_error(
                        prog,
                        t.node,
                        KernelError::out_of_range(format!(
                            "while loop `{}` exceeded maximum_iterations = {max}: its \
                             predicate still holds after {max} iterations",
                            frame.name
                        )),
                    ));
                }
            }
            outs.push(v);
        }
        _ => outs.push(inputs.first_mut().and_then(Option::take)),
    }
    Ok(())
}
