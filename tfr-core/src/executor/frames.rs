//! One step's state of the control-flow machine: frame instances, iterations, dead values.

// A graph with control-flow or TensorArray ops runs on a dataflow machine keyed by tags: every
// value lives in (frame instance, iteration). Static analysis (`CfProgram::build`) gives each
// node the frame *template* it runs in (an Enter runs in its input's frame and sends its output
// into the child frame; an Exit runs in the loop frame and sends its output to the parent),
// its index in that template's per-iteration state, and its input slots. Per step, each frame
// instance (created by the first Enter that fires in a parent iteration) keeps a window of live
// iterations, each with a pending count, a dead-input count and an input slot per node:
// - a value produced in (f, i) goes to its consumers' slots in (f, i); an Enter's to (child, 0)
//   (a constant Enter's to every iteration of the child: a loop invariant); an Exit's to the
//   parent's (frame, iteration); a NextIteration's to (f, i + 1), which starts that iteration
//   unless `parallel_iterations` are already live (then it waits for the oldest to finish);
// - a node whose pending count reaches 0 runs, unless an input is dead: then it produces dead
//   outputs without running. A Switch sends its input to one output and a dead value to the
//   other; a Merge runs on its first live input and is dead only when all are; a dead value
//   reaching an Exit is dropped (a frame's Exits that never saw a live value send dead values
//   to the parent when the frame finishes); a dead NextIteration starts no iteration, but
//   reaches the next one when a live value starts it (so its Merge is dead, not waiting);
// - an iteration is done when nothing in it is ready or running, no child frame is open, the
//   iteration before it is done and (iteration 0) every Enter of the frame has fired; a frame
//   is done when all its iterations are.

use super::cf_program::{CfKind, CfProgram, Edge, CONTROL, FETCH};
use super::cf_stats::StepCounts;
use super::{forward_compute, Executable};
use crate::error::Error;
use crate::kernels::control_flow_ops::TensorArrays;
use crate::resource::ResourceMgr;
use crate::tensor::Tensor;
use smallvec::SmallVec;
use std::collections::HashMap;

/// A value in an input slot.
#[derive(Clone, Debug, Default)]
pub(super) enum Entry {
    #[default]
    Empty,
    Dead,
    Live(Tensor),
}

/// The per-node state of one iteration: pending inputs and dead inputs.
pub(super) const LIVE_BIT: u32 = 1 << 31;

pub(super) struct IterState {
    pub(super) pending: Vec<u32>,
    /// Non-Merge nodes: how many dead inputs arrived. Merge: dead data inputs, plus `LIVE_BIT`
    /// once a live input arrived.
    pub(super) dead: Vec<u32>,
    pub(super) slots: Vec<Entry>,
    /// Nodes of this iteration that are ready or running.
    pub(super) outstanding: u32,
    /// Child frames opened from this iteration and not finished.
    pub(super) outstanding_frames: u32,
}

pub(super) struct FrameInst {
    pub(super) template: u32,
    pub(super) parent: u32,
    pub(super) parent_iter: u64,
    pub(super) iters: std::collections::VecDeque<IterState>,
    /// Iteration number of `iters[0]`.
    pub(super) first_iter: u64,
    /// Number of the newest iteration.
    pub(super) last_iter: u64,
    pub(super) pending_enters: u32,
    /// NextIteration values waiting for room under `parallel_iterations`.
    pub(super) deferred: Vec<(u32, Tensor)>,
    /// NextIteration nodes of the newest iteration that sent a dead value: given to the next
    /// iteration if a live value starts it, dropped if none does.
    pub(super) dead_next: Vec<u32>,
    /// Constant Enter values, given to every iteration.
    pub(super) invariants: Vec<(u32, Entry)>,
    pub(super) exits_delivered: Vec<bool>,
    /// For a loop run by its plan: the values of its Enters, by ordinal.
    pub(super) enter_values: Vec<Entry>,
    /// Identifies this instance in transfer keys: from the parent's key, the parent's
    /// iteration and the frame's name (0 for the root; only computed with transfers).
    pub(super) key: u64,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Task {
    pub(super) node: u32,
    pub(super) frame: u32,
    pub(super) iter: u64,
}

/// One step's state of the control-flow machine.
pub(super) struct Machine<'p> {
    pub(super) prog: &'p CfProgram,
    pub(super) frames: Vec<Option<FrameInst>>,
    pub(super) free_frames: Vec<u32>,
    pub(super) children: HashMap<(u32, u64, u32), u32>,
    /// Recycled iteration states, per template.
    pub(super) pool: Vec<Vec<IterState>>,
    pub(super) fetched: Vec<Entry>,
    /// The first error of a node run inline.
    pub(super) error: Option<Error>,
    /// Set in the sequential machine: runs simple loops by their plans.
    pub(super) fast: Option<FastCtx<'p>>,
    pub(super) counts: StepCounts,
}

/// What the sequential machine needs to run kernels itself (simple loops' plans).
pub(super) struct FastCtx<'p> {
    pub(super) exec: &'p Executable,
    pub(super) arrays: &'p TensorArrays,
    pub(super) resources: &'p ResourceMgr,
    pub(super) feeds: &'p [Tensor],
    /// The step's timeline, when traced.
    pub(super) trace: Option<&'p super::StepTrace>,
}

impl<'p> Machine<'p> {
    pub(super) fn new(prog: &'p CfProgram) -> Machine<'p> {
        Machine {
            prog,
            frames: Vec::new(),
            free_frames: Vec::new(),
            children: HashMap::new(),
            pool: (0..prog.frames.len()).map(|_| Vec::new()).collect(),
            fetched: vec![Entry::Empty; prog.num_fetches],
            error: None,
            fast: None,
            counts: StepCounts::default(),
        }
    }

    pub(super) fn new_iter(&mut self, template: u32) -> IterState {
        let t = &self.prog.frames[template as usize];
        match self.pool[template as usize].pop() {
            Some(mut it) => {
                it.pending.copy_from_slice(&t.init_pending);
                it.dead.iter_mut().for_each(|d| *d = 0);
                it.outstanding = 0;
                it.outstanding_frames = 0;
                it
            }
            None => {
                self.counts.iteration_states += 1;
                IterState {
                    pending: t.init_pending.clone(),
                    dead: vec![0; t.num_nodes],
                    slots: vec![Entry::Empty; t.num_slots],
                    outstanding: 0,
                    outstanding_frames: 0,
                }
            }
        }
    }

    pub(super) fn recycle(&mut self, template: u32, mut it: IterState) {
        for s in &mut it.slots {
            if !matches!(s, Entry::Empty) {
                *s = Entry::Empty;
            }
        }
        self.pool[template as usize].push(it);
    }

    pub(super) fn new_frame(&mut self, template: u32, parent: u32, parent_iter: u64) -> u32 {
        let first = self.new_iter(template);
        if template != 0 {
            self.counts.frames += 1;
            self.counts.iterations += 1;
        }
        let t = &self.prog.frames[template as usize];
        let key = if self.prog.has_transfers && template != 0 {
            let parent_key = self.frames[parent as usize].as_ref().map_or(0, |p| p.key);
            crate::kernels::sendrecv_ops::frame_key(parent_key, parent_iter, t.name_hash)
        } else {
            0
        };
        let inst = FrameInst {
            template,
            parent,
            parent_iter,
            iters: std::collections::VecDeque::from([first]),
            first_iter: 0,
            last_iter: 0,
            pending_enters: t.num_enters,
            deferred: Vec::new(),
            dead_next: Vec::new(),
            invariants: Vec::new(),
            exits_delivered: vec![false; t.exits.len()],
            enter_values: Vec::new(),
            key,
        };
        match self.free_frames.pop() {
            Some(id) => {
                self.frames[id as usize] = Some(inst);
                id
            }
            None => {
                self.frames.push(Some(inst));
                (self.frames.len() - 1) as u32
            }
        }
    }

    #[inline]
    pub(super) fn inst(&mut self, f: u32) -> &mut FrameInst {
        self.frames[f as usize]
            .as_mut()
            .expect("tasks only name live frames")
    }

    #[inline]
    pub(super) fn iter_mut(&mut self, f: u32, k: u64) -> &mut IterState {
        let inst = self.inst(f);
        let idx = (k - inst.first_iter) as usize;
        &mut inst.iters[idx]
    }

    /// Starts the root frame; its ready nodes go to `ready`.
    pub(super) fn start(&mut self, ready: &mut Vec<Task>) {
        let root = self.new_frame(0, 0, 0);
        for &r in &self.prog.roots {
            ready.push(Task {
                node: r,
                frame: root,
                iter: 0,
            });
        }
        self.iter_mut(root, 0).outstanding = self.prog.roots.len() as u32;
    }

    /// Moves node `t`'s inputs out of its slots into `inputs` (`None` for dead ones). Returns
    /// whether the node is dead (it then produces dead outputs without running).
    pub(super) fn take_inputs(
        &mut self,
        t: Task,
        inputs: &mut SmallVec<[Option<Tensor>; 4]>,
    ) -> bool {
        let prog = self.prog;
        let node = &prog.nodes[t.node as usize];
        let it = self.iter_mut(t.frame, t.iter);
        let local = node.local as usize;
        let base = node.slot_base as usize;
        inputs.clear();
        match node.kind {
            CfKind::Merge { .. } => {
                let live = it.dead[local] & LIVE_BIT != 0;
                for s in &mut it.slots[base..base + node.num_inputs as usize] {
                    match std::mem::take(s) {
                        Entry::Live(v) => inputs.push(Some(v)),
                        _ => inputs.push(None),
                    }
                }
                !live
            }
            _ => {
                let dead = it.dead[local] != 0;
                for s in &mut it.slots[base..base + node.num_inputs as usize] {
                    match std::mem::take(s) {
                        Entry::Live(v) => inputs.push(Some(v)),
                        _ => inputs.push(None),
                    }
                }
                dead
            }
        }
    }

    /// Writes `value` into the consumers `edges` in iteration `k` of frame `f`, making ready
    /// the ones whose inputs are all there.
    pub(super) fn deliver(
        &mut self,
        f: u32,
        k: u64,
        edges: &[Edge],
        value: Entry,
        ready: &mut Vec<Task>,
    ) {
        let prog = self.prog;
        let Some((last, rest)) = edges.split_last() else {
            return;
        };
        for e in rest {
            self.deliver_one(prog, f, k, *e, value.clone(), ready);
        }
        self.deliver_one(prog, f, k, *last, value, ready);
    }

    #[inline]
    pub(super) fn deliver_one(
        &mut self,
        prog: &'p CfProgram,
        f: u32,
        k: u64,
        e: Edge,
        value: Entry,
        ready: &mut Vec<Task>,
    ) {
        if e.node == FETCH {
            self.fetched[e.slot as usize] = value;
            return;
        }
        let dst = &prog.nodes[e.node as usize];
        let dead = matches!(value, Entry::Dead);
        if dead && matches!(dst.kind, CfKind::Exit { .. }) {
            // Dropped: a dead Exit is settled when its frame finishes.
            return;
        }
        let it = self.iter_mut(f, k);
        let l = dst.local as usize;
        let fire = match dst.kind {
            CfKind::Merge { forward, back } if e.slot != CONTROL => {
                if dead {
                    it.dead[l] += 1;
                    let expected = if back == 0 || k == 0 { forward } else { back };
                    if it.dead[l] & !LIVE_BIT == expected && it.dead[l] & LIVE_BIT == 0 {
                        it.pending[l] -= 1;
                        it.pending[l] == 0
                    } else {
                        false
                    }
                } else if it.dead[l] & LIVE_BIT == 0 {
                    it.dead[l] |= LIVE_BIT;
                    it.slots[e.slot as usize] = value;
                    it.pending[l] -= 1;
                    it.pending[l] == 0
                } else {
                    false
                }
            }
            CfKind::Merge { .. } => {
                it.pending[l] -= 1;
                it.pending[l] == 0
            }
            _ => {
                if dead {
                    it.dead[l] += 1;
                }
                if e.slot != CONTROL {
                    it.slots[e.slot as usize] = value;
                }
                it.pending[l] -= 1;
                it.pending[l] == 0
            }
        };
        if fire {
            if dst.inline {
                self.run_inline(e.node, f, k, ready);
            } else {
                it.outstanding += 1;
                ready.push(Task {
                    node: e.node,
                    frame: f,
                    iter: k,
                });
            }
        }
    }

    /// Runs a forwarding node whose inputs are all there, and sends its outputs on.
    pub(super) fn run_inline(&mut self, node: u32, f: u32, k: u64, ready: &mut Vec<Task>) {
        if self.error.is_some() {
            return;
        }
        let t = Task {
            node,
            frame: f,
            iter: k,
        };
        let mut inputs: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
        let mut outs: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
        let dead = self.take_inputs(t, &mut inputs);
        match forward_compute(self.prog, t, dead, &mut inputs, &mut outs) {
            Ok(()) => self.propagate(t, dead, &mut outs, ready),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Sends node `t`'s outputs (`None` = dead) on, by the node's kind.
    pub(super) fn propagate(
        &mut self,
        t: Task,
        dead: bool,
        outs: &mut SmallVec<[Option<Tensor>; 2]>,
        ready: &mut Vec<Task>,
    ) {
        let prog = self.prog;
        let node = &prog.nodes[t.node as usize];
        let entry = |o: Option<Tensor>| o.map_or(Entry::Dead, Entry::Live);
        match node.kind {
            CfKind::Enter {
                constant,
                child,
                ordinal,
            } => {
                let v = entry(outs.pop().flatten());
                let cf = self.child_frame(t.frame, t.iter, child);
                self.inst(cf).pending_enters -= 1;
                if self.fast.is_some() && prog.frames[child as usize].plan.is_some() {
                    // A simple loop runs as one imperative loop once all its inputs are here.
                    let inst = self.inst(cf);
                    if inst.enter_values.is_empty() {
                        inst.enter_values =
                            vec![Entry::Empty; prog.frames[child as usize].num_enters as usize];
                    }
                    inst.enter_values[ordinal as usize] = v;
                    if inst.pending_enters == 0 {
                        self.run_plan(cf, ready);
                    }
                    return;
                }
                if constant {
                    let (first, last) = {
                        let inst = self.inst(cf);
                        inst.invariants.push((t.node, v.clone()));
                        (inst.first_iter, inst.last_iter)
                    };
                    for k in first..=last {
                        self.deliver(cf, k, &node.out_edges[0], v.clone(), ready);
                        self.deliver(cf, k, &node.control_edges, v.clone(), ready);
                    }
                } else {
                    self.deliver(cf, 0, &node.control_edges, v.clone(), ready);
                    self.deliver(cf, 0, &node.out_edges[0], v, ready);
                }
                if self.inst(cf).pending_enters == 0 {
                    self.cleanup(cf, ready);
                }
            }
            CfKind::Exit { ordinal } => {
                if let Some(v) = outs.pop().flatten() {
                    let inst = self.inst(t.frame);
                    inst.exits_delivered[ordinal as usize] = true;
                    let (p, pk) = (inst.parent, inst.parent_iter);
                    self.deliver(p, pk, &node.control_edges, Entry::Live(v.clone()), ready);
                    self.deliver(p, pk, &node.out_edges[0], Entry::Live(v), ready);
                }
            }
            CfKind::NextIteration => {
                let Some(v) = outs.pop().flatten() else {
                    self.dead_back_edge(t, ready);
                    return;
                };
                let next = t.iter + 1;
                let template = self.inst(t.frame).template;
                let limit = prog.frames[template as usize].parallel_iterations;
                let inst = self.inst(t.frame);
                if next <= inst.last_iter {
                    self.deliver(t.frame, next, &node.out_edges[0], Entry::Live(v), ready);
                } else if inst.iters.len() >= limit {
                    inst.deferred.push((t.node, v));
                } else {
                    self.start_iteration(t.frame, ready);
                    self.deliver(t.frame, next, &node.out_edges[0], Entry::Live(v), ready);
                }
            }
            _ => {
                // A control edge is dead when the node is (a Switch: when both outputs are).
                let control_dead = dead || (!outs.is_empty() && outs.iter().all(Option::is_none));
                for (i, o) in outs.drain(..).enumerate() {
                    if let Some(edges) = node.out_edges.get(i) {
                        if !edges.is_empty() {
                            self.deliver(t.frame, t.iter, edges, entry(o), ready);
                        }
                    }
                }
                if !node.control_edges.is_empty() {
                    let v = if control_dead {
                        Entry::Dead
                    } else {
                        Entry::Live(prog.flow.clone())
                    };
                    self.deliver(t.frame, t.iter, &node.control_edges, v, ready);
                }
            }
        }
    }

    /// A dead value from the NextIteration of iteration `t.iter`: it reaches the next
    /// iteration's Merge (which is dead when all its back inputs are) only if a live value
    /// starts that iteration; a dead value alone starts none. Dropping it instead would leave
    /// that Merge, and everything after it, waiting forever: a loop nested there would miss an
    /// Enter and never finish, and with it this iteration and the `parallel_iterations` window.
    fn dead_back_edge(&mut self, t: Task, ready: &mut Vec<Task>) {
        let prog = self.prog;
        let next = t.iter + 1;
        let inst = self.inst(t.frame);
        if next <= inst.last_iter {
            let edges = &prog.nodes[t.node as usize].out_edges[0];
            self.deliver(t.frame, next, edges, Entry::Dead, ready);
        } else {
            inst.dead_next.push(t.node);
        }
    }

    /// Starts the next iteration of frame `f`, giving it the loop invariants and the dead back
    /// edges of the iteration before.
    pub(super) fn start_iteration(&mut self, f: u32, ready: &mut Vec<Task>) {
        self.counts.iterations += 1;
        let template = self.inst(f).template;
        let it = self.new_iter(template);
        let prog = self.prog;
        let inst = self.inst(f);
        inst.iters.push_back(it);
        inst.last_iter += 1;
        let k = inst.last_iter;
        let invariants = std::mem::take(&mut inst.invariants);
        let mut dead_next = std::mem::take(&mut inst.dead_next);
        for (n, v) in &invariants {
            let node = &prog.nodes[*n as usize];
            self.deliver(f, k, &node.out_edges[0], v.clone(), ready);
            self.deliver(f, k, &node.control_edges, v.clone(), ready);
        }
        for &n in &dead_next {
            let edges = &prog.nodes[n as usize].out_edges[0];
            self.deliver(f, k, edges, Entry::Dead, ready);
        }
        dead_next.clear();
        let inst = self.inst(f);
        inst.invariants = invariants;
        inst.dead_next = dead_next;
    }

    pub(super) fn child_frame(&mut self, f: u32, k: u64, template: u32) -> u32 {
        if let Some(&c) = self.children.get(&(f, k, template)) {
            return c;
        }
        let c = self.new_frame(template, f, k);
        self.children.insert((f, k, template), c);
        self.iter_mut(f, k).outstanding_frames += 1;
        c
    }

    /// Node `t` is done: its iteration may be, and with it its frame.
    pub(super) fn finish(&mut self, t: Task, ready: &mut Vec<Task>) {
        let it = self.iter_mut(t.frame, t.iter);
        it.outstanding -= 1;
        if it.outstanding == 0 && it.outstanding_frames == 0 {
            self.cleanup(t.frame, ready);
        }
    }

    pub(super) fn iteration_done(&self, f: u32) -> bool {
        let Some(inst) = self.frames[f as usize].as_ref() else {
            return false;
        };
        match inst.iters.front() {
            Some(it) => {
                it.outstanding == 0
                    && it.outstanding_frames == 0
                    && (inst.first_iter > 0 || inst.pending_enters == 0)
                    && f != 0
            }
            None => false,
        }
    }

    /// Retires the finished iterations at the front of frame `f` (starting deferred ones) and
    /// the frame itself when it is finished.
    pub(super) fn cleanup(&mut self, f: u32, ready: &mut Vec<Task>) {
        while self.iteration_done(f) {
            let inst = self.inst(f);
            let template = inst.template;
            let Some(it) = inst.iters.pop_front() else {
                break;
            };
            inst.first_iter += 1;
            self.recycle(template, it);
            let inst = self.inst(f);
            if !inst.deferred.is_empty() {
                let deferred = std::mem::take(&mut inst.deferred);
                self.start_iteration(f, ready);
                let k = self.inst(f).last_iter;
                for (n, v) in deferred {
                    let node = &self.prog.nodes[n as usize];
                    self.deliver(f, k, &node.out_edges[0], Entry::Live(v), ready);
                }
            }
        }
        let finished = {
            let inst = self.frames[f as usize].as_ref();
            inst.is_some_and(|i| {
                f != 0 && i.iters.is_empty() && i.deferred.is_empty() && i.pending_enters == 0
            })
        };
        if finished {
            self.delete_frame(f, ready);
        }
    }

    pub(super) fn delete_frame(&mut self, f: u32, ready: &mut Vec<Task>) {
        let Some(inst) = self.frames[f as usize].take() else {
            return;
        };
        self.free_frames.push(f);
        self.children
            .remove(&(inst.parent, inst.parent_iter, inst.template));
        let prog = self.prog;
        let t = &prog.frames[inst.template as usize];
        let (p, pk) = (inst.parent, inst.parent_iter);
        for (ordinal, &x) in t.exits.iter().enumerate() {
            if !inst.exits_delivered[ordinal] {
                let node = &prog.nodes[x as usize];
                self.deliver(p, pk, &node.control_edges, Entry::Dead, ready);
                self.deliver(p, pk, &node.out_edges[0], Entry::Dead, ready);
            }
        }
        let it = self.iter_mut(p, pk);
        it.outstanding_frames -= 1;
        if it.outstanding == 0 && it.outstanding_frames == 0 {
            self.cleanup(p, ready);
        }
    }
}
