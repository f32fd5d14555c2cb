//! Channels to tasks: TCP_NODELAY, bounded connection time, message size limits, HTTP/2
//! keep-alive (a peer that stops answering is noticed instead of waited on forever).

use crate::auth::{AddSecret, Secret};
use crate::error::{Error, Result};
use crate::proto::master::master_client::MasterClient;
use crate::proto::worker_client::WorkerClient;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// How a process talks to tasks.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// How long connecting to a task may take before it is reported unreachable.
    pub connect_timeout: Duration,
    /// The largest message sent or accepted (both directions).
    pub max_message_bytes: usize,
    /// Interval of HTTP/2 pings; a peer that does not answer one within the same time is dead.
    pub keepalive: Duration,
    /// The cluster's shared secret: sent with every call; a server given one requires it.
    pub secret: Option<Secret>,
    /// Tensors sent to peers travel in chunks of at most this many bytes.
    pub chunk_bytes: usize,
    /// TLS (tonic's rustls): peers are verified against its CA and, on a server, the
    /// server presents its identity. None: plain HTTP/2.
    pub tls: Option<TlsConfig>,
}

/// TLS settings, PEM-encoded.
#[derive(Clone)]
pub struct TlsConfig {
    /// The certificate authority that signed the servers' certificates (for a self-signed
    /// certificate, the certificate itself).
    pub ca_pem: Vec<u8>,
    /// A server's certificate chain and private key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name verified in the servers' certificates (default: the host of each address).
    pub domain: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

impl TlsConfig {
    /// Reads the CA and, when given, a certificate and key, from PEM files; errors name the
    /// file.
    pub fn from_files(
        ca: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<TlsConfig> {
        let read = |p: &std::path::Path, what: &str| {
            let bytes = std::fs::read(p)
                .map_err(|e| Error::Server(format!("TLS {what} `{}`: {e}", p.display())))?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
                return Err(Error::Server(format!(
                    "TLS {what} `{}` is not PEM (no `-----BEGIN` line)",
                    p.display()
                )));
            }
            Ok(bytes)
        };
        let ca_pem = read(ca, "CA certificate")?;
        let identity = match identity {
            Some((cert, key)) => Some((read(cert, "certificate")?, read(key, "private key")?)),
            None => None,
        };
        Ok(TlsConfig {
            ca_pem,
            identity,
            domain: None,
        })
    }
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Duration::from_secs(5),
            max_message_bytes: 1 << 30,
            keepalive: Duration::from_secs(10),
            secret: None,
            chunk_bytes: 4 << 20,
            tls: None,
        }
    }
}

/// HTTP/2 flow-control windows of every channel and server.
pub const STREAM_WINDOW: u32 = 16 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;
/// The largest HTTP/2 frame accepted (the default, 16 KiB, cuts a 4 MiB chunk into 256).
pub const MAX_FRAME: u32 = 1 << 20;

/// A channel whose calls carry the cluster secret (when there is one).
pub type AuthChannel = InterceptedService<Channel, AddSecret>;

/// A client of a task's worker service.
pub type WorkerConn = WorkerClient<AuthChannel>;

/// A client of a server's master service.
pub type MasterConn = MasterClient<AuthChannel>;

/// A connected channel to `address` (`host:port`); `task` names the peer in errors.
pub async fn connect_channel(
    address: &str,
    task: &str,
    options: &ChannelOptions,
) -> Result<Channel> {
    let unreachable = |message: String| Error::Unreachable {
        task: task.to_string(),
        address: address.to_string(),
        message,
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| unreachable(format!("bad address: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive)
        .keep_alive_timeout(options.keepalive)
        .keep_alive_while_idle(true)
        // Large HTTP/2 windows: a streamed tensor is not throttled by 64 KiB flow control.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME);
    if let Some(tls) = &options.tls {
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        let domain = tls.domain.clone().unwrap_or_else(|| host.to_string());
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .domain_name(domain);
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| unreachable(format!("TLS: {}", source_chain(&e))))?;
    }
    tokio::time::timeout(options.connect_timeout, endpoint.connect())
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {:?}",
                options.connect_timeout
            ))
        })?
        .map_err(|e| unreachable(source_chain(&e)))
}

/// A connected channel to the task at `address` whose calls carry the cluster secret.
pub async fn connect_auth(
    address: &str,
    task: &str,
    options: &ChannelOptions,
) -> Result<AuthChannel> {
    let channel = connect_channel(address, task, options).await?;
    Ok(InterceptedService::new(
        channel,
        AddSecret::new(options.secret.as_ref()),
    ))
}

/// A client of the worker service over `channel`, with the message size limits.
pub fn worker_client(channel: AuthChannel, options: &ChannelOptions) -> WorkerConn {
    WorkerClient::new(channel)
        .max_decoding_message_size(options.max_message_bytes)
        .max_encoding_message_size(options.max_message_bytes)
}

/// A connected client of the worker service of `task` at `address`.
pub async fn connect(address: &str, task: &str, options: &ChannelOptions) -> Result<WorkerConn> {
    Ok(worker_client(
        connect_auth(address, task, options).await?,
        options,
    ))
}

/// An error and its causes on one line (transport errors hide the useful part in a source).
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}
