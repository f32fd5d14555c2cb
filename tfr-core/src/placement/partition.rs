//! Partitioning: [`partition`] cuts the placed graph into one graph per device; each edge that crosses
//! devices becomes a `_Send`/`_Recv` pair (one per tensor and destination, however many
//! consumers), and a control edge that crosses devices is carried by a sent dummy.
//!
//! Without control flow, every partition's nodes are in one global order in which a `_Recv`
//! always follows its `_Send`, and each partition runs its nodes in that order, so blocking
//! receives cannot deadlock: a cycle of waits would need each waiting receive to be earlier
//! than the next one.
//!
//! With control flow (TF's scheme, OSDI'16 section 3.4 and "Dynamic control flow", EuroSys'18):
//! - every transfer is *frame-aware*: it runs in the frame its value lives in, its rendezvous
//!   key carries the frame instance and the iteration, a dead value is sent as "dead", and the
//!   control-flow machine runs it, parking a receive until its value arrives (no thread blocks
//!   while other work is ready, whatever the order);
//! - each loop frame whose nodes span several devices gets, on each of those devices, a control
//!   loop on a bool pivot (`Enter -> Merge -> Switch -> Identity -> NextIteration`) whose
//!   Switch takes the frame's `LoopCond` (received every iteration on the devices that do not
//!   compute it); every receive inside the frame waits on that Merge, so each device runs the
//!   same iterations and receives once per iteration; nested frames enter their pivot from the
//!   parent's control loop;
//! - an `Enter` whose value another device needs is copied there (its input is received
//!   outside the loop, once, not every iteration), and a back edge's `NextIteration` moves to
//!   its `Merge`'s device;
//! - the rendezvous handle enters each split frame as a loop invariant.

use super::placement_error;
use crate::device::Device;
use crate::error::Result;
use crate::kernels::sendrecv_ops::FRAME_AWARE;
use std::collections::HashMap;
use tfr_graph::ops::control_flow_ops::{
    is_back_edge, is_control_flow_op, is_tensor_array_op, FrameId, FrameMap, ROOT_FRAME,
};
use tfr_graph::passes::{StepGraph, ARG_OP};
use tfr_graph::validate::topological_order;
use tfr_graph::{Attrs, DType, Graph, Node, NodeId, Output, Shape, TensorType};

/// The graph of one device: a step graph whose feeds are the session's feeds followed by the
/// step's rendezvous handle.
pub struct Partition {
    pub device: usize,
    pub step: StepGraph,
    /// For each fetch of the whole step that this partition produces: (position in the
    /// step's fetch list, position in this partition's fetch list).
    pub fetch_map: Vec<(usize, usize)>,
}

/// Cuts `step` into one graph per device that has nodes. Feed `step.feeds.len()` of every
/// partition is the rendezvous handle. See the module documentation for loops and conds.
pub fn partition(
    step: &StepGraph,
    assignment: &[usize],
    devices: &[Device],
) -> Result<Vec<Partition>> {
    let g = &step.graph;
    let used: Vec<usize> = {
        let mut u: Vec<usize> = assignment.to_vec();
        u.sort();
        u.dedup();
        u
    };
    let slot_of = |d: usize| used.iter().position(|&x| x == d).unwrap_or(0);
    let mut slot: Vec<usize> = assignment.iter().map(|&d| slot_of(d)).collect();
    let frame_aware = g
        .nodes()
        .iter()
        .any(|n| is_control_flow_op(&n.op) || is_tensor_array_op(&n.op));
    let names: Vec<String> = used.iter().map(|&d| devices[d].name()).collect();
    let (graph, out_frame, frames) = if frame_aware {
        with_control_loops(g, &mut slot, &names)?
    } else {
        (g.clone(), vec![ROOT_FRAME; g.len()], FrameInfo::default())
    };
    let mut b = Builder {
        g: &graph,
        out_frame,
        slot,
        names,
        parts: used.iter().map(|_| Graph::new()).collect(),
        feeds: used
            .iter()
            .map(|_| vec![None; step.feeds.len() + 1])
            .collect(),
        num_feeds: step.feeds.len(),
        frame_aware,
        frames,
        remap: Vec::with_capacity(graph.len()),
        handles: HashMap::new(),
        received: HashMap::new(),
        control_received: HashMap::new(),
        enters: HashMap::new(),
        recv_pivots: Vec::new(),
        back_edges: Vec::new(),
    };
    for i in 0..graph.len() {
        b.copy(NodeId(i as u32))?;
    }
    b.patch()?;
    let Builder {
        parts,
        feeds,
        remap,
        slot,
        ..
    } = b;
    let mut out: Vec<Partition> = Vec::new();
    for (p, part) in parts.into_iter().enumerate() {
        // With control flow, receives wait on their frame's control loop, built after them:
        // put the nodes back in a topological order.
        let (part, new_id) = if frame_aware {
            reorder(part)?
        } else {
            let n = part.len();
            (part, (0..n as u32).map(NodeId).collect())
        };
        let local = |id: NodeId| new_id[remap[id.index()].index()];
        let mut fetches = Vec::new();
        let mut fetch_map = Vec::new();
        for (k, f) in step.fetches.iter().enumerate() {
            if slot[f.node.index()] == p {
                fetch_map.push((k, fetches.len()));
                fetches.push(Output {
                    node: local(f.node),
                    index: f.index,
                });
            }
        }
        let targets = step
            .targets
            .iter()
            .filter(|t| slot[t.index()] == p)
            .map(|&t| local(t))
            .collect();
        let origin = vec![None; part.len()];
        out.push(Partition {
            device: used[p],
            step: StepGraph {
                graph: part,
                feeds: feeds[p]
                    .iter()
                    .map(|f| f.map(|id| new_id[id.index()]))
                    .collect(),
                fetches,
                targets,
                origin,
            },
            fetch_map,
        });
    }
    Ok(out)
}

/// Loop frames of the step graph (with control flow), for partitioning.
#[derive(Default)]
struct FrameInfo {
    names: Vec<String>,
    parents: Vec<FrameId>,
    parallel: Vec<i64>,
    /// Per (frame, partition) of a frame split across devices: its control loop's Merge.
    merges: HashMap<(FrameId, usize), NodeId>,
}

/// The step graph with a control loop for each device of each loop frame that spans several
/// devices (TF's partitioning of control flow): `Enter(pivot) -> Merge -> Switch(LoopCond) ->
/// Identity -> NextIteration -> Merge` on a bool pivot, whose Switch takes the frame's
/// predicate (received from the device that computes it), so every device holding part of the
/// loop runs the same iterations. The pivot enters from the Merge of the parent frame's control
/// loop (or a constant at the top level). Also moves each loop back edge's NextIteration to its Merge's
/// device. Returns the graph, the frame each node's outputs live in and the frames.
fn with_control_loops(
    g: &Graph,
    slot: &mut Vec<usize>,
    names: &[String],
) -> Result<(Graph, Vec<FrameId>, FrameInfo)> {
    let order: Vec<NodeId> = g.node_ids().collect();
    let fm = FrameMap::analyze(g, &order)?;
    let nf = fm.num_frames();
    let mut info = FrameInfo {
        names: fm.frames.iter().map(|f| f.name.clone()).collect(),
        parents: fm.frames.iter().map(|f| f.parent).collect(),
        parallel: vec![10; nf],
        merges: HashMap::new(),
    };
    let mut loop_cond: Vec<Option<Output>> = vec![None; nf];
    let mut first_enter: Vec<Option<NodeId>> = vec![None; nf];
    for (i, node) in g.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        match node.op.as_str() {
            "Merge" => {
                for (k, o) in node.inputs.iter().enumerate() {
                    if is_back_edge(g, node, k) {
                        slot[o.node.index()] = slot[i];
                    }
                }
            }
            "LoopCond" => {
                loop_cond[fm.frame(id) as usize].get_or_insert(Output::new(id, 0));
            }
            "Enter" => {
                let f = fm.frame(id) as usize;
                if first_enter[f].is_none() {
                    first_enter[f] = Some(id);
                    info.parallel[f] = node
                        .attrs
                        .int_opt("parallel_iterations")
                        .copied()
                        .unwrap_or(10);
                }
            }
            _ => {}
        }
    }
    // The partitions holding nodes that run in (or inside) each frame. An Enter counts for the
    // frame it runs in, not the one it feeds: consumers on other devices get their own copy.
    let mut spans: Vec<Vec<usize>> = vec![Vec::new(); nf];
    for (i, node) in g.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let run = match node.op.as_str() {
            "Enter" => fm.parent(fm.frame(id)),
            "Exit" => node.inputs.first().map_or(ROOT_FRAME, |o| fm.frame(o.node)),
            _ => fm.frame(id),
        };
        let mut fs = vec![run];
        if node.op != "Enter" {
            fs.push(fm.frame(id));
        }
        for mut f in fs {
            while f != ROOT_FRAME {
                if !spans[f as usize].contains(&slot[i]) {
                    spans[f as usize].push(slot[i]);
                }
                f = fm.parent(f);
            }
        }
    }
    let mut out = g.clone();
    let mut out_frame: Vec<FrameId> = g.node_ids().map(|id| fm.frame(id)).collect();
    let bool_t = || TensorType::new(DType::Bool, Shape::scalar());
    // Parents have smaller ids than their children (frames are numbered as they are found).
    for f in 1..nf as FrameId {
        let mut parts = spans[f as usize].clone();
        if parts.len() < 2 {
            continue;
        }
        parts.sort_unstable();
        let fname = info.names[f as usize].clone();
        let Some(pred) = loop_cond[f as usize] else {
            let node = first_enter[f as usize].map_or(&g.nodes()[0], |e| g.node(e));
            return Err(placement_error(
                node,
                format!("loop frame `{fname}` spans several devices but has no LoopCond"),
            ));
        };
        let parent = info.parents[f as usize];
        for p in parts {
            let base = format!("_loop/{fname}/{}", names[p]);
            let mut push = |out: &mut Graph, node: Node, frame: FrameId| {
                slot.push(p);
                out_frame.push(frame);
                out.push_checked(node)
            };
            let node = |name: &str, op: &str, inputs: Vec<Output>, outputs: usize| Node {
                name: format!("{base}/{name}"),
                op: op.into(),
                inputs,
                control_inputs: vec![],
                attrs: Attrs::default(),
                device: String::new(),
                outputs: (0..outputs).map(|_| bool_t()).collect(),
            };
            let pivot = if parent == ROOT_FRAME {
                let mut c = node("pivot", "Const", vec![], 1);
                c.attrs.set("value", tfr_graph::TensorValue::scalar(true));
                push(&mut out, c, ROOT_FRAME)
            } else {
                // The parent's Merge: live in every iteration of the parent (its Identity is
                // dead in the last one, where a loop in the predicate still runs).
                *info.merges.get(&(parent, p)).ok_or_else(|| {
                    placement_error(
                        g.node(pred.node),
                        format!("no control loop of the parent of `{fname}` on {}", names[p]),
                    )
                })?
            };
            let mut enter = node("enter", "Enter", vec![Output::new(pivot, 0)], 1);
            enter.attrs.set("frame_name", fname.as_str());
            enter.attrs.set("is_constant", false);
            enter
                .attrs
                .set("parallel_iterations", info.parallel[f as usize]);
            let enter = push(&mut out, enter, f);
            let mut merge = node("merge", "Merge", vec![Output::new(enter, 0); 2], 2);
            merge.outputs[1] = TensorType::new(DType::I32, Shape::scalar());
            let merge = push(&mut out, merge, f);
            let switch = node("switch", "Switch", vec![Output::new(merge, 0), pred], 2);
            let switch = push(&mut out, switch, f);
            let identity = node("identity", "Identity", vec![Output::new(switch, 1)], 1);
            let identity = push(&mut out, identity, f);
            let next = node("next", "NextIteration", vec![Output::new(identity, 0)], 1);
            let next = push(&mut out, next, f);
            out.nodes_for_rewrite()[merge.index()].inputs[1] = Output::new(next, 0);
            info.merges.insert((f, p), merge);
        }
    }
    Ok((out, out_frame, info))
}

/// The graph `g` with its nodes in a topological order, and the new id of each old one.
fn reorder(g: Graph) -> Result<(Graph, Vec<NodeId>)> {
    let order = topological_order(&g)?;
    let mut new_id = vec![NodeId(0); g.len()];
    for (i, &id) in order.iter().enumerate() {
        new_id[id.index()] = NodeId(i as u32);
    }
    let mut out = Graph::new();
    out.seed = g.seed;
    for &id in &order {
        let mut n = g.node(id).clone();
        for o in &mut n.inputs {
            o.node = new_id[o.node.index()];
        }
        for c in &mut n.control_inputs {
            *c = new_id[c.index()];
        }
        out.push_checked(n);
    }
    Ok((out, new_id))
}

/// Builds the partitions' graphs from the step graph (with its control loops).
struct Builder<'a> {
    g: &'a Graph,
    /// Per node: the frame its outputs live in (transfers of them run there).
    out_frame: Vec<FrameId>,
    /// Per node: its partition.
    slot: Vec<usize>,
    /// Per partition: the device's name.
    names: Vec<String>,
    parts: Vec<Graph>,
    feeds: Vec<Vec<Option<NodeId>>>,
    num_feeds: usize,
    /// The step has control flow: transfers are keyed by frame and iteration, may carry dead
    /// values, and are run by the control-flow machine.
    frame_aware: bool,
    frames: FrameInfo,
    remap: Vec<NodeId>,
    /// (frame, partition) -> the rendezvous handle there.
    handles: HashMap<(FrameId, usize), Output>,
    /// (source output, destination partition) -> the received output there.
    received: HashMap<(Output, usize), Output>,
    control_received: HashMap<(NodeId, usize), NodeId>,
    /// (Enter, partition) -> its copy there.
    enters: HashMap<(NodeId, usize), NodeId>,
    /// Receives inside a loop: (partition, receive, frame); each waits on the control loop's
    /// Merge so it runs once per iteration.
    recv_pivots: Vec<(usize, NodeId, FrameId)>,
    /// Loop back edges (NextIteration -> Merge), set once both are copied.
    back_edges: Vec<(usize, NodeId, usize, Output)>,
}

impl Builder<'_> {
    fn handle(&mut self, f: FrameId, p: usize) -> Output {
        if let Some(&h) = self.handles.get(&(f, p)) {
            return h;
        }
        let resource = TensorType::new(DType::Resource, Shape::scalar());
        let h = if f == ROOT_FRAME {
            let mut attrs = Attrs::default();
            attrs.set("index", self.num_feeds as i64);
            attrs.set("dtype", DType::Resource);
            attrs.set("shape", Shape::scalar());
            let id = self.parts[p].push_checked(Node {
                name: "_rendezvous".into(),
                op: ARG_OP.into(),
                inputs: vec![],
                control_inputs: vec![],
                attrs,
                device: String::new(),
                outputs: vec![resource],
            });
            self.feeds[p][self.num_feeds] = Some(id);
            Output::new(id, 0)
        } else {
            // Into a loop as an invariant, like any outside value.
            let outer = self.handle(self.frames.parents[f as usize], p);
            let mut attrs = Attrs::default();
            attrs.set("frame_name", self.frames.names[f as usize].as_str());
            attrs.set("is_constant", true);
            attrs.set("parallel_iterations", self.frames.parallel[f as usize]);
            let id = self.parts[p].push_checked(Node {
                name: format!("_rendezvous/{}", self.frames.names[f as usize]),
                op: "Enter".into(),
                inputs: vec![outer],
                control_inputs: vec![],
                attrs,
                device: self.names[p].clone(),
                outputs: vec![resource],
            });
            Output::new(id, 0)
        };
        self.handles.insert((f, p), h);
        h
    }

    /// A `_Send` of `value` (local to `src`) on `src` and its `_Recv` on `dst`, in frame `f`.
    /// `what` names the tensor (`node:i`, or `^node` for a control edge); the rendezvous key
    /// is `source device;what;destination device` (plus frame and iteration when frame-aware).
    fn transfer(
        &mut self,
        value: Output,
        ty: TensorType,
        what: String,
        f: FrameId,
        src: usize,
        dst: usize,
    ) -> Output {
        let key = format!("{what}->{}", self.names[dst]);
        let tensor_name = format!("{};{what};{}", self.names[src], self.names[dst]);
        let hs = self.handle(f, src);
        let mut sa = Attrs::default();
        sa.set("tensor_name", tensor_name.as_str());
        sa.set("send_device", self.names[src].as_str());
        sa.set("recv_device", self.names[dst].as_str());
        if self.frame_aware {
            sa.set(FRAME_AWARE, true);
        }
        self.parts[src].push_checked(Node {
            name: format!("_send/{key}"),
            op: "_Send".into(),
            inputs: vec![value, hs],
            control_inputs: vec![],
            attrs: sa.clone(),
            device: self.names[src].clone(),
            outputs: vec![],
        });
        let hr = self.handle(f, dst);
        sa.set("dtype", ty.dtype);
        sa.set("shape", ty.shape.clone());
        let rid = self.parts[dst].push_checked(Node {
            name: format!("_recv/{key}"),
            op: "_Recv".into(),
            inputs: vec![hr],
            control_inputs: vec![],
            attrs: sa,
            device: self.names[dst].clone(),
            outputs: vec![ty],
        });
        if f != ROOT_FRAME {
            self.recv_pivots.push((dst, rid, f));
        }
        Output::new(rid, 0)
    }

    /// Output `o` of the step graph as seen on partition `p`.
    fn input(&mut self, o: Output, p: usize) -> Result<Output> {
        let src = self.slot[o.node.index()];
        let local = Output {
            node: self.remap[o.node.index()],
            index: o.index,
        };
        if src == p {
            return Ok(local);
        }
        if self.frame_aware && self.g.node(o.node).op == "Enter" {
            // An Enter's value exists in iteration 0 only (or is an invariant): enter a copy
            // on `p` instead of sending it every iteration.
            return Ok(Output::new(self.enter_on(o.node, p)?, 0));
        }
        if let Some(&r) = self.received.get(&(o, p)) {
            return Ok(r);
        }
        let key = self.g.output_name(o);
        let ty = self.g.output_type(o).clone();
        let r = self.transfer(local, ty, key, self.out_frame[o.node.index()], src, p);
        self.received.insert((o, p), r);
        Ok(r)
    }

    /// Control input `c` of a node on partition `p`.
    fn control(&mut self, c: NodeId, p: usize) -> Result<NodeId> {
        let src = self.slot[c.index()];
        if src == p {
            return Ok(self.remap[c.index()]);
        }
        if self.frame_aware && self.g.node(c).op == "Enter" {
            return self.enter_on(c, p);
        }
        if let Some(&r) = self.control_received.get(&(c, p)) {
            return Ok(r);
        }
        let key = format!("^{}", self.g.node(c).name);
        let mut ca = Attrs::default();
        ca.set("value", tfr_graph::TensorValue::scalar(true));
        let ty = TensorType::new(DType::Bool, Shape::scalar());
        let dummy = self.parts[src].push_checked(Node {
            name: format!("_ctrl/{key}->{}", self.names[p]),
            op: "Const".into(),
            inputs: vec![],
            control_inputs: vec![self.remap[c.index()]],
            attrs: ca,
            device: self.names[src].clone(),
            outputs: vec![ty.clone()],
        });
        let r = self.transfer(
            Output::new(dummy, 0),
            ty,
            key,
            self.out_frame[c.index()],
            src,
            p,
        );
        self.control_received.insert((c, p), r.node);
        Ok(r.node)
    }

    /// A copy on partition `p` of the Enter `e` (its input is received outside the loop).
    fn enter_on(&mut self, e: NodeId, p: usize) -> Result<NodeId> {
        if let Some(&id) = self.enters.get(&(e, p)) {
            return Ok(id);
        }
        let node = self.g.node(e);
        let inputs = node
            .inputs
            .iter()
            .map(|&o| self.input(o, p))
            .collect::<Result<Vec<_>>>()?;
        let control_inputs = self.control_inputs(node, p)?;
        let id = self.parts[p].push_checked(Node {
            name: format!("{}/_on_{}", node.name, self.names[p]),
            inputs,
            control_inputs,
            device: self.names[p].clone(),
            ..node.clone()
        });
        self.enters.insert((e, p), id);
        Ok(id)
    }

    /// The control inputs of `node` as partition `p` sees them.
    fn control_inputs(&mut self, node: &Node, p: usize) -> Result<Vec<NodeId>> {
        node.control_inputs
            .iter()
            .map(|&c| self.control(c, p))
            .collect()
    }

    /// Copies node `id` to its partition, receiving the inputs that other partitions make.
    fn copy(&mut self, id: NodeId) -> Result<()> {
        let g = self.g;
        let node = g.node(id);
        let p = self.slot[id.index()];
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut later = Vec::new();
        for (k, &o) in node.inputs.iter().enumerate() {
            if o.node.index() >= self.remap.len() {
                // A loop's back edge: its NextIteration is on this partition (see
                // `with_control_loops`), copied later.
                if !is_back_edge(g, node, k) || self.slot[o.node.index()] != p {
                    return Err(placement_error(
                        node,
                        format!(
                            "its input `{}` comes later in the step's order",
                            g.node(o.node).name
                        ),
                    ));
                }
                later.push((k, o));
                inputs.push(o);
                continue;
            }
            inputs.push(self.input(o, p)?);
        }
        let control_inputs = self.control_inputs(node, p)?;
        let new = self.parts[p].push_checked(Node {
            inputs,
            control_inputs,
            device: self.names[p].clone(),
            ..node.clone()
        });
        if node.op == ARG_OP {
            if let Some(&k) = node.attrs.int_opt("index") {
                self.feeds[p][k as usize] = Some(new);
            }
        }
        self.back_edges
            .extend(later.into_iter().map(|(k, o)| (p, new, k, o)));
        self.remap.push(new);
        Ok(())
    }

    /// Sets the back edges and makes each receive inside a loop wait on its control loop.
    fn patch(&mut self) -> Result<()> {
        for &(p, id, k, o) in &self.back_edges {
            self.parts[p].nodes_for_rewrite()[id.index()].inputs[k] = Output {
                node: self.remap[o.node.index()],
                index: o.index,
            };
        }
        for &(p, rid, f) in &self.recv_pivots {
            let merge = self.frames.merges.get(&(f, p)).copied().ok_or_else(|| {
                let recv = &self.parts[p].nodes()[rid.index()];
                placement_error(
                    recv,
                    format!(
                        "loop frame `{}` has no control loop on {}",
                        self.frames.names[f as usize], self.names[p]
                    ),
                )
            })?;
            let merge = self.remap[merge.index()];
            self.parts[p].nodes_for_rewrite()[rid.index()]
                .control_inputs
                .push(merge);
        }
        Ok(())
    }
}
