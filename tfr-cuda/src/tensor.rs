//! `CudaTensor`: a device buffer from the caching allocator, a dtype and a row-major shape.
//! Cloning shares the buffer, as [`tfr_core::Tensor`] does.

use crate::alloc::Block;
use crate::device::CudaDevice;
use crate::{CudaError, Result};
use cudarc::driver::result as drv;
use std::sync::Arc;
use tfr_core::Tensor;
use tfr_graph::{bf16, f16, Buffer, DType};

/// Bytes per element of a dtype that can live on the GPU (`bool` is one byte, 0 or 1).
pub fn element_size(dtype: DType) -> Result<usize> {
    Ok(match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::U8 | DType::Bool => 1,
        DType::F16 | DType::BF16 => 2,
        DType::Resource => return Err(CudaError("resource handles cannot live on the GPU".into())),
        DType::String => return Err(CudaError("string tensors cannot live on the GPU".into())),
    })
}

/// A dense, row-major tensor in GPU memory.
#[derive(Clone, Debug)]
pub struct CudaTensor {
    buf: Arc<Block>,
    dtype: DType,
    shape: Vec<usize>,
}

fn num_elements(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| CudaError(format!("shape {shape:?} overflows")))
}

impl CudaTensor {
    /// A tensor whose contents are unset: the caller writes every element before any read.
    pub(crate) fn uninit(dev: &CudaDevice, dtype: DType, shape: &[usize]) -> Result<CudaTensor> {
        let bytes = num_elements(shape)?
            .checked_mul(element_size(dtype)?)
            .ok_or_else(|| CudaError(format!("shape {shape:?} overflows")))?;
        Ok(CudaTensor {
            buf: Arc::new(dev.alloc(bytes)?),
            dtype,
            shape: shape.to_vec(),
        })
    }

    /// A tensor of zeros.
    pub fn zeros(dev: &CudaDevice, dtype: DType, shape: &[usize]) -> Result<CudaTensor> {
        let t = CudaTensor::uninit(dev, dtype, shape)?;
        if t.size_bytes() > 0 {
            dev.bind()?;
            // SAFETY: the block holds at least `size_bytes()` bytes and is only used on this
            // stream, which orders the memset before any later use.
            unsafe { drv::memset_d8_async(t.ptr(), 0, t.size_bytes(), dev.stream().cu_stream()) }?;
        }
        Ok(t)
    }

    /// Copies a host tensor to the GPU.
    pub fn from_host(dev: &CudaDevice, t: &Tensor) -> Result<CudaTensor> {
        let out = CudaTensor::uninit(dev, t.dtype(), t.shape())?;
        dev.bind()?;
        match &*t.buffer() {
            Buffer::F32(v) => htod(dev, out.ptr(), v),
            Buffer::F64(v) => htod(dev, out.ptr(), v),
            Buffer::I32(v) => htod(dev, out.ptr(), v),
            Buffer::I64(v) => htod(dev, out.ptr(), v),
            Buffer::U8(v) => htod(dev, out.ptr(), v),
            Buffer::Bool(v) => htod(dev, out.ptr(), v),
            Buffer::F16(v) => htod(dev, out.ptr(), v),
            Buffer::BF16(v) => htod(dev, out.ptr(), v),
            Buffer::Resource(_) => Err(CudaError("resource handles cannot live on the GPU".into())),
            Buffer::String(_) => Err(CudaError("string tensors cannot live on the GPU".into())),
        }?;
        Ok(out)
    }

    /// Copies the tensor back to the host (waits for the work queued before it).
    pub fn to_host(&self, dev: &CudaDevice) -> Result<Tensor> {
        dev.bind()?;
        let n = self.num_elements();
        let buffer = match self.dtype {
            DType::F32 => Buffer::F32(dtoh(dev, self.ptr(), n)?),
            DType::F64 => Buffer::F64(dtoh(dev, self.ptr(), n)?),
            DType::I32 => Buffer::I32(dtoh(dev, self.ptr(), n)?),
            DType::I64 => Buffer::I64(dtoh(dev, self.ptr(), n)?),
            DType::U8 => Buffer::U8(dtoh(dev, self.ptr(), n)?),
            // Read bytes, never bools, so a stray byte cannot make an invalid `bool`.
            DType::Bool => Buffer::Bool(
                dtoh::<u8>(dev, self.ptr(), n)?
                    .into_iter()
                    .map(|b| b != 0)
                    .collect(),
            ),
            DType::F16 => Buffer::F16(dtoh::<f16>(dev, self.ptr(), n)?),
            DType::BF16 => Buffer::BF16(dtoh::<bf16>(dev, self.ptr(), n)?),
            DType::Resource => {
                return Err(CudaError("resource handles cannot live on the GPU".into()))
            }
            DType::String => return Err(CudaError("string tensors cannot live on the GPU".into())),
        };
        Tensor::from_buffer(&self.shape, buffer).map_err(|e| CudaError(e.to_string()))
    }

    /// The same buffer under another shape with the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<CudaTensor> {
        if num_elements(shape)? != self.num_elements() {
            return Err(CudaError(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        Ok(CudaTensor {
            buf: self.buf.clone(),
            dtype: self.dtype,
            shape: shape.to_vec(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes the elements occupy (the block may be larger).
    pub fn size_bytes(&self) -> usize {
        self.num_elements() * element_size(self.dtype).unwrap_or(0)
    }
    /// The device address of element 0.
    pub fn ptr(&self) -> u64 {
        self.buf.ptr()
    }
    /// True when both share one device buffer.
    pub fn shares_buffer_with(&self, other: &CudaTensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

/// Elements whose every bit pattern is a valid value (so device bytes can be read into them).
trait Plain: Copy + Default {}
impl Plain for f32 {}
impl Plain for f64 {}
impl Plain for i32 {}
impl Plain for i64 {}
impl Plain for u8 {}
impl Plain for f16 {}
impl Plain for bf16 {}

fn htod<T>(dev: &CudaDevice, dst: u64, src: &[T]) -> Result<()> {
    if src.is_empty() {
        return Ok(());
    }
    // SAFETY: `dst` is a block of at least `size_of_val(src)` bytes (allocated for this
    // tensor's shape and dtype, whose element size equals `size_of::<T>()`). From pageable
    // memory the call returns once `src` has been staged, so `src` may be dropped afterwards;
    // the stream orders the copy before any later use of `dst`.
    unsafe { drv::memcpy_htod_async(dst, src, dev.stream().cu_stream()) }?;
    Ok(())
}

fn dtoh<T: Plain>(dev: &CudaDevice, src: u64, n: usize) -> Result<Vec<T>> {
    let mut out = vec![T::default(); n];
    if n == 0 {
        return Ok(out);
    }
    // SAFETY: `src` holds at least `n` elements of `T` (the tensor's element count and dtype);
    // `out` has room for `n` and `T` is valid for any bits. The stream runs the copy after the
    // work that produced `src`; the synchronize below waits for it before `out` is read.
    unsafe { drv::memcpy_dtoh_async(&mut out[..], src, dev.stream().cu_stream()) }?;
    dev.synchronize()?;
    Ok(out)
}
