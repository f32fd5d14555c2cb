//! Elementwise regions: connected float elementwise ops of one shape (a chain `x * a + b`, an
//! activation after its bias, a gradient's `dy * (1 - y * y)`) become one `FusedElementwise`
//! node that evaluates them block by block, so intermediate values stay in cache (or, for
//! scalars, in registers) and the step schedules one node instead of many (XLA's loop fusion).
//!
//! The region's program travels in the node's `program` attribute as integer triples
//! (`[op, a, b]`, see [`ElementwiseProgram::to_attr`]); [`ElementwiseProgram::from_attr`] is the
//! one decoder, used by the shape function and by every kernel.

use super::use_counts;
use crate::dtype::DType;
use crate::graph::{Node, NodeId, Output};
use crate::passes::StepGraph;
use crate::shape::Shape;
use std::collections::HashMap;

/// The ops a region may hold: float elementwise ops whose kernels compute each element from
/// the same-index elements of their operands (a one-element operand broadcasts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementwiseOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    SquaredDifference,
    Neg,
    Abs,
    Square,
    Sqrt,
    Rsqrt,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Reciprocal,
    Relu,
}

impl ElementwiseOp {
    /// Every op, in the order of their codes in a program.
    pub const ALL: [ElementwiseOp; 18] = [
        ElementwiseOp::Add,
        ElementwiseOp::Sub,
        ElementwiseOp::Mul,
        ElementwiseOp::Div,
        ElementwiseOp::Maximum,
        ElementwiseOp::Minimum,
        ElementwiseOp::SquaredDifference,
        ElementwiseOp::Neg,
        ElementwiseOp::Abs,
        ElementwiseOp::Square,
        ElementwiseOp::Sqrt,
        ElementwiseOp::Rsqrt,
        ElementwiseOp::Exp,
        ElementwiseOp::Log,
        ElementwiseOp::Tanh,
        ElementwiseOp::Sigmoid,
        ElementwiseOp::Reciprocal,
        ElementwiseOp::Relu,
    ];

    /// The region op a graph op is, for the graph ops that may join a region.
    pub fn of_graph_op(op: &str) -> Option<ElementwiseOp> {
        use ElementwiseOp::*;
        Some(match op {
            "Add" | "AddV2" => Add,
            "Sub" => Sub,
            "Mul" => Mul,
            // For floats TensorFlow's Div is RealDiv.
            "RealDiv" | "Div" => Div,
            "Maximum" => Maximum,
            "Minimum" => Minimum,
            "SquaredDifference" => SquaredDifference,
            "Neg" => Neg,
            "Abs" => Abs,
            "Square" => Square,
            "Sqrt" => Sqrt,
            "Rsqrt" => Rsqrt,
            "Exp" => Exp,
            "Log" => Log,
            "Tanh" => Tanh,
            "Sigmoid" => Sigmoid,
            "Reciprocal" => Reciprocal,
            "Relu" => Relu,
            _ => return None,
        })
    }

    pub fn arity(self) -> usize {
        use ElementwiseOp::*;
        match self {
            Add | Sub | Mul | Div | Maximum | Minimum | SquaredDifference => 2,
            _ => 1,
        }
    }

    fn code(self) -> i64 {
        ElementwiseOp::ALL
            .iter()
            .position(|&o| o == self)
            .unwrap_or(0) as i64
    }

    fn from_code(code: i64) -> Option<ElementwiseOp> {
        usize::try_from(code)
            .ok()
            .and_then(|i| ElementwiseOp::ALL.get(i).copied())
    }
}

/// Where an instruction reads an operand: one of the node's inputs, or the value of an
/// earlier instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    Input(usize),
    Step(usize),
}

/// One instruction: `op` applied to `args` (the second is ignored by unary ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub op: ElementwiseOp,
    pub args: [Operand; 2],
}

/// A region as straight-line code over its inputs; the last instruction's value is the
/// node's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementwiseProgram {
    pub inputs: usize,
    pub steps: Vec<Instruction>,
}

impl ElementwiseProgram {
    /// `[op, a, b]` per instruction; an operand below `inputs` is that input, one above is the
    /// instruction `operand - inputs`; a unary op's `b` is -1.
    pub fn to_attr(&self) -> Vec<i64> {
        let code = |o: Operand| match o {
            Operand::Input(i) => i as i64,
            Operand::Step(s) => (self.inputs + s) as i64,
        };
        self.steps
            .iter()
            .flat_map(|s| {
                let b = if s.op.arity() == 2 {
                    code(s.args[1])
                } else {
                    -1
                };
                [s.op.code(), code(s.args[0]), b]
            })
            .collect()
    }

    /// The program of a node with `inputs` inputs, checked: known ops, operands that exist
    /// and come before their use, at least one instruction.
    pub fn from_attr(inputs: usize, codes: &[i64]) -> Result<ElementwiseProgram, String> {
        if codes.is_empty() || !codes.len().is_multiple_of(3) {
            return Err(format!(
                "attribute `program` needs one or more [op, a, b] triples, got {} integers",
                codes.len()
            ));
        }
        let mut steps = Vec::with_capacity(codes.len() / 3);
        for (k, t) in codes.chunks_exact(3).enumerate() {
            let op = ElementwiseOp::from_code(t[0])
                .ok_or_else(|| format!("program step {k}: unknown op code {}", t[0]))?;
            let operand = |c: i64| -> Result<Operand, String> {
                match usize::try_from(c) {
                    Ok(i) if i < inputs => Ok(Operand::Input(i)),
                    Ok(i) if i - inputs < k => Ok(Operand::Step(i - inputs)),
                    _ => Err(format!(
                        "program step {k}: operand {c} is neither one of the {inputs} inputs nor \
                         an earlier step"
                    )),
                }
            };
            let a = operand(t[1])?;
            let b = if op.arity() == 2 { operand(t[2])? } else { a };
            steps.push(Instruction { op, args: [a, b] });
        }
        Ok(ElementwiseProgram { inputs, steps })
    }
}

/// The output shape of a region over inputs of `shapes`: their broadcast.
pub fn region_shape(shapes: &[&Shape]) -> Result<Shape, String> {
    let mut shape = Shape::known(&[]);
    for s in shapes {
        shape = shape.broadcast(s)?;
    }
    Ok(shape)
}

/// Fuses every region of two or more elementwise ops. `member` tells which nodes may join one
/// (the caller's device rules); see the module docs.
pub(super) fn fuse_elementwise(step: &mut StepGraph, member: &dyn Fn(&Node) -> bool) {
    let uses = use_counts(step);
    let graph = &step.graph;
    let nodes = graph.nodes();
    // The op and shape of each node that may join a region.
    let candidate: Vec<Option<(ElementwiseOp, Vec<usize>)>> = nodes
        .iter()
        .map(|n| {
            let op = ElementwiseOp::of_graph_op(&n.op)?;
            let out = match n.outputs.as_slice() {
                [t] if matches!(t.dtype, DType::F32 | DType::F64) => t,
                _ => return None,
            };
            let shape = out.shape.to_known()?;
            let operands_fit = n.inputs.len() == op.arity()
                && n.inputs.iter().all(|o| {
                    let t = graph.output_type(*o);
                    t.dtype == out.dtype && operand_fits(&t.shape, &shape)
                });
            (operands_fit && member(n)).then_some((op, shape))
        })
        .collect();
    let mut owner: Vec<Option<NodeId>> = vec![None; nodes.len()];
    let mut regions: Vec<(NodeId, Vec<NodeId>)> = Vec::new();
    for root in (0..nodes.len()).rev() {
        let Some((_, shape)) = &candidate[root] else {
            continue;
        };
        if owner[root].is_some() {
            continue;
        }
        let root_id = NodeId(root as u32);
        let mut members = vec![root];
        owner[root] = Some(root_id);
        // Grow to a fixed point: a producer joins when every use of it is by a member.
        loop {
            let mut inside: HashMap<usize, usize> = HashMap::new();
            for &m in &members {
                for o in &nodes[m].inputs {
                    *inside.entry(o.node.index()).or_default() += 1;
                }
            }
            let joining: Vec<usize> = inside
                .into_iter()
                .filter(|&(p, count)| {
                    owner[p].is_none()
                        && count == uses[p]
                        && nodes[p].device == nodes[root].device
                        && candidate[p].as_ref().is_some_and(|(_, s)| s == shape)
                })
                .map(|(p, _)| p)
                .collect();
            if joining.is_empty() {
                break;
            }
            for p in joining {
                owner[p] = Some(root_id);
                members.push(p);
            }
        }
        if members.len() >= 2 {
            members.sort_unstable();
            regions.push((
                root_id,
                members.into_iter().map(|m| NodeId(m as u32)).collect(),
            ));
        } else {
            owner[root] = None;
        }
    }
    let rewrites: Vec<(NodeId, Node)> = regions
        .iter()
        .filter_map(|(root, members)| Some((*root, fused_node(nodes, members, &candidate)?)))
        .collect();
    let nodes = step.graph.nodes_for_rewrite();
    for (root, node) in rewrites {
        nodes[root.index()] = node;
    }
}

/// Whether an operand of `shape` can be read by a region of shape `out`: the same shape, or a
/// single element that broadcasts without adding dims.
fn operand_fits(shape: &Shape, out: &[usize]) -> bool {
    match shape.to_known() {
        Some(s) => s == out || (s.iter().product::<usize>() == 1 && s.len() <= out.len()),
        None => false,
    }
}

/// The `FusedElementwise` node replacing the region `members` (in topological order, the root
/// last): its inputs are the values the region reads from outside, its control inputs those
/// of every member. None when the members are not in topological order (no region is built
/// across a loop's back edge).
fn fused_node(
    nodes: &[Node],
    members: &[NodeId],
    candidate: &[Option<(ElementwiseOp, Vec<usize>)>],
) -> Option<Node> {
    let step_of: HashMap<NodeId, usize> =
        members.iter().enumerate().map(|(k, &m)| (m, k)).collect();
    let mut inputs: Vec<Output> = Vec::new();
    let mut steps = Vec::with_capacity(members.len());
    let mut control_inputs = Vec::new();
    for &m in members {
        let node = &nodes[m.index()];
        let mut args = [Operand::Input(0); 2];
        for (slot, o) in args.iter_mut().zip(&node.inputs) {
            *slot = match step_of.get(&o.node) {
                Some(&k) if k < steps.len() => Operand::Step(k),
                Some(_) => return None,
                None => Operand::Input(match inputs.iter().position(|i| i == o) {
                    Some(i) => i,
                    None => {
                        inputs.push(*o);
                        inputs.len() - 1
                    }
                }),
            };
        }
        if node.inputs.len() == 1 {
            args[1] = args[0];
        }
        let (op, _) = candidate[m.index()].as_ref()?;
        steps.push(Instruction { op: *op, args });
        for c in &node.control_inputs {
            if !control_inputs.contains(c) {
                control_inputs.push(*c);
            }
        }
    }
    let program = ElementwiseProgram {
        inputs: inputs.len(),
        steps,
    };
    let root = &nodes[members[members.len() - 1].index()];
    let mut node = root.clone();
    node.op = "FusedElementwise".to_string();
    node.inputs = inputs;
    node.control_inputs = control_inputs;
    node.attrs = Default::default();
    node.attrs.set("program", program.to_attr());
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fusion::fuse_ops;
    use crate::passes::{prune, remove_dead_nodes};
    use crate::Graph;

    fn fused_ops(g: &Graph, feed: Output, fetches: &[Output]) -> Vec<Node> {
        let mut step = prune(g, &[feed], fetches, &[]).unwrap();
        fuse_ops(&mut step);
        remove_dead_nodes(&mut step);
        step.graph.nodes().to_vec()
    }

    /// The executor keeps loops of cheap ops on its sequential machine (with loop plans and
    /// scalar registers): a region must be as cheap as the ops it replaces.
    #[test]
    fn the_fused_op_is_as_cheap_as_its_members() {
        let cheap = |op: &str| crate::registry().get(op).map(|d| d.cheap);
        assert_eq!(cheap("FusedElementwise"), Some(true));
        for op in [
            "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum",
        ]
        .into_iter()
        .chain([
            "SquaredDifference",
            "Neg",
            "Abs",
            "Square",
            "Sqrt",
            "Rsqrt",
            "Exp",
        ])
        .chain(["Log", "Tanh", "Sigmoid", "Reciprocal", "Relu"])
        {
            assert!(ElementwiseOp::of_graph_op(op).is_some(), "{op}");
            assert_eq!(cheap(op), Some(true), "{op}");
        }
    }

    #[test]
    fn a_program_survives_its_attribute() {
        let p = ElementwiseProgram {
            inputs: 2,
            steps: vec![
                Instruction {
                    op: ElementwiseOp::Mul,
                    args: [Operand::Input(0), Operand::Input(1)],
                },
                Instruction {
                    op: ElementwiseOp::Tanh,
                    args: [Operand::Step(0), Operand::Step(0)],
                },
                Instruction {
                    op: ElementwiseOp::Sub,
                    args: [Operand::Step(1), Operand::Input(0)],
                },
            ],
        };
        assert_eq!(ElementwiseProgram::from_attr(2, &p.to_attr()), Ok(p));
        // A step may not read itself or a later step.
        assert!(ElementwiseProgram::from_attr(1, &[0, 0, 1]).is_err());
    }

    #[test]
    fn a_chain_becomes_one_node_and_a_fetched_value_ends_a_region() {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F32, Shape::known(&[8])).unwrap();
        let a = g.scalar(0.5f32).unwrap();
        let mut y = x;
        let mut middle = x;
        for i in 0..6 {
            y = g.mul(y, a).unwrap();
            y = g.tanh(y).unwrap();
            if i == 2 {
                middle = y;
            }
        }
        let nodes = fused_ops(&g, x, &[y]);
        let fused: Vec<&Node> = nodes
            .iter()
            .filter(|n| n.op == "FusedElementwise")
            .collect();
        assert_eq!(fused.len(), 1, "{nodes:?}");
        let program = ElementwiseProgram::from_attr(2, fused[0].attrs.ints("program").unwrap());
        assert_eq!(program.map(|p| p.steps.len()), Ok(12));
        // Fetching a middle value splits the chain there: two regions.
        let nodes = fused_ops(&g, x, &[y, middle]);
        let regions = nodes.iter().filter(|n| n.op == "FusedElementwise").count();
        assert_eq!(regions, 2, "{nodes:?}");
    }

    #[test]
    fn ops_on_other_devices_or_of_other_shapes_stay_apart() {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[4, 3]))
            .unwrap();
        let row = g.constant_from(&[3], vec![1f32; 3]).unwrap();
        // A broadcast row is not an operand a region reads.
        let y = g.add(x, row).unwrap();
        let y = g.exp(y).unwrap();
        let z = g.with_device("/device:CPU:1", |g| g.tanh(y)).unwrap();
        let nodes = fused_ops(&g, x, &[z]);
        let ops: Vec<&str> = nodes.iter().map(|n| n.op.as_str()).collect();
        assert!(!ops.contains(&"FusedElementwise"), "{ops:?}");
    }
}
