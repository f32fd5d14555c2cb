//! Which nodes of a step would stay on the CPU beside a GPU, computed on any machine: the
//! session's own placer runs over a planning device that has exactly the GPU's kernels
//! ([`crate::gpu_ops`], registered for [`PLAN_DEVICE`]) and the GPU's priority, but no memory.
//! Placement never builds kernels, so nothing runs; the step's graph is the one the session
//! would run (pruned and optimized: fused ops appear as the fusion made them).

use crate::runtime::register_kernels_for;
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Once};
use tfr_core::{
    Allocator, AllocatorStats, DeviceBackend, DeviceFactory, DeviceType, KernelError, MemorySpace,
    Session, SessionOptions, Tensor,
};
use tfr_graph::{DType, Graph, NodeId, Output};

/// The device type the plan places on (never a real device).
pub const PLAN_DEVICE: DeviceType = DeviceType("GPUPLAN");

/// Ops that move no data, so running them on the CPU costs no copy: grouping and control.
const NO_DATA_OPS: &[&str] = &["NoOp"];

#[derive(Debug)]
struct PlanDevice {
    space: MemorySpace,
}

fn no_memory() -> KernelError {
    KernelError::unimplemented("the GPU planning device only places nodes; it holds no memory")
}

impl Allocator for PlanDevice {
    fn name(&self) -> &str {
        "gpu-plan"
    }
    fn memory_space(&self) -> MemorySpace {
        self.space
    }
    fn allocate(&self, _: DType, _: &[usize]) -> Result<Tensor, KernelError> {
        Err(no_memory())
    }
    fn stats(&self) -> AllocatorStats {
        AllocatorStats::default()
    }
}

impl DeviceBackend for PlanDevice {
    fn device_type(&self) -> DeviceType {
        PLAN_DEVICE
    }
    fn index(&self) -> u32 {
        0
    }
    fn memory_space(&self) -> MemorySpace {
        self.space
    }
    fn allocator(&self) -> &dyn Allocator {
        self
    }
    fn copy_from_host(&self, _: Tensor) -> Result<Tensor, KernelError> {
        Err(no_memory())
    }
    fn copy_to_host(&self, _: Tensor) -> Result<Tensor, KernelError> {
        Err(no_memory())
    }
    fn priority(&self) -> i32 {
        // The GPU's priority (`GpuDevice::priority`), so the placer decides as it would there.
        100
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Debug)]
struct PlanFactory;

impl DeviceFactory for PlanFactory {
    fn device_type(&self) -> DeviceType {
        PLAN_DEVICE
    }
    fn create_devices(&self) -> Result<Vec<Arc<dyn DeviceBackend>>, String> {
        Ok(vec![Arc::new(PlanDevice {
            space: MemorySpace {
                kind: PLAN_DEVICE.0,
                index: 0,
            },
        })])
    }
}

/// One node of the planned step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedNode {
    pub name: String,
    pub op: String,
    /// Placed on the GPU (else on the CPU).
    pub on_gpu: bool,
}

/// Where each node of a step would run beside a GPU.
#[derive(Clone, Debug, Default)]
pub struct FallbackReport {
    pub nodes: Vec<PlannedNode>,
}

impl FallbackReport {
    /// The ops placed on the CPU that touch data, with how many nodes of each (internal
    /// `_`-prefixed nodes and [`NO_DATA_OPS`] left out).
    pub fn fallback_ops(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| !n.on_gpu) {
            if n.op.starts_with('_') || NO_DATA_OPS.contains(&n.op.as_str()) {
                continue;
            }
            *m.entry(n.op.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Nodes placed on the GPU.
    pub fn gpu_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.on_gpu).count()
    }
}

/// Plans the step `(feeds, fetches, targets)` of `graph` beside a GPU (see the module doc).
pub fn gpu_placement(
    graph: &Graph,
    feeds: &[Output],
    fetches: &[Output],
    targets: &[NodeId],
) -> tfr_core::Result<FallbackReport> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| register_kernels_for(PLAN_DEVICE));
    let options = SessionOptions {
        registered_devices: false,
        device_factories: vec![Arc::new(PlanFactory)],
        ..SessionOptions::default()
    };
    let s = Session::new(graph, options)?;
    let dot = s.placement_dot(feeds, fetches, targets)?;
    Ok(FallbackReport {
        nodes: parse_placement_dot(&dot),
    })
}

/// The nodes of [`Session::placement_dot`]'s output: each device is a cluster whose label is
/// the device's name, each node a box labelled `name\nop`.
pub fn parse_placement_dot(dot: &str) -> Vec<PlannedNode> {
    let mut device = String::new();
    let mut nodes = Vec::new();
    for line in dot.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("label=\"") {
            device = rest.trim_end_matches("\";").to_string();
        } else if let Some((_, label)) = line.split_once("[label=\"") {
            let label = label.trim_end_matches("\"];");
            if let Some((name, op)) = label.split_once("\\n") {
                nodes.push(PlannedNode {
                    name: name.to_string(),
                    op: op.to_string(),
                    on_gpu: device.contains(PLAN_DEVICE.0),
                });
            }
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_ops_plan_on_the_gpu_and_others_fall_back() {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, tfr_graph::Shape::known(&[2, 3]))
            .unwrap();
        let t = g.relu(x).unwrap();
        // Cumsum has no GPU kernel.
        let axis = g.constant_from(&[], vec![0i32]).unwrap();
        let c = g.build("Cumsum").input(t).input(axis).finish1().unwrap();
        let r = gpu_placement(&g, &[x], &[c], &[]).unwrap();
        let op_of = |op: &str| r.nodes.iter().find(|n| n.op == op).cloned();
        assert!(op_of("Relu").unwrap().on_gpu, "{r:?}");
        assert!(!op_of("Cumsum").unwrap().on_gpu, "{r:?}");
        assert_eq!(r.fallback_ops().get("Cumsum"), Some(&1), "{r:?}");
        assert!(!r.fallback_ops().contains_key("Relu"));
    }
}
