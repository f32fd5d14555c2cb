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
mod trace;

use cf_program::{CfKind, CfNode, CfProgram, FrameTemplate};
use cf_stats::CfCounters;
pub use cf_stats::ControlFlowStats;
use frames::{Entry, FastCtx, IterState, Machine, Task};
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

// ---- simple loops as imperative loops ------------------------------------------------------------
//
// A loop frame with no nested frames and no conds (what `while_loop`, `map_fn`, `scan` and
// their gradients build when their functions hold plain ops) has a fixed shape: per loop
// variable Enter -> Merge -> Switch(LoopCond) -> Identity / Exit, and NextIteration back. The
// sequential machine runs such a frame, once all its Enters have fired, as an imperative loop:
// its forwarding nodes become aliases of a variable's value, its kernels run in order, the
// kernels before the predicate ("pre") every iteration and the others ("body") while it holds.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ValRef {
    /// Loop variable j.
    Var(u32),
    /// Loop invariant k (a constant Enter's value).
    Inv(u32),
    /// Output value i of a kernel of the loop.
    Val(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Pre,
    Body,
    ToExit,
}

struct PlanStep {
    node: u32,
    /// Inputs, each with whether this read may take the value (its last use).
    inputs: SmallVec<[(ValRef, bool); 4]>,
    out_base: u32,
    n_out: u32,
    /// A kernel with a scalar fast path and one output (set once the kernels are built).
    scalar: bool,
    /// For the all-scalar loop: the register of each input and of the output (registers are
    /// the loop variables, then the invariants, then the kernel outputs), and the output's
    /// declared dtype.
    in_regs: SmallVec<[u32; 4]>,
    out_reg: u32,
    out_dtype: tfr_graph::DType,
}

struct LoopPlan {
    /// Per loop variable: the ordinal of its Enter.
    var_enters: Vec<u32>,
    /// Per Enter ordinal: the invariant it gives, if it is a constant Enter.
    inv_of_enter: Vec<Option<u32>>,
    num_invs: usize,
    pre: Vec<PlanStep>,
    pred: ValRef,
    body: Vec<PlanStep>,
    /// Per loop variable: its next value, and whether reading it may take it.
    next: Vec<(ValRef, bool)>,
    /// Every next value is a kernel output (none is a loop variable or an invariant), so the
    /// variables can be assigned one by one.
    next_from_vals: bool,
    /// Every kernel has a scalar fast path and reads only earlier registers (set once the
    /// kernels are built): with scalar loop variables and invariants the loop runs on a
    /// register file of `Scalar`s (`scalar_loop`).
    all_scalar: bool,
    /// (loop variable, Exit node).
    exits: Vec<(u32, u32)>,
    num_vals: usize,
    /// The LoopCond node (for errors).
    loop_cond: u32,
}

impl CfProgram {
    /// Whether a step timeline records node `n`: kernels, TensorArray ops and transfers; the
    /// forwarding ops (Merge, Switch, Enter, Exit, NextIteration, LoopCond, Identity in a
    /// frame) are the machine's bookkeeping, run inline or aliased away by loop plans.
    fn timed(&self, n: u32) -> bool {
        self.nodes.get(n as usize).is_some_and(|c| {
            matches!(
                c.kind,
                CfKind::Kernel | CfKind::TensorArray(_) | CfKind::Send(_) | CfKind::Recv(_)
            )
        })
    }

    /// Marks the loop plans' steps whose kernel has a scalar fast path.
    fn mark_scalar_steps(&mut self, exec: &[ExecNode]) {
        let nodes = &self.nodes;
        for plan in self.frames.iter_mut().filter_map(|t| t.plan.as_mut()) {
            let (nv, ni) = (plan.var_enters.len() as u32, plan.num_invs as u32);
            let reg = |r: ValRef| match r {
                ValRef::Var(j) => j,
                ValRef::Inv(k) => nv + k,
                ValRef::Val(i) => nv + ni + i,
            };
            let mut all = true;
            for step in plan.pre.iter_mut().chain(plan.body.iter_mut()) {
                let en = &exec[step.node as usize];
                step.scalar = matches!(nodes[step.node as usize].kind, CfKind::Kernel)
                    && en.scalar
                    && step.n_out == 1;
                step.in_regs = step.inputs.iter().map(|&(r, _)| reg(r)).collect();
                step.out_reg = nv + ni + step.out_base;
                step.out_dtype = en.out_dtypes.first().copied().unwrap_or(step.out_dtype);
                all &= step.scalar && step.in_regs.iter().all(|&r| r < step.out_reg);
            }
            plan.all_scalar = all;
        }
    }
}

impl LoopPlan {
    /// The plan of frame template `t`, when it is a simple loop.
    fn build(g: &Graph, nodes: &[CfNode], t: u32) -> Option<LoopPlan> {
        use std::collections::HashMap as Map;
        use tfr_graph::Output;
        let mut alias: Map<Output, (ValRef, Side)> = Map::new();
        let mut enter_ordinal: Map<u32, (u32, bool)> = Map::new();
        let mut inv_of_enter = Vec::new();
        let mut num_invs = 0u32;
        for (i, n) in nodes.iter().enumerate() {
            if let CfKind::Enter {
                constant,
                child,
                ordinal,
            } = n.kind
            {
                if child != t {
                    continue;
                }
                if inv_of_enter.len() <= ordinal as usize {
                    inv_of_enter.resize(ordinal as usize + 1, None);
                }
                enter_ordinal.insert(i as u32, (ordinal, constant));
                if constant {
                    inv_of_enter[ordinal as usize] = Some(num_invs);
                    alias.insert(
                        Output::new(NodeId(i as u32), 0),
                        (ValRef::Inv(num_invs), Side::Pre),
                    );
                    num_invs += 1;
                }
            }
        }
        let mut merges: Map<u32, u32> = Map::new();
        let mut var_enters = Vec::new();
        let mut next: Vec<Option<(ValRef, bool)>> = Vec::new();
        let mut pred = None;
        let mut loop_cond = None;
        let mut pre = Vec::new();
        let mut body = Vec::new();
        let mut exits = Vec::new();
        let mut num_vals = 0u32;
        for (i, n) in nodes.iter().enumerate() {
            if n.frame != t {
                continue;
            }
            let id = NodeId(i as u32);
            let node = g.node(id);
            let refs: Option<Vec<(ValRef, Side)>> =
                node.inputs.iter().map(|o| alias.get(o).copied()).collect();
            let controls_ok = node.control_inputs.iter().all(|c| {
                (0..g.node(*c).outputs.len().max(1))
                    .any(|k| alias.contains_key(&Output::new(*c, k)))
            });
            match &n.kind {
                CfKind::Merge {
                    forward: 1,
                    back: 1,
                } => {
                    let (ordinal, constant) = *enter_ordinal.get(&node.inputs[0].node.0)?;
                    if constant || !node.control_inputs.is_empty() || !n.out_edges[1].is_empty() {
                        return None;
                    }
                    let j = var_enters.len() as u32;
                    var_enters.push(ordinal);
                    next.push(None);
                    merges.insert(i as u32, j);
                    alias.insert(Output::new(id, 0), (ValRef::Var(j), Side::Pre));
                }
                CfKind::LoopCond => {
                    let r = refs?;
                    if r.len() != 1 || r[0].1 != Side::Pre || loop_cond.is_some() {
                        return None;
                    }
                    pred = Some(r[0].0);
                    loop_cond = Some(i as u32);
                }
                CfKind::Switch => {
                    let lc = loop_cond?;
                    if node.inputs[1] != Output::new(NodeId(lc), 0)
                        || !node.control_inputs.is_empty()
                    {
                        return None;
                    }
                    let (r, side) = alias.get(&node.inputs[0]).copied()?;
                    if !matches!(r, ValRef::Var(_)) || side != Side::Pre {
                        return None;
                    }
                    alias.insert(Output::new(id, 0), (r, Side::ToExit));
                    alias.insert(Output::new(id, 1), (r, Side::Body));
                }
                CfKind::Forward => {
                    let r = refs?;
                    if r.len() != 1 || r[0].1 == Side::ToExit || !node.control_inputs.is_empty() {
                        return None;
                    }
                    alias.insert(Output::new(id, 0), r[0]);
                }
                CfKind::NextIteration => {
                    let r = refs?;
                    if r.len() != 1 || r[0].1 == Side::ToExit {
                        return None;
                    }
                    let [e] = n.out_edges[0].as_slice() else {
                        return None;
                    };
                    let j = *merges.get(&e.node)?;
                    next[j as usize] = Some((r[0].0, false));
                }
                CfKind::Exit { .. } => match alias.get(&node.inputs[0]).copied()? {
                    (ValRef::Var(j), Side::ToExit) => exits.push((j, i as u32)),
                    _ => return None,
                },
                CfKind::Kernel | CfKind::TensorArray(_) => {
                    let r = refs?;
                    if !controls_ok || r.iter().any(|x| x.1 == Side::ToExit) {
                        return None;
                    }
                    let body_side = r.iter().any(|x| x.1 == Side::Body)
                        || node.control_inputs.iter().any(|c| {
                            (0..g.node(*c).outputs.len().max(1)).any(|k| {
                                alias
                                    .get(&Output::new(*c, k))
                                    .is_some_and(|a| a.1 == Side::Body)
                            })
                        });
                    let side = if body_side { Side::Body } else { Side::Pre };
                    let n_out = n.out_edges.len() as u32;
                    for k in 0..n_out {
                        alias.insert(
                            Output::new(id, k as usize),
                            (ValRef::Val(num_vals + k), side),
                        );
                    }
                    let step = PlanStep {
                        node: i as u32,
                        inputs: r.iter().map(|x| (x.0, false)).collect(),
                        out_base: num_vals,
                        n_out,
                        scalar: false,
                        in_regs: SmallVec::new(),
                        out_reg: 0,
                        out_dtype: tfr_graph::DType::F32,
                    };
                    num_vals += n_out;
                    if body_side {
                        body.push(step);
                    } else {
                        pre.push(step);
                    }
                }
                _ => return None,
            }
        }
        let next: Vec<(ValRef, bool)> = next.into_iter().collect::<Option<_>>()?;
        if var_enters.is_empty() {
            return None;
        }
        let next_from_vals = next.iter().all(|(r, _)| matches!(r, ValRef::Val(_)));
        let mut plan = LoopPlan {
            next_from_vals,
            all_scalar: false,
            var_enters,
            inv_of_enter,
            num_invs: num_invs as usize,
            pre,
            pred: pred?,
            body,
            next,
            exits,
            num_vals: num_vals as usize,
            loop_cond: loop_cond?,
        };
        plan.mark_last_uses();
        Some(plan)
    }

    /// Marks the reads that may take their value: the last use, in the body or the next
    /// values, of a loop variable or a kernel output (never of an invariant, and never a loop
    /// variable before the predicate: the Exits may still need it).
    fn mark_last_uses(&mut self) {
        use std::collections::HashMap as Map;
        let mut last: Map<ValRef, (usize, usize)> = Map::new();
        let np = self.pre.len();
        for (s, step) in self.pre.iter().chain(&self.body).enumerate() {
            for (k, (r, _)) in step.inputs.iter().enumerate() {
                last.insert(*r, (s, k));
            }
        }
        let nb = np + self.body.len();
        for (j, (r, _)) in self.next.iter().enumerate() {
            last.insert(*r, (nb, j));
        }
        let takeable = |r: &ValRef, s: usize| match r {
            ValRef::Inv(_) => false,
            ValRef::Var(_) => s >= np,
            ValRef::Val(_) => true,
        };
        for (s, step) in self.pre.iter_mut().chain(self.body.iter_mut()).enumerate() {
            for (k, (r, take)) in step.inputs.iter_mut().enumerate() {
                *take = takeable(r, s) && last.get(r) == Some(&(s, k));
            }
        }
        for (j, (r, take)) in self.next.iter_mut().enumerate() {
            *take = takeable(r, nb) && last.get(r) == Some(&(nb, j));
        }
        // The predicate is read by reference, after the pre kernels: none of them may take it.
        let pred = self.pred;
        for step in &mut self.pre {
            for (r, take) in step.inputs.iter_mut() {
                if *r == pred {
                    *take = false;
                }
            }
        }
    }
}

impl Machine<'_> {
    /// Runs loop frame `f` by its plan (all its Enters have fired), delivers its Exits to the
    /// parent frame and retires it.
    fn run_plan(&mut self, f: u32, ready: &mut Vec<Task>) {
        let prog = self.prog;
        let (template, enter_values) = {
            let inst = self.inst(f);
            (inst.template, std::mem::take(&mut inst.enter_values))
        };
        let t = &prog.frames[template as usize];
        let Some(plan) = t.plan.as_ref() else {
            return;
        };
        let results = match self.plan_loop(plan, t, enter_values) {
            Ok(r) => r,
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        let inst = self.inst(f);
        let (p, pk) = (inst.parent, inst.parent_iter);
        inst.exits_delivered.iter_mut().for_each(|d| *d = true);
        for &(j, x) in &plan.exits {
            let v = match &results {
                Some(vars) => vars[j as usize].clone().map_or(Entry::Dead, Entry::Live),
                None => Entry::Dead,
            };
            let node = &prog.nodes[x as usize];
            self.deliver(p, pk, &node.control_edges, v.clone(), ready);
            self.deliver(p, pk, &node.out_edges[0], v, ready);
        }
        let inst = self.inst(f);
        let template = inst.template;
        let its: Vec<IterState> = inst.iters.drain(..).collect();
        for it in its {
            self.recycle(template, it);
        }
        self.delete_frame(f, ready);
    }

    /// The loop itself: the final values of the loop variables, `None` when the loop is dead
    /// (a dead input, or a dead next value).
    fn plan_loop(
        &mut self,
        plan: &LoopPlan,
        t: &FrameTemplate,
        enter_values: Vec<Entry>,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let Some(fast) = self.fast.as_ref() else {
            return Ok(None);
        };
        let prog = self.prog;
        let value = |e: &Entry| match e {
            Entry::Live(t) => Some(t.clone()),
            _ => None,
        };
        let mut vars: Vec<Option<Tensor>> = Vec::with_capacity(plan.var_enters.len());
        for &o in &plan.var_enters {
            match enter_values.get(o as usize).and_then(value) {
                Some(v) => vars.push(Some(v)),
                None => return Ok(None),
            }
        }
        let mut invs: Vec<Option<Tensor>> = vec![None; plan.num_invs];
        for (o, inv) in plan.inv_of_enter.iter().enumerate() {
            if let Some(k) = inv {
                invs[*k as usize] = enter_values.get(o).and_then(value);
            }
        }
        let mut iter: u64 = 0;
        // A traced step times each kernel: no register-file loop.
        if plan.all_scalar && fast.trace.is_none() {
            let regs: Option<Vec<Scalar>> = vars
                .iter()
                .chain(&invs)
                .map(|v| v.as_ref().and_then(Tensor::as_scalar))
                .collect();
            if let Some(mut regs) = regs {
                let done = scalar_loop(fast, prog, plan, t, &mut regs, &mut iter);
                self.counts.iterations += iter;
                let done = done?;
                let scalars = regs[..vars.len()].iter().copied();
                if done {
                    return Ok(Some(
                        scalars.map(|s| Some(Tensor::from_scalar(s))).collect(),
                    ));
                }
                // A kernel declined: go on the general way from the start of this iteration
                // (the kernels are pure, and the registers still hold its loop variables).
                for (v, s) in vars.iter_mut().zip(scalars) {
                    *v = Some(Tensor::from_scalar(s));
                }
            }
        }
        let mut vals: Vec<Option<Tensor>> = vec![None; plan.num_vals];
        let mut ctx = KernelContext::new(SmallVec::new(), fast.resources, fast.feeds);
        let mut next: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
        loop {
            for step in &plan.pre {
                let en = &fast.exec.nodes[step.node as usize];
                let span = Span::start(fast.trace);
                if !(step.scalar && run_scalar_step(en, step, &vars, &invs, &mut vals)) {
                    run_step(fast, prog, step, &mut vars, &invs, &mut vals, &mut ctx)?;
                }
                step_span_end(span, prog, step, iter, &vals);
            }
            let pred = match plan.pred {
                ValRef::Var(j) => vars[j as usize].as_ref(),
                ValRef::Inv(k) => invs[k as usize].as_ref(),
                ValRef::Val(i) => vals[i as usize].as_ref(),
            };
            let Some(pred) = pred else {
                return Ok(None);
            };
            let holds = match pred.as_slice::<bool>() {
                Ok([b]) => *b,
                _ => {
                    return Err(cf_node_error(
                        prog,
                        plan.loop_cond,
                        KernelError::invalid("the loop predicate must be a bool scalar"),
                    ))
                }
            };
            if !holds {
                return Ok(Some(vars));
            }
            if let Some(max) = t.maximum_iterations {
                if iter >= max {
                    return Err(cf_node_error(
                        prog,
                        plan.loop_cond,
                        KernelError::out_of_range(format!(
                            "while loop `{}` exceeded maximum_iterations = {max}: its predicate \
                             still holds after {max} iterations",
                            t.name
                        )),
                    ));
                }
            }
            for step in &plan.body {
                let en = &fast.exec.nodes[step.node as usize];
                let span = Span::start(fast.trace);
                if !(step.scalar && run_scalar_step(en, step, &vars, &invs, &mut vals)) {
                    run_step(fast, prog, step, &mut vars, &invs, &mut vals, &mut ctx)?;
                }
                step_span_end(span, prog, step, iter, &vals);
            }
            if plan.next_from_vals {
                // No next value is a loop variable: assign in place (scalars by value).
                for (j, &(r, take)) in plan.next.iter().enumerate() {
                    let ValRef::Val(i) = r else { unreachable!() };
                    let var = &mut vars[j];
                    match (
                        var.as_mut().and_then(Tensor::scalar_mut),
                        vals[i as usize].as_ref().and_then(Tensor::scalar_ref),
                    ) {
                        (Some(d), Some(s)) => d.assign(s),
                        _ => match read(r, take, &mut [], &invs, &mut vals) {
                            Some(v) => *var = Some(v),
                            None => return Ok(None),
                        },
                    }
                }
            } else {
                next.clear();
                for &(r, take) in &plan.next {
                    next.push(read(r, take, &mut vars, &invs, &mut vals));
                }
                if next.iter().any(Option::is_none) {
                    return Ok(None);
                }
                for (v, n) in vars.iter_mut().zip(next.drain(..)) {
                    *v = n;
                }
            }
            iter += 1;
            self.counts.iterations += 1;
        }
    }
}

/// Runs an all-scalar loop plan on registers (`regs`: the loop variables and invariants; the
/// kernel outputs are appended): each kernel reads its inputs in place and writes its output
/// register. `Ok(true)` when the predicate fails (the variables' final values are in the
/// first registers); `Ok(false)` when a kernel declined its scalar path, with `iter` the
/// iteration it was in and the first registers still holding that iteration's variables.
fn scalar_loop(
    fast: &FastCtx<'_>,
    prog: &CfProgram,
    plan: &LoopPlan,
    t: &FrameTemplate,
    regs: &mut Vec<Scalar>,
    iter: &mut u64,
) -> Result<bool> {
    let nv = plan.var_enters.len();
    let base = regs.len();
    regs.resize(base + plan.num_vals, Scalar::Bool(false));
    let reg = |r: ValRef| match r {
        ValRef::Var(j) => j as usize,
        ValRef::Inv(k) => nv + k as usize,
        ValRef::Val(i) => base + i as usize,
    };
    let kernels = |steps: &[PlanStep]| -> Vec<&dyn OpKernel> {
        steps
            .iter()
            .map(|s| fast.exec.nodes[s.node as usize].kernel.as_ref())
            .collect()
    };
    let (pre_k, body_k) = (kernels(&plan.pre), kernels(&plan.body));
    let run = |steps: &[PlanStep], ks: &[&dyn OpKernel], regs: &mut [Scalar]| -> bool {
        steps.iter().zip(ks).all(|(st, k)| {
            let (lo, hi) = regs.split_at_mut(st.out_reg as usize);
            let out = &mut hi[0];
            let ok = match st.in_regs.as_slice() {
                [a] => k.compute_scalar(&[&lo[*a as usize]], out),
                [a, b] => k.compute_scalar(&[&lo[*a as usize], &lo[*b as usize]], out),
                rs => {
                    let args: SmallVec<[&Scalar; 4]> =
                        rs.iter().map(|&r| &lo[r as usize]).collect();
                    k.compute_scalar(&args, out)
                }
            };
            ok && out.dtype() == st.out_dtype
        })
    };
    let pred = reg(plan.pred);
    let next: SmallVec<[usize; 4]> = plan.next.iter().map(|&(r, _)| reg(r)).collect();
    let mut tmp: SmallVec<[Scalar; 4]> = SmallVec::new();
    loop {
        if !run(&plan.pre, &pre_k, regs) {
            return Ok(false);
        }
        let Scalar::Bool(holds) = regs[pred] else {
            return Err(cf_node_error(
                prog,
                plan.loop_cond,
                KernelError::invalid("the loop predicate must be a bool scalar"),
            ));
        };
        if !holds {
            return Ok(true);
        }
        if let Some(max) = t.maximum_iterations {
            if *iter >= max {
                return Err(cf_node_error(
                    prog,
                    plan.loop_cond,
                    KernelError::out_of_range(format!(
                        "while loop `{}` exceeded maximum_iterations = {max}: its predicate \
                         still holds after {max} iterations",
                        t.name
                    )),
                ));
            }
        }
        if !run(&plan.body, &body_k, regs) {
            return Ok(false);
        }
        if plan.next_from_vals {
            let (vars, rest) = regs.split_at_mut(nv);
            for (v, &r) in vars.iter_mut().zip(&next) {
                v.assign(&rest[r - nv]);
            }
        } else {
            tmp.clear();
            tmp.extend(next.iter().map(|&r| regs[r]));
            for (v, s) in regs.iter_mut().zip(&tmp) {
                v.assign(s);
            }
        }
        *iter += 1;
    }
}

/// Records a plan step's run (not when its outputs are dead: it did not run).
#[inline(always)]
fn step_span_end(
    span: Span<'_>,
    prog: &CfProgram,
    step: &PlanStep,
    iter: u64,
    vals: &[Option<Tensor>],
) {
    if !span.is_on() {
        return;
    }
    let out = &vals[step.out_base as usize..(step.out_base + step.n_out) as usize];
    if step.n_out == 0 || out.iter().any(Option::is_some) {
        span.end(
            step.node,
            prog.nodes[step.node as usize].frame,
            iter,
            || outputs_bytes(out.iter().map(Option::as_ref)),
        );
    }
}

#[inline(always)]
fn read(
    r: ValRef,
    take: bool,
    vars: &mut [Option<Tensor>],
    invs: &[Option<Tensor>],
    vals: &mut [Option<Tensor>],
) -> Option<Tensor> {
    match (r, take) {
        (ValRef::Var(j), true) => vars[j as usize].take(),
        (ValRef::Var(j), false) => vars[j as usize].clone(),
        (ValRef::Inv(k), _) => invs[k as usize].clone(),
        (ValRef::Val(i), true) => vals[i as usize].take(),
        (ValRef::Val(i), false) => vals[i as usize].clone(),
    }
}

/// A plan step by its kernel's scalar fast path, when every input is a live scalar held inline
/// and the kernel answers with the declared dtype: no kernel context and no tensor moves; the
/// kernel reads its inputs where they are and writes its output into the output slot. A
/// scalar's "last use" need not take it: the slot is overwritten before it is read again.
/// `false` when the step must run the general way.
#[inline]
fn run_scalar_step(
    en: &ExecNode,
    step: &PlanStep,
    vars: &[Option<Tensor>],
    invs: &[Option<Tensor>],
    vals: &mut [Option<Tensor>],
) -> bool {
    let o = step.out_base as usize;
    if vals[o].as_ref().and_then(Tensor::scalar_ref).is_none() {
        vals[o] = Some(Tensor::from_scalar(Scalar::Bool(false)));
    }
    let (lo, rest) = vals.split_at_mut(o);
    let Some((slot, hi)) = rest.split_first_mut() else {
        return false;
    };
    let Some(out) = slot.as_mut().and_then(Tensor::scalar_mut) else {
        return false;
    };
    let get = |r: ValRef| {
        match r {
            ValRef::Var(j) => vars[j as usize].as_ref(),
            ValRef::Inv(k) => invs[k as usize].as_ref(),
            ValRef::Val(i) if (i as usize) < o => lo[i as usize].as_ref(),
            ValRef::Val(i) => hi.get(i as usize - o - 1).and_then(Option::as_ref),
        }
        .and_then(Tensor::scalar_ref)
    };
    let done = match step.inputs.as_slice() {
        [(a, _)] => match get(*a) {
            Some(a) => en.kernel.compute_scalar(&[a], out),
            None => false,
        },
        [(a, _), (b, _)] => match (get(*a), get(*b)) {
            (Some(a), Some(b)) => en.kernel.compute_scalar(&[a, b], out),
            _ => false,
        },
        inputs => {
            let args: Option<SmallVec<[&Scalar; 4]>> =
                inputs.iter().map(|(r, _)| get(*r)).collect();
            args.is_some_and(|args| en.kernel.compute_scalar(&args, out))
        }
    };
    done && out.dtype() == en.out_dtypes[0]
}

/// Runs one kernel (or TensorArray op) of a plan; a dead input makes its outputs dead.
#[inline]
fn run_step(
    fast: &FastCtx<'_>,
    prog: &CfProgram,
    step: &PlanStep,
    vars: &mut [Option<Tensor>],
    invs: &[Option<Tensor>],
    vals: &mut [Option<Tensor>],
    ctx: &mut KernelContext<'_>,
) -> Result<()> {
    let en = &fast.exec.nodes[step.node as usize];
    let out = step.out_base as usize..(step.out_base + step.n_out) as usize;
    match &prog.nodes[step.node as usize].kind {
        CfKind::TensorArray(ta) => {
            let mut inputs: SmallVec<[Option<Tensor>; 4]> = step
                .inputs
                .iter()
                .map(|&(r, take)| read(r, take, vars, invs, vals))
                .collect();
            let dead_write = ta.op == TaOp::Write
                && ta.keep_dead
                && [0usize, 1, 3]
                    .iter()
                    .all(|&i| inputs.get(i).is_some_and(Option::is_some));
            if inputs.iter().any(Option::is_none) && !dead_write {
                vals[out].iter_mut().for_each(|v| *v = None);
                return Ok(());
            }
            let r = fast
                .arrays
                .run(ta, &mut inputs, &prog.flow)
                .map_err(|e| Executable::kernel_error(en, e))?;
            for (slot, v) in vals[out].iter_mut().zip(r) {
                *slot = v;
            }
        }
        _ => {
            ctx.reset_inputs();
            for &(r, take) in &step.inputs {
                match read(r, take, vars, invs, vals) {
                    Some(v) => ctx.push_input(v),
                    None => {
                        vals[out].iter_mut().for_each(|v| *v = None);
                        return Ok(());
                    }
                }
            }
            en.kernel
                .compute(ctx)
                .map_err(|e| Executable::kernel_error(en, e))?;
            Executable::finish_node(en, ctx.outputs())?;
            for (slot, v) in vals[out].iter_mut().zip(ctx.drain_outputs()) {
                *slot = Some(v);
            }
        }
    }
    Ok(())
}
