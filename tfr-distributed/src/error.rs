//! Errors of the distributed runtime. Each says which task (and address) it came from.

/// An error of the distributed runtime.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The cluster spec is invalid, or names no such job or task.
    #[error("cluster spec: {0}")]
    Cluster(String),
    /// A task could not be reached, or its connection broke.
    #[error("task {task} at {address} is unreachable: {message}")]
    Unreachable {
        task: String,
        address: String,
        message: String,
    },
    /// A task answered with an error (a failing node, a bad request).
    #[error("task {task} at {address}: {message}")]
    Task {
        task: String,
        address: String,
        code: tonic::Code,
        message: String,
    },
    /// The step was refused or failed before reaching any task.
    #[error(transparent)]
    Core(#[from] tfr_core::Error),
    /// A value on the wire is malformed.
    #[error("malformed message: {0}")]
    Wire(String),
    /// A server could not start.
    #[error("server: {0}")]
    Server(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
