//! Queues: stateful resources of the session that steps running on different threads share.
//! Producers enqueue in their own steps while training steps dequeue; a dequeue waits until
//! enough elements are there, an enqueue waits while the queue is full, and closing the queue
//! ends consumers with an out-of-range error once it is drained.
//!
//! A queue's element is a tuple of tensors (its components), each with a dtype and a static
//! shape. The component shapes travel as one `Ints` attribute (see [`encode_shapes`]). None of
//! these ops is differentiable.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

/// Ops whose kernels may wait for another step (a full queue, an empty queue, an accumulator
/// short of gradients). The executor runs a step holding one of them on the caller's thread so
/// a wait never holds a pool worker.
pub const BLOCKING_OPS: &[&str] = &[
    "QueueEnqueue",
    "QueueEnqueueMany",
    "QueueDequeue",
    "QueueDequeueMany",
    "AccumulatorTakeGradient",
];

/// True when `op` may block until another step acts on a shared resource.
pub fn may_block(op: &str) -> bool {
    BLOCKING_OPS.contains(&op)
}

pub fn op_defs() -> Vec<OpDef> {
    let handle_attrs = |d: OpDef| {
        d.output("handle")
            .attr("component_types", AttrKind::DTypes)
            .attr_default("shapes", AttrKind::Ints, Vec::<i64>::new())
            .attr_default("capacity", AttrKind::Int, -1i64)
            .attr_default("shared_name", AttrKind::Str, "")
            .stateful()
            .no_gradient()
            .cheap()
    };
    vec![
        handle_attrs(OpDef::new("FIFOQueue", infer_handle))
            .doc("a first-in first-out queue of tuples of tensors"),
        handle_attrs(OpDef::new("RandomShuffleQueue", infer_handle))
            .doc(
                "a queue that dequeues a uniformly random element, keeping at least \
                 `min_after_dequeue` elements until it is closed",
            )
            .attr_default("min_after_dequeue", AttrKind::Int, 0i64)
            .attr_default("seed", AttrKind::Int, 0i64)
            .attr_default("seed2", AttrKind::Int, 0i64),
        OpDef::new("QueueEnqueue", super::no_outputs)
            .doc("adds one element; waits while the queue is full")
            .input("handle", DTypeSet::RESOURCE)
            .list_input("components", DTypeSet::ANY, 1)
            .stateful()
            .no_gradient(),
        OpDef::new("QueueEnqueueMany", infer_enqueue_many)
            .doc("adds the slices along dimension 0 of the components as elements")
            .input("handle", DTypeSet::RESOURCE)
            .list_input("components", DTypeSet::ANY, 1)
            .stateful()
            .no_gradient(),
        OpDef::new("QueueDequeue", infer_dequeue)
            .doc("removes one element; waits until there is one")
            .input("handle", DTypeSet::RESOURCE)
            .output("components")
            .attr("component_types", AttrKind::DTypes)
            .attr_default("shapes", AttrKind::Ints, Vec::<i64>::new())
            .stateful()
            .no_gradient(),
        OpDef::new("QueueDequeueMany", infer_dequeue_many)
            .doc("removes `n` elements and stacks each component along a new dimension 0")
            .input("handle", DTypeSet::RESOURCE)
            .input("n", DTypeSet::INDEX)
            .output("components")
            .attr("component_types", AttrKind::DTypes)
            .attr_default("shapes", AttrKind::Ints, Vec::<i64>::new())
            .stateful()
            .no_gradient(),
        OpDef::new("QueueClose", super::no_outputs)
            .doc(
                "closes the queue: later enqueues fail, dequeues drain what is left then fail \
                 with out-of-range; `cancel_pending_enqueues` also fails the waiting enqueues",
            )
            .input("handle", DTypeSet::RESOURCE)
            .attr_default("cancel_pending_enqueues", AttrKind::Bool, false)
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("QueueSize", infer_size)
            .doc("the number of elements in the queue")
            .input("handle", DTypeSet::RESOURCE)
            .output("size")
            .stateful()
            .no_gradient()
            .cheap(),
    ]
}

/// Encodes component shapes as one integer list: per component its rank (-1: unknown rank)
/// followed by its dims (-1: unknown). Symbolic dims become unknown.
pub fn encode_shapes(shapes: &[Shape]) -> Vec<i64> {
    let mut out = Vec::new();
    for s in shapes {
        match s.dims() {
            None => out.push(-1),
            Some(dims) => {
                out.push(dims.len() as i64);
                out.extend(dims.iter().map(|d| d.known().map_or(-1, |n| n as i64)));
            }
        }
    }
    out
}

/// Decodes [`encode_shapes`] for `n` components; an empty list means every shape is unknown.
pub fn decode_shapes(code: &[i64], n: usize) -> std::result::Result<Vec<Shape>, String> {
    if code.is_empty() {
        return Ok(vec![Shape::unknown(); n]);
    }
    let mut shapes = Vec::with_capacity(n);
    let mut i = 0;
    while i < code.len() {
        let rank = code[i];
        i += 1;
        if rank == -1 {
            shapes.push(Shape::unknown());
            continue;
        }
        let rank = usize::try_from(rank).map_err(|_| format!("bad rank {rank} in `shapes`"))?;
        let dims = code
            .get(i..i + rank)
            .ok_or_else(|| "`shapes` ends inside a shape".to_string())?;
        i += rank;
        shapes.push(Shape::new(
            dims.iter()
                .map(|&d| match d {
                    -1 => Ok(Dim::Unknown),
                    d if d >= 0 => Ok(Dim::Known(d as usize)),
                    d => Err(format!("bad dim {d} in `shapes`")),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ));
    }
    if shapes.len() != n {
        return Err(format!(
            "`shapes` describes {} components, `component_types` has {n}",
            shapes.len()
        ));
    }
    Ok(shapes)
}

fn component_types(ctx: &InferCtx<'_>) -> std::result::Result<(Vec<DType>, Vec<Shape>), String> {
    let types = ctx.attrs.dtypes("component_types")?.clone();
    if types.is_empty() {
        return Err("a queue needs at least one component".into());
    }
    if let Some(t) = types.iter().find(|t| !DTypeSet::ANY.contains(**t)) {
        return Err(format!("a queue cannot hold {t} components"));
    }
    let shapes = decode_shapes(ctx.attrs.ints("shapes")?, types.len())?;
    Ok((types, shapes))
}

fn infer_handle(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    component_types(ctx)?;
    let capacity = *ctx.attrs.int("capacity")?;
    if capacity == 0 || capacity < -1 {
        return Err(format!(
            "capacity must be positive or -1 (unbounded), got {capacity}"
        ));
    }
    if let Some(&m) = ctx.attrs.int_opt("min_after_dequeue") {
        if m < 0 {
            return Err(format!("min_after_dequeue must be >= 0, got {m}"));
        }
        if capacity > 0 && m >= capacity {
            return Err(format!(
                "min_after_dequeue ({m}) must be below the capacity ({capacity})"
            ));
        }
    }
    Ok(vec![TensorType::new(DType::Resource, Shape::scalar())])
}

fn infer_enqueue_many(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let mut n = Dim::Unknown;
    for (k, t) in ctx.inputs[1..].iter().enumerate() {
        if t.shape.rank() == Some(0) {
            return Err(format!(
                "component {k} is a scalar; enqueue_many needs a leading batch dimension"
            ));
        }
        n = n.merge(&t.shape.dim(0)).ok_or_else(|| {
            format!(
                "components disagree on the batch dimension: {n} vs {}",
                t.shape.dim(0)
            )
        })?;
    }
    Ok(Vec::new())
}

fn infer_dequeue(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let (types, shapes) = component_types(ctx)?;
    Ok(types
        .into_iter()
        .zip(shapes)
        .map(|(t, s)| TensorType::new(t, s))
        .collect())
}

fn infer_dequeue_many(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let (types, shapes) = component_types(ctx)?;
    if ctx.input(1).shape.rank().is_some_and(|r| r != 0) {
        return Err(format!(
            "n must be a scalar, got shape {}",
            ctx.input(1).shape
        ));
    }
    let n = match ctx.const_ints(1).as_deref() {
        Some(&[n]) if n < 0 => return Err(format!("n must be >= 0, got {n}")),
        Some(&[n]) => Dim::Known(n as usize),
        _ => Dim::Unknown,
    };
    Ok(types
        .into_iter()
        .zip(shapes)
        .map(|(t, s)| {
            let shape = match s.dims() {
                Some(d) => Shape::new(
                    std::iter::once(n.clone())
                        .chain(d.iter().cloned())
                        .collect(),
                ),
                None => Shape::unknown(),
            };
            TensorType::new(t, shape)
        })
        .collect())
}

fn infer_size(_: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    Ok(vec![TensorType::new(DType::I32, Shape::scalar())])
}

/// A queue made by [`Graph::fifo_queue`] or [`Graph::random_shuffle_queue`]: its handle and the
/// dtypes and static shapes of its components.
#[derive(Clone, Debug, PartialEq)]
pub struct Queue {
    pub handle: Output,
    pub dtypes: Vec<DType>,
    pub shapes: Vec<Shape>,
    /// `None`: unbounded.
    pub capacity: Option<usize>,
}

/// Options of [`Graph::random_shuffle_queue`].
#[derive(Clone, Debug, Default)]
pub struct ShuffleOptions {
    /// Elements kept in the queue after a dequeue (until it is closed), for a good mix.
    pub min_after_dequeue: usize,
    /// The op seed (combined with the graph seed as for random ops).
    pub seed: Option<u64>,
}

impl Graph {
    fn queue_node(
        &mut self,
        op: &str,
        name: &str,
        dtypes: &[DType],
        shapes: &[Shape],
        capacity: Option<usize>,
        shuffle: Option<&ShuffleOptions>,
    ) -> Result<Queue> {
        let shapes: Vec<Shape> = if shapes.is_empty() {
            vec![Shape::unknown(); dtypes.len()]
        } else {
            shapes.to_vec()
        };
        if shapes.len() != dtypes.len() {
            return Err(GraphError::InvalidNode {
                node: name.into(),
                op: op.into(),
                message: format!(
                    "{} component dtypes but {} shapes",
                    dtypes.len(),
                    shapes.len()
                ),
            });
        }
        let shared = self.scoped_name(name);
        let seeds = shuffle.map(|o| self.random_seeds(o.seed));
        let mut b = self
            .build(op)
            .name(name)
            .attr("component_types", dtypes.to_vec())
            .attr("shapes", encode_shapes(&shapes))
            .attr("capacity", capacity.map_or(-1, |c| c as i64))
            .attr("shared_name", shared);
        if let (Some(opts), Some((s1, s2))) = (shuffle, seeds) {
            b = b
                .attr("min_after_dequeue", opts.min_after_dequeue as i64)
                .attr("seed", s1)
                .attr("seed2", s2);
        }
        Ok(Queue {
            handle: b.finish1()?,
            dtypes: dtypes.to_vec(),
            shapes,
            capacity,
        })
    }

    /// A first-in first-out queue named `name` (also its shared name in the session) holding
    /// elements with the given component dtypes and shapes (`&[]`: unknown shapes).
    pub fn fifo_queue(
        &mut self,
        name: &str,
        dtypes: &[DType],
        shapes: &[Shape],
        capacity: Option<usize>,
    ) -> Result<Queue> {
        self.queue_node("FIFOQueue", name, dtypes, shapes, capacity, None)
    }

    /// A queue that dequeues uniformly random elements.
    pub fn random_shuffle_queue(
        &mut self,
        name: &str,
        dtypes: &[DType],
        shapes: &[Shape],
        capacity: Option<usize>,
        options: ShuffleOptions,
    ) -> Result<Queue> {
        self.queue_node(
            "RandomShuffleQueue",
            name,
            dtypes,
            shapes,
            capacity,
            Some(&options),
        )
    }

    fn check_components(
        &self,
        op: &str,
        q: &Queue,
        components: &[Output],
        many: bool,
    ) -> Result<()> {
        let invalid = |message: String| GraphError::InvalidNode {
            node: op.into(),
            op: op.into(),
            message,
        };
        if components.len() != q.dtypes.len() {
            return Err(invalid(format!(
                "the queue has {} components, got {}",
                q.dtypes.len(),
                components.len()
            )));
        }
        for (k, (&c, (dtype, shape))) in components
            .iter()
            .zip(q.dtypes.iter().zip(&q.shapes))
            .enumerate()
        {
            let t = self.check_output(c)?;
            let ty = self.output_type(t);
            if ty.dtype != *dtype {
                return Err(invalid(format!(
                    "component {k} has dtype {}, the queue holds {dtype}",
                    ty.dtype
                )));
            }
            let element = match (many, ty.shape.dims()) {
                (true, Some(d)) if !d.is_empty() => Shape::new(d[1..].to_vec()),
                (true, Some(_)) => {
                    return Err(invalid(format!(
                        "component {k} is a scalar; enqueue_many needs a batch dimension"
                    )))
                }
                (true, None) => Shape::unknown(),
                (false, _) => ty.shape.clone(),
            };
            element.merge(shape).map_err(|e| {
                invalid(format!(
                    "component {k} has element shape {element}, the queue holds {shape}: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// Enqueues one element (one tensor per component).
    pub fn queue_enqueue(&mut self, q: &Queue, components: &[Output]) -> Result<NodeId> {
        self.check_components("QueueEnqueue", q, components, false)?;
        self.build("QueueEnqueue")
            .input(q.handle)
            .inputs(components.iter().copied())
            .finish()
    }

    /// Enqueues the slices along dimension 0 of each component as elements.
    pub fn queue_enqueue_many(&mut self, q: &Queue, components: &[Output]) -> Result<NodeId> {
        self.check_components("QueueEnqueueMany", q, components, true)?;
        self.build("QueueEnqueueMany")
            .input(q.handle)
            .inputs(components.iter().copied())
            .finish()
    }

    /// Dequeues one element: one output per component.
    pub fn queue_dequeue(&mut self, q: &Queue) -> Result<Vec<Output>> {
        let node = self
            .build("QueueDequeue")
            .input(q.handle)
            .attr("component_types", q.dtypes.clone())
            .attr("shapes", encode_shapes(&q.shapes))
            .finish()?;
        Ok((0..q.dtypes.len()).map(|i| Output::new(node, i)).collect())
    }

    /// Dequeues `n` elements, each component stacked along a new dimension 0 of size `n`.
    pub fn queue_dequeue_many(&mut self, q: &Queue, n: usize) -> Result<Vec<Output>> {
        let n = self.constant_from(
            &[],
            vec![super::builder_args::checked_i32(
                "queue_dequeue_many",
                "n",
                n,
            )?],
        )?;
        let node = self
            .build("QueueDequeueMany")
            .input(q.handle)
            .input(n)
            .attr("component_types", q.dtypes.clone())
            .attr("shapes", encode_shapes(&q.shapes))
            .finish()?;
        Ok((0..q.dtypes.len()).map(|i| Output::new(node, i)).collect())
    }

    /// Closes the queue; with `cancel_pending_enqueues`, waiting enqueues fail too.
    pub fn queue_close(&mut self, q: &Queue, cancel_pending_enqueues: bool) -> Result<NodeId> {
        self.build("QueueClose")
            .input(q.handle)
            .attr("cancel_pending_enqueues", cancel_pending_enqueues)
            .finish()
    }

    /// The number of elements in the queue.
    pub fn queue_size(&mut self, q: &Queue) -> Result<Output> {
        self.build("QueueSize").input(q.handle).finish1()
    }
}
