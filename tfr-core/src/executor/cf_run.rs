//! Running graphs with control flow: the frame-aware dataflow machine (sequential or on the
//! pool), its transfers and its forwarding nodes.

use super::*;

/// A node made ready, with its inputs taken (parallel machine).
pub(super) struct Job {
    t: Task,
    dead: bool,
    inputs: SmallVec<[Option<Tensor>; 4]>,
}

pub(super) struct CfShared<'a, 'p> {
    machine: Mutex<Machine<'p>>,
    arrays: TensorArrays,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    feeds: &'a [Tensor],
    resources: &'a ResourceMgr,
    trace: Option<&'a StepTrace>,
}

pub(super) use crate::kernels::control_flow_ops::{TaOp, TensorArrays};
use crate::kernels::sendrecv_ops::StepTransfers;

impl Executable {
    /// Computes node `t` of a control-flow program on `inputs` (`None` = dead) into `outs`
    /// (`None` = dead). A dead node produces dead outputs without running.
    #[allow(clippy::too_many_arguments)]
    fn cf_compute(
        &self,
        prog: &CfProgram,
        t: Task,
        dead: bool,
        inputs: &mut SmallVec<[Option<Tensor>; 4]>,
        ctx: &mut KernelContext<'_>,
        outs: &mut SmallVec<[Option<Tensor>; 2]>,
        arrays: &TensorArrays,
    ) -> Result<()> {
        outs.clear();
        let node = &prog.nodes[t.node as usize];
        let en = &self.nodes[t.node as usize];
        let n_out = en.out_dtypes.len();
        let internal = |m: &str| Self::kernel_error(en, KernelError::internal(m));
        // A write that keeps dead values runs when only its value is dead.
        let dead_write = matches!(&node.kind, CfKind::TensorArray(ta)
            if ta.op == TaOp::Write && ta.keep_dead
                && [0usize, 1, 3].iter().all(|&i| inputs.get(i).is_some_and(Option::is_some)));
        if dead && !dead_write {
            outs.extend((0..n_out).map(|_| None));
            return Ok(());
        }
        match &node.kind {
            CfKind::Merge { .. }
            | CfKind::Switch
            | CfKind::LoopCond
            | CfKind::Enter { .. }
            | CfKind::Exit { .. }
            | CfKind::NextIteration
            | CfKind::Forward => {
                return forward_compute(prog, t, false, inputs, outs);
            }
            CfKind::Send(_) | CfKind::Recv(_) => {
                return Err(internal(
                    "transfers run on the sequential machine (cf_transfer)",
                ));
            }
            CfKind::TensorArray(ta) => {
                let r = arrays
                    .run(ta, inputs, &prog.flow)
                    .map_err(|e| Self::kernel_error(en, e))?;
                outs.extend(r);
            }
            CfKind::Kernel => {
                ctx.reset_inputs();
                for v in inputs.drain(..) {
                    match v {
                        Some(v) => ctx.push_input(v),
                        None => return Err(internal("an input value is missing")),
                    }
                }
                en.kernel
                    .compute(ctx)
                    .map_err(|e| Self::kernel_error(en, e))?;
                Self::finish_node(en, ctx.outputs())?;
                outs.extend(ctx.drain_outputs().map(Some));
            }
        }
        Ok(())
    }

    fn cf_fetch(prog: &CfProgram, fetched: Vec<Entry>) -> Result<Vec<Tensor>> {
        fetched
            .into_iter()
            .enumerate()
            .map(|(k, e)| {
                let name = prog.fetch_names.get(k).map_or("?", String::as_str);
                match e {
                    Entry::Live(t) => Ok(t),
                    Entry::Dead => Err(Error::InvalidArgument {
                        arg: "fetches".into(),
                        message: format!(
                            "`{name}` is dead in this step: it lies on a branch that did not run"
                        ),
                    }),
                    Entry::Empty => Err(Error::InvalidArgument {
                        arg: "fetches".into(),
                        message: format!("`{name}` was not produced"),
                    }),
                }
            })
            .collect()
    }

    pub(super) fn run_cf_sequential(
        &self,
        prog: &CfProgram,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let arrays = TensorArrays::default();
        let mut m = Machine::new(prog);
        m.fast = Some(FastCtx {
            exec: self,
            arrays: &arrays,
            resources,
            feeds,
            trace,
        });
        let mut ready: Vec<Task> = Vec::with_capacity(64);
        m.start(&mut ready);
        let mut ctx = KernelContext::new(SmallVec::new(), resources, feeds);
        let mut inputs: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
        let mut outs: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
        let mut transfers: StepTransfers<Task> = StepTransfers::default();
        loop {
            while let Some(t) = ready.pop() {
                let dead = m.take_inputs(t, &mut inputs);
                let span = Span::start(trace.filter(|_| !dead && prog.timed(t.node)));
                let transfer = if prog.has_transfers {
                    cf_transfer(prog, &m, &mut transfers, t, dead, &mut inputs, resources)?
                } else {
                    Transfer::NotOne
                };
                match transfer {
                    Transfer::NotOne => {
                        self.cf_compute(prog, t, dead, &mut inputs, &mut ctx, &mut outs, &arrays)?
                    }
                    Transfer::Done(v) => {
                        outs.clear();
                        outs.extend(v);
                    }
                    Transfer::Parked => continue,
                }
                span.end(t.node, prog.nodes[t.node as usize].frame, t.iter, || {
                    outputs_bytes(outs.iter().map(Option::as_ref))
                });
                m.propagate(t, dead, &mut outs, &mut ready);
                m.finish(t, &mut ready);
                if let Some(e) = m.error.take() {
                    return Err(e);
                }
            }
            if !transfers.waiting() {
                break;
            }
            // Nothing else to run: wait for parked receives (or the step's abort).
            let waited = transfers.wait().map_err(|e| {
                let n = transfers.parked().next().map_or(u32::MAX, |t| t.node);
                cf_node_error(prog, n, e)
            });
            for (t, v) in waited? {
                outs.clear();
                let dead = v.is_none();
                outs.push(v);
                m.propagate(t, dead, &mut outs, &mut ready);
                m.finish(t, &mut ready);
                if let Some(e) = m.error.take() {
                    return Err(e);
                }
            }
        }
        self.cf_stats.record(&m.counts, m.frames.len());
        Self::cf_fetch(prog, m.fetched)
    }

    pub(super) fn run_cf_parallel(
        &self,
        prog: &CfProgram,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: &rayon::ThreadPool,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let mut m = Machine::new(prog);
        let mut ready = Vec::new();
        m.start(&mut ready);
        let jobs: Vec<Job> = ready
            .drain(..)
            .map(|t| {
                let mut inputs = SmallVec::new();
                let dead = m.take_inputs(t, &mut inputs);
                Job { t, dead, inputs }
            })
            .collect();
        let sh = CfShared {
            machine: Mutex::new(m),
            arrays: TensorArrays::default(),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            feeds,
            resources,
            trace,
        };
        pool.scope(|s| {
            let sh = &sh;
            for j in jobs {
                s.spawn(move |s| self.cf_worker(prog, s, sh, j));
            }
        });
        if let Some(e) = sh.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let m = sh.machine.into_inner().unwrap_or_else(|p| p.into_inner());
        self.cf_stats.record(&m.counts, m.frames.len());
        Self::cf_fetch(prog, m.fetched)
    }

    /// Runs `job` and the nodes it makes ready: cheap ones and one expensive one on this
    /// thread, other expensive ones on the pool.
    fn cf_worker<'s, 'a: 's, 'p: 's>(
        &'s self,
        prog: &'s CfProgram,
        scope: &rayon::Scope<'s>,
        sh: &'s CfShared<'a, 'p>,
        job: Job,
    ) {
        let mut local = vec![job];
        let mut ctx = KernelContext::new(SmallVec::new(), sh.resources, sh.feeds);
        let mut outs: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
        let mut ready: Vec<Task> = Vec::new();
        while let Some(mut j) = local.pop() {
            if sh.failed.load(Ordering::Relaxed) {
                return;
            }
            let span = Span::start(sh.trace.filter(|_| !j.dead && prog.timed(j.t.node)));
            let r = self.cf_compute(
                prog,
                j.t,
                j.dead,
                &mut j.inputs,
                &mut ctx,
                &mut outs,
                &sh.arrays,
            );
            if let Err(e) = r {
                sh.failed.store(true, Ordering::Relaxed);
                let mut slot = sh.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                return;
            }
            span.end(
                j.t.node,
                prog.nodes[j.t.node as usize].frame,
                j.t.iter,
                || outputs_bytes(outs.iter().map(Option::as_ref)),
            );
            let mut m = sh.machine.lock().unwrap_or_else(|p| p.into_inner());
            m.propagate(j.t, j.dead, &mut outs, &mut ready);
            m.finish(j.t, &mut ready);
            if let Some(e) = m.error.take() {
                sh.failed.store(true, Ordering::Relaxed);
                let mut slot = sh.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                return;
            }
            let mut kept_expensive = false;
            for t in ready.drain(..) {
                let mut inputs = SmallVec::new();
                let dead = m.take_inputs(t, &mut inputs);
                let next = Job { t, dead, inputs };
                let cheap = dead || self.nodes[t.node as usize].cheap;
                if cheap || !kept_expensive {
                    kept_expensive |= !cheap;
                    local.push(next);
                } else {
                    scope.spawn(move |s| self.cf_worker(prog, s, sh, next));
                }
            }
        }
    }
}

/// What [`cf_transfer`] did with a node.
enum Transfer {
    /// Not a frame-aware transfer: the caller computes it.
    NotOne,
    /// A send (no outputs) or a receive whose value was there (`None`: dead).
    Done(Option<Option<Tensor>>),
    /// A receive waiting for its value; it comes back from `StepTransfers::wait`.
    Parked,
}

/// Runs node `t` when it is a frame-aware `_Send` or `_Recv`: the key names the frame instance
/// and iteration; a dead send sends "dead", a receive dead by its control inputs receives
/// nothing and is dead.
fn cf_transfer(
    prog: &CfProgram,
    m: &Machine<'_>,
    transfers: &mut StepTransfers<Task>,
    t: Task,
    dead: bool,
    inputs: &mut SmallVec<[Option<Tensor>; 4]>,
    resources: &ResourceMgr,
) -> Result<Transfer> {
    let key = |name: &str| {
        let frame = m.frames[t.frame as usize].as_ref().map_or(0, |f| f.key);
        crate::kernels::sendrecv_ops::transfer_key(name, frame, t.iter)
    };
    let err = |e| cf_node_error(prog, t.node, e);
    match &prog.nodes[t.node as usize].kind {
        CfKind::Send(name) => {
            if dead {
                if let Some(v) = inputs.first_mut() {
                    *v = None;
                }
            }
            transfers.send(&key(name), inputs, resources).map_err(err)?;
            Ok(Transfer::Done(None))
        }
        CfKind::Recv(_) if dead => Ok(Transfer::Done(Some(None))),
        CfKind::Recv(name) => Ok(
            match transfers
                .recv(&key(name), inputs, resources, t)
                .map_err(err)?
            {
                Some((_, v)) => Transfer::Done(Some(v)),
                None => Transfer::Parked,
            },
        ),
        _ => Ok(Transfer::NotOne),
    }
}

/// The error of node `n` of a control-flow program, run by the machine itself.
pub(super) fn cf_node_error(prog: &CfProgram, n: u32, e: KernelError) -> Error {
    let (node, op) = prog.names.get(n as usize).cloned().unwrap_or_default();
    Error::Kernel {
        node,
        op,
        code: e.code,
        message: e.message,
    }
}

/// Computes a forwarding node (Merge, Switch, LoopCond, Enter, Exit, NextIteration, Identity):
/// moves its input to the right output. A dead node has dead outputs.
pub(super) fn forward_compute(
    prog: &CfProgram,
    t: Task,
    dead: bool,
    inputs: &mut SmallVec<[Option<Tensor>; 4]>,
    outs: &mut SmallVec<[Option<Tensor>; 2]>,
) -> Result<()> {
    outs.clear();
    let node = &prog.nodes[t.node as usize];
    if dead {
        outs.extend((0..node.out_edges.len()).map(|_| None));
        return Ok(());
    }
    let bool_of = |v: Option<&Tensor>, what: &str| {
        v.and_then(|p| p.as_slice::<bool>().ok())
            .and_then(|p| p.first().copied())
            .ok_or_else(|| {
                cf_node_error(
                    prog,
                    t.node,
                    KernelError::invalid(format!("{what} must be a bool scalar")),
                )
            })
    };
    match &node.kind {
        CfKind::Merge { .. } => {
            let (i, v) = inputs
                .iter_mut()
                .enumerate()
                .find_map(|(i, v)| v.take().map(|v| (i, v)))
                .ok_or_else(|| {
                    cf_node_error(
                        prog,
                        t.node,
                        KernelError::internal("a live Merge has no live input"),
                    )
                })?;
            outs.push(Some(v));
            let wanted = node.out_edges.get(1).is_some_and(|e| !e.is_empty());
            outs.push(wanted.then(|| Tensor::scalar(i as i32)));
        }
        CfKind::Switch => {
            let pred = bool_of(inputs.get(1).and_then(Option::as_ref), "pred")?;
            let data = inputs.first_mut().and_then(Option::take);
            if pred {
                outs.push(None);
                outs.push(data);
            } else {
                outs.push(data);
                outs.push(None);
            }
        }
        CfKind::LoopCond => {
            let v = inputs.first_mut().and_then(Option::take);
            let holds = bool_of(v.as_ref(), "the loop predicate")?;
            let frame = &prog.frames[node.frame as usize];
            if let Some(max) = frame.maximum_iterations {
                if holds && t.iter >= max {
                    return Err(cf_node_error(
                        prog,
                        t.node,
                        KernelError::out_of_range(format!(
                            "while loop `{}` exceeded maximum_iterations = {max}: its \
                             predicate still holds after {max} iterations",
                            frame.name
                        )),
                    ));
                }
            }
            outs.push(v);
        }
        _ => outs.push(inputs.first_mut().and_then(Option::take)),
    }
    Ok(())
}
