//! tfr graph -> TensorFlow `GraphDef`.

use crate::convert::{attr_to_proto, shape_to_proto};
use crate::error::{io_error, Result, TfError};
use crate::proto::{self, attr_value, GraphDef, NodeDef, VersionDef};
use prost::Message;
use std::path::Path;
use tfr_graph::ops::tf_names::TF_ALIASES;
use tfr_graph::{DType, Graph};

/// The GraphDef version written: TensorFlow 2.9's producer number (graphs of this version load
/// in every TF 2 release since).
pub const PRODUCER: i32 = 1087;

/// Options of [`to_graph_def_with`].
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Record each node's static output shapes in `_output_shapes` (shown by TensorBoard and
    /// Netron; TensorFlow checks them against its own inference on import).
    pub output_shapes: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            output_shapes: true,
        }
    }
}

/// TensorFlow's name for a tfr op: the newest TF op of the same semantics (`Add` -> `AddV2`).
pub fn tf_op_name(op: &str) -> &str {
    TF_ALIASES
        .iter()
        .find(|(_, tfr)| *tfr == op && !matches!(*tfr, "TruncateMod"))
        .map_or(op, |(tf, _)| tf)
}

/// The graph as a TensorFlow `GraphDef`: TF op names, TF's type attributes, constants as
/// little-endian `tensor_content`, inputs as `name:k` and control inputs as `^name`.
pub fn to_graph_def(g: &Graph) -> Result<GraphDef> {
    to_graph_def_with(g, &ExportOptions::default())
}

pub fn to_graph_def_with(g: &Graph, options: &ExportOptions) -> Result<GraphDef> {
    let mut nodes = Vec::with_capacity(g.len());
    for node in g.nodes() {
        let op = tf_op_name(&node.op).to_string();
        let node_err = |message: String| TfError::Node {
            node: node.name.clone(),
            op: node.op.clone(),
            message,
        };
        let mut input = Vec::with_capacity(node.inputs.len() + node.control_inputs.len());
        let mut in_types: Vec<DType> = Vec::with_capacity(node.inputs.len());
        for &i in &node.inputs {
            let src = g.get_node(i.node).map_err(|e| node_err(e.to_string()))?;
            let t = src.outputs.get(i.index as usize).ok_or_else(|| {
                node_err(format!("input `{}:{}` does not exist", src.name, i.index))
            })?;
            in_types.push(t.dtype);
            input.push(if i.index == 0 {
                src.name.clone()
            } else {
                format!("{}:{}", src.name, i.index)
            });
        }
        for &c in &node.control_inputs {
            let src = g.get_node(c).map_err(|e| node_err(e.to_string()))?;
            input.push(format!("^{}", src.name));
        }
        let mut attr = std::collections::HashMap::new();
        for (name, value) in &node.attrs.0 {
            let v = attr_to_proto(value).map_err(|got| TfError::Attr {
                node: node.name.clone(),
                op: node.op.clone(),
                attr: name.clone(),
                expected: "a value TensorFlow can hold".into(),
                got,
            })?;
            attr.insert(name.clone(), v);
        }
        let out_types: Vec<DType> = node.outputs.iter().map(|t| t.dtype).collect();
        for (name, value) in crate::tf_attrs::type_attrs(&op, &in_types, &out_types) {
            if !attr.contains_key(name) {
                let v = attr_to_proto(&value).map_err(node_err)?;
                attr.insert(name.to_string(), v);
            }
        }
        if options.output_shapes && !node.outputs.is_empty() {
            let shapes = node
                .outputs
                .iter()
                .map(|t| shape_to_proto(&t.shape))
                .collect();
            attr.insert(
                "_output_shapes".into(),
                proto::AttrValue {
                    value: Some(attr_value::Value::List(attr_value::ListValue {
                        shape: shapes,
                        ..Default::default()
                    })),
                },
            );
        }
        nodes.push(NodeDef {
            name: node.name.clone(),
            op,
            input,
            device: node.device.clone(),
            attr,
        });
    }
    Ok(GraphDef {
        node: nodes,
        versions: Some(VersionDef {
            producer: PRODUCER,
            min_consumer: 0,
            bad_consumers: Vec::new(),
        }),
        library: None,
    })
}

/// The graph's `GraphDef`, encoded.
pub fn graph_def_bytes(g: &Graph) -> Result<Vec<u8>> {
    Ok(to_graph_def(g)?.encode_to_vec())
}

/// Writes the graph as a binary `GraphDef` (what `tf.io.write_graph(..., as_text=False)` writes).
pub fn write_graph_def(g: &Graph, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = graph_def_bytes(g)?;
    std::fs::write(path, bytes).map_err(|e| io_error(path, e))
}
