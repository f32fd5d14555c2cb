//! Variable placement over parameter-server tasks, like TensorFlow's `replica_device_setter`:
//! variables go to the `ps` tasks (round-robin, or greedily to the least loaded task by size),
//! computation goes to the worker's own device. It is a pass over a built graph, so it works
//! with every layer and optimizer of this crate: build the model, then [`ReplicaDeviceSetter::apply`].
//!
//! Variables that one op updates together (a variable and its optimizer slots, which
//! `ResourceApplyAdam` reads with it) land on one task, as the runtime colocates every op with
//! the variables it touches. Nodes that read a resource get no device of their own: placement
//! puts them with that resource. A node that already names a device keeps it.

use tfr_graph::{DType, Graph, GraphError, NodeId, Result};

/// How variables are spread over the ps tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsStrategy {
    /// The k-th variable (group) goes to task k mod the number of ps tasks.
    RoundRobin,
    /// Each variable (group), in creation order, goes to the task holding the fewest bytes so
    /// far (TensorFlow's `GreedyLoadBalancingStrategy` with a byte-size load function).
    GreedyBySize,
}

/// Places a worker's graph: variables on `/job:<ps_job>/task:k`, the rest on `worker_device`.
#[derive(Clone, Debug)]
pub struct ReplicaDeviceSetter {
    num_ps_tasks: usize,
    ps_job: String,
    worker_device: String,
    strategy: PsStrategy,
}

/// Where [`ReplicaDeviceSetter::apply`] put each variable: (shared name, device).
pub type VariablePlacement = Vec<(String, String)>;

impl ReplicaDeviceSetter {
    /// A setter over `num_ps_tasks` tasks of job `ps` (0: variables stay on the worker) for
    /// the worker whose device is `worker_device` (e.g. `/job:worker/task:1`).
    pub fn new(num_ps_tasks: usize, worker_device: &str) -> Result<ReplicaDeviceSetter> {
        tfr_graph::device::DeviceSpec::parse(worker_device).map_err(|message| {
            GraphError::InvalidArgument {
                builder: "ReplicaDeviceSetter::new".into(),
                arg: "worker_device".into(),
                message: format!("`{worker_device}`: {message}"),
            }
        })?;
        Ok(ReplicaDeviceSetter {
            num_ps_tasks,
            ps_job: "ps".into(),
            worker_device: worker_device.to_string(),
            strategy: PsStrategy::RoundRobin,
        })
    }

    pub fn strategy(mut self, strategy: PsStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The job holding the variables (default `ps`).
    pub fn ps_job(mut self, job: &str) -> Self {
        self.ps_job = job.to_string();
        self
    }

    pub fn worker_device(&self) -> &str {
        &self.worker_device
    }

    /// The device of ps task `task`.
    pub fn ps_device(&self, task: usize) -> String {
        format!("/job:{}/task:{task}", self.ps_job)
    }

    /// Gives every node of `g` without a device one (see the module doc). Running it again
    /// after more nodes were added places only those: a new variable joins its group's task
    /// (an optimizer slot goes with its variable), otherwise the strategy picks one. Returns
    /// where each variable is.
    pub fn apply(&self, g: &mut Graph) -> Result<VariablePlacement> {
        let n = g.len();
        // Union-find over variable handles updated by one op together.
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let is_var = |g: &Graph, id: usize| g.nodes()[id].op == "VarHandleOp";
        for node in g.nodes() {
            let handles: Vec<usize> = node
                .inputs
                .iter()
                .filter(|o| g.dtype(**o) == DType::Resource && is_var(g, o.node.index()))
                .map(|o| o.node.index())
                .collect();
            for w in handles.windows(2) {
                let (a, b) = (root(&mut parent, w[0]), root(&mut parent, w[1]));
                parent[a] = b;
            }
        }
        // Loads of the ps tasks from variables already placed there.
        let mut load = vec![0usize; self.num_ps_tasks];
        let task_of = |device: &str| -> Option<usize> {
            (0..self.num_ps_tasks).find(|&t| device == self.ps_device(t))
        };
        let mut group_device: std::collections::HashMap<usize, String> = Default::default();
        for id in 0..n {
            let node = &g.nodes()[id];
            if is_var(g, id) && !node.device.is_empty() {
                if let Some(t) = task_of(&node.device) {
                    load[t] += variable_bytes(g, id);
                }
                group_device
                    .entry(root(&mut parent, id))
                    .or_insert_with(|| node.device.clone());
            }
        }
        let mut next_task = g
            .nodes()
            .iter()
            .filter(|node| node.op == "VarHandleOp" && task_of(&node.device).is_some())
            .count();
        let mut placement = Vec::new();
        for id in 0..n {
            let unplaced = g.nodes()[id].device.is_empty();
            if is_var(g, id) {
                if unplaced {
                    let r = root(&mut parent, id);
                    let device = match group_device.get(&r) {
                        Some(d) => d.clone(),
                        None if self.num_ps_tasks == 0 => self.worker_device.clone(),
                        None => {
                            let t = match self.strategy {
                                PsStrategy::RoundRobin => next_task % self.num_ps_tasks,
                                PsStrategy::GreedyBySize => (0..self.num_ps_tasks)
                                    .min_by_key(|&t| (load[t], t))
                                    .unwrap_or(0),
                            };
                            next_task += 1;
                            self.ps_device(t)
                        }
                    };
                    if let Some(t) = task_of(&device) {
                        load[t] += variable_bytes(g, id);
                    }
                    group_device.insert(r, device.clone());
                    g.set_device(NodeId(id as u32), &device)?;
                }
                let node = &g.nodes()[id];
                let name = node.attrs.string_opt("shared_name").cloned();
                placement.push((
                    name.unwrap_or_else(|| node.name.clone()),
                    node.device.clone(),
                ));
                continue;
            }
            let reads_resource = g.nodes()[id]
                .inputs
                .iter()
                .any(|o| g.dtype(*o) == DType::Resource);
            if !unplaced || reads_resource {
                continue;
            }
            g.set_device(NodeId(id as u32), &self.worker_device)?;
        }
        Ok(placement)
    }
}

/// Bytes of the variable whose handle is node `id` (0 when its shape is not known).
fn variable_bytes(g: &Graph, id: usize) -> usize {
    let attrs = &g.nodes()[id].attrs;
    let elements = attrs
        .shape_opt("shape")
        .and_then(|s| s.num_elements())
        .unwrap_or(0);
    let size = attrs.dtype_opt("dtype").map_or(0, |d| d.size_of());
    elements.saturating_mul(size)
}
