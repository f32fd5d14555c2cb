//! The variables of a non-frozen graph: each `VarHandleOp` becomes a tfr variable of its shared
//! name, listed with the graph ([`Graph::add_variable`]) so that `tfr_nn::Saver` saves and
//! restores it from tfr checkpoints by that name and `global_variables_initializer` runs its
//! initializer.

use crate::error::{Result, TfError};
use std::collections::HashMap;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, NodeId, Output};

/// Lists every `VarHandleOp` of `graph` as a variable (the first handle of each shared name;
/// others share it). Its value is a `ReadVariableOp` of the handle (TensorFlow's
/// `<var>/Read/ReadVariableOp` when there is one; one is added when the graph has none), its
/// initializer TensorFlow's `<var>/Assign` (else the one `AssignVariableOp` of the handle, if
/// there is exactly one). A variable whose graph holds no initial value (a graph meant to be
/// restored) has its handle as initializer: running it assigns nothing.
pub fn list_variables(graph: &mut Graph) -> Result<()> {
    let mut readers: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    let mut handles = Vec::new();
    for id in graph.node_ids() {
        let n = graph.node(id);
        if n.op == "VarHandleOp" {
            handles.push(id);
        }
        if matches!(n.op.as_str(), "ReadVariableOp" | "AssignVariableOp") {
            if let Some(h) = n.inputs.first() {
                readers.entry(h.node).or_default().push(id);
            }
        }
    }
    for h in handles {
        let node = graph.node(h);
        let attr_err = |message: String| TfError::Node {
            node: node.name.clone(),
            op: node.op.clone(),
            message,
        };
        let name = node.attrs.string("shared_name").map_err(attr_err)?.clone();
        if graph.variables().iter().any(|v| v.name == name) {
            continue;
        }
        let tf_name = node.name.clone();
        let dtype = *node.attrs.dtype("dtype").map_err(attr_err)?;
        let shape = node.attrs.shape("shape").map_err(attr_err)?.clone();
        let handle = Output::new(h, 0);
        let users = readers.get(&h).map_or(&[][..], |v| &v[..]);
        let of_op = |op: &str| -> Vec<NodeId> {
            users
                .iter()
                .copied()
                .filter(|&u| graph.node(u).op == op)
                .collect()
        };
        let (reads, assigns) = (of_op("ReadVariableOp"), of_op("AssignVariableOp"));
        let named = |list: &[NodeId], suffix: &str| {
            let want = format!("{tf_name}/{suffix}");
            list.iter().copied().find(|&u| graph.node(u).name == want)
        };
        let initializer = named(&assigns, "Assign")
            .or_else(|| (assigns.len() == 1).then(|| assigns[0]))
            .unwrap_or(h);
        let value = match named(&reads, "Read/ReadVariableOp").or_else(|| reads.first().copied()) {
            Some(r) => r,
            None => graph
                .build("ReadVariableOp")
                .name(&format!("{tf_name}/Read/ReadVariableOp"))
                .input(handle)
                .attr("dtype", dtype)
                .finish()?,
        };
        graph.add_variable(Variable {
            name,
            dtype,
            shape,
            handle,
            value: Output::new(value, 0),
            initializer,
        })?;
    }
    Ok(())
}
