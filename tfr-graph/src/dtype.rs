//! Element types of tensors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor.
///
/// `F16` and `BF16` are storage types: they can be held, fed, fetched and cast, while arithmetic
/// kernels run in `F32`/`F64`. `Resource` is the type of a handle to a stateful object (a variable).
/// `String` is TensorFlow's `DT_STRING`: each element is a byte string (any bytes, not
/// necessarily UTF-8); it is not numeric (no arithmetic), lives on the host only, and is what
/// summary ops produce (a serialized `Summary` protobuf).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    F32,
    F64,
    I32,
    I64,
    U8,
    Bool,
    F16,
    BF16,
    Resource,
    String,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 10] = [
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
        DType::F16,
        DType::BF16,
        DType::Resource,
        DType::String,
    ];

    /// TensorFlow-style lower-case name (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::Bool => "bool",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::Resource => "resource",
            DType::String => "string",
        }
    }

    /// Size of one element in bytes (a resource handle counts as one pointer, a string as its
    /// header: its bytes live elsewhere and vary per element, so no fixed-size encoding holds
    /// strings).
    pub fn size_of(self) -> usize {
        match self {
            DType::String => std::mem::size_of::<Vec<u8>>(),
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 | DType::Resource => 8,
            DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 => 2,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    pub fn is_integer(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8)
    }

    /// Types on which arithmetic kernels exist.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            DType::F32 | DType::F64 | DType::I32 | DType::I64 | DType::U8
        )
    }

    /// Types gradients can flow through.
    pub fn is_differentiable(self) -> bool {
        self.is_float()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of dtypes, used to declare what an op argument accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DTypeSet(u16);

impl DTypeSet {
    pub const fn of(types: &[DType]) -> DTypeSet {
        let mut bits = 0u16;
        let mut i = 0;
        while i < types.len() {
            bits |= 1 << (types[i] as u16);
            i += 1;
        }
        DTypeSet(bits)
    }
    /// Floating types with arithmetic kernels.
    pub const FLOAT: DTypeSet = DTypeSet::of(&[DType::F32, DType::F64]);
    /// Integer types with arithmetic kernels.
    pub const INT: DTypeSet = DTypeSet::of(&[DType::I32, DType::I64, DType::U8]);
    /// Every type with arithmetic kernels.
    pub const NUMERIC: DTypeSet =
        DTypeSet::of(&[DType::F32, DType::F64, DType::I32, DType::I64, DType::U8]);
    /// Signed numeric types (for neg, abs, sign).
    pub const SIGNED: DTypeSet = DTypeSet::of(&[DType::F32, DType::F64, DType::I32, DType::I64]);
    /// Index types (gather indices, axes, shapes).
    pub const INDEX: DTypeSet = DTypeSet::of(&[DType::I32, DType::I64]);
    pub const BOOL: DTypeSet = DTypeSet::of(&[DType::Bool]);
    pub const RESOURCE: DTypeSet = DTypeSet::of(&[DType::Resource]);
    pub const STRING: DTypeSet = DTypeSet::of(&[DType::String]);
    /// Every value type (all but resource handles).
    pub const ANY: DTypeSet = DTypeSet::of(&[
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
        DType::F16,
        DType::BF16,
    ]);
    /// Every value type and strings (what ops that only move values accept: `Identity`,
    /// `StopGradient`, `Reshape`, ...).
    pub const ANY_OR_STRING: DTypeSet = DTypeSet::of(&[
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
        DType::F16,
        DType::BF16,
        DType::String,
    ]);
    /// Numeric types plus bool (comparisons for equality, select values, ...).
    pub const NUMERIC_OR_BOOL: DTypeSet = DTypeSet::of(&[
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
    ]);

    /// This set less `t`.
    pub const fn without(self, t: DType) -> DTypeSet {
        DTypeSet(self.0 & !(1 << (t as u16)))
    }

    pub fn contains(self, t: DType) -> bool {
        self.0 & (1 << (t as u16)) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = DType> {
        DType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl fmt::Display for DTypeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(DType::name).collect();
        write!(f, "{{{}}}", names.join(", "))
    }
}
