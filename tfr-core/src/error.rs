//! Runtime errors. Every error of a step names the node it came from.

use tfr_graph::GraphError;
use thiserror::Error;

/// The class of a failure, as in TensorFlow's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    FailedPrecondition,
    NotFound,
    OutOfRange,
    Unimplemented,
    Internal,
    Cancelled,
    /// Out of memory (or another exhausted resource, e.g. disk space).
    ResourceExhausted,
    /// A remote runtime (a session's target) could not be reached.
    Unavailable,
    /// A step did not finish within its deadline.
    DeadlineExceeded,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A kernel failed while running node `node`.
    #[error("{code:?} in node `{node}` ({op}): {message}")]
    Kernel {
        node: String,
        op: String,
        code: Code,
        message: String,
    },
    /// A fed value does not fit the placeholder it feeds.
    #[error("feed for `{name}`: expected {expected}, got {got}")]
    Feed {
        name: String,
        expected: String,
        got: String,
    },
    /// No CPU kernel exists for a node's op and dtype.
    #[error("no kernel for node `{node}` ({op}) with dtype {dtype}{hint}")]
    NoKernel {
        node: String,
        op: String,
        dtype: String,
        /// Where the kernel would come from, for ops whose kernels another crate registers.
        hint: String,
    },
    /// A node cannot be placed on any device.
    #[error("cannot place node `{node}` ({op}): {message}")]
    Placement {
        node: String,
        op: String,
        message: String,
    },
    #[error("invalid argument `{arg}`: {message}")]
    InvalidArgument { arg: String, message: String },
    /// A step of a session with a target failed in the runtime it runs in (the message names
    /// the task or node, as that runtime reported it).
    #[error("session target {target}: {message}")]
    Remote {
        target: String,
        code: Code,
        message: String,
    },
}

impl Error {
    /// The status code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Kernel { code, .. } | Error::Remote { code, .. } => *code,
            Error::NoKernel { .. } => Code::Unimplemented,
            _ => Code::InvalidArgument,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error raised inside a kernel; the executor adds the node's name.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelError {
    pub code: Code,
    pub message: String,
}

impl KernelError {
    pub fn invalid(message: impl Into<String>) -> KernelError {
        KernelError {
            code: Code::InvalidArgument,
            message: message.into(),
        }
    }
    pub fn precondition(message: impl Into<String>) -> KernelError {
        KernelError {
            code: Code::FailedPrecondition,
            message: message.into(),
        }
    }
    pub fn out_of_range(message: impl Into<String>) -> KernelError {
        KernelError {
            code: Code::OutOfRange,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> KernelError {
        KernelError {
            code: Code::Internal,
            message: message.into(),
        }
    }
    pub fn resource_exhausted(message: impl Into<String>) -> KernelError {
        KernelError {
            code: Code::ResourceExhausted,
            message: message.into(),
        }
    }
    pub fn unimplemented(message: impl Into<String>) -> KernelError {
        KernelError {
            code: Code::Unimplemented,
            message: message.into(),
        }
    }
}

impl From<String> for KernelError {
    fn from(message: String) -> KernelError {
        KernelError::invalid(message)
    }
}

pub type KResult<T = ()> = std::result::Result<T, KernelError>;

impl From<Error> for KernelError {
    fn from(e: Error) -> KernelError {
        KernelError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}
