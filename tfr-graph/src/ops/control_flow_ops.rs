//! Dynamic control flow in the dataflow graph (the paper's §3.4; Yu et al., "Dynamic Control
//! Flow in Large-Scale Machine Learning", 2018).
//!
//! The primitives:
//! - `Switch(data, pred) -> (output_false, output_true)`: forwards `data` to the output `pred`
//!   selects; the other output carries a *dead* value.
//! - `Merge(inputs...) -> (output, value_index)`: forwards its first live input; dead only when
//!   every input is dead.
//! - `Enter(data)` (attrs `frame_name`, `is_constant`, `parallel_iterations`,
//!   `maximum_iterations`): moves a value into the child frame `frame_name` (iteration 0; every
//!   iteration when `is_constant`).
//! - `Exit(data)`: moves a value from a frame back to its parent.
//! - `NextIteration(data)`: moves a value to the next iteration of its frame.
//! - `LoopCond(pred)`: the predicate of a loop.
//!
//! A loop's `Merge` takes the `NextIteration` of its body as a second input: that *back edge* is
//! the only kind of cycle a graph may have. Builders append nodes whose inputs already exist, so
//! the back edge is added once the body is built, with [`Graph::set_input`].
//!
//! TensorArrays (`TensorArrayV3` and friends) are per-step arrays of tensors, addressed by a
//! resource handle and ordered by a float `flow` value that passes through every operation on
//! them; gradients flow along the flows.
//!
//! The builders [`Graph::cond`], [`Graph::while_loop`], [`Graph::map_fn`], [`Graph::scan`],
//! [`Graph::foldl`] and [`Graph::foldr`] open a *control-flow context* while the user's
//! functions build their subgraphs. Inside a context, a node that uses a value from outside gets
//! it through a `Switch` (cond) or a constant `Enter` (loop), created once per value, and a node
//! without inputs gets a control edge from the context's pivot, so it runs in the right frame
//! and is dead when its branch is not taken — as in TensorFlow's control-flow contexts.

use super::same_as_input;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::{GraphError, Result};
use crate::graph::{Graph, Node, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};
use crate::validate::topological_order;
use std::collections::HashMap;

/// The ops whose semantics the executor implements itself (dead values, frames).
pub const CONTROL_FLOW_OPS: [&str; 6] = [
    "Switch",
    "Merge",
    "Enter",
    "Exit",
    "NextIteration",
    "LoopCond",
];

/// True for Switch, Merge, Enter, Exit, NextIteration and LoopCond: never folded, merged by
/// CSE, or evaluated by a plain kernel.
pub fn is_control_flow_op(op: &str) -> bool {
    CONTROL_FLOW_OPS.contains(&op)
}

/// True for the TensorArray ops (per-step state the executor keeps).
pub fn is_tensor_array_op(op: &str) -> bool {
    op.starts_with("TensorArray")
}

/// True when input `k` of `node` is a loop's back edge: a `NextIteration` feeding a `Merge`.
/// Cycles through such edges are legal; topological orders ignore them.
pub fn is_back_edge(graph: &Graph, node: &Node, k: usize) -> bool {
    node.op == "Merge"
        && node
            .inputs
            .get(k)
            .and_then(|o| graph.nodes().get(o.node.index()))
            .is_some_and(|p| p.op == "NextIteration")
}

pub fn op_defs() -> Vec<OpDef> {
    // Control flow moves values of every dtype, resource handles included.
    let any = DTypeSet::of(&DType::ALL);
    let res = DTypeSet::RESOURCE;
    let i32s = DTypeSet::of(&[DType::I32]);
    let f32s = DTypeSet::of(&[DType::F32]);
    // Gradients of control flow are structural (see `control_flow_grad.rs`): `gradients` hands
    // whole loops and conds to it, so the ops themselves declare no per-op rule.
    vec![
        OpDef::new("Switch", infer_switch)
            .doc("forwards `data` to output_true when `pred` holds, else to output_false; the other output is dead")
            .input("data", any)
            .input("pred", DTypeSet::BOOL)
            .output("output_false")
            .output("output_true")
            .no_gradient()
            .cheap(),
        OpDef::new("Merge", infer_merge)
            .doc("forwards the first live input and its index; dead when every input is dead")
            .list_input("inputs", any, 1)
            .output("output")
            .output("value_index")
            .no_gradient()
            .cheap(),
        OpDef::new("Enter", infer_enter)
            .doc("moves `data` into the child frame `frame_name` (into every iteration when is_constant)")
            .input("data", any)
            .output("output")
            .attr("frame_name", AttrKind::Str)
            .attr_default("is_constant", AttrKind::Bool, false)
            .attr_default("parallel_iterations", AttrKind::Int, 10i64)
            .attr_default("maximum_iterations", AttrKind::Int, -1i64)
            .no_gradient()
            .cheap(),
        OpDef::new("Exit", same_as_input)
            .doc("moves `data` from a frame to its parent frame")
            .input("data", any)
            .output("output")
            .no_gradient()
            .cheap(),
        OpDef::new("NextIteration", same_as_input)
            .doc("moves `data` to the next iteration of its frame")
            .input("data", any)
            .output("output")
            .no_gradient()
            .cheap(),
        OpDef::new("LoopCond", infer_loop_cond)
            .doc("the predicate of a loop: whether another iteration runs")
            .input("input", DTypeSet::BOOL)
            .output("output")
            .no_gradient()
            .cheap(),
        OpDef::new("TensorArrayV3", infer_ta_create)
            .doc("a per-step array of `size` tensors of `dtype`; outputs its handle and a flow")
            .input("size", i32s)
            .output("handle")
            .output("flow")
            .attr("dtype", AttrKind::DType)
            .attr_default("element_shape", AttrKind::Shape, Shape::unknown())
            .attr_default("dynamic_size", AttrKind::Bool, false)
            .attr_default("keep_dead", AttrKind::Bool, false)
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("TensorArrayByName", infer_ta_by_name)
            .doc("the handle of the per-step array named `shared_name`, made (dynamically sized) on first use: how a loop's gradient reaches the arrays of its saved values at any depth without entering a handle into every loop")
            .output("handle")
            .attr("shared_name", AttrKind::Str)
            .attr("dtype", AttrKind::DType)
            .attr_default("element_shape", AttrKind::Shape, Shape::unknown())
            .attr_default("keep_dead", AttrKind::Bool, false)
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("TensorArrayWriteV3", infer_flow_out)
            .doc("writes `value` at `index`; a dead value is remembered as dead when keep_dead; with keep_first, later writes to a written element are ignored")
            .input("handle", res)
            .input("index", i32s)
            .input("value", any)
            .input("flow_in", f32s)
            .output("flow_out")
            .attr_default("keep_dead", AttrKind::Bool, false)
            .attr_default("keep_first", AttrKind::Bool, false)
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("TensorArrayReadV3", infer_ta_read)
            .doc("the element at `index`")
            .input("handle", res)
            .input("index", i32s)
            .input("flow_in", f32s)
            .output("value")
            .attr("dtype", AttrKind::DType)
            .attr_default("element_shape", AttrKind::Shape, Shape::unknown())
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("TensorArrayStackV3", infer_ta_stack)
            .doc("every element, stacked along a new axis 0")
            .input("handle", res)
            .input("flow_in", f32s)
            .output("value")
            .attr("dtype", AttrKind::DType)
            .attr_default("element_shape", AttrKind::Shape, Shape::unknown())
            .attr_default("num_elements", AttrKind::Int, -1i64)
            .stateful()
            .no_gradient(),
        OpDef::new("TensorArrayUnstackV3", infer_flow_out)
            .doc("writes the slices of `value` along axis 0 as elements 0..n")
            .input("handle", res)
            .input("value", any)
            .input("flow_in", f32s)
            .output("flow_out")
            .stateful()
            .no_gradient(),
        OpDef::new("TensorArraySizeV3", infer_ta_size)
            .doc("the number of elements")
            .input("handle", res)
            .input("flow_in", f32s)
            .output("size")
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("TensorArrayGradV3", infer_ta_create_grad)
            .doc("the gradient array of a TensorArray for `source` (made on first use; its writes add up)")
            .input("handle", res)
            .input("flow_in", f32s)
            .output("grad_handle")
            .output("flow_out")
            .attr("source", AttrKind::Str)
            .stateful()
            .no_gradient()
            .cheap(),
    ]
}

// ---- shape functions --------------------------------------------------------------------------

fn scalar_pred(t: &TensorType, what: &str) -> Result<(), String> {
    match t.shape.rank() {
        Some(0) | None => Ok(()),
        Some(_) => Err(format!("{what} must be a scalar, got shape {}", t.shape)),
    }
}

fn infer_switch(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    scalar_pred(ctx.input(1), "pred")?;
    Ok(vec![ctx.input(0).clone(), ctx.input(0).clone()])
}

/// The most precise shape every one of `shapes` fits: dims that differ become unknown.
pub fn relax_shapes<'a>(shapes: impl IntoIterator<Item = &'a Shape>) -> Shape {
    let mut it = shapes.into_iter();
    let Some(first) = it.next() else {
        return Shape::unknown();
    };
    let mut dims: Option<Vec<Dim>> = first.dims().map(<[Dim]>::to_vec);
    for s in it {
        dims = match (dims, s.dims()) {
            (Some(a), Some(b)) if a.len() == b.len() => Some(
                a.into_iter()
                    .zip(b)
                    .map(|(x, y)| if &x == y { x } else { Dim::Unknown })
                    .collect(),
            ),
            _ => None,
        };
    }
    dims.map_or_else(Shape::unknown, Shape::new)
}

/// True when every value of static shape `shape` has a shape `invariant` allows: unknown dims
/// of the invariant allow anything, other dims must be the same.
pub fn shape_fits(invariant: &Shape, shape: &Shape) -> bool {
    match (invariant.dims(), shape.dims()) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x == Dim::Unknown || x == y)
        }
    }
}

fn infer_merge(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let idx: Vec<usize> = (0..ctx.inputs.len()).collect();
    let dtype = ctx.same_dtype(&idx)?;
    let shape = relax_shapes(ctx.inputs.iter().map(|t| &t.shape));
    Ok(vec![
        TensorType { dtype, shape },
        TensorType::new(DType::I32, Shape::scalar()),
    ])
}

fn infer_enter(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if ctx.attrs.string("frame_name")?.is_empty() {
        return Err("frame_name must not be empty".into());
    }
    let p = *ctx.attrs.int("parallel_iterations")?;
    if p < 1 {
        return Err(format!("parallel_iterations must be at least 1, got {p}"));
    }
    same_as_input(ctx)
}

fn infer_loop_cond(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    scalar_pred(ctx.input(0), "the loop predicate")?;
    Ok(vec![TensorType::new(DType::Bool, Shape::scalar())])
}

fn flow_type() -> TensorType {
    TensorType::new(DType::F32, Shape::scalar())
}

fn check_index(ctx: &InferCtx<'_>, i: usize, what: &str) -> Result<(), String> {
    match ctx.input(i).shape.rank() {
        Some(0) | None => Ok(()),
        Some(_) => Err(format!(
            "{what} must be a scalar, got {}",
            ctx.input(i).shape
        )),
    }
}

fn infer_ta_create(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    check_index(ctx, 0, "size")?;
    if let Some(n) = ctx.const_ints(0) {
        if n.first().is_some_and(|&n| n < 0) {
            return Err(format!("size must not be negative, got {}", n[0]));
        }
    }
    Ok(vec![
        TensorType::new(DType::Resource, Shape::scalar()),
        flow_type(),
    ])
}

fn infer_ta_by_name(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if ctx.attrs.string("shared_name")?.is_empty() {
        return Err("shared_name must not be empty".into());
    }
    Ok(vec![TensorType::new(DType::Resource, Shape::scalar())])
}

fn infer_ta_create_grad(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![
        TensorType::new(DType::Resource, Shape::scalar()),
        flow_type(),
    ])
}

fn infer_flow_out(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if ctx.op == "TensorArrayWriteV3" {
        check_index(ctx, 1, "index")?;
    }
    Ok(vec![flow_type()])
}

fn infer_ta_read(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    check_index(ctx, 1, "index")?;
    Ok(vec![TensorType::new(
        *ctx.attrs.dtype("dtype")?,
        ctx.attrs.shape("element_shape")?.clone(),
    )])
}

fn infer_ta_stack(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let n = *ctx.attrs.int("num_elements")?;
    let lead = if n >= 0 {
        Dim::Known(n as usize)
    } else {
        Dim::Unknown
    };
    let shape = match ctx.attrs.shape("element_shape")?.dims() {
        Some(d) => {
            let mut dims = vec![lead];
            dims.extend(d.iter().cloned());
            Shape::new(dims)
        }
        None => Shape::unknown(),
    };
    Ok(vec![TensorType::new(*ctx.attrs.dtype("dtype")?, shape)])
}

fn infer_ta_size(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType::new(DType::I32, Shape::scalar())])
}

// ---- frames -----------------------------------------------------------------------------------

/// Index of a frame in a [`FrameMap`]; 0 is the root frame.
pub type FrameId = u32;
pub const ROOT_FRAME: FrameId = 0;

/// One frame: the loop named `name` (by its Enter nodes' `frame_name`) inside `parent`.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameDesc {
    pub name: String,
    pub parent: FrameId,
    pub depth: u32,
}

/// Which frame each node runs in: an `Enter` starts (or joins) the child frame named by its
/// `frame_name`, an `Exit` returns to the parent of its input's frame, every other node runs
/// in the frame of its inputs (a node without inputs in the root frame).
#[derive(Clone, Debug)]
pub struct FrameMap {
    pub frames: Vec<FrameDesc>,
    of_node: Vec<FrameId>,
    by_name: HashMap<String, FrameId>,
}

impl Default for FrameMap {
    fn default() -> Self {
        FrameMap {
            frames: vec![FrameDesc {
                name: String::new(),
                parent: ROOT_FRAME,
                depth: 0,
            }],
            of_node: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

const UNASSIGNED: FrameId = FrameId::MAX;

impl FrameMap {
    /// Assigns every node its frame, visiting nodes in `order` (a topological order that
    /// ignores back edges). Errors name a node whose inputs come from different frames, an
    /// `Exit` outside any loop, a frame entered from two different parent frames, or a back
    /// edge between frames.
    pub fn analyze(graph: &Graph, order: &[NodeId]) -> Result<FrameMap> {
        let mut map = FrameMap {
            of_node: vec![UNASSIGNED; graph.len()],
            ..FrameMap::default()
        };
        for &id in order {
            let f = map.assign(graph, id, true)?;
            map.of_node[id.index()] = f;
        }
        for (i, node) in graph.nodes().iter().enumerate() {
            for (k, o) in node.inputs.iter().enumerate() {
                if is_back_edge(graph, node, k) && map.of_node[o.node.index()] != map.of_node[i] {
                    return Err(frame_error(
                        node,
                        format!(
                            "its back edge from `{}` comes from another frame",
                            graph.node(o.node).name
                        ),
                    ));
                }
            }
        }
        Ok(map)
    }

    /// Assigns frames to the nodes appended since the last call (builders' incremental use;
    /// never fails: mismatches are reported by [`FrameMap::analyze`] when the graph runs).
    pub(crate) fn extend(&mut self, graph: &Graph) {
        for i in self.of_node.len()..graph.len() {
            let f = self
                .assign(graph, NodeId(i as u32), false)
                .unwrap_or(ROOT_FRAME);
            self.of_node.push(f);
        }
    }

    fn frame_of(&self, id: NodeId) -> FrameId {
        self.of_node
            .get(id.index())
            .copied()
            .filter(|&f| f != UNASSIGNED)
            .unwrap_or(ROOT_FRAME)
    }

    fn assign(&mut self, graph: &Graph, id: NodeId, strict: bool) -> Result<FrameId> {
        let node = graph.node(id);
        let mut frames = Vec::with_capacity(node.inputs.len() + node.control_inputs.len());
        for (k, o) in node.inputs.iter().enumerate() {
            if is_back_edge(graph, node, k) || o.node.index() >= graph.len() {
                continue;
            }
            if !strict && o.node.index() >= self.of_node.len() {
                continue;
            }
            frames.push((o.node, self.frame_of(o.node)));
        }
        for &c in &node.control_inputs {
            if c.index() < self.of_node.len() || (strict && c.index() < graph.len()) {
                frames.push((c, self.frame_of(c)));
            }
        }
        let input_frame = frames.first().map_or(ROOT_FRAME, |f| f.1);
        if strict {
            if let Some(&(other, f)) = frames.iter().find(|f| f.1 != input_frame) {
                return Err(frame_error(
                    node,
                    format!(
                        "its inputs come from different frames: `{}` runs in {} and `{}` in {} \
                         (values enter a loop through Enter nodes)",
                        graph.node(frames[0].0).name,
                        self.describe(input_frame),
                        graph.node(other).name,
                        self.describe(f)
                    ),
                ));
            }
        }
        match node.op.as_str() {
            "Enter" => {
                let name = node
                    .attrs
                    .string_opt("frame_name")
                    .cloned()
                    .unwrap_or_default();
                match self.by_name.get(&name) {
                    Some(&f) => {
                        if strict && self.frames[f as usize].parent != input_frame {
                            return Err(frame_error(
                                node,
                                format!(
                                    "frame `{name}` is entered from {} and from {}",
                                    self.describe(self.frames[f as usize].parent),
                                    self.describe(input_frame)
                                ),
                            ));
                        }
                        Ok(f)
                    }
                    None => {
                        let f = self.frames.len() as FrameId;
                        let depth = self.frames[input_frame as usize].depth + 1;
                        self.frames.push(FrameDesc {
                            name: name.clone(),
                            parent: input_frame,
                            depth,
                        });
                        self.by_name.insert(name, f);
                        Ok(f)
                    }
                }
            }
            "Exit" => {
                if input_frame == ROOT_FRAME {
                    if strict {
                        return Err(frame_error(node, "it is not inside a loop frame".into()));
                    }
                    return Ok(ROOT_FRAME);
                }
                Ok(self.frames[input_frame as usize].parent)
            }
            _ => Ok(input_frame),
        }
    }

    /// The frame node `id` runs in.
    pub fn frame(&self, id: NodeId) -> FrameId {
        self.frame_of(id)
    }

    pub fn parent(&self, f: FrameId) -> FrameId {
        self.frames[f as usize].parent
    }

    pub fn num_frames(&self) -> usize {
        self.frames.len()
    }

    /// The frame named `name` (an Enter's `frame_name`).
    pub fn by_name(&self, name: &str) -> Option<FrameId> {
        self.by_name.get(name).copied()
    }

    /// True when `f` is `ancestor` or lies inside it.
    pub fn is_within(&self, mut f: FrameId, ancestor: FrameId) -> bool {
        loop {
            if f == ancestor {
                return true;
            }
            if f == ROOT_FRAME {
                return false;
            }
            f = self.frames[f as usize].parent;
        }
    }

    /// `the root frame` or `loop frame `name``.
    pub fn describe(&self, f: FrameId) -> String {
        if f == ROOT_FRAME {
            "the root frame".into()
        } else {
            format!("loop frame `{}`", self.frames[f as usize].name)
        }
    }
}

fn frame_error(node: &Node, message: String) -> GraphError {
    GraphError::InvalidNode {
        node: node.name.clone(),
        op: node.op.clone(),
        message,
    }
}

// ---- control-flow contexts and capture ---------------------------------------------------------

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
        grad: Option<Box<super::control_flow_grad::GradLoop>>,
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
    pub counters: HashMap<String, super::control_flow_grad::LoopCounter>,
    /// Per forward loop and saved value: the TensorArray handle and its final flow.
    pub saved: HashMap<(String, Output), super::loop_saved_values::SavedArray>,
    /// Per checkpointed loop and loop variable: the array of its checkpoints (handle and final
    /// flow).
    pub checkpoints: HashMap<(String, Output), (Output, Output)>,
    /// Per forward loop frame and base frame: the chain of its saved values' writes.
    pub stores: HashMap<(FrameId, FrameId), super::loop_saved_values::FrameChain>,
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
fn dead_after_loop_exit(g: &mut Graph, o: Output) -> Result<Output> {
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
                    super::control_flow_grad::saved_value(g, gl, o, d)?
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

// ---- cond -------------------------------------------------------------------------------------

/// The attribute on a cond's Merge nodes naming the predicate (`node:index`), for gradients.
pub const COND_PRED_ATTR: &str = "_cond_pred";

fn check_pred(g: &Graph, pred: Output, what: &str) -> Result<()> {
    g.check_output(pred)?;
    let t = g.output_type(pred);
    if t.dtype != DType::Bool || matches!(t.shape.rank(), Some(r) if r != 0) {
        return Err(GraphError::InvalidNode {
            node: g.node(pred.node).name.clone(),
            op: g.node(pred.node).op.clone(),
            message: format!("{what} must be a bool scalar, got {t}"),
        });
    }
    Ok(())
}

impl Graph {
    /// `true_fn()` when `pred` holds, else `false_fn()`: both branches are built into the graph
    /// and the step runs one of them (the other only passes dead values). Each function builds
    /// its branch on the graph and returns its outputs; both must return as many outputs, with
    /// the same dtypes. The results' static shapes are the most precise shapes both branches fit.
    pub fn cond<T, F>(&mut self, pred: Output, true_fn: T, false_fn: F) -> Result<Vec<Output>>
    where
        T: FnOnce(&mut Graph) -> Result<Vec<Output>>,
        F: FnOnce(&mut Graph) -> Result<Vec<Output>>,
    {
        check_pred(self, pred, "the predicate of cond")?;
        self.with_scope("cond", |g| {
            let pred = dead_after_loop_exit(g, pred)?;
            let sw = g.build_raw(|g| {
                g.build("Switch")
                    .name("switch_pred")
                    .input(pred)
                    .input(pred)
                    .finish()
            })?;
            let t = g.cond_branch(pred, sw, 1, true_fn)?;
            let f = g.cond_branch(pred, sw, 0, false_fn)?;
            if t.len() != f.len() {
                return Err(GraphError::InvalidNode {
                    node: g.scoped_name("merge"),
                    op: "Merge".into(),
                    message: format!(
                        "the true branch returns {} outputs, the false branch {}",
                        t.len(),
                        f.len()
                    ),
                });
            }
            let pred_name = g.output_name(pred);
            let mut outs = Vec::with_capacity(t.len());
            for (k, (&a, &b)) in f.iter().zip(&t).enumerate() {
                let (da, db) = (g.dtype(a), g.dtype(b));
                if da != db {
                    return Err(GraphError::InvalidNode {
                        node: g.scoped_name("merge"),
                        op: "Merge".into(),
                        message: format!(
                            "output {k}: the true branch returns {db}, the false branch {da}"
                        ),
                    });
                }
                let pn = pred_name.clone();
                let m = g.build_raw(|g| {
                    g.build("Merge")
                        .input(a)
                        .input(b)
                        .attr(COND_PRED_ATTR, pn)
                        .finish1()
                })?;
                outs.push(m);
            }
            Ok(outs)
        })
    }

    fn cond_branch<B>(
        &mut self,
        pred: Output,
        sw: NodeId,
        branch: usize,
        f: B,
    ) -> Result<Vec<Output>>
    where
        B: FnOnce(&mut Graph) -> Result<Vec<Output>>,
    {
        let start = self.len();
        let name = if branch == 1 { "switch_t" } else { "switch_f" };
        let pivot = self.build_raw(|g| {
            g.build("Identity")
                .name(name)
                .input(Output::new(sw, branch))
                .finish()
        })?;
        let frame = self.frame_of_node(pivot);
        let mut ctx = Ctx::new(CtxKind::Cond { pred, branch }, frame, Some(pivot), start);
        ctx.captured.insert(pred, Output::new(sw, branch));
        self.cf.stack.push(ctx);
        let r = f(self).and_then(|outs| {
            outs.into_iter()
                .map(|o| self.capture_here(o))
                .collect::<Result<Vec<_>>>()
        });
        self.cf.stack.pop();
        r
    }
}

// ---- while_loop -------------------------------------------------------------------------------

/// Options of [`Graph::while_loop`].
#[derive(Clone, Debug)]
pub struct WhileOptions {
    /// Name scope of the loop's nodes; also its frame name once made unique.
    pub name: String,
    /// How many iterations may run at once (TensorFlow's default: 10).
    pub parallel_iterations: usize,
    /// A step fails with an error when the predicate still holds after this many iterations
    /// (a runaway loop is stopped, not hung).
    pub maximum_iterations: Option<u64>,
    /// Per loop variable: the static shape every iteration's value must fit. `None` (or a
    /// missing entry) means the initial value's shape; unknown dims let it change.
    pub shape_invariants: Vec<Option<Shape>>,
    /// The memory policy of the loop's gradient. `None` (the default) saves every iteration's
    /// forward values (memory O(T)). `Some(k)` saves only the loop variables every k
    /// iterations; each backward iteration recomputes its forward values from the nearest
    /// checkpoint with a copy of the body (memory O(T/k), time O(T k); k near sqrt(T) gives
    /// O(sqrt(T)) memory). Both give the same gradients. Needs a body of stateless ops (and
    /// TensorArray reads) without nested loops or conds.
    pub gradient_checkpoints: Option<u64>,
}

impl Default for WhileOptions {
    fn default() -> Self {
        WhileOptions {
            name: "while".into(),
            parallel_iterations: 10,
            maximum_iterations: None,
            shape_invariants: Vec::new(),
            gradient_checkpoints: None,
        }
    }
}

impl WhileOptions {
    pub fn parallel_iterations(mut self, n: usize) -> Self {
        self.parallel_iterations = n;
        self
    }
    pub fn maximum_iterations(mut self, n: u64) -> Self {
        self.maximum_iterations = Some(n);
        self
    }
    pub fn shape_invariants(mut self, shapes: Vec<Option<Shape>>) -> Self {
        self.shape_invariants = shapes;
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    pub fn gradient_checkpoints(mut self, every: u64) -> Self {
        self.gradient_checkpoints = Some(every);
        self
    }
}

/// The private Enter attribute that carries a loop's gradient checkpoint interval.
pub(crate) const CHECKPOINTS_ATTR: &str = "_gradient_checkpoints";

/// The nodes of one loop, as [`Graph::while_loop`] builds them (per loop variable j: Enter_j ->
/// Merge_j -> Switch_j(LoopCond) -> Identity_j (body input) / Exit_j; the body's output j ->
/// NextIteration_j -> Merge_j).
#[derive(Clone, Debug)]
pub struct LoopParts {
    pub frame_name: String,
    pub enters: Vec<NodeId>,
    pub merges: Vec<NodeId>,
    pub switches: Vec<NodeId>,
    pub body_inputs: Vec<Output>,
    pub next_iterations: Vec<NodeId>,
    pub exits: Vec<NodeId>,
    pub loop_cond: NodeId,
}

fn loop_error(node: String, message: String) -> GraphError {
    GraphError::InvalidNode {
        node,
        op: "while_loop".into(),
        message,
    }
}

impl Graph {
    /// Repeats `body_fn` while `cond_fn` holds, inside one step: `cond_fn(vars)` returns a bool
    /// scalar, `body_fn(vars)` the next values of the loop variables (as many, with the same
    /// dtypes, and shapes that fit each variable's shape invariant). Returns the final values.
    /// Outside values used by either function enter the loop once, as loop invariants.
    pub fn while_loop<C, B>(
        &mut self,
        cond_fn: C,
        body_fn: B,
        loop_vars: &[Output],
        options: &WhileOptions,
    ) -> Result<Vec<Output>>
    where
        C: FnOnce(&mut Graph, &[Output]) -> Result<Output>,
        B: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        self.while_loop_parts(cond_fn, body_fn, loop_vars, options)
            .map(|(exits, _)| exits)
    }

    /// [`Graph::while_loop`], also returning the loop's nodes.
    pub fn while_loop_parts<C, B>(
        &mut self,
        cond_fn: C,
        body_fn: B,
        loop_vars: &[Output],
        options: &WhileOptions,
    ) -> Result<(Vec<Output>, LoopParts)>
    where
        C: FnOnce(&mut Graph, &[Output]) -> Result<Output>,
        B: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        let where_ = self.scoped_name(&options.name);
        if loop_vars.is_empty() {
            return Err(loop_error(
                where_,
                "needs at least one loop variable".into(),
            ));
        }
        if options.parallel_iterations == 0 {
            return Err(loop_error(
                where_,
                "parallel_iterations must be at least 1".into(),
            ));
        }
        if options.shape_invariants.len() > loop_vars.len() {
            return Err(loop_error(
                where_,
                format!(
                    "{} shape invariants for {} loop variables",
                    options.shape_invariants.len(),
                    loop_vars.len()
                ),
            ));
        }
        for &v in loop_vars {
            self.check_output(v)?;
        }
        let max_iter = match options.maximum_iterations {
            Some(n) => i64::try_from(n).map_err(|_| {
                loop_error(
                    where_.clone(),
                    format!("maximum_iterations {n} is too large"),
                )
            })?,
            None => -1,
        };
        let pi = options.parallel_iterations as i64;
        let checkpoints = match options.gradient_checkpoints {
            Some(0) => {
                return Err(loop_error(
                    where_,
                    "gradient_checkpoints must be at least 1".into(),
                ))
            }
            Some(k) => i64::try_from(k).map_err(|_| {
                loop_error(
                    where_.clone(),
                    format!("gradient_checkpoints {k} is too large"),
                )
            })?,
            None => 0,
        };
        self.with_scope(&options.name, |g| {
            let frame_name = g.scoped_name("").trim_end_matches('/').to_string();
            let inits = loop_vars
                .iter()
                .map(|&v| dead_after_loop_exit(g, v))
                .collect::<Result<Vec<_>>>()?;
            let var_name = |g: &Graph, j: usize| {
                format!("loop variable {j} (`{}`)", g.output_name(loop_vars[j]))
            };
            let mut invariants = Vec::with_capacity(inits.len());
            for (j, &v) in inits.iter().enumerate() {
                let s = g.shape(v).clone();
                let inv = options
                    .shape_invariants
                    .get(j)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| s.clone());
                if !shape_fits(&inv, &s) {
                    return Err(loop_error(
                        frame_name.clone(),
                        format!(
                            "{} enters with shape {s}, which its shape invariant {inv} does not allow",
                            var_name(g, j)
                        ),
                    ));
                }
                invariants.push(inv);
            }
            let start = g.len();
            let mut enters = Vec::with_capacity(inits.len());
            let mut merges = Vec::with_capacity(inits.len());
            for (j, &v) in inits.iter().enumerate() {
                let fname = frame_name.clone();
                let e = g.build_raw(|g| {
                    let b = g
                        .build("Enter")
                        .input(v)
                        .attr("frame_name", fname)
                        .attr("parallel_iterations", pi)
                        .attr("maximum_iterations", max_iter);
                    if checkpoints > 0 {
                        b.attr(CHECKPOINTS_ATTR, checkpoints).finish()
                    } else {
                        b.finish()
                    }
                })?;
                let m = g.build_raw(|g| {
                    g.build("Merge")
                        .input(Output::new(e, 0))
                        .input(Output::new(e, 0))
                        .finish()
                })?;
                g.relax_output_shape(Output::new(m, 0), invariants[j].clone());
                enters.push(e);
                merges.push(m);
            }
            let frame = g.frame_of_node(enters[0]);
            let kind = CtxKind::Loop {
                frame_name: frame_name.clone(),
                parallel_iterations: pi,
                grad: None,
            };
            g.cf
                .stack
                .push(Ctx::new(kind, frame, Some(merges[0]), start));
            let depth = g.cf.stack.len();
            let built = g.loop_inside(
                cond_fn,
                body_fn,
                &merges,
                &invariants,
                &|g: &Graph, j| var_name(g, j),
            );
            g.cf.stack.truncate(depth - 1);
            let (loop_cond, switches, body_inputs, nexts) = built?;
            let mut exits = Vec::with_capacity(switches.len());
            for &sw in &switches {
                exits.push(g.build_raw(|g| g.build("Exit").input(Output::new(sw, 0)).finish())?);
            }
            let parts = LoopParts {
                frame_name,
                enters,
                merges,
                switches,
                body_inputs,
                next_iterations: nexts,
                exits: exits.clone(),
                loop_cond,
            };
            Ok((exits.into_iter().map(|e| Output::new(e, 0)).collect(), parts))
        })
    }

    /// The inside of a loop (its context open): predicate, switches, body, back edges.
    #[allow(clippy::type_complexity)]
    fn loop_inside<C, B>(
        &mut self,
        cond_fn: C,
        body_fn: B,
        merges: &[NodeId],
        invariants: &[Shape],
        var_name: &dyn Fn(&Graph, usize) -> String,
    ) -> Result<(NodeId, Vec<NodeId>, Vec<Output>, Vec<NodeId>)>
    where
        C: FnOnce(&mut Graph, &[Output]) -> Result<Output>,
        B: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        let vars: Vec<Output> = merges.iter().map(|&m| Output::new(m, 0)).collect();
        let pred = cond_fn(self, &vars)?;
        check_pred(self, pred, "the loop predicate")?;
        let pred = self.capture_here(pred)?;
        let lc = self.build_raw(|g| g.build("LoopCond").input(pred).finish())?;
        let mut switches = Vec::with_capacity(vars.len());
        let mut body_inputs = Vec::with_capacity(vars.len());
        for &v in &vars {
            let sw = self.build_raw(|g| {
                g.build("Switch")
                    .input(v)
                    .input(Output::new(lc, 0))
                    .finish()
            })?;
            let id = self.build_raw(|g| g.build("Identity").input(Output::new(sw, 1)).finish1())?;
            switches.push(sw);
            body_inputs.push(id);
        }
        if let Some(ctx) = self.cf.stack.last_mut() {
            ctx.pivot = Some(body_inputs[0].node);
        }
        let outs = body_fn(self, &body_inputs)?;
        if outs.len() != vars.len() {
            return Err(loop_error(
                self.scoped_name(""),
                format!(
                    "the body returns {} values for {} loop variables",
                    outs.len(),
                    vars.len()
                ),
            ));
        }
        let mut nexts = Vec::with_capacity(outs.len());
        for (j, &o) in outs.iter().enumerate() {
            self.check_output(o)?;
            let o = self.capture_here(o)?;
            let (want, got) = (self.dtype(vars[j]), self.dtype(o));
            if want != got {
                return Err(loop_error(
                    self.scoped_name(""),
                    format!(
                        "{} has dtype {want}, but the body returns {got}",
                        var_name(self, j)
                    ),
                ));
            }
            let s = self.shape(o).clone();
            if !shape_fits(&invariants[j], &s) {
                return Err(loop_error(
                    self.scoped_name(""),
                    format!(
                        "{} has shape invariant {}, but the body returns shape {s}; give it a \
                         shape invariant with unknown dims to let its shape change",
                        var_name(self, j),
                        invariants[j]
                    ),
                ));
            }
            let next = self.build_raw(|g| g.build("NextIteration").input(o).finish())?;
            self.set_input(merges[j], 1, Output::new(next, 0))?;
            nexts.push(next);
        }
        Ok((lc, switches, body_inputs, nexts))
    }
}

// ---- TensorArray ------------------------------------------------------------------------------

/// A per-step array of tensors: a handle and the flow that orders the operations on it. Each
/// write returns a new `TensorArray` with the flow after the write; use that one afterwards.
#[derive(Clone, Debug)]
pub struct TensorArray {
    pub handle: Output,
    pub flow: Output,
    pub dtype: DType,
    pub element_shape: Shape,
}

impl Graph {
    /// A TensorArray of `size` elements (an int32 scalar; with `dynamic_size` it grows on
    /// writes past the end). `element_shape` is the static shape of its elements.
    pub fn tensor_array(
        &mut self,
        dtype: DType,
        size: Output,
        element_shape: Shape,
        dynamic_size: bool,
    ) -> Result<TensorArray> {
        let n = self
            .build("TensorArrayV3")
            .input(size)
            .attr("dtype", dtype)
            .attr("element_shape", element_shape.clone())
            .attr("dynamic_size", dynamic_size)
            .finish()?;
        Ok(TensorArray {
            handle: Output::new(n, 0),
            flow: Output::new(n, 1),
            dtype,
            element_shape,
        })
    }
}

impl TensorArray {
    fn with_flow(&self, flow: Output) -> TensorArray {
        TensorArray {
            flow,
            ..self.clone()
        }
    }

    /// Writes `value` at `index` (int32 scalar).
    pub fn write(&self, g: &mut Graph, index: Output, value: Output) -> Result<TensorArray> {
        let flow = g
            .build("TensorArrayWriteV3")
            .input(self.handle)
            .input(index)
            .input(value)
            .input(self.flow)
            .finish1()?;
        Ok(self.with_flow(flow))
    }

    /// The element at `index`.
    pub fn read(&self, g: &mut Graph, index: Output) -> Result<Output> {
        g.build("TensorArrayReadV3")
            .input(self.handle)
            .input(index)
            .input(self.flow)
            .attr("dtype", self.dtype)
            .attr("element_shape", self.element_shape.clone())
            .finish1()
    }

    /// Every element stacked along a new axis 0 (`num_elements` when known statically, for the
    /// result's static shape).
    pub fn stack(&self, g: &mut Graph, num_elements: Option<usize>) -> Result<Output> {
        g.build("TensorArrayStackV3")
            .input(self.handle)
            .input(self.flow)
            .attr("dtype", self.dtype)
            .attr("element_shape", self.element_shape.clone())
            .attr("num_elements", num_elements.map_or(-1, |n| n as i64))
            .finish1()
    }

    /// Writes the slices of `value` along axis 0 as elements 0, 1, ...
    pub fn unstack(&self, g: &mut Graph, value: Output) -> Result<TensorArray> {
        let flow = g
            .build("TensorArrayUnstackV3")
            .input(self.handle)
            .input(value)
            .input(self.flow)
            .finish1()?;
        Ok(self.with_flow(flow))
    }

    /// The number of elements (int32 scalar).
    pub fn size(&self, g: &mut Graph) -> Result<Output> {
        g.build("TensorArraySizeV3")
            .input(self.handle)
            .input(self.flow)
            .finish1()
    }

    /// The gradient TensorArray for gradient computation `source`, ordered after `flow`.
    pub fn grad(&self, g: &mut Graph, source: &str, flow: Output) -> Result<TensorArray> {
        let n = g
            .build("TensorArrayGradV3")
            .input(self.handle)
            .input(flow)
            .attr("source", source)
            .finish()?;
        Ok(TensorArray {
            handle: Output::new(n, 0),
            flow: Output::new(n, 1),
            dtype: self.dtype,
            element_shape: self.element_shape.clone(),
        })
    }
}

// ---- map_fn, scan, foldl, foldr ----------------------------------------------------------------

/// The leading dim shared by `elems`: a constant when static, else computed from the first.
fn leading_dim(g: &mut Graph, elems: &[Output], what: &str) -> Result<(Output, Option<usize>)> {
    let mut known: Option<usize> = None;
    for &e in elems {
        g.check_output(e)?;
        let s = g.shape(e).clone();
        match s.rank() {
            Some(0) => {
                return Err(loop_error(
                    g.scoped_name(what),
                    format!(
                        "`{}` is a scalar; elems need a leading axis",
                        g.output_name(e)
                    ),
                ))
            }
            _ => {
                if let Dim::Known(n) = s.dim(0) {
                    if known.is_some_and(|k| k != n) {
                        return Err(loop_error(
                            g.scoped_name(what),
                            format!(
                                "elems have different leading dims ({} and {n})",
                                known.unwrap_or(0)
                            ),
                        ));
                    }
                    known = Some(n);
                }
            }
        }
    }
    let first = elems.first().copied().ok_or_else(|| {
        loop_error(
            g.scoped_name(what),
            "needs at least one elems tensor".into(),
        )
    })?;
    let n = match known {
        Some(n) => g.scalar(n as i32)?,
        None => {
            let s = g.shape_of(first)?;
            let z = g.scalar(0i32)?;
            g.gather(s, z, 0)?
        }
    };
    Ok((n, known))
}

fn element_shape(s: &Shape) -> Shape {
    match s.dims() {
        Some(d) if !d.is_empty() => Shape::new(d[1..].to_vec()),
        _ => Shape::unknown(),
    }
}

impl Graph {
    /// `f` applied to the slices of `elems` along axis 0 (all with the same leading dim), the
    /// results stacked along axis 0. `out_dtypes` gives the number and dtypes of `f`'s outputs
    /// (the dtypes of `elems` when `None`). Iterations may overlap (`parallel_iterations` 10).
    pub fn map_fn<F>(
        &mut self,
        f: F,
        elems: &[Output],
        out_dtypes: Option<&[DType]>,
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        let out_dtypes: Vec<DType> = match out_dtypes {
            Some(d) => d.to_vec(),
            None => elems
                .iter()
                .map(|&e| self.check_output(e).map(|e| self.dtype(e)))
                .collect::<Result<_>>()?,
        };
        self.with_scope("map", |g| {
            let (n, known) = leading_dim(g, elems, "map")?;
            let mut inputs = Vec::with_capacity(elems.len());
            for &e in elems {
                let es = element_shape(g.shape(e));
                let dt = g.dtype(e);
                let ta = g.tensor_array(dt, n, es, false)?;
                inputs.push(ta.unstack(g, e)?);
            }
            let mut outs = Vec::with_capacity(out_dtypes.len());
            for &dt in &out_dtypes {
                outs.push(g.tensor_array(dt, n, Shape::unknown(), false)?);
            }
            let zero = g.scalar(0i32)?;
            let mut vars = vec![zero];
            vars.extend(outs.iter().map(|t| t.flow));
            let out_shapes = std::cell::RefCell::new(Vec::new());
            let exits = g.while_loop(
                |g, v| g.less(v[0], n),
                |g, v| {
                    let i = v[0];
                    let xs = inputs
                        .iter()
                        .map(|ta| ta.read(g, i))
                        .collect::<Result<Vec<_>>>()?;
                    let ys = f(g, &xs)?;
                    if ys.len() != outs.len() {
                        return Err(loop_error(
                            g.scoped_name(""),
                            format!(
                                "map_fn's function returns {} values, {} out_dtypes given",
                                ys.len(),
                                outs.len()
                            ),
                        ));
                    }
                    let mut next = vec![g.add_const_i32(i, 1)?];
                    for (k, (&y, ta)) in ys.iter().zip(&outs).enumerate() {
                        if g.dtype(y) != ta.dtype {
                            return Err(loop_error(
                                g.scoped_name(""),
                                format!(
                                    "map_fn's output {k} has dtype {}, out_dtypes says {}",
                                    g.dtype(y),
                                    ta.dtype
                                ),
                            ));
                        }
                        out_shapes.borrow_mut().push(g.shape(y).clone());
                        next.push(ta.with_flow(v[k + 1]).write(g, i, y)?.flow);
                    }
                    Ok(next)
                },
                &vars,
                &WhileOptions::default(),
            )?;
            let shapes = out_shapes.into_inner();
            let mut results = Vec::with_capacity(outs.len());
            for (k, ta) in outs.iter().enumerate() {
                let es = shapes.get(k).cloned().unwrap_or_else(Shape::unknown);
                g.set_tensor_array_element_shape(ta.handle.node, es.clone());
                let done = TensorArray {
                    element_shape: es,
                    ..ta.with_flow(exits[k + 1])
                };
                results.push(done.stack(g, known)?);
            }
            Ok(results)
        })
    }

    fn add_const_i32(&mut self, x: Output, v: i32) -> Result<Output> {
        let c = self.scalar(v)?;
        self.add(x, c)
    }

    fn set_tensor_array_element_shape(&mut self, node: NodeId, shape: Shape) {
        if self.node(node).op == "TensorArrayV3" {
            self.nodes_mut()[node.index()]
                .attrs
                .set("element_shape", shape);
        }
    }

    /// The running results of `f(acc, x)` over the slices `x` of `elems` along axis 0 (last
    /// to first when `reverse`), starting from `initializer`, stacked along axis 0 (TensorFlow's
    /// `scan`). `f` returns the next accumulator: as many values as `initializer`, same dtypes
    /// and shapes.
    pub fn scan<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
        reverse: bool,
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        self.with_scope("scan", |g| {
            g.scan_impl(f, elems, initializer, reverse, true)
        })
    }

    /// The final accumulator of `f(acc, x)` over the slices of `elems` along axis 0, first to
    /// last, starting from `initializer` (TensorFlow's `foldl`).
    pub fn foldl<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        self.with_scope("foldl", |g| {
            g.scan_impl(f, elems, initializer, false, false)
        })
    }

    /// Like [`Graph::foldl`], last to first (TensorFlow's `foldr`).
    pub fn foldr<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        self.with_scope("foldr", |g| g.scan_impl(f, elems, initializer, true, false))
    }

    fn scan_impl<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
        reverse: bool,
        stacked: bool,
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        if initializer.is_empty() {
            return Err(loop_error(
                self.scoped_name(""),
                "needs at least one initial accumulator value".into(),
            ));
        }
        for &a in initializer {
            self.check_output(a)?;
        }
        let (n, known) = leading_dim(self, elems, "")?;
        let mut inputs = Vec::with_capacity(elems.len());
        for &e in elems {
            let es = element_shape(self.shape(e));
            let dt = self.dtype(e);
            let ta = self.tensor_array(dt, n, es, false)?;
            inputs.push(ta.unstack(self, e)?);
        }
        let na = initializer.len();
        let mut outs = Vec::new();
        if stacked {
            for &a in initializer {
                let (dt, s) = (self.dtype(a), self.shape(a).clone());
                outs.push(self.tensor_array(dt, n, s, false)?);
            }
        }
        let zero = self.scalar(0i32)?;
        let mut vars = vec![zero];
        vars.extend_from_slice(initializer);
        vars.extend(outs.iter().map(|t| t.flow));
        let exits = self.while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let i = v[0];
                let at = if reverse {
                    let last = g.add_const_i32(n, -1)?;
                    g.sub(last, i)?
                } else {
                    i
                };
                let xs = inputs
                    .iter()
                    .map(|ta| ta.read(g, at))
                    .collect::<Result<Vec<_>>>()?;
                let acc = f(g, &v[1..1 + na], &xs)?;
                if acc.len() != na {
                    return Err(loop_error(
                        g.scoped_name(""),
                        format!(
                            "the function returns {} values for {na} accumulators",
                            acc.len()
                        ),
                    ));
                }
                let mut next = vec![g.add_const_i32(i, 1)?];
                next.extend_from_slice(&acc);
                for (k, ta) in outs.iter().enumerate() {
                    next.push(ta.with_flow(v[1 + na + k]).write(g, at, acc[k])?.flow);
                }
                Ok(next)
            },
            &vars,
            &WhileOptions::default(),
        )?;
        if !stacked {
            return Ok(exits[1..1 + na].to_vec());
        }
        outs.iter()
            .enumerate()
            .map(|(k, ta)| ta.with_flow(exits[1 + na + k]).stack(self, known))
            .collect()
    }
}
