//! `tfr-cuda`: NVIDIA GPUs through `cudarc`, loaded dynamically, so the crate builds and its
//! tests pass on machines without CUDA (issue 8).
//!
//! - [`available`] says how many GPUs can be used, or why none can; it never panics.
//! - [`CudaDevice`]: one context, one compute stream (copies and kernels are ordered on it), a
//!   caching allocator ([`AllocStats`]), the NVRTC-compiled kernels and a cuBLAS handle.
//! - [`CudaTensor`]: a device buffer with a dtype and a shape; [`CudaTensor::from_host`] and
//!   [`CudaTensor::to_host`] convert from and to [`tfr_core::Tensor`].
//! - [`ops`]: elementwise unary and broadcasting binary ops generated from one table
//!   ([`kernels::UNARY_F32`], [`kernels::BINARY_F32`]), reductions over the last axis, softmax,
//!   and matmul through cuBLAS.
//!
//! All device memory is used on the device's single stream, so freed blocks can be handed to
//! the next allocation at once: the stream orders the new use after the old one.

pub mod alloc;
pub mod array_ops;
pub mod device;
pub mod fallback;
pub mod gpu_kernels;
mod gpu_kernels_nn;
pub mod kernels;
pub mod kernels_array;
pub mod kernels_nn;
pub mod nn_ops;
pub mod ops;
pub mod runtime;
pub mod select_ops;
pub mod tensor;

pub use alloc::AllocStats;
pub use device::CudaDevice;
pub use gpu_kernels::{gpu_op_names, gpu_ops, GpuOp};
pub use ops::{
    batch_matmul, binary, log_softmax, matmul, matmul_with, reduce, softmax, unary, Precision,
};
pub use tensor::CudaTensor;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// An error from the CUDA device, its libraries or a shape/dtype check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaError(pub String);

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CudaError {}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError(format!("CUDA driver: {e}"))
    }
}

impl From<cudarc::cublas::result::CublasError> for CudaError {
    fn from(e: cudarc::cublas::result::CublasError) -> Self {
        CudaError(format!("cuBLAS: {e:?}"))
    }
}

impl From<String> for CudaError {
    fn from(s: String) -> Self {
        CudaError(s)
    }
}

impl From<&str> for CudaError {
    fn from(s: &str) -> Self {
        CudaError(s.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CudaError>;

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f`, turning a panic inside `cudarc` (a missing library or symbol) into an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(CudaError(format!(
            "{what} panicked: {}",
            panic_message(&*p)
        )))
    })
}

/// Whether the CUDA driver library (`libcuda`) can be opened.
pub fn driver_library_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate library names and closes
    // what it opened; it calls no CUDA function.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC (`libnvrtc`), which compiles the kernels, can be opened.
pub fn nvrtc_library_present() -> bool {
    // SAFETY: as for `driver_library_present`: only `dlopen`/`dlclose` of candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether cuBLAS (`libcublas`), which runs matmul, can be opened.
pub fn cublas_library_present() -> bool {
    // SAFETY: as for `driver_library_present`: only `dlopen`/`dlclose` of candidate names.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

fn probe() -> std::result::Result<usize, String> {
    if !driver_library_present() {
        return Err("no GPU devices: the CUDA driver library (libcuda.so) was not found".into());
    }
    let count = guarded("CUDA driver initialization", || {
        Ok(cudarc::driver::CudaContext::device_count()?)
    })
    .map_err(|e| format!("no GPU devices: CUDA initialization failed ({e})"))?;
    if count <= 0 {
        return Err("no GPU devices: the CUDA driver reports none".into());
    }
    if !nvrtc_library_present() {
        return Err(format!("{count} GPU device(s), but NVRTC (libnvrtc.so) was not found, so no kernels can be compiled"));
    }
    if !cublas_library_present() {
        return Err(format!(
            "{count} GPU device(s), but cuBLAS (libcublas.so) was not found"
        ));
    }
    Ok(count as usize)
}

/// The number of usable GPUs, or why there are none. Probed once per process; never panics.
/// A GPU counts as usable when the driver, NVRTC and cuBLAS libraries are all present.
pub fn available() -> std::result::Result<usize, String> {
    static PROBE: OnceLock<std::result::Result<usize, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            catch_unwind(probe).unwrap_or_else(|p| {
                Err(format!(
                    "no GPU devices: probing CUDA panicked: {}",
                    panic_message(&*p)
                ))
            })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_turns_a_panic_into_an_error() {
        let r: Result<()> = guarded("test", || panic!("boom"));
        assert_eq!(r, Err(CudaError("test panicked: boom".into())));
    }

    #[test]
    fn available_never_panics_and_agrees_with_the_driver_library() {
        let r = std::panic::catch_unwind(available);
        assert!(r.is_ok(), "available() panicked");
        let r = r.unwrap_or(Err(String::new()));
        if !driver_library_present() {
            let reason = r.expect_err("no driver library, yet available() reported devices");
            assert!(reason.contains("no GPU devices"), "{reason}");
        }
        match available() {
            Ok(n) => assert!(n > 0),
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
}
