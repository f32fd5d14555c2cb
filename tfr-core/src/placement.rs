//! Placement and partitioning.
//!
//! [`place`] picks a device for every node of a step graph: nodes joined by a resource edge (a
//! variable's handle and its reads and updates) or by an explicit `_class = "loc:@other"`
//! attribute form one colocation group; a group may only go to a device that matches every
//! member's requested device spec and has a kernel for every member; among those, a group
//! follows the producer of its largest input (big tensors stay where they are made), else the
//! first device. With soft placement an unsatisfiable spec is dropped instead of failing.
//!
//! [`partition`] (`placement/partition.rs`) cuts the placed graph into one graph per device.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::kernel::{find_kernel, DeviceType, KernelInit};
use crate::memory::MemorySpace;
use std::collections::HashMap;
use tfr_graph::device::DeviceSpec;
use tfr_graph::passes::ARG_OP;
use tfr_graph::{DType, Graph, Node, TensorType};

mod partition;
pub use partition::{partition, Partition};

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

fn has_kernel(graph: &Graph, node: &Node, device: &Device) -> bool {
    let device_type: DeviceType = device.device_type;
    let inputs: Vec<TensorType> = node
        .inputs
        .iter()
        .map(|&o| graph.output_type(o).clone())
        .collect();
    // Strings live in host memory only (as TF's DT_STRING): a node reading or making one runs
    // on a host device whatever kernels a device registers.
    let strings = inputs
        .iter()
        .chain(&node.outputs)
        .any(|t| t.dtype == DType::String);
    if strings && device.backend.memory_space() != MemorySpace::HOST {
        return false;
    }
    let init = KernelInit {
        node: &node.name,
        op: &node.op,
        attrs: &node.attrs,
        inputs: &inputs,
        outputs: &node.outputs,
        device: Some(&device.backend),
    };
    find_kernel(&node.op, device_type, init.dtype()).is_some()
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
            members
                .iter()
                .all(|&m| graph.nodes()[m].op == ARG_OP || has_kernel(graph, &graph.nodes()[m], d))
        };
        let mut feasible: Vec<usize> = (0..devices.len())
            .filter(|&d| spec.matches(&devices[d].spec) && capable(&devices[d]))
            .collect();
        if feasible.is_empty() && soft {
            feasible = (0..devices.len())
                .filter(|&d| capable(&devices[d]))
                .collect();
        }
        // TF's default: the device types of highest priority with kernels for the group (an
        // accelerator before the CPU); equal priorities (several CPUs) keep every candidate.
        if let Some(top) = feasible
            .iter()
            .map(|&d| devices[d].backend.priority())
            .max()
        {
            feasible.retain(|&d| devices[d].backend.priority() == top);
        }
        let first = &graph.nodes()[spec_owner.unwrap_or(members[0])];
        if feasible.is_empty() {
            let names: Vec<String> = devices.iter().map(Device::name).collect();
            let hint = members
                .iter()
                .map(|&m| crate::kernel::missing_kernel_hint(&graph.nodes()[m].op))
                .find(|h| !h.is_empty())
                .unwrap_or_default();
            return Err(placement_error(first, format!("no device satisfies `{}` and has kernels for its colocation group ({} nodes); devices: [{}]{hint}", first.device, members.len(), names.join(", "))));
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
