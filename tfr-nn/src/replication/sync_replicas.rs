//! Synchronous replicated training with backup workers (the paper's "take m out of n"; in
//! spirit TensorFlow's `SyncReplicasOptimizer`), built from graph ops only: one conditional
//! accumulator per variable on the variable's ps task, a token queue and the global step on
//! the global step's task, around any [`Optimizer`].
//!
//! - Every worker's step ([`SyncTrainOps::train`]) computes its gradients at the parameters it
//!   reads, applies each to its variable's accumulator tagged with the worker's `local_step`,
//!   then takes a token from the token queue and adopts the token's global step as its new
//!   `local_step`.
//! - The chief's update ([`SyncTrainOps::chief_update`], run in a loop by one thread of the
//!   chief, like TF's queue runner) takes the mean of m gradients from every accumulator,
//!   applies it once with the wrapped optimizer, increments the global step, moves every
//!   accumulator to the new step (gradients still on their way for the old step are dropped
//!   there: a straggler's late result never reaches the parameters) and pushes
//!   `max(n, m)` tokens carrying the new step.
//!
//! A worker whose token carries an older step than the accumulators' computes a gradient that
//! is dropped, then catches up with its next token. The chief's take waits at most
//! `take_timeout_ms`, so a chief whose workers are all gone fails instead of hanging, and
//! [`SyncTrainOps::close_token_queue`] ends every worker waiting for a token (out of range).

use super::device_setter::ReplicaDeviceSetter;
use crate::optimizers::{compute_gradients, Optimizer};
use tfr_graph::ops::accumulator_ops::Accumulator;
use tfr_graph::ops::data_flow_ops::Queue;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, GraphError, NodeId, Output, Result, Shape};

/// The ops [`SyncReplicas::minimize`] adds.
#[derive(Clone, Debug)]
pub struct SyncTrainOps {
    /// A worker's training step (see the module doc).
    pub train: NodeId,
    /// The chief's update: aggregate m gradients, apply once, publish the new step.
    pub chief_update: NodeId,
    /// Sets this worker's `local_step` to the current global step (run once by every worker
    /// before its first step, after the chief initialized or restored the variables).
    pub local_step_init: NodeId,
    /// Closes the token queue: workers waiting for a token end with an out-of-range error.
    pub close_token_queue: NodeId,
    /// Sets every accumulator's global step to the global step's value: run by the chief after
    /// it initialized or restored the variables (e.g. in `ModelOps::chief_init`).
    pub chief_init: NodeId,
    /// A bool scalar: the accumulators were moved to the current global step (by `chief_init`
    /// or the last `chief_update`). Workers must not train before it holds: after a restore
    /// to an older step, a gradient applied before `chief_init` is dropped by a surviving
    /// accumulator (or cleared by `chief_init`), and its worker would wait for a token that
    /// needs it. Add it to the readiness checks (`ModelOps::with_ready_flag`).
    pub ready: Output,
    /// The step the accumulators were last moved to (a variable on the global step's task,
    /// -1 when initialized). Not model state: keep it out of checkpoints (a restored value
    /// would make `ready` hold before `chief_init` ran).
    pub accumulators_step: Variable,
    /// Pushes `max(n, m)` tokens of step -1: wakes the workers waiting for a token when the
    /// chief's update cannot go on (a lost ps task), so their steps end (the next one finds
    /// the lost task and recovers) instead of waiting for their step timeout. A worker taking
    /// such a token computes one gradient that is dropped. Run it where the aggregation
    /// loop notices a lost task (e.g. `ModelOps::on_lost` of the aggregator's session).
    pub release_workers: NodeId,
    pub global_step: Variable,
    /// This worker's local step, a variable on the worker's own device.
    pub local_step: Variable,
    /// One per variable, in the order of the variables.
    pub accumulators: Vec<Accumulator>,
    pub token_queue: Queue,
}

/// Wraps an optimizer for synchronous training of `total_num_replicas` workers, each update
/// aggregating the first `replicas_to_aggregate` gradients of a step.
pub struct SyncReplicas<O: Optimizer> {
    optimizer: O,
    replicas_to_aggregate: usize,
    total_num_replicas: usize,
    take_timeout_ms: Option<u64>,
}

fn invalid(arg: &str, message: String) -> GraphError {
    GraphError::InvalidArgument {
        builder: "SyncReplicas".into(),
        arg: arg.into(),
        message,
    }
}

/// A scalar i64 variable `global_step` starting at 0 (the step counter the chief increments).
pub fn global_step(g: &mut Graph) -> Result<Variable> {
    let zero = g.scalar(0i64)?;
    g.variable("global_step", zero)
}

impl<O: Optimizer> SyncReplicas<O> {
    /// m = `replicas_to_aggregate` of n = `total_num_replicas` workers per update (n - m are
    /// backups; m > n means a worker contributes several gradients per update).
    pub fn new(
        optimizer: O,
        replicas_to_aggregate: usize,
        total_num_replicas: usize,
    ) -> Result<SyncReplicas<O>> {
        if replicas_to_aggregate == 0 {
            return Err(invalid(
                "replicas_to_aggregate",
                "must be at least 1".into(),
            ));
        }
        if total_num_replicas == 0 {
            return Err(invalid("total_num_replicas", "must be at least 1".into()));
        }
        Ok(SyncReplicas {
            optimizer,
            replicas_to_aggregate,
            total_num_replicas,
            take_timeout_ms: None,
        })
    }

    /// Bounds the chief's wait for gradients (default: no bound).
    pub fn take_timeout_ms(mut self, ms: u64) -> Self {
        self.take_timeout_ms = Some(ms);
        self
    }

    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// Differentiates `loss` (this worker's loss on its share of the batch) with respect to
    /// `vars` and adds the synchronous training ops. Places the graph with `setter` before and
    /// after (so the accumulators sit with their variables and the gradients on the worker).
    pub fn minimize(
        &mut self,
        g: &mut Graph,
        loss: Output,
        vars: &[Variable],
        global_step: &Variable,
        setter: &ReplicaDeviceSetter,
    ) -> Result<SyncTrainOps> {
        if global_step.dtype != DType::I64 || global_step.shape != Shape::scalar() {
            return Err(invalid(
                "global_step",
                format!(
                    "must be an i64 scalar variable, `{}` is {}{}",
                    global_step.name, global_step.dtype, global_step.shape
                ),
            ));
        }
        setter.apply(g)?;
        let device_of = |g: &Graph, v: &Variable| g.node(v.handle.node).device.clone();
        let step_device = device_of(g, global_step);
        let worker = setter.worker_device().to_string();
        let grads = compute_gradients(g, loss, vars)?;
        let (m, n) = (self.replicas_to_aggregate, self.total_num_replicas);
        let timeout = self.take_timeout_ms;
        let ops = g.with_scope("sync_replicas", |g| -> Result<_> {
            let local_step = g.with_device(&worker, |g| {
                let zero = g.scalar(0i64)?;
                g.variable("local_step", zero)
            })?;
            let token_queue = g.with_device(&step_device, |g| {
                g.fifo_queue("token_queue", &[DType::I64], &[Shape::scalar()], None)
            })?;
            let accumulators_step = g.with_device(&step_device, |g| {
                let none = g.scalar(-1i64)?;
                g.variable("accumulators_step", none)
            })?;
            let mut accumulators = Vec::with_capacity(vars.len());
            let mut applies = Vec::with_capacity(vars.len());
            for (k, (grad, var)) in grads.iter().enumerate() {
                let acc = g.with_device(&device_of(g, var), |g| {
                    g.conditional_accumulator(&format!("accumulator_{k}"), var.dtype, &var.shape)
                })?;
                applies.push(g.accumulator_apply_gradient(&acc, local_step.value, *grad)?);
                accumulators.push(acc);
            }
            // A worker's step: gradients in, then wait for the token of the next step. It
            // adopts the token's step, but never one ahead of the global step: after a restore
            // to an older step, tokens pushed before it (and `release_workers`' -1 tokens)
            // only make the next gradient stale instead of tagging it with a future step.
            let token = g.with_control_dependencies(&applies, |g| g.queue_dequeue(&token_queue))?;
            // (The global step read after the token arrived: read before, it may be older.)
            let step_after = g.with_device(&step_device, |g| {
                let now = g.with_control_dependencies(&[token[0].node], |g| {
                    g.read_variable(global_step)
                })?;
                g.minimum(token[0], now)
            })?;
            let adopt = g.assign(&local_step, step_after)?;
            let train = g
                .build("NoOp")
                .name("train")
                .control_input(adopt.node)
                .finish()?;
            let step_now = g.read_variable(global_step)?;
            let local_step_init = g.assign(&local_step, step_now)?.node;
            let close_token_queue = g.queue_close(&token_queue, false)?;
            let release_workers = g.with_device(&step_device, |g| {
                let count = i64::try_from(n.max(m))
                    .map_err(|_| invalid("total_num_replicas", format!("{n} is too large")))?;
                let stale = g.scalar(-1i64)?;
                let tokens = g.fill(&[count], stale)?;
                g.queue_enqueue_many(&token_queue, &[tokens])
            })?;
            // TF's `chief_init_op`: the accumulators adopt the (initialized or restored) global
            // step, backwards too, or after a restore every gradient would be stale.
            let step_now = g.read_variable(global_step)?;
            let adopts = accumulators
                .iter()
                .map(|acc| g.accumulator_set_global_step(acc, step_now))
                .collect::<Result<Vec<_>>>()?;
            let mark =
                g.with_control_dependencies(&adopts, |g| g.assign(&accumulators_step, step_now))?;
            let chief_init = g
                .build("NoOp")
                .name("chief_init")
                .control_input(mark.node)
                .finish()?;
            let marked = g.read_variable(&accumulators_step)?;
            let step_read = g.read_variable(global_step)?;
            let ready = g.equal(marked, step_read)?;
            Ok((
                release_workers,
                accumulators_step,
                ready,
                local_step,
                token_queue,
                accumulators,
                train,
                local_step_init,
                close_token_queue,
                chief_init,
            ))
        })?;
        let (
            release_workers,
            accumulators_step,
            ready,
            local_step,
            token_queue,
            accumulators,
            train,
            local_step_init,
            close_token_queue,
            chief_init,
        ) = ops;

        // The chief's update runs on the ps tasks only (no worker needed to aggregate): its
        // stateless nodes go to the global step's task, updates stay with their variables.
        let first_new = g.len();
        let averaged = accumulators
            .iter()
            .zip(vars)
            .map(|(acc, var)| Ok((g.accumulator_take_gradient(acc, m, timeout)?, var.clone())))
            .collect::<Result<Vec<_>>>()?;
        let update = self
            .optimizer
            .apply_gradients(g, &averaged, Some(global_step))?;
        let chief_update = g.with_scope("sync_replicas", |g| -> Result<NodeId> {
            let new_step =
                g.with_control_dependencies(&[update], |g| g.read_variable(global_step))?;
            let mut published = Vec::with_capacity(accumulators.len());
            for acc in &accumulators {
                published.push(g.accumulator_set_global_step(acc, new_step)?);
            }
            let count = i64::try_from(n.max(m))
                .map_err(|_| invalid("total_num_replicas", format!("{n} is too large")))?;
            let mark = g.with_control_dependencies(&published, |g| {
                g.assign(&accumulators_step, new_step)
            })?;
            let tokens =
                g.with_control_dependencies(&[mark.node], |g| g.fill(&[count], new_step))?;
            let push = g.queue_enqueue_many(&token_queue, &[tokens])?;
            g.build("NoOp")
                .name("chief_update")
                .control_input(push)
                .finish()
        })?;
        for id in first_new..g.len() {
            let node = g.node(NodeId(id as u32));
            let reads_resource = node.inputs.iter().any(|o| g.dtype(*o) == DType::Resource);
            if node.device.is_empty() && !reads_resource && node.op != "VarHandleOp" {
                g.set_device(NodeId(id as u32), &step_device)?;
            }
        }
        // Optimizer slots (made by the update) join their variables' tasks.
        setter.apply(g)?;
        Ok(SyncTrainOps {
            train,
            chief_update,
            local_step_init,
            close_token_queue,
            chief_init,
            ready,
            accumulators_step,
            release_workers,
            global_step: global_step.clone(),
            local_step,
            accumulators,
            token_queue,
        })
    }
}
