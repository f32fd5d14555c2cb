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
//!   written, per iteration, into a TensorArray carried by the forward loop, and read back by the
//!   backward loop at the same iteration index. Loop invariants' gradients are summed across
//!   iterations in accumulators of the backward loop. Loops nest: the saved values of an inner
//!   loop live in arrays created once per outer iteration, whose handles the outer loop saves.
//!
//! [`gradients`](crate::gradients::gradients) hands whole loops to [`LoopGrads`]: when its walk
//! reaches the last `Exit` of a loop it calls [`LoopGrads::loop_gradient`], which builds the
//! backward loop and returns the gradients of the loop's inputs, and it skips the loop's other
//! nodes. Cond `Merge`/`Switch` nodes go to [`cond_gradient`].

use super::control_flow_ops::{
    is_back_edge, Ctx, CtxKind, FrameId, FrameMap, WhileOptions, COND_PRED_ATTR, ROOT_FRAME,
};
use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output};
use crate::shape::Shape;
use crate::validate::topological_order;
use std::collections::{HashMap, HashSet};

/// The backward side of a loop's gradient, for capturing forward values inside its body.
#[derive(Clone, Debug)]
pub(crate) struct GradLoop {
    /// The frame of the loop being differentiated.
    pub forward_frame: FrameId,
    pub forward_name: String,
    /// The forward iteration a backward iteration works on (int32, in the backward frame).
    pub index: Output,
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
struct ForwardLoop {
    name: String,
    frame: FrameId,
    parent: FrameId,
    loop_cond: Output,
    parallel_iterations: i64,
    maximum_iterations: i64,
}

fn cf_error(message: impl Into<String>) -> GraphError {
    GraphError::Gradient(message.into())
}

fn forward_loop(g: &mut Graph, name: &str) -> Result<ForwardLoop> {
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
                ))
            }
            _ => {}
        }
    }
    let loop_cond =
        loop_cond.ok_or_else(|| cf_error(format!("loop frame `{name}` has no LoopCond")))?;
    let (parallel_iterations, maximum_iterations) = attrs.unwrap_or((10, -1));
    Ok(ForwardLoop {
        name: name.to_string(),
        frame,
        parent: frames.parent(frame),
        loop_cond,
        parallel_iterations,
        maximum_iterations,
    })
}

/// The contexts under which a node runs in forward frame `f`: one loop context per enclosing
/// loop, each with its counter's index as pivot.
fn forward_stack(g: &mut Graph, f: FrameId) -> Result<Vec<Ctx>> {
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
fn add_forward_var(
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
    let (merge, body) = g.build_raw(|g| {
        let e = g
            .build("Enter")
            .input(init)
            .attr("frame_name", name)
            .attr("parallel_iterations", pi)
            .attr("maximum_iterations", mi)
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
/// `d` sees it: written per forward iteration into a TensorArray the forward loop carries, read
/// back at the backward iteration's index. Dead values stay dead.
pub(crate) fn saved_value(g: &mut Graph, gl: &GradLoop, o: Output, d: usize) -> Result<Output> {
    let key = (gl.forward_name.clone(), o);
    let (handle, flow) = match g.cf.saved.get(&key) {
        Some(&v) => v,
        None => {
            let fl = forward_loop(g, &gl.forward_name)?;
            let counter = ensure_counter(g, &fl.name)?;
            let (dtype, shape) = (g.dtype(o), g.shape(o).clone());
            let parent_stack = forward_stack(g, fl.parent)?;
            let (ta, _) = g.with_stack(parent_stack, |g| {
                let zero = g.scalar(0i32)?;
                g.build("TensorArrayV3")
                    .input(zero)
                    .attr("dtype", dtype)
                    .attr("element_shape", shape.clone())
                    .attr("dynamic_size", true)
                    .attr("keep_dead", true)
                    .finish()
            })?;
            let handle = Output::new(ta, 0);
            let frame = fl.frame;
            let (_, flow_exit) = add_forward_var(g, &fl, Output::new(ta, 1), |g, flow| {
                let stack = forward_stack(g, frame)?;
                let (w, _) = g.with_stack(stack, |g| {
                    g.build("TensorArrayWriteV3")
                        .input(handle)
                        .input(counter.index)
                        .input(o)
                        .input(flow)
                        .attr("keep_dead", true)
                        .finish1()
                })?;
                Ok(w)
            })?;
            g.cf.saved.insert(key, (handle, flow_exit));
            (handle, flow_exit)
        }
    };
    let (dtype, shape) = (g.dtype(o), g.shape(o).clone());
    let index = gl.index;
    g.at_depth(d + 1, |g| {
        g.build("TensorArrayReadV3")
            .input(handle)
            .input(index)
            .input(flow)
            .attr("dtype", dtype)
            .attr("element_shape", shape)
            .finish1()
    })
}
