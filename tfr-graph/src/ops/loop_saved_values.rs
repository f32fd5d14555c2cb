//! Where a loop's gradient keeps the forward values its backward loop reads, and how the
//! backward loop reads them back (TensorFlow's `GradLoopState.AddForwardAccumulator` and
//! `AddBackpropAccumulatedValue`).
//!
//! A value `v` computed in forward loop frame `F` is written, every iteration, into a
//! TensorArray made once in the *base* frame: the frame outside the outermost of the loops
//! around `F` that the same gradient differentiates (the frame `gradients` was called in, for a
//! plain nest). Its handle enters every loop down to `F` as an invariant. So a nest keeps each
//! value in one array, as TensorFlow keeps it in one stack made outside the outermost loop:
//! there is no array per outer iteration whose handle and flow the outer loop would save in
//! two arrays of its own, and so on outwards (which doubled the gradient graph per level).
//!
//! **Flat indices.** Element `k` of the array holds the value of the `k`-th iteration of `F`
//! in the step, counting the iterations of all instances of `F` (one per iteration of the loops
//! around it) in order. An instance's first index is the array's size when it starts, read in
//! the parent frame (`TensorArraySizeV3`): every iteration of `F` writes every value `F` saves,
//! a dead one as dead, so the size counts the iterations of the instances before. The backward
//! loop of `F` reads element `start + j` for forward iteration `j`, `start` being a value of
//! the parent frame that the parent's backward loop reads back like any other.
//!
//! **Order.** The writes of `F` form one chain of flows: a loop variable of `F` whose next
//! value is the iteration's last write, threaded as a loop variable through every loop between
//! `F` and the base (the instance of `F` in a parent iteration starts from the flow the
//! previous instance ended with). The chain orders by data, so neither `parallel_iterations`
//! nor the executor's scheduling can reorder an instance's writes before the previous
//! instance's, and the size read at an instance's start is exact. The reads take the chain's
//! final flow in the base frame, so they run after every write; a higher-order gradient flows
//! back along it (and the loop variables threading it) into the values written.
//!
//! A loop inside a cond of its parent's body runs in some parent iterations only, and its flow
//! would be dead after one that did not run: for such a loop the base is its parent, whose
//! iterations each make the arrays (the parent saves their handles and flows like any value).

use super::control_flow_grad::{
    add_forward_var, ensure_counter, forward_loop, forward_stack, ForwardLoop, GradLoop,
    GRADIENT_STATE_ATTR,
};
use super::control_flow_ops::{CtxKind, FrameId, FrameMap, ROOT_FRAME};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output};
use std::collections::{HashMap, HashSet};

/// The arrays of one forward loop frame's saved values, for one base frame.
#[derive(Clone, Debug)]
pub(crate) struct FrameStore {
    /// The flat index of the current iteration (int32, in the forward frame).
    index: Output,
    /// The flat index of an instance's first iteration (int32, in the parent frame); `None`
    /// when the parent is the base frame (one instance, from 0).
    start: Option<Output>,
    /// The chain's last link in the forward frame (the last write) and the Merge of the chain's
    /// loop variable, whose back edge takes it.
    last: Output,
    merge: NodeId,
    /// The chain's final flow, in the base frame.
    flow: Output,
}

/// How a backward loop reads its forward loop's saved values (found on first use).
#[derive(Clone, Debug)]
pub(crate) struct ReadSide {
    base: FrameId,
    path: Vec<FrameId>,
    /// The flat index a backward iteration reads at (in the backward frame).
    index: Option<Output>,
}

/// Forward value `o` (in the loop `gl` differentiates) as the backward body at context depth
/// `d` sees it: written per forward iteration into an array of the base frame, read back at
/// the backward iteration's flat index. Dead values stay dead.
pub(crate) fn read_saved(g: &mut Graph, gl: &GradLoop, o: Output, d: usize) -> Result<Output> {
    let read = match &gl.read {
        Some(r) => r.clone(),
        None => {
            let (base, path) = storage_path(g, gl.forward_frame, d)?;
            ReadSide {
                base,
                path,
                index: None,
            }
        }
    };
    let key = (format!("{}@{}", gl.forward_name, read.base), o);
    let (handle, flow) = match g.cf.saved.get(&key) {
        Some(&v) => v,
        None => {
            let v = save(g, gl, o, read.base, &read.path)?;
            g.cf.saved.insert(key, v);
            v
        }
    };
    let index = match read.index {
        Some(i) => i,
        None => {
            let store_key = (gl.forward_name.clone(), read.base);
            let start = g.cf.stores.get(&store_key).and_then(|s| s.start);
            match start {
                Some(s) => g.at_depth(d + 1, |g| g.add(gl.index, s))?,
                None => gl.index,
            }
        }
    };
    // Remember the base and index in the backward loop's context (`gl` is a copy of it).
    if let Some(CtxKind::Loop {
        grad: Some(stored), ..
    }) = g.cf.stack.get_mut(d).map(|c| &mut c.kind)
    {
        stored.read = Some(ReadSide {
            index: Some(index),
            ..read
        });
    }
    let (dtype, shape) = (g.dtype(o), g.shape(o).clone());
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

/// The base frame of the arrays for forward frame `f` (read by the backward loop at context
/// depth `d`) and the loops strictly between it and `f`, outermost first: `f`'s parent while
/// a gradient context further out differentiates it (not by recomputation) and `f` runs in
/// each of its iterations, and so on outwards.
fn storage_path(g: &mut Graph, f: FrameId, d: usize) -> Result<(FrameId, Vec<FrameId>)> {
    let frames = g.frame_map().clone();
    let mut path = Vec::new();
    let (mut cur, mut depth) = (f, d);
    loop {
        let parent = frames.parent(cur);
        if parent == ROOT_FRAME {
            break;
        }
        let outer = (0..depth).rev().find(|&k| {
            matches!(&g.cf.stack[k].kind, CtxKind::Loop { grad: Some(gl), .. }
                if gl.forward_frame == parent && gl.recompute.is_none())
        });
        let Some(k) = outer else { break };
        if !runs_every_iteration(g, &frames, cur, parent)? {
            break;
        }
        path.push(parent);
        cur = parent;
        depth = k;
    }
    path.reverse();
    Ok((frames.parent(cur), path))
}

/// Whether loop frame `f` runs (an instance of it, perhaps of no iteration) in every iteration
/// of its parent loop `p`: nothing that starts it comes out of a cond of `p`'s body (a Switch
/// on another predicate than `p`'s own), directly or through loops that feed it.
fn runs_every_iteration(g: &mut Graph, frames: &FrameMap, f: FrameId, p: FrameId) -> Result<bool> {
    let p_name = frames.frames[p as usize].name.clone();
    let loop_cond = forward_loop(g, &p_name)?.loop_cond;
    let mut enters: HashMap<FrameId, Vec<NodeId>> = HashMap::new();
    for id in g.node_ids() {
        let n = g.node(id);
        if n.op == "Enter" && n.attrs.get(GRADIENT_STATE_ATTR).is_none() {
            enters.entry(frames.frame(id)).or_default().push(id);
        }
    }
    let starts = |frame: FrameId| -> Vec<NodeId> {
        enters
            .get(&frame)
            .into_iter()
            .flatten()
            .filter_map(|&e| g.node(e).inputs.first().map(|o| o.node))
            .collect()
    };
    let mut todo = starts(f);
    let mut seen = HashSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) || frames.frame(id) != p {
            continue;
        }
        let n = g.node(id);
        match n.op.as_str() {
            "Enter" | "Merge" => {}
            "Switch" if n.inputs.get(1) == Some(&loop_cond) => {}
            "Switch" => return Ok(false),
            // A sibling loop's result: live when that loop ran.
            "Exit" => {
                if let Some(src) = n.inputs.first() {
                    todo.extend(starts(frames.frame(src.node)));
                }
            }
            _ => {
                todo.extend(n.inputs.iter().map(|o| o.node));
                todo.extend(n.control_inputs.iter().copied());
            }
        }
    }
    Ok(true)
}

/// Makes the array for forward value `o` in the base frame and adds its write to the chain of
/// the forward frame's writes (making the chain on first use). Returns the array's handle and
/// the chain's final flow.
fn save(
    g: &mut Graph,
    gl: &GradLoop,
    o: Output,
    base: FrameId,
    path: &[FrameId],
) -> Result<(Output, Output)> {
    let (dtype, shape) = (g.dtype(o), g.shape(o).clone());
    let base_stack = forward_stack(g, base)?;
    let (ta, _) = g.with_stack(base_stack, |g| {
        let zero = g.scalar(0i32)?;
        g.build("TensorArrayV3")
            .input(zero)
            .attr("dtype", dtype)
            .attr("element_shape", shape)
            .attr("dynamic_size", true)
            .attr("keep_dead", true)
            .finish()
    })?;
    let handle = Output::new(ta, 0);
    let store_key = (gl.forward_name.clone(), base);
    if let Some(store) = g.cf.stores.get(&store_key).cloned() {
        // Append the write to the chain: it becomes the chain variable's next value.
        let stack = forward_stack(g, gl.forward_frame)?;
        let (w, _) = g.with_stack(stack, |g| write(g, handle, store.index, o, store.last))?;
        let next = g.build_raw(|g| g.build("NextIteration").input(w).finish1())?;
        g.set_input(store.merge, 1, next)?;
        g.cf.stores
            .insert(store_key, FrameStore { last: w, ..store });
        return Ok((handle, store.flow));
    }
    let mut levels = Vec::with_capacity(path.len() + 1);
    for &f in path.iter().chain([&gl.forward_frame]) {
        let name = g.frame_map().frames[f as usize].name.clone();
        levels.push(forward_loop(g, &name)?);
    }
    let forward_name = gl.forward_name.clone();
    let mut made = None;
    let mut first_write = |g: &mut Graph, bodies: &[Output]| -> Result<Output> {
        let counter = ensure_counter(g, &forward_name)?;
        let flow_in = bodies[bodies.len() - 1];
        // An instance starts at the array's size at the parent's iteration.
        let start = match bodies.len() {
            1 => None,
            n => {
                let stack = forward_stack(g, levels[n - 2].frame)?;
                let (s, _) = g.with_stack(stack, |g| {
                    g.build("TensorArraySizeV3")
                        .input(handle)
                        .input(bodies[n - 2])
                        .finish1()
                })?;
                Some(s)
            }
        };
        let stack = forward_stack(g, levels[bodies.len() - 1].frame)?;
        let ((index, w), _) = g.with_stack(stack, |g| {
            let index = match start {
                Some(s) => g.add(counter.index, s)?,
                None => counter.index,
            };
            Ok((index, write(g, handle, index, o, flow_in)?))
        })?;
        made = Some((index, start, w, flow_in));
        Ok(w)
    };
    let mut bodies = Vec::with_capacity(levels.len());
    let flow = thread_chain(
        g,
        &levels,
        Output::new(ta, 1),
        &mut bodies,
        &mut first_write,
    )?;
    let (index, start, last, flow_in) =
        made.ok_or_else(|| super::control_flow_grad::cf_error("saved-value chain not built"))?;
    // flow_in = Identity(Switch(Merge, pred)[1]).
    let switch = g.node(flow_in.node).inputs[0].node;
    let merge = g.node(switch).inputs[0].node;
    g.cf.stores.insert(
        store_key,
        FrameStore {
            index,
            start,
            last,
            merge,
            flow,
        },
    );
    Ok((handle, flow))
}

/// Adds a loop variable to each loop of `levels` (outermost first), each starting from the
/// body value of the one outside it (the outermost from `init`) and taking as next value the
/// exit of the one inside it; the innermost's next value is `innermost(bodies)`, given the body
/// values of all levels. Returns the outermost variable's exit.
fn thread_chain(
    g: &mut Graph,
    levels: &[ForwardLoop],
    init: Output,
    bodies: &mut Vec<Output>,
    innermost: &mut dyn FnMut(&mut Graph, &[Output]) -> Result<Output>,
) -> Result<Output> {
    let Some((fl, rest)) = levels.split_first() else {
        return Ok(init);
    };
    let (_, exit) = add_forward_var(g, fl, init, |g, body| {
        bodies.push(body);
        if rest.is_empty() {
            innermost(g, bodies)
        } else {
            thread_chain(g, rest, body, bodies, innermost)
        }
    })?;
    Ok(exit)
}

fn write(
    g: &mut Graph,
    handle: Output,
    index: Output,
    value: Output,
    flow: Output,
) -> Result<Output> {
    g.build("TensorArrayWriteV3")
        .input(handle)
        .input(index)
        .input(value)
        .input(flow)
        .attr("keep_dead", true)
        .finish1()
}
