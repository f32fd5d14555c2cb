//! The idx format (MNIST's): a magic number `0x00 0x00 <type> <ndims>`, `ndims` big-endian u32
//! dims, then the elements big-endian in row-major order. Every check is an error, never a
//! panic: the magic number, the type code, the header length, the dims' product and the exact
//! data length (a truncated file or trailing bytes are both rejected).

use super::{io_error, DatasetError, Result};
use std::path::Path;
use tfr_core::Tensor;

/// The element type of an idx file, by its type code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl IdxType {
    pub fn code(self) -> u8 {
        match self {
            IdxType::U8 => 0x08,
            IdxType::I8 => 0x09,
            IdxType::I16 => 0x0B,
            IdxType::I32 => 0x0C,
            IdxType::F32 => 0x0D,
            IdxType::F64 => 0x0E,
        }
    }

    pub fn from_code(code: u8) -> Option<IdxType> {
        [
            IdxType::U8,
            IdxType::I8,
            IdxType::I16,
            IdxType::I32,
            IdxType::F32,
            IdxType::F64,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }

    pub fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }
}

/// The elements of an idx file.
#[derive(Clone, Debug, PartialEq)]
pub enum IdxData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl IdxData {
    pub fn idx_type(&self) -> IdxType {
        match self {
            IdxData::U8(_) => IdxType::U8,
            IdxData::I8(_) => IdxType::I8,
            IdxData::I16(_) => IdxType::I16,
            IdxData::I32(_) => IdxType::I32,
            IdxData::F32(_) => IdxType::F32,
            IdxData::F64(_) => IdxType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IdxData::U8(v) => v.len(),
            IdxData::I8(v) => v.len(),
            IdxData::I16(v) => v.len(),
            IdxData::I32(v) => v.len(),
            IdxData::F32(v) => v.len(),
            IdxData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed idx file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: IdxData,
}

impl IdxArray {
    /// As a tensor: u8 stays u8, i8/i16/i32 become i32, f32 and f64 stay.
    pub fn to_tensor(&self) -> Result<Tensor, tfr_core::Error> {
        let d = &self.dims;
        match &self.data {
            IdxData::U8(v) => Tensor::new(d, v.clone()),
            IdxData::I8(v) => Tensor::new(d, v.iter().map(|&x| i32::from(x)).collect()),
            IdxData::I16(v) => Tensor::new(d, v.iter().map(|&x| i32::from(x)).collect()),
            IdxData::I32(v) => Tensor::new(d, v.clone()),
            IdxData::F32(v) => Tensor::new(d, v.clone()),
            IdxData::F64(v) => Tensor::new(d, v.clone()),
        }
    }

    /// The bytes of this array as an idx file; an error when a dim or the rank does not fit
    /// the format or the data does not fill the dims.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let rank = u8::try_from(self.dims.len()).map_err(|_| "more than 255 dims".to_string())?;
        if self.dims.iter().product::<usize>() != self.data.len() {
            return Err(format!(
                "{} elements do not fill dims {:?}",
                self.data.len(),
                self.dims
            ));
        }
        let mut out = vec![0, 0, self.data.idx_type().code(), rank];
        for &d in &self.dims {
            let d = u32::try_from(d).map_err(|_| format!("dim {d} does not fit in u32"))?;
            out.extend_from_slice(&d.to_be_bytes());
        }
        macro_rules! be {
            ($v:expr) => {
                for x in $v {
                    out.extend_from_slice(&x.to_be_bytes());
                }
            };
        }
        match &self.data {
            IdxData::U8(v) => out.extend_from_slice(v),
            IdxData::I8(v) => be!(v),
            IdxData::I16(v) => be!(v),
            IdxData::I32(v) => be!(v),
            IdxData::F32(v) => be!(v),
            IdxData::F64(v) => be!(v),
        }
        Ok(out)
    }
}

/// Parses the bytes of an idx file; the error says what is wrong.
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, String> {
    let Some(&[z0, z1, code, rank]) = bytes.first_chunk::<4>() else {
        return Err(format!(
            "{} bytes, too short for an idx header",
            bytes.len()
        ));
    };
    if z0 != 0 || z1 != 0 {
        return Err(format!(
            "bad magic number 0x{:08x}: an idx file starts with two zero bytes",
            u32::from_be_bytes([z0, z1, code, rank])
        ));
    }
    let ty = IdxType::from_code(code)
        .ok_or_else(|| format!("bad magic number: unknown element type code 0x{code:02x}"))?;
    if rank == 0 {
        return Err("the header declares no dimensions".into());
    }
    let header = 4 + 4 * usize::from(rank);
    let dims_bytes = bytes.get(4..header).ok_or_else(|| {
        format!(
            "truncated header: {rank} dims need {header} bytes, the file has {}",
            bytes.len()
        )
    })?;
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dims {dims:?} overflow"))?;
    let need = count
        .checked_mul(ty.size())
        .ok_or_else(|| format!("dims {dims:?} overflow"))?;
    let body = &bytes[header..];
    if body.len() != need {
        let what = if body.len() < need {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(format!(
            "{what}: dims {dims:?} of {ty:?} need {need} data bytes, the file has {}",
            body.len()
        ));
    }
    macro_rules! be {
        ($t:ty, $n:expr) => {
            body.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    <$t>::from_be_bytes(a)
                })
                .collect()
        };
    }
    let data = match ty {
        IdxType::U8 => IdxData::U8(body.to_vec()),
        IdxType::I8 => IdxData::I8(be!(i8, 1)),
        IdxType::I16 => IdxData::I16(be!(i16, 2)),
        IdxType::I32 => IdxData::I32(be!(i32, 4)),
        IdxType::F32 => IdxData::F32(be!(f32, 4)),
        IdxType::F64 => IdxData::F64(be!(f64, 8)),
    };
    Ok(IdxArray { dims, data })
}

/// Reads and parses the idx file `path`.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse_idx(&bytes).map_err(|message| DatasetError::Format {
        path: path.to_path_buf(),
        message,
    })
}

/// Reads an idx file that must hold `ty` elements with `rank` dims.
pub fn read_idx_expect(path: impl AsRef<Path>, ty: IdxType, rank: usize) -> Result<IdxArray> {
    let path = path.as_ref();
    let a = read_idx(path)?;
    if a.data.idx_type() != ty || a.dims.len() != rank {
        return Err(DatasetError::Format {
            path: path.to_path_buf(),
            message: format!(
                "expected {rank} dims of {ty:?}, the file has dims {:?} of {:?}",
                a.dims,
                a.data.idx_type()
            ),
        });
    }
    Ok(a)
}
