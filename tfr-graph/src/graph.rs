//! The dataflow graph: nodes, edges, names, scopes, devices, and the node builder.

use crate::attr::{AttrValue, Attrs};
use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::op_def::{registry, InferCtx};
use crate::shape::Shape;
use crate::value::TensorValue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One output of a node: an edge source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Output {
    pub node: NodeId,
    pub index: u32,
}

impl Output {
    pub fn new(node: NodeId, index: usize) -> Output {
        Output {
            node,
            index: index as u32,
        }
    }
}

impl From<NodeId> for Output {
    fn from(node: NodeId) -> Output {
        Output { node, index: 0 }
    }
}

/// The static type of a tensor flowing on an edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> TensorType {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: String,
    pub inputs: Vec<Output>,
    /// Nodes that must run before this one, though no data flows.
    pub control_inputs: Vec<NodeId>,
    pub attrs: Attrs,
    /// Requested device (possibly partial, e.g. `/device:GPU:0`); empty means anywhere.
    pub device: String,
    /// Inferred dtype and static shape of each output.
    pub outputs: Vec<TensorType>,
}

/// A dataflow graph. Nodes are only appended, and their inputs exist before them, so a graph
/// built through the API is acyclic by construction.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Graph {
    nodes: Vec<Node>,
    /// Graph-level random seed; ops without their own seed derive one from it.
    pub seed: Option<u64>,
    #[serde(skip)]
    by_name: HashMap<String, NodeId>,
    #[serde(skip)]
    scopes: Vec<String>,
    #[serde(skip)]
    devices: Vec<String>,
    #[serde(skip)]
    control_scope: Vec<Vec<NodeId>>,
    #[serde(skip)]
    name_counters: HashMap<String, usize>,
    #[serde(skip)]
    scope_prefixes: std::collections::HashSet<String>,
    #[serde(default)]
    pub(crate) variables: Vec<crate::ops::state_ops::Variable>,
    /// Open control-flow contexts (inside `cond`/`while_loop` builders) and a frame cache.
    #[serde(skip)]
    pub(crate) cf: crate::ops::control_flow_ops::CfState,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }
    pub fn get_node(&self, id: NodeId) -> Result<&Node> {
        self.nodes
            .get(id.index())
            .ok_or_else(|| GraphError::NodeNotInGraph {
                id: id.0,
                len: self.nodes.len(),
                context: String::new(),
            })
    }
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }
    pub fn node_by_name(&self, name: &str) -> Result<NodeId> {
        self.find(name)
            .ok_or_else(|| GraphError::UnknownNode(name.to_string()))
    }

    /// Resolves `"name"` or `"name:i"` to an output.
    pub fn output_by_name(&self, spec: &str) -> Result<Output> {
        let (name, index) = match spec.rsplit_once(':') {
            Some((n, i)) if i.chars().all(|c| c.is_ascii_digit()) && !i.is_empty() => (
                n,
                i.parse::<usize>()
                    .map_err(|_| GraphError::UnknownNode(spec.into()))?,
            ),
            _ => (spec, 0),
        };
        let id = self.node_by_name(name)?;
        self.check_output(Output::new(id, index))
    }

    /// Confirms the output exists.
    pub fn check_output(&self, o: Output) -> Result<Output> {
        let node = self.get_node(o.node)?;
        if (o.index as usize) < node.outputs.len() {
            Ok(o)
        } else {
            Err(GraphError::UnknownOutput {
                node: node.name.clone(),
                index: o.index as usize,
                available: node.outputs.len(),
            })
        }
    }

    pub fn output_type(&self, o: Output) -> &TensorType {
        &self.nodes[o.node.index()].outputs[o.index as usize]
    }
    pub fn dtype(&self, o: Output) -> DType {
        self.output_type(o).dtype
    }
    pub fn shape(&self, o: Output) -> &Shape {
        &self.output_type(o).shape
    }
    /// Display name of an output (`node:index`).
    pub fn output_name(&self, o: Output) -> String {
        format!("{}:{}", self.nodes[o.node.index()].name, o.index)
    }

    /// The value of `o` when it is a `Const` node's output.
    pub fn const_value(&self, o: Output) -> Option<&TensorValue> {
        let node = self.nodes.get(o.node.index())?;
        if node.op == "Const" {
            node.attrs.tensor_opt("value")
        } else {
            None
        }
    }

    /// Starts building a node of op `op`.
    /// A TensorFlow alias (`AddV2`, `GatherV2`, ...) builds the tfr op it names.
    pub fn build(&mut self, op: &str) -> NodeBuilder<'_> {
        NodeBuilder {
            graph: self,
            op: crate::op_def::canonical_op(op).to_string(),
            name: None,
            inputs: Vec::new(),
            control_inputs: Vec::new(),
            attrs: Attrs::default(),
            device: None,
        }
    }

    /// Runs `f` with every node created inside named under `scope/`.
    pub fn with_scope<R>(&mut self, scope: &str, f: impl FnOnce(&mut Graph) -> R) -> R {
        let scoped = self.scoped(scope);
        let unique = self.unique_name(&scoped);
        let prefix_len = if self.scopes.is_empty() {
            0
        } else {
            self.scoped("").len()
        };
        self.scopes.push(unique[prefix_len..].to_string());
        let r = f(self);
        self.scopes.pop();
        r
    }

    /// Runs `f` with every node created inside placed on `device` unless it names its own.
    pub fn with_device<R>(&mut self, device: &str, f: impl FnOnce(&mut Graph) -> R) -> R {
        self.devices.push(device.to_string());
        let r = f(self);
        self.devices.pop();
        r
    }

    /// Sets the device request of node `id` after it was built (a device function's pass over
    /// a finished model, as TensorFlow's `replica_device_setter` decides per op). The request
    /// must parse as a device spec.
    pub fn set_device(&mut self, id: NodeId, device: &str) -> Result<()> {
        let node = self.get_node(id)?;
        crate::device::DeviceSpec::parse(device).map_err(|message| GraphError::InvalidNode {
            node: node.name.clone(),
            op: node.op.clone(),
            message: format!("device `{device}`: {message}"),
        })?;
        self.nodes[id.index()].device = device.to_string();
        Ok(())
    }

    /// Runs `f` with every node created inside depending on `deps` by control edges.
    pub fn with_control_dependencies<R>(
        &mut self,
        deps: &[NodeId],
        f: impl FnOnce(&mut Graph) -> R,
    ) -> R {
        self.control_scope.push(deps.to_vec());
        let r = f(self);
        self.control_scope.pop();
        r
    }

    /// Takes the open control-dependency scopes (control-flow scaffolding is built outside them).
    pub(crate) fn take_control_scopes(&mut self) -> Vec<Vec<NodeId>> {
        std::mem::take(&mut self.control_scope)
    }
    pub(crate) fn restore_control_scopes(&mut self, scopes: Vec<Vec<NodeId>>) {
        self.control_scope = scopes;
    }

    /// `name` under the current name scope.
    pub fn scoped_name(&self, name: &str) -> String {
        self.scoped(name)
    }

    /// Narrows the recorded static shape of an output (when a builder knows more than the
    /// op's shape function, e.g. a variable read).
    pub fn refine_output_shape(&mut self, o: Output, shape: Shape) {
        let t = &mut self.nodes[o.node.index()].outputs[o.index as usize];
        if let Ok(s) = t.shape.merge(&shape) {
            t.shape = s;
        }
    }

    fn scoped(&self, name: &str) -> String {
        if self.scopes.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.scopes.join("/"), name)
        }
    }

    /// `base`, or `base_N` with the smallest free N at or above the last one handed out for
    /// `base` (a counter per base keeps naming linear in the number of nodes).
    fn unique_name(&mut self, base: &str) -> String {
        if !self.by_name.contains_key(base) && !self.scope_taken(base) {
            return base.to_string();
        }
        let mut i = self.name_counters.get(base).copied().unwrap_or(1);
        loop {
            let candidate = format!("{base}_{i}");
            i += 1;
            if !self.by_name.contains_key(&candidate) && !self.scope_taken(&candidate) {
                self.name_counters.insert(base.to_string(), i);
                return candidate;
            }
        }
    }

    /// True when some node is named under `name/`.
    fn scope_taken(&self, name: &str) -> bool {
        self.scope_prefixes.contains(name)
    }

    /// Records every scope prefix of a node name (`a` and `a/b` for `a/b/c`).
    fn note_scopes(&mut self, name: &str) {
        for (i, c) in name.char_indices() {
            if c == '/' {
                self.scope_prefixes.insert(name[..i].to_string());
            }
        }
    }

    /// Appends a node that has already been checked. Used by the builder and by graph rewrites.
    pub(crate) fn push_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.by_name.insert(node.name.clone(), id);
        self.note_scopes(&node.name);
        self.nodes.push(node);
        id
    }

    /// Rebuilds the name index (after deserialization).
    pub(crate) fn reindex(&mut self) -> Result<()> {
        self.by_name.clear();
        self.scope_prefixes.clear();
        self.name_counters.clear();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for n in &names {
            self.note_scopes(n);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self
                .by_name
                .insert(n.name.clone(), NodeId(i as u32))
                .is_some()
            {
                return Err(GraphError::DuplicateName(n.name.clone()));
            }
        }
        Ok(())
    }

    pub(crate) fn nodes_mut(&mut self) -> &mut Vec<Node> {
        &mut self.nodes
    }

    /// Runs the registry's checks and shape function for a prospective node.
    pub fn infer_node(
        &self,
        name: &str,
        op: &str,
        inputs: &[Output],
        attrs: &mut Attrs,
    ) -> Result<Vec<TensorType>> {
        let def = registry().get(op).ok_or_else(|| GraphError::UnknownOp {
            node: name.to_string(),
            op: op.to_string(),
            suggestion: registry().suggest(op).map(str::to_string),
        })?;
        let invalid = |message: String| GraphError::InvalidNode {
            node: name.to_string(),
            op: op.to_string(),
            message,
        };
        let mut types = Vec::with_capacity(inputs.len());
        for &i in inputs {
            let o = self.check_output(i).map_err(|e| invalid(e.to_string()))?;
            types.push(self.output_type(o).clone());
        }
        def.check_inputs(&types).map_err(invalid)?;
        def.complete_attrs(attrs).map_err(invalid)?;
        let consts: Vec<Option<&TensorValue>> = inputs
            .iter()
            .map(|&o| crate::ops::control_flow_ops::constant_behind(self, o))
            .collect();
        let ctx = InferCtx {
            op,
            inputs: &types,
            attrs,
            const_inputs: &consts,
        };
        let outputs = (def.infer)(&ctx).map_err(invalid)?;
        // Undeclared TensorFlow attributes (`T`, `Tidx`, `N`, ...) must agree with the node.
        for (attr, value) in &attrs.0 {
            if def.attrs.iter().any(|d| d.name == attr)
                || !crate::ops::tf_names::is_tf_inferred_attr(attr, value)
            {
                continue;
            }
            crate::ops::tf_names::check_tf_inferred_attr(def, attr, value, &types, &outputs)
                .map_err(invalid)?;
        }
        // Sizes derived from inputs and attributes stay within TensorFlow's bounds, so no
        // consumer's inference or kernel overflows on them.
        for (k, t) in outputs.iter().enumerate() {
            t.shape
                .check_bounds()
                .map_err(|e| invalid(format!("output {k}: {e}")))?;
        }
        Ok(outputs)
    }
}

/// Builds one node: `g.build("MatMul").input(a).input(b).attr("transpose_a", true).finish()`.
pub struct NodeBuilder<'g> {
    graph: &'g mut Graph,
    op: String,
    name: Option<String>,
    inputs: Vec<Output>,
    control_inputs: Vec<NodeId>,
    attrs: Attrs,
    device: Option<String>,
}

impl NodeBuilder<'_> {
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    pub fn input(mut self, o: Output) -> Self {
        self.inputs.push(o);
        self
    }
    pub fn inputs(mut self, os: impl IntoIterator<Item = Output>) -> Self {
        self.inputs.extend(os);
        self
    }
    pub fn control_input(mut self, n: NodeId) -> Self {
        self.control_inputs.push(n);
        self
    }
    pub fn control_inputs(mut self, ns: impl IntoIterator<Item = NodeId>) -> Self {
        self.control_inputs.extend(ns);
        self
    }
    pub fn attr(mut self, name: &str, v: impl Into<AttrValue>) -> Self {
        self.attrs.set(name, v);
        self
    }
    pub fn device(mut self, d: &str) -> Self {
        self.device = Some(d.to_string());
        self
    }

    /// Checks and appends the node.
    pub fn finish(self) -> Result<NodeId> {
        let NodeBuilder {
            graph,
            op,
            name,
            inputs,
            mut control_inputs,
            mut attrs,
            device,
        } = self;
        let requested = name.clone();
        let explicit = match name {
            Some(n) => {
                let full = graph.scoped(&n);
                if graph.by_name.contains_key(&full) {
                    return Err(GraphError::DuplicateName(full));
                }
                Some(full)
            }
            None => None,
        };
        for &c in &control_inputs {
            graph.get_node(c)?;
        }
        for deps in &graph.control_scope {
            control_inputs.extend(deps.iter().copied());
        }
        control_inputs.sort();
        control_inputs.dedup();
        if inputs.is_empty() && control_inputs.is_empty() {
            if let Some(depth) = crate::ops::control_flow_ops::hoist_depth(graph, &op) {
                // A constant made inside a loop is made outside it and enters as an invariant.
                let placed = device.as_ref().or(graph.devices.last());
                let key = crate::ops::control_flow_ops::hoisted_key(
                    depth,
                    &op,
                    &requested,
                    &attrs,
                    placed.map_or("", |d| d.as_str()),
                );
                if let Some(id) = key.as_ref().and_then(|k| graph.cf.hoisted.get(k)) {
                    return Ok(*id);
                }
                let id = graph.at_depth(depth, |graph| {
                    let b = NodeBuilder {
                        graph,
                        op,
                        name: requested,
                        inputs,
                        control_inputs,
                        attrs,
                        device,
                    };
                    b.finish()
                })?;
                if let Some(k) = key {
                    graph.cf.hoisted.insert(k, id);
                }
                return Ok(id);
            }
        }
        // Inside a cond/while_loop builder, outside values enter through Switch/Enter nodes.
        let (inputs, control_inputs) =
            crate::ops::control_flow_ops::capture_inputs(graph, inputs, control_inputs)?;
        let name = match explicit {
            Some(n) => n,
            None => {
                let scoped = graph.scoped(&op);
                graph.unique_name(&scoped)
            }
        };
        let outputs = graph.infer_node(&name, &op, &inputs, &mut attrs)?;
        let device = device
            .or_else(|| graph.devices.last().cloned())
            .unwrap_or_default();
        Ok(graph.push_node(Node {
            name,
            op,
            inputs,
            control_inputs,
            attrs,
            device,
            outputs,
        }))
    }

    /// Like `finish`, for ops with exactly one output.
    pub fn finish1(self) -> Result<Output> {
        Ok(Output::new(self.finish()?, 0))
    }
}
