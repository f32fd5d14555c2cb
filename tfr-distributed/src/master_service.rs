//! The master service a server hosts beside its worker service, so that a thin client
//! ([`crate::RemoteSession`]) may drive a cluster it is not part of: sessions over a graph
//! (create, extend, run a step, cancel a step, close) and the cluster's health.
//!
//! Each session is a [`MasterCore`] over the server's shared task clients; the core caches
//! each step signature's registered partitions, so a repeated step costs one `RunStep` from
//! the client and one `RunGraph` per participating task. A step runs as a task of its own,
//! cancelled when the client's call goes away, so a vanished client never leaves a step
//! running on the workers. A session whose client vanished without closing it is closed after
//! an idle timeout (when one is set: [`MasterService::with_idle_timeout`]): no call used it
//! for that long and no step of it is running. Its partitions are deregistered from the tasks.

use crate::channel::ChannelOptions;
use crate::cluster::ClusterSpec;
use crate::error::{Error, Result};
use crate::master::{CancelToken, ClusterClients, ClusterSessionOptions, MasterCore, RunOptions};
use crate::proto::master::master_server::Master;
use crate::proto::master::{
    CancelStepRequest, CancelStepResponse, CloseSessionRequest, ClusterStatusRequest,
    ClusterStatusResponse, CreateSessionRequest, CreateSessionResponse, ExtendSessionRequest,
    RunStepRequest, RunStepResponse, TaskHealth,
};
use crate::proto::Empty;
use crate::wire::{tensor_from_proto, tensor_to_proto};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tfr_core::Tensor;
use tfr_graph::{Graph, Output};
use tonic::{Request, Response, Status};

struct MasterSession {
    core: RwLock<Arc<MasterCore>>,
    /// Running steps by the client's run id.
    running: Mutex<HashMap<u64, CancelToken>>,
    /// Steps running now (with or without a run id).
    active: AtomicU64,
    /// When a call last used the session: milliseconds since the master started.
    last_used: AtomicU64,
}

/// Counts a running step of a session and marks the session used when the step ends.
struct ActiveStep<'a> {
    session: &'a MasterSession,
    state: &'a MasterState,
}

impl<'a> ActiveStep<'a> {
    fn new(session: &'a MasterSession, state: &'a MasterState) -> ActiveStep<'a> {
        session.active.fetch_add(1, Ordering::SeqCst);
        ActiveStep { session, state }
    }
}

impl Drop for ActiveStep<'_> {
    fn drop(&mut self) {
        self.session.touch(self.state);
        self.session.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MasterSession {
    fn touch(&self, state: &MasterState) {
        self.last_used.store(state.now_ms(), Ordering::SeqCst);
    }
}

struct MasterState {
    clients: Arc<ClusterClients>,
    channel: ChannelOptions,
    sessions: RwLock<HashMap<u64, Arc<MasterSession>>>,
    next_session: AtomicU64,
    started: Instant,
    /// Sessions unused for this long (and running no step) are closed.
    idle_timeout: Option<Duration>,
    /// Sessions closed by the idle timeout so far.
    expired: AtomicU64,
}

/// The master service tonic serves; cheap to clone.
#[derive(Clone)]
pub struct MasterService {
    state: Arc<MasterState>,
}

/// Cancels a step whose RPC was dropped (the client went away) before it finished.
struct CancelOnDrop(Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.cancel();
        }
    }
}

fn poisoned(what: &str) -> Status {
    Status::internal(format!("master: {what} lock poisoned"))
}

impl MasterService {
    /// A master over the tasks of `cluster`, talking to them with `channel`.
    pub fn new(cluster: &ClusterSpec, channel: ChannelOptions) -> Result<MasterService> {
        Self::with_idle_timeout(cluster, channel, None)
    }

    /// [`MasterService::new`] that closes sessions unused for `idle_timeout` (no call of their
    /// client, no step running): the sessions of clients that died without closing them. The
    /// check runs on the current tokio runtime (call it inside one), about every quarter of
    /// the timeout; it ends with the service.
    pub fn with_idle_timeout(
        cluster: &ClusterSpec,
        channel: ChannelOptions,
        idle_timeout: Option<Duration>,
    ) -> Result<MasterService> {
        // Session ids start at a random point: a restarted master does not take an old
        // client's session id for one of its own.
        let start = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            (h.finish() >> 16).max(1)
        };
        let service = MasterService {
            state: Arc::new(MasterState {
                clients: Arc::new(ClusterClients::new(cluster, channel.clone())?),
                channel,
                sessions: RwLock::new(HashMap::new()),
                next_session: AtomicU64::new(start),
                started: Instant::now(),
                idle_timeout,
                expired: AtomicU64::new(0),
            }),
        };
        if let Some(timeout) = idle_timeout {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Server("the session idle timeout needs a tokio runtime".into())
            })?;
            let state = Arc::downgrade(&service.state);
            let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(10));
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(state) = state.upgrade() else { break };
                    state.close_idle(timeout).await;
                }
            });
        }
        Ok(service)
    }

    /// The number of open sessions.
    pub fn sessions(&self) -> usize {
        self.state.sessions.read().map(|s| s.len()).unwrap_or(0)
    }

    /// The number of sessions the idle timeout closed.
    pub fn sessions_expired(&self) -> u64 {
        self.state.expired.load(Ordering::SeqCst)
    }
}

impl MasterState {
    fn session(&self, id: u64) -> Result<Arc<MasterSession>, Status> {
        self.sessions
            .read()
            .map_err(|_| poisoned("sessions"))?
            .get(&id)
            .cloned()
            .inspect(|s| s.touch(self))
            .ok_or_else(|| {
                let expired = match self.idle_timeout {
                    Some(t) => format!(", closed after {t:?} unused"),
                    None => String::new(),
                };
                Status::not_found(format!(
                    "no session {id} on this master (closed{expired}, or the master was restarted)"
                ))
            })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes the sessions unused for `timeout` with no step running (their partitions are
    /// deregistered from the tasks).
    async fn close_idle(&self, timeout: Duration) {
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let idle = |s: &MasterSession| {
            s.active.load(Ordering::SeqCst) == 0
                && now.saturating_sub(s.last_used.load(Ordering::SeqCst)) > limit
        };
        let closed: Vec<(u64, Arc<MasterSession>)> = {
            let Ok(mut sessions) = self.sessions.write() else {
                return;
            };
            let ids: Vec<u64> = sessions
                .iter()
                .filter(|(_, s)| idle(s))
                .map(|(&id, _)| id)
                .collect();
            ids.into_iter()
                .filter_map(|id| sessions.remove(&id).map(|s| (id, s)))
                .collect()
        };
        for (id, session) in closed {
            self.expired.fetch_add(1, Ordering::SeqCst);
            eprintln!("master: closing session {id}: unused for more than {timeout:?}");
            let core = session.core.read().ok().map(|c| c.clone());
            if let Some(core) = core {
                core.close().await;
            }
        }
    }

    fn graph(bytes: &[u8]) -> Result<Graph, Status> {
        Graph::from_bytes(bytes).map_err(|e| {
            Status::invalid_argument(format!("the session's graph does not load: {e}"))
        })
    }
}

fn to_status(e: Error) -> Status {
    e.to_status()
}

#[tonic::async_trait]
impl Master for MasterService {
    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionResponse>, Status> {
        let req = request.into_inner();
        let graph = MasterState::graph(&req.graph)?;
        let o = req.options.unwrap_or_default();
        let options = ClusterSessionOptions {
            channel: self.state.channel.clone(),
            optimize: !o.no_optimize,
            soft_placement: !o.hard_placement,
            step_timeout: (o.step_timeout_ms > 0).then(|| Duration::from_millis(o.step_timeout_ms)),
        };
        let core =
            MasterCore::new(self.state.clients.clone(), &graph, options).map_err(to_status)?;
        let id = self.state.next_session.fetch_add(1, Ordering::Relaxed);
        self.state
            .sessions
            .write()
            .map_err(|_| poisoned("sessions"))?
            .insert(
                id,
                Arc::new(MasterSession {
                    core: RwLock::new(Arc::new(core)),
                    running: Mutex::new(HashMap::new()),
                    active: AtomicU64::new(0),
                    last_used: AtomicU64::new(self.state.now_ms()),
                }),
            );
        Ok(Response::new(CreateSessionResponse {
            session: id,
            devices: self.state.clients.devices(),
        }))
    }

    async fn extend_session(
        &self,
        request: Request<ExtendSessionRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let session = self.state.session(req.session)?;
        let graph = MasterState::graph(&req.graph)?;
        let mut core = session.core.write().map_err(|_| poisoned("session"))?;
        let extended = core.extend(&graph).map_err(to_status)?;
        *core = Arc::new(extended);
        Ok(Response::new(Empty {}))
    }

    async fn run_step(
        &self,
        request: Request<RunStepRequest>,
    ) -> Result<Response<RunStepResponse>, Status> {
        let req = request.into_inner();
        let session = self.state.session(req.session)?;
        // Not idle while the step runs, however long it takes.
        let _active = ActiveStep::new(&session, &self.state);
        let core = session
            .core
            .read()
            .map_err(|_| poisoned("session"))?
            .clone();
        let feed_names: Vec<&str> = req.feeds.iter().map(|f| f.name.as_str()).collect();
        let fetch_names: Vec<&str> = req.fetches.iter().map(String::as_str).collect();
        let target_names: Vec<&str> = req.targets.iter().map(String::as_str).collect();
        let (outputs, fetches, targets) = core
            .resolve(&feed_names, &fetch_names, &target_names)
            .map_err(to_status)?;
        let mut feeds: Vec<(Output, Tensor)> = Vec::with_capacity(outputs.len());
        for (o, f) in outputs.into_iter().zip(&req.feeds) {
            let what = format!("feed `{}`", f.name);
            let proto = f
                .tensor
                .as_ref()
                .ok_or_else(|| Status::invalid_argument(format!("{what} holds no tensor")))?;
            let t = tensor_from_proto(proto, &what).map_err(to_status)?;
            feeds.push((o, t));
        }
        let mut token = CancelToken::new();
        if req.run_id != 0 {
            let mut running = session.running.lock().map_err(|_| poisoned("steps"))?;
            match running.get(&req.run_id) {
                // A CancelStep that overtook its RunStep: the step is cancelled at once.
                Some(t) if t.is_cancelled() => token = t.clone(),
                Some(_) => {
                    return Err(Status::invalid_argument(format!(
                        "run id {} is already running in session {}",
                        req.run_id, req.session
                    )))
                }
                None => {
                    running.insert(req.run_id, token.clone());
                }
            }
        }
        let options = RunOptions {
            timeout: (req.timeout_ms > 0).then(|| Duration::from_millis(req.timeout_ms)),
            cancel: Some(token.clone()),
        };
        let mut guard = CancelOnDrop(Some(token));
        let step = tokio::spawn(async move {
            let feeds: Vec<(Output, &Tensor)> = feeds.iter().map(|(o, t)| (*o, t)).collect();
            core.run(&feeds, &fetches, &targets, &options).await
        });
        let joined = step.await;
        guard.0 = None;
        if req.run_id != 0 {
            if let Ok(mut running) = session.running.lock() {
                running.remove(&req.run_id);
            }
        }
        let fetched = joined
            .map_err(|e| Status::internal(format!("the step's task failed: {e}")))?
            .map_err(to_status)?;
        let fetches = fetched
            .iter()
            .map(tensor_to_proto)
            .collect::<Result<Vec<_>>>()
            .map_err(to_status)?;
        Ok(Response::new(RunStepResponse { fetches }))
    }

    async fn cancel_step(
        &self,
        request: Request<CancelStepRequest>,
    ) -> Result<Response<CancelStepResponse>, Status> {
        let req = request.into_inner();
        let session = self.state.session(req.session)?;
        let mut running = session.running.lock().map_err(|_| poisoned("steps"))?;
        let found = match running.get(&req.run_id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => {
                // The step's RunStep has not arrived yet: it starts cancelled.
                let t = CancelToken::new();
                t.cancel();
                running.insert(req.run_id, t);
                false
            }
        };
        Ok(Response::new(CancelStepResponse { cancelled: found }))
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<Empty>, Status> {
        let id = request.into_inner().session;
        let session = self
            .state
            .sessions
            .write()
            .map_err(|_| poisoned("sessions"))?
            .remove(&id)
            .ok_or_else(|| Status::not_found(format!("no session {id} on this master")))?;
        if let Ok(running) = session.running.lock() {
            for t in running.values() {
                t.cancel();
            }
        }
        let core = session
            .core
            .read()
            .map_err(|_| poisoned("session"))?
            .clone();
        core.close().await;
        Ok(Response::new(Empty {}))
    }

    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let ms = request.into_inner().timeout_ms;
        let timeout = if ms > 0 {
            Duration::from_millis(ms)
        } else {
            self.state.channel.connect_timeout
        };
        let tasks = self
            .state
            .clients
            .health(timeout)
            .await
            .into_iter()
            .map(|h| {
                let (alive, error, graphs, steps) = match &h.status {
                    Ok(s) => (true, String::new(), s.registered_graphs, s.active_steps),
                    Err(e) => (false, e.to_string(), 0, 0),
                };
                TaskHealth {
                    task: h.task,
                    address: h.address,
                    alive,
                    error,
                    registered_graphs: graphs,
                    active_steps: steps,
                }
            })
            .collect();
        Ok(Response::new(ClusterStatusResponse {
            tasks,
            sessions: self.sessions() as u64,
        }))
    }
}
