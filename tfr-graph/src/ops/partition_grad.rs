//! Gradients of Part and Stitch (TensorFlow's `data_flow_grad.py`).

use crate::error::Result;
use crate::grad::{shape_of, GradCtx, GradFn};
use crate::graph::Output;
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    let rule = |f: GradFn| Gradient::Rule(f);
    vec![
        ("DynamicPartition", rule(dynamic_partition_grad)),
        ("DynamicStitch", rule(dynamic_stitch_grad)),
        ("ParallelDynamicStitch", rule(dynamic_stitch_grad)),
    ]
}

/// Each slice of `data` went to one output: partition the positions `0..size(partitions)` the
/// same way and stitch the outputs' gradients back by them (an output without gradient gives
/// zeros).
fn dynamic_partition_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (data, partitions) = (ctx.input(0)?, ctx.input(1)?);
    let num = ctx.num_outputs();
    let mut grads = Vec::with_capacity(num);
    for i in 0..num {
        grads.push(match ctx.grad(i) {
            Some(d) => d,
            None => {
                let o = ctx.output(i);
                ctx.graph.zeros_like(o)?
            }
        });
    }
    let g = &mut *ctx.graph;
    let size = g.build("Size").input(partitions).finish1()?;
    let (zero, one) = (g.scalar(0i32)?, g.scalar(1i32)?);
    let positions = g
        .build("Range")
        .input(zero)
        .input(size)
        .input(one)
        .finish1()?;
    let prefix = shape_of(g, partitions, crate::dtype::DType::I32)?;
    let positions = g.reshape_to(positions, prefix)?;
    let parts = g.dynamic_partition(positions, partitions, num)?;
    let stitched = g.dynamic_stitch(&parts, &grads)?;
    let shape = shape_of(g, data, crate::dtype::DType::I32)?;
    let dx = g.reshape_to(stitched, shape)?;
    let s = g.shape(data).clone();
    g.refine_output_shape(dx, s);
    Ok(vec![Some(dx), None])
}

/// Each data tensor's slices get the gradient rows at their indices (indices get none). As in
/// TensorFlow, a slice overwritten by a later equal index still gets that row's gradient.
fn dynamic_stitch_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let dy = ctx.dy()?;
    let n = ctx.num_inputs() / 2;
    let mut out = vec![None; 2 * n];
    for k in 0..n {
        if !ctx.wants(n + k) {
            continue;
        }
        let (idx, data) = (ctx.input(k)?, ctx.input(n + k)?);
        let g = &mut *ctx.graph;
        let rows = g.gather(dy, idx, 0)?;
        let s = g.shape(data).clone();
        g.refine_output_shape(rows, s);
        out[n + k] = Some(rows);
    }
    Ok(out)
}
