//! Whole-graph validation: every edge's arity and dtype, no cycles except through a loop's
//! back edge (NextIteration -> Merge), and every node's inputs in one frame.

use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId};
use crate::ops::control_flow_ops::{is_back_edge, FrameMap};

/// Node ids in an order where every node follows its data and control inputs, back edges of
/// loops (a `NextIteration` feeding a `Merge`) aside: a cycle is legal only through one.
pub fn topological_order(graph: &Graph) -> Result<Vec<NodeId>> {
    topological_order_with(graph, &[])
}

/// [`topological_order`], with `extra` edges `(from, to)`: `to` comes after `from` too.
pub(crate) fn topological_order_with(
    graph: &Graph,
    extra: &[(NodeId, NodeId)],
) -> Result<Vec<NodeId>> {
    let n = graph.len();
    let mut pending = vec![0usize; n];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in graph.nodes().iter().enumerate() {
        let sources = node
            .inputs
            .iter()
            .enumerate()
            .filter(|&(k, _)| !is_back_edge(graph, node, k))
            .map(|(_, o)| o.node)
            .chain(node.control_inputs.iter().copied());
        for src in sources {
            if src.index() >= n {
                return Err(GraphError::NodeNotInGraph {
                    id: src.0,
                    len: n,
                    context: format!(" (input of `{}`)", node.name),
                });
            }
            pending[i] += 1;
            consumers[src.index()].push(i);
        }
    }
    for &(from, to) in extra {
        if from.index() < n && to.index() < n {
            pending[to.index()] += 1;
            consumers[from.index()].push(to.index());
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(NodeId(i as u32));
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
    }
    if order.len() != n {
        let stuck = (0..n).find(|&i| pending[i] > 0).unwrap_or(0);
        return Err(GraphError::Cycle(graph.nodes()[stuck].name.clone()));
    }
    Ok(order)
}

/// Re-infers every node's output types from the registry, in topological order, so a loaded
/// graph's stored types are never trusted: each node is inferred from its inputs' checked
/// types; a stored dtype must equal the inferred one and a stored shape must be compatible
/// with the inferred shape (it may refine it, as `Graph::refine_output_shape` does) and within
/// [`Shape::check_bounds`](crate::Shape::check_bounds).
pub(crate) fn reinfer(graph: &mut Graph) -> Result<()> {
    // A stored TensorFlow alias (`AddV2`) becomes the tfr op it names, as `Graph::build` does.
    for node in graph.nodes_mut() {
        let canonical = crate::op_def::canonical_op(&node.op);
        if canonical != node.op {
            node.op = canonical.to_string();
        }
    }
    for id in topological_order(graph)? {
        let node = graph.node(id);
        let (name, op, inputs) = (node.name.clone(), node.op.clone(), node.inputs.clone());
        let mut attrs = node.attrs.clone();
        let inferred = graph.infer_node(&name, &op, &inputs, &mut attrs)?;
        let recorded = &graph.node(id).outputs;
        let invalid = |message: String| GraphError::InvalidNode {
            node: name.clone(),
            op: op.clone(),
            message,
        };
        if inferred.len() != recorded.len() {
            return Err(invalid(format!(
                "records {} outputs but its op gives {}",
                recorded.len(),
                inferred.len()
            )));
        }
        for (k, (inf, rec)) in inferred.iter().zip(recorded).enumerate() {
            if inf.dtype != rec.dtype {
                return Err(invalid(format!(
                    "recorded output {k} has dtype {} but its inputs give {}",
                    rec.dtype, inf.dtype
                )));
            }
            inf.shape.merge(&rec.shape).map_err(|e| {
                invalid(format!(
                    "recorded output {k} has shape {} but its inputs give {}: {e}",
                    rec.shape, inf.shape
                ))
            })?;
            rec.shape
                .check_bounds()
                .map_err(|e| invalid(format!("recorded output {k}: {e}")))?;
        }
    }
    Ok(())
}

/// Checks every node against the registry (op known, arity, dtypes, attributes, recorded output
/// types equal to what the shape functions infer), that the graph is acyclic but for loops'
/// back edges, and that each node's inputs run in one frame.
pub fn validate(graph: &Graph) -> Result<()> {
    let order = topological_order(graph)?;
    FrameMap::analyze(graph, &order)?;
    for node in graph.nodes() {
        let mut attrs = node.attrs.clone();
        let inferred = graph.infer_node(&node.name, &node.op, &node.inputs, &mut attrs)?;
        let dtypes: Vec<_> = inferred.iter().map(|t| t.dtype).collect();
        let recorded: Vec<_> = node.outputs.iter().map(|t| t.dtype).collect();
        if dtypes != recorded {
            return Err(GraphError::InvalidNode {
                node: node.name.clone(),
                op: node.op.clone(),
                message: format!("recorded output dtypes {recorded:?} but inputs give {dtypes:?}"),
            });
        }
    }
    Ok(())
}
