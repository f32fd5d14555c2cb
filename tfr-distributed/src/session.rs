//! A session over a cluster, with the master's work done in the client (a master service that
//! a thin client talks to comes later). A step signature is pruned, optimized, placed over the
//! tasks' devices (one CPU device per task: `/job:J/replica:0/task:T/device:CPU:0`) and
//! partitioned per task with `tfr_core::placement`, each partition registered once with its
//! task; a step is then one `RunGraph` per task. A failing task aborts the step on every other
//! task; the step reports the first real error, naming the task.

use crate::channel::{connect, ChannelOptions};
use crate::cluster::{ClusterSpec, TaskId};
use crate::error::{Error, Result};
use crate::proto::worker_client::WorkerClient;
use crate::proto::{
    Feed, OutputRef, RegisterGraphRequest, RemoteRecv, RunGraphRequest, StepRequest,
};
use crate::wire::{tensor_from_proto, tensor_to_proto};
use crate::worker::status_text;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tfr_core::device::Device;
use tfr_core::kernels::sendrecv_ops::is_frame_aware_transfer;
use tfr_core::passes::fold_constants;
use tfr_core::placement::{partition, place};
use tfr_core::Tensor;
use tfr_graph::fusion::fuse_ops;
use tfr_graph::passes::{eliminate_common_subexpressions, prune, remove_dead_nodes, StepGraph};
use tfr_graph::validate::validate;
use tfr_graph::{Graph, NodeId, Output};
use tonic::transport::Channel;

/// How a cluster session runs.
#[derive(Clone, Debug)]
pub struct ClusterSessionOptions {
    pub channel: ChannelOptions,
    /// Run CSE, constant folding and fusion on each step's graph (as `Session` does).
    pub optimize: bool,
    /// Drop device requests no device satisfies instead of failing.
    pub soft_placement: bool,
    /// A step still running after this long is aborted on every task (None: no limit).
    pub step_timeout: Option<Duration>,
}

impl Default for ClusterSessionOptions {
    fn default() -> Self {
        ClusterSessionOptions {
            channel: ChannelOptions::default(),
            optimize: true,
            soft_placement: true,
            step_timeout: None,
        }
    }
}

struct TaskRef {
    id: TaskId,
    address: String,
    client: OnceLock<WorkerClient<Channel>>,
}

/// One task's share of a step, registered with it.
struct RemotePart {
    task: usize,
    handle: u64,
    /// Positions among the step's feeds of the partition's feeds, in order.
    feeds: Vec<usize>,
    /// (position among the step's fetches, position among this partition's fetches)
    fetch_map: Vec<(usize, usize)>,
    /// Other tasks pull values from it: the step must be cleaned up there.
    sends: bool,
}

struct Program {
    parts: Vec<RemotePart>,
    num_fetches: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct StepKey {
    feeds: Vec<Output>,
    fetches: Vec<Output>,
    targets: Vec<NodeId>,
}

struct Inner {
    graph: Graph,
    tasks: Vec<TaskRef>,
    devices: Vec<Device>,
    options: ClusterSessionOptions,
    runtime: tokio::runtime::Runtime,
    cache: RwLock<HashMap<StepKey, Arc<Program>>>,
    /// Serializes compiling (and registering) a new signature.
    compiling: Mutex<()>,
    /// Step ids: a random base per session, so two clients' steps differ on a shared task.
    step_base: u64,
    steps: AtomicU64,
}

/// Runs steps of one graph over the tasks of a cluster. `Send + Sync`; clones share.
#[derive(Clone)]
pub struct ClusterSession {
    inner: Arc<Inner>,
}

fn invalid(arg: &str, message: impl Into<String>) -> Error {
    Error::Core(tfr_core::Error::InvalidArgument {
        arg: arg.into(),
        message: message.into(),
    })
}

fn random_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // The low 32 bits count this session's steps.
    h.finish() << 32
}

impl ClusterSession {
    /// A session running `graph` (validated) on the tasks of `cluster`. Connects lazily: an
    /// unreachable task is reported by the first step that needs it.
    pub fn new(
        cluster: &ClusterSpec,
        graph: &Graph,
        options: ClusterSessionOptions,
    ) -> Result<ClusterSession> {
        validate(graph).map_err(tfr_core::Error::from)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| invalid("session", format!("cannot start a runtime: {e}")))?;
        let mut tasks = Vec::new();
        let mut devices = Vec::new();
        for id in cluster.tasks() {
            devices.push(Device::cpu_of_task(&id.job, id.index, 0));
            tasks.push(TaskRef {
                address: cluster.address(&id)?.to_string(),
                id,
                client: OnceLock::new(),
            });
        }
        Ok(ClusterSession {
            inner: Arc::new(Inner {
                graph: graph.clone(),
                tasks,
                devices,
                options,
                runtime,
                cache: RwLock::new(HashMap::new()),
                compiling: Mutex::new(()),
                step_base: random_base(),
                steps: AtomicU64::new(0),
            }),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }

    /// Full names of the cluster's devices, one per task.
    pub fn devices(&self) -> Vec<String> {
        self.inner.devices.iter().map(Device::name).collect()
    }

    /// Runs the nodes `fetches` and `targets` need with `feeds`, over the cluster.
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
        let values: Vec<&Tensor> = feeds.iter().map(|f| &f.1).collect();
        self.inner.runtime.block_on(self.execute(&program, &values))
    }

    /// Like [`ClusterSession::run`], naming outputs `"node"` or `"node:i"`.
    pub fn run_named(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let g = &self.inner.graph;
        let core = |e: tfr_graph::GraphError| Error::Core(e.into());
        let feeds = feeds
            .iter()
            .map(|(n, t)| Ok((g.output_by_name(n).map_err(core)?, t.clone())))
            .collect::<Result<Vec<_>>>()?;
        let fetches = fetches
            .iter()
            .map(|n| g.output_by_name(n).map_err(core))
            .collect::<Result<Vec<_>>>()?;
        let targets = targets
            .iter()
            .map(|n| g.node_by_name(n).map_err(core))
            .collect::<Result<Vec<_>>>()?;
        self.run(&feeds, &fetches, &targets)
    }

    /// The task each node of a step runs on, as (node name, device name).
    pub fn placement(
        &self,
        feeds: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<(String, String)>> {
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

    fn program(&self, key: StepKey) -> Result<Arc<Program>> {
        let cached = |s: &Self| s.inner.cache.read().ok().and_then(|c| c.get(&key).cloned());
        if let Some(p) = cached(self) {
            return Ok(p);
        }
        let _compiling = self
            .inner
            .compiling
            .lock()
            .map_err(|_| invalid("session", "compile lock poisoned"))?;
        if let Some(p) = cached(self) {
            return Ok(p);
        }
        let program = Arc::new(self.inner.runtime.block_on(self.compile(&key))?);
        self.inner
            .cache
            .write()
            .map_err(|_| invalid("session", "cache lock poisoned"))?
            .insert(key, program.clone());
        Ok(program)
    }

    fn optimized(&self, key: &StepKey) -> Result<StepGraph> {
        let g = &self.inner.graph;
        if let Some((_, dup)) = key
            .feeds
            .iter()
            .enumerate()
            .find(|(i, f)| key.feeds[..*i].contains(f))
        {
            return Err(invalid(
                "feeds",
                format!("`{}` is fed twice", g.output_name(*dup)),
            ));
        }
        let mut step =
            prune(g, &key.feeds, &key.fetches, &key.targets).map_err(tfr_core::Error::from)?;
        // Check every device request before optimization can fold a node away.
        place(
            &step.graph,
            &self.inner.devices,
            self.inner.options.soft_placement,
        )?;
        if self.inner.options.optimize {
            eliminate_common_subexpressions(&mut step);
            fold_constants(&mut step)?;
            fuse_ops(&mut step);
            remove_dead_nodes(&mut step);
        }
        Ok(step)
    }

    /// Places and partitions a signature and registers each task's partition.
    async fn compile(&self, key: &StepKey) -> Result<Program> {
        let inner = &self.inner;
        let step = self.optimized(key)?;
        let assignment = place(&step.graph, &inner.devices, inner.options.soft_placement)?;
        let names: Vec<String> = key
            .feeds
            .iter()
            .map(|&o| inner.graph.output_name(o))
            .collect();
        let mut parts = Vec::new();
        for part in partition(&step, &assignment, &inner.devices)? {
            let task = part.device;
            let g = &part.step.graph;
            let mut remote_recvs = Vec::new();
            for n in g.nodes() {
                if is_frame_aware_transfer(n) {
                    return Err(invalid(
                        "graph",
                        format!(
                            "node `{}`: control flow across tasks is not supported yet; \
                             place each loop or cond on one task",
                            n.name
                        ),
                    ));
                }
                if n.op == "_Recv" {
                    let key = n
                        .attrs
                        .string("tensor_name")
                        .map_err(|e| invalid("graph", format!("node `{}`: {e}", n.name)))?;
                    let from = n
                        .attrs
                        .string("send_device")
                        .map_err(|e| invalid("graph", format!("node `{}`: {e}", n.name)))?;
                    let sender = inner
                        .devices
                        .iter()
                        .position(|d| &d.name() == from)
                        .ok_or_else(|| {
                            invalid("graph", format!("node `{}`: no device `{from}`", n.name))
                        })?;
                    remote_recvs.push(RemoteRecv {
                        key: key.clone(),
                        address: inner.tasks[sender].address.clone(),
                        task: inner.tasks[sender].id.name(),
                    });
                }
            }
            let num_feeds = step.feeds.len();
            let mut feeds = Vec::new();
            let mut feed_positions = Vec::new();
            for (k, arg) in part.step.feeds[..num_feeds].iter().enumerate() {
                feeds.push(Feed {
                    arg_node: arg.map(|a| a.0),
                    name: names[k].clone(),
                });
                if arg.is_some() {
                    feed_positions.push(k);
                }
            }
            let request = RegisterGraphRequest {
                graph: g.to_bytes(),
                feeds,
                fetches: part
                    .step
                    .fetches
                    .iter()
                    .map(|o| OutputRef {
                        node: o.node.0,
                        index: o.index,
                    })
                    .collect(),
                targets: part.step.targets.iter().map(|t| t.0).collect(),
                remote_recvs,
                rendezvous_arg: part
                    .step
                    .feeds
                    .get(num_feeds)
                    .copied()
                    .flatten()
                    .map(|a| a.0),
            };
            let mut client = self.client(task).await?;
            let handle = client
                .register_graph(request)
                .await
                .map_err(|s| self.task_error(task, &s))?
                .into_inner()
                .handle;
            parts.push(RemotePart {
                task,
                handle,
                feeds: feed_positions,
                fetch_map: part.fetch_map,
                sends: g.nodes().iter().any(|n| n.op == "_Send"),
            });
        }
        Ok(Program {
            parts,
            num_fetches: key.fetches.len(),
        })
    }

    async fn client(&self, task: usize) -> Result<WorkerClient<Channel>> {
        let t = &self.inner.tasks[task];
        if let Some(c) = t.client.get() {
            return Ok(c.clone());
        }
        let c = connect(&t.address, &t.id.name(), &self.inner.options.channel).await?;
        Ok(t.client.get_or_init(|| c).clone())
    }

    fn task_error(&self, task: usize, s: &tonic::Status) -> Error {
        let t = &self.inner.tasks[task];
        let (task, address) = (t.id.name(), t.address.clone());
        match s.code() {
            // The connection broke or never came up: the task is gone.
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
                if std::error::Error::source(s).is_some() || s.message().is_empty() =>
            {
                Error::Unreachable {
                    task,
                    address,
                    message: status_text(s),
                }
            }
            code => Error::Task {
                task,
                address,
                code,
                message: status_text(s),
            },
        }
    }

    async fn execute(&self, program: &Program, feeds: &[&Tensor]) -> Result<Vec<Tensor>> {
        let inner = &self.inner;
        let step_id = inner.step_base | (inner.steps.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
        let mut set = tokio::task::JoinSet::new();
        for (i, part) in program.parts.iter().enumerate() {
            let request = RunGraphRequest {
                handle: part.handle,
                step_id,
                feeds: part
                    .feeds
                    .iter()
                    .map(|&k| tensor_to_proto(feeds[k]))
                    .collect::<Result<_>>()?,
            };
            let mut client = self.client(part.task).await?;
            set.spawn(async move { (i, client.run_graph(request).await) });
        }
        let mut results: Vec<Option<Result<Vec<Tensor>>>> =
            (0..program.parts.len()).map(|_| None).collect();
        let mut aborted = false;
        let deadline = inner
            .options
            .step_timeout
            .map(|d| tokio::time::Instant::now() + d);
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, set.join_next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        let e = invalid(
                            "step",
                            format!(
                                "the step did not finish within {:?}",
                                inner.options.step_timeout.unwrap_or_default()
                            ),
                        );
                        self.abort(program, step_id, &e).await;
                        set.abort_all();
                        return Err(e);
                    }
                },
                None => set.join_next().await,
            };
            let Some(joined) = next else { break };
            let (i, r) = joined.map_err(|e| invalid("step", e.to_string()))?;
            let task = program.parts[i].task;
            let r = match r {
                Ok(resp) => resp
                    .into_inner()
                    .fetches
                    .iter()
                    .map(|p| tensor_from_proto(p, "a fetched value"))
                    .collect::<Result<Vec<_>>>(),
                Err(s) => Err(self.task_error(task, &s)),
            };
            if let (Err(e), false) = (&r, aborted) {
                aborted = true;
                self.abort(program, step_id, e).await;
            }
            results[i] = Some(r);
        }
        self.cleanup(program, step_id, aborted).await;
        let results: Vec<Result<Vec<Tensor>>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(invalid("step", "a task did not report"))))
            .collect();
        // The first real error: a dead task, then any but the cancellations it caused.
        if let Some(e) = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .min_by_key(|e| match e {
                Error::Unreachable { .. } => 0,
                Error::Task { code, .. } if *code == tonic::Code::Cancelled => 2,
                _ => 1,
            })
        {
            return Err(e.clone());
        }
        let mut out: Vec<Option<Tensor>> = vec![None; program.num_fetches];
        for (part, r) in program.parts.iter().zip(results) {
            let mut fetched = r?;
            for &(global, local) in &part.fetch_map {
                let t = fetched
                    .get_mut(local)
                    .map(|t| std::mem::replace(t, Tensor::scalar(false)))
                    .ok_or_else(|| invalid("fetches", "a task returned too few values"))?;
                out[global] = Some(t);
            }
        }
        out.into_iter()
            .map(|t| t.ok_or_else(|| invalid("fetches", "a fetched value was not produced")))
            .collect()
    }

    /// Tells every task of the step to abort it (their waiting receives fail at once).
    async fn abort(&self, program: &Program, step_id: u64, cause: &Error) {
        let reason = format!("aborted because another task failed: {cause}");
        self.broadcast(program, step_id, &reason, true, true).await;
    }

    /// Drops the step's rendezvous on the tasks other tasks pulled values from (on every
    /// task after an abort, which may have made one).
    async fn cleanup(&self, program: &Program, step_id: u64, aborted: bool) {
        self.broadcast(program, step_id, "", false, aborted).await;
    }

    async fn broadcast(
        &self,
        program: &Program,
        step_id: u64,
        reason: &str,
        abort: bool,
        every_task: bool,
    ) {
        let mut set = tokio::task::JoinSet::new();
        for part in &program.parts {
            if !abort && !every_task && !part.sends {
                continue;
            }
            let Some(mut client) = self.inner.tasks[part.task].client.get().cloned() else {
                continue;
            };
            let request = StepRequest {
                step_id,
                reason: reason.to_string(),
            };
            let timeout = self.inner.options.channel.connect_timeout;
            set.spawn(async move {
                // Best effort, bounded: a dead task is reported by its RunGraph already.
                let call = async {
                    if abort {
                        client.abort_step(request).await.map(|_| ())
                    } else {
                        client.cleanup_step(request).await.map(|_| ())
                    }
                };
                let _ = tokio::time::timeout(timeout, call).await;
            });
        }
        while set.join_next().await.is_some() {}
    }
}
