//! Placement and partitioning.
//!
//! [`place`] picks a device for every node of a step graph: nodes joined by a resource edge (a
//! variable's handle and its reads and updates) or by an explicit `_class = "loc:@other"`
//! attribute form one colocation group; a group may only go to a device that matches every
//! member's requested device spec and has a kernel for every member; among those, a group
//! follows the producer of its largest input (big tensors stay where they are made), else the
//! first device. With soft placement an unsatisfiable spec is dropped instead of failing.
//!
//! [`partition`] cuts the placed graph into one graph per device; each edge that crosses
//! devices becomes a `_Send`/`_Recv` pair (one per tensor and destination, however many
//! consumers), and a control edge that crosses devices is carried by a sent dummy. Every
//! partition's nodes are in one global order in which a `_Recv` always follows its `_Send`, and
//! each partition runs its nodes in that order, so blocking receives cannot deadlock: a cycle
//! of waits would need each waiting receive to be earlier than the next one.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernel::{kernel_registry, DeviceType, KernelInit};
use std::collections::HashMap;
use tfr_graph::device::DeviceSpec;
use tfr_graph::passes::{StepGraph, ARG_OP};
use tfr_graph::{Attrs, DType, Graph, Node, NodeId, Output, Shape, TensorType};

fn placement_error(node: &Node, message: String) -> Error {
    Error::Placement {
        node: node.name.clone(),
        op: node.op.clone(),
        message,
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

fn has_kernel(graph: &Graph, node: &Node, device_type: DeviceType) -> bool {
    let inputs: Vec<TensorType> = node
        .inputs
        .iter()
        .map(|&o| graph.output_type(o).clone())
        .collect();
    let init = KernelInit {
        node: &node.name,
        op: &node.op,
        attrs: &node.attrs,
        inputs: &inputs,
        outputs: &node.outputs,
    };
    kernel_registry()
        .find(&node.op, device_type, init.dtype())
        .is_some()
}

/// The device index of every node of `graph`.
pub fn place(graph: &Graph, devices: &[Device], soft: bool) -> Result<Vec<usize>> {
    let n = graph.len();
    let mut parent: Vec<usize> = (0..n).collect();
    for (i, node) in graph.nodes().iter().enumerate() {
        for &o in &node.inputs {
            if graph.dtype(o) == DType::Resource {
                union(&mut parent, i, o.node.index());
            }
        }
        if let Some(target) = node
            .attrs
            .string_opt("_class")
            .and_then(|c| c.strip_prefix("loc:@"))
        {
            if let Some(t) = graph.find(target) {
                union(&mut parent, i, t.index());
            }
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(i);
    }
    let mut assigned: Vec<Option<usize>> = vec![None; n];
    // Groups in the order of their first member (a topological order).
    let mut roots: Vec<usize> = groups.keys().copied().collect();
    roots.sort_by_key(|r| groups[r][0]);
    for root in roots {
        let members = &groups[&root];
        if members.iter().all(|&m| graph.nodes()[m].op == ARG_OP) {
            continue; // feeds follow their consumers, below
        }
        let mut spec = DeviceSpec::default();
        let mut spec_owner: Option<usize> = None;
        for &m in members {
            let node = &graph.nodes()[m];
            if node.device.is_empty() {
                continue;
            }
            let s = DeviceSpec::parse(&node.device).map_err(|e| placement_error(node, e))?;
            let merged = merge_specs(&spec, &s).ok_or_else(|| {
                let other = &graph.nodes()[spec_owner.unwrap_or(m)];
                placement_error(node, format!("its device `{}` conflicts with `{}` of `{}`, which it must be colocated with", node.device, other.device, other.name))
            })?;
            spec = merged;
            spec_owner.get_or_insert(m);
        }
        let capable = |d: &Device| {
            members.iter().all(|&m| {
                graph.nodes()[m].op == ARG_OP || has_kernel(graph, &graph.nodes()[m], d.device_type)
            })
        };
        let mut feasible: Vec<usize> = (0..devices.len())
            .filter(|&d| spec.matches(&devices[d].spec) && capable(&devices[d]))
            .collect();
        if feasible.is_empty() && soft {
            feasible = (0..devices.len())
                .filter(|&d| capable(&devices[d]))
                .collect();
        }
        let first = &graph.nodes()[spec_owner.unwrap_or(members[0])];
        if feasible.is_empty() {
            let names: Vec<String> = devices.iter().map(Device::name).collect();
            return Err(placement_error(first, format!("no device satisfies `{}` and has kernels for its colocation group ({} nodes); devices: [{}]", first.device, members.len(), names.join(", "))));
        }
        // Follow the producer of the largest input when it is feasible.
        let mut best: Option<(usize, usize)> = None;
        for &m in members {
            for &o in &graph.nodes()[m].inputs {
                let size = graph.shape(o).num_elements().unwrap_or(1);
                if let Some(d) = assigned[o.node.index()] {
                    if feasible.contains(&d) && best.is_none_or(|(s, _)| size > s) {
                        best = Some((size, d));
                    }
                }
            }
        }
        let choice = best.map_or(feasible[0], |(_, d)| d);
        for &m in members {
            assigned[m] = Some(choice);
        }
    }
    // Feeds go where their first consumer is.
    for (i, node) in graph.nodes().iter().enumerate() {
        for o in &node.inputs {
            if assigned[o.node.index()].is_none() {
                assigned[o.node.index()] = assigned[i];
            }
        }
    }
    Ok(assigned.into_iter().map(|a| a.unwrap_or(0)).collect())
}

/// The spec matching what both match, or `None` when they conflict.
fn merge_specs(a: &DeviceSpec, b: &DeviceSpec) -> Option<DeviceSpec> {
    fn one<T: Clone + PartialEq>(x: &Option<T>, y: &Option<T>) -> Option<Option<T>> {
        match (x, y) {
            (Some(p), Some(q)) if p != q => None,
            (Some(p), _) | (_, Some(p)) => Some(Some(p.clone())),
            _ => Some(None),
        }
    }
    Some(DeviceSpec {
        job: one(&a.job, &b.job)?,
        replica: one(&a.replica, &b.replica)?,
        task: one(&a.task, &b.task)?,
        device_type: one(&a.device_type, &b.device_type)?,
        index: one(&a.index, &b.index)?,
    })
}

/// The graph of one device: a step graph whose feeds are the session's feeds followed by the
/// step's rendezvous handle.
pub struct Partition {
    pub device: usize,
    pub step: StepGraph,
    /// For each fetch of the whole step that this partition produces: (position in the
    /// step's fetch list, position in this partition's fetch list).
    pub fetch_map: Vec<(usize, usize)>,
}

/// Cuts `step` into one graph per device that has nodes. `num_feeds` is the step's feed count;
/// feed `num_feeds` of every partition is the rendezvous handle.
pub fn partition(
    step: &StepGraph,
    assignment: &[usize],
    devices: &[Device],
) -> Result<Vec<Partition>> {
    let g = &step.graph;
    let num_feeds = step.feeds.len();
    let used: Vec<usize> = {
        let mut u: Vec<usize> = assignment.to_vec();
        u.sort();
        u.dedup();
        u
    };
    let slot_of = |d: usize| used.iter().position(|&x| x == d).unwrap_or(0);
    let mut parts: Vec<Graph> = used.iter().map(|_| Graph::new()).collect();
    let mut feeds: Vec<Vec<Option<NodeId>>> =
        used.iter().map(|_| vec![None; num_feeds + 1]).collect();
    let mut handles: Vec<Option<Output>> = vec![None; used.len()];
    let mut remap: Vec<NodeId> = Vec::with_capacity(g.len());
    // (source output, destination partition) -> the received output there
    let mut received: HashMap<(Output, usize), Output> = HashMap::new();
    let mut control_received: HashMap<(NodeId, usize), NodeId> = HashMap::new();
    let handle_type = TensorType::new(DType::Resource, Shape::scalar());
    let mut handle =
        |p: usize, parts: &mut Vec<Graph>, feeds: &mut Vec<Vec<Option<NodeId>>>| -> Output {
            if let Some(h) = handles[p] {
                return h;
            }
            let mut attrs = Attrs::default();
            attrs.set("index", num_feeds as i64);
            attrs.set("dtype", DType::Resource);
            attrs.set("shape", Shape::scalar());
            let id = parts[p].push_checked(Node {
                name: "_rendezvous".into(),
                op: ARG_OP.into(),
                inputs: vec![],
                control_inputs: vec![],
                attrs,
                device: String::new(),
                outputs: vec![handle_type.clone()],
            });
            feeds[p][num_feeds] = Some(id);
            handles[p] = Some(Output::new(id, 0));
            handles[p].unwrap_or(Output::new(id, 0))
        };
    let device_name = |p: usize| devices[used[p]].name();
    // Loops' back edges (NextIteration -> Merge) point forward in the step's order: patched
    // once their producer is copied; a loop must sit on one device.
    let mut back_edges: Vec<(usize, NodeId, usize, Output)> = Vec::new();
    for (i, node) in g.nodes().iter().enumerate() {
        let p = slot_of(assignment[i]);
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut later = Vec::new();
        for (k, &o) in node.inputs.iter().enumerate() {
            let src_p = slot_of(assignment[o.node.index()]);
            if o.node.index() >= remap.len() {
                if src_p != p {
                    return Err(placement_error(
                        node,
                        format!(
                            "the loop's back edge from `{}` crosses devices; a loop's nodes must \
                             be placed on one device",
                            g.node(o.node).name
                        ),
                    ));
                }
                later.push((k, o));
                inputs.push(o);
                continue;
            }
            let local = Output {
                node: remap[o.node.index()],
                index: o.index,
            };
            if src_p == p {
                inputs.push(local);
                continue;
            }
            if let Some(&r) = received.get(&(o, p)) {
                inputs.push(r);
                continue;
            }
            let key = format!("{}->{}", g.output_name(o), device_name(p));
            let hs = handle(src_p, &mut parts, &mut feeds);
            let mut sa = Attrs::default();
            sa.set("tensor_name", key.as_str());
            sa.set("send_device", device_name(src_p));
            sa.set("recv_device", device_name(p));
            parts[src_p].push_checked(Node {
                name: format!("_send/{key}"),
                op: "_Send".into(),
                inputs: vec![local, hs],
                control_inputs: vec![],
                attrs: sa.clone(),
                device: device_name(src_p),
                outputs: vec![],
            });
            let hr = handle(p, &mut parts, &mut feeds);
            let ty = g.output_type(o).clone();
            sa.set("dtype", ty.dtype);
            sa.set("shape", ty.shape.clone());
            let rid = parts[p].push_checked(Node {
                name: format!("_recv/{key}"),
                op: "_Recv".into(),
                inputs: vec![hr],
                control_inputs: vec![],
                attrs: sa,
                device: device_name(p),
                outputs: vec![ty],
            });
            received.insert((o, p), Output::new(rid, 0));
            inputs.push(Output::new(rid, 0));
        }
        let mut control_inputs = Vec::new();
        for &c in &node.control_inputs {
            let src_p = slot_of(assignment[c.index()]);
            if src_p == p {
                control_inputs.push(remap[c.index()]);
                continue;
            }
            if let Some(&r) = control_received.get(&(c, p)) {
                control_inputs.push(r);
                continue;
            }
            let key = format!("^{}->{}", g.node(c).name, device_name(p));
            let mut ca = Attrs::default();
            ca.set("value", tfr_graph::TensorValue::scalar(true));
            let dummy = parts[src_p].push_checked(Node {
                name: format!("_ctrl/{key}"),
                op: "Const".into(),
                inputs: vec![],
                control_inputs: vec![remap[c.index()]],
                attrs: ca,
                device: device_name(src_p),
                outputs: vec![TensorType::new(DType::Bool, Shape::scalar())],
            });
            let hs = handle(src_p, &mut parts, &mut feeds);
            let mut sa = Attrs::default();
            sa.set("tensor_name", key.as_str());
            sa.set("send_device", device_name(src_p));
            sa.set("recv_device", device_name(p));
            parts[src_p].push_checked(Node {
                name: format!("_send/{key}"),
                op: "_Send".into(),
                inputs: vec![Output::new(dummy, 0), hs],
                control_inputs: vec![],
                attrs: sa.clone(),
                device: device_name(src_p),
                outputs: vec![],
            });
            let hr = handle(p, &mut parts, &mut feeds);
            sa.set("dtype", DType::Bool);
            sa.set("shape", Shape::scalar());
            let rid = parts[p].push_checked(Node {
                name: format!("_recv/{key}"),
                op: "_Recv".into(),
                inputs: vec![hr],
                control_inputs: vec![],
                attrs: sa,
                device: device_name(p),
                outputs: vec![TensorType::new(DType::Bool, Shape::scalar())],
            });
            control_received.insert((c, p), rid);
            control_inputs.push(rid);
        }
        let id = parts[p].push_checked(Node {
            inputs,
            control_inputs,
            device: device_name(p),
            ..node.clone()
        });
        if node.op == ARG_OP {
            if let Some(k) = node.attrs.int_opt("index") {
                feeds[p][*k as usize] = Some(id);
            }
        }
        back_edges.extend(later.into_iter().map(|(k, o)| (p, id, k, o)));
        remap.push(id);
    }
    for (p, id, k, o) in back_edges {
        parts[p].nodes_for_rewrite()[id.index()].inputs[k] = Output {
            node: remap[o.node.index()],
            index: o.index,
        };
    }
    let mut out: Vec<Partition> = Vec::new();
    for (p, graph) in parts.into_iter().enumerate() {
        let mut fetches = Vec::new();
        let mut fetch_map = Vec::new();
        for (k, f) in step.fetches.iter().enumerate() {
            if slot_of(assignment[f.node.index()]) == p {
                fetch_map.push((k, fetches.len()));
                fetches.push(Output {
                    node: remap[f.node.index()],
                    index: f.index,
                });
            }
        }
        let targets = step
            .targets
            .iter()
            .filter(|t| slot_of(assignment[t.index()]) == p)
            .map(|t| remap[t.index()])
            .collect();
        let origin = vec![None; graph.len()];
        out.push(Partition {
            device: used[p],
            step: StepGraph {
                graph,
                feeds: feeds[p].clone(),
                fetches,
                targets,
                origin,
            },
            fetch_map,
        });
    }
    Ok(out)
}

/// The placed graph in Graphviz DOT, one cluster per device.
pub fn to_dot(graph: &Graph, assignment: &[usize], devices: &[Device]) -> String {
    let mut s = String::from("digraph placed {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n");
    for (d, dev) in devices.iter().enumerate() {
        let members: Vec<usize> = (0..graph.len()).filter(|&i| assignment[i] == d).collect();
        if members.is_empty() {
            continue;
        }
        s += &format!("  subgraph cluster_{d} {{\n    label=\"{}\";\n", dev.name());
        for i in members {
            let n = &graph.nodes()[i];
            s += &format!(
                "    n{i} [label=\"{}\\n{}\"];\n",
                n.name.replace('"', "'"),
                n.op
            );
        }
        s += "  }\n";
    }
    for (i, n) in graph.nodes().iter().enumerate() {
        for o in &n.inputs {
            s += &format!("  n{} -> n{i};\n", o.node.0);
        }
        for c in &n.control_inputs {
            s += &format!("  n{} -> n{i} [style=dashed];\n", c.0);
        }
    }
    s + "}\n"
}
