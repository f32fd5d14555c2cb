//! `Tensor`: a dtype, a concrete shape and a shared, immutable-unless-unique buffer.

use crate::error::{Error, Result};
use ndarray::{ArrayBase, ArrayD, ArrayViewD, Data, Dimension, IxDyn};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;
use tfr_graph::{Buffer, DType, Element, TensorValue};

/// Concrete dims of a tensor; up to 4 dims are stored inline.
pub type Dims = SmallVec<[usize; 4]>;

/// A dense, row-major tensor. Cloning shares the buffer; a kernel holding the only reference may
/// write it in place.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Dims,
    data: Arc<Buffer>,
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
            data: Arc::new(T::into_buffer(data)),
        })
    }

    /// A tensor from a buffer whose length the caller has checked against the shape.
    pub(crate) fn from_parts(shape: Dims, data: Buffer) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Arc::new(data),
        }
    }

    pub fn from_buffer(shape: &[usize], data: Buffer) -> Result<Tensor> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(shape_error(shape, data.len()));
        }
        Ok(Tensor {
            shape: shape.into(),
            data: Arc::new(data),
        })
    }

    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor {
            shape: Dims::new(),
            data: Arc::new(T::into_buffer(vec![v])),
        }
    }

    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.into(),
            data: Arc::new(Buffer::zeros(dtype, shape.iter().product())),
        }
    }

    pub fn from_value(v: &TensorValue) -> Tensor {
        Tensor {
            shape: v.shape.as_slice().into(),
            data: Arc::new(v.data.clone()),
        }
    }

    pub fn to_value(&self) -> TensorValue {
        TensorValue {
            shape: self.shape.to_vec(),
            data: (*self.data).clone(),
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
            shape,
            data: Arc::new(T::into_buffer(v)),
        }
    }

    /// Copies any `ndarray` array (or view).
    pub fn from_array_view<T: Element, S: Data<Elem = T>, D: Dimension>(
        a: &ArrayBase<S, D>,
    ) -> Tensor {
        Tensor {
            shape: a.shape().into(),
            data: Arc::new(T::into_buffer(a.iter().cloned().collect())),
        }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
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
    pub fn num_elements(&self) -> usize {
        self.data.len()
    }
    pub fn buffer(&self) -> &Buffer {
        &self.data
    }

    fn dtype_error<T: Element>(&self) -> Error {
        Error::InvalidArgument {
            arg: "dtype".into(),
            message: format!("tensor holds {}, not {}", self.dtype(), T::DTYPE),
        }
    }

    /// The elements, when `T` is the tensor's element type.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        T::slice(&self.data).ok_or_else(|| self.dtype_error::<T>())
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
        let buf = Arc::try_unwrap(self.data).unwrap_or_else(|a| (*a).clone());
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

    /// Mutable access to the buffer when no one else holds it.
    pub fn buffer_mut(&mut self) -> Option<&mut Buffer> {
        Arc::get_mut(&mut self.data)
    }

    /// Mutable elements when this is the only reference and `T` matches.
    pub fn slice_mut<T: Element>(&mut self) -> Option<&mut [T]> {
        Arc::get_mut(&mut self.data)
            .and_then(T::vec_mut)
            .map(Vec::as_mut_slice)
    }

    /// Elements as f64 (for tests and printing).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.num_elements())
            .map(|i| self.data.get_f64(i))
            .collect()
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

    /// True when both share the same buffer (no copy happened).
    pub fn shares_buffer_with(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 16;
        let n = self.num_elements();
        let shown: Vec<String> = match &*self.data {
            Buffer::Resource(v) => v.iter().take(MAX).cloned().collect(),
            b => (0..n.min(MAX))
                .map(|i| format!("{}", b.get_f64(i)))
                .collect(),
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

macro_rules! from_scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for Tensor {
            fn from(v: $t) -> Tensor { Tensor::scalar(v) }
        }
    )*};
}
from_scalar!(f32, f64, i32, i64, u8, bool);
