//! Gradient rules of `special_math_ops.rs`, written with graph ops so they are differentiable
//! again. The formulas follow TensorFlow's `math_grad.py`.

use crate::error::Result;
use crate::grad::{sum_to, GradCtx};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;
type Part<'a> = &'a dyn Fn(&mut Graph, Output) -> Result<Output>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::{NotDifferentiable as No, Rule};
    vec![
        ("Tan", Rule(tan_grad)),
        ("Asin", Rule(asin_grad)),
        ("Acos", Rule(acos_grad)),
        ("Atan", Rule(atan_grad)),
        ("Sinh", Rule(sinh_grad)),
        ("Cosh", Rule(cosh_grad)),
        ("Asinh", Rule(asinh_grad)),
        ("Acosh", Rule(acosh_grad)),
        ("Atanh", Rule(atanh_grad)),
        ("Lgamma", Rule(lgamma_grad)),
        ("Digamma", Rule(digamma_grad)),
        ("Erfc", Rule(erfc_grad)),
        // Piecewise constant, as tfr's Round.
        ("Rint", Rule(rint_grad)),
        ("IsNan", No),
        ("IsInf", No),
        ("IsFinite", No),
        ("Atan2", Rule(atan2_grad)),
        ("Xlogy", Rule(xlogy_grad)),
        ("Xdivy", Rule(xdivy_grad)),
        ("DivNoNan", Rule(div_no_nan_grad)),
        ("RealDiv", Rule(real_div_grad)),
        ("Polygamma", Rule(polygamma_grad)),
        ("LogicalXor", No),
    ]
}

/// `f(graph, x, y, dy)` for a unary op: its single input gradient.
fn unary(
    ctx: &mut GradCtx<'_>,
    f: impl FnOnce(&mut Graph, Output, Output, Output) -> Result<Output>,
) -> Grads {
    let (x, y, dy) = (ctx.input(0)?, ctx.output(0), ctx.dy()?);
    Ok(vec![Some(f(ctx.graph, x, y, dy)?)])
}

fn tan_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // sec^2 x = 1 + tan^2 x
    unary(ctx, |g, _, y, dy| {
        let one = g.scalar_like(y, 1.0)?;
        let y2 = g.square(y)?;
        let d = g.add(one, y2)?;
        g.mul(dy, d)
    })
}

/// `1 - x^2`.
fn one_minus_square(g: &mut Graph, x: Output) -> Result<Output> {
    let one = g.scalar_like(x, 1.0)?;
    let x2 = g.square(x)?;
    g.sub(one, x2)
}

fn asin_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let d = one_minus_square(g, x)?;
        let r = g.rsqrt(d)?;
        g.mul(dy, r)
    })
}

fn acos_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let d = one_minus_square(g, x)?;
        let r = g.rsqrt(d)?;
        let t = g.mul(dy, r)?;
        g.neg(t)
    })
}

fn atan_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let one = g.scalar_like(x, 1.0)?;
        let x2 = g.square(x)?;
        let d = g.add(one, x2)?;
        g.div(dy, d)
    })
}

fn sinh_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let c = g.cosh(x)?;
        g.mul(dy, c)
    })
}

fn cosh_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let s = g.sinh(x)?;
        g.mul(dy, s)
    })
}

fn asinh_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // 1 / cosh(asinh x)
    unary(ctx, |g, _, y, dy| {
        let c = g.cosh(y)?;
        g.div(dy, c)
    })
}

fn acosh_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // 1 / sinh(acosh x)
    unary(ctx, |g, _, y, dy| {
        let s = g.sinh(y)?;
        g.div(dy, s)
    })
}

fn atanh_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let d = one_minus_square(g, x)?;
        g.div(dy, d)
    })
}

fn lgamma_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, dy| {
        let d = g.digamma(x)?;
        g.mul(dy, d)
    })
}

fn digamma_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // polygamma(1, x), the trigamma function
    unary(ctx, |g, x, _, dy| {
        let one = g.scalar_like(x, 1.0)?;
        let d = g.polygamma(one, x)?;
        g.mul(dy, d)
    })
}

fn erfc_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // -2/sqrt(pi) e^(-x^2)
    unary(ctx, |g, x, _, dy| {
        let x2 = g.square(x)?;
        let n = g.neg(x2)?;
        let e = g.exp(n)?;
        let c = g.scalar_like(x, -std::f64::consts::FRAC_2_SQRT_PI)?;
        let d = g.mul(e, c)?;
        g.mul(dy, d)
    })
}

fn rint_grad(ctx: &mut GradCtx<'_>) -> Grads {
    unary(ctx, |g, x, _, _| g.zeros_like(x))
}

/// The wanted input gradients of a broadcasting binary op: `fs[i](graph, dy)` reduced to input
/// `i`'s shape.
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

fn atan2_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // z = atan2(y, x): dz/dy = x / (x^2 + y^2), dz/dx = -y / (x^2 + y^2)
    let (y, x) = (ctx.input(0)?, ctx.input(1)?);
    let g = &mut *ctx.graph;
    let x2 = g.square(x)?;
    let y2 = g.square(y)?;
    let r2 = g.add(x2, y2)?;
    broadcast_grads(
        ctx,
        [
            &|g, dy| {
                let t = g.div(x, r2)?;
                g.mul(dy, t)
            },
            &|g, dy| {
                let t = g.div(y, r2)?;
                let t = g.mul(dy, t)?;
                g.neg(t)
            },
        ],
    )
}

/// `cast(x != 0)` in x's dtype.
fn nonzero(g: &mut Graph, x: Output) -> Result<Output> {
    let zero = g.scalar_like(x, 0.0)?;
    let ne = g.not_equal(x, zero)?;
    let dt = g.dtype(x);
    g.cast(ne, dt)
}

fn xlogy_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dx = xlogy(x != 0, y), dy = xdivy(x, y)
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    broadcast_grads(
        ctx,
        [
            &|g, dy| {
                let nz = nonzero(g, x)?;
                let t = g.xlogy(nz, y)?;
                g.mul(dy, t)
            },
            &|g, dy| {
                let t = g.xdivy(x, y)?;
                g.mul(dy, t)
            },
        ],
    )
}

fn xdivy_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dx = xdivy(x != 0, y), dy = xdivy(-x, y^2)
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    broadcast_grads(
        ctx,
        [
            &|g, dy| {
                let nz = nonzero(g, x)?;
                let t = g.xdivy(nz, y)?;
                g.mul(dy, t)
            },
            &|g, dy| {
                let nx = g.neg(x)?;
                let y2 = g.square(y)?;
                let t = g.xdivy(nx, y2)?;
                g.mul(dy, t)
            },
        ],
    )
}

fn div_no_nan_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dx = div_no_nan(dy, y), dy = dy * div_no_nan(div_no_nan(-x, y), y)
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    broadcast_grads(
        ctx,
        [&|g, dy| g.div_no_nan(dy, y), &|g, dy| {
            let nx = g.neg(x)?;
            let a = g.div_no_nan(nx, y)?;
            let b = g.div_no_nan(a, y)?;
            g.mul(dy, b)
        }],
    )
}

fn real_div_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    broadcast_grads(
        ctx,
        [&|g, dy| g.real_div(dy, y), &|g, dy| {
            // -dy * x / y^2
            let nx = g.neg(x)?;
            let a = g.real_div(nx, y)?;
            let b = g.real_div(a, y)?;
            g.mul(dy, b)
        }],
    )
}

fn polygamma_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // d/dx polygamma(a, x) = polygamma(a + 1, x); the order gets none (as TensorFlow).
    let (a, x) = (ctx.input(0)?, ctx.input(1)?);
    let mut out = broadcast_grads(
        ctx,
        [&|_, dy| Ok(dy), &|g, dy| {
            let one = g.scalar_like(a, 1.0)?;
            let a1 = g.add(a, one)?;
            let d = g.polygamma(a1, x)?;
            g.mul(dy, d)
        }],
    )?;
    out[0] = None;
    Ok(out)
}
