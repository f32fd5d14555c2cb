//! Gradient rules of the math family (`math_ops.rs`): elementwise ops, reductions, matrix
//! products. Rules are built from ordinary graph ops, so they are differentiable themselves
//! (second derivatives, Hessian-vector products).

use super::math_ops::{BINARY_OPS, COMPARE_OPS, UNARY_OPS};
use crate::error::Result;
use crate::grad::{broadcast_like, reduction_kept, sum_to, GradCtx};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;

/// Builds one input's gradient (before reduction to its shape) from the output gradient.
type Part<'a> = &'a dyn Fn(&mut Graph, Output) -> Result<Output>;

/// (op, gradient) for every op of `math_ops.rs`.
pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::{NotDifferentiable as No, Rule};
    let mut t: Vec<(&'static str, Gradient)> = vec![
        ("Neg", Rule(neg_grad)),
        ("Abs", Rule(abs_grad)),
        ("Sign", Rule(zero_grad)),
        ("Square", Rule(square_grad)),
        ("Sqrt", Rule(sqrt_grad)),
        ("Rsqrt", Rule(rsqrt_grad)),
        ("Exp", Rule(exp_grad)),
        ("Expm1", Rule(expm1_grad)),
        ("Log", Rule(log_grad)),
        ("Log1p", Rule(log1p_grad)),
        ("Sin", Rule(sin_grad)),
        ("Cos", Rule(cos_grad)),
        ("Tanh", Rule(tanh_grad)),
        ("Sigmoid", Rule(sigmoid_grad)),
        ("Erf", Rule(erf_grad)),
        ("Floor", Rule(zero_grad)),
        ("Ceil", Rule(zero_grad)),
        ("Round", Rule(zero_grad)),
        ("Reciprocal", Rule(reciprocal_grad)),
        ("Add", Rule(add_grad)),
        ("Sub", Rule(sub_grad)),
        ("Mul", Rule(mul_grad)),
        ("Div", Rule(div_grad)),
        ("SquaredDifference", Rule(squared_difference_grad)),
        ("Pow", Rule(pow_grad)),
        ("Maximum", Rule(maximum_grad)),
        ("Minimum", Rule(minimum_grad)),
        // Integer-valued results: piecewise constant.
        ("FloorDiv", No),
        ("FloorMod", No),
        ("TruncateDiv", No),
        ("TruncateMod", No),
        ("LogicalAnd", No),
        ("LogicalOr", No),
        ("LogicalNot", No),
        ("SelectV2", Rule(select_grad)),
        ("ClipByValue", Rule(clip_grad)),
        ("Cast", Rule(cast_grad)),
        ("AddN", Rule(add_n_grad)),
        ("Sum", Rule(sum_grad)),
        ("Mean", Rule(mean_grad)),
        ("Max", Rule(min_max_grad)),
        ("Min", Rule(min_max_grad)),
        ("Prod", Rule(prod_grad)),
        ("LogSumExp", Rule(logsumexp_grad)),
        ("All", No),
        ("Any", No),
        ("ArgMax", No),
        ("ArgMin", No),
        ("MatMul", Rule(matmul_grad)),
        ("BatchMatMul", Rule(batch_matmul_grad)),
        ("UnsortedSegmentSum", Rule(unsorted_segment_sum_grad)),
        ("ReducedShape", No),
    ];
    t.extend(COMPARE_OPS.iter().map(|&(name, _)| (name, No)));
    // Every unary and binary op of the family has an entry above.
    debug_assert!(UNARY_OPS.iter().all(|u| t.iter().any(|e| e.0 == u.0)));
    debug_assert!(BINARY_OPS.iter().all(|b| t.iter().any(|e| e.0 == b.0)));
    t
}

// ---- unary ------------------------------------------------------------------------------------

/// Runs `f(graph, x, y, dy)` for a unary op and returns its single input gradient.
fn unary(
    ctx: &mut GradCtx<'_>,
    f: impl FnOnce(&mut Graph, Output, Output, Output) -> Result<Output>,
) -> Grads {
    let (x, y, dy) = (ctx.input(0)?, ctx.output(0), ctx.dy()?);
    Ok(vec![Some(f(ctx.graph, x, y, dy)?)])
}

fn neg_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, _, _, dy| g.neg(dy))
}

fn abs_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let s = g.sign(x)?;
        g.mul(dy, s)
    })
}

/// Piecewise-constant ops: a zero gradient.
fn zero_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, _| g.zeros_like(x))
}

fn square_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let two = g.scalar_like(x, 2.0)?;
        let t = g.mul(x, two)?;
        g.mul(dy, t)
    })
}

fn sqrt_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d sqrt(x) = 0.5 / y
    unary(ctx, |g, _, y, dy| {
        let half = g.scalar_like(y, 0.5)?;
        let t = g.mul(dy, half)?;
        g.div(t, y)
    })
}

fn rsqrt_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d x^-1/2 = -0.5 y^3
    unary(ctx, |g, _, y, dy| {
        let y2 = g.square(y)?;
        let y3 = g.mul(y2, y)?;
        let c = g.scalar_like(y, -0.5)?;
        let t = g.mul(y3, c)?;
        g.mul(dy, t)
    })
}

fn exp_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, _, y, dy| g.mul(dy, y))
}

fn expm1_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let e = g.exp(x)?;
        g.mul(dy, e)
    })
}

fn log_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| g.div(dy, x))
}

fn log1p_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let one = g.scalar_like(x, 1.0)?;
        let t = g.add(x, one)?;
        g.div(dy, t)
    })
}

fn sin_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let c = g.cos(x)?;
        g.mul(dy, c)
    })
}

fn cos_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let s = g.sin(x)?;
        let t = g.mul(dy, s)?;
        g.neg(t)
    })
}

fn tanh_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d tanh = 1 - y^2
    unary(ctx, |g, _, y, dy| {
        let one = g.scalar_like(y, 1.0)?;
        let y2 = g.square(y)?;
        let d = g.sub(one, y2)?;
        g.mul(dy, d)
    })
}

fn sigmoid_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d sigmoid = y (1 - y)
    unary(ctx, |g, _, y, dy| {
        let one = g.scalar_like(y, 1.0)?;
        let c = g.sub(one, y)?;
        let d = g.mul(y, c)?;
        g.mul(dy, d)
    })
}

fn erf_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d erf = 2/sqrt(pi) e^(-x^2)
    unary(ctx, |g, x, _, dy| {
        let x2 = g.square(x)?;
        let n = g.neg(x2)?;
        let e = g.exp(n)?;
        let c = g.scalar_like(x, std::f64::consts::FRAC_2_SQRT_PI)?;
        let d = g.mul(e, c)?;
        g.mul(dy, d)
    })
}

fn reciprocal_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d 1/x = -y^2
    unary(ctx, |g, _, y, dy| {
        let y2 = g.square(y)?;
        let t = g.mul(dy, y2)?;
        g.neg(t)
    })
}

// ---- binary, with broadcasting ------------------------------------------------------------------

/// Builds the wanted input gradients of a broadcasting op with `fs[i](graph, dy)` (before the
/// reduction back to input `i`'s shape) and reduces each to its input's shape.
fn broadcast_grads<const N: usize>(ctx: &mut GradCtx<'_>, fs: [Part<'_>; N]) -> Grads {
    let dy = ctx.dy()?;
    let mut out = Vec::with_capacity(N);
    for (i, f) in fs.iter().enumerate() {
        if !ctx.wants(i) {
            out.push(None);
            continue;
        }
        let input = ctx.input(i)?;
        let full = f(ctx.graph, dy)?;
        out.push(Some(sum_to(ctx.graph, full, input)?));
    }
    Ok(out)
}

fn add_grad(ctx: &mut GradCtx<'_>) -> Grads {
    broadcast_grads(ctx, [&|_, dy| Ok(dy), &|_, dy| Ok(dy)])
}

fn sub_grad(ctx: &mut GradCtx<'_>) -> Grads {
    broadcast_grads(ctx, [&|_, dy| Ok(dy), &|g, dy| g.neg(dy)])
}

fn mul_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    broadcast_grads(ctx, [&|g, dy| g.mul(dy, y), &|g, dy| g.mul(x, dy)])
}

fn div_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    broadcast_grads(
        ctx,
        [&|g, dy| g.div(dy, y), &|g, dy| {
            // -dy * x / y^2
            let nx = g.neg(x)?;
            let a = g.div(nx, y)?;
            let b = g.div(a, y)?;
            g.mul(dy, b)
        }],
    )
}

fn squared_difference_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // As TensorFlow: dx = 2 (x - y) dy and the negation for y, each summed over its broadcast
    // dims.
    let (x, y, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let two = g.scalar_like(x, 2.0)?;
    let diff = g.sub(x, y)?;
    let scaled = g.mul(two, diff)?;
    let dx = g.mul(scaled, dy)?;
    broadcast_grads(ctx, [&|_, _| Ok(dx), &|g, _| g.neg(dx)])
}

fn pow_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y, z) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0));
    broadcast_grads(
        ctx,
        [
            &|g, dy| {
                // dy * y * x^(y - 1)
                let one = g.scalar_like(y, 1.0)?;
                let ym1 = g.sub(y, one)?;
                let p = g.pow(x, ym1)?;
                let t = g.mul(y, p)?;
                g.mul(dy, t)
            },
            &|g, dy| {
                // dy * z * log(x) where x > 0, else 0 (with a safe log so second derivatives stay
                // finite).
                let zero = g.scalar_like(x, 0.0)?;
                let pos = g.greater(x, zero)?;
                let ones = g.ones_like(x)?;
                let safe = g.select(pos, x, ones)?;
                let l = g.log(safe)?;
                let zeros = g.zeros_like(x)?;
                let log_x = g.select(pos, l, zeros)?;
                let t = g.mul(z, log_x)?;
                g.mul(dy, t)
            },
        ],
    )
}

/// Maximum and Minimum: the gradient goes to x where `x >= y` (Maximum) or `x <= y` (Minimum),
/// to y elsewhere, as TensorFlow does on ties.
fn extremum_grad(ctx: &mut GradCtx<'_>, op: &str) -> Grads {
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    let dy = ctx.dy()?;
    let g = &mut *ctx.graph;
    let mask = g.build(op).input(x).input(y).finish1()?;
    let zeros = g.zeros_like(dy)?;
    broadcast_grads(
        ctx,
        [&|g, dy| g.select(mask, dy, zeros), &|g, dy| {
            g.select(mask, zeros, dy)
        }],
    )
}

fn maximum_grad(ctx: &mut GradCtx<'_>) -> Grads {
    extremum_grad(ctx, "GreaterEqual")
}

fn minimum_grad(ctx: &mut GradCtx<'_>) -> Grads {
    extremum_grad(ctx, "LessEqual")
}

fn select_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (c, t, e) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let dy = ctx.dy()?;
    let (wt, we) = (ctx.wants(1), ctx.wants(2));
    let g = &mut *ctx.graph;
    let zeros = g.zeros_like(dy)?;
    // The condition gets no gradient.
    let gt = if wt {
        let s = g.select(c, dy, zeros)?;
        Some(sum_to(g, s, t)?)
    } else {
        None
    };
    let ge = if we {
        let s = g.select(c, zeros, dy)?;
        Some(sum_to(g, s, e)?)
    } else {
        None
    };
    Ok(vec![None, gt, ge])
}

fn clip_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (t, lo, hi) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let dy = ctx.dy()?;
    let g = &mut *ctx.graph;
    let below = g.less(t, lo)?;
    let above = g.greater(t, hi)?;
    let outside = g.logical_or(below, above)?;
    let zeros = g.zeros_like(dy)?;
    broadcast_grads(
        ctx,
        [
            &|g, dy| g.select(outside, zeros, dy),
            &|g, dy| g.select(below, dy, zeros),
            &|g, dy| g.select(above, dy, zeros),
        ],
    )
}

fn cast_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let x = ctx.input(0)?;
    let (from, to) = (ctx.dtype(x), ctx.dtype(ctx.output(0)));
    if !(from.is_differentiable() && to.is_differentiable()) {
        return Ok(vec![None]);
    }
    let dy = ctx.dy()?;
    Ok(vec![Some(ctx.graph.cast(dy, from)?)])
}

fn add_n_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let dy = ctx.dy()?;
    Ok(vec![Some(dy); ctx.num_inputs()])
}

// ---- reductions -------------------------------------------------------------------------------

/// (x, axis, keep_dims, dy) of a reduction.
fn reduction(ctx: &GradCtx<'_>) -> Result<(Output, Output, bool, Output)> {
    let keep = ctx.attrs().bool_opt("keep_dims").copied().unwrap_or(false);
    Ok((ctx.input(0)?, ctx.input(1)?, keep, ctx.dy()?))
}

fn sum_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, axis, keep, dy) = reduction(ctx)?;
    let g = &mut *ctx.graph;
    let kept = reduction_kept(g, dy, x, axis, keep)?;
    let full = broadcast_like(g, kept, x)?;
    Ok(vec![Some(full), None])
}

fn mean_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, axis, keep, dy) = reduction(ctx)?;
    let y = ctx.output(0);
    let g = &mut *ctx.graph;
    let kept = reduction_kept(g, dy, x, axis, keep)?;
    let full = broadcast_like(g, kept, x)?;
    let count = match (g.shape(x).num_elements(), g.shape(y).num_elements()) {
        (Some(nx), Some(ny)) => g.scalar_like(x, (nx / ny.max(1)) as f64)?,
        _ => {
            let sx = g.size(x)?;
            let sy = g.size(y)?;
            let one = g.scalar(1i32)?;
            let sy = g.maximum(sy, one)?;
            let n = g.floor_div(sx, sy)?;
            let dt = g.dtype(x);
            g.cast(n, dt)?
        }
    };
    Ok(vec![Some(g.div(full, count)?), None])
}

/// Max and Min: the gradient is split equally among the elements equal to the extreme value,
/// as TensorFlow does.
fn min_max_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, axis, keep, dy) = reduction(ctx)?;
    let y = ctx.output(0);
    let g = &mut *ctx.graph;
    let yk = reduction_kept(g, y, x, axis, keep)?;
    let dyk = reduction_kept(g, dy, x, axis, keep)?;
    let eq = g.equal(yk, x)?;
    let dt = g.dtype(x);
    let ind = g.cast(eq, dt)?;
    let count = g
        .build("Sum")
        .input(ind)
        .input(axis)
        .attr("keep_dims", true)
        .finish1()?;
    let share = g.div(ind, count)?;
    Ok(vec![Some(g.mul(share, dyk)?), None])
}

/// Prod without dividing by zero: with no zero in a group each element gets `prod / x`; with
/// exactly one zero only that element gets the product of the others; with more, nothing.
/// The first derivative is exact everywhere; differentiating it again is exact away from exact
/// zeros (at a zero, the mixed terms through the zero count are not modelled, as in
/// TensorFlow).
fn prod_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, axis, keep, dy) = reduction(ctx)?;
    let g = &mut *ctx.graph;
    let dt = g.dtype(x);
    let dyk = reduction_kept(g, dy, x, axis, keep)?;
    let zero = g.scalar_like(x, 0.0)?;
    let one = g.scalar_like(x, 1.0)?;
    let is_zero = g.equal(x, zero)?;
    let ones = g.ones_like(x)?;
    let safe = g.select(is_zero, ones, x)?;
    let keep_sum = |g: &mut Graph, op: &str, t: Output| {
        g.build(op)
            .input(t)
            .input(axis)
            .attr("keep_dims", true)
            .finish1()
    };
    let prod_nonzero = keep_sum(g, "Prod", safe)?;
    let zf = g.cast(is_zero, dt)?;
    let zero_count = keep_sum(g, "Sum", zf)?;
    let no_zero = g.equal(zero_count, zero)?;
    let one_zero = g.equal(zero_count, one)?;
    let others = g.div(prod_nonzero, safe)?;
    let kept_zeros = g.zeros_like(prod_nonzero)?;
    let at_zero = g.select(one_zero, prod_nonzero, kept_zeros)?;
    let x_zeros = g.zeros_like(x)?;
    let at_nonzero = g.select(no_zero, others, x_zeros)?;
    let d = g.select(is_zero, at_zero, at_nonzero)?;
    Ok(vec![Some(g.mul(d, dyk)?), None])
}

fn logsumexp_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d logsumexp = softmax over the reduced axes
    let (x, axis, keep, dy) = reduction(ctx)?;
    let y = ctx.output(0);
    let g = &mut *ctx.graph;
    let yk = reduction_kept(g, y, x, axis, keep)?;
    let dyk = reduction_kept(g, dy, x, axis, keep)?;
    let d = g.sub(x, yk)?;
    let e = g.exp(d)?;
    Ok(vec![Some(g.mul(e, dyk)?), None])
}

// ---- matrix products ---------------------------------------------------------------------------

/// The two input gradients of `a @ b` with transpose (adjoint) flags, built by `mm(graph, p, q,
/// transpose_p, transpose_q)`.
fn product_grads(
    ctx: &mut GradCtx<'_>,
    (ta, tb): (bool, bool),
    mm: fn(&mut Graph, Output, Output, bool, bool) -> Result<Output>,
) -> Result<(Option<Output>, Option<Output>)> {
    let (a, b, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?);
    let (wa, wb) = (ctx.wants(0), ctx.wants(1));
    let g = &mut *ctx.graph;
    let (ga, gb) = match (ta, tb) {
        (false, false) => (
            wa.then(|| mm(g, dy, b, false, true)),
            wb.then(|| mm(g, a, dy, true, false)),
        ),
        (false, true) => (
            wa.then(|| mm(g, dy, b, false, false)),
            wb.then(|| mm(g, dy, a, true, false)),
        ),
        (true, false) => (
            wa.then(|| mm(g, b, dy, false, true)),
            wb.then(|| mm(g, a, dy, false, false)),
        ),
        (true, true) => (
            wa.then(|| mm(g, b, dy, true, true)),
            wb.then(|| mm(g, dy, a, true, true)),
        ),
    };
    Ok((ga.transpose()?, gb.transpose()?))
}

fn flag(ctx: &GradCtx<'_>, name: &str) -> bool {
    ctx.attrs().bool_opt(name).copied().unwrap_or(false)
}

fn matmul_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let flags = (flag(ctx, "transpose_a"), flag(ctx, "transpose_b"));
    let (ga, gb) = product_grads(ctx, flags, |g, p, q, tp, tq| g.matmul_t(p, q, tp, tq))?;
    Ok(vec![ga, gb])
}

fn batch_matmul_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let flags = (flag(ctx, "adj_x"), flag(ctx, "adj_y"));
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    let (gx, gy) = product_grads(ctx, flags, |g, p, q, tp, tq| g.batch_matmul(p, q, tp, tq))?;
    // Batch dims broadcast: sum each gradient back to its operand's batch shape.
    let gx = gx.map(|t| sum_to(ctx.graph, t, x)).transpose()?;
    let gy = gy.map(|t| sum_to(ctx.graph, t, y)).transpose()?;
    Ok(vec![gx, gy])
}

// ---- ops emitted by gradient rules ---------------------------------------------------------------

/// `UnsortedSegmentSum(data, ids, n)`: each data row gets the gradient of the segment it went
/// to, a gather along axis 0.
fn unsorted_segment_sum_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // Data with a negative segment id was dropped: its gradient is zero.
    let (ids, dy) = (ctx.input(1)?, ctx.dy()?);
    let d = super::segment_grad::gather_drop_negatives(ctx.graph, dy, ids)?;
    Ok(vec![Some(d), None, None])
}
