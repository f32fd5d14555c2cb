//! Where a loop's gradient keeps the forward values its backward loop reads, and how the
//! backward loop reads them back (TensorFlow's `GradLoopState.AddForwardAccumulator` and
//! `AddBackpropAccumulatedValue`).
//!
//! A value `v` computed in forward loop frame `F` is written, every iteration, into one array
//! for the whole step: the *base* frame is the frame outside the outermost of the loops around
//! `F` that the same gradient differentiates (the frame `gradients` was called in, for a plain
//! nest). Under the root frame the array is named (`TensorArrayByName`) and every node that
//! uses it, at any depth, looks it up by name in its own frame: no handle enters the loops of
//! the nest, so a value saved at depth k costs O(1) nodes, not a chain of k Enters (which made
//! the gradient graph of a nest quadratic in its depth). Under a loop frame (a nest inside a
//! cond of its parent's body) the base makes the array once per iteration (`TensorArrayV3`)
//! and its handle enters the loops below.
//!
//! **Flat indices.** Element `k` of the array holds the value of the `k`-th iteration of `F`
//! in the step, counting the iterations of all instances of `F` (one per iteration of the loops
//! around it) in order. An instance's first index is the array's size when it starts, read in
//! the parent frame (`TensorArraySizeV3`): every iteration of `F` writes every value `F` saves,
//! a dead one as dead, so the size counts the iterations of the instances before. The backward
//! loop of `F` reads element `start + j` for forward iteration `j`, `start` being a value of
//! the parent frame that the parent's backward loop reads back like any other.
//!
//! **Order.** Each loop of the nest has one chain of flows, a loop variable of that loop alone:
//! its writes are links of the chain, and each loop nested in it starts its own chain from the
//! value the parent's chain has when the parent's iteration starts and ends it in a link of the
//! parent's chain (an `Add` of the two flows). So the parent's next iteration, and the next
//! instance of the nested loop with it, starts after every write of the instances before, and
//! the size read at an instance's start is exact, whatever `parallel_iterations` or the
//! executor's scheduling. The outermost chain's exit is the nest's final flow, in the base
//! frame; every read takes it, so it runs after every write; a higher-order gradient flows back
//! along the chains into the values written.
//!
//! A loop inside a cond of its parent's body runs in some parent iterations only, and its flow
//! would be dead after one that did not run: for such a loop the base is its parent.

use super::control_flow_grad::{
    add_forward_var, ensure_counter, forward_loop, forward_stack, GradLoop, GRADIENT_STATE_ATTR,
};
use super::control_flow_ops::{CtxKind, FrameId, FrameMap, ROOT_FRAME};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output};
use crate::shape::Shape;
use std::collections::{HashMap, HashSet};

/// The chain of the writes made in one forward loop frame, for one base frame: a loop variable
/// of that loop.
#[derive(Clone, Debug)]
pub(crate) struct FrameChain {
    /// The variable's value when an iteration starts (in the frame).
    body: Output,
    /// The chain's last link in the frame, which its `NextIteration` takes.
    last: Output,
    next_iteration: NodeId,
    /// The variable's exit, in the parent frame.
    exit: Output,
    /// Made when the frame saves its first value: the flat index of the current iteration (in
    /// the frame) and of an instance's first iteration (in the parent frame; `None` when the
    /// parent is the base, which runs one instance, from 0).
    index: Option<(Output, Option<Output>)>,
}

/// The array one forward value is saved in.
#[derive(Clone, Debug)]
pub(crate) struct SavedArray {
    name: String,
    dtype: DType,
    shape: Shape,
    /// Under a loop base frame: the handle of the array that frame makes per iteration.
    made: Option<Output>,
    /// The nest's final flow, in the base frame.
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
/// `d` sees it: written per forward iteration into an array of the step, read back at the
/// backward iteration's flat index. Dead values stay dead.
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
    let array = match g.cf.saved.get(&key) {
        Some(a) => a.clone(),
        None => {
            let a = save(g, gl, o, read.base, &read.path)?;
            g.cf.saved.insert(key, a.clone());
            a
        }
    };
    let index = match read.index {
        Some(i) => i,
        None => {
            let start =
                g.cf.stores
                    .get(&(gl.forward_frame, read.base))
                    .and_then(|c| c.index)
                    .and_then(|(_, start)| start);
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
    g.at_depth(d + 1, |g| {
        let handle = array_handle(g, &array)?;
        g.build("TensorArrayReadV3")
            .input(handle)
            .input(index)
            .input(array.flow)
            .attr("dtype", array.dtype)
            .attr("element_shape", array.shape.clone())
            .finish1()
    })
}

/// The handle of `array` as a node built now (in the innermost open context) sees it.
fn array_handle(g: &mut Graph, array: &SavedArray) -> Result<Output> {
    match array.made {
        Some(h) => g.capture_here(h),
        None => g
            .build("TensorArrayByName")
            .attr("shared_name", array.name.clone())
            .attr("dtype", array.dtype)
            .attr("element_shape", array.shape.clone())
            .attr("keep_dead", true)
            .finish1(),
    }
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

/// Makes the array for forward value `o` of the loop `gl` differentiates and adds its write to
/// that loop's chain (making the chains of the nest on first use).
fn save(
    g: &mut Graph,
    gl: &GradLoop,
    o: Output,
    base: FrameId,
    path: &[FrameId],
) -> Result<SavedArray> {
    let f = gl.forward_frame;
    let base_name = g.frame_map().frames[base as usize].name.clone();
    let name = format!("{}:{}@{base_name}", g.node(o.node).name, o.index);
    let (dtype, shape) = (g.dtype(o), g.shape(o).clone());
    let made = if base == ROOT_FRAME {
        None
    } else {
        let stack = forward_stack(g, base)?;
        let (ta, _) = g.with_stack(stack, |g| {
            let zero = g.scalar(0i32)?;
            g.build("TensorArrayV3")
                .input(zero)
                .attr("dtype", dtype)
                .attr("element_shape", shape.clone())
                .attr("dynamic_size", true)
                .attr("keep_dead", true)
                .finish()
        })?;
        Some(Output::new(ta, 0))
    };
    let chain = frame_chain(g, f, base)?;
    let outermost = path.first().copied().unwrap_or(f);
    let array = SavedArray {
        name,
        dtype,
        shape,
        made,
        flow: g.cf.stores[&(outermost, base)].exit,
    };
    let (index, _) = match chain.index {
        Some(ix) => ix,
        None => {
            let ix = flat_index(g, f, base, &array)?;
            if let Some(c) = g.cf.stores.get_mut(&(f, base)) {
                c.index = Some(ix);
            }
            ix
        }
    };
    let last = g.cf.stores[&(f, base)].last;
    let stack = forward_stack(g, f)?;
    let (w, _) = g.with_stack(stack, |g| {
        let handle = array_handle(g, &array)?;
        g.build("TensorArrayWriteV3")
            .input(handle)
            .input(index)
            .input(o)
            .input(last)
            .attr("keep_dead", true)
            .finish1()
    })?;
    extend_chain(g, f, base, w)?;
    Ok(array)
}

/// The chain of forward frame `f` for base frame `base`, made on first use (with the chains
/// of the loops between `f` and the base).
fn frame_chain(g: &mut Graph, f: FrameId, base: FrameId) -> Result<FrameChain> {
    if let Some(c) = g.cf.stores.get(&(f, base)) {
        return Ok(c.clone());
    }
    let parent = g.frame_map().parent(f);
    let init = if parent == base {
        let stack = forward_stack(g, base)?;
        g.with_stack(stack, |g| g.scalar(0f32))?.0
    } else {
        frame_chain(g, parent, base)?.body
    };
    let name = g.frame_map().frames[f as usize].name.clone();
    let fl = forward_loop(g, &name)?;
    let (body, exit) = add_forward_var(g, &fl, init, |_, body| Ok(body))?;
    // body = Identity(Switch(Merge, pred)[1]); the Merge's back edge is the NextIteration.
    let switch = g.node(body.node).inputs[0].node;
    let merge = g.node(switch).inputs[0].node;
    let next_iteration = g.node(merge).inputs[1].node;
    let chain = FrameChain {
        body,
        last: body,
        next_iteration,
        exit,
        index: None,
    };
    g.cf.stores.insert((f, base), chain.clone());
    if parent != base {
        // The parent's next iteration (and the next instance of `f`) waits for this instance.
        let parent_last = g.cf.stores[&(parent, base)].last;
        let stack = forward_stack(g, parent)?;
        let (joined, _) = g.with_stack(stack, |g| g.add(parent_last, exit))?;
        extend_chain(g, parent, base, joined)?;
    }
    Ok(chain)
}

/// Makes `link` (in frame `f`) the last link of `f`'s chain.
fn extend_chain(g: &mut Graph, f: FrameId, base: FrameId, link: Output) -> Result<()> {
    let chain =
        g.cf.stores
            .get_mut(&(f, base))
            .ok_or_else(|| super::control_flow_grad::cf_error("saved-value chain not built"))?;
    chain.last = link;
    let next_iteration = chain.next_iteration;
    g.set_next_iteration_input(next_iteration, link)
}

/// The flat index of forward frame `f`'s current iteration (in `f`) and of an instance's first
/// iteration (in the parent, unless the parent is the base): the size of `array`, one of the
/// frame's arrays, when the instance starts.
fn flat_index(
    g: &mut Graph,
    f: FrameId,
    base: FrameId,
    array: &SavedArray,
) -> Result<(Output, Option<Output>)> {
    let name = g.frame_map().frames[f as usize].name.clone();
    let counter = ensure_counter(g, &name)?;
    let parent = g.frame_map().parent(f);
    if parent == base {
        return Ok((counter.index, None));
    }
    let parent_body = frame_chain(g, parent, base)?.body;
    let stack = forward_stack(g, parent)?;
    let (start, _) = g.with_stack(stack, |g| {
        let handle = array_handle(g, array)?;
        g.build("TensorArraySizeV3")
            .input(handle)
            .input(parent_body)
            .finish1()
    })?;
    let stack = forward_stack(g, f)?;
    let (index, _) = g.with_stack(stack, |g| g.add(counter.index, start))?;
    Ok((index, Some(start)))
}
