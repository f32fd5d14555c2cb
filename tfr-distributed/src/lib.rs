//! `tfr-distributed`: tfr over many processes. Tasks (grouped into jobs such as `ps` and
//! `worker`, see [`ClusterSpec`]) each run a [`Server`] hosting the worker service and the
//! master service. A [`ClusterSession`] does the master's work in the client's process; a
//! [`RemoteSession`] is a thin client of a server's master service (`grpc://host:port`). The
//! master places and partitions a step over the tasks, registers each task's partition once
//! and runs a step as one `RunGraph` message per task on a long-lived stream to that task
//! (`mux`). Cross-task `_Send`/`_Recv` go through a remote rendezvous: the receiving task asks
//! the sending task (`RecvTensors` stream, or `RecvTensor` in chunks for large values).
//!
//! RPC is gRPC (tonic and prost; the protos are compiled at build time by protox).

pub mod auth;
pub mod cancel;
pub mod channel;
pub mod clients;
pub mod cluster;
pub mod error;
pub mod master;
pub mod master_service;
pub(crate) mod mux;
pub mod remote;
pub mod server;
pub mod session;
pub(crate) mod steps;
pub mod target;
pub mod wire;
pub mod worker;
pub mod worker_rpc;
pub(crate) mod zero_copy;

/// The generated gRPC messages and services (`proto/worker.proto`, `proto/master.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    /// The worker service (`tfr.worker`), also re-exported here.
    pub mod worker {
        tonic::include_proto!("tfr.worker");
    }
    /// The master service (`tfr.master`).
    pub mod master {
        tonic::include_proto!("tfr.master");
    }
    pub use worker::*;
}

pub use auth::Secret;
pub use channel::{ChannelOptions, TlsConfig};
pub use cluster::{ClusterConfig, ClusterSpec, TaskId};
pub use error::{Error, Result};
pub use master::{CancelToken, ClusterSessionOptions, RunOptions, TaskHealth};
pub use master_service::MasterService;
pub use remote::{RemoteSession, RemoteSessionOptions};
pub use server::{Server, ServerOptions};
pub use session::ClusterSession;
pub use target::register_session_factory;
pub use wire::keep_freed_buffers;
pub use worker::WorkerService;
