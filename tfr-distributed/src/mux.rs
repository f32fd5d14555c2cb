//! Many calls over one long-lived bidirectional gRPC stream: each request carries an id chosen
//! by the caller and its response comes back with the same id, in any order. A unary call
//! costs a new HTTP/2 stream (headers both ways, trailers, a task on each side); a message on
//! an open stream costs one DATA frame each way, and messages queued together are written
//! together (tonic encodes every ready message into one buffer).
//!
//! [`Mux`] is the caller's side: an unbounded queue feeding the request stream and a map from
//! id to the waiting call, filled by a task reading the response stream. When the stream
//! breaks (the task died, its connection reset, the call was refused) every waiting call gets
//! the stream's status and the mux refuses new calls, so the owner opens a new one.
//! [`Answers`] is the serving side: the response stream of a handler, answering each request
//! at once when it can and otherwise from a spawned future.

use crate::cancel::CancelToken;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::Status;

/// A response message that names its request.
pub(crate) trait Tagged {
    fn id(&self) -> u64;
}

impl Tagged for crate::proto::RunGraphStreamResponse {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Tagged for crate::proto::RecvTensorsResponse {
    fn id(&self) -> u64 {
        self.id
    }
}

type Reply<R> = oneshot::Sender<Result<R, Status>>;

struct Pending<R> {
    calls: HashMap<u64, Reply<R>>,
    next_id: u64,
    /// Why the stream ended: no call is taken after.
    closed: Option<Status>,
}

/// The queue of requests as the stream tonic sends.
pub(crate) struct Requests<Q>(mpsc::UnboundedReceiver<Q>);

impl<Q> Stream for Requests<Q> {
    type Item = Q;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Q>> {
        self.0.poll_recv(cx)
    }
}

/// The caller's side of a multiplexed stream (see the module's documentation).
pub(crate) struct Mux<Q, R> {
    tx: mpsc::UnboundedSender<Q>,
    pending: Arc<Mutex<Pending<R>>>,
}

/// The status of a stream that ended without an error: the peer went away.
fn ended(what: &str) -> Status {
    let mut s = Status::unavailable(format!("the {what} stream ended"));
    s.set_source(Arc::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the peer closed it",
    )));
    s
}

impl<Q: Send + 'static, R: Tagged + Send + 'static> Mux<Q, R> {
    /// Opens the stream: `open` makes the call from the stream of requests (it runs on a
    /// task spawned on the current runtime, which then reads the responses). `what` names the
    /// stream in errors.
    pub(crate) fn open<Fut>(what: &'static str, open: impl FnOnce(Requests<Q>) -> Fut) -> Self
    where
        Fut: Future<Output = Result<tonic::Streaming<R>, Status>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(Pending {
            calls: HashMap::new(),
            next_id: 1,
            closed: None,
        }));
        let call = open(Requests(rx));
        let shared = pending.clone();
        tokio::spawn(async move {
            let why = match call.await {
                Err(s) => s,
                Ok(mut stream) => loop {
                    match stream.message().await {
                        Ok(Some(r)) => {
                            let reply =
                                shared.lock().ok().and_then(|mut p| p.calls.remove(&r.id()));
                            if let Some(reply) = reply {
                                let _ = reply.send(Ok(r));
                            }
                        }
                        Ok(None) => break ended(what),
                        Err(s) => break s,
                    }
                },
            };
            let calls = match shared.lock() {
                Ok(mut p) => {
                    p.closed = Some(why.clone());
                    std::mem::take(&mut p.calls)
                }
                Err(_) => HashMap::new(),
            };
            for (_, reply) in calls {
                let _ = reply.send(Err(why.clone()));
            }
        });
        Mux { tx, pending }
    }

    /// Whether the stream ended (a new call would fail at once).
    pub(crate) fn is_closed(&self) -> bool {
        let closed = match self.pending.lock() {
            Ok(p) => p.closed.is_some(),
            Err(_) => true,
        };
        closed || self.tx.is_closed()
    }

    /// Sends the request `make(id)`; the returned call resolves to its response.
    pub(crate) fn call(&self, make: impl FnOnce(u64) -> Q) -> Result<Call<R>, Status> {
        let (reply, rx) = oneshot::channel();
        let id = {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| Status::internal("stream lock poisoned"))?;
            if let Some(why) = &p.closed {
                return Err(why.clone());
            }
            let id = p.next_id;
            p.next_id += 1;
            p.calls.insert(id, reply);
            id
        };
        let call = Call {
            id,
            rx,
            pending: self.pending.clone(),
        };
        if self.tx.send(make(id)).is_err() {
            // The stream is gone: the reader reports why (or has).
            return Err(call.closed_status());
        }
        Ok(call)
    }
}

/// A call in flight on a [`Mux`]; dropping it forgets the call (its response, if one comes,
/// is ignored).
pub(crate) struct Call<R> {
    id: u64,
    rx: oneshot::Receiver<Result<R, Status>>,
    pending: Arc<Mutex<Pending<R>>>,
}

impl<R> Call<R> {
    fn closed_status(&self) -> Status {
        self.pending
            .lock()
            .ok()
            .and_then(|p| p.closed.clone())
            .unwrap_or_else(|| ended("call"))
    }
}

impl<R> Future for Call<R> {
    type Output = Result<R, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.closed_status())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R> Drop for Call<R> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.calls.remove(&self.id);
        }
    }
}

/// The first of `calls` to finish, as (its index, its result), taken out of the slice; None
/// when none is left.
pub(crate) async fn next_done<R>(
    calls: &mut [Option<Call<R>>],
) -> Option<(usize, Result<R, Status>)> {
    std::future::poll_fn(|cx| {
        let mut left = false;
        for (i, slot) in calls.iter_mut().enumerate() {
            if let Some(call) = slot {
                left = true;
                if let Poll::Ready(r) = Pin::new(call).poll(cx) {
                    *slot = None;
                    return Poll::Ready(Some((i, r)));
                }
            }
        }
        if left {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    })
    .await
}

/// How a served request is answered: now, or by a future (run on a task of its own, so that
/// later requests are not held up behind it).
pub(crate) enum Answer<R> {
    Now(R),
    Later(Pin<Box<dyn Future<Output = R> + Send + 'static>>),
}

/// The response stream of a multiplexed handler: reads requests, answers each with `handle`.
/// Answers given at once go out in request order, without a task or a queue in between;
/// spawned ones as they finish. It ends when the requests end (or fail) and every spawned
/// answer went out.
pub(crate) struct Answers<Q, R, H> {
    input: tonic::Streaming<Q>,
    input_done: bool,
    /// The server is shutting down: take no more requests (an open stream would keep its
    /// connection, and so the server's graceful shutdown, waiting).
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    handle: H,
    /// Taken when the requests end: the queue then ends once the spawned answers are in.
    done_tx: Option<mpsc::UnboundedSender<R>>,
    done_rx: mpsc::UnboundedReceiver<R>,
}

impl<Q, R, H> Answers<Q, R, H>
where
    H: FnMut(Q) -> Answer<R>,
{
    pub(crate) fn new(input: tonic::Streaming<Q>, closing: &CancelToken, handle: H) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let closing = closing.clone();
        Answers {
            input,
            input_done: false,
            closing: Some(Box::pin(async move { closing.cancelled().await })),
            handle,
            done_tx: Some(done_tx),
            done_rx,
        }
    }
}

impl<Q, R, H> Stream for Answers<Q, R, H>
where
    Q: Send + 'static,
    R: Send + 'static,
    H: FnMut(Q) -> Answer<R> + Unpin,
    tonic::Streaming<Q>: Unpin,
{
    type Item = Result<R, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Poll::Ready(Some(r)) = this.done_rx.poll_recv(cx) {
                return Poll::Ready(Some(Ok(r)));
            }
            if let Some(closing) = &mut this.closing {
                if closing.as_mut().poll(cx).is_ready() {
                    this.closing = None;
                    this.input_done = true;
                    this.done_tx = None;
                }
            }
            if this.input_done {
                // Every sender gone (ours dropped, spawned answers in): the end.
                return match this.done_rx.poll_recv(cx) {
                    Poll::Ready(Some(r)) => Poll::Ready(Some(Ok(r))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                };
            }
            match Pin::new(&mut this.input).poll_next(cx) {
                Poll::Ready(Some(Ok(request))) => match (this.handle)(request) {
                    Answer::Now(r) => return Poll::Ready(Some(Ok(r))),
                    Answer::Later(f) => {
                        if let Some(tx) = this.done_tx.clone() {
                            tokio::spawn(async move {
                                let _ = tx.send(f.await);
                            });
                        }
                    }
                },
                // A bad request (one over the size limit, say) breaks the stream: its status
                // ends the answers, so the caller's waiting calls get it.
                Poll::Ready(Some(Err(status))) => {
                    this.input_done = true;
                    this.done_tx = None;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(None) => {
                    this.input_done = true;
                    this.done_tx = None;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
