//! Gradient rules of `image_ops.rs`: each rearrangement's gradient is its inverse
//! (DepthToSpace <-> SpaceToDepth, SpaceToBatchND <-> BatchToSpaceND), MirrorPad folds with
//! MirrorPadGrad (whose own gradient is MirrorPad, as in TensorFlow), and the resizes use
//! their gradient ops, whose gradients (they are linear in `grads`) are the resizes again.
//! The integer inputs (paddings, block shapes, sizes) get no gradient.

use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::error::Result;
use crate::grad::{shape_of, GradCtx};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;
use crate::shape::Dim;

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::Rule;
    vec![
        ("MirrorPad", Rule(mirror_pad_grad)),
        ("MirrorPadGrad", Rule(mirror_pad_grad_grad)),
        ("DepthToSpace", Rule(depth_to_space_grad)),
        ("SpaceToDepth", Rule(space_to_depth_grad)),
        ("SpaceToBatchND", Rule(space_to_batch_grad)),
        ("BatchToSpaceND", Rule(batch_to_space_grad)),
        ("ResizeBilinear", Rule(resize_bilinear_grad)),
        ("ResizeBilinearGrad", Rule(resize_bilinear_grad_grad)),
        ("ResizeNearestNeighbor", Rule(resize_nearest_grad)),
        ("ResizeNearestNeighborGrad", Rule(resize_nearest_grad_grad)),
    ]
}

/// The forward node's attributes named in `names`, to copy onto backward nodes.
fn copied(ctx: &GradCtx<'_>, names: &[&'static str]) -> Vec<(&'static str, AttrValue)> {
    names
        .iter()
        .filter_map(|&n| ctx.attrs().get(n).map(|v| (n, v.clone())))
        .collect()
}

/// A node of `op` with `inputs` and attributes, its output refined to the static shape of
/// `like` (when given).
fn node1(
    g: &mut Graph,
    op: &str,
    inputs: &[Output],
    attrs: &[(&'static str, AttrValue)],
    like: Option<Output>,
) -> Result<Output> {
    let mut b = g.build(op).inputs(inputs.iter().copied());
    for (k, v) in attrs {
        b = b.attr(k, v.clone());
    }
    let out = b.finish1()?;
    if let Some(like) = like {
        let s = g.shape(like).clone();
        g.refine_output_shape(out, s);
    }
    Ok(out)
}

fn mirror_pad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, p, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let attrs = copied(ctx, &["mode"]);
    let dx = node1(ctx.graph, "MirrorPadGrad", &[dy, p], &attrs, Some(x))?;
    Ok(vec![Some(dx), None])
}

/// MirrorPadGrad is linear in its input; its adjoint is MirrorPad.
fn mirror_pad_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, p, d) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let attrs = copied(ctx, &["mode"]);
    let dx = node1(ctx.graph, "MirrorPad", &[d, p], &attrs, Some(x))?;
    Ok(vec![Some(dx), None])
}

const BLOCK_ATTRS: &[&str] = &["block_size", "data_format"];

fn depth_to_space_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let attrs = copied(ctx, BLOCK_ATTRS);
    let dx = node1(ctx.graph, "SpaceToDepth", &[dy], &attrs, Some(x))?;
    Ok(vec![Some(dx)])
}

fn space_to_depth_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let attrs = copied(ctx, BLOCK_ATTRS);
    let dx = node1(ctx.graph, "DepthToSpace", &[dy], &attrs, Some(x))?;
    Ok(vec![Some(dx)])
}

fn space_to_batch_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, b, p, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let dx = node1(ctx.graph, "BatchToSpaceND", &[dy, b, p], &[], Some(x))?;
    Ok(vec![Some(dx), None, None])
}

fn batch_to_space_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, b, c, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let dx = node1(ctx.graph, "SpaceToBatchND", &[dy, b, c], &[], Some(x))?;
    Ok(vec![Some(dx), None, None])
}

const RESIZE_ATTRS: &[&str] = &["align_corners", "half_pixel_centers"];

/// The int32 `[height, width]` of the NHWC tensor `x`: a constant when static, else a slice
/// of its runtime shape.
fn spatial_size(g: &mut Graph, x: Output) -> Result<Output> {
    let s = g.shape(x).clone();
    if let (Dim::Known(h), Dim::Known(w)) = (s.dim(1), s.dim(2)) {
        return g.constant_from(&[2], vec![h as i32, w as i32]);
    }
    let shape = shape_of(g, x, DType::I32)?;
    g.slice(shape, &[1], &[2])
}

fn resize_bilinear_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    if !ctx.dtype(x).is_float() {
        // TensorFlow: no gradient for integer images.
        return Ok(vec![None, None]);
    }
    let attrs = copied(ctx, RESIZE_ATTRS);
    let dx = node1(ctx.graph, "ResizeBilinearGrad", &[dy, x], &attrs, Some(x))?;
    Ok(vec![Some(dx), None])
}

/// ResizeBilinearGrad is linear in `grads` (original_image only gives the shape); the adjoint
/// is ResizeBilinear to the size of `grads`.
fn resize_bilinear_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (grads, d) = (ctx.input(0)?, ctx.dy()?);
    let attrs = copied(ctx, RESIZE_ATTRS);
    let g = &mut *ctx.graph;
    let size = spatial_size(g, grads)?;
    let dg = node1(g, "ResizeBilinear", &[d, size], &attrs, Some(grads))?;
    Ok(vec![Some(dg), None])
}

fn resize_nearest_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    if !ctx.dtype(x).is_float() {
        return Ok(vec![None, None]);
    }
    let attrs = copied(ctx, RESIZE_ATTRS);
    let g = &mut *ctx.graph;
    let size = spatial_size(g, x)?;
    let dx = node1(g, "ResizeNearestNeighborGrad", &[dy, size], &attrs, Some(x))?;
    Ok(vec![Some(dx), None])
}

/// ResizeNearestNeighborGrad is linear in `grads`; its adjoint resizes back to their size.
fn resize_nearest_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (grads, d) = (ctx.input(0)?, ctx.dy()?);
    let attrs = copied(ctx, RESIZE_ATTRS);
    let g = &mut *ctx.graph;
    let size = spatial_size(g, grads)?;
    let dg = node1(g, "ResizeNearestNeighbor", &[d, size], &attrs, Some(grads))?;
    Ok(vec![Some(dg), None])
}
