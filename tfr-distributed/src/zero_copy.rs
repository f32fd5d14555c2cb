//! `RecvTensor`, the RPC that carries large tensors between tasks, without the copies of
//! tonic's codec. Its messages stay gRPC and protobuf on the wire (any gRPC client of
//! `worker.proto` reads them); only their framing is done here:
//!
//! - The server answers `RecvTensor` before tonic's router ([`WorkerRoutes`]): each chunk is
//!   one small frame (the gRPC prefix and the header fields) and one frame that is a slice of
//!   the tensor's own buffer, which h2 writes to the socket as it is. tonic's encoder would
//!   copy every byte into its buffer first.
//! - The client ([`fetch`]) reads the response body's frames as h2 received them and copies
//!   each chunk's data straight into the received tensor ([`ChunkReader`]). tonic's decoder
//!   would gather every message into a buffer of its own first.
//!
//! Together they save two of the five copies a transferred byte used to take.

use crate::auth::CheckSecret;
use crate::channel::AuthChannel;
use crate::proto::worker_server::SERVICE_NAME;
use crate::proto::{RecvTensorChunk, RecvTensorRequest};
use crate::wire::ChunkAssembler;
use crate::worker::{invalid, WorkerState};
use crate::worker_rpc::chunks_of;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tfr_core::Tensor;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::Interceptor;
use tonic::Status;

/// The path of the `RecvTensor` method.
pub(crate) const RECV_TENSOR_PATH: &str = "/tfr.worker.Worker/RecvTensor";

/// The tag of `RecvTensorChunk.data` (field 4, length-delimited).
const DATA_TAG: u8 = (4 << 3) | 2;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The worker service, with `RecvTensor` answered here and every other method by `inner`
/// (tonic's generated server behind the secret check).
#[derive(Clone)]
pub(crate) struct WorkerRoutes<S> {
    pub(crate) inner: S,
    pub(crate) state: Arc<WorkerState>,
    pub(crate) check: CheckSecret,
}

impl<S> NamedService for WorkerRoutes<S> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<S, B> Service<http::Request<Body>> for WorkerRoutes<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != RECV_TENSOR_PATH {
            let answer = self.inner.call(request);
            return Box::pin(async move { Ok(answer.await?.map(Body::new)) });
        }
        let (state, mut check) = (self.state.clone(), self.check.clone());
        Box::pin(async move {
            let answer = async {
                let metadata =
                    tonic::metadata::MetadataMap::from_headers(request.headers().clone());
                check.call(tonic::Request::from_parts(metadata, Default::default(), ()))?;
                let limit = state.channel.max_message_bytes;
                let req: RecvTensorRequest = read_unary(request.into_body(), limit).await?;
                let taken = state.take_sent(req.step_id, &req.key, None).await?;
                let t = state.pulled(&req.key, taken)?;
                chunk_frames(chunks_of(&state, &t)?)
            };
            Ok(match answer.await {
                Ok(frames) => grpc_response(frames),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// The one message of a unary gRPC request body (uncompressed, at most `limit` bytes).
async fn read_unary<M: Message + Default>(body: Body, limit: usize) -> Result<M, Status> {
    let bytes = body
        .collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading the request: {e}")))?
        .to_bytes();
    let (flag, len) = match bytes.get(..5) {
        Some(p) => (p[0], u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize),
        None => return Err(invalid("a request shorter than gRPC's 5-byte prefix")),
    };
    if flag != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not accepted",
        ));
    }
    if len > limit {
        return Err(Status::resource_exhausted(format!(
            "a request of {len} bytes, more than the limit of {limit}"
        )));
    }
    if bytes.len() != 5 + len {
        return Err(invalid(format!(
            "a request body of {} bytes for a message announced as {len}",
            bytes.len() - 5
        )));
    }
    M::decode(&bytes[5..]).map_err(|e| invalid(format!("a malformed request: {e}")))
}

/// The frames of `chunks`: per chunk, the gRPC prefix with the header fields, then the data
/// (a slice of the tensor's buffer).
fn chunk_frames(chunks: Vec<RecvTensorChunk>) -> Result<Vec<Bytes>, Status> {
    let mut frames = Vec::with_capacity(2 * chunks.len());
    for mut c in chunks {
        let data = std::mem::take(&mut c.data);
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(&[0; 5]);
        c.encode(&mut head)
            .map_err(|e| Status::internal(format!("encoding a chunk: {e}")))?;
        if !data.is_empty() {
            head.push(DATA_TAG);
            prost::encoding::encode_varint(data.len() as u64, &mut head);
        }
        let len = u32::try_from(head.len() - 5 + data.len())
            .map_err(|_| Status::internal("a chunk of more than 4 GiB"))?;
        head[1..5].copy_from_slice(&len.to_be_bytes());
        frames.push(Bytes::from(head));
        if !data.is_empty() {
            frames.push(data);
        }
    }
    Ok(frames)
}

/// A gRPC response: `frames` as the body, then the trailers of success.
fn grpc_response(frames: Vec<Bytes>) -> http::Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = frames
        .into_iter()
        .map(|b| Ok::<_, Infallible>(Frame::data(b)))
        .chain(std::iter::once(Ok(Frame::trailers(trailers))));
    let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Calls `RecvTensor` over `channel` and assembles the answer into `tensor`'s value.
pub(crate) async fn fetch(
    channel: &AuthChannel,
    request: RecvTensorRequest,
    tensor: ChunkAssembler,
    limit: usize,
) -> Result<Tensor, Status> {
    let mut body = Vec::with_capacity(5 + request.encoded_len());
    body.extend_from_slice(&[0; 5]);
    request
        .encode(&mut body)
        .map_err(|e| Status::internal(format!("encoding the request: {e}")))?;
    let len = (body.len() - 5) as u32;
    body[1..5].copy_from_slice(&len.to_be_bytes());
    let mut http_request =
        http::Request::new(Body::new(http_body_util::Full::new(Bytes::from(body))));
    *http_request.method_mut() = http::Method::POST;
    *http_request.uri_mut() = http::Uri::from_static(RECV_TENSOR_PATH);
    let headers = http_request.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    let mut channel = channel.clone();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::unavailable(crate::channel::source_chain(&e)))?;
    let response = channel
        .call(http_request)
        .await
        .map_err(|e| Status::unavailable(crate::channel::source_chain(&e)))?;
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != tonic::Code::Ok {
            return Err(status);
        }
    }
    if response.status() != http::StatusCode::OK {
        return Err(Status::unknown(format!(
            "RecvTensor answered with HTTP status {}",
            response.status()
        )));
    }
    let mut body = response.into_body();
    let mut reader = ChunkReader::new(tensor, limit);
    let mut ended = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::unavailable(format!("receiving: {e}")))?;
        match frame.into_data() {
            Ok(data) => reader.feed(&data).map_err(|e| invalid(e.to_string()))?,
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    match Status::from_header_map(trailers) {
                        Some(s) if s.code() == tonic::Code::Ok => ended = true,
                        Some(s) => return Err(s),
                        None => return Err(Status::unknown("trailers without a grpc-status")),
                    }
                }
            }
        }
    }
    if !ended {
        return Err(Status::unavailable("the answer ended without its trailers"));
    }
    reader.finish().map_err(|e| invalid(e.to_string()))
}

/// Parses the gRPC messages of a `RecvTensor` answer as its frames arrive: the header fields
/// of each chunk are gathered (a few bytes), its data goes to the assembler as it comes.
pub(crate) struct ChunkReader {
    tensor: ChunkAssembler,
    /// Bytes of the current message taken but not parsed yet (the prefix or a header field).
    pending: Vec<u8>,
    state: ReadState,
    limit: usize,
}

enum ReadState {
    /// Before a message's 5-byte prefix.
    Prefix,
    /// In a message's fields; `left` bytes of it not taken yet.
    Fields { left: usize, head: Head },
    /// In the data field, `data_left` of its bytes to come, then `left` more of the message.
    Data {
        data_left: usize,
        left: usize,
        head: Head,
    },
}

/// The header fields of one chunk.
#[derive(Default)]
struct Head {
    dtype: String,
    dims: Vec<u64>,
    total_bytes: u64,
    /// The assembler was told of this chunk.
    started: bool,
}

/// A field of a chunk whose tag (and length, if any) are at the start of `pending`.
enum Field {
    /// A varint field: number, value, bytes used.
    Varint(u32, u64, usize),
    /// A length-delimited field: number, payload length, bytes of tag and length.
    Delimited(u32, usize, usize),
    /// A fixed-size field to skip: bytes of tag and value.
    Fixed(usize),
}

type ReadResult<T> = std::result::Result<T, String>;

/// A varint at the start of `b`: its value and length, None if incomplete.
fn varint(b: &[u8]) -> ReadResult<Option<(u64, usize)>> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if b.len() >= 10 {
        return Err("a varint longer than 10 bytes".into());
    }
    Ok(None)
}

/// The field at the start of `b`, None if its tag or length is incomplete.
fn field(b: &[u8]) -> ReadResult<Option<Field>> {
    let Some((tag, n)) = varint(b)? else {
        return Ok(None);
    };
    let number = (tag >> 3) as u32;
    Ok(match tag & 7 {
        0 => varint(&b[n..])?.map(|(v, m)| Field::Varint(number, v, n + m)),
        2 => match varint(&b[n..])? {
            Some((len, m)) => Some(Field::Delimited(
                number,
                usize::try_from(len).map_err(|_| format!("a field of {len} bytes"))?,
                n + m,
            )),
            None => None,
        },
        1 => Some(Field::Fixed(n + 8)),
        5 => Some(Field::Fixed(n + 4)),
        w => {
            return Err(format!(
                "field {number} has wire type {w}, which is not valid"
            ))
        }
    })
}

impl ChunkReader {
    pub(crate) fn new(tensor: ChunkAssembler, limit: usize) -> ChunkReader {
        ChunkReader {
            tensor,
            pending: Vec::new(),
            state: ReadState::Prefix,
            limit,
        }
    }

    /// Moves up to `n` bytes (no more than the message has left) from `input` to `pending`.
    fn take(pending: &mut Vec<u8>, input: &mut &[u8], left: &mut usize, n: usize) {
        let k = n.min(*left).min(input.len());
        pending.extend_from_slice(&input[..k]);
        *input = &input[k..];
        *left -= k;
    }

    /// Takes the next bytes of the body.
    pub(crate) fn feed(&mut self, mut input: &[u8]) -> crate::Result<()> {
        self.feed_inner(&mut input)
            .map_err(|m| crate::Error::Wire(format!("RecvTensor answer: {m}")))
    }

    fn feed_inner(&mut self, input: &mut &[u8]) -> ReadResult<()> {
        loop {
            match std::mem::replace(&mut self.state, ReadState::Prefix) {
                ReadState::Prefix => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let k = (5 - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..k]);
                    *input = &input[k..];
                    if self.pending.len() < 5 {
                        return Ok(());
                    }
                    let p = &self.pending;
                    if p[0] != 0 {
                        return Err("a compressed message, which is not accepted".into());
                    }
                    let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
                    if len > self.limit {
                        return Err(format!(
                            "a message of {len} bytes, more than the limit of {}",
                            self.limit
                        ));
                    }
                    self.pending.clear();
                    self.state = ReadState::Fields {
                        left: len,
                        head: Head::default(),
                    };
                }
                ReadState::Fields { mut left, mut head } => {
                    if left == 0 && self.pending.is_empty() {
                        self.end_message(&mut head)?;
                        continue;
                    }
                    let parsed = field(&self.pending)?;
                    match parsed {
                        None => {
                            if left == 0 {
                                return Err("a message ends inside a field's tag".into());
                            }
                            if input.is_empty() {
                                self.state = ReadState::Fields { left, head };
                                return Ok(());
                            }
                            // Tags and lengths are read a byte at a time: nothing past them is
                            // taken, so the data field's bytes never pass through `pending`.
                            Self::take(&mut self.pending, input, &mut left, 1);
                            self.state = ReadState::Fields { left, head };
                        }
                        Some(Field::Delimited(4, len, used)) => {
                            if len > left {
                                return Err(format!(
                                    "a data field of {len} bytes in a message with {left} left"
                                ));
                            }
                            self.pending.drain(..used);
                            if !head.started {
                                self.start_chunk(&mut head)?;
                            }
                            self.state = ReadState::Data {
                                data_left: len,
                                left: left - len,
                                head,
                            };
                        }
                        Some(f) => {
                            let need = match f {
                                Field::Varint(_, _, used) | Field::Fixed(used) => used,
                                Field::Delimited(_, len, used) => used + len,
                            };
                            if self.pending.len() < need {
                                if left == 0 {
                                    return Err("a message ends inside a field".into());
                                }
                                if input.is_empty() {
                                    self.state = ReadState::Fields { left, head };
                                    return Ok(());
                                }
                                let more = need - self.pending.len();
                                Self::take(&mut self.pending, input, &mut left, more);
                                self.state = ReadState::Fields { left, head };
                                continue;
                            }
                            Self::apply(&mut head, &f, &self.pending[..need])?;
                            self.pending.drain(..need);
                            self.state = ReadState::Fields { left, head };
                        }
                    }
                }
                ReadState::Data {
                    mut data_left,
                    left,
                    head,
                } => {
                    let k = data_left.min(input.len());
                    self.tensor
                        .put_bytes(&input[..k])
                        .map_err(|e| e.to_string())?;
                    *input = &input[k..];
                    data_left -= k;
                    self.state = if data_left == 0 {
                        ReadState::Fields { left, head }
                    } else {
                        ReadState::Data {
                            data_left,
                            left,
                            head,
                        }
                    };
                    if data_left > 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Records header field `f`, whose bytes (tag included) are `bytes`.
    fn apply(head: &mut Head, f: &Field, bytes: &[u8]) -> ReadResult<()> {
        match *f {
            Field::Varint(2, v, _) => head.dims.push(v),
            Field::Varint(3, v, _) => head.total_bytes = v,
            Field::Delimited(1, _, used) => {
                head.dtype = std::str::from_utf8(&bytes[used..])
                    .map_err(|_| "a dtype that is not UTF-8".to_string())?
                    .to_string();
            }
            Field::Delimited(2, _, used) => {
                let mut packed = &bytes[used..];
                while !packed.is_empty() {
                    let (v, n) = varint(packed)?.ok_or("a truncated packed dimension")?;
                    head.dims.push(v);
                    packed = &packed[n..];
                }
            }
            // Unknown fields are skipped, as protobuf parsers do.
            _ => {}
        }
        Ok(())
    }

    fn start_chunk(&mut self, head: &mut Head) -> ReadResult<()> {
        head.started = true;
        self.tensor
            .start_chunk(&head.dtype, &head.dims, head.total_bytes)
            .map_err(|e| e.to_string())
    }

    fn end_message(&mut self, head: &mut Head) -> ReadResult<()> {
        if !head.started {
            self.start_chunk(head)?;
        }
        self.tensor.end_chunk().map_err(|e| e.to_string())
    }

    /// The tensor, once the body ended.
    pub(crate) fn finish(self) -> crate::Result<Tensor> {
        if !matches!(self.state, ReadState::Prefix) || !self.pending.is_empty() {
            return Err(crate::Error::Wire(
                "RecvTensor answer: the body ended inside a message".into(),
            ));
        }
        self.tensor.finish()
    }
}

/// Frames as the server writes them, for tests of the reader.
#[cfg(test)]
pub(crate) fn encode_chunks_for_test(chunks: Vec<RecvTensorChunk>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        let m = c.encode_to_vec();
        out.push(0);
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(&m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tensor_to_chunks;

    fn tensor(n: usize) -> Tensor {
        Tensor::new(&[n], (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()).unwrap()
    }

    #[test]
    fn chunks_split_anywhere_are_read_back_equal() {
        let t = tensor(1000);
        let body = encode_chunks_for_test(tensor_to_chunks(&t, 256).unwrap());
        // Every piece size, including ones that split prefixes, tags and elements.
        for piece in [1, 2, 3, 5, 7, 64, 1000, body.len()] {
            let mut r = ChunkReader::new(ChunkAssembler::new("t"), 1 << 20);
            for p in body.chunks(piece) {
                r.feed(p).unwrap();
            }
            assert_eq!(r.finish().unwrap(), t, "pieces of {piece}");
        }
    }

    #[test]
    fn tonics_own_decoder_reads_the_answer() {
        let t = tensor(1000);
        let frames = chunk_frames(tensor_to_chunks(&t, 1024).unwrap()).unwrap();
        assert_eq!(frames.len(), 8, "4 chunks, two frames each");
        let body = grpc_response(frames).into_body();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let decoder = tonic_prost::ProstDecoder::<crate::proto::RecvTensorChunk>::default();
            let mut stream = tonic::codec::Streaming::new_response(
                decoder,
                body,
                http::StatusCode::OK,
                None,
                None,
            );
            let mut a = ChunkAssembler::new("t");
            while let Some(c) = stream.message().await.unwrap() {
                a.push(c).unwrap();
            }
            a.finish().unwrap()
        });
        assert_eq!(got, t);
    }

    #[test]
    fn fields_in_any_order_and_unpacked_dims_are_read() {
        // dims unpacked (field 2 as varints), total_bytes before dtype, an unknown field.
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let mut m = vec![0x10, 2, 0x10, 2, 0x18, 16, 0x0a, 3];
        m.extend_from_slice(b"F32");
        m.extend_from_slice(&[0x48, 7]); // field 9, varint: unknown
        m.push(DATA_TAG);
        m.push(16);
        m.extend_from_slice(&data);
        let mut body = vec![0];
        body.extend_from_slice(&(m.len() as u32).to_be_bytes());
        body.extend_from_slice(&m);
        let mut r = ChunkReader::new(ChunkAssembler::new("t"), 1 << 20);
        r.feed(&body).unwrap();
        let got = r.finish().unwrap();
        assert_eq!(
            got,
            Tensor::new(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap()
        );
    }

    #[test]
    fn broken_answers_are_errors_naming_the_fault() {
        let t = tensor(100);
        let body = encode_chunks_for_test(tensor_to_chunks(&t, 128).unwrap());
        let read = |b: &[u8], limit: usize| {
            let mut r = ChunkReader::new(ChunkAssembler::new("key k"), limit);
            r.feed(b).and_then(|()| r.finish()).unwrap_err().to_string()
        };
        let m = read(&body[..body.len() - 3], 1 << 20);
        assert!(m.contains("ended"), "{m}");
        let m = read(&body, 16);
        assert!(m.contains("more than the limit of 16"), "{m}");
        let mut compressed = body.clone();
        compressed[0] = 1;
        assert!(read(&compressed, 1 << 20).contains("compressed"));
        // A data field longer than its message.
        let bad = [0, 0, 0, 0, 3, DATA_TAG, 100, 0];
        let m = read(&bad, 1 << 20);
        assert!(m.contains("data field of 100 bytes"), "{m}");
        // Data that is no whole number of elements.
        let mut m6 = vec![0x0a, 3];
        m6.extend_from_slice(b"F32");
        m6.extend_from_slice(&[0x10, 2, 0x18, 8, DATA_TAG, 6, 1, 2, 3, 4, 5, 6]);
        let mut b6 = vec![0];
        b6.extend_from_slice(&(m6.len() as u32).to_be_bytes());
        b6.extend_from_slice(&m6);
        let m = read(&b6, 1 << 20);
        assert!(m.contains("no whole number of 4-byte elements"), "{m}");
        // A wire type protobuf does not have.
        let m = read(&[0, 0, 0, 0, 1, 0x0f], 1 << 20);
        assert!(m.contains("wire type 7"), "{m}");
    }
}
