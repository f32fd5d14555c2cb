//! Control-flow contexts: how a node built inside a cond or loop gets values from outside
//! (Switch or constant Enter, once per value), and the loop's back edge.

use super::*;

/// What a context is.
#[derive(Clone, Debug)]
pub(crate) enum CtxKind {
    /// One branch of a cond: outside values pass through `Switch(x, pred)[branch]`.
    Cond { pred: Output, branch: usize },
    /// A loop body or predicate: outside values enter as loop invariants. For the backward loop
    /// of a gradient, `grad` says how forward values of the loop being differentiated are
    /// fetched (saved per iteration, read back in reverse).
    Loop {
        frame_name: String,
        parallel_iterations: i64,
        grad: Option<Box<crate::ops::control_flow_grad::GradLoop>>,
    },
}

/// An open control-flow context.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub kind: CtxKind,
    /// The frame the context's nodes run in.
    pub frame: FrameId,
    /// Control input given to nodes without inputs.
    pub pivot: Option<NodeId>,
    /// The first node created inside (conds: a node is inside when its id is not smaller).
    pub start: usize,
    pub captured: HashMap<Output, Output>,
    pub captured_control: HashMap<NodeId, NodeId>,
}

impl Ctx {
    pub(crate) fn new(kind: CtxKind, frame: FrameId, pivot: Option<NodeId>, start: usize) -> Ctx {
        Ctx {
            kind,
            frame,
            pivot,
            start,
            captured: HashMap::new(),
            captured_control: HashMap::new(),
        }
    }
}

/// Builder state for control flow, kept beside the graph (not serialized).
#[derive(Clone, Debug, Default)]
pub(crate) struct CfState {
    pub stack: Vec<Ctx>,
    pub frames: FrameMap,
    /// Per forward loop (by frame name): its iteration counter, added when a gradient needs it.
    pub counters: HashMap<String, crate::ops::control_flow_grad::LoopCounter>,
    /// Per forward loop and saved value: the TensorArray handle and its final flow.
    pub saved: HashMap<(String, Output), crate::ops::loop_saved_values::SavedArray>,
    /// Per checkpointed loop and loop variable: the array of its checkpoints (handle and final
    /// flow).
    pub checkpoints: HashMap<(String, Output), (Output, Output)>,
    /// Per forward loop frame and base frame: the chain of its saved values' writes.
    pub stores: HashMap<(FrameId, FrameId), crate::ops::loop_saved_values::FrameChain>,
    /// Constants hoisted out of loops to the top level, by [`hoisted_key`].
    pub hoisted: HashMap<String, NodeId>,
}

/// Called by the node builder for every new node: inside a context, replaces outside inputs by
/// their captured versions and gives a node without inputs the context's pivot.
pub(crate) fn capture_inputs(
    g: &mut Graph,
    inputs: Vec<Output>,
    control_inputs: Vec<NodeId>,
) -> Result<(Vec<Output>, Vec<NodeId>)> {
    if g.cf.stack.is_empty() {
        return Ok((inputs, control_inputs));
    }
    let top = g.cf.stack.len() - 1;
    let mut new_inputs = Vec::with_capacity(inputs.len());
    for o in inputs {
        if g.check_output(o).is_err() {
            new_inputs.push(o);
        } else {
            new_inputs.push(capture(g, o, top)?);
        }
    }
    let mut controls = Vec::with_capacity(control_inputs.len());
    for c in control_inputs {
        if g.get_node(c).is_err() {
            controls.push(c);
        } else {
            controls.push(capture_control(g, c, top)?);
        }
    }
    if controls.is_empty() && (new_inputs.is_empty() || only_invariants(g, top, &new_inputs)) {
        if let Some(p) = g.cf.stack[top].pivot {
            controls.push(p);
        }
    }
    controls.sort();
    controls.dedup();
    Ok((new_inputs, controls))
}

/// Whether every input is a loop invariant of loop context `d` (TF's `_IsOpFree`). Such a node
/// would be live in the loop's last iteration, where the predicate is false and everything
/// else is dead, so it gets the pivot: otherwise a loop nested in the body (started by an
/// invariant initial value) would run all its iterations again in that dead iteration, at
/// every level of a nest (exponential in the depth).
fn only_invariants(g: &mut Graph, d: usize, inputs: &[Output]) -> bool {
    if !matches!(g.cf.stack[d].kind, CtxKind::Loop { .. }) {
        return false;
    }
    let frame = g.cf.stack[d].frame;
    inputs.iter().all(|o| {
        let constant_enter = g.get_node(o.node).is_ok_and(|node| {
            node.op == "Enter" && node.attrs.bool_opt("is_constant") == Some(&true)
        });
        constant_enter && g.frame_of_node(o.node) == frame
    })
}

/// `o` as the innermost context sees it, made dead in the last iteration of an enclosing loop
/// when it is a loop invariant there (through an `Identity` that gets the loop's pivot): for
/// values that start nested control flow (a nested loop's initial values, a cond's predicate).
pub(crate) fn dead_after_loop_exit(g: &mut Graph, o: Output) -> Result<Output> {
    let o = g.capture_here(o)?;
    match g.cf.stack.len() {
        0 => Ok(o),
        n if only_invariants(g, n - 1, &[o]) => g.identity(o),
        _ => Ok(o),
    }
}

/// For a node of `op` without inputs made inside loops: the context depth to make it at
/// instead (outside the innermost loops, so it runs once and enters as a loop invariant).
/// `None` when it stays: outside loops, inside a cond branch (it needs the branch's pivot), or
/// for stateful ops (which must run per iteration).
pub(crate) fn hoist_depth(g: &Graph, op: &str) -> Option<usize> {
    let stack = &g.cf.stack;
    let mut d = stack.len();
    while d > 0 && matches!(stack[d - 1].kind, CtxKind::Loop { .. }) {
        d -= 1;
    }
    let stateless = crate::op_def::registry()
        .get(op)
        .is_some_and(|def| !def.stateful)
        && !is_control_flow_op(op)
        && !is_tensor_array_op(op);
    (d < stack.len() && stateless).then_some(d)
}

/// For a node without inputs hoisted to context depth `depth`: the key under which the same
/// node made again is reused, so that a constant used at every level of a loop nest enters
/// each loop once (one chain of Enters, not one chain per level: the graph grows linearly in
/// the depth). Only top-level, unnamed nodes with small attributes (as CSE merges them).
pub(crate) fn hoisted_key(
    depth: usize,
    op: &str,
    requested: &Option<String>,
    attrs: &crate::attr::Attrs,
    device: &str,
) -> Option<String> {
    let small = attrs
        .tensor_opt("value")
        .is_none_or(|v| v.num_elements() <= 64);
    if depth != 0 || requested.is_some() || !small {
        return None;
    }
    Some(format!("{op}\u{0}{device}\u{0}{attrs:?}"))
}

/// The constant value behind `o`, for shape functions and gradient rules alike: a `Const`, seen
/// through `Identity` nodes and the `Enter` of a loop invariant (so an axis, a permutation or a
/// shape built inside a loop body stays known statically, as it is outside loops).
pub(crate) fn constant_behind(g: &Graph, mut o: Output) -> Option<&crate::value::TensorValue> {
    loop {
        let n = g.nodes().get(o.node.index())?;
        let invariant = n.op == "Enter" && n.attrs.bool_opt("is_constant") == Some(&true);
        if invariant || n.op == "Identity" {
            o = *n.inputs.first()?;
        } else {
            return g.const_value(o);
        }
    }
}

/// Whether output `o` can be used as is inside context `d`.
fn is_inside(g: &mut Graph, o: NodeId, d: usize) -> bool {
    g.frame_map();
    let ctx = &g.cf.stack[d];
    match ctx.kind {
        CtxKind::Cond { .. } => o.index() >= ctx.start,
        CtxKind::Loop { .. } => {
            let f = g.cf.frames.frame(o);
            g.cf.frames.is_within(f, ctx.frame)
        }
    }
}

impl Graph {
    /// Builds a node with no open contexts and no control-dependency scopes (the scaffolding of
    /// control flow, whose inputs are already in the right frames).
    pub(crate) fn build_raw<R>(&mut self, f: impl FnOnce(&mut Graph) -> Result<R>) -> Result<R> {
        let stack = std::mem::take(&mut self.cf.stack);
        let scopes = self.take_control_scopes();
        let r = f(self);
        self.restore_control_scopes(scopes);
        self.cf.stack = stack;
        r
    }

    /// Runs `f` with the context stack cut to its first `depth` contexts.
    pub(crate) fn at_depth<R>(
        &mut self,
        depth: usize,
        f: impl FnOnce(&mut Graph) -> Result<R>,
    ) -> Result<R> {
        let tail = self.cf.stack.split_off(depth.min(self.cf.stack.len()));
        let scopes = self.take_control_scopes();
        let r = f(self);
        self.restore_control_scopes(scopes);
        self.cf.stack.extend(tail);
        r
    }

    /// Runs `f` with `stack` as the context stack, then puts the old one back.
    pub(crate) fn with_stack<R>(
        &mut self,
        stack: Vec<Ctx>,
        f: impl FnOnce(&mut Graph) -> Result<R>,
    ) -> Result<(R, Vec<Ctx>)> {
        let old = std::mem::replace(&mut self.cf.stack, stack);
        let scopes = self.take_control_scopes();
        let r = f(self);
        self.restore_control_scopes(scopes);
        let used = std::mem::replace(&mut self.cf.stack, old);
        r.map(|r| (r, used))
    }

    /// `o` as a node created now (inside the open contexts) would see it.
    pub(crate) fn capture_here(&mut self, o: Output) -> Result<Output> {
        if self.cf.stack.is_empty() {
            return Ok(o);
        }
        self.check_output(o)?;
        let top = self.cf.stack.len() - 1;
        capture(self, o, top)
    }

    /// The frame node `id` runs in (as the builders see it).
    pub(crate) fn frame_of_node(&mut self, id: NodeId) -> FrameId {
        let mut frames = std::mem::take(&mut self.cf.frames);
        frames.extend(self);
        let f = frames.frame(id);
        self.cf.frames = frames;
        f
    }

    /// The builders' frame map, brought up to date.
    pub(crate) fn frame_map(&mut self) -> &FrameMap {
        let mut frames = std::mem::take(&mut self.cf.frames);
        frames.extend(self);
        self.cf.frames = frames;
        &self.cf.frames
    }
}

/// `o` as seen inside context `d` (capturing it through every context between its own and `d`).
pub(crate) fn capture(g: &mut Graph, o: Output, d: usize) -> Result<Output> {
    g.frame_map();
    if is_inside(g, o.node, d) {
        return Ok(o);
    }
    if let Some(&c) = g.cf.stack[d].captured.get(&o) {
        return Ok(c);
    }
    let captured = match g.cf.stack[d].kind.clone() {
        CtxKind::Cond { pred, branch } => {
            let x = if d == 0 { o } else { capture(g, o, d - 1)? };
            let sw = g.build_raw(|g| g.build("Switch").input(x).input(pred).finish())?;
            Output::new(sw, branch)
        }
        CtxKind::Loop {
            frame_name,
            parallel_iterations,
            grad,
        } => {
            let fwd = grad.as_ref().map(|gl| gl.forward_frame);
            let of = g.frame_of_node(o.node);
            let node = g.node(o.node);
            let constant_enter = node.op == "Enter"
                && node.attrs.bool_opt("is_constant") == Some(&true)
                && Some(of) == fwd;
            if constant_enter {
                // A loop invariant of the forward loop: use the value it entered.
                let outer = node.inputs[0];
                capture(g, outer, d)?
            } else if let (Some(gl), Some(f)) = (grad.as_ref(), fwd) {
                if g.cf.frames.is_within(of, f) && of == f {
                    crate::ops::control_flow_grad::saved_value(g, gl, o, d)?
                } else {
                    enter_invariant(g, o, d, &frame_name, parallel_iterations)?
                }
            } else {
                enter_invariant(g, o, d, &frame_name, parallel_iterations)?
            }
        }
    };
    g.cf.stack[d].captured.insert(o, captured);
    Ok(captured)
}

fn enter_invariant(
    g: &mut Graph,
    o: Output,
    d: usize,
    frame_name: &str,
    parallel_iterations: i64,
) -> Result<Output> {
    let x = if d == 0 { o } else { capture(g, o, d - 1)? };
    let frame_name = frame_name.to_string();
    g.build_raw(|g| {
        g.build("Enter")
            .input(x)
            .attr("frame_name", frame_name)
            .attr("is_constant", true)
            .attr("parallel_iterations", parallel_iterations)
            .finish1()
    })
}

/// A control input `c` as seen inside context `d`.
fn capture_control(g: &mut Graph, c: NodeId, d: usize) -> Result<NodeId> {
    g.frame_map();
    if is_inside(g, c, d) {
        return Ok(c);
    }
    if let Some(&n) = g.cf.stack[d].captured_control.get(&c) {
        return Ok(n);
    }
    // A data value that carries the control dependency: a constant that depends on it.
    let proxy = g.at_depth(d, |g| {
        g.build("Const")
            .attr("value", crate::value::TensorValue::scalar(0.0f32))
            .control_input(c)
            .finish1()
    })?;
    let inside = capture(g, proxy, d)?;
    let node = match g.cf.stack[d].kind {
        CtxKind::Loop { .. } => inside.node,
        CtxKind::Cond { .. } => g.build_raw(|g| g.build("Identity").input(inside).finish())?,
    };
    g.cf.stack[d].captured_control.insert(c, node);
    Ok(node)
}

// ---- the back edge ----------------------------------------------------------------------------

impl Graph {
    /// Replaces input `index` of the `Merge` node `node` by `output`: how a loop's `Merge` gets
    /// the `NextIteration` of its body, which is built after it. Only `Merge` inputs may be
    /// rewired. The new input must have the Merge's dtype and a static shape that the Merge's
    /// recorded output shape allows (a loop's shape invariant), and apart from
    /// NextIteration -> Merge back edges the graph must stay acyclic.
    pub fn set_input(&mut self, node: NodeId, index: usize, output: Output) -> Result<()> {
        let n = self.get_node(node)?.clone();
        let invalid = |message: String| GraphError::InvalidNode {
            node: n.name.clone(),
            op: n.op.clone(),
            message,
        };
        if n.op != "Merge" {
            return Err(invalid(
                "only a Merge node's inputs can be set after it is built".into(),
            ));
        }
        if index >= n.inputs.len() {
            return Err(invalid(format!(
                "has {} inputs, cannot set input {index}",
                n.inputs.len()
            )));
        }
        self.check_output(output)
            .map_err(|e| invalid(e.to_string()))?;
        let t = self.output_type(output).clone();
        let merged = &n.outputs[0];
        if t.dtype != merged.dtype {
            return Err(invalid(format!(
                "input {index} would be `{}` of dtype {}, but the merge carries {}",
                self.output_name(output),
                t.dtype,
                merged.dtype
            )));
        }
        if !shape_fits(&merged.shape, &t.shape) {
            return Err(invalid(format!(
                "input {index} would be `{}` of shape {}, which the merge's shape {} does not allow",
                self.output_name(output),
                t.shape,
                merged.shape
            )));
        }
        let old = n.inputs[index];
        self.nodes_mut()[node.index()].inputs[index] = output;
        if self.node(output.node).op != "NextIteration" {
            if let Err(e) = topological_order(self) {
                self.nodes_mut()[node.index()].inputs[index] = old;
                return Err(invalid(format!(
                    "input {index} from `{}` would make a cycle not through a NextIteration ({e})",
                    self.output_name(output)
                )));
            }
        }
        Ok(())
    }

    /// Widens the static shape of output 0 of the `Merge` node `node` to `shape`, a loop
    /// variable's shape invariant: how an importer builds a loop whose back edge is only set
    /// (with [`Graph::set_input`]) after the body. Call it before any consumer of the Merge is
    /// built; `shape` must allow the Merge's current shape.
    pub fn relax_merge_shape(&mut self, node: NodeId, shape: Shape) -> Result<()> {
        let n = self.get_node(node)?;
        let invalid = |message: String| GraphError::InvalidNode {
            node: n.name.clone(),
            op: n.op.clone(),
            message,
        };
        if n.op != "Merge" {
            return Err(invalid("only a Merge node's shape can be relaxed".into()));
        }
        if !shape_fits(&shape, &n.outputs[0].shape) {
            return Err(invalid(format!(
                "shape {shape} does not allow the merge's shape {}",
                n.outputs[0].shape
            )));
        }
        self.relax_output_shape(Output::new(node, 0), shape);
        Ok(())
    }

    /// Makes `output` (of the same type) the input of `NextIteration` node `node`: how a
    /// gradient appends a link to a chain of flows it threads through a forward loop.
    pub(crate) fn set_next_iteration_input(&mut self, node: NodeId, output: Output) -> Result<()> {
        let n = self.get_node(node)?;
        let same_type = n
            .inputs
            .first()
            .is_some_and(|&old| self.output_type(old).dtype == self.output_type(output).dtype);
        if n.op != "NextIteration" || !same_type {
            return Err(GraphError::InvalidNode {
                node: n.name.clone(),
                op: n.op.clone(),
                message: format!(
                    "cannot take `{}` as its input (a NextIteration of the same dtype)",
                    self.output_name(output)
                ),
            });
        }
        self.nodes_mut()[node.index()].inputs[0] = output;
        Ok(())
    }

    /// Overwrites the recorded static shape of an output with a more general one (a loop
    /// variable's shape invariant on its Merge).
    pub(crate) fn relax_output_shape(&mut self, o: Output, shape: Shape) {
        self.nodes_mut()[o.node.index()].outputs[o.index as usize].shape = shape;
    }
}
