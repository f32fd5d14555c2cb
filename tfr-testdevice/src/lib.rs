//! A test accelerator: device type `TESTACCEL` (`/device:TESTACCEL:0`), whose memory is a
//! separate host arena with its own allocator. Its tensors are tagged with its memory space,
//! so every crossing between it and the CPU needs a real copy (counted here), and a value that
//! reaches a kernel of the other memory space without one is an error naming the node.
//!
//! Its kernels reuse the CPU math (the point is the plumbing): each wraps the CPU kernel of the
//! same op, checks that its inputs are in the arena, computes on host views of them and moves
//! the results into the arena. They are registered through
//! [`tfr_core::register_kernels`], the entry point any device crate uses.

use smallvec::SmallVec;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use tfr_core::kernels::sendrecv_ops::register_device_transfers;
use tfr_core::{
    find_kernel, register_kernels, Allocator, AllocatorStats, DeviceBackend, DeviceBuffer,
    DeviceFactory, DeviceType, KernelContext, KernelError, KernelInit, MemorySpace, OpKernel,
    Tensor,
};
use tfr_graph::{Buffer, DType, DTypeSet};

/// The test accelerator's device type.
pub const TEST_DEVICE: DeviceType = DeviceType("TESTACCEL");

/// Ops with a kernel on the test device: enough for an MLP's forward pass, its gradient and
/// SGD with variables on the device. Everything else stays on the CPU.
pub const SUPPORTED_OPS: &[&str] = &[
    "Const",
    "Identity",
    "Add",
    "AddN",
    "Sub",
    "Mul",
    "Neg",
    "Square",
    "MatMul",
    "Relu",
    "ReluGrad",
    "Sum",
    "Mean",
    "Reshape",
    "Shape",
    "Fill",
    "ZerosLike",
    "OnesLike",
    "Tile",
    "BroadcastTo",
    "BroadcastGradientArgs",
    "BiasAdd",
    "BiasAddGrad",
    "VarHandleOp",
    "ReadVariableOp",
    "AssignVariableOp",
    "ResourceApplyGradientDescent",
    "ResourceApplyGradientDescentMatMul",
];

/// The arena's counts, shared with the blocks it handed out (a block returns its bytes when
/// the last tensor holding it is dropped).
#[derive(Debug, Default)]
struct ArenaCounts {
    allocations: AtomicU64,
    in_use: AtomicU64,
    peak: AtomicU64,
}

/// A block of the arena: the elements (host memory, but only the device reads them).
struct Block {
    data: Arc<Buffer>,
    bytes: u64,
    counts: Arc<ArenaCounts>,
}

impl Drop for Block {
    fn drop(&mut self) {
        self.counts.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The device's allocator: a bounded arena of its own.
#[derive(Debug)]
pub struct Arena {
    space: MemorySpace,
    limit: u64,
    counts: Arc<ArenaCounts>,
}

impl Arena {
    /// Moves `data` into the arena as a tensor of `shape` (the arena owns it from now on).
    fn adopt(&self, shape: &[usize], data: Buffer) -> Result<Tensor, KernelError> {
        let dtype = data.dtype();
        let len = data.len();
        let bytes = (len * dtype.size_of()) as u64;
        let now = self.counts.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if now > self.limit {
            self.counts.in_use.fetch_sub(bytes, Ordering::Relaxed);
            return Err(KernelError::resource_exhausted(format!(
                "{}: {bytes} bytes do not fit ({} of {} in use)",
                self.space,
                now - bytes,
                self.limit
            )));
        }
        self.counts.peak.fetch_max(now, Ordering::Relaxed);
        self.counts.allocations.fetch_add(1, Ordering::Relaxed);
        let block = Block {
            data: Arc::new(data),
            bytes,
            counts: self.counts.clone(),
        };
        Ok(Tensor::from_device(
            shape,
            DeviceBuffer::new(self.space, dtype, len, block),
        )?)
    }
}

impl Allocator for Arena {
    fn name(&self) -> &str {
        "testaccel-arena"
    }
    fn memory_space(&self) -> MemorySpace {
        self.space
    }
    fn allocate(&self, dtype: DType, shape: &[usize]) -> Result<Tensor, KernelError> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let n = n.ok_or_else(|| KernelError::invalid(format!("shape {shape:?} overflows")))?;
        self.adopt(shape, Buffer::zeros(dtype, n))
    }
    fn stats(&self) -> AllocatorStats {
        AllocatorStats {
            allocations: self.counts.allocations.load(Ordering::Relaxed),
            bytes_in_use: self.counts.in_use.load(Ordering::Relaxed),
            peak_bytes_in_use: self.counts.peak.load(Ordering::Relaxed),
        }
    }
}

/// One test accelerator.
#[derive(Debug)]
pub struct TestDevice {
    index: u32,
    arena: Arena,
    to_device: AtomicU64,
    to_host: AtomicU64,
}

impl TestDevice {
    /// Device `index` with an arena of `limit_bytes`.
    pub fn new(index: u32, limit_bytes: u64) -> Arc<TestDevice> {
        register();
        Arc::new(TestDevice {
            index,
            arena: Arena {
                space: MemorySpace {
                    kind: TEST_DEVICE.0,
                    index,
                },
                limit: limit_bytes,
                counts: Arc::default(),
            },
            to_device: AtomicU64::new(0),
            to_host: AtomicU64::new(0),
        })
    }

    /// (host-to-device, device-to-host) copies made so far.
    pub fn copies(&self) -> (u64, u64) {
        (
            self.to_device.load(Ordering::Relaxed),
            self.to_host.load(Ordering::Relaxed),
        )
    }

    /// A host view of a tensor of this device (shares the arena block: no copy), for the CPU
    /// math its kernels reuse.
    fn host_view(&self, t: &Tensor) -> Result<Tensor, KernelError> {
        let block = self.block(t)?;
        Ok(Tensor::from_shared(t.shape(), block.data.clone())?)
    }

    fn block<'t>(&self, t: &'t Tensor) -> Result<&'t Block, KernelError> {
        t.device_buffer()
            .filter(|b| b.memory_space() == self.arena.space)
            .and_then(|b| b.downcast_ref::<Block>())
            .ok_or_else(|| {
                KernelError::invalid(format!(
                    "the tensor is in {}, not {}",
                    t.memory_space(),
                    self.arena.space
                ))
            })
    }
}

impl DeviceBackend for TestDevice {
    fn device_type(&self) -> DeviceType {
        TEST_DEVICE
    }
    fn index(&self) -> u32 {
        self.index
    }
    fn memory_space(&self) -> MemorySpace {
        self.arena.space
    }
    fn allocator(&self) -> &dyn Allocator {
        &self.arena
    }
    fn copy_from_host(&self, t: Tensor) -> Result<Tensor, KernelError> {
        if t.dtype() == DType::Resource || t.memory_space() == self.arena.space {
            return Ok(t);
        }
        if !t.is_host() {
            return Err(KernelError::invalid(format!(
                "cannot copy a tensor in {} into {}: copy it to the host first",
                t.memory_space(),
                self.arena.space
            )));
        }
        self.to_device.fetch_add(1, Ordering::Relaxed);
        self.arena.adopt(t.shape(), t.buffer().into_owned())
    }
    fn copy_to_host(&self, t: Tensor) -> Result<Tensor, KernelError> {
        if t.is_host() {
            return Ok(t);
        }
        let data = (*self.block(&t)?.data).clone();
        self.to_host.fetch_add(1, Ordering::Relaxed);
        Ok(Tensor::from_buffer(t.shape(), data)?)
    }
    fn priority(&self) -> i32 {
        // Above the CPU's 0: supported ops go here by default.
        10
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Makes the given test devices (kept by the caller, which reads their copy counts).
#[derive(Debug)]
pub struct TestDeviceFactory {
    pub devices: Vec<Arc<TestDevice>>,
}

impl TestDeviceFactory {
    /// `n` devices with 256 MiB arenas.
    pub fn new(n: u32) -> Arc<TestDeviceFactory> {
        Arc::new(TestDeviceFactory {
            devices: (0..n).map(|i| TestDevice::new(i, 256 << 20)).collect(),
        })
    }
}

impl DeviceFactory for TestDeviceFactory {
    fn device_type(&self) -> DeviceType {
        TEST_DEVICE
    }
    fn create_devices(&self) -> Result<Vec<Arc<dyn DeviceBackend>>, String> {
        Ok(self
            .devices
            .iter()
            .map(|d| d.clone() as Arc<dyn DeviceBackend>)
            .collect())
    }
}

/// A CPU kernel run on the test device's memory.
struct TestKernel {
    inner: Box<dyn OpKernel>,
    device: Arc<dyn DeviceBackend>,
}

impl OpKernel for TestKernel {
    fn compute(&self, ctx: &mut KernelContext<'_>) -> Result<(), KernelError> {
        let dev = self
            .device
            .as_any()
            .downcast_ref::<TestDevice>()
            .ok_or_else(|| KernelError::internal("a TESTACCEL kernel on another device"))?;
        let mut inputs: SmallVec<[Option<Tensor>; 4]> = SmallVec::new();
        for i in 0..ctx.num_inputs() {
            let t = ctx.take_input(i);
            if t.dtype() == DType::Resource {
                // Handles are host metadata on every device.
                inputs.push(Some(t));
                continue;
            }
            if t.memory_space() != dev.arena.space {
                return Err(KernelError::invalid(format!(
                    "input {i} is in {}, but this kernel runs on /device:{}:{} and reads {}: \
                     the value reached it without a copy",
                    t.memory_space(),
                    TEST_DEVICE,
                    dev.index,
                    dev.arena.space
                )));
            }
            inputs.push(Some(dev.host_view(&t)?));
        }
        let mut inner = KernelContext::new(inputs, ctx.resources, ctx.feeds);
        self.inner.compute(&mut inner)?;
        for t in inner.into_outputs() {
            let t = if t.dtype() == DType::Resource || !t.is_host() {
                t
            } else {
                // The result becomes arena memory (an allocation, not a transfer).
                dev.arena.adopt(t.shape(), t.buffer().into_owned())?
            };
            ctx.set_output(t);
        }
        Ok(())
    }
}

fn test_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let device = init
        .device
        .cloned()
        .ok_or_else(|| format!("`{}` ({}) needs its TESTACCEL device", init.node, init.op))?;
    let cpu = find_kernel(init.op, DeviceType::CPU, init.dtype())
        .ok_or_else(|| format!("no CPU kernel of {} to run on TESTACCEL", init.op))?;
    let inner = cpu(&KernelInit {
        node: init.node,
        op: init.op,
        attrs: init.attrs,
        inputs: init.inputs,
        outputs: init.outputs,
        device: None,
    })?;
    Ok(Box::new(TestKernel { inner, device }))
}

/// Registers the test device's kernels (once per process): [`SUPPORTED_OPS`] for the dtypes
/// their CPU kernels take, plus the transfers (`_Arg`, `_Send`, `_Recv`) that copy.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        register_kernels(|r| {
            for &op in SUPPORTED_OPS {
                let dtypes = r.dtypes(op, DeviceType::CPU);
                if !dtypes.is_empty() {
                    r.register(op, TEST_DEVICE, DTypeSet::of(&dtypes), test_kernel);
                }
            }
            register_device_transfers(r, TEST_DEVICE);
        })
    });
}
