//! A task's server: the worker and master services on a tokio runtime of its own thread, so any process
//! can host one ([`Server::start`]); the `tfr-server` binary is a thin wrapper.

use crate::auth::CheckSecret;
use crate::channel::{source_chain, ChannelOptions};
use crate::cluster::{ClusterSpec, TaskId};
use crate::error::{Error, Result};
use crate::master_service::MasterService;
use crate::proto::master::master_server::MasterServer;
use crate::proto::worker_server::WorkerServer;
use crate::worker::WorkerService;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;

/// How a server runs.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Where to listen. Default: loopback, on the port of the task's address in the spec
    /// (a server is reachable from other machines only when told so).
    pub bind: Option<SocketAddr>,
    /// Channels to other tasks and message size limits.
    pub channel: ChannelOptions,
    /// Also stop on SIGTERM or SIGINT (the binary sets it).
    pub stop_on_signal: bool,
    /// Close master sessions unused this long with no step running (clients that died
    /// without closing them). None: sessions stay until closed.
    pub session_idle_timeout: Option<std::time::Duration>,
    /// Threads of the server's runtime (None: one per core). Partitions that run long or
    /// wait run off these threads (`block_in_place`), so one is enough for dispatch; with
    /// several tasks sharing a host's cores, 1 saves the wake-ups of idle threads (~20-35%
    /// of the CPU of a small RunGraph on the 2-core test machine).
    pub runtime_threads: Option<usize>,
}

/// How long a stopping server waits for its connections to close.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A running task server.
pub struct Server {
    address: SocketAddr,
    task: TaskId,
    service: WorkerService,
    master: MasterService,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

fn server_error(task: &TaskId, message: impl std::fmt::Display) -> Error {
    Error::Server(format!("{}: {message}", task.name()))
}

/// The loopback address with the port of `address` (`host:port`).
fn loopback_with_port(address: &str, task: &TaskId) -> Result<SocketAddr> {
    let port = address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| server_error(task, format!("address `{address}` has no port")))?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

impl Server {
    /// Starts the server of `task` of `cluster`; returns once it listens.
    pub fn start(cluster: &ClusterSpec, task: &TaskId, options: ServerOptions) -> Result<Server> {
        let bind = match options.bind {
            Some(b) => b,
            None => loopback_with_port(cluster.address(task)?, task)?,
        };
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = options.runtime_threads {
            rt.worker_threads(n.max(1));
        }
        let runtime = rt
            .enable_all()
            .thread_name("tfr-server")
            .build()
            .map_err(|e| server_error(task, format!("cannot start a runtime: {e}")))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(bind))
            .map_err(|e| server_error(task, format!("cannot listen on {bind}: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| server_error(task, e.to_string()))?;
        let service = WorkerService::new(&task.name(), options.channel.clone());
        let master = {
            let _context = runtime.enter();
            MasterService::with_idle_timeout(
                cluster,
                options.channel.clone(),
                options.session_idle_timeout,
            )?
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let limit = options.channel.max_message_bytes;
        // Every call of both services passes the secret check first (when there is a secret).
        let check = CheckSecret::new(options.channel.secret.clone());
        let svc = crate::zero_copy::WorkerRoutes {
            inner: InterceptedService::new(
                WorkerServer::new(service.clone())
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
                check.clone(),
            ),
            state: service.state.clone(),
            check: check.clone(),
        };
        let master_svc = InterceptedService::new(
            MasterServer::new(master.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            check,
        );
        let keepalive = options.channel.keepalive;
        // Listen for signals before `start` returns: a SIGTERM sent as soon as the address is
        // printed would otherwise meet the default action and kill the process.
        let termination = if options.stop_on_signal {
            Some(
                Termination::install(&runtime)
                    .map_err(|e| server_error(task, format!("cannot listen for signals: {e}")))?,
            )
        } else {
            None
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &options.channel.tls {
            let (cert, key) = tls
                .identity
                .as_ref()
                .ok_or_else(|| server_error(task, "TLS needs the server's certificate and key"))?;
            let config = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key));
            builder = builder
                .tls_config(config)
                .map_err(|e| server_error(task, format!("TLS: {}", source_chain(&e))))?;
        }
        let name = task.clone();
        let streams = service.clone();
        let (signalled_tx, signalled_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("tfr-server-{}-{}", task.job, task.index))
            .spawn(move || {
                runtime.block_on(async move {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true));
                    let shutdown = async move {
                        match termination {
                            Some(t) => tokio::select! {
                                _ = stopped => {}
                                _ = t.wait() => {}
                            },
                            None => {
                                let _ = stopped.await;
                            }
                        }
                        // Long-lived streams would hold their connections open.
                        streams.close_streams();
                        let _ = signalled_tx.send(());
                    };
                    let serve = builder
                        .tcp_nodelay(true)
                        .http2_keepalive_interval(Some(keepalive))
                        .http2_keepalive_timeout(Some(keepalive))
                        .initial_stream_window_size(crate::channel::STREAM_WINDOW)
                        .initial_connection_window_size(crate::channel::CONNECTION_WINDOW)
                        .max_frame_size(crate::channel::MAX_FRAME)
                        .add_service(svc)
                        .add_service(master_svc)
                        .serve_with_incoming_shutdown(incoming, shutdown);
                    // Graceful shutdown waits for every connection to close, and a connected
                    // client whose runtime is idle (a session between steps) never answers
                    // the closing handshake: after the grace period the server stops anyway.
                    let grace = async move {
                        match signalled_rx.await {
                            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
                            Err(_) => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        r = serve => r.map_err(|e| server_error(&name, e)),
                        _ = grace => Ok(()),
                    }
                })
            })
            .map_err(|e| server_error(task, format!("cannot start a thread: {e}")))?;
        Ok(Server {
            address,
            task: task.clone(),
            service,
            master,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The task's worker service (its resources hold the task's variables).
    pub fn service(&self) -> &WorkerService {
        &self.service
    }

    /// The task's master service (its sessions).
    pub fn master(&self) -> &MasterService {
        &self.master
    }

    /// Stops serving and waits for the server to end.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Waits until the server ends (by a signal, with `stop_on_signal`).
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| server_error(&self.task, "the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Listeners for SIGTERM and SIGINT, installed on the server's runtime.
#[cfg(unix)]
struct Termination {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Termination {
    fn install(runtime: &tokio::runtime::Runtime) -> std::io::Result<Termination> {
        use tokio::signal::unix::{signal, SignalKind};
        let _context = runtime.enter();
        Ok(Termination {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Elsewhere only Ctrl-C stops the server.
#[cfg(not(unix))]
struct Termination;

#[cfg(not(unix))]
impl Termination {
    fn install(_runtime: &tokio::runtime::Runtime) -> std::io::Result<Termination> {
        Ok(Termination)
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
