//! Host tensor storage shared by the IR (constants) and the runtime (`tfr_core::Tensor`).

use crate::dtype::DType;
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Typed, contiguous, row-major element storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    /// Handles to stateful resources, by shared name.
    Resource(Vec<String>),
    /// Byte strings (`DType::String`; any bytes, not necessarily UTF-8).
    String(Vec<Vec<u8>>),
}

impl Buffer {
    pub fn dtype(&self) -> DType {
        match self {
            Buffer::F32(_) => DType::F32,
            Buffer::F64(_) => DType::F64,
            Buffer::I32(_) => DType::I32,
            Buffer::I64(_) => DType::I64,
            Buffer::U8(_) => DType::U8,
            Buffer::Bool(_) => DType::Bool,
            Buffer::F16(_) => DType::F16,
            Buffer::BF16(_) => DType::BF16,
            Buffer::Resource(_) => DType::Resource,
            Buffer::String(_) => DType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Buffer::F32(v) => v.len(),
            Buffer::F64(v) => v.len(),
            Buffer::I32(v) => v.len(),
            Buffer::I64(v) => v.len(),
            Buffer::U8(v) => v.len(),
            Buffer::Bool(v) => v.len(),
            Buffer::F16(v) => v.len(),
            Buffer::BF16(v) => v.len(),
            Buffer::Resource(v) => v.len(),
            Buffer::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A buffer of `n` zeros (false, empty handle names, empty strings) of the given dtype.
    pub fn zeros(dtype: DType, n: usize) -> Buffer {
        match dtype {
            DType::F32 => Buffer::F32(vec![0.0; n]),
            DType::F64 => Buffer::F64(vec![0.0; n]),
            DType::I32 => Buffer::I32(vec![0; n]),
            DType::I64 => Buffer::I64(vec![0; n]),
            DType::U8 => Buffer::U8(vec![0; n]),
            DType::Bool => Buffer::Bool(vec![false; n]),
            DType::F16 => Buffer::F16(vec![f16::ZERO; n]),
            DType::BF16 => Buffer::BF16(vec![bf16::ZERO; n]),
            DType::Resource => Buffer::Resource(vec![String::new(); n]),
            DType::String => Buffer::String(vec![Vec::new(); n]),
        }
    }

    /// Element `i` converted to f64 (resource handles and strings read as 0; they are not
    /// numbers, and kernels reject them before reading).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Buffer::F32(v) => v[i] as f64,
            Buffer::F64(v) => v[i],
            Buffer::I32(v) => v[i] as f64,
            Buffer::I64(v) => v[i] as f64,
            Buffer::U8(v) => v[i] as f64,
            Buffer::Bool(v) => v[i] as u8 as f64,
            Buffer::F16(v) => v[i].to_f64(),
            Buffer::BF16(v) => v[i].to_f64(),
            Buffer::Resource(_) | Buffer::String(_) => 0.0,
        }
    }

    /// Element `i` converted to i64 (floats truncate toward zero).
    pub fn get_i64(&self, i: usize) -> i64 {
        match self {
            Buffer::I32(v) => v[i] as i64,
            Buffer::I64(v) => v[i],
            Buffer::U8(v) => v[i] as i64,
            Buffer::Bool(v) => v[i] as i64,
            _ => self.get_f64(i) as i64,
        }
    }
}

/// A Rust type that is the element type of some [`DType`].
pub trait Element: Clone + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn slice(buf: &Buffer) -> Option<&[Self]>;
    fn vec_mut(buf: &mut Buffer) -> Option<&mut Vec<Self>>;
    fn into_buffer(v: Vec<Self>) -> Buffer;
    fn from_buffer(buf: Buffer) -> Result<Vec<Self>, Buffer>;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn slice(buf: &Buffer) -> Option<&[Self]> {
                match buf {
                    Buffer::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn vec_mut(buf: &mut Buffer) -> Option<&mut Vec<Self>> {
                match buf {
                    Buffer::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn into_buffer(v: Vec<Self>) -> Buffer {
                Buffer::$variant(v)
            }
            fn from_buffer(buf: Buffer) -> Result<Vec<Self>, Buffer> {
                match buf {
                    Buffer::$variant(v) => Ok(v),
                    other => Err(other),
                }
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(i32, I32);
element!(i64, I64);
element!(u8, U8);
element!(bool, Bool);
element!(f16, F16);
element!(bf16, BF16);
element!(String, Resource);
element!(Vec<u8>, String);

/// A constant tensor value held in the graph (the payload of `Const`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorValue {
    pub shape: Vec<usize>,
    pub data: Buffer,
}

impl TensorValue {
    /// A value from row-major data; `None` when the element count does not match the shape.
    pub fn new<T: Element>(shape: &[usize], data: Vec<T>) -> Option<TensorValue> {
        (shape.iter().product::<usize>() == data.len()).then(|| TensorValue {
            shape: shape.to_vec(),
            data: T::into_buffer(data),
        })
    }
    pub fn scalar<T: Element>(v: T) -> TensorValue {
        TensorValue {
            shape: Vec::new(),
            data: T::into_buffer(vec![v]),
        }
    }
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    pub fn num_elements(&self) -> usize {
        self.data.len()
    }
}
