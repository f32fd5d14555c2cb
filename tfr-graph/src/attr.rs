//! Typed node attributes: values are parsed once, when a node is built, never at run time.

use crate::dtype::DType;
use crate::shape::Shape;
use crate::value::TensorValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    DType(DType),
    Shape(Shape),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    DTypes(Vec<DType>),
    Tensor(TensorValue),
}

impl AttrValue {
    pub fn kind(&self) -> AttrKind {
        match self {
            AttrValue::Int(_) => AttrKind::Int,
            AttrValue::Float(_) => AttrKind::Float,
            AttrValue::Bool(_) => AttrKind::Bool,
            AttrValue::Str(_) => AttrKind::Str,
            AttrValue::DType(_) => AttrKind::DType,
            AttrValue::Shape(_) => AttrKind::Shape,
            AttrValue::Ints(_) => AttrKind::Ints,
            AttrValue::Floats(_) => AttrKind::Floats,
            AttrValue::DTypes(_) => AttrKind::DTypes,
            AttrValue::Tensor(_) => AttrKind::Tensor,
        }
    }
}

/// The declared kind of an attribute in an op definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    Int,
    Float,
    Bool,
    Str,
    DType,
    Shape,
    Ints,
    Floats,
    DTypes,
    Tensor,
}

macro_rules! attr_from {
    ($t:ty, $variant:ident) => {
        impl From<$t> for AttrValue {
            fn from(v: $t) -> AttrValue {
                AttrValue::$variant(v.into())
            }
        }
    };
}
attr_from!(i64, Int);
attr_from!(f64, Float);
attr_from!(bool, Bool);
attr_from!(String, Str);
attr_from!(&str, Str);
attr_from!(DType, DType);
attr_from!(Shape, Shape);
attr_from!(Vec<i64>, Ints);
attr_from!(Vec<f64>, Floats);
attr_from!(Vec<DType>, DTypes);
attr_from!(TensorValue, Tensor);

/// The attributes of one node, ordered by name so equal nodes serialize and hash equally.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attrs(pub BTreeMap<String, AttrValue>);

/// Typed attribute lookups; the error names the attribute and what was expected.
macro_rules! getter {
    ($name:ident, $opt:ident, $variant:ident, $t:ty) => {
        pub fn $opt(&self, name: &str) -> Option<&$t> {
            match self.0.get(name) {
                Some(AttrValue::$variant(v)) => Some(v),
                _ => None,
            }
        }
        pub fn $name(&self, name: &str) -> Result<&$t, String> {
            match self.0.get(name) {
                Some(AttrValue::$variant(v)) => Ok(v),
                Some(other) => Err(format!(
                    "attribute `{name}` should be {:?}, got {:?}",
                    AttrKind::$variant,
                    other.kind()
                )),
                None => Err(format!("missing attribute `{name}`")),
            }
        }
    };
}

impl Attrs {
    pub fn set(&mut self, name: &str, v: impl Into<AttrValue>) {
        self.0.insert(name.to_string(), v.into());
    }
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.0.get(name)
    }
    getter!(int, int_opt, Int, i64);
    getter!(float, float_opt, Float, f64);
    getter!(boolean, bool_opt, Bool, bool);
    getter!(string, string_opt, Str, String);
    getter!(dtype, dtype_opt, DType, DType);
    getter!(shape, shape_opt, Shape, Shape);
    getter!(ints, ints_opt, Ints, Vec<i64>);
    getter!(floats, floats_opt, Floats, Vec<f64>);
    getter!(dtypes, dtypes_opt, DTypes, Vec<DType>);
    getter!(tensor, tensor_opt, Tensor, TensorValue);
}
