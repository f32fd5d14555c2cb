//! The master's work for one graph over a cluster, asynchronous so that it runs inside the
//! master service (on the server's runtime) as well as inside a [`crate::ClusterSession`]
//! (on the session's own runtime).
//!
//! A step signature is pruned, optimized, placed over the tasks' devices (one CPU device per
//! task: `/job:J/replica:0/task:T/device:CPU:0`) and partitioned per task with
//! `tfr_core::placement`, each partition registered once with its task; the registered step is
//! cached per signature, so a repeated step is one `RunGraph` per task. A failing task aborts
//! the step on every other task; the step reports the first real error, naming the task.

pub use crate::cancel::CancelToken;
use crate::channel::ChannelOptions;
pub use crate::clients::{ClusterClients, TaskHealth};
use crate::error::{Error, Result};
use crate::mux::next_done;
use crate::proto::{
    DeregisterGraphRequest, Feed, OutputRef, RegisterGraphRequest, RemoteRecv, RemoteSend,
    RunGraphRequest, StepRequest,
};
use crate::wire::tensor_to_proto;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tfr_core::kernels::sendrecv_ops::is_frame_aware_transfer;
use tfr_core::passes::fold_constants;
use tfr_core::placement::{partition, place};
use tfr_core::Tensor;
use tfr_graph::fusion::fuse_ops;
use tfr_graph::passes::{eliminate_common_subexpressions, prune, remove_dead_nodes, StepGraph};
use tfr_graph::validate::validate;
use tfr_graph::{Graph, NodeId, Output};

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

/// Options of one step.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides the session's `step_timeout`.
    pub timeout: Option<Duration>,
    /// Cancels the step from another thread ([`CancelToken::cancel`]).
    pub cancel: Option<CancelToken>,
}

/// One task's share of a step, registered with it.
struct RemotePart {
    task: usize,
    handle: u64,
    /// Positions among the step's feeds of the partition's feeds, in order.
    feeds: Vec<usize>,
    /// (position among the step's fetches, position among this partition's fetches)
    fetch_map: Vec<(usize, usize)>,
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

/// The master of one graph over a cluster. `Send + Sync`.
pub struct MasterCore {
    graph: Graph,
    cluster: Arc<ClusterClients>,
    options: ClusterSessionOptions,
    cache: RwLock<HashMap<StepKey, Arc<Program>>>,
    /// Serializes compiling (and registering) a new signature.
    compiling: tokio::sync::Mutex<()>,
    /// Step ids: a random base per session, so two clients' steps differ on a shared task.
    step_base: u64,
    steps: Arc<AtomicU64>,
}

pub(crate) fn invalid(arg: &str, message: impl Into<String>) -> Error {
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

impl MasterCore {
    /// The master of `graph` (validated) over `cluster`.
    pub fn new(
        cluster: Arc<ClusterClients>,
        graph: &Graph,
        options: ClusterSessionOptions,
    ) -> Result<MasterCore> {
        validate(graph).map_err(tfr_core::Error::from)?;
        Ok(MasterCore {
            graph: graph.clone(),
            cluster,
            options,
            cache: RwLock::new(HashMap::new()),
            compiling: tokio::sync::Mutex::new(()),
            step_base: random_base(),
            steps: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The master of `graph`, which extends this master's graph: this graph's nodes come
    /// first in it, unchanged. Steps of this graph keep their registered partitions (pruning
    /// only follows inputs, so a signature of old nodes prunes to the same step).
    pub fn extend(&self, graph: &Graph) -> Result<MasterCore> {
        let old = self.graph.nodes();
        let new = graph.nodes();
        if new.len() < old.len() {
            return Err(invalid(
                "graph",
                format!(
                    "the extended graph has {} nodes, fewer than the session's {}",
                    new.len(),
                    old.len()
                ),
            ));
        }
        if let Some((a, b)) = old.iter().zip(new).find(|(a, b)| a != b) {
            return Err(invalid(
                "graph",
                format!(
                    "node `{}` ({}) of the session's graph is changed to `{}` ({}): an \
                     extension may only add nodes",
                    a.name, a.op, b.name, b.op
                ),
            ));
        }
        validate(graph).map_err(tfr_core::Error::from)?;
        let cache = self
            .cache
            .read()
            .map_err(|_| invalid("session", "cache lock poisoned"))?
            .clone();
        Ok(MasterCore {
            graph: graph.clone(),
            cluster: self.cluster.clone(),
            options: self.options.clone(),
            cache: RwLock::new(cache),
            compiling: tokio::sync::Mutex::new(()),
            step_base: self.step_base,
            steps: self.steps.clone(),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn cluster(&self) -> &Arc<ClusterClients> {
        &self.cluster
    }

    pub fn options(&self) -> &ClusterSessionOptions {
        &self.options
    }

    /// Runs the nodes `fetches` and `targets` need with `feeds`, over the cluster.
    pub async fn run(
        &self,
        feeds: &[(Output, &Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
        run: &RunOptions,
    ) -> Result<Vec<Tensor>> {
        let n = self.graph.len();
        let out_of_range = |what: &str, id: NodeId| {
            invalid(
                what,
                format!("node id {} is out of range: the graph has {n} nodes", id.0),
            )
        };
        for &(o, _) in feeds {
            if o.node.index() >= n {
                return Err(out_of_range("feeds", o.node));
            }
        }
        for o in fetches {
            if o.node.index() >= n {
                return Err(out_of_range("fetches", o.node));
            }
        }
        for &t in targets {
            if t.index() >= n {
                return Err(out_of_range("targets", t));
            }
        }
        let key = StepKey {
            feeds: feeds.iter().map(|f| f.0).collect(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        };
        let program = self.program(&key).await?;
        let values: Vec<&Tensor> = feeds.iter().map(|f| f.1).collect();
        let result = self.execute(&program, &values, run).await;
        if let Err(e) = &result {
            self.forget_after(&key, &program, e).await;
        }
        result
    }

    /// Resolves `"node"` / `"node:i"` names of this graph.
    pub fn resolve(
        &self,
        feeds: &[&str],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<(Vec<Output>, Vec<Output>, Vec<NodeId>)> {
        let g = &self.graph;
        let core = |e: tfr_graph::GraphError| Error::Core(e.into());
        let feeds = feeds
            .iter()
            .map(|n| g.output_by_name(n).map_err(core))
            .collect::<Result<Vec<_>>>()?;
        let fetches = fetches
            .iter()
            .map(|n| g.output_by_name(n).map_err(core))
            .collect::<Result<Vec<_>>>()?;
        let targets = targets
            .iter()
            .map(|n| g.node_by_name(n).map_err(core))
            .collect::<Result<Vec<_>>>()?;
        Ok((feeds, fetches, targets))
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
        let devices = &self.cluster.devices;
        let assignment = place(&step.graph, devices, self.options.soft_placement)?;
        Ok(step
            .graph
            .nodes()
            .iter()
            .zip(assignment)
            .map(|(n, d)| (n.name.clone(), devices[d].name()))
            .collect())
    }

    /// The number of step signatures registered with the tasks.
    pub fn cached_steps(&self) -> usize {
        self.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    /// Forgets every registered step, deregistering its partitions on their tasks (best
    /// effort, each call bounded by the connect timeout).
    pub async fn close(&self) {
        let programs: Vec<Arc<Program>> = match self.cache.write() {
            Ok(mut c) => c.drain().map(|(_, p)| p).collect(),
            Err(_) => return,
        };
        let mut handles: HashMap<usize, Vec<u64>> = HashMap::new();
        for p in &programs {
            for part in &p.parts {
                handles.entry(part.task).or_default().push(part.handle);
            }
        }
        self.deregister(handles).await;
    }

    async fn deregister(&self, handles: HashMap<usize, Vec<u64>>) {
        let timeout = self.options.channel.connect_timeout;
        let mut set = tokio::task::JoinSet::new();
        for (task, handles) in handles {
            let Some(mut client) = self.cluster.tasks[task].client.get().cloned() else {
                continue;
            };
            set.spawn(async move {
                let call = client.deregister_graph(DeregisterGraphRequest { handles });
                let _ = tokio::time::timeout(timeout, call).await;
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// After a step failed because a task died or lost its registered graphs (it was
    /// restarted), the signature is registered anew by the next step.
    async fn forget_after(&self, key: &StepKey, program: &Arc<Program>, e: &Error) {
        let lost = match e {
            Error::Unreachable { .. } => true,
            Error::Task { code, .. } => *code == tonic::Code::NotFound,
            _ => false,
        };
        if !lost {
            return;
        }
        let removed = match self.cache.write() {
            Ok(mut c) => match c.get(key) {
                Some(p) if Arc::ptr_eq(p, program) => c.remove(key),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(p) = removed {
            let mut handles: HashMap<usize, Vec<u64>> = HashMap::new();
            for part in &p.parts {
                handles.entry(part.task).or_default().push(part.handle);
            }
            self.deregister(handles).await;
        }
    }

    async fn program(&self, key: &StepKey) -> Result<Arc<Program>> {
        let cached = |s: &Self| s.cache.read().ok().and_then(|c| c.get(key).cloned());
        if let Some(p) = cached(self) {
            return Ok(p);
        }
        let _compiling = self.compiling.lock().await;
        if let Some(p) = cached(self) {
            return Ok(p);
        }
        let program = Arc::new(self.compile(key).await?);
        self.cache
            .write()
            .map_err(|_| invalid("session", "cache lock poisoned"))?
            .insert(key.clone(), program.clone());
        Ok(program)
    }

    fn optimized(&self, key: &StepKey) -> Result<StepGraph> {
        let g = &self.graph;
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
            &self.cluster.devices,
            self.options.soft_placement,
        )?;
        if self.options.optimize {
            eliminate_common_subexpressions(&mut step);
            fold_constants(&mut step)?;
            fuse_ops(&mut step);
            remove_dead_nodes(&mut step);
        }
        Ok(step)
    }

    /// The push route of frame-aware `_Send` node `n` of a partition on device `from`, when
    /// its receiver is on another task.
    fn remote_send(&self, n: &tfr_graph::Node, from: usize) -> Result<Option<RemoteSend>> {
        let cluster = &self.cluster;
        let attr = |name: &str| {
            n.attrs
                .string(name)
                .map_err(|e| invalid("graph", format!("node `{}`: {e}", n.name)))
        };
        let to = attr("recv_device")?;
        let receiver = cluster
            .devices
            .iter()
            .position(|d| &d.name() == to)
            .ok_or_else(|| invalid("graph", format!("node `{}`: no device `{to}`", n.name)))?;
        let (sender, receiver) = (&cluster.tasks[from], &cluster.tasks[receiver]);
        if sender.address == receiver.address {
            return Ok(None);
        }
        Ok(Some(RemoteSend {
            tensor_name: attr("tensor_name")?.clone(),
            address: receiver.address.clone(),
            task: receiver.id.name(),
        }))
    }

    /// Places and partitions a signature and registers each task's partition.
    async fn compile(&self, key: &StepKey) -> Result<Program> {
        let cluster = &self.cluster;
        let step = self.optimized(key)?;
        let assignment = place(&step.graph, &cluster.devices, self.options.soft_placement)?;
        let names: Vec<String> = key
            .feeds
            .iter()
            .map(|&o| self.graph.output_name(o))
            .collect();
        let mut parts: Vec<RemotePart> = Vec::new();
        for part in partition(&step, &assignment, &cluster.devices)? {
            let task = part.device;
            let g = &part.step.graph;
            let mut remote_recvs = Vec::new();
            let mut remote_sends = Vec::new();
            for n in g.nodes() {
                if is_frame_aware_transfer(n) {
                    // Keys are known only as the loop runs: the sender pushes each value to
                    // the receiving task, whose receive waits in its own rendezvous.
                    if n.op == "_Send" {
                        if let Some(send) = self.remote_send(n, task)? {
                            remote_sends.push(send);
                        }
                    }
                    continue;
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
                    let sender = cluster
                        .devices
                        .iter()
                        .position(|d| &d.name() == from)
                        .ok_or_else(|| {
                            invalid("graph", format!("node `{}`: no device `{from}`", n.name))
                        })?;
                    remote_recvs.push(RemoteRecv {
                        key: key.clone(),
                        address: cluster.tasks[sender].address.clone(),
                        task: cluster.tasks[sender].id.name(),
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
                remote_sends,
                rendezvous_arg: part
                    .step
                    .feeds
                    .get(num_feeds)
                    .copied()
                    .flatten()
                    .map(|a| a.0),
            };
            let registered = async {
                let mut client = cluster.client(task).await?;
                client
                    .register_graph(request)
                    .await
                    .map_err(|s| cluster.task_error(task, &s))
            }
            .await;
            let handle = match registered {
                Ok(r) => r.into_inner().handle,
                Err(e) => {
                    // Partitions registered so far would never be used.
                    let mut handles: HashMap<usize, Vec<u64>> = HashMap::new();
                    for p in &parts {
                        handles.entry(p.task).or_default().push(p.handle);
                    }
                    self.deregister(handles).await;
                    return Err(e);
                }
            };
            parts.push(RemotePart {
                task,
                handle,
                feeds: feed_positions,
                fetch_map: part.fetch_map,
            });
        }
        Ok(Program {
            parts,
            num_fetches: key.fetches.len(),
        })
    }

    async fn execute(
        &self,
        program: &Program,
        feeds: &[&Tensor],
        run: &RunOptions,
    ) -> Result<Vec<Tensor>> {
        let cluster = &self.cluster;
        let step_id = self.step_base | (self.steps.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
        if run.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(Error::Cancelled(
                "the step was cancelled before it started".into(),
            ));
        }
        // Every task's request goes out before any answer is awaited: one message per task
        // on its RunGraph stream.
        let mut calls = Vec::with_capacity(program.parts.len());
        for part in &program.parts {
            let request = RunGraphRequest {
                handle: part.handle,
                step_id,
                feeds: part
                    .feeds
                    .iter()
                    .map(|&k| tensor_to_proto(feeds[k]))
                    .collect::<Result<_>>()?,
            };
            match cluster.start_run_graph(part.task, request).await {
                Ok(call) => calls.push(Some(call)),
                Err(e) => {
                    calls.clear();
                    self.abort(program, step_id, &e).await;
                    return Err(e);
                }
            }
        }
        let mut results: Vec<Option<Result<Vec<Tensor>>>> =
            (0..program.parts.len()).map(|_| None).collect();
        let mut aborted = false;
        let timeout = run.timeout.or(self.options.step_timeout);
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        loop {
            let stopped = tokio::select! {
                next = next_done(&mut calls) => match next {
                    Some((i, answer)) => {
                        let r = cluster.run_result(program.parts[i].task, answer);
                        if let (Err(e), false) = (&r, aborted) {
                            aborted = true;
                            self.abort(program, step_id, e).await;
                        }
                        results[i] = Some(r);
                        None
                    }
                    None => break,
                },
                _ = sleep_until(deadline) => {
                    let running = self.running(program, &results);
                    Some(Error::DeadlineExceeded(format!(
                        "the step did not finish within {:?}; still running on {running}",
                        timeout.unwrap_or_default()
                    )))
                }
                _ = cancelled(run.cancel.as_ref()) => {
                    let running = self.running(program, &results);
                    Some(Error::Cancelled(format!(
                        "the step was cancelled while running on {running}"
                    )))
                }
            };
            if let Some(e) = stopped {
                calls.clear();
                self.abort(program, step_id, &e).await;
                return Err(e);
            }
        }
        // No cleanup: each task ends the step itself once its run ended and its sent values
        // were taken (and on a failure every task was told to abort it).
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

    /// The tasks (and addresses) whose part of the step has not reported yet.
    fn running(&self, program: &Program, results: &[Option<Result<Vec<Tensor>>>]) -> String {
        let names: Vec<String> = program
            .parts
            .iter()
            .zip(results)
            .filter(|(_, r)| r.is_none())
            .map(|(p, _)| {
                let t = &self.cluster.tasks[p.task];
                format!("{} at {}", t.id.name(), t.address)
            })
            .collect();
        names.join(", ")
    }

    /// Tells every task of the step to abort it: their waiting receives fail at once and
    /// they drop the step (a later message of it fails at once too).
    async fn abort(&self, program: &Program, step_id: u64, cause: &Error) {
        let reason = format!("aborted because another task failed: {cause}");
        self.broadcast(program, step_id, &reason).await;
    }

    async fn broadcast(&self, program: &Program, step_id: u64, reason: &str) {
        let mut set = tokio::task::JoinSet::new();
        for part in &program.parts {
            let Some(mut client) = self.cluster.tasks[part.task].client.get().cloned() else {
                continue;
            };
            let request = StepRequest {
                step_id,
                reason: reason.to_string(),
            };
            let timeout = self.options.channel.connect_timeout;
            set.spawn(async move {
                // Best effort, bounded: a dead task is reported by its RunGraph already.
                let _ = tokio::time::timeout(timeout, client.abort_step(request)).await;
            });
        }
        while set.join_next().await.is_some() {}
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn cancelled(token: Option<&CancelToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}
