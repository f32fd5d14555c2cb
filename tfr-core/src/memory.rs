//! Memory spaces, device buffers and allocators.
//!
//! Every tensor's buffer lives in one memory space: host memory (what CPU kernels read, and
//! where feeds and fetches live), or the memory of one accelerator. A tensor in device memory
//! holds a [`DeviceBuffer`], opaque to tfr-core: only its device's kernels and copies read it,
//! so a value that reaches a kernel of another memory space without a copy is an error naming
//! the node instead of a wrong read.

use crate::error::KResult;
use crate::tensor::Tensor;
use std::any::Any;
use std::fmt;
use tfr_graph::DType;

/// Where a tensor's buffer lives: `kind` names the memory (`"host"`, a device type's name for
/// device memory) and `index` the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemorySpace {
    pub kind: &'static str,
    pub index: u32,
}

impl MemorySpace {
    /// Host memory, shared by every CPU device of the process.
    pub const HOST: MemorySpace = MemorySpace {
        kind: "host",
        index: 0,
    };

    pub fn is_host(self) -> bool {
        self == MemorySpace::HOST
    }
}

impl fmt::Display for MemorySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            f.write_str("host memory")
        } else {
            write!(f, "{}:{} memory", self.kind, self.index)
        }
    }
}

/// A buffer in a device's memory: its memory space, element type and count, and what the
/// device keeps for it (a CUDA allocation, an arena block), which only the device reads.
pub struct DeviceBuffer {
    space: MemorySpace,
    dtype: DType,
    len: usize,
    mem: Box<dyn Any + Send + Sync>,
}

impl DeviceBuffer {
    pub fn new(
        space: MemorySpace,
        dtype: DType,
        len: usize,
        mem: impl Any + Send + Sync,
    ) -> DeviceBuffer {
        DeviceBuffer {
            space,
            dtype,
            len,
            mem: Box::new(mem),
        }
    }
    pub fn memory_space(&self) -> MemorySpace {
        self.space
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device's own handle of the buffer, when it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.mem.downcast_ref()
    }
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceBuffer({} x{} in {})",
            self.dtype, self.len, self.space
        )
    }
}

/// What an allocator has handed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Allocations made so far.
    pub allocations: u64,
    pub bytes_in_use: u64,
    pub peak_bytes_in_use: u64,
}

/// The allocator of one memory space.
pub trait Allocator: Send + Sync {
    fn name(&self) -> &str;
    fn memory_space(&self) -> MemorySpace;
    /// A zero-filled tensor of `dtype` and `shape` in this memory (`ResourceExhausted` when
    /// it does not fit).
    fn allocate(&self, dtype: DType, shape: &[usize]) -> KResult<Tensor>;
    /// Counts kept by allocators that track their memory (the host allocator does not: it is
    /// the process heap).
    fn stats(&self) -> AllocatorStats {
        AllocatorStats::default()
    }
}

/// The process heap, through the kernels' fallible allocation.
#[derive(Debug, Default)]
pub struct HostAllocator;

impl Allocator for HostAllocator {
    fn name(&self) -> &str {
        "host"
    }
    fn memory_space(&self) -> MemorySpace {
        MemorySpace::HOST
    }
    fn allocate(&self, dtype: DType, shape: &[usize]) -> KResult<Tensor> {
        let data = crate::kernels::output_alloc::zeros(dtype, shape)?;
        Ok(Tensor::from_buffer(shape, data)?)
    }
}
