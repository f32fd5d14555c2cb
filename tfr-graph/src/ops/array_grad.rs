//! Gradient rules of the array family (`array_ops.rs`): data movement is undone by the inverse
//! movement (transpose back, slice out of a concat, pad a slice, scatter-add a gather, ...).
//! Static shapes and constant indices give constant shape vectors; otherwise the shapes are
//! computed when the step runs.

use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::grad::{
    const_ints, const_scalar, index_dtype, index_scalar, index_vector, reshape_like, shape_of,
    sum_all, sum_to, GradCtx,
};
use crate::graph::{Graph, Output};
use crate::op_def::{normalize_axis, Gradient};
use crate::passes::ARG_OP;
use crate::value::TensorValue;

type Grads = Result<Vec<Option<Output>>>;

/// (op, gradient) for every op of `array_ops.rs`.
pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::{NotDifferentiable as No, Rule};
    vec![
        ("Const", No),
        ("Placeholder", No),
        (ARG_OP, No),
        ("NoOp", No),
        ("StopGradient", No),
        ("Shape", No),
        ("Size", No),
        ("Rank", No),
        ("Range", No),
        ("Identity", Rule(identity_grad)),
        ("Reshape", Rule(reshape_grad)),
        ("ExpandDims", Rule(reshape_grad)),
        ("Squeeze", Rule(reshape_grad)),
        ("Transpose", Rule(transpose_grad)),
        ("Concat", Rule(concat_grad)),
        ("Split", Rule(split_grad)),
        ("Slice", Rule(slice_grad)),
        ("StridedSlice", Rule(strided_slice_grad)),
        ("PadV2", Rule(pad_grad)),
        ("Pad", Rule(pad_grad)),
        ("Tile", Rule(tile_grad)),
        ("Pack", Rule(pack_grad)),
        ("Unpack", Rule(unpack_grad)),
        ("Gather", Rule(gather_grad)),
        ("OneHot", Rule(one_hot_grad)),
        ("Fill", Rule(fill_grad)),
        ("ZerosLike", Rule(zero_grad)),
        ("OnesLike", Rule(zero_grad)),
        ("BroadcastTo", Rule(broadcast_to_grad)),
        ("Reverse", Rule(reverse_grad)),
        ("BroadcastGradientArgs", No),
        ("InvertPermutation", No),
        ("ConcatOffset", No),
        ("StridedSliceGrad", Rule(strided_slice_grad_grad)),
    ]
}

/// `v` refined to the static shape of `like`.
fn shaped_like(g: &mut Graph, v: Output, like: Output) -> Output {
    let s = g.shape(like).clone();
    g.refine_output_shape(v, s);
    v
}

/// `[Some(first), None, None, ...]` for an op with `n` inputs.
fn first_only(first: Output, n: usize) -> Vec<Option<Output>> {
    let mut v = vec![None; n.max(1)];
    v[0] = Some(first);
    v
}

fn identity_grad(ctx: &mut GradCtx<'_>) -> Grads {
    Ok(vec![Some(ctx.dy()?)])
}

fn zero_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let x = ctx.input(0)?;
    Ok(vec![Some(ctx.graph.zeros_like(x)?)])
}

/// Reshape, ExpandDims, Squeeze: reshape the gradient back to the input's shape.
fn reshape_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy, n) = (ctx.input(0)?, ctx.dy()?, ctx.num_inputs());
    Ok(first_only(reshape_like(ctx.graph, dy, x)?, n))
}

fn transpose_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, perm, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let inverse = match const_ints(ctx.graph, perm) {
        // An empty perm reverses the axes: its own inverse.
        Some(p) if p.is_empty() => None,
        Some(p) => {
            let r = p.len();
            let mut inv = vec![0i64; r];
            for (i, &v) in p.iter().enumerate() {
                inv[normalize_axis(v, r).map_err(|e| ctx.error(e))?] = i as i64;
            }
            Some(inv)
        }
        None => None,
    };
    let g = &mut *ctx.graph;
    let inv = match (inverse, const_ints(g, perm)) {
        (Some(inv), _) => index_vector(g, &inv, index_dtype(g, perm))?,
        (None, Some(_)) => perm,
        (None, None) => g.build("InvertPermutation").input(perm).finish1()?,
    };
    let d = g.build("Transpose").input(dy).input(inv).finish1()?;
    Ok(vec![Some(shaped_like(g, d, x)), None])
}

fn concat_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let n = ctx.num_inputs() - 1;
    let (axis_in, dy) = (ctx.input(n)?, ctx.dy()?);
    let values = (0..n).map(|i| ctx.input(i)).collect::<Result<Vec<_>>>()?;
    let wanted: Vec<bool> = (0..n).map(|i| ctx.wants(i)).collect();
    let g = &mut *ctx.graph;
    let mut out = Vec::with_capacity(n + 1);
    if n == 1 {
        return Ok(vec![Some(dy), None]);
    }
    let rank = values
        .iter()
        .find_map(|&v| g.shape(v).rank())
        .or(g.shape(dy).rank());
    if let (Some(rank), Some(axis)) = (rank, const_scalar(g, axis_in)) {
        let a = normalize_axis(axis, rank).map_err(GraphError::Gradient)?;
        let sizes: Option<Vec<usize>> = values.iter().map(|&v| g.shape(v).dim(a).known()).collect();
        if let Some(sizes) = sizes {
            let mut offset = 0usize;
            for (k, &v) in values.iter().enumerate() {
                if wanted[k] {
                    let mut begin = vec![0i64; rank];
                    begin[a] = offset as i64;
                    let size: Vec<i64> = (0..rank)
                        .map(|d| match g.shape(v).dim(d).known() {
                            Some(s) => s as i64,
                            None => -1,
                        })
                        .collect();
                    let b = index_vector(g, &begin, DType::I32)?;
                    let s = index_vector(g, &size, DType::I32)?;
                    let sl = g.build("Slice").input(dy).input(b).input(s).finish1()?;
                    out.push(Some(shaped_like(g, sl, v)));
                } else {
                    out.push(None);
                }
                offset += sizes[k];
            }
            out.push(None);
            return Ok(out);
        }
    }
    let shapes = values
        .iter()
        .map(|&v| shape_of(g, v, DType::I32))
        .collect::<Result<Vec<_>>>()?;
    let offsets = g
        .build("ConcatOffset")
        .input(axis_in)
        .inputs(shapes.iter().copied())
        .finish()?;
    for (k, &v) in values.iter().enumerate() {
        if wanted[k] {
            let sl = g
                .build("Slice")
                .input(dy)
                .input(Output::new(offsets, k))
                .input(shapes[k])
                .finish1()?;
            out.push(Some(shaped_like(g, sl, v)));
        } else {
            out.push(None);
        }
    }
    out.push(None);
    Ok(out)
}

/// The gradients of every output of a multi-output node, zeros where none flows.
fn output_grads_or_zeros(ctx: &mut GradCtx<'_>) -> Result<Vec<Output>> {
    (0..ctx.num_outputs())
        .map(|i| match ctx.grad(i) {
            Some(d) => Ok(d),
            None => {
                let o = ctx.output(i);
                ctx.graph.zeros_like(o)
            }
        })
        .collect()
}

fn split_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (axis, value) = (ctx.input(0)?, ctx.input(1)?);
    let parts = output_grads_or_zeros(ctx)?;
    let g = &mut *ctx.graph;
    let c = g.build("Concat").inputs(parts).input(axis).finish1()?;
    Ok(vec![None, Some(shaped_like(g, c, value))])
}

fn slice_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, begin, y, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0), ctx.dy()?);
    let g = &mut *ctx.graph;
    let known = (
        g.shape(x).to_known(),
        const_ints(g, begin),
        g.shape(y).to_known(),
    );
    let paddings = match known {
        (Some(xs), Some(b), Some(ys)) if xs.len() == b.len() && ys.len() == b.len() => {
            let flat: Vec<i32> = (0..xs.len())
                .flat_map(|i| [b[i] as i32, (xs[i] as i64 - b[i] - ys[i] as i64) as i32])
                .collect();
            let v = TensorValue::new(&[xs.len(), 2], flat)
                .ok_or_else(|| GraphError::Gradient("paddings length".into()))?;
            g.constant(v)?
        }
        _ => {
            let dt = index_dtype(g, begin);
            let sx = shape_of(g, x, dt)?;
            let sy = g.build("Shape").input(dy).attr("out_type", dt).finish1()?;
            let rest = g.sub(sx, sy)?;
            let after = g.sub(rest, begin)?;
            g.build("Pack")
                .input(begin)
                .input(after)
                .attr("axis", 1i64)
                .finish1()?
        }
    };
    let zero = g.scalar_like(dy, 0.0)?;
    let d = g
        .build("PadV2")
        .input(dy)
        .input(paddings)
        .input(zero)
        .finish1()?;
    Ok(vec![Some(shaped_like(g, d, x)), None, None])
}

const MASKS: [&str; 5] = [
    "begin_mask",
    "end_mask",
    "ellipsis_mask",
    "new_axis_mask",
    "shrink_axis_mask",
];

/// The strided-slice masks of the forward node, to copy onto a backward node.
fn masks(ctx: &GradCtx<'_>) -> Vec<(&'static str, i64)> {
    MASKS
        .iter()
        .map(|&m| (m, ctx.attrs().int_opt(m).copied().unwrap_or(0)))
        .collect()
}

fn strided_slice_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, b, e, s, dy) = (
        ctx.input(0)?,
        ctx.input(1)?,
        ctx.input(2)?,
        ctx.input(3)?,
        ctx.dy()?,
    );
    let masks = masks(ctx);
    let g = &mut *ctx.graph;
    let sx = shape_of(g, x, index_dtype(g, b))?;
    let mut node = g
        .build("StridedSliceGrad")
        .input(sx)
        .input(b)
        .input(e)
        .input(s)
        .input(dy);
    for (m, v) in masks {
        node = node.attr(m, v);
    }
    let d = node.finish1()?;
    Ok(vec![Some(shaped_like(g, d, x)), None, None, None])
}

/// `StridedSliceGrad` is linear in `dy`: its gradient slices the same elements back out.
fn strided_slice_grad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (b, e, s, dy_in, d) = (
        ctx.input(1)?,
        ctx.input(2)?,
        ctx.input(3)?,
        ctx.input(4)?,
        ctx.dy()?,
    );
    let masks = masks(ctx);
    let g = &mut *ctx.graph;
    let mut node = g.build("StridedSlice").input(d).input(b).input(e).input(s);
    for (m, v) in masks {
        node = node.attr(m, v);
    }
    let r = node.finish1()?;
    Ok(vec![None, None, None, None, Some(shaped_like(g, r, dy_in))])
}

fn pad_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // `PadV2` (x, paddings, value) or TensorFlow's two-input `Pad` (zeros).
    let (x, p, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let cv = if ctx.num_inputs() > 2 {
        Some(ctx.input(2)?)
    } else {
        None
    };
    let want_value = ctx.wants(2);
    let g = &mut *ctx.graph;
    let dt = index_dtype(g, p);
    let rank = g.shape(x).rank();
    let begin = match (const_ints(g, p), rank) {
        (Some(pv), Some(r)) if pv.len() == 2 * r => {
            let b: Vec<i64> = (0..r).map(|i| pv[2 * i]).collect();
            index_vector(g, &b, dt)?
        }
        _ => {
            let zb = index_vector(g, &[0, 0], dt)?;
            let zs = index_vector(g, &[-1, 1], dt)?;
            let col = g.build("Slice").input(p).input(zb).input(zs).finish1()?;
            g.reshape(col, &[-1])?
        }
    };
    let size = shape_of(g, x, dt)?;
    let dx = g
        .build("Slice")
        .input(dy)
        .input(begin)
        .input(size)
        .finish1()?;
    let dx = shaped_like(g, dx, x);
    // The padding value's gradient: everything that did not come from x.
    let Some(cv) = cv else {
        return Ok(vec![Some(dx), None]);
    };
    let dv = if want_value {
        let all = sum_all(g, dy)?;
        let inner = sum_all(g, dx)?;
        let d = g.sub(all, inner)?;
        Some(reshape_like(g, d, cv)?)
    } else {
        None
    };
    Ok(vec![Some(dx), None, dv])
}

fn tile_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, m, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    // View dy as [m0, d0, m1, d1, ...] and sum over the multiples.
    let (split, axes) = match (g.shape(x).to_known(), const_ints(g, m)) {
        (Some(xs), Some(mv)) if mv.len() == xs.len() => {
            let split: Vec<i64> = mv
                .iter()
                .zip(&xs)
                .flat_map(|(&k, &d)| [k, d as i64])
                .collect();
            let axes: Vec<i64> = (0..xs.len() as i64).map(|i| 2 * i).collect();
            (
                index_vector(g, &split, DType::I32)?,
                index_vector(g, &axes, DType::I32)?,
            )
        }
        _ => {
            let dt = index_dtype(g, m);
            let sx = shape_of(g, x, dt)?;
            let pairs = g
                .build("Pack")
                .input(m)
                .input(sx)
                .attr("axis", 1i64)
                .finish1()?;
            let split = g.reshape(pairs, &[-1])?;
            let n = g.size(split)?;
            let zero = g.scalar(0i32)?;
            let two = g.scalar(2i32)?;
            (split, g.range(zero, n, two)?)
        }
    };
    let r = g.build("Reshape").input(dy).input(split).finish1()?;
    let s = g
        .build("Sum")
        .input(r)
        .input(axes)
        .attr("keep_dims", false)
        .finish1()?;
    Ok(vec![Some(shaped_like(g, s, x)), None])
}

fn pack_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let n = ctx.num_inputs();
    let axis = ctx.attrs().int_opt("axis").copied().unwrap_or(0);
    let dy = ctx.dy()?;
    let values = (0..n).map(|i| ctx.input(i)).collect::<Result<Vec<_>>>()?;
    let g = &mut *ctx.graph;
    let id = g
        .build("Unpack")
        .input(dy)
        .attr("num", n as i64)
        .attr("axis", axis)
        .finish()?;
    Ok(values
        .iter()
        .enumerate()
        .map(|(i, &v)| Some(shaped_like(g, Output::new(id, i), v)))
        .collect())
}

fn unpack_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let value = ctx.input(0)?;
    let axis = ctx.attrs().int_opt("axis").copied().unwrap_or(0);
    let parts = output_grads_or_zeros(ctx)?;
    let g = &mut *ctx.graph;
    let p = g.build("Pack").inputs(parts).attr("axis", axis).finish1()?;
    Ok(vec![Some(shaped_like(g, p, value))])
}

/// Dense gradient of a gather: the output gradient scatter-added into zeros of the params'
/// shape by `UnsortedSegmentSum` (after moving the gathered axis first when it is not).
fn gather_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (p, idx, ax, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let y = ctx.output(0);
    let a = const_scalar(ctx.graph, ax)
        .ok_or_else(|| ctx.error("the gradient of Gather needs a constant axis"))?;
    let (rp, ri) = (ctx.shape(p).rank(), ctx.shape(idx).rank());
    let a = match (a, rp) {
        (a, _) if a >= 0 => a as usize,
        (a, Some(r)) => normalize_axis(a, r).map_err(|e| ctx.error(e))?,
        (_, None) => {
            return Err(ctx.error("a negative Gather axis needs params of known rank"));
        }
    };
    let batch_dims = ctx.attrs().int_opt("batch_dims").copied().unwrap_or(0);
    if batch_dims != 0 {
        let (Some(rp), Some(ri)) = (rp, ri) else {
            return Err(ctx.error("the gradient of Gather with batch_dims needs known ranks"));
        };
        let b =
            super::array_ops::gather_batch_dims(batch_dims, a, rp, ri).map_err(|e| ctx.error(e))?;
        let d = batch_gather_grad(ctx.graph, p, idx, dy, (a, b, rp, ri))?;
        return Ok(vec![Some(shaped_like(ctx.graph, d, p)), None, None]);
    }
    let g = &mut *ctx.graph;
    let dt = index_dtype(g, idx);
    let num = match g.shape(p).dim(a).known() {
        Some(n) => index_scalar(g, n as i64, dt)?,
        None => {
            let sp = g.build("Shape").input(p).attr("out_type", dt).finish1()?;
            let at = index_scalar(g, a as i64, dt)?;
            let zero = index_scalar(g, 0, dt)?;
            g.build("Gather")
                .input(sp)
                .input(at)
                .input(zero)
                .finish1()?
        }
    };
    let segment_sum = |g: &mut Graph, data: Output| {
        g.build("UnsortedSegmentSum")
            .input(data)
            .input(idx)
            .input(num)
            .finish1()
    };
    if a == 0 {
        let d = segment_sum(g, dy)?;
        return Ok(vec![Some(shaped_like(g, d, p)), None, None]);
    }
    let (Some(rp), Some(ri)) = (rp, ri) else {
        return Err(GraphError::Gradient(format!(
            "the gradient of Gather `{}` along axis {a} needs params and indices of known rank",
            g.output_name(y)
        )));
    };
    // dy is params[:a] + indices + params[a+1:]; bring the indices dims first.
    let rg = rp - 1 + ri;
    let perm: Vec<i64> = (a..a + ri)
        .chain(0..a)
        .chain(a + ri..rg)
        .map(|v| v as i64)
        .collect();
    let pv = index_vector(g, &perm, DType::I32)?;
    let moved = g.build("Transpose").input(dy).input(pv).finish1()?;
    let summed = segment_sum(g, moved)?;
    // summed is [params[a]] + params[:a] + params[a+1:]; put axis a back.
    let back: Vec<i64> = (1..=a)
        .chain(std::iter::once(0))
        .chain(a + 1..rp)
        .map(|v| v as i64)
        .collect();
    let bv = index_vector(g, &back, DType::I32)?;
    let d = g.build("Transpose").input(summed).input(bv).finish1()?;
    Ok(vec![Some(shaped_like(g, d, p)), None, None])
}

/// Gather with `b` batch dims along axis `a` (params of rank `rp`, indices of rank `ri`): the
/// indices are made global over the flattened batch (`i + batch * params[a]`), dy's index dims
/// are moved next to the batch dims, and one UnsortedSegmentSum scatters into
/// `[batch * params[a]] + params[b..a] + params[a+1..]`, which is reshaped and transposed back.
fn batch_gather_grad(
    g: &mut Graph,
    p: Output,
    idx: Output,
    dy: Output,
    (a, b, rp, ri): (usize, usize, usize, usize),
) -> Result<Output> {
    let dt = index_dtype(g, idx);
    let q = ri - b;
    let sp = g.build("Shape").input(p).attr("out_type", dt).finish1()?;
    let gather_dims = |g: &mut Graph, s: Output, dims: &[i64]| -> Result<Output> {
        let at = index_vector(g, dims, dt)?;
        let zero = index_scalar(g, 0, dt)?;
        g.build("Gather").input(s).input(at).input(zero).finish1()
    };
    let batch: Vec<i64> = (0..b as i64).collect();
    let batch_shape = gather_dims(g, sp, &batch)?;
    let zero_axis = index_vector(g, &[0], dt)?;
    let nb = g
        .build("Prod")
        .input(batch_shape)
        .input(zero_axis)
        .finish1()?;
    let n = gather_dims(g, sp, &[a as i64])?;
    let n = g.reshape(n, &[])?;
    // offsets[batch..] = flat batch index * params[a], broadcast over the index dims.
    let (zero, one) = (index_scalar(g, 0, dt)?, index_scalar(g, 1, dt)?);
    let range = g.range(zero, nb, one)?;
    let offsets = g.mul(range, n)?;
    let ones = index_vector(g, &vec![1; q], dt)?;
    let off_shape = g.concat(&[batch_shape, ones], 0)?;
    let offsets = g
        .build("Reshape")
        .input(offsets)
        .input(off_shape)
        .finish1()?;
    let global = g.add(idx, offsets)?;
    // dy: batch, params[b..a], index dims, params[a+1..] -> batch, index dims, the rest.
    let perm: Vec<i64> = (0..b)
        .chain(a..a + q)
        .chain(b..a)
        .chain(a + q..rp - 1 + q)
        .map(|v| v as i64)
        .collect();
    let pv = index_vector(g, &perm, DType::I32)?;
    let moved = g.build("Transpose").input(dy).input(pv).finish1()?;
    let total = g.mul(nb, n)?;
    let summed = g
        .build("UnsortedSegmentSum")
        .input(moved)
        .input(global)
        .input(total)
        .finish1()?;
    // [batch * params[a]] + rest -> batch + [params[a]] + params[b..a] + params[a+1..].
    let order: Vec<i64> = (0..b)
        .chain(std::iter::once(a))
        .chain(b..a)
        .chain(a + 1..rp)
        .map(|v| v as i64)
        .collect();
    let shape = gather_dims(g, sp, &order)?;
    let unflat = g.build("Reshape").input(summed).input(shape).finish1()?;
    let mut back = vec![0i64; rp];
    for (k, &o) in order.iter().enumerate() {
        back[o as usize] = k as i64;
    }
    let bv = index_vector(g, &back, DType::I32)?;
    g.build("Transpose").input(unflat).input(bv).finish1()
}

/// OneHot: the on value gets the gradient summed where the index hit, the off value elsewhere.
fn one_hot_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (ind, depth, on, off, dy) = (
        ctx.input(0)?,
        ctx.input(1)?,
        ctx.input(2)?,
        ctx.input(3)?,
        ctx.dy()?,
    );
    let axis = ctx.attrs().int_opt("axis").copied().unwrap_or(-1);
    let g = &mut *ctx.graph;
    let one = g.scalar_like(dy, 1.0)?;
    let zero = g.scalar_like(dy, 0.0)?;
    let mask = g
        .build("OneHot")
        .input(ind)
        .input(depth)
        .input(one)
        .input(zero)
        .attr("axis", axis)
        .finish1()?;
    let hit = g.mul(dy, mask)?;
    let d_on = sum_all(g, hit)?;
    let all = sum_all(g, dy)?;
    let d_off = g.sub(all, d_on)?;
    Ok(vec![
        None,
        None,
        Some(reshape_like(g, d_on, on)?),
        Some(reshape_like(g, d_off, off)?),
    ])
}

fn fill_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (value, dy) = (ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let s = sum_all(g, dy)?;
    Ok(vec![None, Some(reshape_like(g, s, value)?)])
}

fn broadcast_to_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    Ok(vec![Some(sum_to(ctx.graph, dy, x)?), None])
}

fn reverse_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, axes, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let d = g.build("Reverse").input(dy).input(axes).finish1()?;
    Ok(vec![Some(shaped_like(g, d, x)), None])
}
