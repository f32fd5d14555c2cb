//! The worker service's RPCs (tonic's `Worker` trait) over [`WorkerState`], and the remote
//! side of a step's rendezvous ([`RemoteRendezvous`]).
//!
//! Besides the unary `RunGraph`, a master runs partitions over `RunGraphStream`, one
//! long-lived stream per (master, task) carrying requests tagged with ids (see
//! [`crate::mux`]). Tasks pull values from each other over `RecvTensors` streams (small
//! values, one message each) and `RecvTensor` (larger ones, in chunks).

use crate::error::code_to_status;
use crate::mux::{Answer, Answers};
use crate::proto::worker_server::Worker;
use crate::proto::{
    DeregisterGraphRequest, Empty, PushTensorRequest, RecvTensorChunk, RecvTensorRequest,
    RecvTensorsRequest, RecvTensorsResponse, RegisterGraphRequest, RegisterGraphResponse,
    RemoteRecv, RunGraphRequest, RunGraphResponse, RunGraphStreamRequest, RunGraphStreamResponse,
    StatusResponse, StepRequest,
};
use crate::wire::{tensor_from_proto, tensor_to_chunks, tensor_to_proto, ChunkAssembler};
use crate::worker::{invalid, status_text, RunResult, WorkerService, WorkerState};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use tfr_core::error::Code;
use tfr_core::{KernelError, Tensor};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

type Answering<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send + 'static>>;

/// The remote side of a step's rendezvous: a receive here of a key another task produces
/// asks that task, which takes the value from its step's outbox: small values over the
/// `RecvTensors` stream to that task, larger ones with `RecvTensor`, in chunks.
pub struct RemoteRendezvous<'a> {
    pub(crate) state: &'a WorkerState,
    pub(crate) step_id: u64,
}

impl RemoteRendezvous<'_> {
    /// The value of `recv.key`, from the task that produces it.
    pub async fn fetch(&self, recv: &RemoteRecv) -> Result<Tensor, KernelError> {
        let fail = |code: Code, m: String| KernelError {
            code,
            message: format!(
                "receiving `{}` from {} at {}: {m}",
                recv.key, recv.task, recv.address
            ),
        };
        let to_kernel = |s: Status| {
            let code = if s.code() == tonic::Code::Cancelled {
                Code::Cancelled
            } else {
                Code::Internal
            };
            fail(code, status_text(&s))
        };
        let state = self.state;
        let mux = state
            .peer_stream(&recv.address, &recv.task)
            .await
            .map_err(|e| fail(Code::Internal, e.to_string()))?;
        let call = mux
            .call(|id| RecvTensorsRequest {
                id,
                step_id: self.step_id,
                key: recv.key.clone(),
                max_bytes: state.channel.chunk_bytes as u64,
            })
            .map_err(to_kernel)?;
        let answer = call.await.map_err(to_kernel)?;
        if answer.code != 0 {
            return Err(to_kernel(Status::new(answer.code.into(), answer.message)));
        }
        let mut tensor = ChunkAssembler::reusing(&recv.key, state.recv_buffers.clone());
        if !answer.too_large {
            let chunk = answer
                .value
                .ok_or_else(|| fail(Code::Internal, "the answer has no value".into()))?;
            tensor
                .push(chunk)
                .map_err(|e| fail(Code::Internal, e.to_string()))?;
            return tensor
                .finish()
                .map_err(|e| fail(Code::Internal, e.to_string()));
        }
        let channel = state
            .peer_channel(&recv.address, &recv.task)
            .await
            .map_err(|e| fail(Code::Internal, e.to_string()))?;
        let request = RecvTensorRequest {
            step_id: self.step_id,
            key: recv.key.clone(),
        };
        crate::zero_copy::fetch(&channel, request, tensor, state.channel.max_message_bytes)
            .await
            .map_err(to_kernel)
    }
}

/// The answer of the RunGraph stream to request `id`.
pub(crate) fn run_response(id: u64, r: RunResult) -> RunGraphStreamResponse {
    let r = r.and_then(|fetched| {
        fetched
            .iter()
            .map(tensor_to_proto)
            .collect::<Result<Vec<_>, crate::Error>>()
            .map_err(|e| invalid(e.to_string()))
    });
    match r {
        Ok(fetches) => RunGraphStreamResponse {
            id,
            fetches,
            ..RunGraphStreamResponse::default()
        },
        Err(s) => RunGraphStreamResponse {
            id,
            code: s.code() as i32,
            message: s.message().to_string(),
            fetches: Vec::new(),
        },
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn register_graph(
        &self,
        request: Request<RegisterGraphRequest>,
    ) -> Result<Response<RegisterGraphResponse>, Status> {
        let handle = self.state.register(request.into_inner())?;
        Ok(Response::new(RegisterGraphResponse { handle }))
    }

    async fn deregister_graph(
        &self,
        request: Request<DeregisterGraphRequest>,
    ) -> Result<Response<Empty>, Status> {
        let handles = request.into_inner().handles;
        let mut graphs = self
            .state
            .graphs
            .write()
            .map_err(|_| self.state.internal("graphs"))?;
        for h in handles {
            graphs.remove(&h);
        }
        Ok(Response::new(Empty {}))
    }

    async fn run_graph(
        &self,
        request: Request<RunGraphRequest>,
    ) -> Result<Response<RunGraphResponse>, Status> {
        let fetched = match self.state.start_run(request.into_inner()) {
            Answer::Now(r) => r,
            Answer::Later(f) => f.await,
        }?;
        let fetches = fetched
            .iter()
            .map(tensor_to_proto)
            .collect::<Result<Vec<_>, crate::Error>>()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Response::new(RunGraphResponse { fetches }))
    }

    type RunGraphStreamStream = Answering<RunGraphStreamResponse>;

    /// Runs each request of the stream as `RunGraph` does, answering with its id; short
    /// partitions are answered in order as they come, others when they finish.
    async fn run_graph_stream(
        &self,
        request: Request<Streaming<RunGraphStreamRequest>>,
    ) -> Result<Response<Self::RunGraphStreamStream>, Status> {
        let state = self.state.clone();
        let closing = state.closing.clone();
        let answers = Answers::new(
            request.into_inner(),
            &closing,
            move |q: RunGraphStreamRequest| {
                let id = q.id;
                let Some(run) = q.request else {
                    let missing = invalid("a RunGraph stream message without a request");
                    return Answer::Now(run_response(id, Err(missing)));
                };
                match state.start_run(run) {
                    Answer::Now(r) => Answer::Now(run_response(id, r)),
                    Answer::Later(f) => {
                        Answer::Later(Box::pin(async move { run_response(id, f.await) }))
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(answers)))
    }

    type RecvTensorStream = Answering<RecvTensorChunk>;

    /// Waits for the key's value in the step's outbox and streams it in chunks of
    /// `ChannelOptions::chunk_bytes`. A task's server answers this method without tonic's
    /// encoder (`crate::zero_copy`), in the same messages; this one serves the service when
    /// it is mounted on its own.
    async fn recv_tensor(
        &self,
        request: Request<RecvTensorRequest>,
    ) -> Result<Response<Self::RecvTensorStream>, Status> {
        let req = request.into_inner();
        let state = &self.state;
        let taken = state.take_sent(req.step_id, &req.key, None).await?;
        let t = state.pulled(&req.key, taken)?;
        let chunks = chunks_of(state, &t)?;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    type RecvTensorsStream = Answering<RecvTensorsResponse>;

    /// Answers each receive of the stream with the whole value, or says it is too large.
    async fn recv_tensors(
        &self,
        request: Request<Streaming<RecvTensorsRequest>>,
    ) -> Result<Response<Self::RecvTensorsStream>, Status> {
        let state = self.state.clone();
        let closing = state.closing.clone();
        let answers = Answers::new(request.into_inner(), &closing, move |q| {
            state.answer_recv(q)
        });
        Ok(Response::new(Box::pin(answers)))
    }

    /// A value of a frame-aware transfer whose sender is on another task (see `RemoteSend`).
    async fn push_tensor(
        &self,
        request: Request<PushTensorRequest>,
    ) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        let value = req
            .tensor
            .as_ref()
            .map(|t| tensor_from_proto(t, &format!("pushed `{}`", req.key)))
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        self.state
            .step(req.step_id)?
            .rendezvous
            .send_value(&req.key, value)
            .map_err(|e| Status::new(code_to_status(e.code), e.message))?;
        Ok(Response::new(Empty {}))
    }

    async fn cleanup_step(&self, request: Request<StepRequest>) -> Result<Response<Empty>, Status> {
        self.state
            .end_step(request.into_inner().step_id, "the step was cleaned up");
        Ok(Response::new(Empty {}))
    }

    async fn abort_step(&self, request: Request<StepRequest>) -> Result<Response<Empty>, Status> {
        // Wakes the step's waiting receives with the reason; a `RunGraph` of the step that
        // arrives later fails at once.
        let req = request.into_inner();
        self.state.end_step(req.step_id, &req.reason);
        Ok(Response::new(Empty {}))
    }

    async fn status(&self, _: Request<Empty>) -> Result<Response<StatusResponse>, Status> {
        let s = &self.state;
        Ok(Response::new(StatusResponse {
            task: s.task.clone(),
            registered_graphs: s.graphs.read().map(|g| g.len()).unwrap_or(0) as u64,
            active_steps: s.steps.lock().map(|g| g.len()).unwrap_or(0) as u64,
            variables: s.resources.variable_names(),
            tensors_sent: s.tensors_sent.load(Ordering::Relaxed),
            chunks_sent: s.chunks_sent.load(Ordering::Relaxed),
        }))
    }
}

/// Chunks of a pulled value for `RecvTensor`.
pub(crate) fn chunks_of(state: &WorkerState, t: &Tensor) -> Result<Vec<RecvTensorChunk>, Status> {
    let chunks =
        tensor_to_chunks(t, state.channel.chunk_bytes).map_err(|e| invalid(e.to_string()))?;
    state.tensors_sent.fetch_add(1, Ordering::Relaxed);
    state
        .chunks_sent
        .fetch_add(chunks.len() as u64, Ordering::Relaxed);
    Ok(chunks)
}
