//! Gradients of the segment family, `GatherNd` and `ScatterNd` (TensorFlow's `math_grad.py`
//! and `array_grad.py`).

use crate::error::Result;
use crate::grad::{index_dtype, index_scalar, shape_of, GradCtx, GradFn};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    let rule = |f: GradFn| Gradient::Rule(f);
    vec![
        ("UnsortedSegmentMax", rule(segment_min_or_max_grad)),
        ("UnsortedSegmentMin", rule(segment_min_or_max_grad)),
        ("SparseSegmentSum", rule(sparse_segment_grad)),
        ("SparseSegmentMean", rule(sparse_segment_grad)),
        ("SparseSegmentSqrtN", rule(sparse_segment_grad)),
        ("GatherNd", rule(gather_nd_grad)),
        ("ScatterNd", rule(scatter_nd_grad)),
    ]
}

/// `params[ids]` along axis 0 with the slices of negative ids zero (TensorFlow's
/// `_GatherDropNegatives`): unsorted segment ops drop data whose segment id is negative, so its
/// gradient is zero. Needs the rank of `params` to broadcast the mask; without it, a plain
/// gather (which fails at run time on a negative id, naming the node).
pub(crate) fn gather_drop_negatives(g: &mut Graph, params: Output, ids: Output) -> Result<Output> {
    let zero = index_scalar(g, 0, index_dtype(g, ids))?;
    let Some(rank) = g.shape(params).rank() else {
        return g
            .build("Gather")
            .input(params)
            .input(ids)
            .input(zero)
            .finish1();
    };
    let clipped = g.maximum(ids, zero)?;
    let gathered = g
        .build("Gather")
        .input(params)
        .input(clipped)
        .input(zero)
        .finish1()?;
    let mut keep = g.greater_equal(ids, zero)?;
    for _ in 1..rank {
        keep = g.expand_dims(keep, -1)?;
    }
    let zeros = g.zeros_like(gathered)?;
    g.select(keep, gathered, zeros)
}

/// The segment's gradient is shared equally by the slices that attain its max (min).
fn segment_min_or_max_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (data, ids, num, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let y = ctx.output(0);
    let g = &mut *ctx.graph;
    let chosen = gather_drop_negatives(g, y, ids)?;
    let selected = g.equal(data, chosen)?;
    let dt = g.dtype(data);
    let as_number = g.cast(selected, dt)?;
    let count = g.unsorted_segment_sum(as_number, ids, num)?;
    let share = g.div(dy, count)?;
    let spread = gather_drop_negatives(g, share, ids)?;
    let zeros = g.zeros_like(data)?;
    let dx = g.select(selected, spread, zeros)?;
    let s = g.shape(data).clone();
    g.refine_output_shape(dx, s);
    Ok(vec![Some(dx), None, None])
}

/// `data[indices[j]]` went, scaled by its segment's weight (1, 1/n or 1/sqrt n), into segment
/// `segment_ids[j]`: it gets that segment's gradient row, scaled alike, summed over `j`.
fn sparse_segment_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (data, indices, ids, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let op = ctx.op().to_string();
    let g = &mut *ctx.graph;
    let zero = index_scalar(g, 0, index_dtype(g, ids))?;
    let mut rows = g
        .build("Gather")
        .input(dy)
        .input(ids)
        .input(zero)
        .finish1()?;
    if op != "SparseSegmentSum" {
        let weights = segment_weights(g, ids, dy, &op)?;
        let rank = g.shape(data).rank();
        let weights = match rank {
            Some(r) if r > 1 => {
                let mut target = vec![-1i64];
                target.extend(std::iter::repeat_n(1, r - 1));
                g.reshape(weights, &target)?
            }
            _ => weights,
        };
        rows = g.mul(rows, weights)?;
    }
    let dt = index_dtype(g, indices);
    let dims = shape_of(g, data, dt)?;
    let first = index_scalar(g, 0, dt)?;
    let num = g
        .build("Gather")
        .input(dims)
        .input(first)
        .input(first)
        .finish1()?;
    let dx = g.unsorted_segment_sum(rows, indices, num)?;
    let s = g.shape(data).clone();
    g.refine_output_shape(dx, s);
    Ok(vec![Some(dx), None, None])
}

/// Per position `j`, the weight of segment `ids[j]`: `1 / n` (Mean) or `1 / sqrt(n)` (SqrtN),
/// with `n` the segment's size.
fn segment_weights(g: &mut Graph, ids: Output, dy: Output, op: &str) -> Result<Output> {
    let dt = g.dtype(dy);
    let ones = g.build("OnesLike").input(ids).finish1()?;
    let ones = g.cast(ones, dt)?;
    let idt = index_dtype(g, ids);
    let rows = shape_of(g, dy, idt)?;
    let first = index_scalar(g, 0, idt)?;
    let num = g
        .build("Gather")
        .input(rows)
        .input(first)
        .input(first)
        .finish1()?;
    let count = g.unsorted_segment_sum(ones, ids, num)?;
    let per_position = g
        .build("Gather")
        .input(count)
        .input(ids)
        .input(first)
        .finish1()?;
    let scale = if op == "SparseSegmentSqrtN" {
        g.sqrt(per_position)?
    } else {
        per_position
    };
    g.reciprocal(scale)
}

fn gather_nd_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (params, indices, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let dims = shape_of(g, params, index_dtype(g, indices))?;
    let dx = g.scatter_nd(indices, dy, dims)?;
    let s = g.shape(params).clone();
    g.refine_output_shape(dx, s);
    Ok(vec![Some(dx), None])
}

fn scatter_nd_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (indices, updates, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let du = g.gather_nd(dy, indices)?;
    let s = g.shape(updates).clone();
    g.refine_output_shape(du, s);
    Ok(vec![None, Some(du), None])
}
