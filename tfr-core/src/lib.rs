//! `tfr-core`: the runtime. Tensors, CPU kernels, the dataflow executor, `Session`, variables.
//!
//! Kernels never see the graph: they are built from a node's attributes and static types and
//! compute on [`Tensor`]s. The executor keeps immutable per-signature state ([`Executable`])
//! apart from per-step state.

pub mod device;
pub mod error;
pub mod executor;
pub mod kernel;
pub mod kernels;
pub mod memory;
pub mod num;
pub mod passes;
pub mod placement;
pub mod rendezvous;
pub mod resource;
pub mod scalar_code;
pub mod session;
pub mod session_target;
pub mod tensor;

pub use device::{register_device_factory, CpuDevice, DeviceBackend, DeviceFactory};
pub use error::{Code, Error, KernelError, Result};
pub use executor::{
    loop_machine_code, set_loop_machine_code, set_step_polling, ControlFlowStats, Executable,
    NodeExecStats, OpSummary, RunMetadata, RunOptions,
};
pub use kernel::{
    find_kernel, kernel_registry, register_kernels, DeviceType, KernelContext, KernelInit, OpKernel,
};
pub use memory::{Allocator, AllocatorStats, DeviceBuffer, MemorySpace};
pub use session::{Callable, DevicePolicy, Program, RemoteStep, Session, SessionOptions};
pub use session_target::{register_session_factory, SessionFactory, TargetSession};
pub use tensor::{Scalar, Tensor};
