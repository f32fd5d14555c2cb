//! Kernel fusion: rewrites of one step's graph that replace a pattern of nodes by a fused op
//! computing the same values with fewer passes over memory (TensorFlow's grappler remapper).
//! They run on a pruned [`StepGraph`], where it is known which outputs the step fetches, and
//! only fuse a node whose outputs nothing else uses. Nodes left unused are dropped by
//! [`remove_dead_nodes`](crate::passes::remove_dead_nodes) afterwards.

mod elementwise;

pub use elementwise::{region_shape, ElementwiseOp, ElementwiseProgram, Instruction, Operand};

use crate::dtype::DType;
use crate::graph::{Node, NodeId, Output};
use crate::passes::StepGraph;
use crate::shape::Dim;

/// Which fusions run, and where.
pub struct Fusions<'a> {
    /// Which nodes may join an elementwise region (`FusedElementwise` has kernels only on
    /// some devices); None: no elementwise fusion.
    pub elementwise: Option<&'a dyn Fn(&Node) -> bool>,
}

/// Runs every fusion on `step`, elementwise regions on any device.
pub fn fuse_ops(step: &mut StepGraph) {
    fuse_ops_with(
        step,
        &Fusions {
            elementwise: Some(&|_| true),
        },
    );
}

/// Runs the fusions `which` selects on `step`. The product fusions run first, so a bias add
/// they absorb is not taken into an elementwise region.
pub fn fuse_ops_with(step: &mut StepGraph, which: &Fusions<'_>) {
    fuse_gradient_descent_matmul(step);
    fuse_matmul_bias_add(step);
    if let Some(member) = which.elementwise {
        elementwise::fuse_elementwise(step, member);
    }
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
        node.inputs.extend_from_slice(&product.inputs);
        absorb_product(node, product);
    }
}

/// `Add(MatMul(a, b), bias)` (either operand order, also `AddV2` and NHWC `BiasAdd`), where
/// `bias` is a vector as long as the product has columns and the product feeds only the add,
/// becomes `MatMulBiasAdd(a, b, bias)`: the product is accumulated onto rows of the bias
/// instead of being stored and then read and written again by the add.
fn fuse_matmul_bias_add(step: &mut StepGraph) {
    let uses = use_counts(step);
    let graph = &step.graph;
    let product_with_bias = |product: Output, bias: Output, add_device: &str| {
        let node = graph.node(product.node);
        let columns = node.outputs.first()?.shape.dim(1);
        let bias_type = graph.node(bias.node).outputs.get(bias.index as usize)?;
        let fits = node.op == "MatMul"
            && uses[product.node.index()] == 1
            && node.device == add_device
            && matches!(node.outputs[0].dtype, DType::F32 | DType::F64)
            && bias_type.dtype == node.outputs[0].dtype
            && bias_type.shape.rank() == Some(1)
            && matches!((columns, bias_type.shape.dim(0)), (Dim::Known(c), Dim::Known(b)) if c == b);
        fits.then_some((product.node, bias))
    };
    let fusable: Vec<(usize, NodeId, Output)> = graph
        .nodes()
        .iter()
        .enumerate()
        .filter_map(|(i, add)| {
            let &[x, y] = add.inputs.as_slice() else {
                return None;
            };
            let found = match add.op.as_str() {
                "Add" | "AddV2" => product_with_bias(x, y, &add.device)
                    .or_else(|| product_with_bias(y, x, &add.device)),
                "BiasAdd"
                    if add
                        .attrs
                        .string("data_format")
                        .is_ok_and(|f| f.as_str() == "NHWC") =>
                {
                    product_with_bias(x, y, &add.device)
                }
                _ => None,
            };
            found.map(|(product, bias)| (i, product, bias))
        })
        .collect();
    let nodes = step.graph.nodes_for_rewrite();
    for (add, product, bias) in fusable {
        let product = nodes[product.index()].clone();
        let node = &mut nodes[add];
        node.op = "MatMulBiasAdd".to_string();
        node.inputs = vec![product.inputs[0], product.inputs[1], bias];
        node.attrs = Default::default();
        absorb_product(node, product);
    }
}

/// Gives the fused `node` what it takes over from the `MatMul` it absorbs: the transpose
/// flags and the control dependencies.
fn absorb_product(node: &mut Node, product: Node) {
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

    /// `x @ w + b` with `x` [4, 3], `w` [3, 2] and a bias of `bias_len`; returns the graph,
    /// the sum, the product and the feed.
    fn dense_graph(bias_len: usize, op: &str) -> (Graph, Output, Output, Output) {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[4, 3]))
            .unwrap();
        let w = g.constant_from(&[3, 2], vec![1f32; 6]).unwrap();
        let b = g.constant_from(&[bias_len], vec![1f32; bias_len]).unwrap();
        let p = g.matmul(x, w).unwrap();
        let y = match op {
            "BiasAdd" => g.bias_add(p, b).unwrap(),
            _ => g.add(b, p).unwrap(),
        };
        (g, y, p, x)
    }

    fn step_ops(g: &Graph, feed: Output, fetches: &[Output]) -> Vec<String> {
        let mut step = prune(g, &[feed], fetches, &[]).unwrap();
        fuse_ops(&mut step);
        remove_dead_nodes(&mut step);
        step.graph.nodes().iter().map(|n| n.op.clone()).collect()
    }

    #[test]
    fn a_product_plus_a_column_bias_is_fused() {
        for op in ["Add", "BiasAdd"] {
            let (g, y, _, x) = dense_graph(2, op);
            let ops = step_ops(&g, x, &[y]);
            assert!(ops.contains(&"MatMulBiasAdd".to_string()), "{op}: {ops:?}");
            assert!(!ops.contains(&"MatMul".to_string()), "{op}: {ops:?}");
        }
    }

    #[test]
    fn a_fetched_product_or_a_broadcasting_bias_is_left_alone() {
        let (g, y, p, x) = dense_graph(2, "Add");
        let ops = step_ops(&g, x, &[y, p]);
        assert!(!ops.contains(&"MatMulBiasAdd".to_string()), "{ops:?}");
        // A one-element bias broadcasts over every column: not a column bias.
        let (g, y, _, x) = dense_graph(1, "Add");
        let ops = step_ops(&g, x, &[y]);
        assert!(!ops.contains(&"MatMulBiasAdd".to_string()), "{ops:?}");
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
