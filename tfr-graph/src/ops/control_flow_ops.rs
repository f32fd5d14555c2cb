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

mod capture;
mod cond;
mod frames;
mod tensor_array;
mod while_loop;
pub(crate) use capture::*;
pub use cond::*;
pub use frames::*;
pub use tensor_array::*;
pub use while_loop::*;

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
