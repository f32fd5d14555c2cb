//! `grpc://` targets for [`tfr_core::Session`]: after [`register_session_factory`],
//! `Session::new(&graph, SessionOptions { target: "grpc://host:port".into(), .. })` runs its
//! steps through the master service at that address (a [`RemoteSession`] underneath), with
//! the same `run`, `run_named`, `make_callable` and `run_with_options` as an in-process one.

use crate::error::Error;
use crate::master::RunOptions;
use crate::remote::{RemoteSession, RemoteSessionOptions};
use tfr_core::{Code, RunMetadata, SessionOptions, TargetSession, Tensor};
use tfr_graph::{Graph, NodeId, Output};

/// Makes `tfr_core::Session::new` accept `grpc://host:port` targets. Idempotent.
pub fn register_session_factory() {
    tfr_core::register_session_factory("grpc", open);
}

/// The status code of a tonic status, in tfr-core's terms.
pub(crate) fn status_code(code: tonic::Code) -> Code {
    match code {
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        tonic::Code::FailedPrecondition | tonic::Code::Aborted => Code::FailedPrecondition,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::OutOfRange => Code::OutOfRange,
        tonic::Code::Unimplemented => Code::Unimplemented,
        tonic::Code::Cancelled => Code::Cancelled,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::Unavailable => Code::Unavailable,
        tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// `e` as a tfr-core error of a session whose target is `target`.
fn core_error(target: &str, e: Error) -> tfr_core::Error {
    match e {
        // Refused before anything was sent: the caller's own mistake, reported as is.
        Error::Core(e) => e,
        other => tfr_core::Error::Remote {
            target: target.to_string(),
            code: status_code(other.code()),
            message: other.to_string(),
        },
    }
}

fn open(
    target: &str,
    graph: &Graph,
    options: &SessionOptions,
) -> tfr_core::Result<Box<dyn TargetSession>> {
    let remote = RemoteSessionOptions {
        optimize: options.optimize,
        soft_placement: options.soft_placement,
        ..RemoteSessionOptions::default()
    };
    let session = RemoteSession::new(target, graph, remote).map_err(|e| core_error(target, e))?;
    Ok(Box::new(GrpcSteps {
        target: target.to_string(),
        session,
    }))
}

struct GrpcSteps {
    target: String,
    session: RemoteSession,
}

impl TargetSession for GrpcSteps {
    fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
        options: &tfr_core::RunOptions,
    ) -> tfr_core::Result<(Vec<Tensor>, RunMetadata)> {
        if options.trace {
            return Err(tfr_core::Error::InvalidArgument {
                arg: "options.trace".into(),
                message: format!(
                    "steps of a `{}` session are not traced (the tasks run them); trace a \
                     ClusterSession in this process instead",
                    self.target
                ),
            });
        }
        let start = std::time::Instant::now();
        let values = self
            .session
            .run_with(feeds, fetches, targets, &RunOptions::default())
            .map_err(|e| core_error(&self.target, e))?;
        let metadata = RunMetadata {
            step_us: start.elapsed().as_nanos() as f64 / 1e3,
            ..RunMetadata::default()
        };
        Ok((values, metadata))
    }

    fn devices(&self) -> tfr_core::Result<Vec<String>> {
        Ok(self.session.devices().to_vec())
    }
}
