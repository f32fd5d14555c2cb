//! `Tensor`: a dtype, a concrete shape and a shared, immutable-unless-unique buffer.
//!
//! Scalars (rank 0, any numeric or bool dtype) are stored inline: making, cloning and dropping
//! one touches no allocator and no reference count, which is what keeps the per-iteration cost
//! of scalar loops (counters, predicates, loop constants) low.

use crate::error::{Error, Result};
use crate::memory::{DeviceBuffer, MemorySpace};
use ndarray::{ArrayBase, ArrayD, ArrayViewD, Data, Dimension, IxDyn};
use smallvec::SmallVec;
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tfr_graph::{bf16, f16, Buffer, DType, Element, TensorValue};

/// Concrete dims of a tensor; up to 4 dims are stored inline.
pub type Dims = SmallVec<[usize; 4]>;

/// One element of a non-resource dtype, held by value (a scalar tensor's storage, and what
/// kernels' scalar fast path computes on: [`crate::OpKernel::compute_scalar`]). A 64-bit tag
/// keeps the layout free of padding, so moving a tensor is a few aligned words.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(u64)]
pub enum Scalar {
    F32(f32),
    F64(f64),
    I32(i32),
    I64(i64),
    U8(u8),
    Bool(bool),
    F16(f16),
    BF16(bf16),
}

macro_rules! scalar_arms {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Scalar::F32($v) => $body,
            Scalar::F64($v) => $body,
            Scalar::I32($v) => $body,
            Scalar::I64($v) => $body,
            Scalar::U8($v) => $body,
            Scalar::Bool($v) => $body,
            Scalar::F16($v) => $body,
            Scalar::BF16($v) => $body,
        }
    };
}

impl Scalar {
    /// The scalar holding `v`, unless `T` is the resource type.
    #[inline(always)]
    pub fn of<T: Element>(v: &T) -> Option<Scalar> {
        let a = v as &dyn Any;
        macro_rules! try_as {
            ($($t:ty => $var:ident),*) => {$(
                if let Some(x) = a.downcast_ref::<$t>() {
                    return Some(Scalar::$var(*x));
                }
            )*};
        }
        try_as!(f32 => F32, f64 => F64, i32 => I32, i64 => I64, u8 => U8, bool => Bool,
            f16 => F16, bf16 => BF16);
        None
    }

    /// The one element of a one-element buffer.
    fn from_buffer(b: &Buffer) -> Option<Scalar> {
        Some(match b {
            Buffer::F32(v) => Scalar::F32(*v.first()?),
            Buffer::F64(v) => Scalar::F64(*v.first()?),
            Buffer::I32(v) => Scalar::I32(*v.first()?),
            Buffer::I64(v) => Scalar::I64(*v.first()?),
            Buffer::U8(v) => Scalar::U8(*v.first()?),
            Buffer::Bool(v) => Scalar::Bool(*v.first()?),
            Buffer::F16(v) => Scalar::F16(*v.first()?),
            Buffer::BF16(v) => Scalar::BF16(*v.first()?),
            Buffer::Resource(_) | Buffer::String(_) => return None,
        })
    }

    fn to_buffer(self) -> Buffer {
        match self {
            Scalar::F32(v) => Buffer::F32(vec![v]),
            Scalar::F64(v) => Buffer::F64(vec![v]),
            Scalar::I32(v) => Buffer::I32(vec![v]),
            Scalar::I64(v) => Buffer::I64(vec![v]),
            Scalar::U8(v) => Buffer::U8(vec![v]),
            Scalar::Bool(v) => Buffer::Bool(vec![v]),
            Scalar::F16(v) => Buffer::F16(vec![v]),
            Scalar::BF16(v) => Buffer::BF16(vec![v]),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Scalar::F32(_) => DType::F32,
            Scalar::F64(_) => DType::F64,
            Scalar::I32(_) => DType::I32,
            Scalar::I64(_) => DType::I64,
            Scalar::U8(_) => DType::U8,
            Scalar::Bool(_) => DType::Bool,
            Scalar::F16(_) => DType::F16,
            Scalar::BF16(_) => DType::BF16,
        }
    }

    /// The value as a 64-bit word of compiled scalar code (see [`crate::scalar_code`]): its
    /// bits, zero-extended.
    #[inline(always)]
    pub fn to_word(self) -> u64 {
        match self {
            Scalar::F32(v) => v.to_bits() as u64,
            Scalar::F64(v) => v.to_bits(),
            Scalar::I32(v) => v as u32 as u64,
            Scalar::I64(v) => v as u64,
            Scalar::U8(v) => v as u64,
            Scalar::Bool(v) => v as u64,
            Scalar::F16(v) => v.to_bits() as u64,
            Scalar::BF16(v) => v.to_bits() as u64,
        }
    }

    /// The scalar of `dtype` whose word is `w` (the inverse of [`Scalar::to_word`]); `None`
    /// for a dtype a `Scalar` cannot hold.
    #[inline(always)]
    pub fn from_word(dtype: DType, w: u64) -> Option<Scalar> {
        Some(match dtype {
            DType::F32 => Scalar::F32(f32::from_bits(w as u32)),
            DType::F64 => Scalar::F64(f64::from_bits(w)),
            DType::I32 => Scalar::I32(w as u32 as i32),
            DType::I64 => Scalar::I64(w as i64),
            DType::U8 => Scalar::U8(w as u8),
            DType::Bool => Scalar::Bool(w != 0),
            DType::F16 => Scalar::F16(f16::from_bits(w as u16)),
            DType::BF16 => Scalar::BF16(bf16::from_bits(w as u16)),
            _ => return None,
        })
    }

    /// Copies `src` into `self`. When both have one dtype only the value is written, with
    /// its own width: a whole-`Scalar` copy of a value just written field by field would read
    /// across two stores, which the CPU cannot forward (a stall per copy in scalar loops).
    #[inline(always)]
    pub fn assign(&mut self, src: &Scalar) {
        match (self, src) {
            (Scalar::F32(d), Scalar::F32(s)) => *d = *s,
            (Scalar::F64(d), Scalar::F64(s)) => *d = *s,
            (Scalar::I32(d), Scalar::I32(s)) => *d = *s,
            (Scalar::I64(d), Scalar::I64(s)) => *d = *s,
            (Scalar::U8(d), Scalar::U8(s)) => *d = *s,
            (Scalar::Bool(d), Scalar::Bool(s)) => *d = *s,
            (Scalar::F16(d), Scalar::F16(s)) => *d = *s,
            (Scalar::BF16(d), Scalar::BF16(s)) => *d = *s,
            (d, s) => *d = *s,
        }
    }

    /// The value, when `T` is its element type.
    #[inline(always)]
    pub fn get<T: 'static>(&self) -> Option<&T> {
        scalar_arms!(self, v => (v as &dyn Any).downcast_ref::<T>())
    }

    #[inline(always)]
    fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        scalar_arms!(self, v => (v as &mut dyn Any).downcast_mut::<T>())
    }

    fn get_f64(&self) -> f64 {
        match *self {
            Scalar::F32(v) => v as f64,
            Scalar::F64(v) => v,
            Scalar::I32(v) => v as f64,
            Scalar::I64(v) => v as f64,
            Scalar::U8(v) => v as f64,
            Scalar::Bool(v) => v as u8 as f64,
            Scalar::F16(v) => v.to_f64(),
            Scalar::BF16(v) => v.to_f64(),
        }
    }
}

/// Where a tensor's elements live: a shared host buffer, (one element) inline, or a buffer in
/// a device's memory that only that device reads (see [`crate::memory`]). The device variant
/// is a thin pointer, so a tensor is no larger than with host storage alone.
#[derive(Clone)]
enum Storage {
    Heap(Arc<Buffer>),
    Inline(Scalar),
    Device(Arc<DeviceBuffer>),
}

impl Storage {
    /// Rank-0 non-resource buffers go inline.
    #[inline]
    fn new(shape: &[usize], data: Buffer) -> Storage {
        if shape.is_empty() {
            if let Some(s) = Scalar::from_buffer(&data) {
                return Storage::Inline(s);
            }
        }
        Storage::Heap(Arc::new(data))
    }
}

/// A dense, row-major tensor. Cloning shares the buffer (a scalar is copied); a kernel holding
/// the only reference may write it in place.
pub struct Tensor {
    shape: Dims,
    data: Storage,
}

impl Clone for Tensor {
    #[inline]
    fn clone(&self) -> Tensor {
        let shape = if self.shape.is_empty() {
            Dims::new()
        } else {
            let mut d = Dims::new();
            d.extend_from_slice(&self.shape);
            d
        };
        Tensor {
            shape,
            data: self.data.clone(),
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (&self.data, &other.data) {
            (Storage::Heap(a), Storage::Heap(b)) => Arc::ptr_eq(a, b) || a == b,
            (Storage::Inline(a), Storage::Inline(b)) => a == b,
            (Storage::Inline(a), Storage::Heap(b)) | (Storage::Heap(b), Storage::Inline(a)) => {
                Scalar::from_buffer(b).is_some_and(|b| b == *a) && b.len() == 1
            }
            // Device memory is not readable here: equal only when it is the same buffer.
            (Storage::Device(a), Storage::Device(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

fn shape_error(shape: &[usize], len: usize) -> Error {
    Error::InvalidArgument {
        arg: "data".into(),
        message: format!("{len} elements do not fill shape {shape:?}"),
    }
}

impl Tensor {
    /// A tensor from row-major data; an error when the element count does not fill the shape.
    pub fn new<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(shape_error(shape, data.len()));
        }
        Ok(Tensor {
            shape: shape.into(),
            data: Storage::new(shape, T::into_buffer(data)),
        })
    }

    /// A tensor from a buffer whose length the caller has checked against the shape.
    pub(crate) fn from_parts(shape: Dims, data: Buffer) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            data: Storage::new(&shape, data),
            shape,
        }
    }

    pub fn from_buffer(shape: &[usize], data: Buffer) -> Result<Tensor> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(shape_error(shape, data.len()));
        }
        Ok(Tensor {
            shape: shape.into(),
            data: Storage::new(shape, data),
        })
    }

    /// A string tensor (`DType::String`) from row-major byte strings (any bytes, not
    /// necessarily UTF-8); an error when their count does not fill the shape.
    pub fn from_strings<S: AsRef<[u8]>>(shape: &[usize], data: &[S]) -> Result<Tensor> {
        Tensor::new(shape, data.iter().map(|s| s.as_ref().to_vec()).collect())
    }

    /// The elements of a string tensor (host tensors only; an error naming the dtype for any
    /// other).
    pub fn as_strings(&self) -> Result<&[Vec<u8>]> {
        self.as_slice::<Vec<u8>>()
    }

    /// The value of a rank-0 tensor held inline (every rank-0 tensor but resource handles
    /// and strings).
    #[inline]
    pub fn as_scalar(&self) -> Option<Scalar> {
        match &self.data {
            Storage::Inline(s) if self.shape.is_empty() => Some(*s),
            _ => None,
        }
    }

    /// The value of a rank-0 tensor held inline, by reference.
    #[inline]
    pub fn scalar_ref(&self) -> Option<&Scalar> {
        match &self.data {
            Storage::Inline(s) if self.shape.is_empty() => Some(s),
            _ => None,
        }
    }

    /// The value of a rank-0 tensor held inline, to overwrite in place.
    #[inline]
    pub fn scalar_mut(&mut self) -> Option<&mut Scalar> {
        match &mut self.data {
            Storage::Inline(s) if self.shape.is_empty() => Some(s),
            _ => None,
        }
    }

    /// The rank-0 tensor holding `s` (no allocation).
    #[inline]
    pub fn from_scalar(s: Scalar) -> Tensor {
        Tensor {
            shape: Dims::new(),
            data: Storage::Inline(s),
        }
    }

    /// A rank-0 tensor; held inline (no allocation) for every dtype but resource handles.
    #[inline]
    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor {
            shape: Dims::new(),
            data: match Scalar::of(&v) {
                Some(s) => Storage::Inline(s),
                None => Storage::Heap(Arc::new(T::into_buffer(vec![v]))),
            },
        }
    }

    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.into(),
            data: Storage::new(shape, Buffer::zeros(dtype, shape.iter().product())),
        }
    }

    pub fn from_value(v: &TensorValue) -> Tensor {
        Tensor {
            shape: v.shape.as_slice().into(),
            data: Storage::new(&v.shape, v.data.clone()),
        }
    }

    pub fn to_value(&self) -> TensorValue {
        TensorValue {
            shape: self.shape.to_vec(),
            data: self.buffer().into_owned(),
        }
    }

    /// Takes an `ndarray` array without copying when it is in standard layout.
    pub fn from_array<T: Element, D: Dimension>(a: ndarray::Array<T, D>) -> Tensor {
        let shape: Dims = a.shape().into();
        let a = if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        };
        let (v, offset) = a.into_raw_vec_and_offset();
        let v = match offset {
            Some(0) | None => v,
            Some(o) => v[o..].to_vec(),
        };
        Tensor {
            data: Storage::new(&shape, T::into_buffer(v)),
            shape,
        }
    }

    /// Copies any `ndarray` array (or view).
    pub fn from_array_view<T: Element, S: Data<Elem = T>, D: Dimension>(
        a: &ArrayBase<S, D>,
    ) -> Tensor {
        Tensor {
            shape: a.shape().into(),
            data: Storage::new(a.shape(), T::into_buffer(a.iter().cloned().collect())),
        }
    }

    #[inline]
    pub fn dtype(&self) -> DType {
        match &self.data {
            Storage::Heap(b) => b.dtype(),
            Storage::Inline(s) => s.dtype(),
            Storage::Device(b) => b.dtype(),
        }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dims(&self) -> &Dims {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    #[inline]
    pub fn num_elements(&self) -> usize {
        match &self.data {
            Storage::Heap(b) => b.len(),
            Storage::Inline(_) => 1,
            Storage::Device(b) => b.len(),
        }
    }
    /// The elements as a [`Buffer`]: borrowed, or (a scalar held inline) a one-element copy.
    /// Host tensors only: a tensor in device memory reads as an empty buffer (kernels never
    /// get one: the executor refuses it before the kernel runs, naming the node).
    pub fn buffer(&self) -> Cow<'_, Buffer> {
        match &self.data {
            Storage::Heap(b) => Cow::Borrowed(&**b),
            Storage::Inline(s) => Cow::Owned(s.to_buffer()),
            Storage::Device(b) => Cow::Owned(Buffer::zeros(b.dtype(), 0)),
        }
    }
    /// Element `i` as f64 (integers and bools converted, resource handles as NaN).
    pub fn get_f64(&self, i: usize) -> f64 {
        match &self.data {
            Storage::Heap(b) => b.get_f64(i),
            Storage::Inline(s) => {
                assert!(i == 0, "index {i} out of range for a scalar");
                s.get_f64()
            }
            // Not readable on the host (see `buffer`).
            Storage::Device(_) => f64::NAN,
        }
    }
    /// Element `i` as i64 (floats truncated).
    pub fn get_i64(&self, i: usize) -> i64 {
        match &self.data {
            Storage::Heap(b) => b.get_i64(i),
            Storage::Inline(s) => {
                assert!(i == 0, "index {i} out of range for a scalar");
                match *s {
                    Scalar::I32(v) => v as i64,
                    Scalar::I64(v) => v,
                    Scalar::U8(v) => v as i64,
                    Scalar::Bool(v) => v as i64,
                    s => s.get_f64() as i64,
                }
            }
            Storage::Device(_) => 0,
        }
    }

    fn dtype_error<T: Element>(&self) -> Error {
        Error::InvalidArgument {
            arg: "dtype".into(),
            message: format!("tensor holds {}, not {}", self.dtype(), T::DTYPE),
        }
    }

    /// The error of reading a tensor in device memory on the host.
    fn device_memory_error(b: &DeviceBuffer) -> Error {
        Error::InvalidArgument {
            arg: "tensor".into(),
            message: format!(
                "the tensor is in {}, not host memory: copy it to the host first",
                b.memory_space()
            ),
        }
    }

    /// The elements, when `T` is the tensor's element type (host tensors only).
    #[inline]
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        match &self.data {
            Storage::Heap(b) => T::slice(b),
            Storage::Inline(s) => s.get::<T>().map(std::slice::from_ref),
            Storage::Device(b) => return Err(Self::device_memory_error(b)),
        }
        .ok_or_else(|| self.dtype_error::<T>())
    }

    /// A tensor whose buffer is in a device's memory; `shape` must hold `buffer.len()`
    /// elements.
    pub fn from_device(shape: &[usize], buffer: DeviceBuffer) -> Result<Tensor> {
        if shape.iter().product::<usize>() != buffer.len() {
            return Err(shape_error(shape, buffer.len()));
        }
        Ok(Tensor {
            shape: shape.into(),
            data: Storage::Device(Arc::new(buffer)),
        })
    }

    /// A host tensor sharing `buffer` (no copy; a rank-0 value is held inline).
    pub fn from_shared(shape: &[usize], buffer: Arc<Buffer>) -> Result<Tensor> {
        if shape.iter().product::<usize>() != buffer.len() {
            return Err(shape_error(shape, buffer.len()));
        }
        let data = match Scalar::from_buffer(&buffer) {
            Some(s) if shape.is_empty() => Storage::Inline(s),
            _ => Storage::Heap(buffer),
        };
        Ok(Tensor {
            shape: shape.into(),
            data,
        })
    }

    /// The memory space the tensor's buffer lives in.
    #[inline]
    pub fn memory_space(&self) -> MemorySpace {
        match &self.data {
            Storage::Device(b) => b.memory_space(),
            _ => MemorySpace::HOST,
        }
    }

    /// True when the buffer is in host memory (what CPU kernels read).
    #[inline]
    pub fn is_host(&self) -> bool {
        !matches!(self.data, Storage::Device(_))
    }

    /// The device buffer of a tensor in device memory.
    pub fn device_buffer(&self) -> Option<&DeviceBuffer> {
        match &self.data {
            Storage::Device(b) => Some(b),
            _ => None,
        }
    }

    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.as_slice().map(<[T]>::to_vec)
    }

    /// The single element of a tensor with one element.
    pub fn scalar_value<T: Element>(&self) -> Result<T> {
        match self.as_slice::<T>()? {
            [v] => Ok(v.clone()),
            s => Err(Error::InvalidArgument {
                arg: "tensor".into(),
                message: format!(
                    "expected one element, got {} (shape {:?})",
                    s.len(),
                    self.shape
                ),
            }),
        }
    }

    /// The elements, moved out without copying when this is the only reference.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(self.dtype_error::<T>());
        }
        let buf = match self.data {
            Storage::Heap(b) => Arc::try_unwrap(b).unwrap_or_else(|a| (*a).clone()),
            Storage::Inline(s) => s.to_buffer(),
            Storage::Device(b) => return Err(Self::device_memory_error(&b)),
        };
        T::from_buffer(buf).map_err(|_| Error::InvalidArgument {
            arg: "dtype".into(),
            message: "dtype changed".into(),
        })
    }

    /// A zero-copy `ndarray` view.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        let s = self.as_slice::<T>()?;
        ArrayViewD::from_shape(IxDyn(&self.shape), s).map_err(|e| Error::InvalidArgument {
            arg: "tensor".into(),
            message: e.to_string(),
        })
    }

    /// An owned `ndarray` array (moved when this is the only reference).
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>> {
        let shape = self.shape.clone();
        let v = self.into_vec::<T>()?;
        ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| Error::InvalidArgument {
            arg: "tensor".into(),
            message: e.to_string(),
        })
    }

    /// The same buffer under another shape with the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.num_elements() {
            return Err(shape_error(shape, self.num_elements()));
        }
        Ok(Tensor {
            shape: shape.into(),
            data: self.data.clone(),
        })
    }

    /// Mutable access to the buffer when no one else holds it (a scalar held inline moves to
    /// the heap first).
    pub fn buffer_mut(&mut self) -> Option<&mut Buffer> {
        if let Storage::Inline(s) = self.data {
            self.data = Storage::Heap(Arc::new(s.to_buffer()));
        }
        match &mut self.data {
            Storage::Heap(b) => Arc::get_mut(b),
            Storage::Inline(_) | Storage::Device(_) => None,
        }
    }

    /// Mutable elements when this is the only reference and `T` matches.
    #[inline]
    pub fn slice_mut<T: Element>(&mut self) -> Option<&mut [T]> {
        match &mut self.data {
            Storage::Heap(b) => Arc::get_mut(b).and_then(T::vec_mut).map(Vec::as_mut_slice),
            Storage::Inline(s) => s.get_mut::<T>().map(std::slice::from_mut),
            Storage::Device(_) => None,
        }
    }

    /// Elements as f64 (for tests and printing).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.num_elements()).map(|i| self.get_f64(i)).collect()
    }

    /// True when both have the same dims (an inlined loop: ranks are tiny, memcmp is not).
    #[inline]
    pub fn same_shape(&self, other: &Tensor) -> bool {
        self.shape.len() == other.shape.len()
            && self
                .shape
                .iter()
                .zip(other.shape.iter())
                .all(|(a, b)| a == b)
    }

    /// True when both share the same buffer (no copy happened). Scalars held inline share
    /// nothing.
    pub fn shares_buffer_with(&self, other: &Tensor) -> bool {
        match (&self.data, &other.data) {
            (Storage::Heap(a), Storage::Heap(b)) => Arc::ptr_eq(a, b),
            (Storage::Device(a), Storage::Device(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 16;
        let n = self.num_elements();
        let shown: Vec<String> = match &self.data {
            Storage::Heap(b) => match &**b {
                Buffer::Resource(v) => v.iter().take(MAX).cloned().collect(),
                Buffer::String(v) => v.iter().take(MAX).map(|s| quote_bytes(s)).collect(),
                b => (0..n.min(MAX))
                    .map(|i| format!("{}", b.get_f64(i)))
                    .collect(),
            },
            Storage::Inline(s) => vec![format!("{}", s.get_f64())],
            Storage::Device(b) => vec![format!("in {}", b.memory_space())],
        };
        write!(
            f,
            "Tensor<{}{:?}>[{}{}]",
            self.dtype(),
            &self.shape[..],
            shown.join(", "),
            if n > MAX { ", ..." } else { "" }
        )
    }
}

/// `b"..."`: a byte string with non-printable and non-ASCII bytes escaped (`\xff`, `\n`), as
/// tensors print their string elements. Long strings are cut at 64 bytes, marked `...`.
pub fn quote_bytes(s: &[u8]) -> String {
    const MAX: usize = 64;
    let more = if s.len() > MAX { "..." } else { "" };
    format!("b\"{}{more}\"", s[..s.len().min(MAX)].escape_ascii())
}

impl fmt::Display for Tensor {
    /// The same text as `Debug`: dtype, shape and the first elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

macro_rules! from_scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for Tensor {
            fn from(v: $t) -> Tensor { Tensor::scalar(v) }
        }
    )*};
}
from_scalar!(f32, f64, i32, i64, u8, bool);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_inline_and_behave_like_one_element_buffers() {
        let a = Tensor::scalar(2.5f32);
        assert!(a.scalar_ref().is_some());
        assert_eq!(a.dtype(), DType::F32);
        assert_eq!(a.num_elements(), 1);
        assert_eq!(a.as_slice::<f32>().unwrap(), &[2.5]);
        assert!(a.as_slice::<f64>().is_err());
        assert_eq!(*a.buffer(), Buffer::F32(vec![2.5]));
        assert_eq!(a.to_value().data, Buffer::F32(vec![2.5]));
        // Equal to the same value on the heap (a one-element vector, reshaped).
        let heap = Tensor::new(&[1], vec![2.5f32]).unwrap();
        assert!(heap.scalar_ref().is_none());
        assert_eq!(heap.reshaped(&[]).unwrap(), a);
        assert_ne!(Tensor::scalar(2.5f64), a);
        assert_ne!(Tensor::scalar(3.0f32), a);
        // A clone is a copy: writing one leaves the other.
        let mut b = a.clone();
        b.slice_mut::<f32>().unwrap()[0] = 7.0;
        assert_eq!(a.scalar_value::<f32>().unwrap(), 2.5);
        assert_eq!(b.scalar_value::<f32>().unwrap(), 7.0);
        assert!(!a.shares_buffer_with(&b));
        // Reshaped to [1, 1] it keeps its storage but is no longer rank 0.
        let r = a.reshaped(&[1, 1]).unwrap();
        assert!(r.scalar_ref().is_none());
        assert_eq!(r.shape(), &[1, 1]);
        assert_eq!(r.to_vec::<f32>().unwrap(), vec![2.5]);
        assert_eq!(r.into_vec::<f32>().unwrap(), vec![2.5]);
        // Buffer access moves it to the heap.
        let mut c = Tensor::scalar(3i32);
        assert_eq!(c.buffer_mut(), Some(&mut Buffer::I32(vec![3])));
        assert!(c.scalar_ref().is_none());
        assert_eq!(c, Tensor::scalar(3i32));
        // Every rank-0 constructor stores inline, except resource handles.
        assert!(Tensor::new(&[], vec![true]).unwrap().scalar_ref().is_some());
        assert!(Tensor::zeros(DType::I64, &[]).scalar_ref().is_some());
        assert!(Tensor::from_array(ndarray::arr0(1u8))
            .scalar_ref()
            .is_some());
        let h = Tensor::scalar(String::from("ta:0"));
        assert!(h.scalar_ref().is_none());
        assert_eq!(h.as_slice::<String>().unwrap(), &["ta:0".to_string()]);
        assert_eq!(format!("{a:?}"), "Tensor<float32[]>[2.5]");
    }

    #[test]
    fn scalar_values_convert_and_assign() {
        assert_eq!(Scalar::of(&1.5f64), Some(Scalar::F64(1.5)));
        assert_eq!(Scalar::of(&String::new()), None);
        let mut s = Scalar::I32(1);
        s.assign(&Scalar::I32(4));
        assert_eq!(s, Scalar::I32(4));
        s.assign(&Scalar::Bool(true));
        assert_eq!(s, Scalar::Bool(true));
        assert_eq!(s.get::<bool>(), Some(&true));
        assert_eq!(s.get::<i32>(), None);
        let t = Tensor::from_scalar(Scalar::I64(-3));
        assert_eq!(t.get_i64(0), -3);
        assert_eq!(t.get_f64(0), -3.0);
        assert_eq!(t.as_scalar(), Some(Scalar::I64(-3)));
    }
}
