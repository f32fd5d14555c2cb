//! What the checkpoint and training-loop helpers need of a session: run a step, and classify
//! its errors. [`tfr_core::Session`] implements it here; a cluster session implements it where
//! both crates are known (a thin wrapper in the program that uses it).

use tfr_core::{Code, Session, Tensor};
use tfr_graph::{NodeId, Output};

/// How one step's error should be handled by a training loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The input ran out or a queue was closed: the end of training, not a failure.
    EndOfInput,
    /// A task is gone (unreachable, or restarted and lost its state): recreate the session,
    /// restore the model and go on. Names the task.
    TaskLost(String),
    /// Anything else: reported to the caller.
    Other,
}

/// Runs steps of one graph (a local session, or a session over a cluster).
pub trait StepRunner {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs what `fetches` and `targets` need with `feeds`; returns the fetched values.
    fn run_step(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>, Self::Error>;

    /// What an error of [`StepRunner::run_step`] means for a training loop.
    fn classify(&self, e: &Self::Error) -> Failure;
}

impl StepRunner for Session {
    type Error = tfr_core::Error;

    fn run_step(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>, tfr_core::Error> {
        self.run(feeds, fetches, targets)
    }

    /// A local session has no tasks to lose: out of range is the end of the input, the rest
    /// is reported.
    fn classify(&self, e: &tfr_core::Error) -> Failure {
        match e.code() {
            Code::OutOfRange => Failure::EndOfInput,
            _ => Failure::Other,
        }
    }
}
