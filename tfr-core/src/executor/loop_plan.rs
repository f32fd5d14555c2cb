//! Simple loops run as imperative loops (loop plans and the scalar register path), split
//! from `executor.rs`.

use super::*;
use tfr_graph::fusion::ElementwiseProgram;

mod jit;
mod jit_ops;
mod scalar_loop;
pub use jit::{loop_machine_code, set_loop_machine_code};
use scalar_loop::{scalar_loop, CompiledLoop};

// ---- simple loops as imperative loops ------------------------------------------------------------
//
// A loop frame with no nested frames and no conds (what `while_loop`, `map_fn`, `scan` and
// their gradients build when their functions hold plain ops) has a fixed shape: per loop
// variable Enter -> Merge -> Switch(LoopCond) -> Identity / Exit, and NextIteration back. The
// sequential machine runs such a frame, once all its Enters have fired, as an imperative loop:
// its forwarding nodes become aliases of a variable's value, its kernels run in order, the
// kernels before the predicate ("pre") every iteration and the others ("body") while it holds.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum ValRef {
    /// Loop variable j.
    Var(u32),
    /// Loop invariant k (a constant Enter's value).
    Inv(u32),
    /// Output value i of a kernel of the loop.
    Val(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Pre,
    Body,
    ToExit,
}

pub(super) struct PlanStep {
    node: u32,
    /// Inputs, each with whether this read may take the value (its last use).
    inputs: SmallVec<[(ValRef, bool); 4]>,
    out_base: u32,
    n_out: u32,
    /// A kernel with a scalar fast path and one output (set once the kernels are built).
    scalar: bool,
    /// For the all-scalar loop: the register of each input and of the output (registers are
    /// the loop variables, then the invariants, then the kernel outputs), and the output's
    /// declared dtype.
    in_regs: SmallVec<[u32; 4]>,
    out_reg: u32,
    out_dtype: tfr_graph::DType,
    /// A `FusedElementwise` kernel's region (for machine code, which emits it op by op).
    region: Option<ElementwiseProgram>,
}

pub(super) struct LoopPlan {
    /// Per loop variable: the ordinal of its Enter.
    var_enters: Vec<u32>,
    /// Per Enter ordinal: the invariant it gives, if it is a constant Enter.
    inv_of_enter: Vec<Option<u32>>,
    num_invs: usize,
    pre: Vec<PlanStep>,
    pred: ValRef,
    body: Vec<PlanStep>,
    /// Per loop variable: its next value, and whether reading it may take it.
    next: Vec<(ValRef, bool)>,
    /// Every next value is a kernel output (none is a loop variable or an invariant), so the
    /// variables can be assigned one by one.
    next_from_vals: bool,
    /// Every kernel has a scalar fast path and reads only earlier registers (set once the
    /// kernels are built): with scalar loop variables and invariants the loop runs on a
    /// register file of `Scalar`s (`scalar_loop`).
    all_scalar: bool,
    /// The all-scalar loop compiled to instructions, on its first run (`None` inside when a
    /// kernel has no instruction).
    compiled: std::sync::OnceLock<Option<CompiledLoop>>,
    /// (loop variable, Exit node).
    exits: Vec<(u32, u32)>,
    num_vals: usize,
    /// The LoopCond node (for errors).
    loop_cond: u32,
}

impl CfProgram {
    /// Whether a step timeline records node `n`: kernels, TensorArray ops and transfers; the
    /// forwarding ops (Merge, Switch, Enter, Exit, NextIteration, LoopCond, Identity in a
    /// frame) are the machine's bookkeeping, run inline or aliased away by loop plans.
    pub(super) fn timed(&self, n: u32) -> bool {
        self.nodes.get(n as usize).is_some_and(|c| {
            matches!(
                c.kind,
                CfKind::Kernel | CfKind::TensorArray(_) | CfKind::Send(_) | CfKind::Recv(_)
            )
        })
    }

    /// Marks the loop plans' steps whose kernel has a scalar fast path.
    pub(super) fn mark_scalar_steps(&mut self, exec: &[ExecNode]) {
        let nodes = &self.nodes;
        for plan in self.frames.iter_mut().filter_map(|t| t.plan.as_mut()) {
            let (nv, ni) = (plan.var_enters.len() as u32, plan.num_invs as u32);
            let reg = |r: ValRef| match r {
                ValRef::Var(j) => j,
                ValRef::Inv(k) => nv + k,
                ValRef::Val(i) => nv + ni + i,
            };
            let mut all = true;
            for step in plan.pre.iter_mut().chain(plan.body.iter_mut()) {
                let en = &exec[step.node as usize];
                step.scalar = matches!(nodes[step.node as usize].kind, CfKind::Kernel)
                    && en.scalar
                    && step.n_out == 1;
                step.in_regs = step.inputs.iter().map(|&(r, _)| reg(r)).collect();
                step.out_reg = nv + ni + step.out_base;
                step.out_dtype = en.out_dtypes.first().copied().unwrap_or(step.out_dtype);
                all &= step.scalar && step.in_regs.iter().all(|&r| r < step.out_reg);
            }
            plan.all_scalar = all;
        }
    }
}

impl LoopPlan {
    /// The plan of frame template `t`, when it is a simple loop.
    pub(super) fn build(g: &Graph, nodes: &[CfNode], t: u32) -> Option<LoopPlan> {
        use std::collections::HashMap as Map;
        use tfr_graph::Output;
        let mut alias: Map<Output, (ValRef, Side)> = Map::new();
        let mut enter_ordinal: Map<u32, (u32, bool)> = Map::new();
        let mut inv_of_enter = Vec::new();
        let mut num_invs = 0u32;
        for (i, n) in nodes.iter().enumerate() {
            if let CfKind::Enter {
                constant,
                child,
                ordinal,
            } = n.kind
            {
                if child != t {
                    continue;
                }
                if inv_of_enter.len() <= ordinal as usize {
                    inv_of_enter.resize(ordinal as usize + 1, None);
                }
                enter_ordinal.insert(i as u32, (ordinal, constant));
                if constant {
                    inv_of_enter[ordinal as usize] = Some(num_invs);
                    alias.insert(
                        Output::new(NodeId(i as u32), 0),
                        (ValRef::Inv(num_invs), Side::Pre),
                    );
                    num_invs += 1;
                }
            }
        }
        let mut merges: Map<u32, u32> = Map::new();
        let mut var_enters = Vec::new();
        let mut next: Vec<Option<(ValRef, bool)>> = Vec::new();
        let mut pred = None;
        let mut loop_cond = None;
        let mut pre = Vec::new();
        let mut body = Vec::new();
        let mut exits = Vec::new();
        let mut num_vals = 0u32;
        for (i, n) in nodes.iter().enumerate() {
            if n.frame != t {
                continue;
            }
            let id = NodeId(i as u32);
            let node = g.node(id);
            let refs: Option<Vec<(ValRef, Side)>> =
                node.inputs.iter().map(|o| alias.get(o).copied()).collect();
            let controls_ok = node.control_inputs.iter().all(|c| {
                (0..g.node(*c).outputs.len().max(1))
                    .any(|k| alias.contains_key(&Output::new(*c, k)))
            });
            match &n.kind {
                CfKind::Merge {
                    forward: 1,
                    back: 1,
                } => {
                    let (ordinal, constant) = *enter_ordinal.get(&node.inputs[0].node.0)?;
                    if constant || !node.control_inputs.is_empty() || !n.out_edges[1].is_empty() {
                        return None;
                    }
                    let j = var_enters.len() as u32;
                    var_enters.push(ordinal);
                    next.push(None);
                    merges.insert(i as u32, j);
                    alias.insert(Output::new(id, 0), (ValRef::Var(j), Side::Pre));
                }
                CfKind::LoopCond => {
                    let r = refs?;
                    if r.len() != 1 || r[0].1 != Side::Pre || loop_cond.is_some() {
                        return None;
                    }
                    pred = Some(r[0].0);
                    loop_cond = Some(i as u32);
                }
                CfKind::Switch => {
                    let lc = loop_cond?;
                    if node.inputs[1] != Output::new(NodeId(lc), 0)
                        || !node.control_inputs.is_empty()
                    {
                        return None;
                    }
                    let (r, side) = alias.get(&node.inputs[0]).copied()?;
                    if !matches!(r, ValRef::Var(_)) || side != Side::Pre {
                        return None;
                    }
                    alias.insert(Output::new(id, 0), (r, Side::ToExit));
                    alias.insert(Output::new(id, 1), (r, Side::Body));
                }
                CfKind::Forward => {
                    let r = refs?;
                    if r.len() != 1 || r[0].1 == Side::ToExit || !node.control_inputs.is_empty() {
                        return None;
                    }
                    alias.insert(Output::new(id, 0), r[0]);
                }
                CfKind::NextIteration => {
                    let r = refs?;
                    if r.len() != 1 || r[0].1 == Side::ToExit {
                        return None;
                    }
                    let [e] = n.out_edges[0].as_slice() else {
                        return None;
                    };
                    let j = *merges.get(&e.node)?;
                    next[j as usize] = Some((r[0].0, false));
                }
                CfKind::Exit { .. } => match alias.get(&node.inputs[0]).copied()? {
                    (ValRef::Var(j), Side::ToExit) => exits.push((j, i as u32)),
                    _ => return None,
                },
                CfKind::Kernel | CfKind::TensorArray(_) => {
                    let r = refs?;
                    if !controls_ok || r.iter().any(|x| x.1 == Side::ToExit) {
                        return None;
                    }
                    let body_side = r.iter().any(|x| x.1 == Side::Body)
                        || node.control_inputs.iter().any(|c| {
                            (0..g.node(*c).outputs.len().max(1)).any(|k| {
                                alias
                                    .get(&Output::new(*c, k))
                                    .is_some_and(|a| a.1 == Side::Body)
                            })
                        });
                    let side = if body_side { Side::Body } else { Side::Pre };
                    let n_out = n.out_edges.len() as u32;
                    for k in 0..n_out {
                        alias.insert(
                            Output::new(id, k as usize),
                            (ValRef::Val(num_vals + k), side),
                        );
                    }
                    let step = PlanStep {
                        node: i as u32,
                        inputs: r.iter().map(|x| (x.0, false)).collect(),
                        out_base: num_vals,
                        n_out,
                        scalar: false,
                        in_regs: SmallVec::new(),
                        out_reg: 0,
                        out_dtype: tfr_graph::DType::F32,
                        region: fused_region(node),
                    };
                    num_vals += n_out;
                    if body_side {
                        body.push(step);
                    } else {
                        pre.push(step);
                    }
                }
                _ => return None,
            }
        }
        let next: Vec<(ValRef, bool)> = next.into_iter().collect::<Option<_>>()?;
        if var_enters.is_empty() {
            return None;
        }
        let next_from_vals = next.iter().all(|(r, _)| matches!(r, ValRef::Val(_)));
        let mut plan = LoopPlan {
            next_from_vals,
            all_scalar: false,
            compiled: Default::default(),
            var_enters,
            inv_of_enter,
            num_invs: num_invs as usize,
            pre,
            pred: pred?,
            body,
            next,
            exits,
            num_vals: num_vals as usize,
            loop_cond: loop_cond?,
        };
        plan.mark_last_uses();
        Some(plan)
    }

    /// Marks the reads that may take their value: the last use, in the body or the next
    /// values, of a loop variable or a kernel output (never of an invariant, and never a loop
    /// variable before the predicate: the Exits may still need it).
    pub(super) fn mark_last_uses(&mut self) {
        use std::collections::HashMap as Map;
        let mut last: Map<ValRef, (usize, usize)> = Map::new();
        let np = self.pre.len();
        for (s, step) in self.pre.iter().chain(&self.body).enumerate() {
            for (k, (r, _)) in step.inputs.iter().enumerate() {
                last.insert(*r, (s, k));
            }
        }
        let nb = np + self.body.len();
        for (j, (r, _)) in self.next.iter().enumerate() {
            last.insert(*r, (nb, j));
        }
        let takeable = |r: &ValRef, s: usize| match r {
            ValRef::Inv(_) => false,
            ValRef::Var(_) => s >= np,
            ValRef::Val(_) => true,
        };
        for (s, step) in self.pre.iter_mut().chain(self.body.iter_mut()).enumerate() {
            for (k, (r, take)) in step.inputs.iter_mut().enumerate() {
                *take = takeable(r, s) && last.get(r) == Some(&(s, k));
            }
        }
        for (j, (r, take)) in self.next.iter_mut().enumerate() {
            *take = takeable(r, nb) && last.get(r) == Some(&(nb, j));
        }
        // The predicate is read by reference, after the pre kernels: none of them may take it.
        let pred = self.pred;
        for step in &mut self.pre {
            for (r, take) in step.inputs.iter_mut() {
                if *r == pred {
                    *take = false;
                }
            }
        }
    }
}

impl Machine<'_> {
    /// Runs loop frame `f` by its plan (all its Enters have fired), delivers its Exits to the
    /// parent frame and retires it.
    pub(super) fn run_plan(&mut self, f: u32, ready: &mut Vec<Task>) {
        let prog = self.prog;
        let (template, enter_values) = {
            let inst = self.inst(f);
            (inst.template, std::mem::take(&mut inst.enter_values))
        };
        let t = &prog.frames[template as usize];
        let Some(plan) = t.plan.as_ref() else {
            return;
        };
        let results = match self.plan_loop(plan, t, enter_values) {
            Ok(r) => r,
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        let inst = self.inst(f);
        let (p, pk) = (inst.parent, inst.parent_iter);
        inst.exits_delivered.iter_mut().for_each(|d| *d = true);
        for &(j, x) in &plan.exits {
            let v = match &results {
                Some(vars) => vars[j as usize].clone().map_or(Entry::Dead, Entry::Live),
                None => Entry::Dead,
            };
            let node = &prog.nodes[x as usize];
            self.deliver(p, pk, &node.control_edges, v.clone(), ready);
            self.deliver(p, pk, &node.out_edges[0], v, ready);
        }
        let inst = self.inst(f);
        let template = inst.template;
        let its: Vec<IterState> = inst.iters.drain(..).collect();
        for it in its {
            self.recycle(template, it);
        }
        self.delete_frame(f, ready);
    }

    /// The loop itself: the final values of the loop variables, `None` when the loop is dead
    /// (a dead input, or a dead next value).
    pub(super) fn plan_loop(
        &mut self,
        plan: &LoopPlan,
        t: &FrameTemplate,
        enter_values: Vec<Entry>,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let Some(fast) = self.fast.as_ref() else {
            return Ok(None);
        };
        let prog = self.prog;
        let value = |e: &Entry| match e {
            Entry::Live(t) => Some(t.clone()),
            _ => None,
        };
        let mut vars: Vec<Option<Tensor>> = Vec::with_capacity(plan.var_enters.len());
        for &o in &plan.var_enters {
            match enter_values.get(o as usize).and_then(value) {
                Some(v) => vars.push(Some(v)),
                None => return Ok(None),
            }
        }
        let mut invs: Vec<Option<Tensor>> = vec![None; plan.num_invs];
        for (o, inv) in plan.inv_of_enter.iter().enumerate() {
            if let Some(k) = inv {
                invs[*k as usize] = enter_values.get(o).and_then(value);
            }
        }
        let mut iter: u64 = 0;
        // A traced step times each kernel: no register-file loop.
        if plan.all_scalar && fast.trace.is_none() {
            let regs: Option<Vec<Scalar>> = vars
                .iter()
                .chain(&invs)
                .map(|v| v.as_ref().and_then(Tensor::as_scalar))
                .collect();
            if let Some(mut regs) = regs {
                let done = scalar_loop(fast, prog, plan, t, &mut regs, &mut self.counts)?;
                let scalars = regs[..vars.len()].iter().copied();
                if done {
                    return Ok(Some(
                        scalars.map(|s| Some(Tensor::from_scalar(s))).collect(),
                    ));
                }
                // A kernel declined: go on the general way from the start of this iteration
                // (the kernels are pure, and the registers still hold its loop variables).
                for (v, s) in vars.iter_mut().zip(scalars) {
                    *v = Some(Tensor::from_scalar(s));
                }
            }
        }
        let mut vals: Vec<Option<Tensor>> = vec![None; plan.num_vals];
        let mut ctx = KernelContext::new(SmallVec::new(), fast.resources, fast.feeds);
        let mut next: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
        loop {
            for step in &plan.pre {
                let en = &fast.exec.nodes[step.node as usize];
                let span = Span::start(fast.trace);
                if !(step.scalar && run_scalar_step(en, step, &vars, &invs, &mut vals)) {
                    run_step(fast, prog, step, &mut vars, &invs, &mut vals, &mut ctx)?;
                }
                step_span_end(span, prog, step, iter, &vals);
            }
            let pred = match plan.pred {
                ValRef::Var(j) => vars[j as usize].as_ref(),
                ValRef::Inv(k) => invs[k as usize].as_ref(),
                ValRef::Val(i) => vals[i as usize].as_ref(),
            };
            let Some(pred) = pred else {
                return Ok(None);
            };
            let holds = match pred.as_slice::<bool>() {
                Ok([b]) => *b,
                _ => {
                    return Err(cf_node_error(
                        prog,
                        plan.loop_cond,
                        KernelError::invalid("the loop predicate must be a bool scalar"),
                    ))
                }
            };
            if !holds {
                return Ok(Some(vars));
            }
            if let Some(max) = t.maximum_iterations {
                if iter >= max {
                    return Err(too_many_iterations(prog, plan, t, max));
                }
            }
            for step in &plan.body {
                let en = &fast.exec.nodes[step.node as usize];
                let span = Span::start(fast.trace);
                if !(step.scalar && run_scalar_step(en, step, &vars, &invs, &mut vals)) {
                    run_step(fast, prog, step, &mut vars, &invs, &mut vals, &mut ctx)?;
                }
                step_span_end(span, prog, step, iter, &vals);
            }
            if plan.next_from_vals {
                // No next value is a loop variable: assign in place (scalars by value).
                for (j, &(r, take)) in plan.next.iter().enumerate() {
                    let ValRef::Val(i) = r else { unreachable!() };
                    let var = &mut vars[j];
                    match (
                        var.as_mut().and_then(Tensor::scalar_mut),
                        vals[i as usize].as_ref().and_then(Tensor::scalar_ref),
                    ) {
                        (Some(d), Some(s)) => d.assign(s),
                        _ => match read(r, take, &mut [], &invs, &mut vals) {
                            Some(v) => *var = Some(v),
                            None => return Ok(None),
                        },
                    }
                }
            } else {
                next.clear();
                for &(r, take) in &plan.next {
                    next.push(read(r, take, &mut vars, &invs, &mut vals));
                }
                if next.iter().any(Option::is_none) {
                    return Ok(None);
                }
                for (v, n) in vars.iter_mut().zip(next.drain(..)) {
                    *v = n;
                }
            }
            iter += 1;
            self.counts.iterations += 1;
        }
    }
}

/// The region of a `FusedElementwise` node (`None` for other nodes, or a malformed program,
/// which its kernel reports).
fn fused_region(node: &tfr_graph::Node) -> Option<ElementwiseProgram> {
    if node.op != "FusedElementwise" {
        return None;
    }
    let codes = node.attrs.ints_opt("program")?;
    ElementwiseProgram::from_attr(node.inputs.len(), codes).ok()
}

/// The error of a loop whose predicate still holds after `maximum_iterations`.
pub(super) fn too_many_iterations(
    prog: &CfProgram,
    plan: &LoopPlan,
    t: &FrameTemplate,
    max: u64,
) -> Error {
    cf_node_error(
        prog,
        plan.loop_cond,
        KernelError::out_of_range(format!(
            "while loop `{}` exceeded maximum_iterations = {max}: its predicate still holds \
             after {max} iterations",
            t.name
        )),
    )
}

/// Records a plan step's run (not when its outputs are dead: it did not run).
#[inline(always)]
pub(super) fn step_span_end(
    span: Span<'_>,
    prog: &CfProgram,
    step: &PlanStep,
    iter: u64,
    vals: &[Option<Tensor>],
) {
    if !span.is_on() {
        return;
    }
    let out = &vals[step.out_base as usize..(step.out_base + step.n_out) as usize];
    if step.n_out == 0 || out.iter().any(Option::is_some) {
        span.end(
            step.node,
            prog.nodes[step.node as usize].frame,
            iter,
            || outputs_bytes(out.iter().map(Option::as_ref)),
        );
    }
}

#[inline(always)]
pub(super) fn read(
    r: ValRef,
    take: bool,
    vars: &mut [Option<Tensor>],
    invs: &[Option<Tensor>],
    vals: &mut [Option<Tensor>],
) -> Option<Tensor> {
    match (r, take) {
        (ValRef::Var(j), true) => vars[j as usize].take(),
        (ValRef::Var(j), false) => vars[j as usize].clone(),
        (ValRef::Inv(k), _) => invs[k as usize].clone(),
        (ValRef::Val(i), true) => vals[i as usize].take(),
        (ValRef::Val(i), false) => vals[i as usize].clone(),
    }
}

/// A plan step by its kernel's scalar fast path, when every input is a live scalar held inline
/// and the kernel answers with the declared dtype: no kernel context and no tensor moves; the
/// kernel reads its inputs where they are and writes its output into the output slot. A
/// scalar's "last use" need not take it: the slot is overwritten before it is read again.
/// `false` when the step must run the general way.
#[inline]
pub(super) fn run_scalar_step(
    en: &ExecNode,
    step: &PlanStep,
    vars: &[Option<Tensor>],
    invs: &[Option<Tensor>],
    vals: &mut [Option<Tensor>],
) -> bool {
    let o = step.out_base as usize;
    if vals[o].as_ref().and_then(Tensor::scalar_ref).is_none() {
        vals[o] = Some(Tensor::from_scalar(Scalar::Bool(false)));
    }
    let (lo, rest) = vals.split_at_mut(o);
    let Some((slot, hi)) = rest.split_first_mut() else {
        return false;
    };
    let Some(out) = slot.as_mut().and_then(Tensor::scalar_mut) else {
        return false;
    };
    let get = |r: ValRef| {
        match r {
            ValRef::Var(j) => vars[j as usize].as_ref(),
            ValRef::Inv(k) => invs[k as usize].as_ref(),
            ValRef::Val(i) if (i as usize) < o => lo[i as usize].as_ref(),
            ValRef::Val(i) => hi.get(i as usize - o - 1).and_then(Option::as_ref),
        }
        .and_then(Tensor::scalar_ref)
    };
    let done = match step.inputs.as_slice() {
        [(a, _)] => match get(*a) {
            Some(a) => en.kernel.compute_scalar(&[a], out),
            None => false,
        },
        [(a, _), (b, _)] => match (get(*a), get(*b)) {
            (Some(a), Some(b)) => en.kernel.compute_scalar(&[a, b], out),
            _ => false,
        },
        inputs => {
            let args: Option<SmallVec<[&Scalar; 4]>> =
                inputs.iter().map(|(r, _)| get(*r)).collect();
            args.is_some_and(|args| en.kernel.compute_scalar(&args, out))
        }
    };
    done && out.dtype() == en.out_dtypes[0]
}

/// Runs one kernel (or TensorArray op) of a plan; a dead input makes its outputs dead.
#[inline]
pub(super) fn run_step(
    fast: &FastCtx<'_>,
    prog: &CfProgram,
    step: &PlanStep,
    vars: &mut [Option<Tensor>],
    invs: &[Option<Tensor>],
    vals: &mut [Option<Tensor>],
    ctx: &mut KernelContext<'_>,
) -> Result<()> {
    let en = &fast.exec.nodes[step.node as usize];
    let out = step.out_base as usize..(step.out_base + step.n_out) as usize;
    match &prog.nodes[step.node as usize].kind {
        CfKind::TensorArray(ta) => {
            let mut inputs: SmallVec<[Option<Tensor>; 4]> = step
                .inputs
                .iter()
                .map(|&(r, take)| read(r, take, vars, invs, vals))
                .collect();
            let dead_write = ta.op == TaOp::Write
                && ta.keep_dead
                && [0usize, 1, 3]
                    .iter()
                    .all(|&i| inputs.get(i).is_some_and(Option::is_some));
            if inputs.iter().any(Option::is_none) && !dead_write {
                vals[out].iter_mut().for_each(|v| *v = None);
                return Ok(());
            }
            let r = fast
                .arrays
                .run(ta, &mut inputs, &prog.flow)
                .map_err(|e| Executable::kernel_error(en, e))?;
            for (slot, v) in vals[out].iter_mut().zip(r) {
                *slot = v;
            }
        }
        _ => {
            ctx.reset_inputs();
            for &(r, take) in &step.inputs {
                match read(r, take, vars, invs, vals) {
                    Some(v) => ctx.push_input(v),
                    None => {
                        vals[out].iter_mut().for_each(|v| *v = None);
                        return Ok(());
                    }
                }
            }
            en.kernel
                .compute(ctx)
                .map_err(|e| Executable::kernel_error(en, e))?;
            Executable::finish_node(en, ctx.outputs())?;
            for (slot, v) in vals[out].iter_mut().zip(ctx.drain_outputs()) {
                *slot = Some(v);
            }
        }
    }
    Ok(())
}
