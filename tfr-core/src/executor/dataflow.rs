//! The two run strategies of graphs without control flow: in order on the caller's thread,
//! or as a dataflow on the session's pool.

use super::keep_awake::{in_node, StepAwake};
use super::*;

impl Executable {
    pub(super) fn run_sequential(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        trace: Option<&StepTrace>,
    ) -> Result<Vec<Tensor>> {
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(self.num_values);
        values.resize_with(self.num_values, || None);
        // One context reused for every node: no per-node allocation or large moves.
        let mut ctx = KernelContext::new(SmallVec::new(), resources, feeds);
        for (i, node) in self.nodes.iter().enumerate() {
            ctx.reset_inputs();
            for r in &node.inputs {
                let v = if r.last {
                    values[r.slot].take()
                } else {
                    values[r.slot].clone()
                };
                match v {
                    Some(t) => ctx.push_input(t),
                    None => {
                        return Err(Self::kernel_error(
                            node,
                            KernelError::internal("an input value is missing"),
                        ))
                    }
                }
            }
            let span = Span::start(trace);
            node.kernel
                .compute(&mut ctx)
                .map_err(|e| Self::kernel_error(node, e))?;
            Self::finish_node(node, ctx.outputs())?;
            span.end(i as u32, 0, 0, || {
                outputs_bytes(ctx.outputs().iter().map(Some))
            });
            for (k, t) in ctx.drain_outputs().enumerate() {
                let s = node.out_base + k;
                if self.keep[s] {
                    values[s] = Some(t);
                }
            }
        }
        self.fetch_slots
            .iter()
            .map(|&s| {
                values[s].clone().ok_or_else(|| Error::InvalidArgument {
                    arg: "fetches".into(),
                    message: "a fetched value was not produced".into(),
                })
            })
            .collect()
    }

    pub(super) fn run_parallel(
        &self,
        feeds: &[Tensor],
        resources: &ResourceMgr,
        pool: &rayon::ThreadPool,
        trace: Option<&StepTrace>,
        poll: bool,
    ) -> Result<Vec<Tensor>> {
        let state = StepState {
            values: (0..self.num_values)
                .map(|s| Mutex::new((None, self.readers[s])))
                .collect(),
            pending: self
                .nodes
                .iter()
                .map(|n| AtomicU32::new(n.pending))
                .collect(),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            feeds,
            resources,
            trace,
            awake: StepAwake::new(self.nodes.len(), poll),
        };
        pool.scope(|scope| {
            state.awake.start(scope);
            for &r in &self.roots {
                let state = &state;
                scope.spawn(move |s| self.process(s, state, r));
            }
        });
        if let Some(e) = state.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        self.fetch_slots
            .iter()
            .map(|&s| {
                state.values[s]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .clone()
                    .ok_or_else(|| Error::InvalidArgument {
                        arg: "fetches".into(),
                        message: "a fetched value was not produced".into(),
                    })
            })
            .collect()
    }

    fn run_node(&self, state: &StepState<'_>, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let mut inputs: SmallVec<[Option<Tensor>; 4]> = SmallVec::with_capacity(node.inputs.len());
        for r in &node.inputs {
            let mut slot = state.values[r.slot]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            slot.1 -= 1;
            let v = if slot.1 == 0 && !self.fetched[r.slot] {
                slot.0.take()
            } else {
                slot.0.clone()
            };
            if v.is_none() {
                return Err(Self::kernel_error(
                    node,
                    KernelError::internal("an input value is missing"),
                ));
            }
            inputs.push(v);
        }
        let mut ctx = KernelContext::new(inputs, state.resources, state.feeds);
        let span = Span::start(state.trace);
        in_node(|| node.kernel.compute(&mut ctx)).map_err(|e| Self::kernel_error(node, e))?;
        let outputs = ctx.into_outputs();
        Self::finish_node(node, &outputs)?;
        span.end(i as u32, 0, 0, || outputs_bytes(outputs.iter().map(Some)));
        for (k, t) in outputs.into_iter().enumerate() {
            let s = node.out_base + k;
            if self.keep[s] {
                state.values[s].lock().unwrap_or_else(|p| p.into_inner()).0 = Some(t);
            }
        }
        Ok(())
    }

    /// Runs node `i`, then the nodes it makes ready: cheap ones and one expensive one inline,
    /// other expensive ones on the pool.
    fn process<'s>(&'s self, scope: &rayon::Scope<'s>, state: &'s StepState<'s>, i: usize) {
        let mut inline = vec![i];
        while let Some(n) = inline.pop() {
            if state.failed.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = self.run_node(state, n) {
                state.failed.store(true, Ordering::Relaxed);
                state.awake.finish();
                let mut slot = state.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                return;
            }
            state.awake.node_done();
            let mut kept_expensive = false;
            for &c in &self.nodes[n].consumers {
                if state.pending[c].fetch_sub(1, Ordering::AcqRel) == 1 {
                    if self.nodes[c].cheap || !kept_expensive {
                        kept_expensive |= !self.nodes[c].cheap;
                        inline.push(c);
                    } else {
                        scope.spawn(move |s| self.process(s, state, c));
                    }
                }
            }
        }
    }
}

struct StepState<'a> {
    /// Per slot: the value and how many reads remain.
    values: Vec<Mutex<(Option<Tensor>, u32)>>,
    pending: Vec<AtomicU32>,
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    feeds: &'a [Tensor],
    resources: &'a ResourceMgr,
    trace: Option<&'a StepTrace>,
    awake: StepAwake,
}
