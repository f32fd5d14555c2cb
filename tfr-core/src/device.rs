//! Devices a session runs on. Each has a full name, a type (which selects kernels), a
//! [`DeviceBackend`] (its memory space, allocator, copies to and from the host, and the context
//! its kernels get) and a runner: persistent threads that run the device's partitions of steps.
//!
//! Devices other than the CPU come from [`DeviceFactory`]s: given to a session through
//! `SessionOptions::device_factories`, or registered process-wide with
//! [`register_device_factory`] (what a device crate such as tfr-cuda does at start-up when its
//! hardware is present).

use crate::error::KResult;
use crate::kernel::DeviceType;
use crate::memory::{Allocator, HostAllocator, MemorySpace};
use crate::tensor::Tensor;
use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, RwLock, Weak};
use tfr_graph::device::DeviceSpec;
use tfr_graph::DType;

/// What a device is to the runtime besides its threads.
pub trait DeviceBackend: Send + Sync + fmt::Debug {
    fn device_type(&self) -> DeviceType;
    /// The device's index among those of its type (`/device:GPU:<index>`).
    fn index(&self) -> u32;
    /// Where the tensors its kernels produce live.
    fn memory_space(&self) -> MemorySpace;
    fn allocator(&self) -> &dyn Allocator;
    /// Copies a host tensor into this device's memory: a feed or a received value (a tensor
    /// already there is returned as it is). Resource handles stay on the host.
    fn copy_from_host(&self, t: Tensor) -> KResult<Tensor>;
    /// Copies a tensor of this device's memory to the host: a sent or fetched value.
    fn copy_to_host(&self, t: Tensor) -> KResult<Tensor>;
    /// Default placement prefers the device types of highest priority that have a kernel for
    /// an op (TF's rule: an accelerator before the CPU).
    fn priority(&self) -> i32 {
        0
    }
    /// The device itself, for its kernels to downcast to their own type (a CUDA kernel finds
    /// its stream and handles there).
    fn as_any(&self) -> &dyn Any;
}

/// The CPU: host memory, so its copies are no-ops.
#[derive(Debug, Default)]
pub struct CpuDevice {
    index: u32,
    allocator: HostAllocator,
}

impl CpuDevice {
    pub fn new(index: u32) -> CpuDevice {
        CpuDevice {
            index,
            allocator: HostAllocator,
        }
    }
}

impl DeviceBackend for CpuDevice {
    fn device_type(&self) -> DeviceType {
        DeviceType::CPU
    }
    fn index(&self) -> u32 {
        self.index
    }
    fn memory_space(&self) -> MemorySpace {
        MemorySpace::HOST
    }
    fn allocator(&self) -> &dyn Allocator {
        &self.allocator
    }
    fn copy_from_host(&self, t: Tensor) -> KResult<Tensor> {
        Ok(t)
    }
    fn copy_to_host(&self, t: Tensor) -> KResult<Tensor> {
        Ok(t)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Whether a tensor must cross into `space` through a copy: resource handles are host
/// metadata in every memory space, and a tensor already in `space` stays.
pub fn needs_copy(t: &Tensor, space: MemorySpace) -> bool {
    t.dtype() != DType::Resource && t.memory_space() != space
}

/// Makes the devices of one type present on this machine.
pub trait DeviceFactory: Send + Sync + fmt::Debug {
    fn device_type(&self) -> DeviceType;
    /// The devices (none without the hardware); an error says why they cannot be used.
    fn create_devices(&self) -> Result<Vec<Arc<dyn DeviceBackend>>, String>;
}

fn factories() -> &'static RwLock<Vec<Arc<dyn DeviceFactory>>> {
    static F: RwLock<Vec<Arc<dyn DeviceFactory>>> = RwLock::new(Vec::new());
    &F
}

/// Registers a factory whose devices every session gets (unless its options say
/// `registered_devices: false`); it replaces an earlier one of the same device type.
pub fn register_device_factory(factory: Arc<dyn DeviceFactory>) {
    let mut f = factories().write().unwrap_or_else(|p| p.into_inner());
    f.retain(|g| g.device_type() != factory.device_type());
    f.push(factory);
}

/// The factories registered process-wide.
pub fn registered_device_factories() -> Vec<Arc<dyn DeviceFactory>> {
    factories()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Work for a device's runner. It returns what to do once its thread is back on the idle
/// list (typically: report the result), so whoever waits for that report finds the thread
/// idle again and the next step reuses it instead of starting another.
pub type Job = Box<dyn FnOnce() -> Box<dyn FnOnce() + Send> + Send + 'static>;

/// A job and the sender of the worker that runs it (handed back to the idle list after it).
struct Msg(Job, Sender<Msg>);

pub struct Device {
    pub spec: DeviceSpec,
    pub device_type: DeviceType,
    pub backend: Arc<dyn DeviceBackend>,
    /// Senders of the runner's idle threads.
    idle: Arc<Mutex<Vec<Sender<Msg>>>>,
    spawned: AtomicUsize,
}

impl Device {
    /// CPU device `index`.
    pub fn cpu(index: u32) -> Device {
        Device::new(Arc::new(CpuDevice::new(index)))
    }

    /// The local device `backend` stands for (`/job:localhost/replica:0/task:0/device:T:i`).
    pub fn new(backend: Arc<dyn DeviceBackend>) -> Device {
        Device {
            spec: DeviceSpec::local(backend.device_type().name(), backend.index()),
            device_type: backend.device_type(),
            backend,
            idle: Arc::default(),
            spawned: AtomicUsize::new(0),
        }
    }

    pub fn memory_space(&self) -> MemorySpace {
        self.backend.memory_space()
    }

    /// CPU device `index` of task `task` of job `job`: a device of a cluster, as the
    /// distributed runtime places steps over them (`/job:J/replica:0/task:T/device:CPU:N`).
    pub fn cpu_of_task(job: &str, task: u32, index: u32) -> Device {
        let mut device = Device::cpu(index);
        device.spec.job = Some(job.to_string());
        device.spec.task = Some(task);
        device
    }

    pub fn name(&self) -> String {
        self.spec.to_string()
    }

    /// Threads the device's runner has started (they persist across steps).
    pub fn runner_threads(&self) -> usize {
        self.spawned.load(Ordering::Relaxed)
    }

    /// Runs `job` on one of the device's persistent threads, dedicated to it until it returns:
    /// an idle one, or a new one when all are busy, so a partition that waits for a value from
    /// another device never holds a thread that another step's partition needs. A thread
    /// goes back to the idle list after its job, and ends when the device is dropped.
    pub fn run(&self, job: Job) -> std::io::Result<()> {
        let mut job = job;
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            let worker = match idle {
                Some(w) => w,
                None => self.spawn()?,
            };
            match worker.send(Msg(job, worker.clone())) {
                Ok(()) => return Ok(()),
                // That thread is gone: try another.
                Err(e) => job = (e.0).0,
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Sender<Msg>> {
        let (tx, rx) = channel::<Msg>();
        let idle: Weak<Mutex<Vec<Sender<Msg>>>> = Arc::downgrade(&self.idle);
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name(format!("tfr-{}-{n}", self.spec))
            .spawn(move || {
                while let Ok(Msg(job, me)) = rx.recv() {
                    // Jobs report their own failures; a panic must not take the thread along.
                    let then = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    let back = match idle.upgrade() {
                        Some(list) => match list.lock() {
                            Ok(mut v) => {
                                v.push(me);
                                true
                            }
                            Err(_) => false,
                        },
                        None => false,
                    };
                    if let Ok(then) = then {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(then));
                    }
                    if !back {
                        // The device is gone (or its list poisoned): end the thread.
                        return;
                    }
                }
            })?;
        Ok(tx)
    }
}
