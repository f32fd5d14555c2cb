//! (being written)

use crate::kernel::KernelRegistry;

pub fn register(_r: &mut KernelRegistry) {}
