//! Tensors on the wire: dtype name, dims, raw little-endian bytes (the checkpoint encoding of
//! `tfr_core::kernels::io_ops`). Decoding checks everything a peer could get wrong.

use crate::error::{Error, Result};
use crate::proto::{RecvTensorChunk, TensorProto};
use tfr_core::kernels::io_ops::{decode, dtype_from_safetensors, encode, safetensors_dtype};
use tfr_core::Tensor;

/// The wire form of `t`; resource handles do not travel.
pub fn tensor_to_proto(t: &Tensor) -> Result<TensorProto> {
    let dtype = safetensors_dtype(t.dtype())
        .ok_or_else(|| Error::Wire(format!("a {} tensor cannot be sent", t.dtype())))?;
    let mut data = Vec::with_capacity(t.num_elements() * t.dtype().size_of());
    encode(&t.buffer(), &mut data).map_err(|e| Error::Wire(e.message))?;
    Ok(TensorProto {
        dtype: dtype.to_string(),
        dims: t.shape().iter().map(|&d| d as u64).collect(),
        data,
    })
}

/// The tensor a wire message holds; `what` names it in errors.
pub fn tensor_from_proto(p: &TensorProto, what: &str) -> Result<Tensor> {
    let bad = |m: String| Error::Wire(format!("{what}: {m}"));
    let dtype = dtype_from_safetensors(&p.dtype)
        .ok_or_else(|| bad(format!("unknown dtype `{}`", p.dtype)))?;
    let dims: Vec<usize> = p
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large"))))
        .collect::<Result<_>>()?;
    let expected = dims
        .iter()
        .try_fold(dtype.size_of(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
    if p.data.len() != expected {
        return Err(bad(format!(
            "{} bytes for a {dtype} tensor of dims {dims:?}, which needs {expected}",
            p.data.len()
        )));
    }
    let buffer = decode(dtype, &p.data)
        .ok_or_else(|| bad(format!("bytes that are no valid {dtype} values")))?;
    Tensor::from_buffer(&dims, buffer).map_err(|e| bad(e.to_string()))
}

/// `t` as a stream of chunks of at most `chunk_bytes` data bytes each (at least one chunk).
pub fn tensor_to_chunks(t: &Tensor, chunk_bytes: usize) -> Result<Vec<RecvTensorChunk>> {
    let p = tensor_to_proto(t)?;
    let data = bytes::Bytes::from(p.data);
    let total = data.len();
    let chunk = chunk_bytes.max(1);
    let n = total.div_ceil(chunk).max(1);
    Ok((0..n)
        .map(|i| {
            let lo = i * chunk;
            let hi = (lo + chunk).min(total);
            RecvTensorChunk {
                dtype: if i == 0 {
                    p.dtype.clone()
                } else {
                    String::new()
                },
                dims: if i == 0 { p.dims.clone() } else { Vec::new() },
                total_bytes: total as u64,
                data: data.slice(lo..hi),
            }
        })
        .collect())
}

/// Reassembles a tensor from its chunks, checking that they add up; `what` names it.
pub struct ChunkAssembler {
    what: String,
    head: Option<TensorProto>,
    total: usize,
}

impl ChunkAssembler {
    pub fn new(what: &str) -> ChunkAssembler {
        ChunkAssembler {
            what: what.to_string(),
            head: None,
            total: 0,
        }
    }

    fn bad(&self, m: String) -> Error {
        Error::Wire(format!("{}: {m}", self.what))
    }

    /// Takes the next chunk.
    pub fn push(&mut self, c: RecvTensorChunk) -> Result<()> {
        match &mut self.head {
            None => {
                let total = usize::try_from(c.total_bytes)
                    .map_err(|_| self.bad(format!("{} bytes is too large", c.total_bytes)))?;
                // The dims bound what the data may be: reserve no more than they need.
                let dtype = dtype_from_safetensors(&c.dtype)
                    .ok_or_else(|| self.bad(format!("unknown dtype `{}`", c.dtype)))?;
                let needed = c
                    .dims
                    .iter()
                    .try_fold(dtype.size_of() as u64, |n, &d| n.checked_mul(d));
                if needed != Some(c.total_bytes) {
                    return Err(self.bad(format!(
                        "{} bytes announced for a {dtype} tensor of dims {:?}",
                        c.total_bytes, c.dims
                    )));
                }
                if c.data.len() > total {
                    return Err(self.bad(format!(
                        "a chunk of {} bytes for a tensor of {total}",
                        c.data.len()
                    )));
                }
                let mut data = Vec::with_capacity(total);
                data.extend_from_slice(&c.data);
                self.total = total;
                self.head = Some(TensorProto {
                    dtype: c.dtype,
                    dims: c.dims,
                    data,
                });
            }
            Some(head) => {
                let have = head.data.len();
                if have + c.data.len() > self.total {
                    let total = self.total;
                    return Err(self.bad(format!(
                        "chunks add up to more than the announced {total} bytes"
                    )));
                }
                head.data.extend_from_slice(&c.data);
            }
        }
        Ok(())
    }

    /// The tensor, once every chunk arrived.
    pub fn finish(self) -> Result<Tensor> {
        let Some(head) = &self.head else {
            return Err(self.bad("the stream ended before its first chunk".into()));
        };
        if head.data.len() != self.total {
            return Err(self.bad(format!(
                "the stream ended after {} of {} bytes",
                head.data.len(),
                self.total
            )));
        }
        tensor_from_proto(head, &self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_sendable_dtype() {
        let ts = [
            Tensor::new(&[2, 2], vec![1.5f32, -2.0, 3.0, 0.25]).unwrap(),
            Tensor::new(&[3], vec![1i64, -2, 1 << 40]).unwrap(),
            Tensor::new(&[2], vec![true, false]).unwrap(),
            Tensor::scalar(7i32),
            Tensor::scalar(2.5f64),
            Tensor::new(&[0, 3], Vec::<f32>::new()).unwrap(),
        ];
        for t in ts {
            let back = tensor_from_proto(&tensor_to_proto(&t).unwrap(), "t").unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn malformed_tensors_are_errors() {
        let good = tensor_to_proto(&Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap()).unwrap();
        let mut short = good.clone();
        short.data.pop();
        let m = tensor_from_proto(&short, "feed `x`")
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("feed `x`") && m.contains("7 bytes") && m.contains("needs 8"),
            "{m}"
        );
        let mut dtype = good.clone();
        dtype.dtype = "Q7".into();
        let m = tensor_from_proto(&dtype, "t").unwrap_err().to_string();
        assert!(m.contains("unknown dtype `Q7`"), "{m}");
        let mut huge = good.clone();
        huge.dims = vec![u64::MAX / 2, 4];
        let m = tensor_from_proto(&huge, "t").unwrap_err().to_string();
        assert!(m.contains("overflow") || m.contains("too large"), "{m}");
        let bools = TensorProto {
            dtype: "BOOL".into(),
            dims: vec![1],
            data: vec![2],
        };
        let m = tensor_from_proto(&bools, "t").unwrap_err().to_string();
        assert!(m.contains("no valid"), "{m}");
    }

    #[test]
    fn chunks_round_trip_and_bad_streams_are_errors() {
        let t = Tensor::new(&[1000], (0..1000).map(|i| i as f32 * 0.5).collect()).unwrap();
        let chunks = tensor_to_chunks(&t, 300).unwrap();
        assert_eq!(chunks.len(), 14); // 4000 bytes in chunks of 300
        let mut a = ChunkAssembler::new("t");
        for c in chunks.clone() {
            a.push(c).unwrap();
        }
        assert_eq!(a.finish().unwrap(), t);
        // A scalar and an empty tensor are one chunk each.
        for t in [
            Tensor::scalar(3i64),
            Tensor::new(&[0], Vec::<f32>::new()).unwrap(),
        ] {
            let c = tensor_to_chunks(&t, 8).unwrap();
            assert_eq!(c.len(), 1);
            let mut a = ChunkAssembler::new("t");
            a.push(c[0].clone()).unwrap();
            assert_eq!(a.finish().unwrap(), t);
        }
        // A missing chunk.
        let mut a = ChunkAssembler::new("key k");
        for c in chunks.iter().take(13).cloned() {
            a.push(c).unwrap();
        }
        let m = a.finish().unwrap_err().to_string();
        assert!(m.contains("key k") && m.contains("3900 of 4000"), "{m}");
        // A repeated chunk.
        let mut a = ChunkAssembler::new("t");
        let mut r = Ok(());
        for c in chunks.iter().chain(&chunks[13..]).cloned() {
            r = r.and(a.push(c));
        }
        assert!(r.unwrap_err().to_string().contains("more than"));
        // A head whose byte count does not fit its dims, or no chunk at all.
        let mut head = chunks[0].clone();
        head.total_bytes = u64::MAX;
        let m = ChunkAssembler::new("t").push(head).unwrap_err().to_string();
        assert!(m.contains("announced"), "{m}");
        let m = ChunkAssembler::new("t").finish().unwrap_err().to_string();
        assert!(m.contains("before its first chunk"), "{m}");
    }
}
