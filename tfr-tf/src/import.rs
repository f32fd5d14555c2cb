//! TensorFlow `GraphDef` -> tfr graph.

use crate::convert::{attr_from_proto, proto_kind, shape_from_proto};
use crate::error::{io_error, Result, TfError};
use crate::parse::{structure, InputRef};
use crate::proto::{self, GraphDef, NodeDef};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;
use tfr_core::{Session, Tensor};
use tfr_graph::ops::tf_names::is_tf_inferred_attr;
use tfr_graph::{registry, AttrValue, DType, Graph, NodeId, Output, Shape};

/// Options of [`import_graph_def_with`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Drop the nodes' device requests (TensorFlow's `clear_devices`).
    pub clear_devices: bool,
}

/// An imported graph and the map from TensorFlow node names to its nodes.
#[derive(Clone, Debug)]
pub struct Imported {
    pub graph: Graph,
    names: HashMap<String, NodeId>,
}

impl Imported {
    /// The node TensorFlow called `name`.
    pub fn node(&self, name: &str) -> Result<NodeId> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| TfError::TensorName {
                name: name.into(),
                message: "no node of the imported graph has this name".into(),
            })
    }

    /// The output named by a TensorFlow tensor name: `"input:0"`, or `"input"` for output 0.
    pub fn output(&self, tensor_name: &str) -> Result<Output> {
        let bad = |message: String| TfError::TensorName {
            name: tensor_name.into(),
            message,
        };
        let (name, index, control) = crate::parse::split_input(tensor_name)
            .ok_or_else(|| bad("not of the form `node:index`".into()))?;
        if control {
            return Err(bad("a control input names no tensor".into()));
        }
        let id = self
            .names
            .get(name)
            .copied()
            .ok_or_else(|| bad(format!("no node of the imported graph is named `{name}`")))?;
        let node = self.graph.node(id);
        if index as usize >= node.outputs.len() {
            return Err(bad(format!(
                "node `{name}` ({}) has {} output(s)",
                node.op,
                node.outputs.len()
            )));
        }
        Ok(Output::new(id, index as usize))
    }

    /// Runs `session` (made from this graph) with feeds and fetches by TF tensor name.
    pub fn run(
        &self,
        session: &Session,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
    ) -> Result<Vec<Tensor>> {
        let feeds = feeds
            .iter()
            .map(|(n, t)| Ok((self.output(n)?, t.clone())))
            .collect::<Result<Vec<_>>>()?;
        let fetches = fetches
            .iter()
            .map(|n| self.output(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(session.run(&feeds, &fetches, &[])?)
    }
}

/// Decodes a binary `GraphDef`.
pub fn decode_graph_def(bytes: &[u8]) -> Result<GraphDef> {
    GraphDef::decode(bytes).map_err(|e| TfError::Decode {
        what: "GraphDef".into(),
        message: e.to_string(),
    })
}

/// Reads and imports a binary `GraphDef` file (e.g. a frozen graph `.pb`).
pub fn read_graph_def(path: impl AsRef<Path>) -> Result<Imported> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    import_graph_def(&decode_graph_def(&bytes)?)
}

pub fn import_graph_def(gd: &GraphDef) -> Result<Imported> {
    import_graph_def_with(gd, &ImportOptions::default())
}

/// Builds a tfr graph from `gd`: every node becomes the tfr op of its name (TensorFlow aliases
/// resolve to the tfr op), attributes become typed attributes, `_`-prefixed ones
/// (`_output_shapes`, `_class`) are dropped. Ops tfr lacks are reported together. Registers
/// the summary ops' kernels, so an imported graph with summaries runs.
pub fn import_graph_def_with(gd: &GraphDef, options: &ImportOptions) -> Result<Imported> {
    crate::register_summary_kernels();
    check_ops(gd)?;
    let st = structure(gd)?;
    let mut graph = Graph::new();
    let mut ids: Vec<Option<NodeId>> = vec![None; gd.node.len()];
    let mut names = HashMap::with_capacity(gd.node.len());
    for &i in &st.order {
        let nd = &gd.node[i];
        let id = import_node(
            &mut graph,
            nd,
            &st.inputs[i],
            &st.back_edges[i],
            &ids,
            options,
        )?;
        ids[i] = Some(id);
        names.insert(nd.name.clone(), id);
    }
    // A v1 while loop's Merge was built with a stand-in for its NextIteration input.
    for (i, positions) in st.back_edges.iter().enumerate() {
        for &k in positions {
            let (InputRef::Data { node, index }, Some(merge)) = (&st.inputs[i][k], ids[i]) else {
                continue;
            };
            let next = built(&gd.node[i], ids[*node])?;
            graph.set_input(merge, k, Output::new(next, *index as usize))?;
        }
    }
    Ok(Imported { graph, names })
}

/// Every op of the graph tfr lacks, in one error.
fn check_ops(gd: &GraphDef) -> Result<()> {
    let mut missing: Vec<(String, Vec<String>)> = Vec::new();
    for n in &gd.node {
        if registry().get(&n.op).is_some() {
            continue;
        }
        match missing.iter_mut().find(|(op, _)| *op == n.op) {
            Some((_, nodes)) => nodes.push(n.name.clone()),
            None => missing.push((n.op.clone(), vec![n.name.clone()])),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        missing.sort();
        Err(TfError::UnsupportedOps { ops: missing })
    }
}

fn built(nd: &NodeDef, id: Option<NodeId>) -> Result<NodeId> {
    id.ok_or_else(|| TfError::Node {
        node: nd.name.clone(),
        op: nd.op.clone(),
        message: "an input was not built before the node".into(),
    })
}

/// The shape TensorFlow recorded for a loop Merge's output (its shape invariant), or unknown.
fn recorded_merge_shape(nd: &NodeDef) -> Shape {
    let shapes = match nd.attr.get("_output_shapes").and_then(|v| v.value.as_ref()) {
        Some(proto::attr_value::Value::List(list)) => &list.shape,
        _ => return Shape::unknown(),
    };
    shapes
        .first()
        .and_then(|p| shape_from_proto(p).ok())
        .unwrap_or_else(Shape::unknown)
}

fn import_node(
    graph: &mut Graph,
    nd: &NodeDef,
    refs: &[InputRef],
    back_edges: &[usize],
    ids: &[Option<NodeId>],
    options: &ImportOptions,
) -> Result<NodeId> {
    let def = registry().get(&nd.op).ok_or_else(|| TfError::Node {
        node: nd.name.clone(),
        op: nd.op.clone(),
        message: "unknown op".into(),
    })?;
    let attr_err = |attr: &str, expected: String, got: String| TfError::Attr {
        node: nd.name.clone(),
        op: nd.op.clone(),
        attr: attr.to_string(),
        expected,
        got,
    };
    // A back edge's source is built later: its slot holds the Merge's first other input.
    let stand_in = refs.iter().enumerate().find_map(|(k, r)| match *r {
        InputRef::Data { node, index } if !back_edges.contains(&k) => Some((node, index)),
        _ => None,
    });
    let mut b = graph.build(&nd.op).name(&nd.name);
    for (k, r) in refs.iter().enumerate() {
        match *r {
            InputRef::Data { node, index } => {
                let (node, index) = if back_edges.contains(&k) {
                    stand_in.ok_or_else(|| TfError::Node {
                        node: nd.name.clone(),
                        op: nd.op.clone(),
                        message: "every input of the loop's Merge is a NextIteration".into(),
                    })?
                } else {
                    (node, index)
                };
                b = b.input(Output::new(built(nd, ids[node])?, index as usize));
            }
            InputRef::Control { node } => {
                if let Some(id) = ids[node] {
                    b = b.control_input(id);
                }
            }
        }
    }
    // Type attributes tfr neither declares nor infers (`Tdim`, `Index`, a Const's `dtype`, ...)
    // are checked against the built node's dtypes instead.
    let mut deferred: Vec<(&str, DType)> = Vec::new();
    let mut keys: Vec<&String> = nd.attr.keys().collect();
    keys.sort();
    for name in keys {
        let v = &nd.attr[name];
        if name.starts_with('_') {
            continue;
        }
        let declared = def.attrs.iter().find(|a| a.name == name);
        let value = attr_from_proto(v, declared.map(|a| a.kind))
            .map_err(|(expected, got)| attr_err(name, expected, got))?;
        if declared.is_some() || is_tf_inferred_attr(name, &value) {
            b = b.attr(name, value);
            continue;
        }
        match value {
            AttrValue::DType(t) => deferred.push((name.as_str(), t)),
            ref v if crate::tf_attrs::ignorable(name, v) => {}
            _ => {
                let known: Vec<&str> = def.attrs.iter().map(|a| a.name).collect();
                return Err(attr_err(
                    name,
                    format!(
                        "an attribute of tfr's `{}` ({})",
                        def.name,
                        known.join(", ")
                    ),
                    format!("{} tfr does not support", proto_kind(v)),
                ));
            }
        }
    }
    if def.name == "VarHandleOp" && shared_name_missing(nd) {
        // TensorFlow names an unshared variable after its node.
        b = b.attr("shared_name", nd.name.as_str());
    }
    if !options.clear_devices && !nd.device.is_empty() {
        tfr_graph::device::DeviceSpec::parse(&nd.device).map_err(|message| TfError::Node {
            node: nd.name.clone(),
            op: nd.op.clone(),
            message,
        })?;
        b = b.device(&nd.device);
    }
    let id = b.finish()?;
    if !back_edges.is_empty() {
        graph.relax_merge_shape(id, recorded_merge_shape(nd))?;
    }
    let node = graph.node(id);
    for (name, t) in deferred {
        let dtypes: Vec<DType> = node
            .outputs
            .iter()
            .map(|o| o.dtype)
            .chain(node.inputs.iter().map(|&i| graph.dtype(i)))
            .collect();
        if !dtypes.contains(&t) {
            let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
            return Err(attr_err(
                name,
                format!("one of the node's dtypes ({})", names.join(", ")),
                t.name().to_string(),
            ));
        }
    }
    Ok(id)
}

fn shared_name_missing(nd: &NodeDef) -> bool {
    match nd.attr.get("shared_name").and_then(|v| v.value.as_ref()) {
        None => true,
        Some(proto::attr_value::Value::S(s)) => s.is_empty(),
        Some(_) => false,
    }
}
