//! Errors of the replicated checkpoint and training-loop helpers, generic over the error of
//! the session that runs the steps (so a loop can still tell a lost task from a bad graph).

use std::path::{Path, PathBuf};
use tfr_graph::GraphError;

/// A failed sharded save or restore, readiness wait, or training step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A step failed; `what` says which (e.g. "saving checkpoint 200 (shards on ps:0, ps:1)").
    #[error("{what}: {source}")]
    Step {
        what: String,
        #[source]
        source: E,
    },
    /// A checkpoint file or directory is missing or unreadable.
    #[error("checkpoint `{}`: {message}", .path.display())]
    File { path: PathBuf, message: String },
    /// The model did not become ready (initialized by the chief) in time.
    #[error("{0}")]
    NotReady(String),
    /// Recovery from lost tasks was given up after `attempts` tries.
    #[error("gave up recovering after {attempts} attempts: {last}")]
    Recovery { attempts: usize, last: String },
    /// A bad argument to one of the helpers.
    #[error("{builder}: argument `{arg}`: {message}")]
    InvalidArgument {
        builder: String,
        arg: String,
        message: String,
    },
}

impl<E: std::error::Error + 'static> TrainError<E> {
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        TrainError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn step(what: impl Into<String>, source: E) -> Self {
        TrainError::Step {
            what: what.into(),
            source,
        }
    }

    /// The session's error, when a step failed.
    pub fn step_error(&self) -> Option<&E> {
        match self {
            TrainError::Step { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl<E: std::error::Error + 'static> From<crate::saver::CheckpointError> for TrainError<E> {
    fn from(e: crate::saver::CheckpointError) -> Self {
        match e {
            crate::saver::CheckpointError::Graph(g) => TrainError::Graph(g),
            crate::saver::CheckpointError::File { path, message } => {
                TrainError::File { path, message }
            }
            other => TrainError::File {
                path: PathBuf::new(),
                message: other.to_string(),
            },
        }
    }
}
