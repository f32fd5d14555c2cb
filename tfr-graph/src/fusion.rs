//! Kernel fusion: rewrites of one step's graph that replace a pattern of nodes by a fused op
//! computing the same values with fewer passes over memory (TensorFlow's grappler remapper).
//! They run on a pruned [`StepGraph`], where it is known which outputs the step fetches, and
//! only fuse a node whose outputs nothing else uses. Nodes left unused are dropped by
//! [`remove_dead_nodes`](crate::passes::remove_dead_nodes) afterwards.

use crate::dtype::DType;
use crate::graph::NodeId;
use crate::passes::StepGraph;

/// Runs every fusion on `step`.
pub fn fuse_ops(step: &mut StepGraph) {
    fuse_gradient_descent_matmul(step);
}

/// How many times each node is used: data inputs of other nodes (any output), control edges,
/// fetches and targets.
fn use_counts(step: &StepGraph) -> Vec<usize> {
    let mut uses = vec![0usize; step.graph.len()];
    for node in step.graph.nodes() {
        for o in &node.inputs {
            uses[o.node.index()] += 1;
        }
        for c in &node.control_inputs {
            uses[c.index()] += 1;
        }
    }
    for o in &step.fetches {
        uses[o.node.index()] += 1;
    }
    for t in &step.targets {
        uses[t.index()] += 1;
    }
    uses
}

/// `ResourceApplyGradientDescent(var, alpha, MatMul(a, b))`, where the product feeds only the
/// update, becomes `ResourceApplyGradientDescentMatMul(var, alpha, a, b)`: the product is
/// accumulated into the variable by the matrix kernel instead of being stored, re-read and
/// subtracted (for a dense layer's kernel, the gradient is a weight-sized buffer).
fn fuse_gradient_descent_matmul(step: &mut StepGraph) {
    let uses = use_counts(step);
    let graph = &step.graph;
    let fusable: Vec<(usize, NodeId)> = graph
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op == "ResourceApplyGradientDescent")
        .filter_map(|(i, apply)| {
            let delta = *apply.inputs.get(2)?;
            let product = graph.node(delta.node);
            let ok = product.op == "MatMul"
                && uses[delta.node.index()] == 1
                && product.device == apply.device
                && product
                    .outputs
                    .first()
                    .is_some_and(|t| matches!(t.dtype, DType::F32 | DType::F64));
            ok.then_some((i, delta.node))
        })
        .collect();
    let nodes = step.graph.nodes_for_rewrite();
    for (apply, product) in fusable {
        let product = nodes[product.index()].clone();
        let node = &mut nodes[apply];
        node.op = "ResourceApplyGradientDescentMatMul".to_string();
        node.inputs.truncate(2);
        node.inputs.extend(product.inputs);
        for flag in ["transpose_a", "transpose_b"] {
            let value = product.attrs.bool_opt(flag).copied().unwrap_or(false);
            node.attrs.set(flag, value);
        }
        for c in product.control_inputs {
            if !node.control_inputs.contains(&c) {
                node.control_inputs.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::{prune, remove_dead_nodes};
    use crate::{Graph, Output, Shape};

    /// `w -= 0.1 * x^T @ dy`; returns the graph, the update, the product and the feeds.
    fn sgd_graph() -> (Graph, Output, Output, [Output; 2]) {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[4, 3]))
            .unwrap();
        let dy = g
            .placeholder("dy", DType::F32, Shape::known(&[4, 2]))
            .unwrap();
        let w0 = g.constant_from(&[3, 2], vec![0f32; 6]).unwrap();
        let v = g.variable("w", w0).unwrap().handle;
        let dw = g.matmul_t(x, dy, true, false).unwrap();
        let lr = g.scalar(0.1f32).unwrap();
        let apply = g.resource_apply_gradient_descent(v, lr, dw).unwrap();
        (g, apply, dw, [x, dy])
    }

    #[test]
    fn a_product_used_only_by_the_update_is_fused() {
        let (g, apply, _, feeds) = sgd_graph();
        let mut step = prune(&g, &feeds, &[], &[apply.node]).unwrap();
        fuse_ops(&mut step);
        remove_dead_nodes(&mut step);
        let ops: Vec<&str> = step.graph.nodes().iter().map(|n| n.op.as_str()).collect();
        assert!(
            ops.contains(&"ResourceApplyGradientDescentMatMul"),
            "{ops:?}"
        );
        assert!(!ops.contains(&"MatMul"), "{ops:?}");
        let fused = step
            .graph
            .nodes()
            .iter()
            .find(|n| n.op == "ResourceApplyGradientDescentMatMul")
            .unwrap();
        assert_eq!(fused.attrs.boolean("transpose_a"), Ok(&true));
        assert_eq!(fused.attrs.boolean("transpose_b"), Ok(&false));
        assert_eq!(fused.inputs.len(), 4);
    }

    #[test]
    fn a_fetched_product_is_left_alone() {
        let (g, apply, dw, feeds) = sgd_graph();
        let mut step = prune(&g, &feeds, &[dw], &[apply.node]).unwrap();
        fuse_ops(&mut step);
        let ops: Vec<&str> = step.graph.nodes().iter().map(|n| n.op.as_str()).collect();
        assert!(ops.contains(&"ResourceApplyGradientDescent"), "{ops:?}");
        assert!(
            !ops.contains(&"ResourceApplyGradientDescentMatMul"),
            "{ops:?}"
        );
    }
}
