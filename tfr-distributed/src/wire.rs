//! Tensors on the wire: dtype name, dims, raw little-endian bytes (the checkpoint encoding of
//! `tfr_core::kernels::io_ops`). Decoding checks everything a peer could get wrong.

use crate::error::{Error, Result};
use crate::proto::{RecvTensorChunk, TensorProto};
use tfr_core::kernels::io_ops::{decode, dtype_from_safetensors, encode, safetensors_dtype};
use tfr_core::Tensor;
use tfr_graph::{Buffer, DType};

/// The error for a tensor of a dtype with no wire form.
fn unsendable(dtype: DType) -> Error {
    Error::Wire(format!(
        "a {dtype} tensor cannot be sent between tasks: {dtype} tensors have no wire form \
         (keep the ops making and using it on one task)"
    ))
}

/// The wire form of `t`; resource handles and strings do not travel.
pub fn tensor_to_proto(t: &Tensor) -> Result<TensorProto> {
    let dtype = safetensors_dtype(t.dtype()).ok_or_else(|| unsendable(t.dtype()))?;
    let data = encode_fast(&t.buffer())?;
    Ok(TensorProto {
        dtype: dtype.to_string(),
        dims: t.shape().iter().map(|&d| d as u64).collect(),
        data,
    })
}

/// Little-endian bytes of a buffer. The common numeric types are written into a
/// preallocated vector element by element in place (which compiles to a plain copy on
/// little-endian machines); the rest by the checkpoint encoder.
fn encode_fast(buf: &tfr_graph::Buffer) -> Result<Vec<u8>> {
    macro_rules! le {
        ($v:expr, $n:expr) => {{
            let mut out = vec![0u8; $v.len() * $n];
            for (dst, x) in out.chunks_exact_mut($n).zip($v.iter()) {
                dst.copy_from_slice(&x.to_le_bytes());
            }
            out
        }};
    }
    Ok(match buf {
        Buffer::F32(v) => le!(v, 4),
        Buffer::F64(v) => le!(v, 8),
        Buffer::I32(v) => le!(v, 4),
        Buffer::I64(v) => le!(v, 8),
        other => {
            let mut out = Vec::new();
            encode(other, &mut out).map_err(|e| Error::Wire(e.message))?;
            out
        }
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

/// A tensor's elements as their in-memory bytes, owned by a clone of the tensor (which shares
/// its buffer): on a little-endian machine these are the wire bytes of the plain numeric types,
/// so sending them copies nothing.
struct SharedBytes(Tensor);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        let t = &self.0;
        let bytes = match t.dtype() {
            DType::F32 => t.as_slice::<f32>().map(bytemuck::cast_slice),
            DType::F64 => t.as_slice::<f64>().map(bytemuck::cast_slice),
            DType::I32 => t.as_slice::<i32>().map(bytemuck::cast_slice),
            DType::I64 => t.as_slice::<i64>().map(bytemuck::cast_slice),
            DType::U8 => t.as_slice::<u8>(),
            // `shared_wire_bytes` makes no other kind.
            _ => return &[],
        };
        bytes.unwrap_or(&[])
    }
}

/// The wire bytes of `t` sharing its buffer (no copy), for the types whose in-memory bytes
/// are their wire bytes on this machine; None for the others.
fn shared_wire_bytes(t: &Tensor) -> Option<bytes::Bytes> {
    let plain = matches!(
        t.dtype(),
        DType::F32 | DType::F64 | DType::I32 | DType::I64 | DType::U8
    );
    (cfg!(target_endian = "little") && plain)
        .then(|| bytes::Bytes::from_owner(SharedBytes(t.clone())))
}

/// `t` as a stream of chunks of at most `chunk_bytes` data bytes each (at least one chunk,
/// each a whole number of elements). The common numeric types are slices of the tensor's own
/// buffer: nothing is copied on the sending side before the transport encodes each chunk.
pub fn tensor_to_chunks(t: &Tensor, chunk_bytes: usize) -> Result<Vec<RecvTensorChunk>> {
    let dtype = safetensors_dtype(t.dtype()).ok_or_else(|| unsendable(t.dtype()))?;
    let dims: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let size = t.dtype().size_of().max(1);
    let data = match shared_wire_bytes(t) {
        Some(b) => b,
        None => bytes::Bytes::from(tensor_to_proto(t)?.data),
    };
    let step = (chunk_bytes / size).max(1) * size;
    let count = data.len().div_ceil(step).max(1);
    Ok((0..count)
        .map(|i| {
            let lo = i * step;
            RecvTensorChunk {
                dtype: if i == 0 {
                    dtype.to_string()
                } else {
                    String::new()
                },
                dims: if i == 0 { dims.clone() } else { Vec::new() },
                total_bytes: data.len() as u64,
                data: data.slice(lo..(lo + step).min(data.len())),
            }
        })
        .collect())
}

/// A tensor being reassembled: the numeric types copied chunk by chunk into their final
/// buffer (allocated zeroed, which a large allocation gets from the system without writing
/// it), the rest gathered as bytes and decoded at the end.
enum Gathered {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bytes(Vec<u8>),
    /// A kept tensor no one else holds any more, filled in place (see [`RecvBuffers`]).
    Reused(Tensor),
}

/// Large received tensors kept for reuse: a tensor of the same dtype and size received later
/// (the next step's) is written into the buffer of one no one else holds any more, instead of
/// into fresh pages the system must zero and map (for 100 MB, a fifth of the transfer's CPU).
/// At most [`RecvBuffers::KEEP`] tensors and [`RecvBuffers::KEEP_BYTES`] bytes are kept, the
/// most recent first.
#[derive(Default)]
pub struct RecvBuffers {
    kept: std::sync::Mutex<std::collections::VecDeque<Tensor>>,
}

impl RecvBuffers {
    pub const KEEP: usize = 4;
    pub const KEEP_BYTES: usize = 1 << 30;

    /// A kept tensor of `dtype` and `n` elements that no one else holds.
    fn take(&self, dtype: DType, n: usize) -> Option<Tensor> {
        let mut kept = self.kept.lock().ok()?;
        let i = kept.iter_mut().position(|t| {
            t.dtype() == dtype && t.num_elements() == n && t.buffer_mut().is_some()
        })?;
        kept.remove(i)
    }

    fn keep(&self, t: &Tensor) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.push_front(t.clone());
        let bytes = |k: &std::collections::VecDeque<Tensor>| {
            k.iter()
                .map(|t| t.num_elements() * t.dtype().size_of())
                .sum::<usize>()
        };
        while kept.len() > Self::KEEP || (kept.len() > 1 && bytes(&kept) > Self::KEEP_BYTES) {
            kept.pop_back();
        }
    }
}

/// `v` (a large zeroed allocation: fresh pages the system maps on first write), after asking
/// for transparent huge pages when it is large: filling 100 MB then takes about 50 page faults
/// instead of 25,000, which cost more than the copy itself.
fn huge<T>(v: Vec<T>) -> Vec<T> {
    advise_huge_pages(&v);
    v
}

/// Buffers from this size ask for huge pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_PAGE_MIN_BYTES {
        return;
    }
    let start = (v.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (v.as_ptr() as usize + bytes) / PAGE * PAGE;
    if end > start {
        // SAFETY: `[start, end)` lies inside `v`'s allocation (rounded inwards to whole
        // pages), which `v` keeps alive for the call. MADV_HUGEPAGE is advice on how to back
        // the pages: it changes neither their contents nor their validity, and a kernel
        // without transparent huge pages refuses it harmlessly (the result is ignored).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}

/// Makes this process's allocator keep freed buffers of up to 32 MiB for reuse instead of
/// handing their pages back to the system after each use (glibc's default adapts its limits
/// and trims the heap, so each streamed chunk lands in fresh pages: a page fault per 4 KiB,
/// which cost more than copying the bytes). The trade: a task's memory stays at its peak.
/// `tfr-server` calls it at start; it does nothing on other platforms.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets parameters of glibc's allocator (under its own lock); it
        // touches no allocation. Failure (an unsupported value) leaves the defaults.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

impl Gathered {
    fn new(dtype: DType, total: usize) -> Gathered {
        let n = total / dtype.size_of().max(1);
        match dtype {
            // `vec![0; n]` of a concrete type is a zeroed allocation, not a written one.
            DType::F32 => Gathered::F32(huge(vec![0.0; n])),
            DType::F64 => Gathered::F64(huge(vec![0.0; n])),
            DType::I32 => Gathered::I32(huge(vec![0; n])),
            DType::I64 => Gathered::I64(huge(vec![0; n])),
            _ => Gathered::Bytes(Vec::with_capacity(total)),
        }
    }

    /// Stores `b`, the bytes from offset `at` (the caller checked that they fit, in whole
    /// elements); false when a reused buffer turns out shared.
    fn put(&mut self, at: usize, b: &[u8]) -> bool {
        fn le<T: bytemuck::Pod>(v: &mut [T], at: usize, b: &[u8], from: fn(&[u8]) -> T) {
            let w = std::mem::size_of::<T>();
            let dst = &mut v[at / w..(at + b.len()) / w];
            if cfg!(target_endian = "little") {
                bytemuck::cast_slice_mut::<T, u8>(dst).copy_from_slice(b);
            } else {
                for (d, c) in dst.iter_mut().zip(b.chunks_exact(w)) {
                    *d = from(c);
                }
            }
        }
        match self {
            Gathered::F32(v) => le(v, at, b, |c| {
                f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))
            }),
            Gathered::F64(v) => le(v, at, b, |c| {
                f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
            }),
            Gathered::I32(v) => le(v, at, b, |c| {
                i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))
            }),
            Gathered::I64(v) => le(v, at, b, |c| {
                i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
            }),
            Gathered::Bytes(v) => v.extend_from_slice(b),
            Gathered::Reused(t) => match t.buffer_mut() {
                Some(Buffer::F32(v)) => le(v, at, b, |c| {
                    f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))
                }),
                Some(Buffer::F64(v)) => le(v, at, b, |c| {
                    f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
                }),
                Some(Buffer::I32(v)) => le(v, at, b, |c| {
                    i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))
                }),
                Some(Buffer::I64(v)) => le(v, at, b, |c| {
                    i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
                }),
                // `RecvBuffers::take` gives only unshared tensors of these types.
                _ => return false,
            },
        }
        true
    }
}

/// Reassembles a tensor from its chunks, checking that they add up; `what` names it.
pub struct ChunkAssembler {
    what: String,
    head: Option<(DType, Vec<usize>, Gathered)>,
    received: usize,
    total: usize,
    buffers: Option<std::sync::Arc<RecvBuffers>>,
    /// The first bytes of an element whose rest has not arrived yet.
    carry: [u8; 8],
    carry_len: usize,
}

impl ChunkAssembler {
    pub fn new(what: &str) -> ChunkAssembler {
        ChunkAssembler {
            what: what.to_string(),
            head: None,
            received: 0,
            total: 0,
            buffers: None,
            carry: [0; 8],
            carry_len: 0,
        }
    }

    /// An assembler that writes a large tensor into a kept buffer when one is free, and keeps
    /// the result for later ones.
    pub fn reusing(what: &str, buffers: std::sync::Arc<RecvBuffers>) -> ChunkAssembler {
        ChunkAssembler {
            buffers: Some(buffers),
            ..ChunkAssembler::new(what)
        }
    }

    fn bad(&self, m: String) -> Error {
        Error::Wire(format!("{}: {m}", self.what))
    }

    /// Takes the next chunk.
    pub fn push(&mut self, c: RecvTensorChunk) -> Result<()> {
        self.start_chunk(&c.dtype, &c.dims, c.total_bytes)?;
        self.put_bytes(&c.data)?;
        self.end_chunk()
    }

    /// Begins the next chunk with its header fields (the first chunk's announce the tensor;
    /// later chunks' are ignored, as senders leave them empty).
    pub fn start_chunk(&mut self, dtype: &str, dims: &[u64], total_bytes: u64) -> Result<()> {
        if self.head.is_some() {
            return Ok(());
        }
        let dtype = dtype_from_safetensors(dtype)
            .ok_or_else(|| self.bad(format!("unknown dtype `{dtype}`")))?;
        // The dims bound what the data may be: reserve no more than they need.
        let needed = dims
            .iter()
            .try_fold(dtype.size_of() as u64, |n, &d| n.checked_mul(d));
        let total = match (needed, usize::try_from(total_bytes)) {
            (Some(n), Ok(total)) if n == total_bytes => total,
            _ => {
                return Err(self.bad(format!(
                    "{total_bytes} bytes announced for a {dtype} tensor of dims {dims:?}"
                )))
            }
        };
        let dims = dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| self.bad(format!("dimension {d}"))))
            .collect::<Result<Vec<_>>>()?;
        self.total = total;
        let n = total / dtype.size_of().max(1);
        let reused = match &self.buffers {
            Some(b) if total >= HUGE_PAGE_MIN_BYTES => b.take(dtype, n),
            _ => None,
        };
        let gathered = match reused {
            Some(t) => Gathered::Reused(t),
            None => Gathered::new(dtype, total),
        };
        self.head = Some((dtype, dims, gathered));
        Ok(())
    }

    /// Takes the next data bytes of the current chunk, in pieces of any size: an element
    /// split between two pieces waits in a carry of at most 7 bytes.
    pub fn put_bytes(&mut self, mut b: &[u8]) -> Result<()> {
        let total = self.total;
        let pending = self.received + self.carry_len;
        if pending + b.len() > total {
            return Err(self.bad(format!(
                "chunks add up to more than the announced {total} bytes"
            )));
        }
        let Some((dtype, _, gathered)) = &mut self.head else {
            return Err(self.bad("data before the tensor's dtype and dims".into()));
        };
        let size = dtype.size_of().max(1);
        if self.carry_len > 0 {
            let take = (size - self.carry_len).min(b.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&b[..take]);
            self.carry_len += take;
            b = &b[take..];
            if self.carry_len < size {
                return Ok(());
            }
            if !gathered.put(self.received, &self.carry[..size]) {
                return Err(Error::Wire(format!(
                    "{}: the kept receive buffer is shared",
                    self.what
                )));
            }
            self.received += size;
            self.carry_len = 0;
        }
        let whole = b.len() / size * size;
        if !gathered.put(self.received, &b[..whole]) {
            return Err(Error::Wire(format!(
                "{}: the kept receive buffer is shared",
                self.what
            )));
        }
        self.received += whole;
        let rest = &b[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
        Ok(())
    }

    /// Ends the current chunk, which must have held whole elements.
    pub fn end_chunk(&mut self) -> Result<()> {
        if self.carry_len > 0 {
            let (carry, size) = (
                self.carry_len,
                self.head.as_ref().map_or(1, |h| h.0.size_of()),
            );
            return Err(self.bad(format!(
                "a chunk is no whole number of {size}-byte elements ({carry} bytes left over)"
            )));
        }
        Ok(())
    }

    /// The tensor, once every chunk arrived.
    pub fn finish(self) -> Result<Tensor> {
        let bad = |m: String| Error::Wire(format!("{}: {m}", self.what));
        if self.received != self.total || self.head.is_none() {
            return Err(match self.head {
                None => bad("the stream ended before its first chunk".into()),
                Some(_) => bad(format!(
                    "the stream ended after {} of {} bytes",
                    self.received, self.total
                )),
            });
        }
        let Some((dtype, dims, gathered)) = self.head else {
            return Err(bad("the stream ended before its first chunk".into()));
        };
        let buffer = match gathered {
            Gathered::F32(v) => Buffer::F32(v),
            Gathered::F64(v) => Buffer::F64(v),
            Gathered::I32(v) => Buffer::I32(v),
            Gathered::I64(v) => Buffer::I64(v),
            Gathered::Bytes(b) => decode(dtype, &b)
                .ok_or_else(|| bad(format!("bytes that are no valid {dtype} values")))?,
            Gathered::Reused(t) => {
                let t = t.reshaped(&dims).map_err(|e| bad(e.to_string()))?;
                if let Some(b) = &self.buffers {
                    b.keep(&t);
                }
                return Ok(t);
            }
        };
        let t = Tensor::from_buffer(&dims, buffer).map_err(|e| bad(e.to_string()))?;
        if let Some(b) = &self.buffers {
            if self.total >= HUGE_PAGE_MIN_BYTES {
                b.keep(&t);
            }
        }
        Ok(t)
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
    fn strings_are_a_clear_error() {
        let t = Tensor::from_strings(&[1], &["summary"]).unwrap();
        let e = tensor_to_proto(&t).unwrap_err().to_string();
        assert!(e.contains("string tensor cannot be sent"), "{e}");
        let e = tensor_to_chunks(&t, 1024).unwrap_err().to_string();
        assert!(e.contains("string tensor cannot be sent"), "{e}");
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
        // Chunks of the plain types share the tensor's buffer; a large tensor is reassembled
        // into a buffer that asked for huge pages.
        let n = (HUGE_PAGE_MIN_BYTES / 8) * 3 + 5;
        for t in [
            Tensor::new(&[n], (0..n as i64).map(|i| i * 3 - 7).collect()).unwrap(),
            Tensor::new(&[n], (0..n).map(|i| (i % 251) as u8).collect()).unwrap(),
            Tensor::new(&[n], (0..n).map(|i| i as f64 * 0.25).collect()).unwrap(),
        ] {
            let mut a = ChunkAssembler::new("t");
            for c in tensor_to_chunks(&t, 1 << 20).unwrap() {
                a.push(c).unwrap();
            }
            assert_eq!(a.finish().unwrap(), t);
        }
        // A kept buffer no one holds any more takes the next tensor of its size in place; one
        // still held does not.
        let buffers = std::sync::Arc::new(RecvBuffers::default());
        let big = |k: usize| {
            let n = HUGE_PAGE_MIN_BYTES / 4 + 3;
            Tensor::new(&[n], (0..n).map(|i| (i + k) as f32).collect()).unwrap()
        };
        let recv = |t: &Tensor| {
            let mut a = ChunkAssembler::reusing("t", buffers.clone());
            for c in tensor_to_chunks(t, 1 << 20).unwrap() {
                a.push(c).unwrap();
            }
            a.finish().unwrap()
        };
        let first = recv(&big(0));
        let held = first.clone();
        let second = recv(&big(1));
        assert!(!second.shares_buffer_with(&held));
        assert_eq!((held, &second), (big(0), &big(1)));
        drop(first);
        drop(second);
        let third = recv(&big(2));
        assert_eq!(third, big(2));
        assert_eq!(buffers.kept.lock().unwrap().len(), 2);
        assert!(buffers
            .kept
            .lock()
            .unwrap()
            .iter()
            .any(|k| k.shares_buffer_with(&third)));
        // Other dtypes travel as bytes, also cut in chunks.
        let b = Tensor::new(&[10], (0..10).map(|i| i % 3 == 0).collect()).unwrap();
        let c = tensor_to_chunks(&b, 3).unwrap();
        assert_eq!(c.len(), 4);
        let mut a = ChunkAssembler::new("t");
        for c in c {
            a.push(c).unwrap();
        }
        assert_eq!(a.finish().unwrap(), b);
        // A chunk that splits an element.
        let mut odd = chunks[0].clone();
        odd.data = odd.data.slice(0..6);
        let m = ChunkAssembler::new("t").push(odd).unwrap_err().to_string();
        assert!(m.contains("no whole number of 4-byte elements"), "{m}");
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
