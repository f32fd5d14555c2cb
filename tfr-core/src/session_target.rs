//! Sessions whose steps run in another runtime, chosen by [`SessionOptions::target`] as in
//! TensorFlow: an empty target runs steps in this process; `grpc://host:port` hands the graph
//! to the master service of a cluster task, which places, partitions and runs each step there.
//!
//! tfr-core cannot depend on the runtimes that serve other targets (the distributed runtime
//! depends on it), so they register a [`SessionFactory`] for their scheme, as TF's session
//! factories do: `tfr_distributed::register_session_factory()` registers `grpc`.

use crate::error::{Error, Result};
use crate::executor::{RunMetadata, RunOptions};
use crate::session::SessionOptions;
use crate::tensor::Tensor;
use std::sync::RwLock;
use tfr_graph::{Graph, NodeId, Output};

/// The steps of a session whose target is another runtime.
pub trait TargetSession: Send + Sync {
    /// Runs the nodes `fetches` and `targets` need with `feeds` replacing their outputs' values,
    /// as [`Session::run_with_options`](crate::Session::run_with_options) does in-process.
    fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
        options: &RunOptions,
    ) -> Result<(Vec<Tensor>, RunMetadata)>;

    /// Full names of the devices the runtime may place nodes on.
    fn devices(&self) -> Result<Vec<String>>;
}

/// Opens a session over `graph` on `target` (whose scheme the factory was registered for).
pub type SessionFactory =
    fn(target: &str, graph: &Graph, options: &SessionOptions) -> Result<Box<dyn TargetSession>>;

static FACTORIES: RwLock<Vec<(&'static str, SessionFactory)>> = RwLock::new(Vec::new());

/// Makes sessions whose target is `scheme://...` use `factory` (replacing an earlier one).
pub fn register_session_factory(scheme: &'static str, factory: SessionFactory) {
    let mut factories = FACTORIES.write().unwrap_or_else(|e| e.into_inner());
    factories.retain(|(s, _)| *s != scheme);
    factories.push((scheme, factory));
}

fn target_error(message: String) -> Error {
    Error::InvalidArgument {
        arg: "target".into(),
        message,
    }
}

/// The runner for `options.target`, or None when steps run in this process.
pub(crate) fn open(
    graph: &Graph,
    options: &SessionOptions,
) -> Result<Option<Box<dyn TargetSession>>> {
    let target = options.target.as_str();
    if target.is_empty() {
        return Ok(None);
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(target_error(format!(
            "`{target}` is not `scheme://address` (use \"\" to run in this process, or e.g. \
             `grpc://127.0.0.1:2222`)"
        )));
    };
    if rest.is_empty() {
        return Err(target_error(format!("`{target}` has no address")));
    }
    let factory = {
        let factories = FACTORIES.read().unwrap_or_else(|e| e.into_inner());
        factories.iter().find(|(s, _)| *s == scheme).map(|f| f.1)
    };
    match factory {
        Some(factory) => factory(target, graph, options).map(Some),
        None => Err(target_error(format!(
            "no runtime serves `{scheme}://` targets in this program (`{target}`); for `grpc://`, \
             depend on tfr-distributed (the `distributed` feature of `tfr`) and call \
             `tfr_distributed::register_session_factory()` once before creating the session"
        ))),
    }
}
