//! Conversions between tfr's dtypes, shapes, constants and attributes and TensorFlow's protos.
//! Errors are plain strings here; callers wrap them with the node and attribute.

use crate::proto::{self, attr_value, DataType};
use half::{bf16, f16};
use tfr_graph::shape::MAX_RANK;
use tfr_graph::{AttrKind, AttrValue, Buffer, DType, Dim, Shape, TensorValue};

/// The most elements a constant may expand to from a single broadcast value (1 GiB of f32):
/// a crafted file cannot ask for more memory than it could have held itself.
const MAX_BROADCAST_ELEMENTS: usize = 1 << 28;

/// TensorFlow's number of a tfr dtype.
pub fn tf_dtype(t: DType) -> DataType {
    match t {
        DType::F32 => DataType::DtFloat,
        DType::F64 => DataType::DtDouble,
        DType::I32 => DataType::DtInt32,
        DType::I64 => DataType::DtInt64,
        DType::U8 => DataType::DtUint8,
        DType::Bool => DataType::DtBool,
        DType::F16 => DataType::DtHalf,
        DType::BF16 => DataType::DtBfloat16,
        DType::Resource => DataType::DtResource,
        DType::String => DataType::DtString,
    }
}

/// The tfr dtype of a TensorFlow type number (reference types, +100, read as their value type).
pub fn from_tf_dtype(n: i32) -> Result<DType, String> {
    let base = if n > 100 { n - 100 } else { n };
    let t = DataType::try_from(base).map_err(|_| format!("unknown DataType number {n}"))?;
    Ok(match t {
        DataType::DtFloat => DType::F32,
        DataType::DtDouble => DType::F64,
        DataType::DtInt32 => DType::I32,
        DataType::DtInt64 => DType::I64,
        DataType::DtUint8 => DType::U8,
        DataType::DtBool => DType::Bool,
        DataType::DtHalf => DType::F16,
        DataType::DtBfloat16 => DType::BF16,
        DataType::DtResource => DType::Resource,
        DataType::DtString => DType::String,
        other => {
            return Err(format!(
                "{} ({n}), which tfr has no dtype for",
                other.as_str_name()
            ))
        }
    })
}

pub fn shape_to_proto(s: &Shape) -> proto::TensorShapeProto {
    match s.dims() {
        None => proto::TensorShapeProto {
            dim: Vec::new(),
            unknown_rank: true,
        },
        Some(dims) => proto::TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => proto::tensor_shape_proto::Dim {
                        size: *n as i64,
                        name: String::new(),
                    },
                    Dim::Sym(name) => proto::tensor_shape_proto::Dim {
                        size: -1,
                        name: name.clone(),
                    },
                    Dim::Unknown => proto::tensor_shape_proto::Dim {
                        size: -1,
                        name: String::new(),
                    },
                })
                .collect(),
            unknown_rank: false,
        },
    }
}

pub fn shape_from_proto(p: &proto::TensorShapeProto) -> Result<Shape, String> {
    if p.unknown_rank {
        return Ok(Shape::unknown());
    }
    if p.dim.len() > MAX_RANK {
        return Err(format!(
            "a shape of rank {} (the maximum is {MAX_RANK})",
            p.dim.len()
        ));
    }
    let dims = p
        .dim
        .iter()
        .map(|d| match d.size {
            -1 => Ok(Dim::Unknown),
            n if n >= 0 => Ok(Dim::Known(n as usize)),
            n => Err(format!("a dim of size {n}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let s = Shape::new(dims);
    s.check_bounds()?;
    Ok(s)
}

/// A constant as TensorFlow writes it: `tensor_content` holds the elements little-endian.
pub fn tensor_to_proto(v: &TensorValue) -> Result<proto::TensorProto, String> {
    let mut content = Vec::with_capacity(v.num_elements() * v.dtype().size_of());
    match &v.data {
        Buffer::F32(x) => x.iter().for_each(|e| content.extend(e.to_le_bytes())),
        Buffer::F64(x) => x.iter().for_each(|e| content.extend(e.to_le_bytes())),
        Buffer::I32(x) => x.iter().for_each(|e| content.extend(e.to_le_bytes())),
        Buffer::I64(x) => x.iter().for_each(|e| content.extend(e.to_le_bytes())),
        Buffer::U8(x) => content.extend_from_slice(x),
        Buffer::Bool(x) => content.extend(x.iter().map(|&b| b as u8)),
        Buffer::F16(x) => x.iter().for_each(|e| content.extend(e.to_le_bytes())),
        Buffer::BF16(x) => x.iter().for_each(|e| content.extend(e.to_le_bytes())),
        Buffer::Resource(names) => {
            return Ok(proto::TensorProto {
                dtype: DataType::DtResource as i32,
                tensor_shape: Some(shape_to_proto(&Shape::known(&v.shape))),
                resource_handle_val: names
                    .iter()
                    .map(|name| proto::ResourceHandleProto {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
        // TensorFlow writes strings as `string_val`, one bytes field per element.
        Buffer::String(strings) => {
            return Ok(proto::TensorProto {
                dtype: DataType::DtString as i32,
                tensor_shape: Some(shape_to_proto(&Shape::known(&v.shape))),
                string_val: strings.clone(),
                ..Default::default()
            })
        }
    }
    Ok(proto::TensorProto {
        dtype: tf_dtype(v.dtype()) as i32,
        tensor_shape: Some(shape_to_proto(&Shape::known(&v.shape))),
        tensor_content: content,
        ..Default::default()
    })
}

/// Reads `n` elements from packed little-endian bytes or from a typed list, where one value
/// fills the whole tensor and none means zeros (TensorFlow's rules).
fn fill<T: Copy + Default, const W: usize>(
    content: &[u8],
    vals: &[T],
    n: usize,
    from_le: fn([u8; W]) -> T,
) -> Result<Vec<T>, String> {
    if !content.is_empty() {
        if Some(content.len()) != n.checked_mul(W) {
            return Err(format!(
                "tensor_content has {} bytes, expected {n} elements of {W} bytes",
                content.len()
            ));
        }
        return Ok(content
            .chunks_exact(W)
            .map(|c| from_le(c.try_into().expect("chunks of W bytes")))
            .collect());
    }
    match vals.len() {
        len if len == n => Ok(vals.to_vec()),
        0 | 1 if n <= MAX_BROADCAST_ELEMENTS => {
            Ok(vec![vals.first().copied().unwrap_or_default(); n])
        }
        0 | 1 => Err(format!("{n} elements from one value is too many")),
        len => Err(format!("{len} values for {n} elements")),
    }
}

pub fn tensor_from_proto(p: &proto::TensorProto) -> Result<TensorValue, String> {
    let dtype = from_tf_dtype(p.dtype)?;
    let shape = shape_from_proto(&p.tensor_shape.clone().unwrap_or_default())?;
    let dims = shape
        .to_known()
        .ok_or_else(|| format!("a constant of partly unknown shape {shape}"))?;
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("an element count that overflows")?;
    let c = &p.tensor_content;
    let ints = |bits: &[i32]| -> Vec<u16> { bits.iter().map(|&b| b as u16).collect() };
    let data = match dtype {
        DType::F32 => Buffer::F32(fill(c, &p.float_val, n, f32::from_le_bytes)?),
        DType::F64 => Buffer::F64(fill(c, &p.double_val, n, f64::from_le_bytes)?),
        DType::I32 => Buffer::I32(fill(c, &p.int_val, n, i32::from_le_bytes)?),
        DType::I64 => Buffer::I64(fill(c, &p.int64_val, n, i64::from_le_bytes)?),
        DType::U8 => {
            let v: Vec<u8> = p.int_val.iter().map(|&x| x as u8).collect();
            Buffer::U8(fill(c, &v, n, u8::from_le_bytes)?)
        }
        DType::Bool => {
            let v: Vec<u8> = p.bool_val.iter().map(|&x| x as u8).collect();
            Buffer::Bool(
                fill(c, &v, n, u8::from_le_bytes)?
                    .into_iter()
                    .map(|b| b != 0)
                    .collect(),
            )
        }
        DType::F16 => Buffer::F16(
            fill(c, &ints(&p.half_val), n, u16::from_le_bytes)?
                .into_iter()
                .map(f16::from_bits)
                .collect(),
        ),
        DType::BF16 => Buffer::BF16(
            fill(c, &ints(&p.half_val), n, u16::from_le_bytes)?
                .into_iter()
                .map(bf16::from_bits)
                .collect(),
        ),
        DType::Resource => {
            let handles = &p.resource_handle_val;
            if handles.len() != n {
                return Err(format!(
                    "{} resource handles for {n} elements",
                    handles.len()
                ));
            }
            Buffer::Resource(handles.iter().map(|h| h.name.clone()).collect())
        }
        // As TensorFlow reads them: `string_val` only (strings have no `tensor_content`),
        // one value fills the tensor, none means empty strings.
        DType::String => {
            if !c.is_empty() {
                return Err(
                    "a string constant with tensor_content (strings are string_val)".into(),
                );
            }
            let vals = &p.string_val;
            Buffer::String(match vals.len() {
                len if len == n => vals.clone(),
                0 | 1 if n <= MAX_BROADCAST_ELEMENTS => {
                    vec![vals.first().cloned().unwrap_or_default(); n]
                }
                0 | 1 => return Err(format!("{n} elements from one value is too many")),
                len => return Err(format!("{len} string values for {n} elements")),
            })
        }
    };
    Ok(TensorValue { shape: dims, data })
}

/// A tfr attribute as TensorFlow's `AttrValue`.
pub fn attr_to_proto(v: &AttrValue) -> Result<proto::AttrValue, String> {
    use attr_value::{ListValue, Value};
    let value = match v {
        AttrValue::Int(i) => Value::I(*i),
        AttrValue::Float(f) => Value::F(*f as f32),
        AttrValue::Bool(b) => Value::B(*b),
        AttrValue::Str(s) => Value::S(s.as_bytes().to_vec()),
        AttrValue::DType(t) => Value::Type(tf_dtype(*t) as i32),
        AttrValue::Shape(s) => Value::Shape(shape_to_proto(s)),
        AttrValue::Tensor(t) => Value::Tensor(tensor_to_proto(t)?),
        AttrValue::Ints(i) => Value::List(ListValue {
            i: i.clone(),
            ..Default::default()
        }),
        AttrValue::Floats(f) => Value::List(ListValue {
            f: f.iter().map(|&x| x as f32).collect(),
            ..Default::default()
        }),
        AttrValue::DTypes(t) => Value::List(ListValue {
            r#type: t.iter().map(|&x| tf_dtype(x) as i32).collect(),
            ..Default::default()
        }),
    };
    Ok(proto::AttrValue { value: Some(value) })
}

/// What a proto attribute holds, for messages.
pub fn proto_kind(v: &proto::AttrValue) -> &'static str {
    use attr_value::Value;
    match &v.value {
        None => "no value",
        Some(Value::S(_)) => "a string",
        Some(Value::I(_)) => "an int",
        Some(Value::F(_)) => "a float",
        Some(Value::B(_)) => "a bool",
        Some(Value::Type(_)) => "a type",
        Some(Value::Shape(_)) => "a shape",
        Some(Value::Tensor(_)) => "a tensor",
        Some(Value::List(l)) if !l.s.is_empty() => "a list of strings",
        Some(Value::List(l)) if !l.i.is_empty() => "a list of ints",
        Some(Value::List(l)) if !l.f.is_empty() => "a list of floats",
        Some(Value::List(l)) if !l.b.is_empty() => "a list of bools",
        Some(Value::List(l)) if !l.r#type.is_empty() => "a list of types",
        Some(Value::List(l)) if !l.shape.is_empty() => "a list of shapes",
        Some(Value::List(l)) if !l.tensor.is_empty() => "a list of tensors",
        Some(Value::List(l)) if !l.func.is_empty() => "a list of functions",
        Some(Value::List(_)) => "an empty list",
        Some(Value::Func(_)) => "a function",
        Some(Value::Placeholder(_)) => "a placeholder",
    }
}

fn kind_name(k: AttrKind) -> &'static str {
    match k {
        AttrKind::Int => "an int",
        AttrKind::Float => "a float",
        AttrKind::Bool => "a bool",
        AttrKind::Str => "a string",
        AttrKind::DType => "a type",
        AttrKind::Shape => "a shape",
        AttrKind::Ints => "a list of ints",
        AttrKind::Floats => "a list of floats",
        AttrKind::DTypes => "a list of types",
        AttrKind::Tensor => "a tensor",
    }
}

/// A TensorFlow attribute as tfr's, of kind `want` when the op declares it (an empty list takes
/// the declared kind). The error is (expected, got).
pub fn attr_from_proto(
    v: &proto::AttrValue,
    want: Option<AttrKind>,
) -> Result<AttrValue, (String, String)> {
    use attr_value::Value;
    let got = || proto_kind(v).to_string();
    let mismatch = |k: AttrKind| (kind_name(k).to_string(), got());
    let value = match &v.value {
        Some(Value::S(s)) => AttrValue::Str(
            String::from_utf8(s.clone())
                .map_err(|_| ("a UTF-8 string".to_string(), "invalid UTF-8".to_string()))?,
        ),
        Some(Value::I(i)) => AttrValue::Int(*i),
        Some(Value::F(f)) => AttrValue::Float(*f as f64),
        Some(Value::B(b)) => AttrValue::Bool(*b),
        Some(Value::Type(t)) => {
            AttrValue::DType(from_tf_dtype(*t).map_err(|e| ("a dtype tfr has".to_string(), e))?)
        }
        Some(Value::Shape(s)) => {
            AttrValue::Shape(shape_from_proto(s).map_err(|e| ("a valid shape".to_string(), e))?)
        }
        Some(Value::Tensor(t)) => {
            AttrValue::Tensor(tensor_from_proto(t).map_err(|e| ("a valid tensor".to_string(), e))?)
        }
        Some(Value::List(l)) => {
            let others = !l.s.is_empty()
                || !l.b.is_empty()
                || !l.shape.is_empty()
                || !l.tensor.is_empty()
                || !l.func.is_empty();
            let kinds = [!l.i.is_empty(), !l.f.is_empty(), !l.r#type.is_empty()];
            let which = match want {
                Some(k @ (AttrKind::Ints | AttrKind::Floats | AttrKind::DTypes)) => k,
                Some(k) => return Err(mismatch(k)),
                None if kinds[1] => AttrKind::Floats,
                None if kinds[2] => AttrKind::DTypes,
                None => AttrKind::Ints,
            };
            let present = match which {
                AttrKind::Floats => kinds[1],
                AttrKind::DTypes => kinds[2],
                _ => kinds[0],
            };
            if others || (kinds.iter().any(|&k| k) && !present) {
                return Err(mismatch(which));
            }
            match which {
                AttrKind::Floats => AttrValue::Floats(l.f.iter().map(|&x| x as f64).collect()),
                AttrKind::DTypes => AttrValue::DTypes(
                    l.r#type
                        .iter()
                        .map(|&t| from_tf_dtype(t))
                        .collect::<Result<_, _>>()
                        .map_err(|e| ("dtypes tfr has".to_string(), e))?,
                ),
                _ => AttrValue::Ints(l.i.clone()),
            }
        }
        _ => {
            return Err((
                want.map_or("a value tfr supports", kind_name).to_string(),
                got(),
            ))
        }
    };
    match want {
        Some(k) if k != value.kind() => Err(mismatch(k)),
        _ => Ok(value),
    }
}
