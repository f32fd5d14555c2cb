//! GPUs as devices of the runtime: a [`DeviceBackend`] per GPU (device memory through the
//! caching allocator, copies through `CudaTensor::from_host`/`to_host`), a device factory,
//! and the kernels of [`crate::ops`] registered for `DeviceType::GPU` through the same entry
//! point any device crate uses. Nothing is registered without a usable GPU ([`register`]).
//!
//! Not run on a GPU yet (the machines that build this have none): see ARCHITECTURE.md,
//! "Devices", for what a GPU run must check first.

use crate::gpu_kernels::gpu_ops;
use crate::{available, CudaDevice, CudaError, CudaTensor};
use std::any::Any;
use std::sync::{Arc, OnceLock};
use tfr_core::kernels::sendrecv_ops::register_device_transfers;
use tfr_core::{
    register_device_factory, register_kernels, Allocator, AllocatorStats, DeviceBackend,
    DeviceBuffer, DeviceFactory, DeviceType, KernelContext, KernelError, MemorySpace, Tensor,
};
use tfr_graph::{DType, DTypeSet};

pub(crate) fn kernel_error(e: CudaError) -> KernelError {
    KernelError::internal(e.0)
}

/// One GPU as a runtime device.
#[derive(Debug)]
pub struct GpuDevice {
    dev: Arc<CudaDevice>,
    space: MemorySpace,
}

impl GpuDevice {
    pub fn new(dev: Arc<CudaDevice>) -> GpuDevice {
        let space = MemorySpace {
            kind: DeviceType::GPU.0,
            index: dev.ordinal() as u32,
        };
        GpuDevice { dev, space }
    }

    pub fn cuda(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// A tensor of this GPU's memory wrapping `t`.
    pub(crate) fn wrap(&self, t: CudaTensor) -> Result<Tensor, KernelError> {
        let shape = t.shape().to_vec();
        let (dtype, len) = (t.dtype(), t.num_elements());
        Ok(Tensor::from_device(
            &shape,
            DeviceBuffer::new(self.space, dtype, len, t),
        )?)
    }

    /// The GPU buffer of `t`, viewed with `t`'s shape (a reshape on the host changes the
    /// tensor's shape, not the buffer's); an error naming the memory it is in otherwise.
    pub(crate) fn unwrap(&self, i: usize, t: &Tensor) -> Result<CudaTensor, KernelError> {
        let c = t
            .device_buffer()
            .filter(|b| b.memory_space() == self.space)
            .and_then(|b| b.downcast_ref::<CudaTensor>())
            .ok_or_else(|| {
                KernelError::invalid(format!(
                    "input {i} is in {}, but this kernel reads {}: the value reached it \
                     without a copy",
                    t.memory_space(),
                    self.space
                ))
            })?;
        c.reshaped(t.shape()).map_err(kernel_error)
    }

    /// Input `i` on this GPU: a host value (a small integer argument that stayed in host
    /// memory, as TF keeps them) is copied in, queued on the stream without waiting.
    pub(crate) fn input(
        &self,
        ctx: &KernelContext<'_>,
        i: usize,
    ) -> Result<CudaTensor, KernelError> {
        let t = ctx.input(i);
        if t.is_host() {
            return CudaTensor::from_host(&self.dev, t).map_err(kernel_error);
        }
        self.unwrap(i, t)
    }

    /// Input `i` as integers read on the host (shapes, axes, sizes). A value in GPU memory is
    /// copied back, which waits for the work queued before it.
    pub(crate) fn host_ints(
        &self,
        ctx: &KernelContext<'_>,
        i: usize,
    ) -> Result<Vec<i64>, KernelError> {
        let t = ctx.input(i);
        let t = if t.is_host() {
            t.clone()
        } else {
            self.copy_to_host(t.clone())?
        };
        if !t.dtype().is_integer() {
            return Err(KernelError::invalid(format!(
                "input {i} must be integer, got {}",
                t.dtype()
            )));
        }
        Ok((0..t.num_elements()).map(|k| t.get_i64(k)).collect())
    }
}

impl Allocator for GpuDevice {
    fn name(&self) -> &str {
        "cuda-caching"
    }
    fn memory_space(&self) -> MemorySpace {
        self.space
    }
    fn allocate(&self, dtype: DType, shape: &[usize]) -> Result<Tensor, KernelError> {
        let t = CudaTensor::zeros(&self.dev, dtype, shape)
            .map_err(|e| KernelError::resource_exhausted(e.0))?;
        self.wrap(t)
    }
    fn stats(&self) -> AllocatorStats {
        let s = self.dev.stats();
        AllocatorStats {
            allocations: s.device_allocs + s.reuses,
            bytes_in_use: s.in_use as u64,
            peak_bytes_in_use: s.peak_in_use as u64,
        }
    }
}

impl DeviceBackend for GpuDevice {
    fn device_type(&self) -> DeviceType {
        DeviceType::GPU
    }
    fn index(&self) -> u32 {
        self.space.index
    }
    fn memory_space(&self) -> MemorySpace {
        self.space
    }
    fn allocator(&self) -> &dyn Allocator {
        self
    }
    fn copy_from_host(&self, t: Tensor) -> Result<Tensor, KernelError> {
        if t.dtype() == DType::Resource || t.memory_space() == self.space {
            return Ok(t);
        }
        // Enqueued on the device's stream: later kernels on it are ordered after the copy.
        let c = CudaTensor::from_host(&self.dev, &t).map_err(kernel_error)?;
        self.wrap(c)
    }
    fn copy_to_host(&self, t: Tensor) -> Result<Tensor, KernelError> {
        if t.is_host() {
            return Ok(t);
        }
        // Waits for the stream up to this copy only (not the whole device).
        self.unwrap(0, &t)?.to_host(&self.dev).map_err(kernel_error)
    }
    fn priority(&self) -> i32 {
        // TF's rule: a GPU kernel wins over the CPU's.
        100
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The GPUs of this machine (none without a usable CUDA installation).
#[derive(Debug, Default)]
pub struct GpuFactory;

impl DeviceFactory for GpuFactory {
    fn device_type(&self) -> DeviceType {
        DeviceType::GPU
    }
    fn create_devices(&self) -> Result<Vec<Arc<dyn DeviceBackend>>, String> {
        let n = match available() {
            Ok(n) => n,
            Err(_) => return Ok(Vec::new()),
        };
        (0..n)
            .map(|i| {
                CudaDevice::get(i)
                    .map(|d| Arc::new(GpuDevice::new(d)) as Arc<dyn DeviceBackend>)
                    .map_err(|e| e.0)
            })
            .collect()
    }
}

/// Registers the GPU kernels ([`crate::gpu_kernels::gpu_ops`]) and the GPU device factory,
/// once, when a GPU is usable; otherwise registers nothing and returns why.
pub fn register() -> Result<usize, String> {
    static DONE: OnceLock<Result<usize, String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let n = available()?;
        register_kernels_for(DeviceType::GPU);
        register_device_factory(Arc::new(GpuFactory));
        Ok(n)
    })
    .clone()
}

/// Registers the GPU kernels and the device transfers for `device` (`DeviceType::GPU` in
/// [`register`]; the fallback report plans with another type, see [`crate::fallback`]).
pub(crate) fn register_kernels_for(device: DeviceType) {
    register_kernels(|r| {
        for k in gpu_ops() {
            r.register(k.op, device, DTypeSet::of(k.dtypes), k.factory);
        }
        register_device_transfers(r, device);
    });
}
