//! Gradient rules of `linalg_ops.rs`, after TensorFlow's `linalg_grad.py` and
//! `array_grad.py`, written with graph ops so they are differentiable again.

use super::einsum::{self, subs_string, Label};
use crate::error::Result;
use crate::grad::{statically_equal, sum_to, GradCtx};
use crate::graph::{Graph, Output};
use crate::op_def::Gradient;

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::Rule;
    vec![
        ("MatrixBandPart", Rule(band_part_grad)),
        ("MatrixDiag", Rule(matrix_diag_grad)),
        ("MatrixDiagPart", Rule(matrix_diag_part_grad)),
        ("MatrixSetDiag", Rule(matrix_set_diag_grad)),
        ("MatrixDiagV3", Rule(matrix_diag_v3_grad)),
        ("MatrixDiagPartV3", Rule(matrix_diag_part_v3_grad)),
        ("MatrixSetDiagV3", Rule(matrix_set_diag_v3_grad)),
        ("MatrixInverse", Rule(matrix_inverse_grad)),
        ("MatrixDeterminant", Rule(determinant_grad)),
        ("Cholesky", Rule(cholesky_grad)),
        ("MatrixTriangularSolve", Rule(triangular_solve_grad)),
        ("Einsum", Rule(einsum_grad)),
    ]
}

fn flag(ctx: &GradCtx<'_>, name: &str) -> bool {
    ctx.attrs().bool_opt(name).copied().unwrap_or(false)
}

fn align(ctx: &GradCtx<'_>) -> String {
    ctx.attrs()
        .string_opt("align")
        .cloned()
        .unwrap_or_else(|| "RIGHT_LEFT".into())
}

fn band_part_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (lo, hi, dy) = (ctx.input(1)?, ctx.input(2)?, ctx.dy()?);
    let d = ctx
        .graph
        .build("MatrixBandPart")
        .input(dy)
        .input(lo)
        .input(hi)
        .finish1()?;
    Ok(vec![Some(d), None, None])
}

fn matrix_diag_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let dy = ctx.dy()?;
    Ok(vec![Some(ctx.graph.matrix_diag_part(dy)?)])
}

fn matrix_diag_part_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, dy) = (ctx.input(0)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let z = g.zeros_like(x)?;
    Ok(vec![Some(g.matrix_set_diag(z, dy)?)])
}

fn matrix_set_diag_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (d, dy) = (ctx.input(1)?, ctx.dy()?);
    let g = &mut *ctx.graph;
    let z = g.zeros_like(d)?;
    let dx = g.matrix_set_diag(dy, z)?;
    let dd = g.matrix_diag_part(dy)?;
    Ok(vec![Some(dx), Some(dd)])
}

/// `MatrixDiagPartV3(x, k, 0, align)`.
fn diag_part_v3(g: &mut Graph, x: Output, k: Output, align: &str) -> Result<Output> {
    let zero = g.scalar_like(x, 0.0)?;
    g.build("MatrixDiagPartV3")
        .input(x)
        .input(k)
        .input(zero)
        .attr("align", align)
        .finish1()
}

/// `MatrixSetDiagV3(x, d, k, align)`.
fn set_diag_v3(g: &mut Graph, x: Output, d: Output, k: Output, align: &str) -> Result<Output> {
    g.build("MatrixSetDiagV3")
        .input(x)
        .input(d)
        .input(k)
        .attr("align", align)
        .finish1()
}

fn matrix_diag_v3_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (k, dy, align) = (ctx.input(1)?, ctx.dy()?, align(ctx));
    let d = diag_part_v3(ctx.graph, dy, k, &align)?;
    Ok(vec![Some(d), None, None, None, None])
}

fn matrix_diag_part_v3_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (x, k, dy, align) = (ctx.input(0)?, ctx.input(1)?, ctx.dy()?, align(ctx));
    let g = &mut *ctx.graph;
    let z = g.zeros_like(x)?;
    Ok(vec![Some(set_diag_v3(g, z, dy, k, &align)?), None, None])
}

fn matrix_set_diag_v3_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (d, k, dy, align) = (ctx.input(1)?, ctx.input(2)?, ctx.dy()?, align(ctx));
    let g = &mut *ctx.graph;
    let z = g.zeros_like(d)?;
    let dx = set_diag_v3(g, dy, z, k, &align)?;
    let dd = diag_part_v3(g, dy, k, &align)?;
    Ok(vec![Some(dx), Some(dd), None])
}

fn matrix_inverse_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // -A^-H dy A^-H (adjoint = false); with adjoint the roles of the transposes swap.
    let adj = flag(ctx, "adjoint");
    let (ainv, dy) = (ctx.output(0), ctx.dy()?);
    let g = &mut *ctx.graph;
    let t = g.batch_matmul(dy, ainv, adj, !adj)?;
    let p = g.batch_matmul(ainv, t, !adj, false)?;
    Ok(vec![Some(g.neg(p)?)])
}

fn determinant_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // dy * det(A) * A^-T
    let (a, det, dy) = (ctx.input(0)?, ctx.output(0), ctx.dy()?);
    let g = &mut *ctx.graph;
    let inv_t = g.matrix_inverse(a, true)?;
    let m = g.mul(dy, det)?;
    let m = g.expand_dims(m, -1)?;
    let m = g.expand_dims(m, -1)?;
    Ok(vec![Some(g.mul(m, inv_t)?)])
}

/// The transpose of each innermost matrix (any rank >= 2).
fn matrix_transpose(g: &mut Graph, x: Output) -> Result<Output> {
    g.einsum(&[x], "...ij->...ji")
}

fn cholesky_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // TensorFlow's rule (Murray 2016):
    //   P = Phi(L^T dy) with Phi taking the lower triangle and halving the diagonal,
    //   dA = sym(L^-T P L^-1) = 0.5 (S + S^T), S = L^-T P L^-1.
    let (l, dy) = (ctx.output(0), ctx.dy()?);
    let g = &mut *ctx.graph;
    let d = g.matrix_diag_part(l)?;
    let ones = g.ones_like(d)?;
    let eye = g.matrix_diag(ones)?;
    let l_inv = g.matrix_triangular_solve(l, eye, true, false)?;
    let middle = g.batch_matmul(l, dy, true, false)?;
    let md = g.matrix_diag_part(middle)?;
    let half = g.scalar_like(l, 0.5)?;
    let md = g.mul(md, half)?;
    let middle = g.matrix_set_diag(middle, md)?;
    let middle = g.matrix_band_part(middle, -1, 0)?;
    let s = g.batch_matmul(l_inv, middle, true, false)?;
    let s = g.batch_matmul(s, l_inv, false, false)?;
    let st = matrix_transpose(g, s)?;
    let sum = g.add(s, st)?;
    Ok(vec![Some(g.mul(sum, half)?)])
}

fn triangular_solve_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let (lower, adj) = (flag(ctx, "lower"), flag(ctx, "adjoint"));
    let (a, b, c, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0), ctx.dy()?);
    let g = &mut *ctx.graph;
    let gb = g.matrix_triangular_solve(a, dy, lower, !adj)?;
    let ga = if adj {
        g.batch_matmul(c, gb, false, true)?
    } else {
        g.batch_matmul(gb, c, false, true)?
    };
    let ga = g.neg(ga)?;
    let ga = if lower {
        g.matrix_band_part(ga, -1, 0)?
    } else {
        g.matrix_band_part(ga, 0, -1)?
    };
    // Batch dims broadcast: sum each gradient back to its operand's batch shape.
    let ga = sum_to(g, ga, a)?;
    let gb = sum_to(g, gb, b)?;
    Ok(vec![Some(ga), Some(gb)])
}

// ---- Einsum -----------------------------------------------------------------------------------

fn einsum_grad(ctx: &mut GradCtx<'_>) -> Grads {
    let equation = ctx
        .attrs()
        .string("equation")
        .map_err(|e| ctx.error(e))?
        .clone();
    let n = ctx.num_inputs();
    let e = einsum::parse(&equation, n).map_err(|m| ctx.error(m))?;
    let dy = ctx.dy()?;
    let out = e.output.clone();
    if n == 1 {
        let x = ctx.input(0)?;
        let gx = grad_wrt(ctx, dy, None, x, &e.inputs[0], &out)?;
        return Ok(vec![Some(gx)]);
    }
    let (x, y) = (ctx.input(0)?, ctx.input(1)?);
    let (mut xs, mut ys) = (e.inputs[0].clone(), e.inputs[1].clone());
    // As TensorFlow: an operand without `...` takes an empty one when the output has it, so its
    // gradient's broadcast dims are summed away.
    if out.contains(&Label::Ellipsis) {
        for s in [&mut xs, &mut ys] {
            if !s.contains(&Label::Ellipsis) {
                s.insert(0, Label::Ellipsis);
            }
        }
    }
    let gx = if ctx.wants(0) {
        Some(grad_wrt(ctx, dy, Some((y, &ys)), x, &xs, &out)?)
    } else {
        None
    };
    let gy = if ctx.wants(1) {
        Some(grad_wrt(ctx, dy, Some((x, &xs)), y, &ys, &out)?)
    } else {
        None
    };
    Ok(vec![gx, gy])
}

/// The gradient with respect to the operand `x` (subscript `xs`) of an einsum with output
/// subscript `out`, given the other operand (if any).
fn grad_wrt(
    ctx: &mut GradCtx<'_>,
    dy: Output,
    other: Option<(Output, &[Label])>,
    x: Output,
    xs: &[Label],
    out: &[Label],
) -> Result<Output> {
    let in_other = |l: &Label| other.is_some_and(|(_, s)| s.contains(l));
    // Labels summed over in x alone: the gradient is broadcast back over them.
    let reduced: Vec<Label> = xs
        .iter()
        .filter(|l| !out.contains(l) && !in_other(l))
        .copied()
        .collect();
    let left: Vec<Label> = xs
        .iter()
        .filter(|l| !reduced.contains(l))
        .copied()
        .collect();
    let ellipsis_summed = xs.contains(&Label::Ellipsis) && !out.contains(&Label::Ellipsis);
    let (o, l) = (subs_string(out), subs_string(&left));
    let g = &mut *ctx.graph;
    let mut gx = match other {
        Some((other, os)) => g.einsum(&[dy, other], &format!("{o},{}->{l}", subs_string(os)))?,
        None => g.einsum(&[dy], &format!("{o}->{l}"))?,
    };
    if !reduced.is_empty() || ellipsis_summed {
        // Broadcast over the reduced labels (and onto the diagonals of repeated ones) by an
        // einsum with ones of x's shape.
        let ones = g.ones_like(x)?;
        let xstr = subs_string(xs);
        gx = g.einsum(&[gx, ones], &format!("{l},{xstr}->{xstr}"))?;
    }
    if xs.contains(&Label::Ellipsis) && !statically_equal(ctx.graph.shape(gx), ctx.graph.shape(x)) {
        gx = unbroadcast_ellipsis(ctx, gx, x, xs)?;
    }
    Ok(gx)
}

/// Sums the `...` dims of `gx` (broadcast over other operands) back to those of `x`: both are
/// transposed so that the `...` dims lead, reduced with `sum_to`, and transposed back.
fn unbroadcast_ellipsis(
    ctx: &mut GradCtx<'_>,
    gx: Output,
    x: Output,
    xs: &[Label],
) -> Result<Output> {
    let (Some(rg), Some(rx)) = (ctx.shape(gx).rank(), ctx.shape(x).rank()) else {
        return Err(ctx.error("the gradient of `...` dims needs operands of known rank"));
    };
    let g = &mut *ctx.graph;
    let p = xs.iter().position(|l| *l == Label::Ellipsis).unwrap_or(0);
    let named = xs.len() - 1;
    let (eg, ex) = (rg - named, rx - named);
    let lead = |e: usize, r: usize| -> Vec<i64> {
        let mut v: Vec<i64> = (p..p + e).map(|i| i as i64).collect();
        v.extend((0..r).filter(|i| *i < p || *i >= p + e).map(|i| i as i64));
        v
    };
    let (pg, px) = (lead(eg, rg), lead(ex, rx));
    let gt = g.transpose(gx, &pg)?;
    let xt = g.transpose(x, &px)?;
    let s = sum_to(g, gt, xt)?;
    let mut inv = vec![0i64; rx];
    for (i, &a) in px.iter().enumerate() {
        inv[a as usize] = i as i64;
    }
    g.transpose(s, &inv)
}
