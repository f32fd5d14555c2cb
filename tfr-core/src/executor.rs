//! The dataflow executor.
//!
//! An [`Executable`] is the immutable per-step-signature state: kernels, edges as value slots,
//! pending counts, which read of a value is its last. Each run allocates only its per-step state
//! (value slots, pending counters). Two strategies share that state:
//! - sequential: nodes run in topological order on the caller's thread; the last reader of a
//!   value takes it, so a kernel holding the only reference may reuse the buffer in place;
//! - parallel: nodes become ready as their pending counts reach zero; cheap ones run inline,
//!   expensive ones are spawned on the session's rayon pool.

use crate::error::{Error, KernelError, Result};
use crate::kernel::{kernel_registry, DeviceType, KernelContext, KernelInit, OpKernel};
use crate::resource::ResourceMgr;
use crate::tensor::Tensor;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use tfr_graph::passes::{StepGraph, ARG_OP};
use tfr_graph::{registry, Dim, Graph, Node, TensorType};

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
            nodes.push(ExecNode {
                name: node.name.clone(),
                op: node.op.clone(),
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
        Ok(Executable {
            nodes,
            num_values,
            keep: readers.iter().zip(&fetched).map(|(&r, &f)| r > 0 || f).collect(),
            readers,
            fetched,
            fetch_slots: step.fetches.iter().map(|&f| slot(f)).collect(),
            feeds,
            has_symbolic_feeds,
            roots,
            parallel: inter_op_threads > 1 && expensive >= 2 && !runs_on_caller(g),
        })
    }

    /// Overrides the static types of feeds that were pruned away (they are still checked).
    pub fn set_feed_type(&mut self, k: usize, ty: TensorType) {
        self.feeds[k].ty = ty;
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

    /// Runs one step with `feeds` in signature order; returns the fetched values.
    pub fn run(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<Tensor>> {
        self.check_feeds(feeds)?;
        match pool {
            Some(pool) if self.parallel => self.run_parallel(feeds, resources, pool),
            _ => self.run_sequential(feeds, resources),
        }
    }

    fn run_sequential(&self, feeds: &[Tensor], resources: &ResourceMgr) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(self.num_values);
        values.resize_with(self.num_values, || None);
        // One context reused for every node: no per-node allocation or large moves.
        let mut ctx = KernelContext::new(SmallVec::new(), resources, feeds);
        for node in &self.nodes {
            ctx.reset_inputs();
            for r in &node.inputs {
                let v = if r.last { values[r.slot].take() } else { values[r.slot].clone() };
                match v {
                    Some(t) => ctx.push_input(t),
                    None => return Err(Self::kernel_error(node, KernelError::internal("an input value is missing"))),
                }
            }
            node.kernel.compute(&mut ctx).map_err(|e| Self::kernel_error(node, e))?;
            Self::finish_node(node, ctx.outputs())?;
            for (i, t) in ctx.drain_outputs().enumerate() {
                let s = node.out_base + i;
                if self.keep[s] {
                    values[s] = Some(t);
                }
            }
        }
        self.fetch_slots
            .iter()
            .map(|&s| values[s].clone().ok_or_else(|| Error::InvalidArgument { arg: "fetches".into(), message: "a fetched value was not produced".into() }))
            .collect()
    }

    fn run_parallel(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: &rayon::ThreadPool,
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
        node.kernel
            .compute(&mut ctx)
            .map_err(|e| Self::kernel_error(node, e))?;
        let outputs = ctx.into_outputs();
        Self::finish_node(node, &outputs)?;
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
