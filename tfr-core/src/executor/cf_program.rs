//! The static control-flow program of an executable: each node's frame template, local index,
//! input slots and out edges (the machine that runs it per step is in `frames.rs`).

use super::LoopPlan;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use smallvec::SmallVec;
use tfr_graph::{Graph, NodeId};

/// How the control-flow machine treats a node.
#[derive(Clone, Debug)]
pub(super) enum CfKind {
    Kernel,
    Switch,
    Merge {
        forward: u32,
        back: u32,
    },
    Enter {
        constant: bool,
        child: u32,
        /// Position among the Enters of the child frame.
        ordinal: u32,
    },
    Exit {
        ordinal: u32,
    },
    NextIteration,
    LoopCond,
    /// Identity-like forwarding done without a kernel call.
    Forward,
    /// A frame-aware `_Send` / `_Recv` (tensor name): run by the sequential machine, keyed by
    /// frame instance and iteration, dead values included (`kernels::sendrecv_ops`).
    Send(Box<str>),
    Recv(Box<str>),
    TensorArray(Box<crate::kernels::control_flow_ops::TaNode>),
}

pub(super) const FETCH: u32 = u32::MAX;
/// Slot of a control edge (no value is written).
pub(super) const CONTROL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub(super) struct Edge {
    /// Consumer node, or `FETCH` (then `slot` is the fetch position).
    pub(super) node: u32,
    /// Input slot in the consumer's frame template, or `CONTROL`.
    pub(super) slot: u32,
}

pub(super) struct CfNode {
    pub(super) kind: CfKind,
    /// Frame template the node runs in.
    pub(super) frame: u32,
    /// Index in its template's per-iteration node state.
    pub(super) local: u32,
    pub(super) slot_base: u32,
    pub(super) num_inputs: u32,
    /// Per output: where its values go. Control edges are delivered with output 0's deadness
    /// (or, for a Switch, dead only when both outputs are).
    pub(super) out_edges: SmallVec<[Vec<Edge>; 2]>,
    pub(super) control_edges: Vec<Edge>,
    /// Forwarding ops (Merge, Switch, Identity, LoopCond, NextIteration, Exit) run inline, when
    /// their last input arrives, instead of as tasks.
    pub(super) inline: bool,
}

pub(super) struct FrameTemplate {
    pub(super) name: String,
    pub(super) num_nodes: usize,
    pub(super) num_slots: usize,
    pub(super) init_pending: Vec<u32>,
    pub(super) parallel_iterations: usize,
    pub(super) maximum_iterations: Option<u64>,
    /// Exit nodes whose input runs in this frame.
    pub(super) exits: Vec<u32>,
    /// Number of Enter nodes that feed this frame.
    pub(super) num_enters: u32,
    /// For a simple loop: how the sequential machine runs it as one imperative loop.
    pub(super) plan: Option<LoopPlan>,
    /// Identifies the frame in transfer keys (the same in every partition).
    pub(super) name_hash: u64,
}

/// The static control-flow program of an executable.
pub(super) struct CfProgram {
    pub(super) nodes: Vec<CfNode>,
    pub(super) frames: Vec<FrameTemplate>,
    pub(super) roots: Vec<u32>,
    pub(super) num_fetches: usize,
    pub(super) fetch_names: Vec<String>,
    /// Per node: (name, op), for errors of the nodes the machine runs itself.
    pub(super) names: Vec<(String, String)>,
    /// The value every TensorArray flow carries.
    pub(super) flow: Tensor,
    /// Holds frame-aware `_Send`/`_Recv` nodes (a partition of a step with control flow).
    pub(super) has_transfers: bool,
}

impl CfProgram {
    pub(super) fn build(g: &Graph, fetches: &[tfr_graph::Output]) -> Result<CfProgram> {
        use tfr_graph::ops::control_flow_ops::{is_back_edge, FrameMap};
        let order: Vec<NodeId> = g.node_ids().collect();
        let fm = FrameMap::analyze(g, &order)?;
        let n = g.len();
        // The frame a node runs in (its inputs' frame).
        let exec_frame = |id: NodeId| -> u32 {
            let node = g.node(id);
            match node.op.as_str() {
                "Enter" => fm.parent(fm.frame(id)),
                "Exit" => node.inputs.first().map_or(0, |o| fm.frame(o.node)),
                _ => fm.frame(id),
            }
        };
        let mut frames: Vec<FrameTemplate> = fm
            .frames
            .iter()
            .map(|f| FrameTemplate {
                name: f.name.clone(),
                num_nodes: 0,
                num_slots: 0,
                init_pending: Vec::new(),
                parallel_iterations: usize::MAX,
                maximum_iterations: None,
                exits: Vec::new(),
                num_enters: 0,
                plan: None,
                name_hash: crate::kernels::sendrecv_ops::frame_name_hash(&f.name),
            })
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for id in g.node_ids() {
            let node = g.node(id);
            let f = exec_frame(id);
            let t = &mut frames[f as usize];
            let local = t.num_nodes as u32;
            let slot_base = t.num_slots as u32;
            t.num_nodes += 1;
            t.num_slots += node.inputs.len();
            let controls = node.control_inputs.len() as u32;
            let (kind, pending) = match node.op.as_str() {
                "Switch" => (CfKind::Switch, node.inputs.len() as u32 + controls),
                "Merge" => {
                    let back = (0..node.inputs.len())
                        .filter(|&k| is_back_edge(g, node, k))
                        .count() as u32;
                    let forward = node.inputs.len() as u32 - back;
                    (CfKind::Merge { forward, back }, controls + 1)
                }
                "Enter" => {
                    let child = fm.frame(id);
                    let constant = node.attrs.bool_opt("is_constant") == Some(&true);
                    let ct = &mut frames[child as usize];
                    let ordinal = ct.num_enters;
                    ct.num_enters += 1;
                    let pi = node
                        .attrs
                        .int_opt("parallel_iterations")
                        .copied()
                        .unwrap_or(10);
                    ct.parallel_iterations = ct.parallel_iterations.min(pi.max(1) as usize);
                    if let Some(&m) = node.attrs.int_opt("maximum_iterations") {
                        if m >= 0 {
                            let m = m as u64;
                            ct.maximum_iterations =
                                Some(ct.maximum_iterations.map_or(m, |x| x.min(m)));
                        }
                    }
                    (
                        CfKind::Enter {
                            constant,
                            child,
                            ordinal,
                        },
                        1 + controls,
                    )
                }
                "Exit" => {
                    let ordinal = frames[f as usize].exits.len() as u32;
                    frames[f as usize].exits.push(id.0);
                    (CfKind::Exit { ordinal }, 1 + controls)
                }
                "NextIteration" => (CfKind::NextIteration, 1 + controls),
                "LoopCond" => (CfKind::LoopCond, 1 + controls),
                "Identity" => (CfKind::Forward, 1 + controls),
                "_Send" | "_Recv"
                    if crate::kernels::sendrecv_ops::is_frame_aware_transfer(node) =>
                {
                    let name: Box<str> = node
                        .attrs
                        .string_opt("tensor_name")
                        .map_or("", |s| s.as_str())
                        .into();
                    let kind = if node.op == "_Send" {
                        CfKind::Send(name)
                    } else {
                        CfKind::Recv(name)
                    };
                    (kind, node.inputs.len() as u32 + controls)
                }
                op => match crate::kernels::control_flow_ops::TaNode::parse(op, &node.attrs) {
                    Some(ta) => {
                        let ta = ta.map_err(|message| Error::Kernel {
                            node: node.name.clone(),
                            op: node.op.clone(),
                            code: crate::error::Code::InvalidArgument,
                            message,
                        })?;
                        (
                            CfKind::TensorArray(Box::new(ta)),
                            node.inputs.len() as u32 + controls,
                        )
                    }
                    None => (CfKind::Kernel, node.inputs.len() as u32 + controls),
                },
            };
            frames[f as usize].init_pending.push(pending);
            let inline = matches!(
                kind,
                CfKind::Merge { .. }
                    | CfKind::Switch
                    | CfKind::Forward
                    | CfKind::LoopCond
                    | CfKind::NextIteration
                    | CfKind::Exit { .. }
            );
            nodes.push(CfNode {
                inline,
                kind,
                frame: f,
                local,
                slot_base,
                num_inputs: node.inputs.len() as u32,
                out_edges: (0..node.outputs.len()).map(|_| Vec::new()).collect(),
                control_edges: Vec::new(),
            });
        }
        for (i, node) in g.nodes().iter().enumerate() {
            for (k, o) in node.inputs.iter().enumerate() {
                let slot = nodes[i].slot_base + k as u32;
                nodes[o.node.index()].out_edges[o.index as usize].push(Edge {
                    node: i as u32,
                    slot,
                });
            }
            for c in &node.control_inputs {
                nodes[c.index()].control_edges.push(Edge {
                    node: i as u32,
                    slot: CONTROL,
                });
            }
        }
        for (k, f) in fetches.iter().enumerate() {
            if fm.frame(f.node) != 0 {
                return Err(Error::InvalidArgument {
                    arg: "fetches".into(),
                    message: format!(
                        "cannot fetch `{}`: it runs inside {}, fetch the loop's results (its \
                         Exit outputs) instead",
                        g.output_name(*f),
                        fm.describe(fm.frame(f.node))
                    ),
                });
            }
            nodes[f.node.index()].out_edges[f.index as usize].push(Edge {
                node: FETCH,
                slot: k as u32,
            });
        }
        for t in &mut frames {
            if t.parallel_iterations == usize::MAX {
                t.parallel_iterations = 1;
            }
        }
        for (f, t) in frames.iter_mut().enumerate().skip(1) {
            t.plan = LoopPlan::build(g, &nodes, f as u32);
        }
        let roots = (0..n as u32)
            .filter(|&i| {
                let nd = &nodes[i as usize];
                nd.frame == 0 && frames[0].init_pending[nd.local as usize] == 0
            })
            .collect();
        Ok(CfProgram {
            nodes,
            frames,
            roots,
            num_fetches: fetches.len(),
            fetch_names: fetches.iter().map(|&f| g.output_name(f)).collect(),
            names: g
                .nodes()
                .iter()
                .map(|n| (n.name.clone(), n.op.clone()))
                .collect(),
            flow: Tensor::scalar(0.0f32),
            has_transfers: g
                .nodes()
                .iter()
                .any(crate::kernels::sendrecv_ops::is_frame_aware_transfer),
        })
    }
}
