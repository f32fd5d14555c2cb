//! The kernel interface. Kernels never see the graph: a kernel is built once per node from the
//! node's attributes and static input/output types ([`KernelInit`]), then computes on tensors.

use crate::device::DeviceBackend;
use crate::error::{KResult, KernelError};
use crate::resource::ResourceMgr;
use crate::scalar_code::{Register, ScalarCode};
use crate::tensor::{Scalar, Tensor};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use tfr_graph::{Attrs, DType, DTypeSet, TensorType};

/// A kind of device kernels are written for, named as in device specs (`/device:GPU:0`).
/// Open: any crate may define one (`DeviceType("TPU")`) and register kernels for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceType(pub &'static str);

impl DeviceType {
    pub const CPU: DeviceType = DeviceType("CPU");
    /// NVIDIA GPUs (tfr-cuda).
    pub const GPU: DeviceType = DeviceType("GPU");

    pub fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What a kernel is built from.
pub struct KernelInit<'a> {
    pub node: &'a str,
    pub op: &'a str,
    pub attrs: &'a Attrs,
    pub inputs: &'a [TensorType],
    pub outputs: &'a [TensorType],
    /// The device the kernel runs on, for kernels that need its context (a CUDA kernel its
    /// stream and handles, through [`DeviceBackend::as_any`]); `None` for host kernels built
    /// outside a session (constant folding, tests).
    pub device: Option<&'a Arc<dyn DeviceBackend>>,
}

impl KernelInit<'_> {
    /// The dtype kernels are selected by: input 0's, or output 0's for ops without inputs.
    pub fn dtype(&self) -> DType {
        self.inputs
            .first()
            .or(self.outputs.first())
            .map_or(DType::F32, |t| t.dtype)
    }
}

/// Per-call state a kernel computes with.
pub struct KernelContext<'a> {
    inputs: SmallVec<[Option<Tensor>; 4]>,
    outputs: SmallVec<[Tensor; 2]>,
    pub resources: &'a ResourceMgr,
    pub feeds: &'a [Tensor],
}

impl<'a> KernelContext<'a> {
    pub fn new(
        inputs: SmallVec<[Option<Tensor>; 4]>,
        resources: &'a ResourceMgr,
        feeds: &'a [Tensor],
    ) -> Self {
        KernelContext {
            inputs,
            outputs: SmallVec::new(),
            resources,
            feeds,
        }
    }
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }
    /// Input `i`. Panics only on a kernel bug (reading an input it already took).
    pub fn input(&self, i: usize) -> &Tensor {
        self.inputs[i]
            .as_ref()
            .expect("kernel read an input it had taken")
    }
    /// Takes input `i` by value, so a kernel holding the only reference can reuse its buffer.
    pub fn take_input(&mut self, i: usize) -> Tensor {
        self.inputs[i].take().expect("kernel took an input twice")
    }
    pub fn set_output(&mut self, t: Tensor) {
        self.outputs.push(t);
    }
    pub fn into_outputs(self) -> SmallVec<[Tensor; 2]> {
        self.outputs
    }
    /// Readies this context for the next node without reallocating (executor use).
    pub(crate) fn reset_inputs(&mut self) {
        self.inputs.clear();
        self.outputs.clear();
    }
    pub(crate) fn push_input(&mut self, t: Tensor) {
        self.inputs.push(Some(t));
    }
    pub(crate) fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }
    pub(crate) fn drain_outputs(&mut self) -> smallvec::Drain<'_, [Tensor; 2]> {
        self.outputs.drain(..)
    }
    /// Input `i` as a list of integers (axes, shapes, sizes).
    pub fn input_ints(&self, i: usize) -> KResult<Vec<i64>> {
        let t = self.input(i);
        if !t.dtype().is_integer() {
            return Err(KernelError::invalid(format!(
                "input {i} must be integer, got {}",
                t.dtype()
            )));
        }
        Ok((0..t.num_elements()).map(|k| t.get_i64(k)).collect())
    }
}

/// A computation for one node.
pub trait OpKernel: Send + Sync {
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult;

    /// Whether [`OpKernel::compute_scalar`] may answer (asked once, when the step is built).
    fn has_scalar_path(&self) -> bool {
        false
    }

    /// The fast path for rank-0 inputs held inline (loop counters, predicates, scalar loop
    /// state): writes the single output into `out` (usually the output slot itself, so the
    /// value is stored once, field by field) and returns `true`; `false`, with `out`
    /// unspecified, when this kernel has no such path or the inputs are not the dtypes it was
    /// built for, and the caller runs [`OpKernel::compute`] instead. When it answers it must
    /// agree with `compute` on the same inputs.
    fn compute_scalar(&self, _inputs: &[&Scalar], _out: &mut Scalar) -> bool {
        false
    }

    /// The scalar path compiled for one place in an all-scalar loop: pushes onto `code`
    /// instructions that read the registers `inputs` and write register `output`, computing
    /// exactly what `compute_scalar` would. `false` (with `code` to be discarded) when this
    /// kernel has no compiled form or does not compute on these dtypes; the loop then runs
    /// the general way.
    fn compile_scalar(
        &self,
        _inputs: &[Register],
        _output: Register,
        _code: &mut ScalarCode,
    ) -> bool {
        false
    }
}

/// Any closure over a context is a kernel.
impl<F> OpKernel for F
where
    F: Fn(&mut KernelContext<'_>) -> KResult + Send + Sync,
{
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult {
        self(ctx)
    }
}

pub type KernelFactory = fn(&KernelInit<'_>) -> Result<Box<dyn OpKernel>, String>;

struct KernelDef {
    dtypes: DTypeSet,
    factory: KernelFactory,
}

/// Kernels by (op, device); each registration covers a set of dtypes.
#[derive(Default)]
pub struct KernelRegistry {
    kernels: HashMap<(&'static str, DeviceType), Vec<KernelDef>>,
}

impl KernelRegistry {
    pub fn register(
        &mut self,
        op: &'static str,
        device: DeviceType,
        dtypes: DTypeSet,
        factory: KernelFactory,
    ) {
        self.kernels
            .entry((op, device))
            .or_default()
            .push(KernelDef { dtypes, factory });
    }
    /// Registers a CPU kernel.
    pub fn cpu(&mut self, op: &'static str, dtypes: DTypeSet, factory: KernelFactory) {
        self.register(op, DeviceType::CPU, dtypes, factory);
    }
    /// The factory for `op` (or the tfr op a TensorFlow alias of it names) on `device`.
    pub fn find(&self, op: &str, device: DeviceType, dtype: DType) -> Option<KernelFactory> {
        let op = tfr_graph::op_def::canonical_op(op);
        self.kernels
            .get(&(op, device))?
            .iter()
            .find(|d| d.dtypes.contains(dtype))
            .map(|d| d.factory)
    }
    pub fn has_op(&self, op: &str, device: DeviceType) -> bool {
        let op = tfr_graph::op_def::canonical_op(op);
        self.kernels.contains_key(&(op, device))
    }
    /// The dtypes a kernel exists for.
    pub fn dtypes(&self, op: &str, device: DeviceType) -> Vec<DType> {
        let op = tfr_graph::op_def::canonical_op(op);
        let Some(defs) = self.kernels.get(&(op, device)) else {
            return Vec::new();
        };
        DType::ALL
            .into_iter()
            .filter(|t| defs.iter().any(|d| d.dtypes.contains(*t)))
            .collect()
    }
}

fn registry_lock() -> &'static RwLock<KernelRegistry> {
    static REG: OnceLock<RwLock<KernelRegistry>> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = KernelRegistry::default();
        crate::kernels::register_all(&mut r);
        RwLock::new(r)
    })
}

/// The process-wide kernel registry (read-locked while the guard lives; lookups happen when
/// an executable is built, never per kernel call). Hold the guard briefly: a registration
/// waits for it. [`find_kernel`] looks one factory up and releases the lock.
pub fn kernel_registry() -> RwLockReadGuard<'static, KernelRegistry> {
    // Registration cannot leave the map half-updated (pushes only), so a poisoned lock is
    // still a consistent registry.
    registry_lock().read().unwrap_or_else(|p| p.into_inner())
}

/// The factory for `op` on `device` for `dtype`, looked up without holding the registry.
pub fn find_kernel(op: &str, device: DeviceType, dtype: DType) -> Option<KernelFactory> {
    kernel_registry().find(op, device, dtype)
}

/// Adds kernels to the process-wide registry, before or after its first use (TF links
/// kernels per device the same way): a crate defining a device registers its kernels here at
/// start-up. Executables built earlier keep the kernels they were built with.
pub fn register_kernels(f: impl FnOnce(&mut KernelRegistry)) {
    let mut r = registry_lock().write().unwrap_or_else(|p| p.into_inner());
    f(&mut r);
}

/// Where the kernels of `op` come from when another crate registers them (tfr-core cannot
/// depend on it), for the "no kernel" error; empty for other ops.
pub fn missing_kernel_hint(op: &str) -> String {
    if tfr_graph::ops::summary_ops::SUMMARY_OPS.contains(&op) {
        " (summary ops' kernels are registered by tfr-tf: call \
         `tfr_tf::register_summary_kernels()` once, or create a `tfr_tf::SummaryWriter`, before \
         the first run)"
            .into()
    } else {
        String::new()
    }
}

/// Runs `$body` with `$T` bound to the Rust type of a numeric dtype; `$other` otherwise.
#[macro_export]
macro_rules! dispatch_numeric {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            tfr_graph::DType::F32 => {
                type $T = f32;
                $body
            }
            tfr_graph::DType::F64 => {
                type $T = f64;
                $body
            }
            tfr_graph::DType::I32 => {
                type $T = i32;
                $body
            }
            tfr_graph::DType::I64 => {
                type $T = i64;
                $body
            }
            tfr_graph::DType::U8 => {
                type $T = u8;
                $body
            }
            _ => $other,
        }
    };
}

/// Runs `$body` with `$T` bound to the Rust type of a float dtype (f32, f64).
#[macro_export]
macro_rules! dispatch_float {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            tfr_graph::DType::F32 => {
                type $T = f32;
                $body
            }
            tfr_graph::DType::F64 => {
                type $T = f64;
                $body
            }
            _ => $other,
        }
    };
}

/// Runs `$body` with `$T` bound to the Rust type of any value dtype.
#[macro_export]
macro_rules! dispatch_any {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            tfr_graph::DType::F32 => {
                type $T = f32;
                $body
            }
            tfr_graph::DType::F64 => {
                type $T = f64;
                $body
            }
            tfr_graph::DType::I32 => {
                type $T = i32;
                $body
            }
            tfr_graph::DType::I64 => {
                type $T = i64;
                $body
            }
            tfr_graph::DType::U8 => {
                type $T = u8;
                $body
            }
            tfr_graph::DType::Bool => {
                type $T = bool;
                $body
            }
            tfr_graph::DType::F16 => {
                type $T = tfr_graph::f16;
                $body
            }
            tfr_graph::DType::BF16 => {
                type $T = tfr_graph::bf16;
                $body
            }
            tfr_graph::DType::Resource => {
                type $T = String;
                $body
            }
            tfr_graph::DType::String => {
                type $T = Vec<u8>;
                $body
            }
        }
    };
}
