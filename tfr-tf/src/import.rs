//! TensorFlow `GraphDef` -> tfr graph.
//!
//! Steps: function calls are inlined (`functions`); TensorFlow's saver subgraph is left out
//! and, with [`ImportOptions::prune_to`], everything the named outputs do not need (`select`);
//! every op tfr lacks is reported at once; the nodes are built in topological order; the
//! `VarHandleOp`s are listed as the graph's variables (`variables`).

mod control_flow;
mod functions;
mod select;
mod variables;

pub use functions::MAX_INLINED_NODES;
pub use select::TF_SAVER_OPS;

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
    /// Import TensorFlow's saver subgraph (the `save/` scope of a `tf.compat.v1.train.Saver`:
    /// nodes in the name scope of a [`TF_SAVER_OPS`] op) too. By default it is left
    /// out and listed in [`Imported::dropped`]: its ops read and write TensorFlow's checkpoint
    /// format on string tensors, which tfr does not have; a tfr `Saver` over
    /// [`Imported::variables`] takes its place. Kept, its ops are reported as unsupported.
    pub keep_tf_saver: bool,
    /// When not empty, import only the nodes these tensor or node names (`"logits:0"`,
    /// `"train"`, `"^init"`) need, transitively through data and control inputs: ops tfr lacks
    /// elsewhere in the graph then do not block the import (TensorFlow's `extract_sub_graph`;
    /// `Session::run` prunes each step the same way). Names are those after function inlining.
    pub prune_to: Vec<String>,
}

/// An imported graph and the map from TensorFlow node names to its nodes.
#[derive(Clone, Debug)]
pub struct Imported {
    pub graph: Graph,
    names: HashMap<String, NodeId>,
    /// Inlined function calls: the call node's name -> its outputs.
    calls: HashMap<String, Vec<Output>>,
    dropped: Vec<String>,
}

impl Imported {
    /// The graph's variables: one per shared name of its `VarHandleOp`s (see
    /// [`Graph::add_variable`]), for `tfr_nn::Saver` to restore from a tfr checkpoint that
    /// holds them under those names. A variable's `initializer` is TensorFlow's
    /// `<var>/Assign`; when the graph assigns no initial value it is the handle itself, which
    /// assigns nothing.
    pub fn variables(&self) -> &[tfr_graph::ops::state_ops::Variable] {
        self.graph.variables()
    }

    /// The nodes of the GraphDef that were not imported (TensorFlow's saver subgraph, or what
    /// [`ImportOptions::prune_to`] does not need), in GraphDef order.
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }

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
        if let Some(outs) = self.calls.get(name) {
            return outs.get(index as usize).copied().ok_or_else(|| {
                bad(format!(
                    "the inlined function call `{name}` has {} output(s)",
                    outs.len()
                ))
            });
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
        self.run_targets(session, feeds, fetches, &[])
    }

    /// [`Imported::run`] that also runs `targets`, nodes by TF name (`"init"`, `"train"`, or
    /// `"^train"`), for their effects.
    pub fn run_targets(
        &self,
        session: &Session,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let feeds = feeds
            .iter()
            .map(|(n, t)| Ok((self.output(n)?, t.clone())))
            .collect::<Result<Vec<_>>>()?;
        let fetches = fetches
            .iter()
            .map(|n| self.output(n))
            .collect::<Result<Vec<_>>>()?;
        let targets = targets
            .iter()
            .map(|n| self.node(n.strip_prefix('^').unwrap_or(n)))
            .collect::<Result<Vec<_>>>()?;
        Ok(session.run(&feeds, &fetches, &targets)?)
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

/// Builds a tfr graph from `gd`: function calls are inlined, then every node becomes the tfr op
/// of its name (TensorFlow aliases resolve to the tfr op), attributes become typed attributes,
/// `_`-prefixed ones (`_output_shapes`, `_class`) are dropped. Ops tfr lacks are reported
/// together. `VarHandleOp`s become the graph's variables ([`Imported::variables`]). Registers
/// the summary ops' kernels, so an imported graph with summaries runs.
pub fn import_graph_def_with(gd: &GraphDef, options: &ImportOptions) -> Result<Imported> {
    crate::register_summary_kernels();
    let inlined = functions::inline_functions(gd)?;
    let gd = inlined.as_ref().map_or(gd, |i| &i.graph);
    let mut dropped = Vec::new();
    let saver = if options.keep_tf_saver {
        None
    } else {
        let drop = select::saver_nodes(gd);
        (!drop.is_empty())
            .then(|| {
                dropped.extend(drop.iter().map(|&i| gd.node[i].name.clone()));
                select::without(gd, &drop, "TensorFlow's saver subgraph")
            })
            .transpose()?
    };
    let gd = saver.as_ref().unwrap_or(gd);
    let pruned = if options.prune_to.is_empty() {
        None
    } else {
        let keep = select::needed_for(gd, &options.prune_to)?;
        let drop: Vec<usize> = (0..gd.node.len())
            .filter(|i| keep.binary_search(i).is_err())
            .collect();
        dropped.extend(drop.iter().map(|&i| gd.node[i].name.clone()));
        Some(select::without(
            gd,
            &drop,
            "the graph `prune_to` does not need",
        )?)
    };
    let gd = pruned.as_ref().unwrap_or(gd);
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
    variables::list_variables(&mut graph)?;
    let mut imported = Imported {
        graph,
        names,
        calls: HashMap::new(),
        dropped,
    };
    if let Some(inlined) = inlined {
        for (call, outs) in inlined.calls {
            // A pruned call keeps no outputs to resolve.
            if !imported.names.contains_key(&call) {
                continue;
            }
            let outs = outs
                .iter()
                .map(|t| imported.output(t))
                .collect::<Result<Vec<_>>>()?;
            imported.calls.insert(call, outs);
        }
    }
    Ok(imported)
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
    let broadcast = inputs_broadcast(graph, refs, ids);
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
            // `x == y` on tensors (`Equal`/`NotEqual` with `incompatible_shape_error=false`)
            // gives `false` where the shapes do not broadcast; where they statically do, the
            // attribute changes nothing.
            AttrValue::Bool(false) if name == "incompatible_shape_error" && broadcast => {}
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

/// Whether the first two data inputs' static shapes surely broadcast (one is a scalar, or both
/// are fully known and broadcast).
fn inputs_broadcast(graph: &Graph, refs: &[InputRef], ids: &[Option<NodeId>]) -> bool {
    let shapes: Vec<&Shape> = refs
        .iter()
        .filter_map(|r| match *r {
            // An output index out of range is reported when the node is built.
            InputRef::Data { node, index } => ids
                .get(node)
                .copied()
                .flatten()
                .and_then(|id| graph.node(id).outputs.get(index as usize))
                .map(|t| &t.shape),
            InputRef::Control { .. } => None,
        })
        .collect();
    let [a, b] = shapes[..] else {
        return false;
    };
    a.rank() == Some(0)
        || b.rank() == Some(0)
        || (a.is_fully_known() && b.is_fully_known() && a.broadcast(b).is_ok())
}

fn shared_name_missing(nd: &NodeDef) -> bool {
    match nd.attr.get("shared_name").and_then(|v| v.value.as_ref()) {
        None => true,
        Some(proto::attr_value::Value::S(s)) => s.is_empty(),
        Some(_) => false,
    }
}
