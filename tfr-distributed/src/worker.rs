//! The worker service of a task: registered partition graphs (built into executables once),
//! per-step rendezvous, and the task's resource manager, whose variables outlive every client
//! session (several clients share a `ps` task's variables).
//!
//! A step's partition on this task runs in `RunGraph`. Its `_Recv` kernels read the task's
//! local rendezvous for the step; for each key another task produces, the [`RemoteRendezvous`]
//! asks that task's `RecvTensor` when the step starts and puts the value in the local
//! rendezvous. `RecvTensor` waits on the local rendezvous for the key this task's `_Send`
//! produces. Inside loops and conds keys carry the frame instance and iteration and are known
//! only as the step runs: there the sender pushes instead, a forwarder on its step's rendezvous
//! sending each value (or "dead") whose receiver is elsewhere with `PushTensor`, which puts it
//! into the receiving task's rendezvous. A step whose partition sends nothing is cleaned up when `RunGraph` ends; other
//! steps when the client says `CleanupStep` (after every task has run, so all values were
//! pulled).

use crate::channel::{connect, source_chain, ChannelOptions, WorkerConn};
use crate::error::{code_to_status, Error};
use crate::proto::worker_server::Worker;
use crate::proto::{
    DeregisterGraphRequest, Empty, PushTensorRequest, RecvTensorChunk, RecvTensorRequest,
    RegisterGraphRequest, RegisterGraphResponse, RemoteRecv, RemoteSend, RunGraphRequest,
    RunGraphResponse, StatusResponse, StepRequest,
};
use crate::wire::{
    tensor_from_proto, tensor_to_chunks, tensor_to_proto, ChunkAssembler, RecvBuffers,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tfr_core::error::Code;
use tfr_core::rendezvous::{Forwarder, LocalRendezvous, Received, Rendezvous};
use tfr_core::resource::ResourceMgr;
use tfr_core::{Executable, KernelError, Tensor};
use tfr_graph::passes::StepGraph;
use tfr_graph::{Graph, NodeId, Output};
use tonic::{Request, Response, Status};

/// A registered partition: its executable, built once.
struct Registered {
    exec: Executable,
    /// The step's feeds; those the partition does not use get a placeholder value.
    num_feeds: usize,
    feed_names: Vec<String>,
    /// Positions of the feeds the partition uses: RunGraph carries their values, in order.
    used_feeds: Vec<usize>,
    /// The partition takes the step's rendezvous handle as its last feed.
    has_rendezvous: bool,
    /// Other tasks pull values from this partition: keep the step until `CleanupStep`.
    has_sends: bool,
    remote_recvs: Vec<RemoteRecv>,
    /// Frame-aware sends to other tasks (their values are pushed).
    pushes: bool,
    /// How long the last run took (µs; at first, as if long).
    last_run_us: AtomicU64,
}

impl Registered {
    /// A self-contained partition whose last run took less runs on the runtime's thread.
    const INLINE_MAX_US: u64 = 500;
}

/// The state of one task's worker service.
pub struct WorkerState {
    task: String,
    resources: ResourceMgr,
    graphs: RwLock<HashMap<u64, Arc<Registered>>>,
    next_handle: AtomicU64,
    steps: Mutex<HashMap<u64, Arc<LocalRendezvous>>>,
    /// Steps that ended or were aborted here, most recent last: a late `RunGraph` or
    /// `RecvTensor` of one fails at once instead of waiting for values nobody will send.
    ended: Mutex<EndedSteps>,
    peers: Mutex<HashMap<String, WorkerConn>>,
    /// Where the values of frame-aware sends go, by tensor name (the name ends with the
    /// receiving device, so one name has one route whichever graph registered it).
    push_routes: RwLock<HashMap<String, RemoteSend>>,
    tensors_sent: AtomicU64,
    chunks_sent: AtomicU64,
    channel: ChannelOptions,
    /// Large tensors received from peers, kept for the next ones of their size.
    recv_buffers: Arc<RecvBuffers>,
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
    state: Arc<WorkerState>,
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// The resource-manager key of a step's rendezvous (fed to `_Send`/`_Recv` as their handle).
fn rendezvous_key(step_id: u64) -> String {
    format!("_rendezvous/remote/{step_id:x}")
}

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
                push_routes: RwLock::new(HashMap::new()),
                tensors_sent: AtomicU64::new(0),
                chunks_sent: AtomicU64::new(0),
                channel,
                recv_buffers: Arc::default(),
            }),
        }
    }

    /// The task's resources (its variables).
    pub fn resources(&self) -> &ResourceMgr {
        &self.state.resources
    }
}

impl WorkerState {
    fn internal(&self, what: &str) -> Status {
        Status::internal(format!("{what} lock poisoned on {}", self.task))
    }

    /// The rendezvous of `step_id`, made on first use (a peer may ask for a value before this
    /// task's `RunGraph` of the step arrives).
    fn step(&self, step_id: u64) -> Result<Arc<LocalRendezvous>, Status> {
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
        steps.insert(step_id, r.clone());
        Ok(r)
    }

    fn end_step(&self, step_id: u64, why: &str) {
        // Marked ended under the steps lock: `step` cannot make it anew meanwhile.
        let removed = self.steps.lock().ok().and_then(|mut s| {
            if let Ok(mut ended) = self.ended.lock() {
                ended.insert(step_id);
            }
            s.remove(&step_id)
        });
        if let Some(r) = removed {
            self.resources.remove_state(&rendezvous_key(step_id));
            // Wakes a receive still waiting (a peer that will never ask).
            r.abort(KernelError {
                code: Code::Cancelled,
                message: why.to_string(),
            });
        }
    }

    async fn peer(&self, address: &str, task: &str) -> Result<WorkerConn, Error> {
        if let Some(c) = self.peers.lock().ok().and_then(|p| p.get(address).cloned()) {
            return Ok(c);
        }
        let client = connect(address, task, &self.channel).await?;
        if let Ok(mut p) = self.peers.lock() {
            p.insert(address.to_string(), client.clone());
        }
        Ok(client)
    }

    /// Pulls `recv.key` of `step_id` from the task that produces it into `local`; a failure
    /// aborts the step here with an error naming that task.
    fn spawn_fetch(self: &Arc<Self>, step_id: u64, local: Arc<LocalRendezvous>, recv: RemoteRecv) {
        let state = self.clone();
        tokio::spawn(async move {
            let remote = RemoteRendezvous {
                state: &state,
                step_id,
            };
            match remote.fetch(&recv).await {
                Ok(t) => {
                    let _ = local.send_value(&recv.key, Some(t));
                }
                Err(e) => local.abort(e),
            }
        });
    }

    /// The forwarder of `step_id`'s rendezvous: a value whose tensor name has a push route
    /// is pushed to its task (in the background; a failure aborts the step here).
    fn forwarder(self: &Arc<Self>, step_id: u64, local: &Arc<LocalRendezvous>) -> Forwarder {
        let state = self.clone();
        let runtime = tokio::runtime::Handle::current();
        // Weak: the rendezvous owns its forwarder.
        let local = Arc::downgrade(local);
        Arc::new(move |key: &str, value: Received| {
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
            let (state, local, key) = (state.clone(), local.clone(), key.to_string());
            runtime.spawn(async move {
                if let Err(e) = state.push(step_id, &route, key, value).await {
                    if let Some(local) = local.upgrade() {
                        local.abort(e);
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

    fn register(&self, req: RegisterGraphRequest) -> Result<u64, Status> {
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
        let has_sends = graph.nodes().iter().any(|n| n.op == "_Send");
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
                    has_sends,
                    remote_recvs: req.remote_recvs,
                    pushes: !req.remote_sends.is_empty(),
                    last_run_us: AtomicU64::new(u64::MAX),
                }),
            );
        Ok(handle)
    }

    fn run(self: &Arc<Self>, req: RunGraphRequest) -> Result<Vec<Tensor>, Status> {
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
        let rendezvous = if reg.has_rendezvous {
            let r = self.step(req.step_id)?;
            for recv in &reg.remote_recvs {
                self.spawn_fetch(req.step_id, r.clone(), recv.clone());
            }
            if reg.pushes {
                r.set_forwarder(self.forwarder(req.step_id, &r));
            }
            feeds.push(Tensor::scalar(rendezvous_key(req.step_id)));
            Some(r)
        } else {
            None
        };
        // The partition may wait on values from other tasks: keep this runtime thread's
        // other work moving meanwhile.
        let go = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reg.exec.run(&feeds, &self.resources, None)
            }))
        };
        // A partition that may wait on other tasks, or whose last run was long, runs off the
        // runtime's thread (block_in_place: the thread's other work moves to another thread,
        // which costs a thread hand-off per step); a short self-contained one runs in place.
        let inline = rendezvous.is_none()
            && reg.last_run_us.load(Ordering::Relaxed) < Registered::INLINE_MAX_US;
        let started = std::time::Instant::now();
        let result = if inline {
            go()
        } else {
            tokio::task::block_in_place(go)
        };
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        reg.last_run_us.store(took, Ordering::Relaxed);
        let result = result.unwrap_or_else(|_| {
            Err(tfr_core::Error::InvalidArgument {
                arg: "step".into(),
                message: "the partition panicked".into(),
            })
        });
        if let (Err(e), Some(r)) = (&result, &rendezvous) {
            r.abort(KernelError {
                code: e.code(),
                message: format!("{e} (on {})", self.task),
            });
        }
        if rendezvous.is_some() && (!reg.has_sends || result.is_err()) {
            self.end_step(req.step_id, "the step ended");
        }
        result.map_err(|e| Status::new(code_to_status(e.code()), e.to_string()))
    }
}

/// The remote side of a step's rendezvous: a receive here of a key another task produces
/// asks that task's `RecvTensor`, which waits on its local rendezvous for the key.
pub struct RemoteRendezvous<'a> {
    state: &'a WorkerState,
    step_id: u64,
}

impl RemoteRendezvous<'_> {
    /// The value of `recv.key`, from the task that produces it.
    pub async fn fetch(&self, recv: &RemoteRecv) -> Result<Tensor, KernelError> {
        let fail = |code: Code, m: String| KernelError {
            code,
            message: format!(
                "receiving `{}` from {} at {}: {m}",
                recv.key, recv.task, recv.address
            ),
        };
        let mut client = self
            .state
            .peer(&recv.address, &recv.task)
            .await
            .map_err(|e| fail(Code::Internal, e.to_string()))?;
        let to_kernel = |s: Status| {
            let code = if s.code() == tonic::Code::Cancelled {
                Code::Cancelled
            } else {
                Code::Internal
            };
            fail(code, status_text(&s))
        };
        let mut stream = client
            .recv_tensor(RecvTensorRequest {
                step_id: self.step_id,
                key: recv.key.clone(),
            })
            .await
            .map_err(to_kernel)?
            .into_inner();
        let mut tensor = ChunkAssembler::reusing(&recv.key, self.state.recv_buffers.clone());
        while let Some(chunk) = stream.message().await.map_err(to_kernel)? {
            tensor
                .push(chunk)
                .map_err(|e| fail(Code::Internal, e.to_string()))?;
        }
        tensor
            .finish()
            .map_err(|e| fail(Code::Internal, e.to_string()))
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

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn register_graph(
        &self,
        request: Request<RegisterGraphRequest>,
    ) -> Result<Response<RegisterGraphResponse>, Status> {
        let handle = self.state.register(request.into_inner())?;
        Ok(Response::new(RegisterGraphResponse { handle }))
    }

    async fn deregister_graph(
        &self,
        request: Request<DeregisterGraphRequest>,
    ) -> Result<Response<Empty>, Status> {
        let handles = request.into_inner().handles;
        let mut graphs = self
            .state
            .graphs
            .write()
            .map_err(|_| self.state.internal("graphs"))?;
        for h in handles {
            graphs.remove(&h);
        }
        Ok(Response::new(Empty {}))
    }

    async fn run_graph(
        &self,
        request: Request<RunGraphRequest>,
    ) -> Result<Response<RunGraphResponse>, Status> {
        let fetched = self.state.run(request.into_inner())?;
        let fetches = fetched
            .iter()
            .map(tensor_to_proto)
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Response::new(RunGraphResponse { fetches }))
    }

    type RecvTensorStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<RecvTensorChunk, Status>> + Send + 'static>,
    >;

    /// Waits for the key's value in the step's local rendezvous and streams it in chunks
    /// of `ChannelOptions::chunk_bytes`.
    async fn recv_tensor(
        &self,
        request: Request<RecvTensorRequest>,
    ) -> Result<Response<Self::RecvTensorStream>, Status> {
        let req = request.into_inner();
        let r = self.state.step(req.step_id)?;
        let to_status = |e: KernelError| Status::new(code_to_status(e.code), e.message);
        // A value sent already is taken at once; otherwise a blocking thread waits for it.
        let mailbox = r.mailbox().map_err(to_status)?;
        let value = match r.recv_async(&req.key, mailbox, 0).map_err(to_status)? {
            Some(v) => v,
            None => tokio::task::spawn_blocking(move || r.wait(mailbox))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(to_status)?
                .pop()
                .map(|(_, v)| v)
                .ok_or_else(|| Status::internal(format!("`{}` arrived empty", req.key)))?,
        };
        let t = value.ok_or_else(|| {
            Status::internal(format!(
                "`{}` arrived dead outside control flow (the partitioner marks transfers of \
                 graphs with control flow)",
                req.key
            ))
        })?;
        let chunks = tensor_to_chunks(&t, self.state.channel.chunk_bytes)
            .map_err(|e| invalid(e.to_string()))?;
        self.state.tensors_sent.fetch_add(1, Ordering::Relaxed);
        self.state
            .chunks_sent
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    /// A value of a frame-aware transfer whose sender is on another task (see `RemoteSend`).
    async fn push_tensor(
        &self,
        request: Request<PushTensorRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let value = req
            .tensor
            .as_ref()
            .map(|t| tensor_from_proto(t, &format!("pushed `{}`", req.key)))
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        self.state
            .step(req.step_id)?
            .send_value(&req.key, value)
            .map_err(|e| Status::new(code_to_status(e.code), e.message))?;
        Ok(Response::new(Empty {}))
    }

    async fn cleanup_step(&self, request: Request<StepRequest>) -> Result<Response<Empty>, Status> {
        self.state
            .end_step(request.into_inner().step_id, "the step was cleaned up");
        Ok(Response::new(Empty {}))
    }

    async fn abort_step(&self, request: Request<StepRequest>) -> Result<Response<Empty>, Status> {
        // Wakes the step's waiting receives with the reason; a `RunGraph` of the step that
        // arrives later fails at once.
        let req = request.into_inner();
        self.state.end_step(req.step_id, &req.reason);
        Ok(Response::new(Empty {}))
    }

    async fn status(&self, _: Request<Empty>) -> Result<Response<StatusResponse>, Status> {
        let s = &self.state;
        Ok(Response::new(StatusResponse {
            task: s.task.clone(),
            registered_graphs: s.graphs.read().map(|g| g.len()).unwrap_or(0) as u64,
            active_steps: s.steps.lock().map(|g| g.len()).unwrap_or(0) as u64,
            variables: s.resources.variable_names(),
            tensors_sent: s.tensors_sent.load(Ordering::Relaxed),
            chunks_sent: s.chunks_sent.load(Ordering::Relaxed),
        }))
    }
}
