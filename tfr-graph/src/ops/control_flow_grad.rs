//! Gradients through control flow (Yu et al. 2018, §4; TensorFlow's `control_flow_grad.py` and
//! `control_flow_state.py`).
//!
//! - **cond**: the gradient of a cond's `Merge` is `Switch(dy, pred)`, which routes the incoming
//!   gradient into the branch that ran (the other branch's gradient nodes see dead values and do
//!   not run); the gradient of a cond's `Switch` is a `Merge` of the gradients of its two outputs
//!   (zeros guarded by the forward switch for a branch that passed no gradient).
//! - **while_loop**: the gradient of a loop is a loop that runs the body's gradient in reverse,
//!   once per forward iteration. The forward loop gets an iteration counter (its final value is
//!   the trip count, so it may depend on data); every forward value the backward body needs is
//!   written, per iteration, into a TensorArray made outside the nest, and read back by the
//!   backward loop at the same iteration's index (`loop_saved_values.rs`). Loop invariants'
//!   gradients are summed across iterations in accumulators of the backward loop.
//!
//! [`gradients`](crate::gradients::gradients) hands whole loops to [`LoopGrads`]: when its walk
//! reaches the last `Exit` of a loop it calls [`LoopGrads::loop_gradient`], which builds the
//! backward loop and returns the gradients of the loop's inputs, and it skips the loop's other
//! nodes. Cond `Merge`/`Switch` nodes go to [`cond_gradient`]. Loops with gradient
//! checkpoints save and recompute their variables through `loop_checkpoints.rs`.

use super::control_flow_ops::{
    is_back_edge, Ctx, CtxKind, FrameId, FrameMap, WhileOptions, CHECKPOINTS_ATTR, COND_PRED_ATTR,
    ROOT_FRAME,
};
use super::loop_checkpoints::{checkpoint_arrays, clone_chain, recompute_from_checkpoint};
use super::loop_saved_values::{read_saved, ReadSide};
use super::tensor_array_grad::tensor_array_gradient;
use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output};
use crate::shape::Shape;
use std::collections::{HashMap, HashSet};

/// The backward side of a loop's gradient, for capturing forward values inside its body.
#[derive(Clone, Debug)]
pub(crate) struct GradLoop {
    /// The frame of the loop being differentiated.
    pub forward_frame: FrameId,
    pub forward_name: String,
    /// The forward iteration a backward iteration works on (int32, in the backward frame).
    pub index: Output,
    /// With gradient checkpoints: the loop variables' values at `index`, recomputed from the
    /// nearest checkpoint (by the forward body value they stand for), and the forward nodes
    /// already copied from them.
    pub recompute: Option<(HashMap<Output, Output>, HashMap<NodeId, NodeId>)>,
    /// Where the saved values are read from, found on first use.
    pub read: Option<ReadSide>,
}

/// An iteration counter added to a forward loop for its gradient.
#[derive(Clone, Debug)]
pub(crate) struct LoopCounter {
    /// The current iteration (int32, body side of the forward frame).
    pub index: Output,
    /// The number of iterations (int32, in the parent frame).
    pub count: Output,
}

/// The structure of a forward loop, found from the graph.
#[derive(Clone, Debug)]
pub(super) struct ForwardLoop {
    name: String,
    pub(super) frame: FrameId,
    pub(super) parent: FrameId,
    pub(super) loop_cond: Output,
    parallel_iterations: i64,
    maximum_iterations: i64,
    /// Gradient checkpoint interval (0: save every iteration).
    checkpoints: i64,
}

pub(super) fn cf_error(message: impl Into<String>) -> GraphError {
    GraphError::Gradient(message.into())
}

pub(super) fn forward_loop(g: &mut Graph, name: &str) -> Result<ForwardLoop> {
    let frames = g.frame_map().clone();
    let frame = frames
        .by_name(name)
        .ok_or_else(|| cf_error(format!("no loop frame `{name}` in the graph")))?;
    let mut loop_cond = None;
    let mut attrs = None;
    for id in g.node_ids() {
        if frames.frame(id) != frame {
            continue;
        }
        let n = g.node(id);
        match n.op.as_str() {
            "LoopCond" => loop_cond = Some(Output::new(id, 0)),
            "Enter" if attrs.is_none() => {
                attrs = Some((
                    n.attrs
                        .int_opt("parallel_iterations")
                        .copied()
                        .unwrap_or(10),
                    n.attrs.int_opt("maximum_iterations").copied().unwrap_or(-1),
                    n.attrs.int_opt(CHECKPOINTS_ATTR).copied().unwrap_or(0),
                ))
            }
            _ => {}
        }
    }
    let loop_cond =
        loop_cond.ok_or_else(|| cf_error(format!("loop frame `{name}` has no LoopCond")))?;
    let (parallel_iterations, maximum_iterations, checkpoints) = attrs.unwrap_or((10, -1, 0));
    Ok(ForwardLoop {
        name: name.to_string(),
        frame,
        parent: frames.parent(frame),
        loop_cond,
        parallel_iterations,
        maximum_iterations,
        checkpoints,
    })
}

/// The contexts under which a node runs in forward frame `f`: one loop context per enclosing
/// loop, each with its counter's index as pivot.
pub(super) fn forward_stack(g: &mut Graph, f: FrameId) -> Result<Vec<Ctx>> {
    if f == ROOT_FRAME {
        return Ok(Vec::new());
    }
    let name = g.frame_map().frames[f as usize].name.clone();
    let parent = g.frame_map().parent(f);
    let counter = ensure_counter(g, &name)?;
    let fl = forward_loop(g, &name)?;
    let mut stack = forward_stack(g, parent)?;
    stack.push(Ctx::new(
        CtxKind::Loop {
            frame_name: name,
            parallel_iterations: fl.parallel_iterations,
            grad: None,
        },
        f,
        Some(counter.index.node),
        0,
    ));
    Ok(stack)
}

/// A new loop variable of forward loop `fl`: Enter(init) -> Merge -> Switch(LoopCond), with
/// `next(body_value)` (built in the loop's frame) fed back. Returns (body value, exit value).
/// The private attribute on the `Enter` of a loop variable that a gradient added to a forward
/// loop (its iteration counter, the flow of an array of saved values): a later gradient of the
/// same loop does not differentiate it.
pub(crate) const GRADIENT_STATE_ATTR: &str = "_gradient_state";

/// Whether loop variable `enter` was added to its loop by a gradient.
fn is_gradient_state(g: &Graph, enter: NodeId) -> bool {
    g.node(enter).attrs.get(GRADIENT_STATE_ATTR).is_some()
}

pub(super) fn add_forward_var(
    g: &mut Graph,
    fl: &ForwardLoop,
    init: Output,
    next: impl FnOnce(&mut Graph, Output) -> Result<Output>,
) -> Result<(Output, Output)> {
    let (name, pi, mi) = (
        fl.name.clone(),
        fl.parallel_iterations,
        fl.maximum_iterations,
    );
    let lc = fl.loop_cond;
    // The initial value as the loop's parent frame sees it (a constant may live outside).
    let parent_stack = forward_stack(g, fl.parent)?;
    let (init, _) = g.with_stack(parent_stack, |g| g.capture_here(init))?;
    let (merge, body) = g.build_raw(|g| {
        let e = g
            .build("Enter")
            .input(init)
            .attr("frame_name", name)
            .attr("parallel_iterations", pi)
            .attr("maximum_iterations", mi)
            .attr(GRADIENT_STATE_ATTR, true)
            .finish1()?;
        let m = g.build("Merge").input(e).input(e).finish()?;
        let sw = g
            .build("Switch")
            .input(Output::new(m, 0))
            .input(lc)
            .finish()?;
        let body = g.build("Identity").input(Output::new(sw, 1)).finish1()?;
        Ok((m, body))
    })?;
    let n = next(g, body)?;
    let sw = g.node(body.node).inputs[0].node;
    let exit = g.build_raw(|g| {
        let nx = g.build("NextIteration").input(n).finish1()?;
        g.set_input(merge, 1, nx)?;
        g.build("Exit").input(Output::new(sw, 0)).finish1()
    })?;
    Ok((body, exit))
}

/// The iteration counter of forward loop `name`, added on first use.
pub(crate) fn ensure_counter(g: &mut Graph, name: &str) -> Result<LoopCounter> {
    if let Some(c) = g.cf.counters.get(name) {
        return Ok(c.clone());
    }
    let fl = forward_loop(g, name)?;
    let parent_stack = forward_stack(g, fl.parent)?;
    let (zero, _) = g.with_stack(parent_stack, |g| g.scalar(0i32))?;
    let frame = fl.frame;
    let (index, count) = add_forward_var(g, &fl, zero, |g, i| {
        let mut stack = forward_stack(g, fl.parent)?;
        stack.push(Ctx::new(
            CtxKind::Loop {
                frame_name: fl.name.clone(),
                parallel_iterations: fl.parallel_iterations,
                grad: None,
            },
            frame,
            Some(i.node),
            0,
        ));
        let (next, _) = g.with_stack(stack, |g| {
            let one = g.scalar(1i32)?;
            g.add(i, one)
        })?;
        Ok(next)
    })?;
    let c = LoopCounter { index, count };
    g.cf.counters.insert(name.to_string(), c.clone());
    Ok(c)
}

/// Forward value `o` (in the loop `gl` differentiates) as the backward body at context depth
/// `d` sees it: recomputed from a gradient checkpoint, or read back from where the forward loop
/// saved it (`loop_saved_values.rs`).
pub(crate) fn saved_value(g: &mut Graph, gl: &GradLoop, o: Output, d: usize) -> Result<Output> {
    if let Some((map, memo)) = &gl.recompute {
        // Checkpointed loop: copy the forward computation of `o` from the recomputed loop
        // variables, inside the backward body.
        let mut memo = memo.clone();
        let frame = gl.forward_frame;
        let out = g.at_depth(d + 1, |g| clone_chain(g, o, map, &mut memo, frame))?;
        if let Some(Ctx {
            kind: CtxKind::Loop {
                grad: Some(stored), ..
            },
            ..
        }) = g.cf.stack.get_mut(d)
        {
            if let Some(r) = stored.recompute.as_mut() {
                r.1 = memo;
            }
        }
        return Ok(out);
    }
    read_saved(g, gl, o, d)
}

// ---- the gradient walk's view of control flow ---------------------------------------------------

/// One loop var of a forward loop, found from the graph.
#[derive(Clone, Debug)]
pub(super) struct LoopVar {
    enter: NodeId,
    pub(super) merge: NodeId,
    /// The body's view of the variable (the Identity after the Switch, or the Switch's output).
    pub(super) body_input: Output,
    /// The body's next value (the NextIteration's input).
    pub(super) body_output: Output,
    exit: Option<NodeId>,
}

/// A forward loop's structure: loop variables and invariants.
#[derive(Clone, Debug)]
pub(super) struct LoopShape {
    pub(super) name: String,
    pub(super) vars: Vec<LoopVar>,
    /// Constant Enters: (enter node, the outer value it enters).
    invariants: Vec<(NodeId, Output)>,
    parallel_iterations: i64,
}

/// What [`gradients`](crate::gradients::gradients) asks about control flow while it walks the
/// graph backwards from the ys: which nodes belong to loops (and are skipped: a loop is
/// differentiated as a whole, when the walk reaches its Exits), which back edges carry values
/// (those of loops inside the frame being differentiated), and the gradients of cond and loop
/// nodes.
pub struct LoopGrads {
    frames: FrameMap,
    /// The frame whose nodes the walk differentiates: the root, or the forward loop whose body
    /// a backward loop is being built for.
    base: FrameId,
    xs: HashSet<Output>,
    consumers: HashMap<NodeId, Vec<(NodeId, usize)>>,
    /// Per loop directly inside `base`: its Exits, and the one the walk reaches last.
    exits: HashMap<FrameId, (Vec<NodeId>, NodeId)>,
    /// Exit gradients gathered so far, per loop.
    stash: HashMap<FrameId, Vec<(NodeId, Option<Output>)>>,
    any_loop: bool,
}

impl LoopGrads {
    /// Prepares the walk over `order` (the topological order of `g`) from `ys` to `xs`.
    pub fn new(g: &mut Graph, order: &[NodeId], ys: &[Output], xs: &[Output]) -> Result<LoopGrads> {
        let frames = g.frame_map().clone();
        let base =
            g.cf.stack
                .iter()
                .rev()
                .find_map(|c| match &c.kind {
                    CtxKind::Loop { grad: Some(gl), .. } => Some(gl.forward_frame),
                    _ => None,
                })
                .unwrap_or(ROOT_FRAME);
        for &o in ys.iter().chain(xs) {
            let f = frames.frame(o.node);
            if f != base {
                return Err(cf_error(format!(
                    "`{}` runs inside {}: differentiate a loop's results (its Exit outputs) \
                     instead of values inside it",
                    g.output_name(o),
                    frames.describe(f)
                )));
            }
        }
        let any_loop = frames.num_frames() > 1;
        let mut consumers: HashMap<NodeId, Vec<(NodeId, usize)>> = HashMap::new();
        let mut exits: HashMap<FrameId, (Vec<NodeId>, NodeId)> = HashMap::new();
        if any_loop {
            for id in g.node_ids() {
                for (k, o) in g.node(id).inputs.iter().enumerate() {
                    consumers.entry(o.node).or_default().push((id, k));
                }
            }
            // `order` is topological: the first Exit of a loop in it is the last one the
            // backward walk reaches.
            for &id in order {
                let n = g.node(id);
                if n.op != "Exit" || frames.frame(id) != base {
                    continue;
                }
                let Some(src) = n.inputs.first() else {
                    continue;
                };
                let lf = frames.frame(src.node);
                exits
                    .entry(lf)
                    .and_modify(|e| e.0.push(id))
                    .or_insert_with(|| (vec![id], id));
            }
        }
        Ok(LoopGrads {
            frames,
            base,
            xs: xs.iter().copied().collect(),
            consumers,
            exits,
            stash: HashMap::new(),
            any_loop,
        })
    }

    /// Whether the graph has loops (the forward reach must then follow back edges).
    pub fn has_loops(&self) -> bool {
        self.any_loop
    }

    /// Whether a value reaching input `k` of `node` counts: every edge but the back edges of
    /// the loop being differentiated (its iterations are the backward loop's business).
    pub fn follows(&self, g: &Graph, node: NodeId, k: usize) -> bool {
        !(self.any_loop
            && is_back_edge(g, g.node(node), k)
            && !self.strictly_inside(self.frames.frame(node)))
    }

    fn strictly_inside(&self, f: FrameId) -> bool {
        f != self.base && self.frames.is_within(f, self.base)
    }

    /// Nodes of loops inside the differentiated frame (not their Exits, which run in it): they
    /// are differentiated with their loop.
    pub fn skips(&self, node: NodeId) -> bool {
        self.any_loop && self.frames.frame(node) != self.base
    }

    /// Whether `node` is an Exit of a loop inside the differentiated frame.
    pub fn is_loop_exit(&self, g: &Graph, node: NodeId) -> bool {
        self.any_loop && g.node(node).op == "Exit" && self.frames.frame(node) == self.base
    }

    fn depends(&self, g: &Graph, reached: &[bool], o: Output) -> bool {
        g.dtype(o).is_differentiable()
            && (self.xs.contains(&o) || reached.get(o.node.index()).copied().unwrap_or(false))
    }

    /// The gradients a control-flow node sends to its inputs, as (input, gradient) pairs, given
    /// the gradients of its outputs; `None` for other nodes (they use their op's rule). An Exit
    /// sends nothing until the last Exit of its loop: then the loop's backward loop is built and
    /// the gradients of the loop's initial values and invariants come out.
    pub fn gradient(
        &mut self,
        g: &mut Graph,
        node: NodeId,
        out_grads: &[Option<Output>],
        reached: &[bool],
    ) -> Result<Option<Vec<(Output, Output)>>> {
        let n = g.node(node).clone();
        match n.op.as_str() {
            "Exit" if self.is_loop_exit(g, node) => {
                let Some(src) = n.inputs.first() else {
                    return Ok(Some(Vec::new()));
                };
                let lf = self.frames.frame(src.node);
                let entry = self.stash.entry(lf).or_default();
                entry.push((node, out_grads.first().copied().flatten()));
                let trigger = self.exits.get(&lf).map(|e| e.1);
                if trigger != Some(node) {
                    return Ok(Some(Vec::new()));
                }
                let stash = self.stash.remove(&lf).unwrap_or_default();
                let scope = format!("{}_grad", self.frames.frames[lf as usize].name);
                let scope = scope.rsplit('/').next().unwrap_or("while_grad").to_string();
                g.with_scope(&scope, |g| self.loop_gradient(g, lf, &stash, reached))
                    .map(Some)
            }
            "Merge" if n.attrs.string_opt(COND_PRED_ATTR).is_some() => {
                let Some(dy) = out_grads.first().copied().flatten() else {
                    return Ok(Some(Vec::new()));
                };
                if n.inputs.len() != 2 {
                    return Err(cf_error(format!(
                        "cond merge `{}` has {} inputs; only two-branch conds are differentiable",
                        n.name,
                        n.inputs.len()
                    )));
                }
                let pred_name = n
                    .attrs
                    .string_opt(COND_PRED_ATTR)
                    .cloned()
                    .unwrap_or_default();
                let pred = g.output_by_name(&pred_name)?;
                let wanted: Vec<bool> = n
                    .inputs
                    .iter()
                    .map(|&o| self.depends(g, reached, o))
                    .collect();
                let sw = g.with_scope(&format!("{}_grad", base_name(&n.name)), |g| {
                    g.build("Switch").input(dy).input(pred).finish()
                })?;
                Ok(Some(
                    n.inputs
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| wanted[*k])
                        .map(|(k, &o)| (o, Output::new(sw, k)))
                        .collect(),
                ))
            }
            "Switch" => {
                let data = n.inputs[0];
                if !self.depends(g, reached, data) {
                    return Ok(Some(Vec::new()));
                }
                let (gf, gt) = (
                    out_grads.first().copied().flatten(),
                    out_grads.get(1).copied().flatten(),
                );
                if gf.is_none() && gt.is_none() {
                    return Ok(Some(Vec::new()));
                }
                let m = g.with_scope(&format!("{}_grad", base_name(&n.name)), |g| {
                    // The merge is a cond's merge on the forward predicate (as seen here), so
                    // a higher-order gradient routes through it like through any cond.
                    let pred = g.capture_here(n.inputs[1])?;
                    let pred_name = g.output_name(pred);
                    // A branch that passed no gradient gets zeros, live only when it ran.
                    let zf = match gf {
                        Some(x) => x,
                        None => g.build("ZerosLike").input(Output::new(node, 0)).finish1()?,
                    };
                    let zt = match gt {
                        Some(x) => x,
                        None => g.build("ZerosLike").input(Output::new(node, 1)).finish1()?,
                    };
                    g.build("Merge")
                        .input(zf)
                        .input(zt)
                        .attr(COND_PRED_ATTR, pred_name)
                        .finish1()
                })?;
                let shape = g.shape(data).clone();
                g.refine_output_shape(m, shape);
                Ok(Some(vec![(data, m)]))
            }
            "Merge" if out_grads.iter().any(Option::is_some) => Err(cf_error(format!(
                "node `{}` (Merge) lies between the ys and the xs but merges neither a cond's \
                 branches nor a loop's iterations: it cannot be differentiated",
                n.name
            ))),
            op if op.starts_with("TensorArray") => {
                let wanted: Vec<bool> = n
                    .inputs
                    .iter()
                    .map(|&o| self.depends(g, reached, o))
                    .collect();
                let scope = format!("{}_grad", base_name(&n.name));
                g.with_scope(&scope, |g| {
                    tensor_array_gradient(g, node, out_grads, &wanted)
                })
                .map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The structure of loop frame `lf`.
    fn loop_shape(&self, g: &Graph, lf: FrameId) -> Result<LoopShape> {
        let name = self.frames.frames[lf as usize].name.clone();
        let mut vars = Vec::new();
        let mut invariants = Vec::new();
        let mut parallel_iterations = 10;
        let none = Vec::new();
        let uses = |id: NodeId| self.consumers.get(&id).unwrap_or(&none);
        for id in g.node_ids() {
            let n = g.node(id);
            if n.op != "Enter" || self.frames.frame(id) != lf {
                continue;
            }
            parallel_iterations = n
                .attrs
                .int_opt("parallel_iterations")
                .copied()
                .unwrap_or(10);
            if n.attrs.bool_opt("is_constant") == Some(&true) {
                invariants.push((id, n.inputs[0]));
                continue;
            }
            let bad = || {
                cf_error(format!("loop `{name}`: Enter `{}` does not start a loop variable as while_loop builds them", n.name))
            };
            let merge = uses(id)
                .iter()
                .find(|(c, k)| *k == 0 && g.node(*c).op == "Merge")
                .map(|c| c.0)
                .ok_or_else(bad)?;
            let next = g.node(merge).inputs.get(1).copied().ok_or_else(bad)?;
            if g.node(next.node).op != "NextIteration" {
                return Err(bad());
            }
            let body_output = g.node(next.node).inputs[0];
            let switch = uses(merge)
                .iter()
                .find(|(c, k)| *k == 0 && g.node(*c).op == "Switch")
                .map(|c| c.0)
                .ok_or_else(bad)?;
            let body_input = uses(switch)
                .iter()
                .find(|(c, _)| {
                    g.node(*c).op == "Identity" && g.node(*c).inputs[0] == Output::new(switch, 1)
                })
                .map(|c| Output::new(c.0, 0))
                .unwrap_or(Output::new(switch, 1));
            let exit = uses(switch)
                .iter()
                .find(|(c, _)| g.node(*c).op == "Exit")
                .map(|c| c.0);
            vars.push(LoopVar {
                enter: id,
                merge,
                body_input,
                body_output,
                exit,
            });
        }
        Ok(LoopShape {
            name,
            vars,
            invariants,
            parallel_iterations,
        })
    }

    /// Builds the backward loop of forward loop `lf` from the gradients of its Exits; returns
    /// the gradients of its initial values and of the outer values of its invariants.
    fn loop_gradient(
        &mut self,
        g: &mut Graph,
        lf: FrameId,
        exit_grads: &[(NodeId, Option<Output>)],
        reached: &[bool],
    ) -> Result<Vec<(Output, Output)>> {
        if exit_grads.iter().all(|e| e.1.is_none()) {
            return Ok(Vec::new());
        }
        let shape = self.loop_shape(g, lf)?;
        let exit_grad = |v: &LoopVar| {
            v.exit
                .and_then(|x| exit_grads.iter().find(|e| e.0 == x))
                .and_then(|e| e.1)
        };
        // A variable a gradient added (the flow of an array of saved values) is differentiated
        // only when a gradient reaches its Exit: a higher-order gradient, through the reads of
        // the saved values, which must flow back into the values written.
        let float_vars: Vec<usize> = (0..shape.vars.len())
            .filter(|&j| {
                let v = &shape.vars[j];
                g.dtype(Output::new(v.merge, 0)).is_differentiable()
                    && (!is_gradient_state(g, v.enter) || exit_grad(v).is_some())
            })
            .collect();
        let invs: Vec<usize> = (0..shape.invariants.len())
            .filter(|&m| self.depends(g, reached, shape.invariants[m].1))
            .collect();
        let wants_var = float_vars
            .iter()
            .any(|&j| self.depends(g, reached, g.node(shape.vars[j].enter).inputs[0]));
        if float_vars.is_empty() || (invs.is_empty() && !wants_var) {
            return Ok(Vec::new());
        }
        let counter = ensure_counter(g, &shape.name)?;
        let checkpointed = match forward_loop(g, &shape.name)?.checkpoints {
            k if k > 0 => Some(checkpoint_arrays(g, &shape, k)?),
            _ => None,
        };
        // Initial values: the trip count, the Exits' gradients (zeros where none), zeros for
        // the invariants' sums.
        let mut inits = vec![counter.count];
        let mut invariants_shapes = vec![Some(Shape::scalar())];
        for &j in &float_vars {
            let v = &shape.vars[j];
            let grad = exit_grad(v);
            let merge_out = Output::new(v.merge, 0);
            let init = match grad {
                Some(d) => d,
                None => zeros_for(g, v.exit.map_or(merge_out, |x| Output::new(x, 0)))?,
            };
            inits.push(init);
            invariants_shapes.push(Some(g.shape(merge_out).clone()));
        }
        for &m in &invs {
            let outer = shape.invariants[m].1;
            inits.push(zeros_for(g, outer)?);
            invariants_shapes.push(Some(g.shape(outer).clone()));
        }
        let forward_frame = lf;
        let forward_name = shape.name.clone();
        let nv = float_vars.len();
        let options = WhileOptions::default()
            .name("while")
            .parallel_iterations(shape.parallel_iterations.max(1) as usize)
            .shape_invariants(invariants_shapes);
        let exits = g.while_loop(
            |g, v| {
                let zero = g.scalar(0i32)?;
                g.greater(v[0], zero)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let index = g.sub(v[0], one)?;
                let set_grad = |g: &mut Graph, recompute| {
                    if let Some(ctx) = g.cf.stack.last_mut() {
                        if let CtxKind::Loop { grad, .. } = &mut ctx.kind {
                            *grad = Some(Box::new(GradLoop {
                                forward_frame,
                                forward_name: forward_name.clone(),
                                index,
                                recompute,
                                read: None,
                            }));
                        }
                    }
                };
                set_grad(g, None);
                if let Some(ck) = &checkpointed {
                    let map = recompute_from_checkpoint(g, &shape, ck, index, forward_frame)?;
                    set_grad(g, Some((map, HashMap::new())));
                }
                let ys: Vec<Output> = float_vars
                    .iter()
                    .map(|&j| shape.vars[j].body_output)
                    .collect();
                let mut xs: Vec<Output> = float_vars
                    .iter()
                    .map(|&j| shape.vars[j].body_input)
                    .collect();
                xs.extend(invs.iter().map(|&m| Output::new(shape.invariants[m].0, 0)));
                let grad_ys: Vec<Output> = v[1..1 + nv].to_vec();
                let grads = crate::gradients::gradients_with(
                    g,
                    &ys,
                    &xs,
                    Some(&grad_ys),
                    crate::gradients::UnconnectedGradients::None,
                )?;
                let mut next = vec![index];
                for (k, gv) in grads.iter().take(nv).enumerate() {
                    next.push(match gv {
                        Some(d) => *d,
                        None => g.zeros_like(v[1 + k])?,
                    });
                }
                for (k, gv) in grads.iter().skip(nv).enumerate() {
                    let acc = v[1 + nv + k];
                    next.push(match gv {
                        Some(d) => g.add(acc, *d)?,
                        None => acc,
                    });
                }
                Ok(next)
            },
            &inits,
            &options,
        )?;
        let mut out = Vec::new();
        for (k, &j) in float_vars.iter().enumerate() {
            let init = g.node(shape.vars[j].enter).inputs[0];
            if self.depends(g, reached, init) {
                out.push((init, exits[1 + k]));
            }
        }
        for (k, &m) in invs.iter().enumerate() {
            out.push((shape.invariants[m].1, exits[1 + nv + k]));
        }
        Ok(out)
    }
}

/// The last path component of a node name.
fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Zeros of the type of `o`: a constant when its shape is fully known.
fn zeros_for(g: &mut Graph, o: Output) -> Result<Output> {
    let t = g.output_type(o).clone();
    if let Some(dims) = t.shape.to_known() {
        let n: usize = dims.iter().product();
        if n <= 1024 {
            let data = match t.dtype {
                DType::F32 => Some(crate::value::Buffer::F32(vec![0.0; n])),
                DType::F64 => Some(crate::value::Buffer::F64(vec![0.0; n])),
                _ => None,
            };
            if let Some(data) = data {
                return g.constant(crate::value::TensorValue { shape: dims, data });
            }
        }
    }
    g.zeros_like(o)
}
