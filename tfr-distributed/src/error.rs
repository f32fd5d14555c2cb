//! Errors of the distributed runtime. Each says which task (and address) it came from.

/// The gRPC status code of a tfr-core status code.
pub(crate) fn code_to_status(code: tfr_core::Code) -> tonic::Code {
    use tfr_core::Code;
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::NotFound => tonic::Code::NotFound,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        Code::Cancelled => tonic::Code::Cancelled,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
    }
}

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
    /// A master service answered a client's call with an error.
    #[error("master at {address}: {message}")]
    Master {
        address: String,
        code: tonic::Code,
        message: String,
    },
    /// The step did not finish within its timeout (it was aborted on every task).
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The step was cancelled (it was aborted on every task).
    #[error("cancelled: {0}")]
    Cancelled(String),
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

impl Error {
    /// The gRPC status code that carries this error (also the code a master's client sees).
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Cluster(_) | Error::Wire(_) => tonic::Code::InvalidArgument,
            Error::Unreachable { .. } => tonic::Code::Unavailable,
            Error::Task { code, .. } | Error::Master { code, .. } => *code,
            Error::DeadlineExceeded(_) => tonic::Code::DeadlineExceeded,
            Error::Cancelled(_) => tonic::Code::Cancelled,
            Error::Server(_) => tonic::Code::Internal,
            Error::Core(e) => code_to_status(e.code()),
        }
    }

    /// This error as the status a service answers with.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
