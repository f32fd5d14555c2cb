//! Queue kernels. A queue is a [`Queue`] in the session's [`ResourceMgr`](crate::resource::ResourceMgr)
//! under `queue:<shared name>`, made by the first run of its `FIFOQueue`/`RandomShuffleQueue`
//! node; the other queue ops find it through the handle. Steps on different threads share it:
//! enqueues wait on a condition variable while the queue is full, dequeues while it has too few
//! elements, and closing wakes every waiter. Steps holding a blocking op run on the caller's
//! thread (see [`step_may_block`]), so a waiting dequeue never holds a worker of the session's
//! pool that a producer step needs.

use crate::dispatch_any;
use crate::error::{Code, KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::kernels::random_ops::PhiloxStream;
use crate::tensor::Tensor;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tfr_graph::ops::data_flow_ops::{decode_shapes, may_block};
use tfr_graph::{DType, DTypeSet, Graph, Shape};

/// True when a step graph holds an op that may wait for another step (a queue op).
pub fn step_may_block(g: &Graph) -> bool {
    g.nodes().iter().any(|n| may_block(&n.op))
}

/// What a queue holds and how it orders; two handles of one shared name must agree on it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSpec {
    pub dtypes: Vec<DType>,
    pub shapes: Vec<Shape>,
    /// `usize::MAX` when unbounded.
    pub capacity: usize,
    /// `Some(min_after_dequeue)` for a random shuffle queue.
    pub shuffle: Option<usize>,
}

struct QueueState {
    items: VecDeque<Vec<Tensor>>,
    closed: bool,
    cancelled: bool,
    /// Dequeues and enqueues are served in the order they arrive, as TF's queues serve their
    /// attempts: a waiting dequeue gets the next element before a later one, so a fast step
    /// cannot take a token another step has waited for (SyncReplicas' token queue relies on it).
    dequeue_line: Line,
    enqueue_line: Line,
}

/// A ticket line: callers are served one at a time, in the order they joined.
#[derive(Default)]
struct Line {
    next: u64,
    serving: u64,
}

impl Line {
    fn join(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }

    fn is_turn(&self, ticket: u64) -> bool {
        self.serving == ticket
    }

    /// Ends `ticket`'s turn. A caller failed while still waiting (a cancelled enqueue)
    /// passes the line on as well: every later one in that line fails the same way.
    fn leave(&mut self, ticket: u64) {
        self.serving = self.serving.max(ticket + 1);
    }
}

/// A queue of tuples of tensors shared by the steps of one session.
pub struct Queue {
    pub name: String,
    pub spec: QueueSpec,
    stream: Option<PhiloxStream>,
    state: Mutex<QueueState>,
    /// Signalled on every change (enqueue, dequeue, close).
    changed: Condvar,
}

fn cancelled(message: String) -> KernelError {
    KernelError {
        code: Code::Cancelled,
        message,
    }
}

impl Queue {
    pub fn new(name: &str, spec: QueueSpec, seeds: (i64, i64)) -> Queue {
        Queue {
            name: name.to_string(),
            stream: spec.shuffle.map(|_| PhiloxStream::new(seeds.0, seeds.1)),
            spec,
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
                cancelled: false,
                dequeue_line: Line::default(),
                enqueue_line: Line::default(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> KResult<MutexGuard<'_, QueueState>> {
        self.state
            .lock()
            .map_err(|_| KernelError::internal(format!("queue `{}`: lock poisoned", self.name)))
    }

    fn wait<'a>(&self, g: MutexGuard<'a, QueueState>) -> KResult<MutexGuard<'a, QueueState>> {
        self.changed
            .wait(g)
            .map_err(|_| KernelError::internal(format!("queue `{}`: lock poisoned", self.name)))
    }

    /// Checks one element against the queue's component dtypes and shapes.
    pub fn check_element(&self, element: &[Tensor]) -> KResult {
        if element.len() != self.spec.dtypes.len() {
            return Err(KernelError::invalid(format!(
                "queue `{}` has {} components, got {}",
                self.name,
                self.spec.dtypes.len(),
                element.len()
            )));
        }
        for (k, (t, (dtype, shape))) in element
            .iter()
            .zip(self.spec.dtypes.iter().zip(&self.spec.shapes))
            .enumerate()
        {
            if t.dtype() != *dtype || !shape.accepts(t.shape()) {
                return Err(KernelError::invalid(format!(
                    "queue `{}`: component {k} must be {dtype}{shape}, got {}{:?}",
                    self.name,
                    t.dtype(),
                    t.shape()
                )));
            }
        }
        Ok(())
    }

    /// Adds elements in order, waiting while the queue is full. Fails with `Cancelled` when the
    /// queue was closed before the call, or is closed with `cancel_pending_enqueues` while it
    /// waits (elements already added stay).
    pub fn enqueue(&self, elements: Vec<Vec<Tensor>>) -> KResult {
        for e in &elements {
            self.check_element(e)?;
        }
        let mut st = self.lock()?;
        if st.closed {
            return Err(cancelled(format!("queue `{}` is closed", self.name)));
        }
        let ticket = st.enqueue_line.join();
        let mut result = Ok(());
        for e in elements {
            while !(st.cancelled
                || st.enqueue_line.is_turn(ticket) && st.items.len() < self.spec.capacity)
            {
                st = self.wait(st)?;
            }
            if st.cancelled {
                result = Err(cancelled(format!(
                    "queue `{}` was closed with its pending enqueues cancelled",
                    self.name
                )));
                break;
            }
            st.items.push_back(e);
            self.changed.notify_all();
        }
        st.enqueue_line.leave(ticket);
        self.changed.notify_all();
        result
    }

    /// Removes `n` elements, waiting until there are enough (and, for a shuffle queue, enough
    /// left over). A closed queue with fewer than `n` elements is an `OutOfRange` error that
    /// leaves them in place.
    pub fn dequeue(&self, n: usize) -> KResult<Vec<Vec<Tensor>>> {
        if n > self.spec.capacity {
            return Err(KernelError::invalid(format!(
                "cannot dequeue {n} elements at once from queue `{}` of capacity {}",
                self.name, self.spec.capacity
            )));
        }
        // A shuffle queue keeps `min_after_dequeue` elements, but never so many that a dequeue
        // of `n` could not run on a full queue.
        let keep = self
            .spec
            .shuffle
            .map_or(0, |m| m.min(self.spec.capacity - n));
        let mut st = self.lock()?;
        let ticket = st.dequeue_line.join();
        while !(st.dequeue_line.is_turn(ticket)
            && (st.closed || st.items.len() >= n.saturating_add(keep)))
        {
            st = self.wait(st)?;
        }
        let result = self.take(&mut st, n);
        st.dequeue_line.leave(ticket);
        self.changed.notify_all();
        result
    }

    /// Takes `n` elements for the dequeue whose turn it is (an `OutOfRange` error when the
    /// queue is closed with fewer).
    fn take(&self, st: &mut QueueState, n: usize) -> KResult<Vec<Vec<Tensor>>> {
        let len = st.items.len();
        if len < n {
            return Err(KernelError::out_of_range(format!(
                "queue `{}` is closed and has {len} elements, fewer than the {n} requested",
                self.name
            )));
        }
        let mut out = Vec::with_capacity(n);
        match &self.stream {
            Some(stream) => {
                let mut draws = stream.reserve((n as u64).div_ceil(2));
                for _ in 0..n {
                    let i = draws.below(st.items.len() as u64) as usize;
                    if let Some(e) = st.items.swap_remove_back(i) {
                        out.push(e);
                    }
                }
            }
            None => out.extend(st.items.drain(..n)),
        }
        if let Err(e) = check_stackable(&self.name, &out) {
            // Put the elements back (in order for a FIFO queue) and report.
            for el in out.into_iter().rev() {
                st.items.push_front(el);
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Closes the queue: later enqueues fail; dequeues drain it, then fail with `OutOfRange`.
    pub fn close(&self, cancel_pending_enqueues: bool) -> KResult {
        let mut st = self.lock()?;
        st.closed = true;
        st.cancelled |= cancel_pending_enqueues;
        self.changed.notify_all();
        Ok(())
    }

    /// Dequeues waiting in line (for elements or for their turn).
    pub fn waiting_dequeues(&self) -> usize {
        self.state
            .lock()
            .map(|s| (s.dequeue_line.next - s.dequeue_line.serving) as usize)
            .unwrap_or(0)
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.closed).unwrap_or(true)
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.items.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check_stackable(name: &str, elements: &[Vec<Tensor>]) -> KResult {
    let Some(first) = elements.first() else {
        return Ok(());
    };
    for e in &elements[1..] {
        for (k, (a, b)) in first.iter().zip(e).enumerate() {
            if !a.same_shape(b) {
                return Err(KernelError::invalid(format!(
                    "queue `{name}`: dequeue_many needs equal element shapes, component {k} has \
                     {:?} and {:?}",
                    a.shape(),
                    b.shape()
                )));
            }
        }
    }
    Ok(())
}

/// The slices of `t` along dimension 0.
pub fn split_rows(t: &Tensor) -> KResult<Vec<Tensor>> {
    let Some((&n, rest)) = t.shape().split_first() else {
        return Err(KernelError::invalid("cannot split a scalar into rows"));
    };
    let row: usize = rest.iter().product();
    dispatch_any!(t.dtype(), T => {
        let s = t.as_slice::<T>()?;
        (0..n)
            .map(|i| Ok(Tensor::new(rest, s[i * row..(i + 1) * row].to_vec())?))
            .collect()
    }, _ => Err(KernelError::invalid("unsupported dtype")))
}

/// Stacks equally shaped tensors along a new dimension 0; `element` gives the shape when there
/// are none.
pub fn stack_rows(parts: &[Tensor], dtype: DType, element: &[usize]) -> KResult<Tensor> {
    let shape: Vec<usize> = match parts.first() {
        Some(f) => std::iter::once(parts.len())
            .chain(f.shape().iter().copied())
            .collect(),
        None => std::iter::once(0).chain(element.iter().copied()).collect(),
    };
    dispatch_any!(dtype, T => {
        let row: usize = shape[1..].iter().product();
        let mut out: Vec<T> = Vec::with_capacity(row * parts.len());
        for p in parts {
            out.extend_from_slice(p.as_slice::<T>()?);
        }
        Ok(Tensor::new(&shape, out)?)
    }, _ => Err(KernelError::invalid("unsupported dtype")))
}

fn queue_key(name: &str) -> String {
    format!("queue:{name}")
}

/// The queue a handle input names.
fn queue(ctx: &KernelContext<'_>) -> KResult<Arc<Queue>> {
    let name = ctx
        .input(0)
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::invalid("empty queue handle"))?;
    ctx.resources
        .find_state::<Queue>(&queue_key(&name))?
        .ok_or_else(|| KernelError {
            code: Code::NotFound,
            message: format!("no queue named `{name}` exists in this session"),
        })
}

fn handle_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtypes = init.attrs.dtypes("component_types")?.clone();
    let shapes = decode_shapes(init.attrs.ints("shapes")?, dtypes.len())?;
    let capacity = match *init.attrs.int("capacity")? {
        c if c > 0 => c as usize,
        -1 => usize::MAX,
        c => return Err(format!("capacity must be positive or -1, got {c}")),
    };
    let shuffle = match init.attrs.int_opt("min_after_dequeue") {
        Some(&m) if m >= 0 => Some(m as usize),
        Some(&m) => return Err(format!("min_after_dequeue must be >= 0, got {m}")),
        None => None,
    };
    let seeds = (
        init.attrs.int_opt("seed").copied().unwrap_or(0),
        init.attrs.int_opt("seed2").copied().unwrap_or(0),
    );
    let name = match init.attrs.string("shared_name")?.as_str() {
        "" => init.node.to_string(),
        s => s.to_string(),
    };
    let spec = QueueSpec {
        dtypes,
        shapes,
        capacity,
        shuffle,
    };
    let key = queue_key(&name);
    let handle = Tensor::scalar(name.clone());
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let q = ctx
            .resources
            .state(&key, || Queue::new(&name, spec.clone(), seeds))?;
        if q.spec != spec {
            return Err(KernelError::invalid(format!(
                "queue `{name}` exists as {:?} but this handle asks for {:?}",
                q.spec, spec
            )));
        }
        ctx.set_output(handle.clone());
        Ok(())
    }))
}

fn components(ctx: &mut KernelContext<'_>) -> Vec<Tensor> {
    (1..ctx.num_inputs()).map(|i| ctx.take_input(i)).collect()
}

fn enqueue_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let q = queue(ctx)?;
        let element = components(ctx);
        q.enqueue(vec![element])
    }))
}

fn enqueue_many_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let q = queue(ctx)?;
        let parts = components(ctx);
        let n = parts.first().and_then(|t| t.shape().first().copied());
        let mut columns = Vec::with_capacity(parts.len());
        for (k, t) in parts.iter().enumerate() {
            if t.rank() == 0 || t.shape().first().copied() != n {
                return Err(KernelError::invalid(format!(
                    "queue `{}`: enqueue_many needs components with one leading batch \
                     dimension, component {k} has shape {:?}",
                    q.name,
                    t.shape()
                )));
            }
            columns.push(split_rows(t)?);
        }
        let n = n.unwrap_or(0);
        let mut elements: Vec<Vec<Tensor>> =
            (0..n).map(|_| Vec::with_capacity(parts.len())).collect();
        for column in columns {
            for (e, t) in elements.iter_mut().zip(column) {
                e.push(t);
            }
        }
        q.enqueue(elements)
    }))
}

/// Checks that the queue holds what a dequeue node was built for.
fn check_types(q: &Queue, dtypes: &[DType]) -> KResult {
    if q.spec.dtypes != dtypes {
        return Err(KernelError::invalid(format!(
            "queue `{}` holds {:?}, the dequeue expects {:?}",
            q.name, q.spec.dtypes, dtypes
        )));
    }
    Ok(())
}

fn dequeue_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtypes = init.attrs.dtypes("component_types")?.clone();
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let q = queue(ctx)?;
        check_types(&q, &dtypes)?;
        let mut got = q.dequeue(1)?;
        let element = got
            .pop()
            .ok_or_else(|| KernelError::internal("dequeue returned nothing"))?;
        for t in element {
            ctx.set_output(t);
        }
        Ok(())
    }))
}

fn dequeue_many_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtypes = init.attrs.dtypes("component_types")?.clone();
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let q = queue(ctx)?;
        check_types(&q, &dtypes)?;
        let n = match ctx.input_ints(1)?.as_slice() {
            &[n] if n >= 0 => n as usize,
            v => {
                return Err(KernelError::invalid(format!(
                    "n must be one non-negative integer, got {v:?}"
                )))
            }
        };
        let element_shapes: Vec<Vec<usize>> = if n == 0 {
            q.spec
                .shapes
                .iter()
                .map(|s| {
                    s.to_known().ok_or_else(|| {
                        KernelError::invalid(format!(
                            "queue `{}`: dequeue_many(0) needs fully known component shapes",
                            q.name
                        ))
                    })
                })
                .collect::<KResult<_>>()?
        } else {
            vec![Vec::new(); dtypes.len()]
        };
        let elements = q.dequeue(n)?;
        for (k, &dtype) in dtypes.iter().enumerate() {
            let column: Vec<Tensor> = elements.iter().map(|e| e[k].clone()).collect();
            ctx.set_output(stack_rows(&column, dtype, &element_shapes[k])?);
        }
        Ok(())
    }))
}

fn close_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let cancel = *init.attrs.boolean("cancel_pending_enqueues")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        queue(ctx)?.close(cancel)
    }))
}

fn size_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let n = queue(ctx)?.len();
        let n = i32::try_from(n)
            .map_err(|_| KernelError::out_of_range("queue size overflows int32"))?;
        ctx.set_output(Tensor::scalar(n));
        Ok(())
    }))
}

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("FIFOQueue", res, handle_kernel);
    r.cpu("RandomShuffleQueue", res, handle_kernel);
    r.cpu("QueueEnqueue", res, enqueue_kernel);
    r.cpu("QueueEnqueueMany", res, enqueue_many_kernel);
    r.cpu("QueueDequeue", res, dequeue_kernel);
    r.cpu("QueueDequeueMany", res, dequeue_many_kernel);
    r.cpu("QueueClose", res, close_kernel);
    r.cpu("QueueSize", res, size_kernel);
}
