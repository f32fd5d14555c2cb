//! Symbolic differentiation as a graph-to-graph rewrite (the paper's §4.1): [`gradients`] adds to
//! the graph the backward nodes that compute `d(sum of ys)/d(xs)`, using each op's rule from the
//! registry. It needs no runtime, so the `graph!` macro can call it while it expands.
//!
//! The walk follows TensorFlow's `tf.gradients`:
//! - only the nodes between the `xs` and the `ys` are differentiated, along floating-point edges;
//! - contributions reaching one tensor over several paths are summed with `AddN`;
//! - `StopGradient` and ops declared not differentiable stop the flow;
//! - an `x` that the `ys` do not depend on gets `None` (or zeros, with
//!   [`UnconnectedGradients::Zero`]);
//! - the `ys` need not be scalars: `grad_ys` weighs each (ones by default).
//!
//! Backward nodes go under a `gradients/` name scope (`gradients_1/` for a second call, ...),
//! each rule's nodes under `<forward node>_grad/`, on the forward node's device.

use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::grad::GradCtx;
use crate::graph::{Graph, NodeId, Output};
use crate::indexed_slices::{sum_gradients, Gradient, IndexedSlices};
use crate::op_def::{registry, Gradient as GradientRule};
use crate::ops::control_flow_grad::LoopGrads;
use crate::ops::control_flow_ops::{is_control_flow_op, is_tensor_array_op};
use crate::ops::embedding_grad::sparse_gradient_rule;
use crate::validate::{topological_order, topological_order_with};
use crate::value::{Buffer, TensorValue};
use half::{bf16, f16};
use std::collections::HashMap;

/// What [`gradients_with`] returns for an `x` that the `ys` do not depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnconnectedGradients {
    /// `None`.
    #[default]
    None,
    /// `ZerosLike(x)`.
    Zero,
}

/// Adds the nodes computing the gradient of `sum(ys)` (each weighed by its `grad_ys` entry,
/// ones by default) with respect to each of `xs`. `None` for an `x` the `ys` do not depend on.
pub fn gradients(
    graph: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
) -> Result<Vec<Option<Output>>> {
    gradients_with(graph, ys, xs, grad_ys, UnconnectedGradients::None)
}

/// Like [`gradients`], with zeros for an `x` the `ys` do not depend on.
pub fn gradients_or_zeros(
    graph: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
) -> Result<Vec<Output>> {
    let grads = gradients_with(graph, ys, xs, grad_ys, UnconnectedGradients::Zero)?;
    grads
        .into_iter()
        .zip(xs)
        .map(|(g, &x)| {
            g.ok_or_else(|| {
                GraphError::Gradient(format!("no gradient for `{}`", graph.output_name(x)))
            })
        })
        .collect()
}

/// [`gradients`] with a choice of what unconnected `xs` get.
pub fn gradients_with(
    graph: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
    unconnected: UnconnectedGradients,
) -> Result<Vec<Option<Output>>> {
    check_arguments(graph, ys, xs, grad_ys)?;
    graph.with_scope("gradients", |g| {
        let grads = backprop(g, ys, xs, grad_ys, unconnected)?;
        grads
            .into_iter()
            .zip(xs)
            .map(|(gr, &x)| {
                let shape = g.shape(x).clone();
                gr.map(|gr| gr.to_dense(g, Some(&shape))).transpose()
            })
            .collect()
    })
}

/// Like [`gradients_with`], but the gradient of a tensor read only by gathers (`Gather` along
/// axis 0, or `ResourceGather` of the variable whose `ReadVariableOp` value is the `x`) comes
/// back as [`Gradient::Slices`]: the rows read and their gradients, never densified. Optimizers
/// apply such gradients with the `ResourceSparseApply*` ops.
pub fn sparse_gradients(
    graph: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
    unconnected: UnconnectedGradients,
) -> Result<Vec<Option<Gradient>>> {
    check_arguments(graph, ys, xs, grad_ys)?;
    graph.with_scope("gradients", |g| backprop(g, ys, xs, grad_ys, unconnected))
}

fn check_arguments(
    graph: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
) -> Result<()> {
    for &o in ys.iter().chain(xs) {
        graph.check_output(o)?;
    }
    for &x in xs {
        let t = graph.dtype(x);
        if !t.is_differentiable() {
            return Err(GraphError::Gradient(format!(
                "cannot differentiate with respect to `{}` of dtype {t}: only floating-point \
                 tensors carry gradients",
                graph.output_name(x)
            )));
        }
    }
    for &y in ys {
        let t = graph.dtype(y);
        if !t.is_differentiable() {
            return Err(GraphError::Gradient(format!(
                "cannot differentiate `{}` of dtype {t}: only floating-point tensors carry \
                 gradients",
                graph.output_name(y)
            )));
        }
    }
    if let Some(gy) = grad_ys {
        if gy.len() != ys.len() {
            return Err(GraphError::Gradient(format!(
                "{} grad_ys given for {} ys",
                gy.len(),
                ys.len()
            )));
        }
        for (&g, &y) in gy.iter().zip(ys) {
            graph.check_output(g)?;
            let (gt, yt) = (graph.output_type(g), graph.output_type(y));
            if gt.dtype != yt.dtype || gt.shape.merge(&yt.shape).is_err() {
                return Err(GraphError::Gradient(format!(
                    "grad_ys entry `{}` is {gt} but `{}` is {yt}",
                    graph.output_name(g),
                    graph.output_name(y)
                )));
            }
        }
    }
    Ok(())
}

/// Whether a gradient can flow along an edge carrying `o`.
fn carries_gradient(g: &Graph, o: Output) -> bool {
    g.dtype(o).is_differentiable()
}

/// A topological order in which every Exit of a loop also follows every Enter of that loop.
/// The producer of a loop invariant need not be an ancestor of the loop's Exits (the condition
/// may not read it), and the backward walk differentiates a loop whole when it reaches the
/// loop's first Exit in this order: the invariant's producer must come after that in the walk
/// (before it in this order), or it would see no gradient from the loop.
fn gradient_order(g: &mut Graph) -> Result<Vec<NodeId>> {
    let frames = g.frame_map().clone();
    if frames.num_frames() <= 1 {
        return topological_order(g);
    }
    let mut enters: HashMap<u32, Vec<NodeId>> = HashMap::new();
    let mut exits = Vec::new();
    for id in g.node_ids() {
        let node = g.node(id);
        match node.op.as_str() {
            "Enter" => enters.entry(frames.frame(id)).or_default().push(id),
            "Exit" => {
                if let Some(src) = node.inputs.first() {
                    exits.push((frames.frame(src.node), id));
                }
            }
            _ => {}
        }
    }
    let extra: Vec<(NodeId, NodeId)> = exits
        .iter()
        .flat_map(|&(f, exit)| {
            enters
                .get(&f)
                .into_iter()
                .flatten()
                .map(move |&enter| (enter, exit))
        })
        .collect();
    topological_order_with(g, &extra)
}

fn backprop(
    g: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
    unconnected: UnconnectedGradients,
) -> Result<Vec<Option<Gradient>>> {
    let n = g.len();
    let order = gradient_order(g)?;
    let mut x_index: HashMap<Output, Vec<usize>> = HashMap::new();
    for (k, &x) in xs.iter().enumerate() {
        x_index.entry(x).or_default().push(k);
    }
    // A variable's handle stands for its value `x = ReadVariableOp(handle)`: a gradient reaching
    // the handle (from `ResourceGather`) is a gradient of `x`.
    let handle_of_x: HashMap<Output, Output> = xs
        .iter()
        .filter(|x| g.node(x.node).op == "ReadVariableOp")
        .filter_map(|&x| g.node(x.node).inputs.first().map(|&h| (h, x)))
        .collect();
    // Forward from the xs: `reached[n]` when some input of n depends on an x.
    let mut reached = vec![false; n];
    let depends = |g: &Graph, reached: &[bool], o: Output| {
        handle_of_x.contains_key(&o)
            || (carries_gradient(g, o) && (x_index.contains_key(&o) || reached[o.node.index()]))
    };
    // Control flow: loops are differentiated whole (see `ops/control_flow_grad.rs`); a value
    // reaches a loop's Merge again along its back edge, so the forward pass repeats until stable.
    let mut cf = LoopGrads::new(g, &order, ys, xs)?;
    loop {
        let mut changed = false;
        for &id in &order {
            let node = g.node(id);
            let r = (0..node.inputs.len())
                .any(|k| cf.follows(g, id, k) && depends(g, &reached, node.inputs[k]));
            changed |= r != reached[id.index()];
            reached[id.index()] = r;
        }
        if !changed || !cf.has_loops() {
            break;
        }
    }
    // Backward from the ys: nodes some y depends on along gradient-carrying edges.
    let mut to_y = vec![false; n];
    let mut stack: Vec<NodeId> = ys.iter().map(|o| o.node).collect();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut to_y[id.index()], true) {
            continue;
        }
        for &o in &g.node(id).inputs {
            if carries_gradient(g, o) {
                stack.push(o.node);
            }
        }
    }

    let mut pending: HashMap<Output, Vec<Gradient>> = HashMap::new();
    for (k, &y) in ys.iter().enumerate() {
        if !depends(g, &reached, y) {
            continue;
        }
        let gy = match grad_ys {
            Some(gy) => gy[k],
            None => ones_like(g, y)?,
        };
        pending.entry(y).or_default().push(Gradient::Dense(gy));
    }

    let mut results: Vec<Option<Gradient>> = vec![None; xs.len()];
    for &id in order.iter().rev() {
        let i = id.index();
        if cf.skips(id) {
            continue;
        }
        let num_outputs = g.node(id).outputs.len();
        let holds_x = (0..num_outputs).any(|k| x_index.contains_key(&Output::new(id, k)));
        if !cf.is_loop_exit(g, id) && (!to_y[i] || !(reached[i] || holds_x)) {
            continue;
        }
        // Rules and control flow take dense gradients: slices become dense here, once, and
        // only for a node whose gradient is computed.
        let op_here = g.node(id).op.as_str();
        let has_rule = is_control_flow_op(op_here)
            || is_tensor_array_op(op_here)
            || sparse_gradient_rule(op_here).is_some()
            || registry()
                .get(op_here)
                .is_some_and(|d| !matches!(d.gradient, GradientRule::NotDifferentiable));
        let needs_dense = (reached[i] && has_rule) || cf.is_loop_exit(g, id);
        let mut out_grads = Vec::with_capacity(num_outputs);
        for k in 0..num_outputs {
            let o = Output::new(id, k);
            let summed = match pending.remove(&o) {
                Some(parts) => Some(sum_gradients(g, o, parts)?),
                None => None,
            };
            for &xk in x_index.get(&o).map(Vec::as_slice).unwrap_or(&[]) {
                results[xk] = summed;
            }
            let dense = match summed {
                Some(Gradient::Slices(_)) if !needs_dense => None,
                Some(gr) => {
                    let shape = g.shape(o).clone();
                    Some(gr.to_dense(g, Some(&shape))?)
                }
                None => None,
            };
            out_grads.push(dense);
        }
        if let Some(flows) = cf.gradient(g, id, &out_grads, &reached)? {
            for (input, grad) in flows {
                pending
                    .entry(input)
                    .or_default()
                    .push(Gradient::Dense(grad));
            }
            continue;
        }
        if !reached[i] || out_grads.iter().all(Option::is_none) {
            continue;
        }
        let node = g.node(id);
        let (name, op, device) = (node.name.clone(), node.op.clone(), node.device.clone());
        let inputs = node.inputs.clone();
        let def = registry()
            .get(&op)
            .ok_or_else(|| GraphError::Gradient(format!("node `{name}` has unknown op `{op}`")))?;
        let wanted: Vec<bool> = inputs.iter().map(|&o| depends(g, &reached, o)).collect();
        let scope = format!("{name}_grad");
        // Gathers have a sparse rule for their params (input 0): slices, not a dense scatter.
        if let Some(sparse_rule) = sparse_gradient_rule(&op).filter(|_| wanted[0]) {
            let slices = g
                .with_scope(&scope, |g| {
                    on_device(g, &device, |g| {
                        let mut ctx = GradCtx {
                            graph: g,
                            node: id,
                            out_grads: &out_grads,
                            wanted: &wanted,
                        };
                        sparse_rule(&mut ctx)
                    })
                })
                .map_err(|e| match e {
                    GraphError::Gradient(_) => e,
                    other => GraphError::Gradient(format!("node `{name}` ({op}): {other}")),
                })?;
            if let Some(slices) = slices {
                let target = handle_of_x.get(&inputs[0]).copied().unwrap_or(inputs[0]);
                check_slices(g, &name, &op, &slices, target)?;
                pending
                    .entry(target)
                    .or_default()
                    .push(Gradient::Slices(slices));
                continue;
            }
        }
        let rule = match def.gradient {
            GradientRule::Rule(rule) => rule,
            GradientRule::NotDifferentiable => continue,
            GradientRule::Unset => {
                return Err(GraphError::Gradient(format!(
                    "node `{name}` ({op}) lies between the ys and the xs, but op `{op}` has no \
                     gradient rule"
                )))
            }
        };
        let in_grads = g
            .with_scope(&scope, |g| {
                on_device(g, &device, |g| {
                    let mut ctx = GradCtx {
                        graph: g,
                        node: id,
                        out_grads: &out_grads,
                        wanted: &wanted,
                    };
                    rule(&mut ctx)
                })
            })
            .map_err(|e| match e {
                GraphError::Gradient(_) => e,
                other => GraphError::Gradient(format!("node `{name}` ({op}): {other}")),
            })?;
        if in_grads.len() != inputs.len() {
            return Err(GraphError::Gradient(format!(
                "node `{name}` ({op}): the rule returned {} gradients for {} inputs",
                in_grads.len(),
                inputs.len()
            )));
        }
        for (k, (&input, grad)) in inputs.iter().zip(in_grads).enumerate() {
            let Some(grad) = grad else { continue };
            if !wanted[k] {
                continue;
            }
            let (gt, it) = (g.output_type(grad), g.output_type(input));
            if gt.dtype != it.dtype || gt.shape.merge(&it.shape).is_err() {
                return Err(GraphError::Gradient(format!(
                    "node `{name}` ({op}): the gradient for input {k} is {gt} but the input is {it}"
                )));
            }
            pending
                .entry(input)
                .or_default()
                .push(Gradient::Dense(grad));
        }
    }
    // Slices for a variable's value that arrived (through its handle) after the walk passed
    // the value's `ReadVariableOp`: join them to what that node collected.
    for (k, &x) in xs.iter().enumerate() {
        if let Some(parts) = pending
            .get(&x)
            .filter(|_| handle_of_x.values().any(|&v| v == x))
        {
            let mut parts = parts.clone();
            parts.extend(results[k]);
            results[k] = Some(sum_gradients(g, x, parts)?);
        }
    }
    if unconnected == UnconnectedGradients::Zero {
        for (r, &x) in results.iter_mut().zip(xs) {
            if r.is_none() {
                *r = Some(Gradient::Dense(g.build("ZerosLike").input(x).finish1()?));
            }
        }
    }
    Ok(results)
}

fn on_device<R>(g: &mut Graph, device: &str, f: impl FnOnce(&mut Graph) -> R) -> R {
    if device.is_empty() {
        f(g)
    } else {
        g.with_device(device, f)
    }
}

/// Checks a sparse rule's slices against the tensor they are the gradient of.
fn check_slices(
    g: &Graph,
    name: &str,
    op: &str,
    slices: &IndexedSlices,
    target: Output,
) -> Result<()> {
    let (vt, tt) = (g.output_type(slices.values), g.output_type(target));
    let rows_fit = match (vt.shape.dims(), tt.shape.dims()) {
        (Some(v), Some(t)) => {
            v.len() == t.len() && v.iter().zip(t).skip(1).all(|(a, b)| a.merge(b).is_some())
        }
        _ => true,
    };
    if vt.dtype != tt.dtype || !rows_fit {
        return Err(GraphError::Gradient(format!(
            "node `{name}` ({op}): the sparse gradient's values are {vt} but the gathered \
             tensor is {tt}"
        )));
    }
    Ok(())
}

/// Largest default `grad_ys` (in elements) emitted as a constant; larger ones use `OnesLike`.
const MAX_CONST_ONES: usize = 64;

/// Ones of the type of `y`: a constant when the shape is known and small, else `OnesLike`.
fn ones_like(g: &mut Graph, y: Output) -> Result<Output> {
    let t = g.output_type(y).clone();
    if let Some(dims) = t.shape.to_known() {
        let n: usize = dims.iter().product();
        if n <= MAX_CONST_ONES {
            let data = match t.dtype {
                DType::F32 => Some(Buffer::F32(vec![1.0; n])),
                DType::F64 => Some(Buffer::F64(vec![1.0; n])),
                DType::F16 => Some(Buffer::F16(vec![f16::ONE; n])),
                DType::BF16 => Some(Buffer::BF16(vec![bf16::ONE; n])),
                _ => None,
            };
            if let Some(data) = data {
                return g.constant(TensorValue { shape: dims, data });
            }
        }
    }
    g.build("OnesLike").input(y).finish1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Shape;

    fn ops_under(g: &Graph, prefix: &str) -> Vec<String> {
        g.nodes()
            .iter()
            .filter(|n| n.name.starts_with(prefix))
            .map(|n| n.op.clone())
            .collect()
    }

    #[test]
    fn sums_over_paths_with_add_n_under_a_scope() {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F32, Shape::known(&[3])).unwrap();
        let sq = g.mul(x, x).unwrap();
        let y = g.add(sq, x).unwrap();
        let before = g.len();
        let dx = gradients(&mut g, &[y], &[x], None).unwrap()[0].unwrap();
        assert_eq!(g.shape(dx), &Shape::known(&[3]));
        assert_eq!(g.node(dx.node).op, "AddN");
        assert_eq!(g.node(dx.node).inputs.len(), 3);
        assert!(g.nodes()[before..]
            .iter()
            .all(|n| n.name.starts_with("gradients/")));
        // Each rule's nodes sit under the forward node's path, as in TensorFlow.
        let mut h = Graph::new();
        let a = h.placeholder("a", DType::F32, Shape::known(&[2])).unwrap();
        let b = h.with_scope("layer", |h| h.square(a)).unwrap();
        gradients(&mut h, &[b], &[a], None).unwrap();
        assert!(!ops_under(&h, "gradients/layer/Square_grad/").is_empty());
        // A second call gets its own scope.
        gradients(&mut g, &[y], &[x], None).unwrap();
        assert!(!ops_under(&g, "gradients_1/").is_empty());
    }

    #[test]
    fn unconnected_and_stopped() {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
        let z = g.placeholder("z", DType::F32, Shape::known(&[2])).unwrap();
        let s = g.stop_gradient(x).unwrap();
        let y = g.mul(s, z).unwrap();
        let r = gradients(&mut g, &[y], &[x, z], None).unwrap();
        assert!(r[0].is_none());
        assert!(r[1].is_some());
        let r = gradients_or_zeros(&mut g, &[y], &[x], None).unwrap();
        assert_eq!(g.node(r[0].node).op, "ZerosLike");
        // An x nothing depends on.
        let w = g.placeholder("w", DType::F32, Shape::known(&[2])).unwrap();
        assert_eq!(gradients(&mut g, &[y], &[w], None).unwrap(), vec![None]);
    }

    #[test]
    fn errors_name_the_node() {
        let mut g = Graph::new();
        let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
        let f = g.cast(i, DType::F32).unwrap();
        let e = gradients(&mut g, &[f], &[i], None).unwrap_err();
        assert!(
            matches!(&e, GraphError::Gradient(m) if m.contains("`i:0`") && m.contains("int32")),
            "{e}"
        );
        // An op without a gradient rule in the path.
        let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
        let y = g
            .build("RandomShuffle")
            .name("shuffle")
            .input(x)
            .finish1()
            .unwrap();
        let r = gradients(&mut g, &[y], &[x], None).unwrap();
        assert_eq!(
            r,
            vec![None],
            "RandomShuffle is declared not differentiable"
        );
        // Mismatched grad_ys.
        let gy = g.placeholder("gy", DType::F32, Shape::known(&[3])).unwrap();
        let e = gradients(&mut g, &[f], &[x], Some(&[gy])).unwrap_err();
        assert!(e.to_string().contains("grad_ys"), "{e}");
    }

    #[test]
    fn x_equal_to_y_gets_grad_ys() {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
        let gy = g.placeholder("gy", DType::F32, Shape::known(&[2])).unwrap();
        let r = gradients(&mut g, &[x], &[x], Some(&[gy])).unwrap();
        assert_eq!(r, vec![Some(gy)]);
    }
}

#[cfg(test)]
mod registry_tests {
    use crate::op_def::{registry, Gradient};

    /// Every op ends with a gradient rule or an explicit "not differentiable".
    #[test]
    fn every_registered_op_declares_its_gradient() {
        let mut unset: Vec<&str> = registry()
            .iter()
            .filter(|d| matches!(d.gradient, Gradient::Unset))
            .map(|d| d.name)
            .collect();
        unset.sort_unstable();
        assert!(
            unset.is_empty(),
            "ops without a gradient declaration: {unset:?}"
        );
    }

    /// The gradient tables name only registered ops (a typo would silently leave a hole).
    #[test]
    fn gradient_tables_name_registered_ops() {
        let tables = [
            crate::ops::math_grad::gradients(),
            crate::ops::array_grad::gradients(),
            crate::ops::nn_grad::gradients(),
            crate::ops::partition_grad::gradients(),
            crate::ops::segment_grad::gradients(),
            crate::ops::special_math_grad::gradients(),
            crate::ops::activation_ops::gradients(),
            crate::ops::selection_ops::gradients(),
            crate::ops::debug_ops::gradients(),
            crate::ops::tf_names::gradients(),
        ];
        let mut unknown = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (op, _) in tables.iter().flatten() {
            if registry().get(op).is_none() {
                unknown.push(*op);
            }
            assert!(
                seen.insert(*op),
                "op `{op}` appears twice in the gradient tables"
            );
        }
        assert!(
            unknown.is_empty(),
            "gradient tables name unknown ops: {unknown:?}"
        );
    }
}
