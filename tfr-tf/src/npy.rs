//! NumPy `.npy` files (format 1.0/2.0, little-endian, C order) and graph cases: a directory
//! holding `graph.pb`, `case.json` (`{"feeds": {"x:0": "feed0.npy"}, "fetches": {...}}`) and the
//! `.npy` files it names, the format the scripts under `scripts/` exchange with TensorFlow.

use crate::error::{io_error, Result, TfError};
use std::path::Path;
use tfr_core::Tensor;
use tfr_graph::Buffer;

fn bad(path: &Path, message: impl Into<String>) -> TfError {
    TfError::Decode {
        what: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes `t` as a `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, t: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let mut data = Vec::new();
    let descr = match t.buffer().as_ref() {
        Buffer::F32(v) => {
            v.iter().for_each(|x| data.extend(x.to_le_bytes()));
            "<f4"
        }
        Buffer::F64(v) => {
            v.iter().for_each(|x| data.extend(x.to_le_bytes()));
            "<f8"
        }
        Buffer::I32(v) => {
            v.iter().for_each(|x| data.extend(x.to_le_bytes()));
            "<i4"
        }
        Buffer::I64(v) => {
            v.iter().for_each(|x| data.extend(x.to_le_bytes()));
            "<i8"
        }
        Buffer::U8(v) => {
            data.extend_from_slice(v);
            "|u1"
        }
        Buffer::Bool(v) => {
            data.extend(v.iter().map(|&b| b as u8));
            "|b1"
        }
        other => {
            return Err(bad(
                path,
                format!("no .npy encoding for dtype {}", other.dtype()),
            ))
        }
    };
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    std::fs::write(path, out).map_err(|e| io_error(path, e))
}

/// The value of `'key': value` in a `.npy` header dict.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        return rest.find(')').map(|e| &rest[..=e]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Reads a `.npy` file of f32, f64, int32, int64, uint8 or bool values.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad(path, "the header is cut short or not text"))?;
    let descr = header_field(header, "descr")
        .map(|d| d.trim_matches(['\'', '"']))
        .ok_or_else(|| bad(path, "the header has no descr"))?;
    if header_field(header, "fortran_order") != Some("False") {
        return Err(bad(path, "only C-order arrays are read"));
    }
    let shape_text = header_field(header, "shape").ok_or_else(|| bad(path, "no shape"))?;
    let shape: Vec<usize> = shape_text
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(path, format!("bad shape {shape_text}")))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, "too many elements"))?;
    let data = &bytes[start + header_len..];
    let need = |width: usize| -> Result<&[u8]> {
        n.checked_mul(width)
            .and_then(|len| data.get(..len))
            .ok_or_else(|| {
                bad(
                    path,
                    format!("{n} elements of {width} bytes do not fit the file"),
                )
            })
    };
    macro_rules! le {
        ($t:ty, $w:expr) => {
            need($w)?
                .chunks_exact($w)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of the width")))
                .collect::<Vec<$t>>()
        };
    }
    let t = match descr {
        "<f4" => Tensor::new(&shape, le!(f32, 4)),
        "<f8" => Tensor::new(&shape, le!(f64, 8)),
        "<i4" => Tensor::new(&shape, le!(i32, 4)),
        "<i8" => Tensor::new(&shape, le!(i64, 8)),
        "|u1" => Tensor::new(&shape, need(1)?.to_vec()),
        "|b1" => Tensor::new(
            &shape,
            need(1)?.iter().map(|&b| b != 0).collect::<Vec<bool>>(),
        ),
        other => return Err(bad(path, format!("unsupported dtype {other}"))),
    };
    Ok(t?)
}

/// A graph with feeds and expected fetches by TensorFlow tensor name.
pub struct GraphCase {
    pub graph: crate::proto::GraphDef,
    pub feeds: Vec<(String, Tensor)>,
    pub fetches: Vec<(String, Tensor)>,
    /// The case's other top-level numbers (e.g. `tf_ms`, TensorFlow's time per run).
    pub numbers: Vec<(String, f64)>,
}

/// Reads a case directory (`graph.pb`, `case.json`, `.npy` files).
pub fn read_case(dir: impl AsRef<Path>) -> Result<GraphCase> {
    let dir = dir.as_ref();
    let graph = crate::decode_graph_def(
        &std::fs::read(dir.join("graph.pb")).map_err(|e| io_error(&dir.join("graph.pb"), e))?,
    )?;
    let json_path = dir.join("case.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| io_error(&json_path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&json_path, e.to_string()))?;
    let tensors = |key: &str| -> Result<Vec<(String, Tensor)>> {
        let map = json
            .get(key)
            .and_then(|v| v.as_object())
            .ok_or_else(|| bad(&json_path, format!("no `{key}` object")))?;
        map.iter()
            .map(|(name, file)| {
                let file = file
                    .as_str()
                    .ok_or_else(|| bad(&json_path, format!("`{key}.{name}` is not a file name")))?;
                Ok((name.clone(), read_npy(dir.join(file))?))
            })
            .collect()
    };
    let numbers = json
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                .collect()
        })
        .unwrap_or_default();
    Ok(GraphCase {
        graph,
        feeds: tensors("feeds")?,
        fetches: tensors("fetches")?,
        numbers,
    })
}
