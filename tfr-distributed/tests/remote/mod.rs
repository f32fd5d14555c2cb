//! A `ClusterSession` as a `tfr_nn` step runner (the orphan rule keeps the impl out of both
//! crates' reach from here: a newtype), and the classification of cluster errors it needs.

#![allow(dead_code)]

use std::time::Duration;
use tfr_core::Tensor;
use tfr_distributed::{ChannelOptions, ClusterSession, ClusterSessionOptions, ClusterSpec, Error};
use tfr_graph::{Graph, NodeId, Output};
use tfr_nn::replication::{Failure, StepRunner};

/// A cluster session run by the training helpers.
pub struct Remote(pub ClusterSession);

impl Remote {
    pub fn new(spec: &ClusterSpec, g: &Graph, step_timeout: Duration) -> Result<Remote, Error> {
        let options = ClusterSessionOptions {
            channel: ChannelOptions {
                connect_timeout: Duration::from_secs(2),
                ..ChannelOptions::default()
            },
            step_timeout: Some(step_timeout),
            ..ClusterSessionOptions::default()
        };
        ClusterSession::new(spec, g, options).map(Remote)
    }
}

/// What a cluster error means to a training loop: out of range ends the input; an unreachable
/// task, a task that lost its registered graphs or its variables (restarted) is lost.
pub fn classify(e: &Error) -> Failure {
    match e {
        Error::Unreachable { task, .. } => Failure::TaskLost(task.clone()),
        Error::Task { code, .. } if *code == tonic::Code::OutOfRange => Failure::EndOfInput,
        Error::Task {
            task,
            code,
            message,
            ..
        } => match *code {
            tonic::Code::Unavailable | tonic::Code::Aborted => Failure::TaskLost(task.clone()),
            tonic::Code::NotFound if message.contains("was the task restarted") => {
                Failure::TaskLost(task.clone())
            }
            tonic::Code::FailedPrecondition if message.contains("is not initialized") => {
                Failure::TaskLost(task.clone())
            }
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

impl StepRunner for Remote {
    type Error = Error;

    fn run_step(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>, Error> {
        self.0.run(feeds, fetches, targets)
    }

    fn classify(&self, e: &Error) -> Failure {
        classify(e)
    }
}
