//! Which nodes of a GraphDef are imported: all of them by default, except TensorFlow's
//! checkpoint subgraph (a `tf.compat.v1.train.Saver`'s `save/` scope, whose `SaveV2`/`RestoreV2`
//! read and write TensorFlow's own checkpoint format on string tensors tfr does not have; tfr's
//! `Saver` restores the same variables from tfr checkpoints); with
//! [`ImportOptions::prune_to`](super::ImportOptions::prune_to), only what the named tensors and
//! nodes need (TensorFlow's `extract_sub_graph`), so that ops tfr lacks elsewhere in the graph
//! do not block the import.

use crate::error::{Result, TfError};
use crate::parse::split_input;
use crate::proto::{GraphDef, NodeDef};
use std::collections::{HashMap, HashSet};

/// TensorFlow's checkpoint ops: a node running one marks its name scope (`save`, `save_1`,
/// `model/save`, an inlined call's name) as a saver's.
pub const TF_SAVER_OPS: &[&str] = &[
    "SaveV2",
    "RestoreV2",
    "MergeV2Checkpoints",
    "SaveSlices",
    "RestoreSlice",
    "ShardedFilename",
    "ShardedFilespec",
];

/// The nodes of TensorFlow's saver subgraphs: every node in the name scope of a node running a
/// [`TF_SAVER_OPS`] op (`save/SaveV2` -> everything under `save/`, and a node named `save`
/// itself, as an inlined call's NoOp is); just that node when it has no scope. Sorted.
pub fn saver_nodes(gd: &GraphDef) -> Vec<usize> {
    let mut scopes: HashSet<&str> = HashSet::new();
    let mut lone: HashSet<usize> = HashSet::new();
    for (i, n) in gd.node.iter().enumerate() {
        if TF_SAVER_OPS.contains(&n.op.as_str()) {
            match n.name.rsplit_once('/') {
                Some((scope, _)) => {
                    scopes.insert(scope);
                }
                None => {
                    lone.insert(i);
                }
            }
        }
    }
    let in_scope = |name: &str| {
        // `name` itself or any of its enclosing scopes.
        let mut cur = name;
        loop {
            if scopes.contains(cur) {
                return true;
            }
            match cur.rsplit_once('/') {
                Some((parent, _)) => cur = parent,
                None => return false,
            }
        }
    };
    (0..gd.node.len())
        .filter(|&i| lone.contains(&i) || (!scopes.is_empty() && in_scope(&gd.node[i].name)))
        .collect()
}

/// `gd` without the nodes at `drop` (sorted positions); a kept node that reads a dropped one
/// is an error naming both.
pub fn without(gd: &GraphDef, drop: &[usize], why: &str) -> Result<GraphDef> {
    let dropped: HashSet<&str> = drop.iter().map(|&i| gd.node[i].name.as_str()).collect();
    let mut kept = Vec::with_capacity(gd.node.len() - drop.len());
    for (i, n) in gd.node.iter().enumerate() {
        if drop.binary_search(&i).is_ok() {
            continue;
        }
        for s in &n.input {
            if let Some((src, _, _)) = split_input(s) {
                if dropped.contains(src) {
                    return Err(TfError::Node {
                        node: n.name.clone(),
                        op: n.op.clone(),
                        message: format!("reads `{s}`, a node of {why}, which is not imported"),
                    });
                }
            }
        }
        kept.push(n.clone());
    }
    Ok(GraphDef {
        node: kept,
        versions: gd.versions.clone(),
        library: None,
    })
}

/// The positions of the nodes that `names` (tensor names `n:k`, node names, `^n`) need:
/// themselves and everything they read, data or control, transitively. Unknown names are an
/// error. Sorted.
pub fn needed_for(gd: &GraphDef, names: &[String]) -> Result<Vec<usize>> {
    let by_name: HashMap<&str, usize> = gd
        .node
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut stack = Vec::with_capacity(names.len());
    for s in names {
        let (name, _, _) = split_input(s).ok_or_else(|| TfError::TensorName {
            name: s.clone(),
            message: "not of the form `node`, `node:index` or `^node`".into(),
        })?;
        let &i = by_name.get(name).ok_or_else(|| TfError::TensorName {
            name: s.clone(),
            message: "names no node of the graph (after inlining functions)".into(),
        })?;
        stack.push(i);
    }
    let mut seen = vec![false; gd.node.len()];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let n: &NodeDef = &gd.node[i];
        for s in &n.input {
            let src = split_input(s).and_then(|(name, _, _)| by_name.get(name));
            match src {
                Some(&j) => stack.push(j),
                None => {
                    return Err(TfError::UnknownInput {
                        node: n.name.clone(),
                        input: s.clone(),
                    })
                }
            }
        }
    }
    Ok((0..gd.node.len()).filter(|&i| seen[i]).collect())
}
