//! Runtime-independent graph passes run before a step's executable is built: pruning to what a
//! step needs (feeds cut their producers off) and common-subexpression elimination.
//! Constant folding needs kernels and lives in `tfr-core`.

use crate::attr::Attrs;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, Node, NodeId, Output};
use crate::op_def::registry;
use crate::ops::control_flow_ops::is_control_flow_op;
use crate::validate::topological_order;
use std::collections::HashMap;

/// The op of the nodes that stand for fed values in a pruned graph; attribute `index` is the
/// position of the feed.
pub const ARG_OP: &str = "_Arg";

/// A graph cut down to one step's needs, with feeds replaced by `_Arg` nodes.
#[derive(Clone, Debug)]
pub struct StepGraph {
    pub graph: Graph,
    /// Per feed, its `_Arg` node in `graph` (None when nothing needed that feed).
    pub feeds: Vec<Option<NodeId>>,
    pub fetches: Vec<Output>,
    pub targets: Vec<NodeId>,
    /// Map from a node of `graph` to the node of the original graph it came from, when any.
    pub origin: Vec<Option<NodeId>>,
}

/// Keeps only the nodes that `fetches` and `targets` need; a fed output cuts off its producer.
pub fn prune(
    graph: &Graph,
    feeds: &[Output],
    fetches: &[Output],
    targets: &[NodeId],
) -> Result<StepGraph> {
    for &o in feeds.iter().chain(fetches) {
        graph.check_output(o)?;
    }
    for &t in targets {
        graph.get_node(t)?;
    }
    let fed: HashMap<Output, usize> = feeds.iter().enumerate().map(|(i, &o)| (o, i)).collect();
    // As in TensorFlow, a control edge from a fed placeholder becomes one from its feed: the
    // placeholder itself does not run.
    let fed_placeholder = |c: NodeId| -> Option<usize> {
        if graph.node(c).op != "Placeholder" {
            return None;
        }
        fed.get(&Output::new(c, 0)).copied()
    };
    // Mark what is needed, walking back from fetches and targets.
    let mut needed = vec![false; graph.len()];
    let mut stack: Vec<NodeId> = targets.to_vec();
    stack.extend(
        fetches
            .iter()
            .filter(|o| !fed.contains_key(o))
            .map(|o| o.node),
    );
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut needed[id.index()], true) {
            continue;
        }
        let node = graph.node(id);
        for o in &node.inputs {
            if !fed.contains_key(o) {
                stack.push(o.node);
            }
        }
        stack.extend(
            node.control_inputs
                .iter()
                .copied()
                .filter(|&c| fed_placeholder(c).is_none()),
        );
    }
    let mut out = Graph::new();
    out.seed = graph.seed;
    let mut origin = Vec::new();
    let mut arg_nodes: Vec<Option<NodeId>> = vec![None; feeds.len()];
    let mut new_id: HashMap<NodeId, NodeId> = HashMap::new();
    let mut feed_arg = |out: &mut Graph, origin: &mut Vec<Option<NodeId>>, k: usize| -> NodeId {
        if let Some(id) = arg_nodes[k] {
            return id;
        }
        let ty = graph.output_type(feeds[k]).clone();
        let mut attrs = Attrs::default();
        attrs.set("index", k as i64);
        attrs.set("dtype", ty.dtype);
        attrs.set("shape", ty.shape.clone());
        let id = out.push_node(Node {
            name: format!("_arg_{k}_{}", graph.output_name(feeds[k]).replace(':', "_")),
            op: ARG_OP.to_string(),
            inputs: Vec::new(),
            control_inputs: Vec::new(),
            attrs,
            device: graph.node(feeds[k].node).device.clone(),
            outputs: vec![ty],
        });
        origin.push(None);
        arg_nodes[k] = Some(id);
        id
    };
    let mut patches: Vec<(NodeId, usize, Output)> = Vec::new();
    for id in topological_order(graph)? {
        if !needed[id.index()] {
            continue;
        }
        let node = graph.node(id);
        if node.op == "Placeholder" {
            let unfed = (0..node.outputs.len()).any(|i| !fed.contains_key(&Output::new(id, i)));
            if unfed {
                return Err(GraphError::InvalidNode {
                    node: node.name.clone(),
                    op: node.op.clone(),
                    message: format!(
                        "placeholder must be fed a value of {} for this step",
                        node.outputs[0]
                    ),
                });
            }
        }
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut later = Vec::new();
        for (k, o) in node.inputs.iter().enumerate() {
            inputs.push(match fed.get(o) {
                Some(&f) => Output::new(feed_arg(&mut out, &mut origin, f), 0),
                None => match new_id.get(&o.node) {
                    Some(&n) => Output {
                        node: n,
                        index: o.index,
                    },
                    // A loop's back edge: its producer comes later in the order.
                    None => {
                        later.push((k, *o));
                        *o
                    }
                },
            });
        }
        let control_inputs = node
            .control_inputs
            .iter()
            .map(|&c| match fed_placeholder(c) {
                Some(f) => Ok(feed_arg(&mut out, &mut origin, f)),
                None => new_id.get(&c).copied().ok_or_else(|| missing(graph, c)),
            })
            .collect::<Result<Vec<_>>>()?;
        let nid = out.push_node(Node {
            inputs,
            control_inputs,
            ..node.clone()
        });
        patches.extend(later.into_iter().map(|(k, o)| (nid, k, o)));
        origin.push(Some(id));
        new_id.insert(id, nid);
    }
    for (nid, k, o) in patches {
        let n = new_id
            .get(&o.node)
            .copied()
            .ok_or_else(|| missing(graph, o.node))?;
        out.nodes_mut()[nid.index()].inputs[k] = Output {
            node: n,
            index: o.index,
        };
    }
    let mut map_out =
        |o: &Output, out: &mut Graph, origin: &mut Vec<Option<NodeId>>| match fed.get(o) {
            Some(&k) => Output::new(feed_arg(out, origin, k), 0),
            None => Output {
                node: new_id[&o.node],
                index: o.index,
            },
        };
    let fetches = fetches
        .iter()
        .map(|o| map_out(o, &mut out, &mut origin))
        .collect();
    let targets = targets.iter().map(|t| new_id[t]).collect();
    Ok(StepGraph {
        graph: out,
        feeds: arg_nodes,
        fetches,
        targets,
        origin,
    })
}

/// Merges nodes that compute the same thing from the same inputs (stateless ops only).
pub fn eliminate_common_subexpressions(step: &mut StepGraph) {
    let old = std::mem::take(&mut step.graph);
    let mut out = Graph::new();
    out.seed = old.seed;
    let mut remap: Vec<NodeId> = Vec::with_capacity(old.len());
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    let mut origin = Vec::with_capacity(old.len());
    let mut patches: Vec<(NodeId, usize, Output)> = Vec::new();
    for (i, node) in old.nodes().iter().enumerate() {
        let mut later = Vec::new();
        let inputs: Vec<Output> = node
            .inputs
            .iter()
            .enumerate()
            .map(|(k, o)| match remap.get(o.node.index()) {
                Some(&n) => Output {
                    node: n,
                    index: o.index,
                },
                None => {
                    later.push((k, *o));
                    *o
                }
            })
            .collect();
        let control_inputs: Vec<NodeId> = node
            .control_inputs
            .iter()
            .map(|c| remap.get(c.index()).copied().unwrap_or(*c))
            .collect();
        let mergeable = later.is_empty()
            && node.op != ARG_OP
            && !is_control_flow_op(&node.op)
            && registry().get(&node.op).is_some_and(|d| !d.stateful)
            && node
                .attrs
                .tensor_opt("value")
                .is_none_or(|v| v.num_elements() <= 64);
        let key = mergeable.then(|| {
            let mut ins = inputs.clone();
            if registry().get(&node.op).is_some_and(|d| d.commutative) {
                ins.sort();
            }
            format!(
                "{}|{:?}|{:?}|{:?}|{}",
                node.op, ins, control_inputs, node.attrs, node.device
            )
        });
        if let Some(&existing) = key.as_ref().and_then(|k| seen.get(k)) {
            remap.push(existing);
            continue;
        }
        let id = out.push_node(Node {
            inputs,
            control_inputs,
            ..node.clone()
        });
        if let Some(k) = key {
            seen.insert(k, id);
        }
        patches.extend(later.into_iter().map(|(k, o)| (id, k, o)));
        origin.push(step.origin[i]);
        remap.push(id);
    }
    for (id, k, o) in patches {
        if let Some(&n) = remap.get(o.node.index()) {
            out.nodes_mut()[id.index()].inputs[k] = Output {
                node: n,
                index: o.index,
            };
        }
    }
    step.feeds = step
        .feeds
        .iter()
        .map(|f| f.map(|id| remap[id.index()]))
        .collect();
    step.fetches = step
        .fetches
        .iter()
        .map(|o| Output {
            node: remap[o.node.index()],
            index: o.index,
        })
        .collect();
    step.targets = step.targets.iter().map(|t| remap[t.index()]).collect();
    step.origin = origin;
    step.graph = out;
}

/// Drops nodes that no fetch or target needs any more (e.g. the inputs of a folded node).
pub fn remove_dead_nodes(step: &mut StepGraph) {
    let old = &step.graph;
    let mut live = vec![false; old.len()];
    let mut stack: Vec<NodeId> = step.targets.clone();
    stack.extend(step.fetches.iter().map(|o| o.node));
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut live[id.index()], true) {
            continue;
        }
        let node = old.node(id);
        stack.extend(node.inputs.iter().map(|o| o.node));
        stack.extend(node.control_inputs.iter().copied());
    }
    if live.iter().all(|&l| l) {
        return;
    }
    let mut out = Graph::new();
    out.seed = old.seed;
    let mut remap: Vec<Option<NodeId>> = vec![None; old.len()];
    let mut origin = Vec::new();
    let mut patches: Vec<(NodeId, usize, Output)> = Vec::new();
    for (i, node) in old.nodes().iter().enumerate() {
        if !live[i] {
            continue;
        }
        // Live nodes only use live nodes; a producer not copied yet is a loop's back edge.
        let mut later = Vec::new();
        let inputs = node
            .inputs
            .iter()
            .enumerate()
            .map(|(k, o)| match remap[o.node.index()] {
                Some(n) => Output {
                    node: n,
                    index: o.index,
                },
                None => {
                    later.push((k, *o));
                    *o
                }
            })
            .collect();
        let control_inputs = node
            .control_inputs
            .iter()
            .map(|&c| remap[c.index()].unwrap_or(c))
            .collect();
        let id = out.push_node(Node {
            inputs,
            control_inputs,
            ..node.clone()
        });
        patches.extend(later.into_iter().map(|(k, o)| (id, k, o)));
        remap[i] = Some(id);
        origin.push(step.origin[i]);
    }
    for (id, k, o) in patches {
        if let Some(n) = remap[o.node.index()] {
            out.nodes_mut()[id.index()].inputs[k] = Output {
                node: n,
                index: o.index,
            };
        }
    }
    step.feeds = step
        .feeds
        .iter()
        .map(|f| f.and_then(|id| remap[id.index()]))
        .collect();
    step.fetches = step
        .fetches
        .iter()
        .map(|o| Output {
            node: remap[o.node.index()].expect("fetched"),
            index: o.index,
        })
        .collect();
    step.targets = step
        .targets
        .iter()
        .map(|t| remap[t.index()].expect("target"))
        .collect();
    step.origin = origin;
    step.graph = out;
}

impl Graph {
    /// Appends an already-typed node without re-running inference (for graph rewrites that
    /// build nodes from checked parts, such as constant folding).
    pub fn push_checked(&mut self, node: Node) -> NodeId {
        self.push_node(node)
    }

    /// Mutable access to the node list for rewrites that keep ids stable.
    pub fn nodes_for_rewrite(&mut self) -> &mut Vec<Node> {
        self.nodes_mut()
    }
}

fn missing(graph: &Graph, id: NodeId) -> GraphError {
    GraphError::UnknownNode(format!(
        "`{}` (needed by the step but not reached in topological order)",
        graph
            .nodes()
            .get(id.index())
            .map_or("?", |n| n.name.as_str())
    ))
}
