//! `Session`: runs parts of a graph. Each (feeds, fetches, targets) signature is pruned,
//! optimized and compiled once into an [`Executable`], cached, and reused by every later step.

use crate::error::{Error, Result};
use crate::executor::Executable;
use crate::passes::fold_constants;
use crate::resource::ResourceMgr;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tfr_graph::passes::{eliminate_common_subexpressions, prune, remove_dead_nodes};
use tfr_graph::validate::validate;
use tfr_graph::{Graph, NodeId, Output};

/// How a session runs.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Threads of the inter-op pool; 0 picks the number of CPUs. With 1, steps run sequentially.
    pub inter_op_threads: usize,
    /// Run common-subexpression elimination and constant folding on each step's graph.
    pub optimize: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            inter_op_threads: 0,
            optimize: true,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct StepKey {
    feeds: Vec<Output>,
    fetches: Vec<Output>,
    targets: Vec<NodeId>,
}

struct Inner {
    graph: Graph,
    resources: ResourceMgr,
    pool: Option<rayon::ThreadPool>,
    options: SessionOptions,
    cache: RwLock<HashMap<StepKey, Arc<Executable>>>,
}

/// Runs steps of one graph. `Send + Sync`: many threads may run steps at once.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl Session {
    /// A session over a copy of `graph` (validated first).
    pub fn new(graph: &Graph, options: SessionOptions) -> Result<Session> {
        validate(graph)?;
        let threads = match options.inter_op_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("tfr-inter-op-{i}"))
                    .build()
                    .map_err(|e| Error::InvalidArgument {
                        arg: "inter_op_threads".into(),
                        message: e.to_string(),
                    })?,
            )
        } else {
            None
        };
        let options = SessionOptions {
            inter_op_threads: threads,
            ..options
        };
        Ok(Session {
            inner: Arc::new(Inner {
                graph: graph.clone(),
                resources: ResourceMgr::default(),
                pool,
                options,
                cache: RwLock::new(HashMap::new()),
            }),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }

    pub fn resources(&self) -> &ResourceMgr {
        &self.inner.resources
    }

    /// Runs the nodes that `fetches` and `targets` need, with `feeds` replacing the values of
    /// the outputs they name, and returns the fetched values in order.
    pub fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>> {
        let key = StepKey {
            feeds: feeds.iter().map(|f| f.0).collect(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        };
        let exec = self.executable(key)?;
        let values: Vec<Tensor> = feeds.iter().map(|f| f.1.clone()).collect();
        exec.run(&values, &self.inner.resources, self.inner.pool.as_ref())
    }

    /// Like [`Session::run`], naming outputs as `"node"` or `"node:i"` and targets by node name.
    pub fn run_named(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let g = &self.inner.graph;
        let feeds = feeds
            .iter()
            .map(|(n, t)| Ok((g.output_by_name(n)?, t.clone())))
            .collect::<Result<Vec<_>>>()?;
        let fetches = fetches
            .iter()
            .map(|n| Ok(g.output_by_name(n)?))
            .collect::<Result<Vec<_>>>()?;
        let targets = targets
            .iter()
            .map(|n| Ok(g.node_by_name(n)?))
            .collect::<Result<Vec<_>>>()?;
        self.run(&feeds, &fetches, &targets)
    }

    /// A prepared step for one signature: the fastest way to run the same step repeatedly.
    pub fn make_callable(
        &self,
        feeds: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Callable> {
        let exec = self.executable(StepKey {
            feeds: feeds.to_vec(),
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
        })?;
        Ok(Callable {
            exec,
            session: self.clone(),
        })
    }

    /// Number of compiled step signatures in the cache.
    pub fn cached_executables(&self) -> usize {
        self.inner.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    fn executable(&self, key: StepKey) -> Result<Arc<Executable>> {
        if let Some(e) = self
            .inner
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            return Ok(e);
        }
        let exec = Arc::new(self.compile(&key)?);
        let mut cache = self
            .inner
            .cache
            .write()
            .map_err(|_| Error::InvalidArgument {
                arg: "session".into(),
                message: "cache lock poisoned".into(),
            })?;
        Ok(cache.entry(key).or_insert(exec).clone())
    }

    fn compile(&self, key: &StepKey) -> Result<Executable> {
        let g = &self.inner.graph;
        if let Some(dup) = key
            .feeds
            .iter()
            .enumerate()
            .find(|(i, f)| key.feeds[..*i].contains(f))
        {
            return Err(Error::InvalidArgument {
                arg: "feeds".into(),
                message: format!("`{}` is fed twice", g.output_name(*dup.1)),
            });
        }
        let mut step = prune(g, &key.feeds, &key.fetches, &key.targets)?;
        if self.inner.options.optimize {
            eliminate_common_subexpressions(&mut step);
            fold_constants(&mut step)?;
            remove_dead_nodes(&mut step);
        }
        let names: Vec<String> = key.feeds.iter().map(|&o| g.output_name(o)).collect();
        let mut exec = Executable::build(&step, &names, self.inner.options.inter_op_threads)?;
        for (k, arg) in step.feeds.iter().enumerate() {
            if arg.is_none() {
                exec.set_feed_type(k, g.output_type(key.feeds[k]).clone());
            }
        }
        Ok(exec)
    }
}

/// A compiled step bound to its session (see [`Session::make_callable`]).
pub struct Callable {
    exec: Arc<Executable>,
    session: Session,
}

impl Callable {
    /// Runs the step with feed values in the order the callable was made with.
    pub fn call(&self, feeds: &[Tensor]) -> Result<Vec<Tensor>> {
        self.exec.run(
            feeds,
            &self.session.inner.resources,
            self.session.inner.pool.as_ref(),
        )
    }

    /// The compiled program (after pruning and optimization).
    pub fn executable(&self) -> &Executable {
        &self.exec
    }
}
