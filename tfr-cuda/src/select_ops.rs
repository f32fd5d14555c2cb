//! Comparisons (f32 operands, bool results, broadcasting), `SelectV2` and `RandomUniform` over
//! [`CudaTensor`]s: the ops of dropout and of masks built from comparisons.

use crate::array_ops::broadcast_to;
use crate::device::CudaDevice;
use crate::kernels_nn::COMPARE_F32;
use crate::ops::{broadcast_shape, check_f32, elementwise_config, pairwise_f32};
use crate::tensor::CudaTensor;
use crate::{CudaError, Result};
use cudarc::driver::PushKernelArg;
use tfr_graph::DType;

/// The comparisons with a CUDA kernel.
pub fn compare_ops() -> impl Iterator<Item = &'static str> {
    COMPARE_F32.iter().map(|(op, _)| *op)
}

/// `op(x, y)` for a comparison of [`COMPARE_F32`], broadcasting: a bool tensor.
pub fn compare(dev: &CudaDevice, op: &str, x: &CudaTensor, y: &CudaTensor) -> Result<CudaTensor> {
    if !compare_ops().any(|o| o == op) {
        return Err(CudaError(format!("no CUDA kernel for comparison `{op}`")));
    }
    let kernels = (format!("cmp_{op}_f32"), format!("bcast_cmp_{op}_f32"));
    pairwise_f32(dev, op, x, y, DType::Bool, &kernels)
}

/// `cond ? t : e` elementwise (f32 values, bool condition), the three broadcast together.
pub fn select(
    dev: &CudaDevice,
    cond: &CudaTensor,
    t: &CudaTensor,
    e: &CudaTensor,
) -> Result<CudaTensor> {
    let op = "SelectV2";
    if cond.dtype() != DType::Bool {
        return Err(CudaError(format!(
            "{op}: the condition must be bool, got {}",
            cond.dtype()
        )));
    }
    check_f32(op, t)?;
    check_f32(op, e)?;
    let shape = broadcast_shape(&broadcast_shape(cond.shape(), t.shape())?, e.shape())?;
    let full = |x: &CudaTensor| {
        if x.shape() == shape.as_slice() {
            Ok(x.clone())
        } else {
            broadcast_to(dev, x, &shape)
        }
    };
    let (c, t, e) = (full(cond)?, full(t)?, full(e)?);
    let y = CudaTensor::uninit(dev, DType::F32, &shape)?;
    let n = y.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get("select_f32")?;
    let (cp, tp, ep, yp) = (c.ptr(), t.ptr(), e.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&cp).arg(&tp).arg(&ep).arg(&yp).arg(&n);
    // SAFETY: all four tensors have the broadcast shape (n elements: bytes for c, f32s for the
    // others) and the kernel touches [0, n) of each.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// Where a `RandomUniform` draw starts in TensorFlow's Philox stream: the key (`seed`), the
/// counter's high word (`seed2`) and the first block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhiloxStart {
    pub key: [u32; 2],
    pub high: [u32; 2],
    pub block: u64,
}

/// `n` uniform f32s in [0, 1) of `shape`, exactly the numbers the CPU kernel draws from the
/// same stream position.
pub fn random_uniform(dev: &CudaDevice, shape: &[usize], at: PhiloxStart) -> Result<CudaTensor> {
    let y = CudaTensor::uninit(dev, DType::F32, shape)?;
    let n = y.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get("random_uniform_f32")?;
    let yp = y.ptr();
    let mut launch = dev.stream().launch_builder(f);
    launch
        .arg(&yp)
        .arg(&n)
        .arg(&at.block)
        .arg(&at.key[0])
        .arg(&at.key[1])
        .arg(&at.high[0])
        .arg(&at.high[1]);
    // SAFETY: writes y at [0, n) (n f32s allocated above); the other arguments are values
    // matching the kernel's (u64, u64, four unsigned ints).
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}
