//! The structure of a GraphDef before any node is built: input references, name lookup and a
//! topological order (TensorFlow does not require nodes to be sorted).

use crate::error::{Result, TfError};
use crate::proto::GraphDef;
use std::collections::HashMap;

/// One input of a NodeDef.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputRef {
    /// Output `index` of node `node` (an index into `GraphDef.node`).
    Data { node: usize, index: u32 },
    /// A control dependency on node `node`.
    Control { node: usize },
}

/// Splits `"name"`, `"name:k"` or `"^name"` into (name, index, is_control).
pub fn split_input(s: &str) -> Option<(&str, u32, bool)> {
    if let Some(name) = s.strip_prefix('^') {
        return (!name.is_empty()).then_some((name, 0, true));
    }
    match s.rsplit_once(':') {
        Some((name, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            let index = k.parse().ok()?;
            (!name.is_empty()).then_some((name, index, false))
        }
        _ => (!s.is_empty()).then_some((s, 0, false)),
    }
}

/// The resolved inputs of every node and an order in which every node follows its inputs,
/// except along the back edges of TensorFlow v1 while loops.
pub struct Structure {
    pub inputs: Vec<Vec<InputRef>>,
    pub order: Vec<usize>,
    /// `back_edges[i]` lists the positions of node `i`'s data inputs that are a loop's back edge
    /// (a `Merge` fed by a `NextIteration`): they are set once the whole graph is built.
    pub back_edges: Vec<Vec<usize>>,
}

pub fn structure(gd: &GraphDef) -> Result<Structure> {
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(gd.node.len());
    for (i, n) in gd.node.iter().enumerate() {
        if n.name.is_empty() {
            return Err(TfError::Node {
                node: format!("#{i}"),
                op: n.op.clone(),
                message: "the node has no name".into(),
            });
        }
        if by_name.insert(n.name.as_str(), i).is_some() {
            return Err(TfError::DuplicateName(n.name.clone()));
        }
    }
    let mut inputs = Vec::with_capacity(gd.node.len());
    for n in &gd.node {
        let mut refs = Vec::with_capacity(n.input.len());
        let mut seen_control = false;
        for s in &n.input {
            let unknown = || TfError::UnknownInput {
                node: n.name.clone(),
                input: s.clone(),
            };
            let (name, index, control) = split_input(s).ok_or_else(unknown)?;
            let &src = by_name.get(name).ok_or_else(unknown)?;
            if control {
                seen_control = true;
                refs.push(InputRef::Control { node: src });
            } else {
                if seen_control {
                    return Err(TfError::Node {
                        node: n.name.clone(),
                        op: n.op.clone(),
                        message: format!("data input `{s}` follows a control input"),
                    });
                }
                refs.push(InputRef::Data { node: src, index });
            }
        }
        inputs.push(refs);
    }
    let back_edges: Vec<Vec<usize>> = gd
        .node
        .iter()
        .zip(&inputs)
        .map(|(n, refs)| {
            if n.op != "Merge" {
                return Vec::new();
            }
            refs.iter()
                .enumerate()
                .filter(|(_, r)| {
                    matches!(r, InputRef::Data { node, .. } if gd.node[*node].op == "NextIteration")
                })
                .map(|(k, _)| k)
                .collect()
        })
        .collect();
    let order = topological(gd, &inputs, &back_edges)?;
    Ok(Structure {
        inputs,
        order,
        back_edges,
    })
}

/// Kahn's algorithm over every edge but the loops' back edges; what is left when no node is
/// ready lies on (or behind) a cycle.
fn topological(
    gd: &GraphDef,
    inputs: &[Vec<InputRef>],
    back_edges: &[Vec<usize>],
) -> Result<Vec<usize>> {
    let n = gd.node.len();
    let mut pending = vec![0usize; n];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, refs) in inputs.iter().enumerate() {
        for (k, r) in refs.iter().enumerate() {
            if back_edges[i].contains(&k) {
                continue;
            }
            let src = match *r {
                InputRef::Data { node, .. } | InputRef::Control { node } => node,
            };
            pending[i] += 1;
            consumers[src].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for &c in consumers[i].iter().rev() {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
    }
    if order.len() < n {
        let mut nodes: Vec<String> = (0..n)
            .filter(|&i| pending[i] > 0)
            .map(|i| gd.node[i].name.clone())
            .collect();
        nodes.truncate(8);
        return Err(TfError::Cycle { nodes });
    }
    Ok(order)
}
