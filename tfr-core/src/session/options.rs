//! What a session is created with: threads, optimization, devices and where steps run.

use crate::device::DeviceFactory;
use std::sync::Arc;

/// How a session runs.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Threads of the inter-op pool; 0 picks the number of CPUs. With 1, steps run sequentially.
    pub inter_op_threads: usize,
    /// Run common-subexpression elimination and constant folding on each step's graph.
    pub optimize: bool,
    /// Number of CPU devices (`/device:CPU:0` ...). A step placed on several runs each device's
    /// partition on that device's runner: persistent threads, one per partition running.
    pub cpu_devices: usize,
    /// Drop a device request that no device can satisfy instead of failing (TF2's default).
    pub soft_placement: bool,
    /// Devices besides the CPUs, from these factories (e.g. a test accelerator). Ops with a
    /// kernel on a device of higher priority than the CPU go there by default.
    pub device_factories: Vec<Arc<dyn DeviceFactory>>,
    /// Also use the devices of factories registered process-wide
    /// ([`crate::device::register_device_factory`]: tfr-cuda's GPUs when present); `false`
    /// keeps the session on the CPU whatever the machine has.
    pub registered_devices: bool,
    /// Where steps run: `""` in this process; `grpc://host:port` on a cluster, through the
    /// master service of the task at that address (see [`crate::session_target`]). With a
    /// target, the other options that matter are `optimize` and `soft_placement`.
    pub target: String,
    /// Which devices steps may use: a GPU when present (the default), the CPU only, or a GPU
    /// required. Ignored with a `target` (that runtime has its own devices).
    pub device: DevicePolicy,
}

/// Where a session's steps run ([`SessionOptions::device`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Every device of the session: with a GPU present, ops with a GPU kernel run there (TF's
    /// rule) and the rest on the CPU; without one, everything on the CPU.
    #[default]
    Auto,
    /// The CPU devices only: no device of any factory, whatever the machine has.
    Cpu,
    /// As `Auto`, but creating the session fails when it has no GPU device.
    Gpu,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            inter_op_threads: 0,
            optimize: true,
            cpu_devices: 1,
            soft_placement: true,
            device_factories: Vec::new(),
            registered_devices: true,
            target: String::new(),
            device: DevicePolicy::Auto,
        }
    }
}
