//! Numeric gradient cases for the linear-algebra ops: MatrixBandPart, the diagonal ops (V1 and
//! V3), MatrixInverse, MatrixDeterminant, Cholesky, MatrixTriangularSolve and Einsum. Matrices
//! that must be invertible or positive definite are built in the graph from the fed input
//! (`x x^T + c I`, `x + c I`). Included by `tests/gradients.rs`.

use super::*;

/// `c I` with the batch shape and dtype of the square matrices `x`.
fn scaled_eye(g: &mut Graph, x: Output, c: f64) -> GResult<Output> {
    let d = g.matrix_diag_part(x)?;
    let ones = g.ones_like(d)?;
    let eye = g.matrix_diag(ones)?;
    let s = g.scalar_like(x, c)?;
    g.mul(eye, s)
}

/// `x x^T + c I`: symmetric positive definite.
fn spd(g: &mut Graph, x: Output, c: f64) -> GResult<Output> {
    let p = g.batch_matmul(x, x, false, true)?;
    let e = scaled_eye(g, x, c)?;
    g.add(p, e)
}

/// `x + c I`: diagonally dominant for inputs in [-1, 1] and c above the size.
fn shifted(g: &mut Graph, x: Output, c: f64) -> GResult<Output> {
    let e = scaled_eye(g, x, c)?;
    g.add(x, e)
}

const UNIT: Dist = Dist::Uniform(-1.0, 1.0);

pub(super) fn cases(_rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    for (lo, hi) in [(1, 0), (-1, 1), (0, -1)] {
        cs.push(case(
            "MatrixBandPart",
            format!("({lo}, {hi})"),
            vec![inp(&[2, 3, 4], U)],
            one(move |g, x| g.matrix_band_part(x[0], lo, hi)),
        ));
    }
    cs.push(case(
        "MatrixDiag",
        "[2, 3]",
        vec![inp(&[2, 3], U)],
        one(|g, x| g.matrix_diag(x[0])),
    ));
    for shape in [[2, 3, 3], [2, 3, 4]] {
        cs.push(case(
            "MatrixDiagPart",
            format!("{shape:?}"),
            vec![inp(&shape, U)],
            one(|g, x| g.matrix_diag_part(x[0])),
        ));
    }
    cs.push(case(
        "MatrixSetDiag",
        "[2, 4, 3]",
        vec![inp(&[2, 4, 3], U), inp(&[2, 3], U)],
        one(|g, x| g.matrix_set_diag(x[0], x[1])),
    ));
    for align in ["RIGHT_LEFT", "LEFT_RIGHT"] {
        cs.push(case(
            "MatrixDiagV3",
            format!("k (-1, 1) {align}"),
            vec![inp(&[2, 3, 3], U)],
            one(move |g, x| g.matrix_diag_v3(x[0], (-1, 1), -1, -1, 0.0, align)),
        ));
        cs.push(case(
            "MatrixDiagPartV3",
            format!("k (-1, 2) {align}"),
            vec![inp(&[2, 3, 4], U)],
            one(move |g, x| g.matrix_diag_part_v3(x[0], (-1, 2), 0.5, align)),
        ));
        cs.push(case(
            "MatrixSetDiagV3",
            format!("k (0, 1) {align}"),
            vec![inp(&[3, 4], U), inp(&[2, 3], U)],
            one(move |g, x| g.matrix_set_diag_v3(x[0], x[1], (0, 1), align)),
        ));
    }
    for adjoint in [false, true] {
        for shape in [vec![3, 3], vec![2, 2, 2]] {
            cs.push(case(
                "MatrixInverse",
                format!("{shape:?} adjoint {adjoint}"),
                vec![inp(&shape, UNIT)],
                one(move |g, x| {
                    let a = shifted(g, x[0], 4.0)?;
                    g.matrix_inverse(a, adjoint)
                }),
            ));
        }
    }
    for shape in [vec![3, 3], vec![2, 2, 2]] {
        cs.push(case(
            "MatrixDeterminant",
            format!("{shape:?}"),
            vec![inp(&shape, UNIT)],
            one(|g, x| {
                let a = shifted(g, x[0], 3.0)?;
                g.matrix_determinant(a)
            }),
        ));
        cs.push(case(
            "Cholesky",
            format!("{shape:?}"),
            vec![inp(&shape, UNIT)],
            one(|g, x| {
                let a = spd(g, x[0], 2.0)?;
                g.cholesky(a)
            }),
        ));
    }
    for (lower, adjoint) in [(true, false), (true, true), (false, false), (false, true)] {
        cs.push(case(
            "MatrixTriangularSolve",
            format!("lower {lower} adjoint {adjoint}"),
            vec![inp(&[3, 3], UNIT), inp(&[3, 2], U)],
            one(move |g, x| {
                let a = shifted(g, x[0], 4.0)?;
                g.matrix_triangular_solve(a, x[1], lower, adjoint)
            }),
        ));
    }
    cs.push(case(
        "MatrixTriangularSolve",
        "broadcast batch dims",
        vec![inp(&[2, 1, 3, 3], UNIT), inp(&[4, 3, 2], U)],
        one(|g, x| {
            let a = shifted(g, x[0], 4.0)?;
            g.matrix_triangular_solve(a, x[1], true, false)
        }),
    ));
    let binary: &[(&str, &[usize], &[usize])] = &[
        ("ij,jk->ik", &[2, 3], &[3, 4]),
        ("bij,bjk->bik", &[2, 2, 3], &[2, 3, 2]),
        ("i,j->ij", &[3], &[2]),
        ("ij,ij->", &[2, 3], &[2, 3]),
        ("...ij,...jk->...ik", &[2, 1, 2, 3], &[3, 3, 2]),
        ("ij,...jk->...ik", &[2, 3], &[2, 3, 2]),
        ("iij,jk->ik", &[2, 2, 3], &[3, 2]),
        ("abc,cd->da", &[2, 3, 2], &[2, 3]),
    ];
    for &(eq, sa, sb) in binary {
        cs.push(case(
            "Einsum",
            eq,
            vec![inp(sa, U), inp(sb, U)],
            one(move |g, x| g.einsum(&[x[0], x[1]], eq)),
        ));
    }
    let unary: &[(&str, &[usize])] = &[
        ("ii->i", &[3, 3]),
        ("ii", &[3, 3]),
        ("ij->ji", &[2, 3]),
        ("ijk->", &[2, 3, 2]),
        ("ijk->ki", &[2, 3, 2]),
        ("...ij->...ji", &[2, 2, 3]),
        ("i->ii", &[3]),
    ];
    for &(eq, s) in unary {
        cs.push(case(
            "Einsum",
            eq,
            vec![inp(s, U)],
            one(move |g, x| g.einsum(&[x[0]], eq)),
        ));
    }
    cs
}
