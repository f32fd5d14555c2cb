//! `tfr-distributed`: tfr over many processes. Tasks (grouped into jobs such as `ps` and
//! `worker`, see [`ClusterSpec`]) each run a [`Server`] hosting the worker service; a
//! [`ClusterSession`] places and partitions a step over the tasks, registers each task's
//! partition once and runs a step as one `RunGraph` per task. Cross-task `_Send`/`_Recv` go
//! through a remote rendezvous: the receiving task asks the sending task's `RecvTensor`.
//!
//! RPC is gRPC (tonic and prost; the protos are compiled at build time by protox).

pub mod channel;
pub mod cluster;
pub mod error;
pub mod server;
pub mod session;
pub mod wire;
pub mod worker;

/// The generated gRPC messages and services (`proto/worker.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("tfr.worker");
}

pub use channel::ChannelOptions;
pub use cluster::{ClusterConfig, ClusterSpec, TaskId};
pub use error::{Error, Result};
pub use server::{Server, ServerOptions};
pub use session::{ClusterSession, ClusterSessionOptions};
pub use worker::WorkerService;
