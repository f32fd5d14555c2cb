//! Gradient checkpoints of loops (the `checkpoints` option of `while_loop`): instead of saving
//! every iteration's values for the backward loop, the forward loop saves its loop variables
//! every `every` iterations, and the backward loop recomputes an iteration's values by copying
//! the forward body's nodes from the nearest checkpoint.

use super::control_flow_grad::{
    add_forward_var, cf_error, ensure_counter, forward_loop, forward_stack, LoopShape,
};
use super::control_flow_ops::{is_back_edge, is_control_flow_op, FrameId, WhileOptions};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output};
use crate::shape::Shape;
use std::collections::HashMap;

/// A checkpointed loop's saved loop variables: per variable, a TensorArray (handle and final
/// flow, in the loop's parent frame) holding its value every `every` iterations.
#[derive(Clone, Debug)]
pub(super) struct Checkpoints {
    every: i64,
    arrays: Vec<(Output, Output)>,
}

/// Whether a forward node may be copied to recompute a loop's values: stateless ops and
/// TensorArray reads.
fn clonable(op: &str) -> bool {
    matches!(
        op,
        "TensorArrayReadV3" | "TensorArraySizeV3" | "TensorArrayStackV3"
    ) || (!is_control_flow_op(op)
        && !op.starts_with("TensorArray")
        && crate::op_def::registry()
            .get(op)
            .is_some_and(|d| !d.stateful))
}

/// Adds to forward loop `shape` the arrays that keep every loop variable each `every`
/// iterations (element i / every holds the value of iteration i - i % every).
pub(super) fn checkpoint_arrays(
    g: &mut Graph,
    shape: &LoopShape,
    every: i64,
) -> Result<Checkpoints> {
    let fl = forward_loop(g, &shape.name)?;
    // Only plain bodies can be recomputed: check every node of the loop before adding anything.
    let frames = g.frame_map().clone();
    for id in g.node_ids() {
        if frames.frame(id) == fl.frame || frames.is_within(frames.frame(id), fl.frame) {
            let n = g.node(id);
            let in_loop = frames.frame(id) == fl.frame;
            let scaffolding = in_loop
                && match n.op.as_str() {
                    "Enter" | "NextIteration" | "LoopCond" => true,
                    "Switch" => n.inputs.get(1) == Some(&fl.loop_cond),
                    "Merge" => is_back_edge(g, n, 1),
                    _ => false,
                };
            if !scaffolding && !clonable(&n.op) && n.op != "TensorArrayWriteV3" {
                return Err(cf_error(format!(
                    "loop `{}`: gradient checkpoints need a body of stateless ops without nested \
                     loops or conds, but `{}` is {}",
                    shape.name, n.name, n.op
                )));
            }
        }
    }
    let counter = ensure_counter(g, &shape.name)?;
    let mut arrays = Vec::with_capacity(shape.vars.len());
    for v in &shape.vars {
        let key = (format!("{}#checkpoints", shape.name), v.body_input);
        if let Some(&a) = g.cf.checkpoints.get(&key) {
            arrays.push(a);
            continue;
        }
        let value = v.body_input;
        let (dtype, vshape) = (g.dtype(value), g.shape(value).clone());
        let parent_stack = forward_stack(g, fl.parent)?;
        let (ta, _) = g.with_stack(parent_stack, |g| {
            let zero = g.scalar(0i32)?;
            g.build("TensorArrayV3")
                .input(zero)
                .attr("dtype", dtype)
                .attr("element_shape", vshape.clone())
                .attr("dynamic_size", true)
                .finish()
        })?;
        let handle = Output::new(ta, 0);
        let frame = fl.frame;
        let (_, flow_exit) = add_forward_var(g, &fl, Output::new(ta, 1), |g, flow| {
            let stack = forward_stack(g, frame)?;
            let (w, _) = g.with_stack(stack, |g| {
                let k = g.scalar(every as i32)?;
                let slot = g.floor_div(counter.index, k)?;
                g.build("TensorArrayWriteV3")
                    .input(handle)
                    .input(slot)
                    .input(value)
                    .input(flow)
                    .attr("keep_first", true)
                    .finish1()
            })?;
            Ok(w)
        })?;
        g.cf.checkpoints.insert(key, (handle, flow_exit));
        arrays.push((handle, flow_exit));
    }
    Ok(Checkpoints { every, arrays })
}

/// Inside a backward body: the forward loop variables at iteration `index`, recomputed from the
/// checkpoint before it by a loop running copies of the forward body. Returns the map from the
/// forward values that stand for the variables (Merge outputs and body inputs) to them.
pub(super) fn recompute_from_checkpoint(
    g: &mut Graph,
    shape: &LoopShape,
    ck: &Checkpoints,
    index: Output,
    frame: FrameId,
) -> Result<HashMap<Output, Output>> {
    let k = g.scalar(ck.every as i32)?;
    let slot = g.floor_div(index, k)?;
    let base = g.mul(slot, k)?;
    let mut start = vec![base];
    let mut invariants = vec![Some(Shape::scalar())];
    for (v, &(handle, flow)) in shape.vars.iter().zip(&ck.arrays) {
        let merge = Output::new(v.merge, 0);
        let (dt, s) = (g.dtype(merge), g.shape(merge).clone());
        let r = g
            .build("TensorArrayReadV3")
            .input(handle)
            .input(slot)
            .input(flow)
            .attr("dtype", dt)
            .attr("element_shape", s.clone())
            .finish1()?;
        start.push(r);
        invariants.push(Some(s));
    }
    let options = WhileOptions::default()
        .name("recompute")
        .shape_invariants(invariants);
    let exits = g.while_loop(
        |g, v| g.less(v[0], index),
        |g, v| {
            let mut map = HashMap::new();
            for (j, var) in shape.vars.iter().enumerate() {
                map.insert(var.body_input, v[1 + j]);
                map.insert(Output::new(var.merge, 0), v[1 + j]);
            }
            let mut memo = HashMap::new();
            let one = g.scalar(1i32)?;
            let mut next = vec![g.add(v[0], one)?];
            for var in &shape.vars {
                next.push(clone_chain(g, var.body_output, &map, &mut memo, frame)?);
            }
            Ok(next)
        },
        &start,
        &options,
    )?;
    let mut map = HashMap::new();
    for (j, var) in shape.vars.iter().enumerate() {
        map.insert(var.body_input, exits[1 + j]);
        map.insert(Output::new(var.merge, 0), exits[1 + j]);
    }
    Ok(map)
}

/// A copy, under the open contexts, of how forward loop frame `frame` computes `o`, with the
/// values in `map` replaced: nodes of the frame are copied (once, by `memo`), loop invariants and
/// outside values are used as they are (the contexts capture them).
pub(super) fn clone_chain(
    g: &mut Graph,
    o: Output,
    map: &HashMap<Output, Output>,
    memo: &mut HashMap<NodeId, NodeId>,
    frame: FrameId,
) -> Result<Output> {
    if let Some(&v) = map.get(&o) {
        return Ok(v);
    }
    if let Some(&c) = memo.get(&o.node) {
        return Ok(Output::new(c, o.index as usize));
    }
    let n = g.node(o.node).clone();
    let constant_enter = n.op == "Enter" && n.attrs.bool_opt("is_constant") == Some(&true);
    if constant_enter || g.frame_of_node(o.node) != frame {
        return Ok(o);
    }
    if n.op == "TensorArrayWriteV3" {
        // The write happened in the forward pass; its flow only orders, so a recomputed
        // iteration passes the flow on without writing again.
        return clone_chain(g, n.inputs[3], map, memo, frame);
    }
    if !clonable(&n.op) {
        return Err(cf_error(format!(
            "cannot recompute `{}` ({}) from a gradient checkpoint",
            n.name, n.op
        )));
    }
    let mut inputs = Vec::with_capacity(n.inputs.len());
    for &i in &n.inputs {
        inputs.push(clone_chain(g, i, map, memo, frame)?);
    }
    let mut b = g.build(&n.op).inputs(inputs);
    for (name, value) in &n.attrs.0 {
        b = b.attr(name, value.clone());
    }
    if !n.device.is_empty() {
        b = b.device(&n.device);
    }
    let id = b.finish()?;
    memo.insert(o.node, id);
    Ok(Output::new(id, o.index as usize))
}
