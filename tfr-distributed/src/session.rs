//! A session over a cluster with the master's work done in the client's process: a
//! [`MasterCore`] driven by a runtime of the session's own. (A thin client that leaves the
//! master's work to a server is [`crate::RemoteSession`].)

use crate::cluster::ClusterSpec;
use crate::error::Result;
use crate::master::{invalid, ClusterClients, MasterCore, RunOptions, TaskHealth};
pub use crate::master::{CancelToken, ClusterSessionOptions};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tfr_core::Tensor;
use tfr_graph::{Graph, NodeId, Output};

struct Inner {
    core: MasterCore,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Deregister the session's partitions; not from inside another runtime, where
        // blocking is not allowed (the tasks then keep them until they stop).
        if tokio::runtime::Handle::try_current().is_err() {
            self.runtime.block_on(self.core.close());
        }
    }
}

/// Runs steps of one graph over the tasks of a cluster. `Send + Sync`; clones share.
#[derive(Clone)]
pub struct ClusterSession {
    inner: Arc<Inner>,
}

impl ClusterSession {
    /// A session running `graph` (validated) on the tasks of `cluster`. Connects lazily: an
    /// unreachable task is reported by the first step that needs it.
    pub fn new(
        cluster: &ClusterSpec,
        graph: &Graph,
        options: ClusterSessionOptions,
    ) -> Result<ClusterSession> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| invalid("session", format!("cannot start a runtime: {e}")))?;
        let clients = Arc::new(ClusterClients::new(cluster, options.channel.clone())?);
        let core = MasterCore::new(clients, graph, options)?;
        Ok(ClusterSession {
            inner: Arc::new(Inner { core, runtime }),
        })
    }

    pub fn graph(&self) -> &Graph {
        self.inner.core.graph()
    }

    /// Full names of the cluster's devices, one per task.
    pub fn devices(&self) -> Vec<String> {
        self.inner.core.cluster().devices()
    }

    /// Runs the nodes `fetches` and `targets` need with `feeds`, over the cluster.
    pub fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>> {
        self.run_with(feeds, fetches, targets, &RunOptions::default())
    }

    /// [`ClusterSession::run`] with a timeout or a cancellation token for this step.
    pub fn run_with(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
        options: &RunOptions,
    ) -> Result<Vec<Tensor>> {
        let feeds: Vec<(Output, &Tensor)> = feeds.iter().map(|(o, t)| (*o, t)).collect();
        let core = &self.inner.core;
        self.inner
            .runtime
            .block_on(core.run(&feeds, fetches, targets, options))
    }

    /// Runs one step per feed set, all at once (their `RunGraph` messages to each task
    /// travel together, on the session's one thread): the results in the feed sets' order.
    /// Cheaper per step than as many threads calling [`ClusterSession::run`], which hand the
    /// session's runtime to each other.
    pub fn run_many(
        &self,
        feed_sets: &[Vec<(Output, Tensor)>],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Vec<Result<Vec<Tensor>>> {
        let core = &self.inner.core;
        let options = RunOptions::default();
        let feeds: Vec<Vec<(Output, &Tensor)>> = feed_sets
            .iter()
            .map(|set| set.iter().map(|(o, t)| (*o, t)).collect())
            .collect();
        let steps = feeds
            .iter()
            .map(|f| core.run(f, fetches, targets, &options))
            .collect();
        self.inner.runtime.block_on(join_all(steps))
    }

    /// Like [`ClusterSession::run`], naming outputs `"node"` or `"node:i"`.
    pub fn run_named(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let names: Vec<&str> = feeds.iter().map(|f| f.0).collect();
        let (outputs, fetches, targets) = self.inner.core.resolve(&names, fetches, targets)?;
        let feeds: Vec<(Output, Tensor)> = outputs
            .into_iter()
            .zip(feeds.iter().map(|f| f.1.clone()))
            .collect();
        self.run(&feeds, &fetches, &targets)
    }

    /// The task each node of a step runs on, as (node name, device name).
    pub fn placement(
        &self,
        feeds: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<(String, String)>> {
        self.inner.core.placement(feeds, fetches, targets)
    }

    /// Every task's status, each asked within `timeout`: dead or stopped tasks are reported
    /// (naming their address), not waited on.
    pub fn health(&self, timeout: Duration) -> Vec<TaskHealth> {
        let cluster = self.inner.core.cluster();
        self.inner.runtime.block_on(cluster.health(timeout))
    }

    /// The number of step signatures registered with the tasks.
    pub fn cached_steps(&self) -> usize {
        self.inner.core.cached_steps()
    }
}

/// Every future's output, in order, polling them together.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

impl std::fmt::Debug for ClusterSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSession")
            .field("devices", &self.devices())
            .finish()
    }
}
