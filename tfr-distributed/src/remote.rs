//! A thin client of a master service: [`RemoteSession`] connects to a target such as
//! `grpc://127.0.0.1:2222` (any task's server hosts a master), hands it the graph, and runs
//! steps by name; the master places, partitions and runs them over the cluster. The client is
//! not part of the cluster and needs no cluster spec.

use crate::auth::AddSecret;
use crate::channel::{connect_channel, source_chain, ChannelOptions, MasterConn};
use crate::error::{Error, Result};
use crate::master::{invalid, CancelToken, RunOptions};
use crate::proto::master::master_client::MasterClient;
use crate::proto::master::{
    CancelStepRequest, CloseSessionRequest, ClusterStatusRequest, CreateSessionRequest,
    ExtendSessionRequest, NamedTensor, RunStepRequest, SessionOptions, TaskHealth,
};
use crate::wire::{tensor_from_proto, tensor_to_proto};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tfr_core::Tensor;
use tfr_graph::{Graph, NodeId, Output};

/// How a remote session runs.
#[derive(Clone, Debug)]
pub struct RemoteSessionOptions {
    pub channel: ChannelOptions,
    /// Run CSE, constant folding and fusion on each step's graph (on the master).
    pub optimize: bool,
    /// Drop device requests no device satisfies instead of failing.
    pub soft_placement: bool,
    /// A step still running after this long is aborted on every task (None: no limit).
    pub step_timeout: Option<Duration>,
}

impl Default for RemoteSessionOptions {
    fn default() -> Self {
        RemoteSessionOptions {
            channel: ChannelOptions::default(),
            optimize: true,
            soft_placement: true,
            step_timeout: None,
        }
    }
}

/// A session whose steps a master service runs. `Send + Sync`.
pub struct RemoteSession {
    runtime: tokio::runtime::Runtime,
    client: MasterConn,
    address: String,
    session: u64,
    /// The cluster's devices, as the master listed them when it created the session.
    devices: Vec<String>,
    graph: Graph,
    options: RemoteSessionOptions,
    next_run: AtomicU64,
    closed: AtomicBool,
}

/// The `host:port` of a `grpc://host:port` target.
pub fn parse_target(target: &str) -> Result<&str> {
    let address = target.strip_prefix("grpc://").ok_or_else(|| {
        invalid(
            "target",
            format!("`{target}` is not a `grpc://host:port` target"),
        )
    })?;
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(address),
        _ => Err(invalid(
            "target",
            format!("`{target}` has no `host:port` after `grpc://`"),
        )),
    }
}

impl RemoteSession {
    /// Connects to the master at `target` (`grpc://host:port`) and creates a session over
    /// `graph` there (the master validates it).
    pub fn new(target: &str, graph: &Graph, options: RemoteSessionOptions) -> Result<Self> {
        let address = parse_target(target)?.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| invalid("session", format!("cannot start a runtime: {e}")))?;
        let limit = options.channel.max_message_bytes;
        let channel = runtime.block_on(connect_channel(&address, "master", &options.channel))?;
        let client = MasterClient::with_interceptor(
            channel,
            AddSecret::new(options.channel.secret.as_ref()),
        )
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
        let mut s = RemoteSession {
            runtime,
            client,
            address,
            session: 0,
            devices: Vec::new(),
            graph: graph.clone(),
            next_run: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            options,
        };
        let request = CreateSessionRequest {
            graph: graph.to_bytes(),
            options: Some(SessionOptions {
                no_optimize: !s.options.optimize,
                hard_placement: !s.options.soft_placement,
                step_timeout_ms: s.options.step_timeout.map_or(0, millis),
            }),
        };
        let mut c = s.client.clone();
        let deadline = s.options.channel.connect_timeout * 4;
        let response = s
            .runtime
            .block_on(bounded(deadline, c.create_session(request)))
            .map_err(|st| s.error(&st))?;
        let response = response.into_inner();
        s.session = response.session;
        s.devices = response.devices;
        Ok(s)
    }

    /// The address of the master.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Full names of the cluster's devices (`/job:worker/replica:0/task:0/device:CPU:0`...).
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// The session's id on the master.
    pub fn session_id(&self) -> u64 {
        self.session
    }

    fn error(&self, s: &tonic::Status) -> Error {
        let transport = std::error::Error::source(s).is_some() || s.message().is_empty();
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown if transport => Error::Unreachable {
                task: "master".into(),
                address: self.address.clone(),
                message: source_chain(s),
            },
            tonic::Code::DeadlineExceeded => Error::DeadlineExceeded(s.message().to_string()),
            tonic::Code::Cancelled => Error::Cancelled(s.message().to_string()),
            code => Error::Master {
                address: self.address.clone(),
                code,
                message: s.message().to_string(),
            },
        }
    }

    /// Replaces the session's graph by `graph`, which extends it (the session's nodes first,
    /// unchanged; new nodes after them). Registered steps stay registered.
    pub fn extend(&mut self, graph: &Graph) -> Result<()> {
        let request = ExtendSessionRequest {
            session: self.session,
            graph: graph.to_bytes(),
        };
        let mut c = self.client.clone();
        let deadline = self.options.channel.connect_timeout * 4;
        self.runtime
            .block_on(bounded(deadline, c.extend_session(request)))
            .map_err(|s| self.error(&s))?;
        self.graph = graph.clone();
        Ok(())
    }

    /// Runs the nodes `fetches` and `targets` need with `feeds`, on the cluster.
    pub fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>> {
        self.run_with(feeds, fetches, targets, &RunOptions::default())
    }

    /// [`RemoteSession::run`] with a timeout or a cancellation token for this step.
    pub fn run_with(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
        options: &RunOptions,
    ) -> Result<Vec<Tensor>> {
        let g = &self.graph;
        let n = g.len();
        let check = |what: &str, id: NodeId| {
            if id.index() < n {
                Ok(())
            } else {
                Err(invalid(
                    what,
                    format!("node id {} is out of range: the graph has {n} nodes", id.0),
                ))
            }
        };
        let mut named = Vec::with_capacity(feeds.len());
        for (o, t) in feeds {
            check("feeds", o.node)?;
            named.push((g.output_name(*o), t));
        }
        let mut fetch_names = Vec::with_capacity(fetches.len());
        for o in fetches {
            check("fetches", o.node)?;
            fetch_names.push(g.output_name(*o));
        }
        let mut target_names = Vec::with_capacity(targets.len());
        for &t in targets {
            check("targets", t)?;
            target_names.push(g.node(t).name.clone());
        }
        self.run_step(named, fetch_names, target_names, options)
    }

    /// Like [`RemoteSession::run`], naming outputs `"node"` or `"node:i"`.
    pub fn run_named(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let feeds = feeds.iter().map(|(n, t)| (n.to_string(), t)).collect();
        let fetches = fetches.iter().map(|s| s.to_string()).collect();
        let targets = targets.iter().map(|s| s.to_string()).collect();
        self.run_step(feeds, fetches, targets, &RunOptions::default())
    }

    fn run_step(
        &self,
        feeds: Vec<(String, &Tensor)>,
        fetches: Vec<String>,
        targets: Vec<String>,
        options: &RunOptions,
    ) -> Result<Vec<Tensor>> {
        let feeds = feeds
            .into_iter()
            .map(|(name, t)| {
                Ok(NamedTensor {
                    tensor: Some(tensor_to_proto(t)?),
                    name,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if options
            .cancel
            .as_ref()
            .is_some_and(CancelToken::is_cancelled)
        {
            return Err(Error::Cancelled(
                "the step was cancelled before it started".into(),
            ));
        }
        let run_id = self.next_run.fetch_add(1, Ordering::Relaxed);
        let timeout = options.timeout.or(self.options.step_timeout);
        let request = RunStepRequest {
            session: self.session,
            feeds,
            fetches,
            targets,
            timeout_ms: options.timeout.map_or(0, millis),
            run_id,
        };
        let mut request = tonic::Request::new(request);
        if let Some(t) = timeout {
            // The master answers a timed-out step itself; this bounds a master that does not.
            request.set_timeout(t + self.options.channel.connect_timeout * 4);
        }
        let mut c = self.client.clone();
        let cancel = options.cancel.clone();
        let response = self.runtime.block_on(async {
            let call = c.run_step(request);
            tokio::pin!(call);
            tokio::select! {
                r = &mut call => r,
                _ = cancelled(cancel.as_ref()) => {
                    let mut c2 = self.client.clone();
                    let cancel = CancelStepRequest { session: self.session, run_id };
                    let bound = self.options.channel.connect_timeout;
                    let _ = tokio::time::timeout(bound, c2.cancel_step(cancel)).await;
                    // The master aborts the step and answers Cancelled; bounded all the same.
                    match tokio::time::timeout(bound * 2, call).await {
                        Ok(r) => r,
                        Err(_) => Err(tonic::Status::cancelled(format!(
                            "the step was cancelled; the master at {} did not confirm within {:?}",
                            self.address, bound * 2
                        ))),
                    }
                }
            }
        });
        let fetched = response.map_err(|s| self.error(&s))?.into_inner().fetches;
        fetched
            .iter()
            .enumerate()
            .map(|(k, p)| tensor_from_proto(p, &format!("fetch {k}")))
            .collect()
    }

    /// Every task's health as the master sees it (each asked within `timeout`).
    pub fn cluster_status(&self, timeout: Duration) -> Result<Vec<TaskHealth>> {
        let mut c = self.client.clone();
        let request = ClusterStatusRequest {
            timeout_ms: millis(timeout),
        };
        let r = self
            .runtime
            .block_on(bounded(
                timeout * 2 + self.options.channel.connect_timeout,
                c.cluster_status(request),
            ))
            .map_err(|s| self.error(&s))?;
        Ok(r.into_inner().tasks)
    }

    /// Closes the session on the master (its registered steps are dropped on the tasks).
    pub fn close(self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut c = self.client.clone();
        let request = CloseSessionRequest {
            session: self.session,
        };
        let deadline = self.options.channel.connect_timeout * 2;
        self.runtime
            .block_on(bounded(deadline, c.close_session(request)))
            .map_err(|s| self.error(&s))?;
        Ok(())
    }
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        // Best effort; not from inside another runtime, where blocking is not allowed.
        if self.session != 0 && tokio::runtime::Handle::try_current().is_err() {
            let _ = self.close_inner();
        }
    }
}

impl std::fmt::Debug for RemoteSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSession")
            .field("master", &self.address)
            .field("session", &self.session)
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `call` within `deadline`, else DeadlineExceeded.
async fn bounded<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "no answer from the master within {deadline:?}"
            )))
        })
}

async fn cancelled(token: Option<&CancelToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}
