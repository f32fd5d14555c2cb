//! Devices a session runs on. Each has a full name and a type (which selects kernels).

use crate::kernel::DeviceType;
use tfr_graph::device::DeviceSpec;

pub struct Device {
    pub spec: DeviceSpec,
    pub device_type: DeviceType,
}

impl Device {
    /// CPU device `index`.
    pub fn cpu(index: u32) -> Device {
        Device {
            spec: DeviceSpec::local("CPU", index),
            device_type: DeviceType::Cpu,
        }
    }

    pub fn name(&self) -> String {
        self.spec.to_string()
    }
}
