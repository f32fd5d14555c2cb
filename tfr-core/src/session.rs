//! `Session`: runs parts of a graph. Each (feeds, fetches, targets) signature is pruned,
//! optimized, placed and compiled once into a [`Program`], cached, and reused by every later
//! step. A program is one [`Executable`] when every node is on one device, or one executable
//! per device joined by `_Send`/`_Recv` through a per-step rendezvous.

use crate::device::{registered_device_factories, Device};
use crate::error::{Code, Error, KernelError, Result};
use crate::executor::{Executable, RunMetadata, RunOptions, StepTrace};
use crate::kernel::DeviceType;
use crate::passes::fold_constants;
use crate::placement::{partition, place, to_dot};
use crate::rendezvous::{LocalRendezvous, Rendezvous};
use crate::resource::ResourceMgr;
use crate::session_target::{self, TargetSession};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tfr_graph::fusion::{fuse_ops_with, Fusions};
use tfr_graph::passes::{eliminate_common_subexpressions, prune, remove_dead_nodes, StepGraph};
use tfr_graph::validate::validate;
use tfr_graph::{DType, Graph, NodeId, Output, Shape, TensorType};

mod options;
pub use options::{DevicePolicy, SessionOptions};

#[derive(Clone, PartialEq, Eq, Hash)]
struct StepKey {
    feeds: Vec<Output>,
    fetches: Vec<Output>,
    targets: Vec<NodeId>,
}

/// The compiled form of one step signature.
pub enum Program {
    Single(Box<Executable>),
    Partitioned(Vec<PartitionProgram>),
    /// A step of a session with a target: its signature, which that target's runtime compiles.
    Remote(RemoteStep),
}

/// The signature of a step another runtime runs.
pub struct RemoteStep {
    pub feeds: Vec<Output>,
    pub fetches: Vec<Output>,
    pub targets: Vec<NodeId>,
}

/// One device's share of a partitioned step.
pub struct PartitionProgram {
    pub device: usize,
    pub exec: Executable,
    /// (position among the step's fetches, position among this partition's fetches)
    fetch_map: Vec<(usize, usize)>,
}

struct Inner {
    graph: Graph,
    resources: ResourceMgr,
    pool: Option<rayon::ThreadPool>,
    devices: Vec<Device>,
    options: SessionOptions,
    cache: RwLock<HashMap<StepKey, Arc<Program>>>,
    step_ids: AtomicU64,
    /// Some device has memory of its own: host kernels check their inputs' memory.
    guard_host_inputs: bool,
    /// The runtime of `options.target`, when it is not this process.
    remote: Option<Box<dyn TargetSession>>,
}

/// Runs steps of one graph. `Send + Sync`: many threads may run steps at once.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.inner.options.target)
            .field("nodes", &self.inner.graph.len())
            .finish()
    }
}

fn option_error(arg: &str, message: impl Into<String>) -> Error {
    Error::InvalidArgument {
        arg: arg.into(),
        message: message.into(),
    }
}

impl Session {
    /// A session over a copy of `graph` (validated first), running its steps in this process
    /// or, with `options.target`, in the runtime the target names.
    pub fn new(graph: &Graph, options: SessionOptions) -> Result<Session> {
        validate(graph)?;
        let remote = session_target::open(graph, &options)?;
        let threads = match options.inter_op_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if options.cpu_devices == 0 {
            return Err(option_error(
                "cpu_devices",
                "a session needs at least one device",
            ));
        }
        // A session with a target runs no step here.
        let pool = if threads > 1 && remote.is_none() {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("tfr-inter-op-{i}"))
                    .start_handler(|_| crate::kernels::denormals::flush_on_this_thread())
                    .build()
                    .map_err(|e| option_error("inter_op_threads", e.to_string()))?,
            )
        } else {
            None
        };
        let mut devices: Vec<Device> = (0..options.cpu_devices)
            .map(|i| Device::cpu(i as u32))
            .collect();
        // A session with a target has its devices in that runtime.
        let local = remote.is_none() && options.device != DevicePolicy::Cpu;
        let mut factories = if local {
            options.device_factories.clone()
        } else {
            Vec::new()
        };
        if options.registered_devices && local {
            factories.extend(registered_device_factories());
        }
        for f in &factories {
            let made = f.create_devices().map_err(|e| {
                option_error(
                    "device_factories",
                    format!("{} devices: {e}", f.device_type()),
                )
            })?;
            for backend in made {
                let d = Device::new(backend);
                if devices.iter().any(|o| o.spec == d.spec) {
                    return Err(option_error(
                        "device_factories",
                        format!("device {} is made twice", d.name()),
                    ));
                }
                devices.push(d);
            }
        }
        let has_gpu = devices.iter().any(|d| d.device_type == DeviceType::GPU);
        if options.device == DevicePolicy::Gpu && remote.is_none() && !has_gpu {
            return Err(option_error(
                "device",
                format!(
                    "DevicePolicy::Gpu requires a GPU, but the session has none (devices: {}); \
                     a GPU appears when tfr-cuda has registered its device factory (the `tfr` \
                     crate's sessions do it; `tfr_cuda::runtime::register` says why it cannot)",
                    devices
                        .iter()
                        .map(Device::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let options = SessionOptions {
            inter_op_threads: threads,
            ..options
        };
        Ok(Session {
            inner: Arc::new(Inner {
                graph: graph.clone(),
                resources: ResourceMgr::default(),
                pool,
                options,
                cache: RwLock::new(HashMap::new()),
                step_ids: AtomicU64::new(0),
                guard_host_inputs: devices.iter().any(|d| !d.memory_space().is_host()),
                devices,
                remote,
            }),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }

    pub fn resources(&self) -> &ResourceMgr {
        &self.inner.resources
    }

    /// Full names of the session's devices (for a session with a target: the devices of the
    /// runtime it names, or none when that runtime cannot say).
    pub fn devices(&self) -> Vec<String> {
        match &self.inner.remote {
            Some(remote) => remote.devices().unwrap_or_default(),
            None => self.inner.devices.iter().map(Device::name).collect(),
        }
    }

    /// The runtime steps run in: `""` for this process, else the session's target.
    pub fn target(&self) -> &str {
        &self.inner.options.target
    }

    /// For the calls only an in-process session can answer.
    fn local_only(&self, what: &str) -> Result<()> {
        match self.inner.remote {
            Some(_) => Err(option_error(
                what,
                format!(
                    "the steps of this session run in `{}`, which decides their placement",
                    self.inner.options.target
                ),
            )),
            None => Ok(()),
        }
    }

    /// Per device: (name, threads its runner has started so far). Runner threads persist
    /// across steps; a device needs one per partition of it running at once.
    pub fn runner_threads(&self) -> Vec<(String, usize)> {
        self.inner
            .devices
            .iter()
            .map(|d| (d.name(), d.runner_threads()))
            .collect()
    }

    /// Runs the nodes that `fetches` and `targets` need, with `feeds` replacing the values of
    /// the outputs they name, and returns the fetched values in order.
    pub fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>> {
        let key = StepKey {
            feeds: feeds.iter().map(|f| f.0).collect(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        };
        let program = self.program(key)?;
        let values: Vec<Tensor> = feeds.iter().map(|f| f.1.clone()).collect();
        self.execute(&program, &values, None)
    }

    /// [`Session::run`] with per-step options; the metadata holds the step's timeline when
    /// `options.trace` is set (one [`NodeExecStats`](crate::executor::NodeExecStats) per node
    /// run; see [`RunMetadata::to_chrome_trace`] and [`RunMetadata::op_summary`]), and is
    /// empty otherwise.
    pub fn run_with_options(
        &self,
        options: &RunOptions,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<(Vec<Tensor>, RunMetadata)> {
        let key = StepKey {
            feeds: feeds.iter().map(|f| f.0).collect(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        };
        let program = self.program(key)?;
        let values: Vec<Tensor> = feeds.iter().map(|f| f.1.clone()).collect();
        self.execute_with_options(&program, &values, options)
    }

    /// Like [`Session::run`], naming outputs as `"node"` or `"node:i"` and targets by node name.
    pub fn run_named(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let g = &self.inner.graph;
        let feeds = feeds
            .iter()
            .map(|(n, t)| Ok((g.output_by_name(n)?, t.clone())))
            .collect::<Result<Vec<_>>>()?;
        let fetches = fetches
            .iter()
            .map(|n| Ok(g.output_by_name(n)?))
            .collect::<Result<Vec<_>>>()?;
        let targets = targets
            .iter()
            .map(|n| Ok(g.node_by_name(n)?))
            .collect::<Result<Vec<_>>>()?;
        self.run(&feeds, &fetches, &targets)
    }

    /// A prepared step for one signature: the fastest way to run the same step repeatedly.
    pub fn make_callable(
        &self,
        feeds: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Callable> {
        let program = self.program(StepKey {
            feeds: feeds.to_vec(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        })?;
        Ok(Callable {
            program,
            session: self.clone(),
        })
    }

    /// Number of compiled step signatures in the cache.
    pub fn cached_executables(&self) -> usize {
        self.inner.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    /// The device each node of a step runs on, as (node name, device name), in graph order
    /// (after pruning and optimization).
    pub fn placement(
        &self,
        feeds: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<(String, String)>> {
        self.local_only("placement")?;
        let step = self.optimized(&StepKey {
            feeds: feeds.to_vec(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        })?;
        let assignment = place(
            &step.graph,
            &self.inner.devices,
            self.inner.options.soft_placement,
        )?;
        Ok(step
            .graph
            .nodes()
            .iter()
            .zip(assignment)
            .map(|(n, d)| (n.name.clone(), self.inner.devices[d].name()))
            .collect())
    }

    /// A step's placed graph in Graphviz DOT, devices as clusters.
    pub fn placement_dot(
        &self,
        feeds: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<String> {
        self.local_only("placement_dot")?;
        let step = self.optimized(&StepKey {
            feeds: feeds.to_vec(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        })?;
        let assignment = place(
            &step.graph,
            &self.inner.devices,
            self.inner.options.soft_placement,
        )?;
        Ok(to_dot(&step.graph, &assignment, &self.inner.devices))
    }

    fn program(&self, key: StepKey) -> Result<Arc<Program>> {
        if self.inner.remote.is_some() {
            return Ok(Arc::new(Program::Remote(RemoteStep {
                feeds: key.feeds,
                fetches: key.fetches,
                targets: key.targets,
            })));
        }
        if let Some(e) = self
            .inner
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return Ok(e);
        }
        let program = Arc::new(self.compile(&key)?);
        let mut cache = self
            .inner
            .cache
            .write()
            .map_err(|_| option_error("session", "cache lock poisoned"))?;
        Ok(cache.entry(key).or_insert(program).clone())
    }

    /// Prunes and optimizes the graph for one signature.
    fn optimized(&self, key: &StepKey) -> Result<StepGraph> {
        let g = &self.inner.graph;
        if let Some(dup) = key
            .feeds
            .iter()
            .enumerate()
            .find(|(i, f)| key.feeds[..*i].contains(f))
        {
            return Err(option_error(
                "feeds",
                format!("`{}` is fed twice", g.output_name(*dup.1)),
            ));
        }
        let mut step = prune(g, &key.feeds, &key.fetches, &key.targets)?;
        // Check every device request before optimization can fold a node away.
        place(
            &step.graph,
            &self.inner.devices,
            self.inner.options.soft_placement,
        )?;
        if self.inner.options.optimize {
            eliminate_common_subexpressions(&mut step);
            fold_constants(&mut step)?;
            // `FusedElementwise` has only a CPU kernel: with other devices, fusing would move
            // their elementwise work to the host.
            let cpu_only = self
                .inner
                .devices
                .iter()
                .all(|d| d.device_type == DeviceType::CPU);
            let any_node = |_: &tfr_graph::Node| true;
            fuse_ops_with(
                &mut step,
                &Fusions {
                    elementwise: cpu_only.then_some(&any_node as &dyn Fn(&tfr_graph::Node) -> bool),
                },
            );
            remove_dead_nodes(&mut step);
        }
        Ok(step)
    }

    fn compile(&self, key: &StepKey) -> Result<Program> {
        let g = &self.inner.graph;
        let step = self.optimized(key)?;
        let names: Vec<String> = key.feeds.iter().map(|&o| g.output_name(o)).collect();
        let feed_types: Vec<TensorType> = key
            .feeds
            .iter()
            .map(|&o| g.output_type(o).clone())
            .collect();
        let assignment = place(
            &step.graph,
            &self.inner.devices,
            self.inner.options.soft_placement,
        )?;
        if assignment
            .iter()
            .all(|&d| d == assignment.first().copied().unwrap_or(0))
        {
            let device = assignment.first().copied().unwrap_or(0);
            let d = &self.inner.devices[device];
            let mut exec = Executable::build_on(
                &step,
                &names,
                self.inner.options.inter_op_threads,
                Some(&d.backend),
                self.inner.guard_host_inputs,
            )?;
            exec.set_device(d.name());
            for (k, arg) in step.feeds.iter().enumerate() {
                if arg.is_none() {
                    exec.set_feed_type(k, feed_types[k].clone());
                }
            }
            return Ok(Program::Single(Box::new(exec)));
        }
        let mut names = names;
        names.push("rendezvous".into());
        let mut programs = Vec::new();
        for part in partition(&step, &assignment, &self.inner.devices)? {
            // Partitions run their nodes in order (see `placement`): one thread each.
            let d = &self.inner.devices[part.device];
            let mut exec = Executable::build_on(
                &part.step,
                &names,
                1,
                Some(&d.backend),
                self.inner.guard_host_inputs,
            )?;
            exec.set_device(d.name());
            for (k, arg) in part.step.feeds.iter().enumerate() {
                if arg.is_none() {
                    let ty = feed_types
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| TensorType::new(DType::Resource, Shape::scalar()));
                    exec.set_feed_type(k, ty);
                }
            }
            programs.push(PartitionProgram {
                device: part.device,
                exec,
                fetch_map: part.fetch_map,
            });
        }
        Ok(Program::Partitioned(programs))
    }

    /// Runs a step, traced when `options.trace`: every executable records into a
    /// [`StepTrace`] of its device, all timed from one start.
    fn execute_with_options(
        &self,
        program: &Arc<Program>,
        feeds: &[Tensor],
        options: &RunOptions,
    ) -> Result<(Vec<Tensor>, RunMetadata)> {
        if let Program::Remote(step) = &**program {
            return self.run_remote(step, feeds, options);
        }
        if !options.trace {
            return Ok((self.execute(program, feeds, None)?, RunMetadata::default()));
        }
        let start = std::time::Instant::now();
        let execs: Vec<&Executable> = match &**program {
            Program::Single(exec) => vec![exec],
            Program::Partitioned(parts) => parts.iter().map(|p| &p.exec).collect(),
            Program::Remote(_) => Vec::new(),
        };
        let traces: Arc<[StepTrace]> = execs
            .iter()
            .map(|e| StepTrace::new(e.device(), start))
            .collect();
        let values = self.execute(program, feeds, Some(&traces))?;
        let step_us = start.elapsed().as_nanos() as f64 / 1e3;
        let mut step_stats: Vec<_> = execs
            .iter()
            .zip(traces.iter())
            .flat_map(|(e, t)| e.trace_stats(t))
            .collect();
        step_stats.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
        Ok((
            values,
            RunMetadata {
                step_stats,
                step_us,
            },
        ))
    }

    /// Runs a step; `traces` (one per executable of the program) record its timeline.
    /// A step of a session with a target, handed to its runtime.
    fn run_remote(
        &self,
        step: &RemoteStep,
        feeds: &[Tensor],
        options: &RunOptions,
    ) -> Result<(Vec<Tensor>, RunMetadata)> {
        let Some(remote) = &self.inner.remote else {
            return Err(option_error(
                "step",
                "a remote step in an in-process session",
            ));
        };
        if feeds.len() != step.feeds.len() {
            return Err(option_error(
                "feeds",
                format!(
                    "{} values for {} fed outputs",
                    feeds.len(),
                    step.feeds.len()
                ),
            ));
        }
        let feeds: Vec<(Output, Tensor)> = step
            .feeds
            .iter()
            .copied()
            .zip(feeds.iter().cloned())
            .collect();
        remote.run(&feeds, &step.fetches, &step.targets, options)
    }

    fn execute(
        &self,
        program: &Arc<Program>,
        feeds: &[Tensor],
        traces: Option<&Arc<[StepTrace]>>,
    ) -> Result<Vec<Tensor>> {
        let inner = &self.inner;
        let parts = match &**program {
            Program::Single(exec) => {
                let trace = traces.and_then(|t| t.first());
                let values =
                    exec.run_traced(feeds, &inner.resources, inner.pool.as_ref(), trace)?;
                // Fetches come back to host memory.
                return exec.fetches_to_host(values);
            }
            Program::Partitioned(parts) => parts,
            Program::Remote(step) => {
                return Ok(self.run_remote(step, feeds, &RunOptions::default())?.0);
            }
        };
        let key = format!(
            "_rendezvous/{}",
            inner.step_ids.fetch_add(1, Ordering::Relaxed)
        );
        let rendezvous = Arc::new(LocalRendezvous::for_partitions(parts.len()));
        inner
            .resources
            .insert_state(&key, rendezvous.clone())
            .map_err(|e| option_error("session", e.message))?;
        let mut values = feeds.to_vec();
        values.push(Tensor::scalar(key.clone()));
        let values: Arc<[Tensor]> = values.into();
        // Partitions after the first run on their devices' persistent threads, the first on
        // the caller's; each has a thread to itself while it runs (a waiting receive never
        // blocks another step's partition).
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<Tensor>>)>();
        let mut results: Vec<Option<Result<Vec<Tensor>>>> =
            (0..parts.len()).map(|_| None).collect();
        let mut dispatched = 0;
        for (i, part) in parts.iter().enumerate().skip(1) {
            let job = {
                let (session, program, values, rendezvous, tx, traces) = (
                    self.clone(),
                    program.clone(),
                    values.clone(),
                    rendezvous.clone(),
                    tx.clone(),
                    traces.cloned(),
                );
                move || -> Box<dyn FnOnce() + Send> {
                    // Everything the job holds is dropped before its result is sent: the
                    // caller may drop the session as soon as it has all results.
                    let r = {
                        let (session, program, values, rendezvous, traces) =
                            (session, program, values, rendezvous, traces);
                        let trace = traces.as_deref().and_then(|t| t.get(i));
                        session.run_partition(&program, i, &values, &rendezvous, trace)
                    };
                    // Sent once the thread is idle again (see `Device::run`).
                    Box::new(move || {
                        let _ = tx.send((i, r));
                    })
                }
            };
            match inner.devices[part.device].run(Box::new(job)) {
                Ok(()) => dispatched += 1,
                Err(e) => {
                    let e = option_error(
                        "session",
                        format!(
                            "cannot start a runner thread on {}: {e}",
                            inner.devices[part.device].name()
                        ),
                    );
                    rendezvous.abort(KernelError::internal(e.to_string()));
                    rendezvous.partition_done();
                    results[i] = Some(Err(e));
                }
            }
        }
        drop(tx);
        let trace = traces.and_then(|t| t.first());
        results[0] = Some(self.run_partition(program, 0, &values, &rendezvous, trace));
        for _ in 0..dispatched {
            match rx.recv() {
                Ok((i, r)) => results[i] = Some(r),
                Err(_) => break,
            }
        }
        inner.resources.remove_state(&key);
        let results: Vec<Result<Vec<Tensor>>> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(option_error(
                        "session",
                        format!(
                            "the partition on {} did not report",
                            inner.devices[parts[i].device].name()
                        ),
                    ))
                })
            })
            .collect();
        // The first real error, not the cancellations it caused.
        if let Some(e) = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .min_by_key(|e| e.code() == Code::Cancelled)
        {
            return Err(e.clone());
        }
        let total: usize = parts.iter().map(|p| p.fetch_map.len()).sum();
        let mut out: Vec<Option<Tensor>> = vec![None; total];
        for (p, r) in parts.iter().zip(results) {
            let mut fetched = r?;
            for &(global, local) in &p.fetch_map {
                out[global] = Some(std::mem::replace(
                    &mut fetched[local],
                    Tensor::scalar(false),
                ));
            }
        }
        out.into_iter()
            .map(|t| t.ok_or_else(|| option_error("fetches", "a fetched value was not produced")))
            .collect()
    }

    /// Runs partition `i` of a partitioned step; a failure (or a panic) aborts the step's
    /// rendezvous, so the other partitions stop instead of waiting for it.
    fn run_partition(
        &self,
        program: &Program,
        i: usize,
        values: &[Tensor],
        rendezvous: &LocalRendezvous,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let Program::Partitioned(parts) = program else {
            return Err(option_error("session", "not a partitioned step"));
        };
        let part = &parts[i];
        let device = || self.inner.devices[part.device].name();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            part.exec
                .run_traced(values, &self.inner.resources, None, trace)
                .and_then(|v| part.exec.fetches_to_host(v))
        }))
        .unwrap_or_else(|_| {
            Err(option_error(
                "session",
                format!("the partition on {} panicked", device()),
            ))
        });
        // A kernel's error names its node; say which device ran it.
        let r = r.map_err(|e| match e {
            Error::Kernel {
                node,
                op,
                code,
                message,
            } => Error::Kernel {
                node,
                op,
                code,
                message: format!("{message} (on {})", device()),
            },
            e => e,
        });
        if let Err(e) = &r {
            rendezvous.abort(KernelError {
                code: e.code(),
                message: e.to_string(),
            });
        }
        rendezvous.partition_done();
        r
    }
}

/// A compiled step bound to its session (see [`Session::make_callable`]).
pub struct Callable {
    program: Arc<Program>,
    session: Session,
}

impl Callable {
    /// Runs the step with feed values in the order the callable was made with.
    pub fn call(&self, feeds: &[Tensor]) -> Result<Vec<Tensor>> {
        self.session.execute(&self.program, feeds, None)
    }

    /// [`call`](Self::call) with per-step options (see [`Session::run_with_options`]).
    pub fn call_with_options(
        &self,
        options: &RunOptions,
        feeds: &[Tensor],
    ) -> Result<(Vec<Tensor>, RunMetadata)> {
        self.session
            .execute_with_options(&self.program, feeds, options)
    }

    /// The compiled program (after pruning, optimization and placement).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The executable of the step's first device (its only one when it runs on one device);
    /// None for a session with a target, whose runtime compiles the step.
    pub fn executable(&self) -> Option<&Executable> {
        match &*self.program {
            Program::Single(e) => Some(e),
            Program::Partitioned(parts) => parts.first().map(|p| &p.exec),
            Program::Remote(_) => None,
        }
    }
}
