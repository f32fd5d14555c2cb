//! GPUs as devices of the runtime: a [`DeviceBackend`] per GPU (device memory through the
//! caching allocator, copies through `CudaTensor::from_host`/`to_host`), a device factory,
//! and the kernels of [`crate::ops`] registered for `DeviceType::GPU` through the same entry
//! point any device crate uses. Nothing is registered without a usable GPU ([`register`]).
//!
//! Not run on a GPU yet (the machines that build this have none): see ARCHITECTURE.md,
//! "Devices", for what a GPU run must check first.

use crate::{available, ops, CudaDevice, CudaError, CudaTensor};
use std::any::Any;
use std::sync::{Arc, OnceLock};
use tfr_core::kernels::sendrecv_ops::register_device_transfers;
use tfr_core::{
    register_device_factory, register_kernels, Allocator, AllocatorStats, DeviceBackend,
    DeviceBuffer, DeviceFactory, DeviceType, KernelContext, KernelError, KernelInit, MemorySpace,
    OpKernel, Tensor,
};
use tfr_graph::{DType, DTypeSet};

fn kernel_error(e: CudaError) -> KernelError {
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
    fn wrap(&self, t: CudaTensor) -> Result<Tensor, KernelError> {
        let shape = t.shape().to_vec();
        let (dtype, len) = (t.dtype(), t.num_elements());
        Ok(Tensor::from_device(
            &shape,
            DeviceBuffer::new(self.space, dtype, len, t),
        )?)
    }

    /// The GPU buffer of input `t` (an error naming the memory it is in otherwise).
    fn unwrap<'t>(&self, i: usize, t: &'t Tensor) -> Result<&'t CudaTensor, KernelError> {
        t.device_buffer()
            .filter(|b| b.memory_space() == self.space)
            .and_then(|b| b.downcast_ref::<CudaTensor>())
            .ok_or_else(|| {
                KernelError::invalid(format!(
                    "input {i} is in {}, but this kernel reads {}: the value reached it \
                     without a copy",
                    t.memory_space(),
                    self.space
                ))
            })
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

/// What a GPU kernel computes from its inputs on the GPU.
type GpuFn =
    Box<dyn Fn(&GpuDevice, &KernelContext<'_>) -> Result<CudaTensor, KernelError> + Send + Sync>;

struct GpuKernel {
    device: Arc<dyn DeviceBackend>,
    f: GpuFn,
}

impl OpKernel for GpuKernel {
    fn compute(&self, ctx: &mut KernelContext<'_>) -> Result<(), KernelError> {
        let dev = self
            .device
            .as_any()
            .downcast_ref::<GpuDevice>()
            .ok_or_else(|| KernelError::internal("a GPU kernel on another device"))?;
        let y = (self.f)(dev, ctx)?;
        let y = dev.wrap(y)?;
        ctx.set_output(y);
        Ok(())
    }
}

fn gpu_kernel(init: &KernelInit<'_>, f: GpuFn) -> Result<Box<dyn OpKernel>, String> {
    let device = init
        .device
        .cloned()
        .ok_or_else(|| format!("`{}` ({}) needs its GPU", init.node, init.op))?;
    Ok(Box::new(GpuKernel { device, f }))
}

fn unary_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let x = d.unwrap(0, ctx.input(0))?;
            ops::unary(&d.dev, &op, x).map_err(kernel_error)
        }),
    )
}

fn binary_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let (x, y) = (d.unwrap(0, ctx.input(0))?, d.unwrap(1, ctx.input(1))?);
            ops::binary(&d.dev, &op, x, y).map_err(kernel_error)
        }),
    )
}

fn softmax_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let log = init.op == "LogSoftmax";
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let x = d.unwrap(0, ctx.input(0))?;
            if log {
                ops::log_softmax(&d.dev, x)
            } else {
                ops::softmax(&d.dev, x)
            }
            .map_err(kernel_error)
        }),
    )
}

fn matmul_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ta = init.attrs.boolean("transpose_a").copied().unwrap_or(false);
    let tb = init.attrs.boolean("transpose_b").copied().unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let (a, b) = (d.unwrap(0, ctx.input(0))?, d.unwrap(1, ctx.input(1))?);
            ops::matmul(&d.dev, a, b, ta, tb).map_err(kernel_error)
        }),
    )
}

/// Reductions over the last axis or over all axes (what `ops::reduce` computes); the axes
/// input is small and read on the host (copied back when it lives on the GPU; TF keeps such
/// arguments in host memory, which tfr does not model yet).
fn reduce_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    let keep = init.attrs.boolean("keep_dims").copied().unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let x = d.unwrap(0, ctx.input(0))?;
            let axes_t = d.copy_to_host(ctx.input(1).clone())?;
            let rank = x.rank() as i64;
            let mut axes: Vec<i64> = (0..axes_t.num_elements())
                .map(|k| axes_t.get_i64(k))
                .map(|a| if a < 0 { a + rank } else { a })
                .collect();
            axes.sort_unstable();
            axes.dedup();
            let all: Vec<i64> = (0..rank).collect();
            if axes == [rank - 1] {
                ops::reduce(&d.dev, &op, x, keep).map_err(kernel_error)
            } else if axes == all {
                let flat = x.reshaped(&[1, x.num_elements()]).map_err(kernel_error)?;
                let y = ops::reduce(&d.dev, &op, &flat, false).map_err(kernel_error)?;
                let shape = if keep { vec![1; x.rank()] } else { vec![] };
                y.reshaped(&shape).map_err(kernel_error)
            } else {
                Err(KernelError::invalid(format!(
                    "{op} on the GPU reduces the last axis or all axes, not {axes:?} of rank {rank}"
                )))
            }
        }),
    )
}

/// Registers the GPU kernels (float32, what `ops` computes) and the GPU device factory, once,
/// when a GPU is usable; otherwise registers nothing and returns why.
pub fn register() -> Result<usize, String> {
    static DONE: OnceLock<Result<usize, String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let n = available()?;
        let f32s = DTypeSet::of(&[DType::F32]);
        register_kernels(|r| {
            for op in ops::unary_ops() {
                r.register(op, DeviceType::GPU, f32s, unary_kernel);
            }
            for op in ops::binary_ops() {
                r.register(op, DeviceType::GPU, f32s, binary_kernel);
            }
            for op in ops::reduction_ops() {
                r.register(op, DeviceType::GPU, f32s, reduce_kernel);
            }
            r.register("Softmax", DeviceType::GPU, f32s, softmax_kernel);
            r.register("LogSoftmax", DeviceType::GPU, f32s, softmax_kernel);
            r.register("MatMul", DeviceType::GPU, f32s, matmul_kernel);
            register_device_transfers(r, DeviceType::GPU);
        });
        register_device_factory(Arc::new(GpuFactory));
        Ok(n)
    })
    .clone()
}
