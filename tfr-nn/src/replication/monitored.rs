//! A training-loop helper for replicated training (in spirit TensorFlow's
//! `MonitoredTrainingSession`), over any [`StepRunner`] (a local session, or a session over a
//! cluster):
//!
//! - the chief restores the latest checkpoint of its [`ShardedSaver`] or, when there is none,
//!   runs the initializer; every other worker waits, up to a deadline, until every variable is
//!   initialized (and says which are not when it gives up);
//! - the chief saves a checkpoint every `save_every_steps` global steps;
//! - a step that fails because a task is lost ([`Failure::TaskLost`]: unreachable, or restarted
//!   without its state) makes the helper build a new session, prepare the model again (the
//!   chief restores the latest checkpoint, the others wait for it) and run the step again, with
//!   a bounded number of recoveries, each bounded in time;
//! - the end of the input (a closed queue, out of range) ends [`MonitoredSession::run`] with
//!   `Ok(None)`, on every worker.

use super::error::TrainError;
use super::runner::{Failure, StepRunner};
use super::sharded_saver::ShardedSaver;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tfr_core::Tensor;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, NodeId, Output, Result as GraphResult};

/// The graph ops the helper runs besides the caller's steps.
#[derive(Clone, Debug)]
pub struct ModelOps {
    /// Initializes every variable (run by the chief when there is no checkpoint).
    pub init: NodeId,
    /// A bool vector: which of `ready_names` are initialized.
    pub ready: Output,
    pub ready_names: Vec<String>,
    /// The global step's value (an i64 scalar).
    pub global_step: Output,
    /// Run by the chief after it initialized or restored the model.
    pub chief_init: Vec<NodeId>,
    /// Run by every worker once the model is ready (e.g. `SyncTrainOps::local_step_init`).
    pub local_init: Vec<NodeId>,
    /// Run once when a lost task is noticed, before preparing the model again: on the old
    /// session, or (when that fails) on the first new session that runs them; best effort
    /// (errors ignored). E.g. the aggregation loop's `SyncTrainOps::release_workers`.
    pub on_lost: Vec<NodeId>,
}

impl ModelOps {
    /// The ops for a model of `vars` (every variable the chief must initialize or restore,
    /// the global step among them). Build it before placing the graph: the readiness flags
    /// are read where each variable lives.
    pub fn new(
        g: &mut Graph,
        vars: &[Variable],
        init: NodeId,
        global_step: &Variable,
    ) -> GraphResult<ModelOps> {
        let flags = vars
            .iter()
            .map(|v| g.is_variable_initialized(v))
            .collect::<GraphResult<Vec<_>>>()?;
        let ready = g.with_scope("model_ready", |g| g.stack(&flags, 0))?;
        Ok(ModelOps {
            init,
            ready,
            ready_names: vars.iter().map(|v| v.name.clone()).collect(),
            global_step: global_step.value,
            chief_init: Vec::new(),
            local_init: Vec::new(),
            on_lost: Vec::new(),
        })
    }

    /// Adds a bool scalar `flag` to the readiness checks, reported as `name` while it is
    /// false (e.g. `SyncTrainOps::ready`: the chief moved the accumulators to the step).
    pub fn with_ready_flag(mut self, g: &mut Graph, flag: Output, name: &str) -> GraphResult<Self> {
        let one = g.expand_dims(flag, 0)?;
        self.ready = g.with_scope("model_ready", |g| g.concat(&[self.ready, one], 0))?;
        self.ready_names.push(name.to_string());
        Ok(self)
    }
}

/// How a [`MonitoredSession`] behaves.
#[derive(Clone, Debug)]
pub struct MonitoredConfig {
    pub is_chief: bool,
    /// The chief saves when the global step has advanced this much since its last save
    /// (`None`: only [`MonitoredSession::save`] and [`MonitoredSession::finish`] save).
    pub save_every_steps: Option<u64>,
    /// How long a non-chief waits for the model to be ready.
    pub ready_timeout: Duration,
    /// How often it looks.
    pub poll_interval: Duration,
    /// Recoveries from lost tasks allowed over the session's life.
    pub max_recoveries: usize,
    /// How long one recovery may take (the lost task must be back by then).
    pub recovery_timeout: Duration,
}

impl Default for MonitoredConfig {
    fn default() -> Self {
        MonitoredConfig {
            is_chief: true,
            save_every_steps: Some(100),
            ready_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
            max_recoveries: 3,
            recovery_timeout: Duration::from_secs(60),
        }
    }
}

/// What happened to the model, for the caller to report.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The chief initialized the variables (no checkpoint).
    Initialized,
    /// The chief restored a checkpoint (its prefix) at this global step; newer ones skipped.
    Restored {
        prefix: PathBuf,
        global_step: i64,
        skipped: Vec<String>,
    },
    /// A worker found the model ready.
    Ready { global_step: i64 },
    /// A checkpoint was saved.
    Saved { prefix: PathBuf, global_step: i64 },
    /// A lost task was noticed; recovery number `attempt` began.
    Lost { task: String, attempt: usize },
}

/// A session that prepares the model, checkpoints and recovers (see the module doc).
pub struct MonitoredSession<R: StepRunner, F: FnMut() -> std::result::Result<R, R::Error>> {
    make: F,
    runner: R,
    ops: ModelOps,
    saver: Option<ShardedSaver>,
    config: MonitoredConfig,
    recoveries: usize,
    last_saved: Option<i64>,
    events: Vec<Event>,
}

type Result<T, E> = std::result::Result<T, TrainError<E>>;

enum Attempt {
    Done(Vec<Tensor>),
    End,
    Recovered,
}

impl<R: StepRunner, F: FnMut() -> std::result::Result<R, R::Error>> MonitoredSession<R, F> {
    /// Makes a session with `make` and prepares the model (chief: restore or initialize;
    /// others: wait until ready). Lost tasks while preparing count as a recovery.
    pub fn new(
        mut make: F,
        ops: ModelOps,
        saver: Option<ShardedSaver>,
        config: MonitoredConfig,
    ) -> Result<Self, R::Error> {
        if config.save_every_steps == Some(0) {
            return Err(TrainError::InvalidArgument {
                builder: "MonitoredSession::new".into(),
                arg: "save_every_steps".into(),
                message: "must be at least 1 (or None)".into(),
            });
        }
        let runner = make().map_err(|e| TrainError::step("creating the session", e))?;
        let mut s = MonitoredSession {
            make,
            runner,
            ops,
            saver,
            config,
            recoveries: 0,
            last_saved: None,
            events: Vec::new(),
        };
        if let Err(e) = s.prepare() {
            match s.lost_task(&e) {
                Some(task) => s.recover(task, e)?,
                None => return Err(e),
            }
        }
        Ok(s)
    }

    /// The current session (replaced after a recovery).
    pub fn runner(&self) -> &R {
        &self.runner
    }

    pub fn is_chief(&self) -> bool {
        self.config.is_chief
    }

    pub fn recoveries(&self) -> usize {
        self.recoveries
    }

    /// What happened so far, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Runs one step. `Ok(None)` at the end of the input; a lost task is recovered from (see
    /// the module doc) and the step run again with the same feeds (as TensorFlow's
    /// recoverable session does); other errors are returned.
    pub fn run(
        &mut self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Option<Vec<Tensor>>, R::Error> {
        loop {
            match self.attempt(feeds, fetches, targets)? {
                Attempt::Done(values) => return Ok(Some(values)),
                Attempt::End => return Ok(None),
                Attempt::Recovered => {}
            }
        }
    }

    /// Like [`MonitoredSession::run`] for feeds that depend on the global step (e.g. which
    /// batch to train on): `feeds(step)` is called with the global step read before each
    /// try, so the step run again after a recovery gets the feeds of the restored step.
    /// Returns that step with the fetched values. Costs one more read of the global step.
    pub fn run_at_step(
        &mut self,
        mut feeds: impl FnMut(i64) -> Vec<(Output, Tensor)>,
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Option<(i64, Vec<Tensor>)>, R::Error> {
        loop {
            let step = self.global_step()?;
            match self.attempt(&feeds(step), fetches, targets)? {
                Attempt::Done(values) => return Ok(Some((step, values))),
                Attempt::End => return Ok(None),
                Attempt::Recovered => {}
            }
        }
    }

    fn attempt(
        &mut self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Attempt, R::Error> {
        let saving =
            self.config.is_chief && self.saver.is_some() && self.config.save_every_steps.is_some();
        let mut all = fetches.to_vec();
        if saving {
            all.push(self.ops.global_step);
        }
        match self.runner.run_step(feeds, &all, targets) {
            Ok(mut values) => {
                if saving {
                    let step = values
                        .pop()
                        .and_then(|t| t.scalar_value::<i64>().ok())
                        .ok_or_else(|| TrainError::InvalidArgument {
                            builder: "MonitoredSession".into(),
                            arg: "global_step".into(),
                            message: "expected an i64 scalar".into(),
                        })?;
                    self.maybe_save(step)?;
                }
                Ok(Attempt::Done(values))
            }
            Err(e) => match self.runner.classify(&e) {
                Failure::EndOfInput => Ok(Attempt::End),
                Failure::TaskLost(task) => {
                    self.recover(task, TrainError::step("a training step", e))?;
                    Ok(Attempt::Recovered)
                }
                Failure::Other => Err(TrainError::step("a training step", e)),
            },
        }
    }

    /// The global step now.
    pub fn global_step(&mut self) -> Result<i64, R::Error> {
        let gs = self.ops.global_step;
        let v = self.retrying(|r| {
            r.run_step(&[], &[gs], &[])
                .map_err(|e| TrainError::step("reading the global step", e))
        })?;
        scalar_i64(&v[0])
    }

    /// The chief saves a checkpoint at the current global step now (others: nothing).
    pub fn save(&mut self) -> Result<Option<PathBuf>, R::Error> {
        if !self.config.is_chief || self.saver.is_none() {
            return Ok(None);
        }
        self.save_at().map(Some)
    }

    /// Ends training: the chief saves a last checkpoint unless it saved this global step.
    pub fn finish(mut self) -> Result<Option<PathBuf>, R::Error> {
        if !self.config.is_chief || self.saver.is_none() {
            return Ok(None);
        }
        let step = self.global_step()?;
        if self.last_saved == Some(step) {
            return Ok(None);
        }
        self.save_at().map(Some)
    }

    fn maybe_save(&mut self, step: i64) -> Result<(), R::Error> {
        let every = self.config.save_every_steps.unwrap_or(u64::MAX) as i64;
        let due = match self.last_saved {
            None => step >= every,
            Some(last) => step >= last.saturating_add(every),
        };
        if due {
            self.save_at()?;
        }
        Ok(())
    }

    /// Saves a checkpoint named by the global step read now (the step that triggered it may
    /// have been read before that step's own increment). A task lost during the save is
    /// recovered from (the chief restores the latest checkpoint, with its saver in place),
    /// then the save is tried again at the step read then (usually the restored one, saved
    /// already).
    fn save_at(&mut self) -> Result<PathBuf, R::Error> {
        loop {
            let step = self.global_step()?;
            if self.last_saved == Some(step) {
                if let Some(saver) = &self.saver {
                    if let Some(prefix) = saver.latest()? {
                        return Ok(prefix);
                    }
                }
            }
            let at = u64::try_from(step).unwrap_or(0);
            let result = match &self.saver {
                Some(saver) => saver.save(&self.runner, at),
                None => {
                    return Err(TrainError::InvalidArgument {
                        builder: "MonitoredSession::save".into(),
                        arg: "saver".into(),
                        message: "this session has no saver".into(),
                    })
                }
            };
            match result {
                Ok(prefix) => {
                    self.last_saved = Some(step);
                    self.events.push(Event::Saved {
                        prefix: prefix.clone(),
                        global_step: step,
                    });
                    return Ok(prefix);
                }
                Err(e) => match self.lost_task(&e) {
                    Some(task) => self.recover(task, e)?,
                    None => return Err(e),
                },
            }
        }
    }

    /// Runs `f` on the session, recovering from lost tasks as [`MonitoredSession::run`] does.
    fn retrying<T>(
        &mut self,
        mut f: impl FnMut(&R) -> std::result::Result<T, TrainError<R::Error>>,
    ) -> Result<T, R::Error> {
        loop {
            match f(&self.runner) {
                Ok(v) => return Ok(v),
                Err(e) => match self.lost_task(&e) {
                    Some(task) => self.recover(task, e)?,
                    None => return Err(e),
                },
            }
        }
    }

    fn lost_task(&self, e: &TrainError<R::Error>) -> Option<String> {
        match e.step_error().map(|s| self.runner.classify(s)) {
            Some(Failure::TaskLost(task)) => Some(task),
            _ => None,
        }
    }

    /// A new session, the model prepared again; retried until the recovery deadline.
    fn recover(&mut self, task: String, cause: TrainError<R::Error>) -> Result<(), R::Error> {
        self.recoveries += 1;
        if self.recoveries > self.config.max_recoveries {
            return Err(TrainError::Recovery {
                attempts: self.config.max_recoveries,
                last: format!("task {task} lost: {cause}"),
            });
        }
        self.events.push(Event::Lost {
            task: task.clone(),
            attempt: self.recoveries,
        });
        // Best effort on the old session; when that fails (it may need the lost task), on
        // the first new one.
        let mut released = self.ops.on_lost.is_empty()
            || self.runner.run_step(&[], &[], &self.ops.on_lost).is_ok();
        let deadline = Instant::now() + self.config.recovery_timeout;
        loop {
            let last = match (self.make)() {
                Ok(r) => {
                    self.runner = r;
                    if !released {
                        released = self.runner.run_step(&[], &[], &self.ops.on_lost).is_ok();
                    }
                    match self.prepare() {
                        Ok(()) => return Ok(()),
                        Err(e) if self.lost_task(&e).is_some() => e.to_string(),
                        Err(TrainError::NotReady(m)) => m,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(TrainError::Recovery {
                    attempts: self.recoveries,
                    last: format!(
                        "task {task} lost ({cause}) and the model not back within {:?}: {last}",
                        self.config.recovery_timeout
                    ),
                });
            }
            std::thread::sleep(self.config.poll_interval);
        }
    }

    /// Chief: restore the latest checkpoint or initialize; others: wait until ready. Then the
    /// local init ops.
    fn prepare(&mut self) -> Result<(), R::Error> {
        let run = |r: &R, what: &str, targets: &[NodeId]| {
            r.run_step(&[], &[], targets)
                .map(|_| ())
                .map_err(|e| TrainError::step(what, e))
        };
        if self.config.is_chief {
            let restored = match &self.saver {
                Some(saver) => saver.restore_latest(&self.runner)?,
                None => None,
            };
            match restored {
                Some((prefix, skipped)) => {
                    let gs = self.read_step()?;
                    self.last_saved = Some(gs);
                    self.events.push(Event::Restored {
                        prefix,
                        global_step: gs,
                        skipped,
                    });
                }
                None => {
                    run(&self.runner, "initializing the variables", &[self.ops.init])?;
                    self.events.push(Event::Initialized);
                }
            }
            if !self.ops.chief_init.is_empty() {
                run(&self.runner, "the chief's init ops", &self.ops.chief_init)?;
            }
        } else {
            self.wait_ready()?;
        }
        if !self.ops.local_init.is_empty() {
            run(&self.runner, "the local init ops", &self.ops.local_init)?;
        }
        Ok(())
    }

    fn read_step(&self) -> Result<i64, R::Error> {
        let v = self
            .runner
            .run_step(&[], &[self.ops.global_step], &[])
            .map_err(|e| TrainError::step("reading the global step", e))?;
        scalar_i64(&v[0])
    }

    /// Polls the readiness flags until all are set or the deadline passes. A lost task reads
    /// as not ready (the chief may be restoring it).
    fn wait_ready(&mut self) -> Result<(), R::Error> {
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            let why = match self.runner.run_step(&[], &[self.ops.ready], &[]) {
                Ok(v) => {
                    let flags = v[0]
                        .to_vec::<bool>()
                        .map_err(|e| TrainError::InvalidArgument {
                            builder: "MonitoredSession".into(),
                            arg: "ready".into(),
                            message: format!("expected a bool vector: {e}"),
                        })?;
                    let missing: Vec<&str> = flags
                        .iter()
                        .zip(&self.ops.ready_names)
                        .filter(|(ok, _)| !**ok)
                        .map(|(_, n)| n.as_str())
                        .collect();
                    if missing.is_empty() {
                        let gs = self.read_step()?;
                        self.events.push(Event::Ready { global_step: gs });
                        return Ok(());
                    }
                    format!("variables not initialized: {}", missing.join(", "))
                }
                Err(e) => match self.runner.classify(&e) {
                    Failure::TaskLost(task) => format!("task {task} is unreachable: {e}"),
                    _ => return Err(TrainError::step("checking whether the model is ready", e)),
                },
            };
            if Instant::now() >= deadline {
                return Err(TrainError::NotReady(format!(
                    "the model was not ready within {:?} (is the chief running?): {why}",
                    self.config.ready_timeout
                )));
            }
            std::thread::sleep(self.config.poll_interval);
        }
    }
}

fn scalar_i64<E: std::error::Error>(t: &Tensor) -> Result<i64, E> {
    t.scalar_value::<i64>()
        .map_err(|e| TrainError::InvalidArgument {
            builder: "MonitoredSession".into(),
            arg: "global_step".into(),
            message: format!("expected an i64 scalar: {e}"),
        })
}
