//! Graph passes that need kernels: constant folding (never of control-flow ops: their dead
//! values and frames exist only when a step runs).

use crate::error::Result;
use crate::executor::build_kernel;
use crate::kernel::KernelContext;
use crate::resource::ResourceMgr;
use crate::tensor::Tensor;
use tfr_graph::ops::control_flow_ops::is_control_flow_op;
use tfr_graph::passes::{StepGraph, ARG_OP};
use tfr_graph::{registry, Attrs, Graph, Node, NodeId, Output, Shape, TensorType};

/// Largest result (in elements) a folded node may produce: folding must not bloat the graph.
const MAX_FOLDED_ELEMENTS: usize = 1 << 16;

/// Replaces stateless nodes whose inputs are all constants by the constants they compute.
/// A node whose kernel fails is left alone, so the error surfaces when the step runs.
pub fn fold_constants(step: &mut StepGraph) -> Result<()> {
    let old = std::mem::take(&mut step.graph);
    let mut out = Graph::new();
    out.seed = old.seed;
    let mut remap: Vec<Vec<Output>> = Vec::with_capacity(old.len());
    let mut origin = Vec::new();
    let resources = ResourceMgr::default();
    // Inputs from nodes not rebuilt yet: loops' back edges, fixed once every node is.
    let mut patches: Vec<(NodeId, usize, Output)> = Vec::new();
    for (i, node) in old.nodes().iter().enumerate() {
        let mut later = Vec::new();
        let inputs: Vec<Output> = node
            .inputs
            .iter()
            .enumerate()
            .map(|(k, o)| match remap.get(o.node.index()) {
                Some(outs) => outs[o.index as usize],
                None => {
                    later.push((k, *o));
                    *o
                }
            })
            .collect();
        let control_inputs: Vec<NodeId> = node
            .control_inputs
            .iter()
            .map(|c| {
                remap
                    .get(c.index())
                    .and_then(|r| r.first())
                    .map_or(*c, |o| o.node)
            })
            .collect();
        let foldable = !inputs.is_empty()
            && later.is_empty()
            && control_inputs.is_empty()
            && node.op != ARG_OP
            && !is_control_flow_op(&node.op)
            && !node.outputs.is_empty()
            && registry().get(&node.op).is_some_and(|d| !d.stateful)
            && inputs.iter().all(|&o| out.const_value(o).is_some());
        let rewritten = Node {
            inputs: inputs.clone(),
            control_inputs,
            ..node.clone()
        };
        let folded = if foldable {
            evaluate(&rewritten, &out, &resources)
        } else {
            None
        };
        match folded {
            Some(values) => {
                let mut outs = Vec::new();
                for (k, t) in values.into_iter().enumerate() {
                    let mut attrs = Attrs::default();
                    attrs.set("value", t.to_value());
                    let name = if k == 0 {
                        node.name.clone()
                    } else {
                        format!("{}/folded_{k}", node.name)
                    };
                    let id = out.push_checked(Node {
                        name,
                        op: "Const".into(),
                        inputs: vec![],
                        control_inputs: vec![],
                        attrs,
                        device: node.device.clone(),
                        outputs: vec![TensorType::new(t.dtype(), Shape::known(t.shape()))],
                    });
                    origin.push(step.origin[i]);
                    outs.push(Output::new(id, 0));
                }
                remap.push(outs);
            }
            None => {
                let n = node.outputs.len().max(1);
                let id = out.push_checked(rewritten);
                patches.extend(later.into_iter().map(|(k, o)| (id, k, o)));
                origin.push(step.origin[i]);
                remap.push((0..n).map(|k| Output::new(id, k)).collect());
            }
        }
    }
    for (id, k, o) in patches {
        if let Some(outs) = remap.get(o.node.index()) {
            out.nodes_for_rewrite()[id.index()].inputs[k] = outs[o.index as usize];
        }
    }
    // Ops with no outputs (NoOp) still map to their node for control edges and targets.
    step.feeds = step
        .feeds
        .iter()
        .map(|f| f.map(|id| remap[id.index()][0].node))
        .collect();
    step.fetches = step
        .fetches
        .iter()
        .map(|o| remap[o.node.index()][o.index as usize])
        .collect();
    step.targets = step
        .targets
        .iter()
        .map(|t| remap[t.index()][0].node)
        .collect();
    step.origin = origin;
    step.graph = out;
    Ok(())
}

fn evaluate(node: &Node, graph: &Graph, resources: &ResourceMgr) -> Option<Vec<Tensor>> {
    let kernel = build_kernel(node, graph).ok()?;
    let inputs = node
        .inputs
        .iter()
        .map(|&o| graph.const_value(o).map(Tensor::from_value))
        .collect();
    let mut ctx = KernelContext::new(inputs, resources, &[]);
    kernel.compute(&mut ctx).ok()?;
    let outs = ctx.into_outputs();
    let ok = outs.len() == node.outputs.len()
        && outs
            .iter()
            .zip(&node.outputs)
            .all(|(t, ty)| t.dtype() == ty.dtype && t.num_elements() <= MAX_FOLDED_ELEMENTS);
    ok.then(|| outs.into_vec())
}
