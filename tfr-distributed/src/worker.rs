//! The worker service of a task: registered partition graphs (built into executables once),
//! per-step rendezvous, and the task's resource manager, whose variables outlive every client
//! session (several clients share a `ps` task's variables).
//!
//! A step's partition on this task runs in `RunGraph` (unary, or a message of the master's
//! `RunGraphStream`). Its `_Recv` kernels read the task's local rendezvous for the step; for
//! each key another task produces, the [`crate::worker_rpc::RemoteRendezvous`] asks that task
//! (`RecvTensors`, or `RecvTensor` for large values) and puts the value in the local
//! rendezvous. A partition whose only waits are such values and which sends nothing fetches
//! them first and then runs without waiting (in place when it is short). The values this
//! task's `_Send`s produce for peers go to the step's outbox ([`crate::steps`]), where a
//! peer's pull takes them without a blocking thread. Inside loops and conds keys carry the
//! frame instance and iteration and are known only as the step runs: there the sender pushes
//! instead, a forwarder on its step's rendezvous sending each value (or "dead") whose receiver
//! is elsewhere with `PushTensor`, which puts it into the receiving task's rendezvous. A task
//! ends a step itself once its partition's run ended and peers took every value it sent (at
//! once, when it sends none); a failed or aborted step ends at once (`AbortStep`).

use crate::cancel::CancelToken;
use crate::channel::{
    connect_auth, source_chain, worker_client, AuthChannel, ChannelOptions, WorkerConn,
};
use crate::error::{code_to_status, Error};
use crate::mux::{Answer, Mux};
use crate::proto::{
    PushTensorRequest, RecvTensorsRequest, RecvTensorsResponse, RegisterGraphRequest, RemoteRecv,
    RemoteSend, RunGraphRequest,
};
use crate::steps::{StepState, Take, Taken};
use crate::wire::{tensor_from_proto, tensor_to_chunks, tensor_to_proto, RecvBuffers};
use crate::worker_rpc::RemoteRendezvous;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tfr_core::error::Code;
use tfr_core::kernels::data_flow_ops::step_may_block;
use tfr_core::kernels::sendrecv_ops::is_frame_aware_transfer;
use tfr_core::rendezvous::{Forwarder, LocalRendezvous, Received, Rendezvous};
use tfr_core::resource::ResourceMgr;
use tfr_core::{Executable, KernelError, Tensor};
use tfr_graph::passes::StepGraph;
use tfr_graph::{Graph, NodeId, Output};
use tonic::Status;

/// A registered partition: its executable, built once.
pub(crate) struct Registered {
    exec: Executable,
    /// The step's feeds; those the partition does not use get a placeholder value.
    num_feeds: usize,
    feed_names: Vec<String>,
    /// Positions of the feeds the partition uses: RunGraph carries their values, in order.
    used_feeds: Vec<usize>,
    /// The partition takes the step's rendezvous handle as its last feed.
    has_rendezvous: bool,
    /// Keys of the values other tasks pull from this partition (its non-frame-aware
    /// `_Send`s): they go to the step's outbox, and the step stays until they are taken.
    send_keys: Arc<HashSet<String>>,
    /// The partition has `_Recv`s (it may wait on other tasks).
    receives: bool,
    /// Its only waits are the values of `remote_recvs` and it sends nothing: the values are
    /// fetched first and the partition then runs without waiting.
    fetch_first: bool,
    remote_recvs: Vec<RemoteRecv>,
    /// Frame-aware sends to other tasks (their values are pushed).
    pushes: bool,
    /// It holds an op that may wait for another step (a queue op, an accumulator's take):
    /// it never runs in place, where it would hold up the other requests of its stream.
    may_block: bool,
    /// How long the last run took (µs; at first, as if long).
    last_run_us: AtomicU64,
}

impl Registered {
    /// A partition that cannot wait on other tasks and whose last run took less runs on the
    /// runtime's thread.
    const INLINE_MAX_US: u64 = 500;

    fn short(&self) -> bool {
        !self.may_block && self.last_run_us.load(Ordering::Relaxed) < Self::INLINE_MAX_US
    }
}

/// The clients' side of the `RecvTensors` stream to a peer.
type RecvMux = Mux<RecvTensorsRequest, RecvTensorsResponse>;

/// The state of one task's worker service.
pub struct WorkerState {
    pub(crate) task: String,
    pub(crate) resources: ResourceMgr,
    pub(crate) graphs: RwLock<HashMap<u64, Arc<Registered>>>,
    next_handle: AtomicU64,
    pub(crate) steps: Mutex<HashMap<u64, Arc<StepState>>>,
    /// Steps that ended or were aborted here, most recent last: a late `RunGraph` or
    /// `RecvTensor` of one fails at once instead of waiting for values nobody will send.
    ended: Mutex<EndedSteps>,
    /// Clients of peers' worker services and their channels, by address.
    peers: Mutex<HashMap<String, (WorkerConn, AuthChannel)>>,
    /// `RecvTensors` streams to peers, by address.
    peer_streams: Mutex<HashMap<String, Arc<RecvMux>>>,
    /// Where the values of frame-aware sends go, by tensor name (the name ends with the
    /// receiving device, so one name has one route whichever graph registered it).
    push_routes: RwLock<HashMap<String, RemoteSend>>,
    pub(crate) tensors_sent: AtomicU64,
    pub(crate) chunks_sent: AtomicU64,
    pub(crate) channel: ChannelOptions,
    /// Large tensors received from peers, kept for the next ones of their size.
    pub(crate) recv_buffers: Arc<RecvBuffers>,
    /// Cancelled when the server shuts down: open streams end (see `mux::Answers`).
    pub(crate) closing: CancelToken,
}

/// The most recent ended step ids (a bounded memory: step ids never repeat).
#[derive(Default)]
struct EndedSteps {
    order: std::collections::VecDeque<u64>,
    set: std::collections::HashSet<u64>,
}

impl EndedSteps {
    const CAPACITY: usize = 1 << 16;

    fn insert(&mut self, step_id: u64) {
        if self.set.insert(step_id) {
            self.order.push_back(step_id);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The service tonic serves; cheap to clone.
#[derive(Clone)]
pub struct WorkerService {
    pub(crate) state: Arc<WorkerState>,
}

pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// The resource-manager key of a step's rendezvous (fed to `_Send`/`_Recv` as their handle).
fn rendezvous_key(step_id: u64) -> String {
    format!("_rendezvous/remote/{step_id:x}")
}

/// What a run of a partition gives: its fetched values, or the error of the call.
pub(crate) type RunResult = Result<Vec<Tensor>, Status>;

impl WorkerService {
    /// The worker service of task `task` (e.g. `/job:ps/task:0`).
    pub fn new(task: &str, channel: ChannelOptions) -> WorkerService {
        WorkerService {
            state: Arc::new(WorkerState {
                task: task.to_string(),
                resources: ResourceMgr::default(),
                graphs: RwLock::new(HashMap::new()),
                next_handle: AtomicU64::new(1),
                steps: Mutex::new(HashMap::new()),
                ended: Mutex::new(EndedSteps::default()),
                peers: Mutex::new(HashMap::new()),
                peer_streams: Mutex::new(HashMap::new()),
                push_routes: RwLock::new(HashMap::new()),
                tensors_sent: AtomicU64::new(0),
                chunks_sent: AtomicU64::new(0),
                channel,
                recv_buffers: Arc::default(),
                closing: CancelToken::new(),
            }),
        }
    }

    /// The task's resources (its variables).
    pub fn resources(&self) -> &ResourceMgr {
        &self.state.resources
    }

    /// Ends the service's open streams (the server is shutting down).
    pub fn close_streams(&self) {
        self.state.closing.cancel();
    }
}

impl WorkerState {
    pub(crate) fn internal(&self, what: &str) -> Status {
        Status::internal(format!("{what} lock poisoned on {}", self.task))
    }

    /// The state of `step_id`, made on first use (a peer may ask for a value before this
    /// task's `RunGraph` of the step arrives).
    pub(crate) fn step(&self, step_id: u64) -> Result<Arc<StepState>, Status> {
        let mut steps = self.steps.lock().map_err(|_| self.internal("steps"))?;
        if let Some(r) = steps.get(&step_id) {
            return Ok(r.clone());
        }
        if self
            .ended
            .lock()
            .map_err(|_| self.internal("ended steps"))?
            .set
            .contains(&step_id)
        {
            return Err(Status::cancelled(format!(
                "step {step_id:#x} already ended or was aborted on {}",
                self.task
            )));
        }
        // No partition count: a partition waiting on a remote value is no deadlock here.
        let r = Arc::new(LocalRendezvous::default());
        self.resources
            .insert_state(&rendezvous_key(step_id), r.clone())
            .map_err(|e| Status::internal(e.message))?;
        let step = Arc::new(StepState::new(r));
        steps.insert(step_id, step.clone());
        Ok(step)
    }

    pub(crate) fn end_step(&self, step_id: u64, why: &str) {
        // Marked ended under the steps lock: `step` cannot make it anew meanwhile.
        let removed = self.steps.lock().ok().and_then(|mut s| {
            if let Ok(mut ended) = self.ended.lock() {
                ended.insert(step_id);
            }
            s.remove(&step_id)
        });
        if let Some(step) = removed {
            self.resources.remove_state(&rendezvous_key(step_id));
            // Wakes a receive still waiting (a peer that will never ask).
            step.rendezvous.abort(KernelError {
                code: Code::Cancelled,
                message: why.to_string(),
            });
            step.end(why);
        }
    }

    /// A client of the worker service of the peer at `address` (connected on first use).
    pub(crate) async fn peer(&self, address: &str, task: &str) -> Result<WorkerConn, Error> {
        Ok(self.peer_entry(address, task).await?.0)
    }

    /// The channel to the peer at `address`, for calls made without tonic's codec (see
    /// [`crate::zero_copy`]).
    pub(crate) async fn peer_channel(
        &self,
        address: &str,
        task: &str,
    ) -> Result<AuthChannel, Error> {
        Ok(self.peer_entry(address, task).await?.1)
    }

    async fn peer_entry(
        &self,
        address: &str,
        task: &str,
    ) -> Result<(WorkerConn, AuthChannel), Error> {
        if let Some(c) = self.peers.lock().ok().and_then(|p| p.get(address).cloned()) {
            return Ok(c);
        }
        let channel = connect_auth(address, task, &self.channel).await?;
        let entry = (worker_client(channel.clone(), &self.channel), channel);
        if let Ok(mut p) = self.peers.lock() {
            p.insert(address.to_string(), entry.clone());
        }
        Ok(entry)
    }

    /// The `RecvTensors` stream to the peer at `address` (opened anew when it broke).
    pub(crate) async fn peer_stream(
        &self,
        address: &str,
        task: &str,
    ) -> Result<Arc<RecvMux>, Error> {
        let open = self
            .peer_streams
            .lock()
            .ok()
            .and_then(|p| p.get(address).cloned())
            .filter(|m| !m.is_closed());
        if let Some(m) = open {
            return Ok(m);
        }
        let mut client = self.peer(address, task).await?;
        let mux = Arc::new(Mux::open("RecvTensors", move |requests| async move {
            client
                .recv_tensors(requests)
                .await
                .map(tonic::Response::into_inner)
        }));
        if let Ok(mut p) = self.peer_streams.lock() {
            p.insert(address.to_string(), mux.clone());
        }
        Ok(mux)
    }

    /// Pulls the values of `recvs` of `step_id` from the tasks that produce them into
    /// `local`; a failure aborts the step here with an error naming that task.
    async fn fetch_into(
        self: &Arc<Self>,
        step_id: u64,
        local: &Arc<LocalRendezvous>,
        recvs: &[RemoteRecv],
    ) {
        let deliver = |key: &str, r: Result<Tensor, KernelError>| match r {
            Ok(t) => {
                let _ = local.send_value(key, Some(t));
            }
            Err(e) => local.abort(e),
        };
        if let [recv] = recvs {
            let remote = RemoteRendezvous {
                state: self,
                step_id,
            };
            deliver(&recv.key, remote.fetch(recv).await);
            return;
        }
        let mut set = tokio::task::JoinSet::new();
        for recv in recvs {
            let (state, recv) = (self.clone(), recv.clone());
            set.spawn(async move {
                let remote = RemoteRendezvous {
                    state: &state,
                    step_id,
                };
                let r = remote.fetch(&recv).await;
                (recv.key, r)
            });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok((key, r)) = joined {
                deliver(&key, r);
            }
        }
    }

    /// The forwarder of `step`'s rendezvous: a value the partition sends for a peer to pull
    /// goes to the step's outbox; one whose tensor name has a push route is pushed to its
    /// task (in the background; a failure aborts the step here).
    fn forwarder(
        self: &Arc<Self>,
        step_id: u64,
        step: &Arc<StepState>,
        sends: Arc<HashSet<String>>,
    ) -> Forwarder {
        let state = self.clone();
        let runtime = tokio::runtime::Handle::current();
        // Weak: the step owns its rendezvous, which owns its forwarder.
        let step = Arc::downgrade(step);
        Arc::new(move |key: &str, value: Received| {
            if sends.contains(key) {
                let Some(s) = step.upgrade() else {
                    return Err(value);
                };
                if s.put(key, value) {
                    state.end_step(step_id, "the step ended");
                }
                return Ok(());
            }
            // `tensor;frame;iteration` (see `tfr_core::kernels::sendrecv_ops::transfer_key`).
            let name = key.rsplitn(3, ';').last().unwrap_or(key);
            let route = state
                .push_routes
                .read()
                .ok()
                .and_then(|r| r.get(name).cloned());
            let Some(route) = route else {
                return Err(value);
            };
            let (state, step, key) = (state.clone(), step.clone(), key.to_string());
            runtime.spawn(async move {
                if let Err(e) = state.push(step_id, &route, key, value).await {
                    if let Some(s) = step.upgrade() {
                        s.rendezvous.abort(e);
                    }
                }
            });
            Ok(())
        })
    }

    /// Pushes the value of `key` (`None`: dead) to the task of `route`.
    async fn push(
        &self,
        step_id: u64,
        route: &RemoteSend,
        key: String,
        value: Received,
    ) -> Result<(), KernelError> {
        let fail = |m: String| KernelError {
            code: Code::Internal,
            message: format!(
                "pushing `{key}` to {} at {}: {m}",
                route.task, route.address
            ),
        };
        let tensor = value
            .as_ref()
            .map(tensor_to_proto)
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let mut client = self
            .peer(&route.address, &route.task)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let request = PushTensorRequest {
            step_id,
            key: key.clone(),
            tensor,
        };
        match client.push_tensor(request).await {
            Ok(_) => Ok(()),
            // The receiver's step ended: it needed no more values (a receive that was dead
            // by its control inputs does not wait for its key).
            Err(s) if s.code() == tonic::Code::Cancelled => Ok(()),
            Err(s) => Err(fail(status_text(&s))),
        }
    }

    pub(crate) fn register(&self, req: RegisterGraphRequest) -> Result<u64, Status> {
        let graph = Graph::from_bytes(&req.graph).map_err(|e| {
            invalid(format!(
                "the partition graph for {} does not load: {e}",
                self.task
            ))
        })?;
        let n = graph.len();
        let node = |id: u32, what: &str| -> Result<NodeId, Status> {
            if (id as usize) < n {
                Ok(NodeId(id))
            } else {
                Err(invalid(format!(
                    "{what} names node {id}, but the graph has {n} nodes"
                )))
            }
        };
        let mut feeds = Vec::new();
        let mut names = Vec::new();
        for f in &req.feeds {
            feeds.push(f.arg_node.map(|a| node(a, "a feed")).transpose()?);
            names.push(f.name.clone());
        }
        let used: Vec<usize> = (0..feeds.len()).filter(|&k| feeds[k].is_some()).collect();
        if let Some(h) = req.rendezvous_arg {
            feeds.push(Some(node(h, "the rendezvous feed")?));
            names.push("rendezvous".into());
        }
        for (id, what) in feeds.iter().zip(&names) {
            let Some(id) = id else { continue };
            if graph.node(*id).op != "_Arg" {
                return Err(invalid(format!(
                    "feed `{what}` names node `{}` ({}), not an `_Arg`",
                    graph.node(*id).name,
                    graph.node(*id).op
                )));
            }
        }
        let fetches = req
            .fetches
            .iter()
            .map(|f| {
                let id = node(f.node, "a fetch")?;
                if f.index as usize >= graph.node(id).outputs.len() {
                    return Err(invalid(format!(
                        "fetch `{}:{}`: the node has {} outputs",
                        graph.node(id).name,
                        f.index,
                        graph.node(id).outputs.len()
                    )));
                }
                Ok(Output {
                    node: id,
                    index: f.index,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let targets = req
            .targets
            .iter()
            .map(|&t| node(t, "a target"))
            .collect::<Result<Vec<_>, Status>>()?;
        let tensor_name = |n: &tfr_graph::Node| n.attrs.string("tensor_name").ok().cloned();
        let send_keys: HashSet<String> = graph
            .nodes()
            .iter()
            .filter(|n| n.op == "_Send" && !is_frame_aware_transfer(n))
            .filter_map(tensor_name)
            .collect();
        let recvs: Vec<&tfr_graph::Node> =
            graph.nodes().iter().filter(|n| n.op == "_Recv").collect();
        let remote_keys: HashSet<&str> = req.remote_recvs.iter().map(|r| r.key.as_str()).collect();
        let all_recvs_fetched = recvs.iter().all(|&n| {
            !is_frame_aware_transfer(n)
                && tensor_name(n).is_some_and(|k| remote_keys.contains(k.as_str()))
        });
        let receives = !recvs.is_empty();
        let may_block = step_may_block(&graph)
            || graph
                .nodes()
                .iter()
                .any(|n| n.op == "AccumulatorTakeGradient");
        let fetch_first =
            receives && all_recvs_fetched && send_keys.is_empty() && req.remote_sends.is_empty();
        {
            let mut routes = self
                .push_routes
                .write()
                .map_err(|_| self.internal("push routes"))?;
            for send in &req.remote_sends {
                routes.insert(send.tensor_name.clone(), send.clone());
            }
        }
        let step = StepGraph {
            origin: vec![None; n],
            graph,
            feeds,
            fetches,
            targets,
        };
        // A partition runs its nodes in order (see `tfr_core::placement`): one thread.
        let num_feeds = req.feeds.len();
        let exec = Executable::build(&step, &names, 1)
            .map_err(|e| invalid(format!("the partition graph for {}: {e}", self.task)))?;
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.graphs
            .write()
            .map_err(|_| self.internal("graphs"))?
            .insert(
                handle,
                Arc::new(Registered {
                    exec,
                    num_feeds,
                    feed_names: names[..num_feeds].to_vec(),
                    used_feeds: used,
                    has_rendezvous: req.rendezvous_arg.is_some(),
                    send_keys: Arc::new(send_keys),
                    receives,
                    fetch_first,
                    remote_recvs: req.remote_recvs,
                    pushes: !req.remote_sends.is_empty(),
                    may_block,
                    last_run_us: AtomicU64::new(u64::MAX),
                }),
            );
        Ok(handle)
    }

    /// The registered partition of `req` and its feeds.
    fn prepare(&self, req: &RunGraphRequest) -> Result<(Arc<Registered>, Vec<Tensor>), Status> {
        let reg = self
            .graphs
            .read()
            .map_err(|_| self.internal("graphs"))?
            .get(&req.handle)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no graph is registered under handle {} on {} (was the task restarted?)",
                    req.handle, self.task
                ))
            })?;
        if req.feeds.len() != reg.used_feeds.len() {
            return Err(invalid(format!(
                "the registered graph takes {} feeds, the request has {}",
                reg.used_feeds.len(),
                req.feeds.len()
            )));
        }
        // An unused feed's executable type is the default (f32, any shape): fill it so.
        let mut feeds = vec![Tensor::scalar(0.0f32); reg.num_feeds];
        for (&k, p) in reg.used_feeds.iter().zip(&req.feeds) {
            let name = &reg.feed_names[k];
            feeds[k] = tensor_from_proto(p, &format!("feed `{name}`"))
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok((reg, feeds))
    }

    /// Runs a partition: in place, or (`off_thread`, for one that may wait on other tasks or
    /// ran long) under `block_in_place`, so the thread's other work moves to another thread.
    fn execute(&self, reg: &Registered, feeds: &[Tensor], off_thread: bool) -> RunResult {
        let go = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reg.exec.run(feeds, &self.resources, None)
            }))
        };
        let started = std::time::Instant::now();
        let result = if off_thread {
            tokio::task::block_in_place(go)
        } else {
            go()
        };
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        reg.last_run_us.store(took, Ordering::Relaxed);
        result
            .unwrap_or_else(|_| {
                Err(tfr_core::Error::InvalidArgument {
                    arg: "step".into(),
                    message: "the partition panicked".into(),
                })
            })
            .map_err(|e| Status::new(code_to_status(e.code()), e.to_string()))
    }

    /// After a run with the step's rendezvous: a failure aborts the step here; a success
    /// ends it when peers took every value it sent already.
    fn finish(&self, reg: &Registered, step_id: u64, step: &StepState, r: RunResult) -> RunResult {
        match &r {
            Err(e) => {
                step.rendezvous.abort(KernelError {
                    code: Code::Internal,
                    message: format!("{} (on {})", e.message(), self.task),
                });
                self.end_step(step_id, "the step ended");
            }
            Ok(_) => {
                if step.ran(&reg.send_keys) {
                    self.end_step(step_id, "the step ended");
                }
            }
        }
        r
    }

    /// Starts the run `req`: a short partition that cannot wait on other tasks runs at once;
    /// any other gives a future (fetching its remote values first when it only waits on
    /// those).
    pub(crate) fn start_run(self: &Arc<Self>, req: RunGraphRequest) -> Answer<RunResult> {
        let (reg, mut feeds) = match self.prepare(&req) {
            Ok(p) => p,
            Err(s) => return Answer::Now(Err(s)),
        };
        let step_id = req.step_id;
        if !reg.has_rendezvous {
            if reg.short() {
                return Answer::Now(self.execute(&reg, &feeds, false));
            }
            let state = self.clone();
            return Answer::Later(Box::pin(async move { state.execute(&reg, &feeds, true) }));
        }
        let step = match self.step(step_id) {
            Ok(s) => s,
            Err(e) => return Answer::Now(Err(e)),
        };
        if !reg.send_keys.is_empty() || reg.pushes {
            let forward = self.forwarder(step_id, &step, reg.send_keys.clone());
            step.rendezvous.set_forwarder(forward);
        }
        feeds.push(Tensor::scalar(rendezvous_key(step_id)));
        if !reg.receives && reg.short() {
            let r = self.execute(&reg, &feeds, false);
            return Answer::Now(self.finish(&reg, step_id, &step, r));
        }
        let state = self.clone();
        Answer::Later(Box::pin(async move {
            let local = &step.rendezvous;
            if reg.fetch_first {
                // Every value arrives (or the step is aborted) before the partition runs,
                // so it does not wait: a short one runs in place.
                tokio::select! {
                    _ = state.fetch_into(step_id, local, &reg.remote_recvs) => {}
                    _ = step.ended.cancelled() => {}
                }
                let r = state.execute(&reg, &feeds, !reg.short());
                return state.finish(&reg, step_id, &step, r);
            }
            for recv in &reg.remote_recvs {
                let (state, local, recv) = (state.clone(), local.clone(), recv.clone());
                tokio::spawn(async move {
                    state
                        .fetch_into(step_id, &local, std::slice::from_ref(&recv))
                        .await
                });
            }
            let r = state.execute(&reg, &feeds, true);
            state.finish(&reg, step_id, &step, r)
        }))
    }

    /// Takes the value of `key` of `step_id` that a peer pulls (at most `max` bytes, when
    /// given), waiting for the partition to send it.
    pub(crate) async fn take_sent(
        &self,
        step_id: u64,
        key: &str,
        max: Option<usize>,
    ) -> Result<Taken, Status> {
        let step = self.step(step_id)?;
        let (take, complete) = step.take(key, max);
        if complete {
            self.end_step(step_id, "the step ended");
        }
        Ok(match take {
            Take::Now(t) => t,
            Take::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| Taken::Ended("the step ended".into())),
        })
    }

    /// The value a pull got, or the pull's error.
    pub(crate) fn pulled(&self, key: &str, taken: Taken) -> Result<Tensor, Status> {
        match taken {
            Taken::Value(Some(t)) => Ok(t),
            Taken::Value(None) => Err(Status::internal(format!(
                "`{key}` arrived dead outside control flow (the partitioner marks transfers \
                 of graphs with control flow)"
            ))),
            Taken::Ended(why) => Err(Status::cancelled(format!(
                "step aborted while receiving `{key}` on {}: {why}",
                self.task
            ))),
            Taken::TooLarge => Err(Status::internal(format!("`{key}` is too large"))),
        }
    }

    /// Answers one receive of the `RecvTensors` stream.
    pub(crate) fn answer_recv(
        self: &Arc<Self>,
        q: RecvTensorsRequest,
    ) -> Answer<RecvTensorsResponse> {
        let (id, step_id, key) = (q.id, q.step_id, q.key);
        let max = usize::try_from(q.max_bytes).unwrap_or(usize::MAX);
        let step = match self.step(step_id) {
            Ok(s) => s,
            Err(e) => return Answer::Now(self.recv_answer(id, &key, Err(e))),
        };
        let (take, complete) = step.take(&key, Some(max));
        if complete {
            self.end_step(step_id, "the step ended");
        }
        match take {
            Take::Now(t) => Answer::Now(self.recv_answer(id, &key, Ok(t))),
            Take::Wait(rx) => {
                let state = self.clone();
                Answer::Later(Box::pin(async move {
                    let t = rx
                        .await
                        .unwrap_or_else(|_| Taken::Ended("the step ended".into()));
                    state.recv_answer(id, &key, Ok(t))
                }))
            }
        }
    }

    /// The answer of the `RecvTensors` stream to receive `id` of `key`.
    fn recv_answer(&self, id: u64, key: &str, taken: Result<Taken, Status>) -> RecvTensorsResponse {
        let mut response = RecvTensorsResponse {
            id,
            ..RecvTensorsResponse::default()
        };
        let value = match taken {
            Ok(Taken::TooLarge) => {
                response.too_large = true;
                return response;
            }
            Ok(t) => self.pulled(key, t),
            Err(s) => Err(s),
        };
        // Small enough for one message: one chunk sharing the tensor's buffer.
        let chunk = value.and_then(|t| {
            tensor_to_chunks(&t, usize::MAX)
                .map_err(|e| invalid(e.to_string()))?
                .pop()
                .ok_or_else(|| Status::internal("no chunk"))
        });
        match chunk {
            Ok(c) => {
                self.tensors_sent.fetch_add(1, Ordering::Relaxed);
                self.chunks_sent.fetch_add(1, Ordering::Relaxed);
                response.value = Some(c);
            }
            Err(s) => {
                response.code = s.code() as i32;
                response.message = s.message().to_string();
            }
        }
        response
    }
}

/// A status's message, or its code and transport cause when it has no message.
pub fn status_text(s: &Status) -> String {
    if s.message().is_empty() {
        format!("{:?}: {}", s.code(), source_chain(s))
    } else {
        match std::error::Error::source(s) {
            Some(cause) => format!("{}: {}", s.message(), source_chain(cause)),
            None => s.message().to_string(),
        }
    }
}
