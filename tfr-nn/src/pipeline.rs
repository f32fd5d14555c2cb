//! An input pipeline over an in-memory dataset, the paper's way: producer threads run their own
//! enqueue steps on the training session, a queue (random-shuffle or FIFO) buffers and mixes
//! examples, and the training graph takes batches from `dequeue_many`.
//!
//! ```text
//! producer 0: shuffle its shard each epoch -> gather a chunk -> QueueEnqueueMany --\
//! producer 1: ...                                                                   > queue -> QueueDequeueMany(batch) -> model
//! ```
//!
//! [`InputPipeline::new`] adds the queue and its ops to the graph; [`InputPipeline::start`]
//! spawns the producers for a session and returns a [`PipelineRunner`]. With a finite number
//! of epochs the last producer to finish closes the queue, so the consumer's dequeue fails with
//! `Code::OutOfRange` once the data is used up ([`InputPipeline::next_batch`] turns that into
//! `None`). [`PipelineRunner::stop`] (or dropping the runner) closes the queue with its pending
//! enqueues cancelled and joins the producers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tfr_core::{Code, Session, Tensor};
use tfr_graph::ops::data_flow_ops::{Queue, ShuffleOptions};
use tfr_graph::{DType, Graph, GraphError, NodeId, Output, Shape};

/// How the pipeline batches, shuffles and prefetches.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Examples per dequeued batch.
    pub batch_size: usize,
    /// Examples the queue holds at most (the prefetch buffer).
    pub capacity: usize,
    /// Shuffle: each producer permutes its shard every epoch and the queue is a
    /// random-shuffle queue keeping `min_after_dequeue` examples. Otherwise a FIFO queue and
    /// examples in order (one producer keeps the dataset's order exactly).
    pub shuffle: bool,
    pub min_after_dequeue: usize,
    /// Producer threads; producer `k` reads examples `k, k + producers, ...`.
    pub producers: usize,
    /// Examples per enqueue step.
    pub chunk: usize,
    /// Passes over the data; `None` repeats until the runner stops.
    pub epochs: Option<usize>,
    /// Seed of the shuffles (producers' and the queue's); `None`: nondeterministic.
    pub seed: Option<u64>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch_size: 32,
            capacity: 2048,
            shuffle: true,
            min_after_dequeue: 512,
            producers: 2,
            chunk: 64,
            epochs: None,
            seed: None,
        }
    }
}

/// A failure to build or start a pipeline, or one of its producers' errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Session(#[from] tfr_core::Error),
    #[error("input pipeline: {0}")]
    Invalid(String),
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// The pipeline's part of the graph.
pub struct InputPipeline {
    pub queue: Queue,
    /// One batch, one output per component, each `[batch_size, example dims...]`.
    pub batch: Vec<Output>,
    /// The number of buffered examples.
    pub size: Output,
    components: Vec<(DType, Vec<usize>)>,
    placeholders: Vec<Output>,
    enqueue: NodeId,
    close: NodeId,
    cancel: NodeId,
    options: PipelineOptions,
}

impl InputPipeline {
    /// Adds a pipeline named `name` for examples whose components have the given dtypes and
    /// (fully known) per-example shapes, e.g. `[(F32, [28, 28, 1]), (I32, [])]`.
    pub fn new(
        g: &mut Graph,
        name: &str,
        components: &[(DType, Vec<usize>)],
        options: PipelineOptions,
    ) -> Result<InputPipeline> {
        let o = &options;
        if components.is_empty() {
            return Err(PipelineError::Invalid("no components".into()));
        }
        if o.batch_size == 0 || o.producers == 0 || o.chunk == 0 {
            return Err(PipelineError::Invalid(
                "batch_size, producers and chunk must be positive".into(),
            ));
        }
        if o.batch_size > o.capacity {
            return Err(PipelineError::Invalid(format!(
                "batch_size {} exceeds the capacity {}",
                o.batch_size, o.capacity
            )));
        }
        let dtypes: Vec<DType> = components.iter().map(|c| c.0).collect();
        let shapes: Vec<Shape> = components.iter().map(|c| Shape::known(&c.1)).collect();
        g.with_scope(name, |g| {
            let queue = if o.shuffle {
                let min_after_dequeue = o.min_after_dequeue.min(o.capacity.saturating_sub(1));
                g.random_shuffle_queue(
                    "queue",
                    &dtypes,
                    &shapes,
                    Some(o.capacity),
                    ShuffleOptions {
                        min_after_dequeue,
                        seed: o.seed,
                    },
                )?
            } else {
                g.fifo_queue("queue", &dtypes, &shapes, Some(o.capacity))?
            };
            let placeholders = components
                .iter()
                .enumerate()
                .map(|(k, (dtype, dims))| {
                    let mut shape = vec![tfr_graph::Dim::Unknown];
                    shape.extend(dims.iter().map(|&d| tfr_graph::Dim::Known(d)));
                    g.placeholder(&format!("examples_{k}"), *dtype, Shape::new(shape))
                })
                .collect::<tfr_graph::Result<Vec<_>>>()?;
            let enqueue = g.queue_enqueue_many(&queue, &placeholders)?;
            let batch = g.queue_dequeue_many(&queue, o.batch_size)?;
            let size = g.queue_size(&queue)?;
            let close = g.queue_close(&queue, false)?;
            let cancel = g.queue_close(&queue, true)?;
            Ok(InputPipeline {
                queue,
                batch,
                size,
                components: components.to_vec(),
                placeholders,
                enqueue,
                close,
                cancel,
                options: options.clone(),
            })
        })
    }

    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// Starts the producers over `data` (one tensor per component, examples along dimension 0)
    /// on `session`, which must be over the graph this pipeline was added to.
    pub fn start(&self, session: &Session, data: Vec<Tensor>) -> Result<PipelineRunner> {
        if data.len() != self.components.len() {
            return Err(PipelineError::Invalid(format!(
                "{} data tensors for {} components",
                data.len(),
                self.components.len()
            )));
        }
        let n = data[0].shape().first().copied().unwrap_or(0);
        for (k, (t, (dtype, dims))) in data.iter().zip(&self.components).enumerate() {
            if t.dtype() != *dtype
                || t.shape().first() != Some(&n)
                || t.shape().get(1..) != Some(&dims[..])
            {
                return Err(PipelineError::Invalid(format!(
                    "component {k}: expected {dtype}[{n}, {dims:?}...], got {}{:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
        }
        if n == 0 {
            return Err(PipelineError::Invalid("the dataset is empty".into()));
        }
        let enqueue = Arc::new(session.make_callable(&self.placeholders, &[], &[self.enqueue])?);
        let data = Arc::new(data);
        let stop = Arc::new(AtomicBool::new(false));
        let producers = self.options.producers.min(n);
        let remaining = Arc::new(AtomicUsize::new(producers));
        let base_seed = self.options.seed.unwrap_or_else(clock_seed);
        let mut handles = Vec::with_capacity(producers);
        for k in 0..producers {
            let ctx = Producer {
                session: session.clone(),
                enqueue: enqueue.clone(),
                data: data.clone(),
                stop: stop.clone(),
                remaining: remaining.clone(),
                close: self.close,
                shard: (k..n).step_by(producers).collect(),
                options: self.options.clone(),
                seed: mix(base_seed ^ mix(k as u64 + 1)),
            };
            let handle = std::thread::Builder::new()
                .name(format!("tfr-input-{k}"))
                .spawn(move || ctx.run())
                .map_err(|e| PipelineError::Invalid(format!("cannot spawn a producer: {e}")))?;
            handles.push(handle);
        }
        drop(enqueue);
        Ok(PipelineRunner {
            session: session.clone(),
            cancel: self.cancel,
            stop,
            handles,
        })
    }

    /// Runs a step that only dequeues one batch: `Ok(None)` once the queue is closed and too
    /// few examples are left. Feeding the batch to the training step this way keeps that step
    /// eligible for parallel execution; wiring [`InputPipeline::batch`] into the model instead
    /// runs the training step on the calling thread.
    pub fn next_batch(&self, session: &Session) -> Result<Option<Vec<Tensor>>> {
        match session.run(&[], &self.batch, &[]) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Code::OutOfRange => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

struct Producer {
    session: Session,
    enqueue: Arc<tfr_core::Callable>,
    data: Arc<Vec<Tensor>>,
    stop: Arc<AtomicBool>,
    remaining: Arc<AtomicUsize>,
    close: NodeId,
    shard: Vec<usize>,
    options: PipelineOptions,
    seed: u64,
}

impl Producer {
    fn run(self) -> Result<(), tfr_core::Error> {
        let result = self.produce();
        // The last producer to finish a finite run closes the queue (without cancelling), so
        // consumers drain it and then see OutOfRange.
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !self.stop.load(Ordering::Acquire)
        {
            let _ = self.session.run(&[], &[], &[self.close]);
        }
        match result {
            Err(e) if e.code() == Code::Cancelled => Ok(()),
            r => r,
        }
    }

    fn produce(&self) -> Result<(), tfr_core::Error> {
        let mut rng = self.seed;
        let mut order = self.shard.clone();
        let mut epoch = 0;
        while self.options.epochs.is_none_or(|e| epoch < e) {
            if self.options.shuffle {
                // Fisher-Yates with a SplitMix64 stream.
                for i in (1..order.len()).rev() {
                    rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let j = ((u128::from(mix(rng)) * (i as u128 + 1)) >> 64) as usize;
                    order.swap(i, j);
                }
            }
            for chunk in order.chunks(self.options.chunk) {
                if self.stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                let feeds = self
                    .data
                    .iter()
                    .map(|t| gather_rows(t, chunk))
                    .collect::<Result<Vec<_>, _>>()?;
                self.enqueue.call(&feeds)?;
            }
            epoch += 1;
        }
        Ok(())
    }
}

/// Rows `idx` of `t` (along dimension 0), stacked.
pub fn gather_rows(t: &Tensor, idx: &[usize]) -> Result<Tensor, tfr_core::Error> {
    let n = t.shape().first().copied().unwrap_or(0);
    let row: usize = t.shape().iter().skip(1).product();
    let mut shape = t.shape().to_vec();
    if shape.is_empty() {
        return Err(invalid("cannot gather rows of a scalar"));
    }
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(invalid(&format!("row {bad} is out of range for {n} rows")));
    }
    shape[0] = idx.len();
    tfr_core::dispatch_any!(t.dtype(), T => {
        let src = t.as_slice::<T>()?;
        let mut out: Vec<T> = Vec::with_capacity(idx.len() * row);
        for &i in idx {
            out.extend_from_slice(&src[i * row..(i + 1) * row]);
        }
        Tensor::new(&shape, out)
    }, _ => Err(invalid("unsupported dtype")))
}

fn invalid(message: &str) -> tfr_core::Error {
    tfr_core::Error::InvalidArgument {
        arg: "data".into(),
        message: message.into(),
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(nanos ^ u64::from(std::process::id()).rotate_left(32))
}

/// The running producers of a pipeline. Stop it (or drop it) to shut the pipeline down.
pub struct PipelineRunner {
    session: Session,
    cancel: NodeId,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Result<(), tfr_core::Error>>>,
}

impl PipelineRunner {
    /// Stops the producers: closes the queue with pending enqueues cancelled (consumers can
    /// still drain what is buffered, then see OutOfRange) and joins the threads. Returns the
    /// first error a producer hit, if any.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    /// Waits for the producers of a finite run to finish (they close the queue at the end).
    pub fn join(mut self) -> Result<()> {
        let mut first = None;
        for h in self.handles.drain(..) {
            let r = h
                .join()
                .map_err(|_| PipelineError::Invalid("a producer panicked".into()))
                .and_then(|r| r.map_err(PipelineError::from));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// True when every producer has finished.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.handles.is_empty() {
            return Ok(());
        }
        self.stop.store(true, Ordering::Release);
        let closed = self.session.run(&[], &[], &[self.cancel]);
        let mut first = closed.err().map(PipelineError::from);
        for h in self.handles.drain(..) {
            let r = h
                .join()
                .map_err(|_| PipelineError::Invalid("a producer panicked".into()))
                .and_then(|r| r.map_err(PipelineError::from));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl std::fmt::Debug for PipelineRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRunner")
            .field("producers", &self.handles.len())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Drop for PipelineRunner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
