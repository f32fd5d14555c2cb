//! Linear-algebra and Einsum kernels against references: naive loops in
//! this file, identities (A A^-1 = I, L L^T = A), hand-computed determinants and the examples of
//! TensorFlow's documentation for the V3 diagonal ops. Numeric gradients are checked in
//! `tests/gradients.rs` (`gradient_cases/linalg_ops.rs`).

use tfr_core::Tensor;
use tfr_graph::{DType, Dim, Graph, Output, Shape};

use crate::common;
use common::*;

fn feed(g: &mut Graph, name: &str, dtype: DType, shape: &[usize], v: &[f64]) -> (Output, Tensor) {
    let p = g.placeholder(name, dtype, Shape::known(shape)).unwrap();
    let t = match dtype {
        DType::F32 => t(shape, v.iter().map(|&x| x as f32).collect()),
        DType::I32 => t(shape, v.iter().map(|&x| x as i32).collect()),
        _ => t(shape, v.to_vec()),
    };
    (p, t)
}

/// A placeholder of unknown shape (so checks happen in the kernel).
fn loose(g: &mut Graph, name: &str, dtype: DType) -> Output {
    g.placeholder(name, dtype, Shape::unknown()).unwrap()
}

fn ints(v: &[i64]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `x` ([b, m, n] flattened) as matrices.
fn mat(v: &[f64], m: usize, n: usize, b: usize) -> Vec<Vec<f64>> {
    (0..m)
        .map(|i| v[b * m * n + i * n..b * m * n + (i + 1) * n].to_vec())
        .collect()
}

fn matmul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (m, k, n) = (a.len(), b.len(), b[0].len());
    (0..m)
        .map(|i| {
            (0..n)
                .map(|j| (0..k).map(|p| a[i][p] * b[p][j]).sum())
                .collect()
        })
        .collect()
}

fn flat(m: &[Vec<f64>]) -> Vec<f64> {
    m.iter().flatten().copied().collect()
}

// ---- MatrixBandPart and the diagonal ops ------------------------------------------------------

#[test]
fn band_part_matches_the_definition() {
    let x: Vec<f64> = (0..2 * 4 * 5).map(|v| v as f64 + 1.0).collect();
    for (lo, hi) in [(1i64, -1i64), (-1, 0), (0, 0), (2, 1), (-1, -1), (0, 3)] {
        for dtype in [DType::F32, DType::F64, DType::I32] {
            let mut g = Graph::new();
            let (p, tx) = feed(&mut g, "x", dtype, &[2, 4, 5], &x);
            let y = g.matrix_band_part(p, lo, hi).unwrap();
            let got = run(&g, &[(p, tx)], &[y])[0].to_f64_vec();
            let want: Vec<f64> = (0..40)
                .map(|f| {
                    let (i, j) = ((f / 5) % 4, f % 5);
                    let d = j as i64 - i as i64;
                    let keep = (lo < 0 || -d <= lo) && (hi < 0 || d <= hi);
                    if keep {
                        x[f]
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(got, want, "({lo}, {hi}) {dtype}");
        }
    }
}

#[test]
fn band_part_errors() {
    let mut g = Graph::new();
    let x = loose(&mut g, "x", DType::F32);
    let y = g.matrix_band_part(x, 5, 0).unwrap();
    let e = run_err(&g, &[(x, t(&[2, 3], vec![0f32; 6]))], y).to_string();
    assert!(
        e.contains("num_lower") && e.contains("MatrixBandPart"),
        "{e}"
    );
    let e = run_err(&g, &[(x, t(&[3], vec![0f32; 3]))], y).to_string();
    assert!(e.contains("rank >= 2"), "{e}");
    // Known shapes: refused when the node is built.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[3])).unwrap();
    let e = g.matrix_band_part(x, 0, 0).unwrap_err().to_string();
    assert!(e.contains("rank >= 2"), "{e}");
}

#[test]
fn v1_diagonal_ops() {
    let mut g = Graph::new();
    let (d, td) = feed(&mut g, "d", DType::F64, &[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let m = g.matrix_diag(d).unwrap();
    assert_eq!(g.shape(m), &Shape::known(&[2, 3, 3]));
    let x: Vec<f64> = (0..2 * 3 * 4).map(|v| v as f64).collect();
    let (px, tx) = feed(&mut g, "x", DType::F64, &[2, 3, 4], &x);
    let part = g.matrix_diag_part(px).unwrap();
    let (nd, tnd) = feed(
        &mut g,
        "nd",
        DType::F64,
        &[2, 3],
        &[-1., -2., -3., -4., -5., -6.],
    );
    let set = g.matrix_set_diag(px, nd).unwrap();
    let out = run(&g, &[(d, td), (px, tx), (nd, tnd)], &[m, part, set]);
    let mut want = vec![0.0; 18];
    for b in 0..2 {
        for i in 0..3 {
            want[b * 9 + i * 3 + i] = (b * 3 + i + 1) as f64;
        }
    }
    assert_eq!(out[0].to_f64_vec(), want);
    assert_eq!(out[1].shape(), &[2, 3]);
    assert_eq!(out[1].to_f64_vec(), vec![0., 5., 10., 12., 17., 22.]);
    let mut want = x.clone();
    for b in 0..2 {
        for i in 0..3 {
            want[b * 12 + i * 4 + i] = -((b * 3 + i + 1) as f64);
        }
    }
    assert_eq!(out[2].to_f64_vec(), want);
    // A diagonal of the wrong length.
    let bad = g
        .placeholder("bad", DType::F64, Shape::known(&[2, 4]))
        .unwrap();
    let e = g.matrix_set_diag(px, bad).unwrap_err().to_string();
    assert!(e.contains("diagonal must have shape"), "{e}");
}

/// The (2, 3, 4) input of TensorFlow's `matrix_diag_part` examples.
const DOC_INPUT: [i64; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5, 4, 3, 2, 1, 2, 3, 4, 5, 6, 7, 8,
];

fn diag_part_v3(k: (i64, i64), pad: f64, align: &str) -> (Vec<usize>, Vec<f64>) {
    let mut g = Graph::new();
    let (x, tx) = feed(&mut g, "x", DType::I32, &[2, 3, 4], &ints(&DOC_INPUT));
    let y = g.matrix_diag_part_v3(x, k, pad, align).unwrap();
    let out = run(&g, &[(x, tx)], &[y]).remove(0);
    assert_eq!(g.shape(y).to_known().unwrap(), out.shape(), "static shape");
    (out.shape().to_vec(), out.to_f64_vec())
}

#[test]
fn diag_part_v3_matches_tensorflow_docs() {
    let rl = "RIGHT_LEFT";
    assert_eq!(
        diag_part_v3((0, 0), 0.0, rl),
        (vec![2, 3], ints(&[1, 6, 7, 5, 2, 7]))
    );
    assert_eq!(
        diag_part_v3((1, 1), 0.0, rl),
        (vec![2, 3], ints(&[2, 7, 6, 4, 3, 8]))
    );
    let band = ints(&[
        0, 3, 8, 2, 7, 6, 1, 6, 7, 5, 8, 0, 0, 3, 4, 4, 3, 8, 5, 2, 7, 1, 6, 0,
    ]);
    assert_eq!(diag_part_v3((-1, 2), 0.0, rl), (vec![2, 4, 3], band));
    let left_right = ints(&[
        3, 8, 0, 2, 7, 6, 1, 6, 7, 0, 5, 8, 3, 4, 0, 4, 3, 8, 5, 2, 7, 0, 1, 6,
    ]);
    assert_eq!(
        diag_part_v3((-1, 2), 0.0, "LEFT_RIGHT"),
        (vec![2, 4, 3], left_right)
    );
    let short = ints(&[5, 8, 9, 0, 1, 6, 5, 0]);
    assert_eq!(diag_part_v3((-2, -1), 0.0, rl), (vec![2, 2, 2], short));
    let padded = ints(&[9, 9, 4, 9, 3, 8, 2, 7, 6, 9, 9, 2, 9, 3, 4, 4, 3, 8]);
    assert_eq!(diag_part_v3((1, 3), 9.0, rl), (vec![2, 3, 3], padded));
}

#[test]
fn diag_v3_and_set_diag_v3_match_tensorflow_docs() {
    // Tridiagonal band per batch.
    let diags = ints(&[0, 8, 9, 1, 2, 3, 4, 5, 0, 0, 2, 3, 6, 7, 9, 9, 1, 0]);
    let mut g = Graph::new();
    let (d, td) = feed(&mut g, "d", DType::F64, &[2, 3, 3], &diags);
    let m = g
        .matrix_diag_v3(d, (-1, 1), -1, -1, 0.0, "RIGHT_LEFT")
        .unwrap();
    let want = ints(&[1, 8, 0, 4, 2, 9, 0, 5, 3, 6, 2, 0, 9, 7, 3, 0, 1, 9]);
    let out = run(&g, &[(d, td)], &[m]).remove(0);
    assert_eq!(out.shape(), &[2, 3, 3]);
    assert_eq!(out.to_f64_vec(), want);
    // A rectangular matrix with a subdiagonal, explicit sizes and padding.
    let mut g = Graph::new();
    let (d, td) = feed(&mut g, "d", DType::F32, &[2], &[1., 2.]);
    let m = g
        .matrix_diag_v3(d, (-1, -1), 3, 4, 0.0, "RIGHT_LEFT")
        .unwrap();
    let p = g
        .matrix_diag_v3(d, (-1, -1), 3, -1, 9.0, "RIGHT_LEFT")
        .unwrap();
    let out = run(&g, &[(d, td)], &[m, p]);
    assert_eq!(out[0].shape(), &[3, 4]);
    assert_eq!(
        out[0].to_f64_vec(),
        ints(&[0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0])
    );
    assert_eq!(out[1].shape(), &[3, 2]);
    assert_eq!(out[1].to_f64_vec(), ints(&[9, 9, 1, 9, 9, 2]));
    // MatrixSetDiagV3 of a band of the docs' 3 x 4 matrices of 7s.
    let mut g = Graph::new();
    let (x, tx) = feed(&mut g, "x", DType::F64, &[2, 3, 4], &[7.0; 24]);
    let dv = ints(&[
        0, 9, 1, 6, 5, 8, 1, 2, 3, 4, 5, 0, 0, 1, 2, 5, 6, 4, 6, 1, 2, 3, 4, 0,
    ]);
    let (d, td) = feed(&mut g, "d", DType::F64, &[2, 4, 3], &dv);
    let s = g.matrix_set_diag_v3(x, d, (-1, 2), "RIGHT_LEFT").unwrap();
    let want = ints(&[
        1, 6, 9, 7, 4, 2, 5, 1, 7, 5, 3, 8, 6, 5, 1, 7, 3, 1, 6, 2, 7, 4, 2, 4,
    ]);
    assert_eq!(run(&g, &[(x, tx), (d, td)], &[s])[0].to_f64_vec(), want);
}

#[test]
fn diag_v3_errors() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[3, 4]))
        .unwrap();
    let e = g
        .matrix_diag_part_v3(x, (2, 1), 0.0, "RIGHT_LEFT")
        .unwrap_err()
        .to_string();
    assert!(e.contains("k[0] = 2"), "{e}");
    let e = g
        .matrix_diag_part_v3(x, (0, 5), 0.0, "RIGHT_LEFT")
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside"), "{e}");
    let e = g
        .matrix_diag_part_v3(x, (0, 0), 0.0, "UP_DOWN")
        .unwrap_err()
        .to_string();
    assert!(e.contains("align"), "{e}");
    let d = g
        .placeholder("d", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    let e = g
        .matrix_diag_v3(d, (0, 2), -1, -1, 0.0, "RIGHT_LEFT")
        .unwrap_err()
        .to_string();
    assert!(e.contains("diagonals"), "{e}");
    // In the kernel: a set-diagonal of the wrong shape.
    let mut g = Graph::new();
    let x = loose(&mut g, "x", DType::F32);
    let d = loose(&mut g, "d", DType::F32);
    let s = g.matrix_set_diag_v3(x, d, (0, 1), "RIGHT_LEFT").unwrap();
    let feeds = [
        (x, t(&[3, 3], vec![0f32; 9])),
        (d, t(&[2, 2], vec![0f32; 4])),
    ];
    let e = run_err(&g, &feeds, s).to_string();
    assert!(
        e.contains("diagonal must have shape [2, 3]") && e.contains("MatrixSetDiagV3"),
        "{e}"
    );
}

// ---- MatrixInverse, MatrixDeterminant, Cholesky -----------------------------------------------

/// Well-conditioned matrices: random entries plus `c` on the diagonal.
fn conditioned(b: usize, n: usize, c: f64, seed: u64) -> Vec<f64> {
    let mut v = random(b * n * n, seed);
    for k in 0..b {
        for i in 0..n {
            v[k * n * n + i * n + i] += c;
        }
    }
    v
}

#[test]
fn inverse_times_matrix_is_identity() {
    for dtype in [DType::F64, DType::F32] {
        for adjoint in [false, true] {
            let (b, n) = (3, 4);
            let a = conditioned(b, n, 3.0, 11);
            let mut g = Graph::new();
            let (x, tx) = feed(&mut g, "x", dtype, &[b, n, n], &a);
            let inv = g.matrix_inverse(x, adjoint).unwrap();
            let got = run(&g, &[(x, tx)], &[inv])[0].to_f64_vec();
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            for k in 0..b {
                let am = mat(&a, n, n, k);
                let mut im = mat(&got, n, n, k);
                if adjoint {
                    im = (0..n).map(|i| (0..n).map(|j| im[j][i]).collect()).collect();
                }
                let p = matmul(&am, &im);
                for i in 0..n {
                    for j in 0..n {
                        let want = if i == j { 1.0 } else { 0.0 };
                        assert!((p[i][j] - want).abs() < tol, "{dtype} {adjoint}: {p:?}");
                    }
                }
            }
        }
    }
    // A known inverse.
    let mut g = Graph::new();
    let (x, tx) = feed(&mut g, "x", DType::F64, &[2, 2], &[4., 7., 2., 6.]);
    let inv = g.matrix_inverse(x, false).unwrap();
    let got = run(&g, &[(x, tx)], &[inv])[0].to_f64_vec();
    assert_close(
        &got,
        &[0.6, -0.7, -0.2, 0.4],
        1e-14,
        "inverse of [[4, 7], [2, 6]]",
    );
}

#[test]
fn singular_and_non_square_inverse_errors() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 2]))
        .unwrap();
    let inv = g.matrix_inverse(x, false).unwrap();
    let e = run_err(&g, &[(x, t(&[2, 2], vec![1f32, 2., 2., 4.]))], inv).to_string();
    assert!(
        e.contains("not invertible") && e.contains("MatrixInverse"),
        "{e}"
    );
    let y = g
        .placeholder("y", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    let e = g.matrix_inverse(y, false).unwrap_err().to_string();
    assert!(e.contains("square"), "{e}");
    let mut g = Graph::new();
    let y = loose(&mut g, "y", DType::F64);
    let inv = g.matrix_inverse(y, false).unwrap();
    let e = run_err(&g, &[(y, t(&[2, 3], vec![0f64; 6]))], inv).to_string();
    assert!(e.contains("square"), "{e}");
}

#[test]
fn determinants_of_known_matrices() {
    let cases: &[(&[usize], &[f64], &[f64])] = &[
        (&[2, 2], &[1., 2., 3., 4.], &[-2.0]),
        (&[3, 3], &[6., 1., 1., 4., -2., 5., 2., 8., 7.], &[-306.0]),
        // Rows swapped: the sign flips.
        (&[3, 3], &[0., 1., 0., 1., 0., 0., 0., 0., 1.], &[-1.0]),
        (&[2, 2, 2], &[1., 2., 2., 4., 3., 0., 0., 5.], &[0.0, 15.0]),
        (&[1, 1], &[-7.5], &[-7.5]),
        (&[0, 0], &[], &[1.0]),
    ];
    for &(shape, a, want) in cases {
        for dtype in [DType::F64, DType::F32] {
            let mut g = Graph::new();
            let (x, tx) = feed(&mut g, "x", dtype, shape, a);
            let d = g.matrix_determinant(x).unwrap();
            let got = run(&g, &[(x, tx)], &[d])[0].to_f64_vec();
            assert_close(&got, want, 1e-6, &format!("det {shape:?} {dtype}"));
        }
    }
}

#[test]
fn cholesky_reconstructs_its_input() {
    // The textbook example.
    let mut g = Graph::new();
    let a = [4., 12., -16., 12., 37., -43., -16., -43., 98.];
    let (x, tx) = feed(&mut g, "x", DType::F64, &[3, 3], &a);
    let l = g.cholesky(x).unwrap();
    let got = run(&g, &[(x, tx)], &[l])[0].to_f64_vec();
    assert_close(
        &got,
        &[2., 0., 0., 6., 1., 0., -8., 5., 3.],
        1e-14,
        "cholesky",
    );
    for dtype in [DType::F64, DType::F32] {
        let (b, n) = (2, 5);
        let r = random(b * n * n, 3);
        let mut a = vec![0.0; b * n * n];
        for k in 0..b {
            let rm = mat(&r, n, n, k);
            for i in 0..n {
                for j in 0..n {
                    let s: f64 = (0..n).map(|p| rm[i][p] * rm[j][p]).sum();
                    a[k * n * n + i * n + j] = s + if i == j { n as f64 } else { 0.0 };
                }
            }
        }
        let mut g = Graph::new();
        let (x, tx) = feed(&mut g, "x", dtype, &[b, n, n], &a);
        let l = g.cholesky(x).unwrap();
        let got = run(&g, &[(x, tx)], &[l])[0].to_f64_vec();
        for k in 0..b {
            let lm = mat(&got, n, n, k);
            let lt: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| lm[j][i]).collect()).collect();
            let want = &a[k * n * n..(k + 1) * n * n];
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert_close(&flat(&matmul(&lm, &lt)), want, tol, "L L^T");
            assert!(
                (0..n).all(|i| (i + 1..n).all(|j| lm[i][j] == 0.0)),
                "upper zeros"
            );
        }
    }
}

#[test]
fn cholesky_of_a_matrix_not_positive_definite_is_an_error() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[2, 2]))
        .unwrap();
    let l = g.cholesky(x).unwrap();
    let e = run_err(&g, &[(x, t(&[2, 2], vec![1.0, 2.0, 2.0, 1.0]))], l).to_string();
    assert!(
        e.contains("Cholesky decomposition was not successful"),
        "{e}"
    );
    assert!(e.contains(&g.node(l.node).name), "names the node: {e}");
}

// ---- MatrixTriangularSolve --------------------------------------------------------------------

#[test]
fn triangular_solve_all_flags_and_broadcasting() {
    let (m, k) = (4, 3);
    let a = conditioned(2, m, 4.0, 5);
    let b = random(3 * m * k, 6);
    for dtype in [DType::F64, DType::F32] {
        for lower in [true, false] {
            for adjoint in [false, true] {
                let mut g = Graph::new();
                let (pa, ta) = feed(&mut g, "a", dtype, &[2, 1, m, m], &a);
                let (pb, tb) = feed(&mut g, "b", dtype, &[3, m, k], &b);
                let x = g.matrix_triangular_solve(pa, pb, lower, adjoint).unwrap();
                assert_eq!(g.shape(x), &Shape::known(&[2, 3, m, k]));
                let got = run(&g, &[(pa, ta), (pb, tb)], &[x])[0].to_f64_vec();
                for i in 0..2 {
                    // The triangle the kernel reads, adjointed when asked.
                    let am = mat(&a, m, m, i);
                    let tri: Vec<Vec<f64>> = (0..m)
                        .map(|r| {
                            (0..m)
                                .map(|c| {
                                    let keep = if lower { c <= r } else { c >= r };
                                    if keep {
                                        am[r][c]
                                    } else {
                                        0.0
                                    }
                                })
                                .collect()
                        })
                        .collect();
                    let op: Vec<Vec<f64>> = if adjoint {
                        (0..m)
                            .map(|r| (0..m).map(|c| tri[c][r]).collect())
                            .collect()
                    } else {
                        tri
                    };
                    for j in 0..3 {
                        let xm = mat(&got, m, k, i * 3 + j);
                        let back = flat(&matmul(&op, &xm));
                        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
                        let want = &b[j * m * k..(j + 1) * m * k];
                        assert_close(&back, want, tol, &format!("{lower} {adjoint} {dtype}"));
                    }
                }
            }
        }
    }
}

#[test]
fn triangular_solve_errors() {
    let mut g = Graph::new();
    let a = g
        .placeholder("a", DType::F32, Shape::known(&[3, 3]))
        .unwrap();
    let b = g
        .placeholder("b", DType::F32, Shape::known(&[4, 2]))
        .unwrap();
    let e = g
        .matrix_triangular_solve(a, b, true, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("number of rows"), "{e}");
    let mut g = Graph::new();
    let a = loose(&mut g, "a", DType::F32);
    let b = loose(&mut g, "b", DType::F32);
    let x = g.matrix_triangular_solve(a, b, true, false).unwrap();
    let feeds = [
        (a, t(&[2, 3, 3], vec![1f32; 18])),
        (b, t(&[3, 3, 1], vec![1f32; 9])),
    ];
    let e = run_err(&g, &feeds, x).to_string();
    assert!(
        e.contains("do not broadcast") && e.contains("MatrixTriangularSolve"),
        "{e}"
    );
}

// ---- Einsum -----------------------------------------------------------------------------------

/// Einsum by explicit loops over every label assignment (letters only; output labels may
/// repeat, as the diagonal embedding).
fn naive_einsum(eq: &str, ops: &[(&[usize], &[f64])]) -> (Vec<usize>, Vec<f64>) {
    let (ins, out) = match eq.split_once("->") {
        Some((i, o)) => (i, o.to_string()),
        None => {
            let mut once: Vec<char> = eq
                .chars()
                .filter(|c| c.is_alphabetic() && eq.matches(*c).count() == 1)
                .collect();
            once.sort();
            (eq, once.into_iter().collect())
        }
    };
    let subs: Vec<Vec<char>> = ins.split(',').map(|s| s.chars().collect()).collect();
    let mut labels: Vec<char> = Vec::new();
    let mut dims = std::collections::HashMap::new();
    for (s, (shape, _)) in subs.iter().zip(ops) {
        for (c, &d) in s.iter().zip(shape.iter()) {
            if !labels.contains(c) {
                labels.push(*c);
            }
            dims.insert(*c, d);
        }
    }
    let out: Vec<char> = out.chars().collect();
    let out_shape: Vec<usize> = out.iter().map(|c| dims[c]).collect();
    let mut result = vec![0.0; out_shape.iter().product()];
    let total: usize = labels.iter().map(|c| dims[c]).product();
    for mut f in 0..total {
        let mut val = std::collections::HashMap::new();
        for c in labels.iter().rev() {
            val.insert(*c, f % dims[c]);
            f /= dims[c];
        }
        let index = |s: &[char], shape: &[usize]| {
            s.iter().zip(shape).fold(0, |acc, (c, &d)| acc * d + val[c])
        };
        let p: f64 = subs
            .iter()
            .zip(ops)
            .map(|(s, (shape, v))| v[index(s, shape)])
            .product();
        result[index(&out, &out_shape)] += p;
    }
    // Repeated output labels: only the diagonal holds values (the loop above put each there).
    (out_shape, result)
}

fn einsum_run(eq: &str, ops: &[(&[usize], &[f64])], dtype: DType) -> Tensor {
    let mut g = Graph::new();
    let mut feeds = Vec::new();
    for (i, (shape, v)) in ops.iter().enumerate() {
        feeds.push(feed(&mut g, &format!("x{i}"), dtype, shape, v));
    }
    let xs: Vec<Output> = feeds.iter().map(|f| f.0).collect();
    let y = g.einsum(&xs, eq).unwrap();
    let out = run(&g, &feeds, &[y]).remove(0);
    assert_eq!(
        g.shape(y).to_known().as_deref(),
        Some(out.shape()),
        "{eq}: static shape"
    );
    out
}

#[test]
fn einsum_matches_explicit_loops() {
    let cases: &[(&str, &[&[usize]])] = &[
        ("ij,jk->ik", &[&[2, 3], &[3, 4]]),
        ("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]]),
        ("ii->i", &[&[3, 3]]),
        ("ii", &[&[4, 4]]),
        ("ij->ji", &[&[2, 5]]),
        ("i,j->ij", &[&[3], &[4]]),
        ("ijk->", &[&[2, 3, 4]]),
        ("ij,jk", &[&[2, 3], &[3, 2]]),
        ("ij,ij->ij", &[&[3, 4], &[3, 4]]),
        ("ij,ij->", &[&[3, 4], &[3, 4]]),
        ("i,i->", &[&[5], &[5]]),
        ("ijk,jil->kl", &[&[2, 3, 4], &[3, 2, 5]]),
        ("abc,cd->da", &[&[2, 3, 4], &[4, 3]]),
        ("iij,jk->ik", &[&[3, 3, 2], &[2, 4]]),
        ("bn,anm,bm->ba", &[&[2, 3], &[4, 3, 5], &[2, 5]]),
        ("i->ii", &[&[3]]),
        ("ab,cd->abcd", &[&[2, 1], &[3, 2]]),
        ("ijj->ji", &[&[2, 3, 3]]),
        ("ij,kj->ikj", &[&[2, 3], &[4, 3]]),
        ("AbC,Cb->A", &[&[2, 3, 4], &[4, 3]]),
    ];
    for &(eq, shapes) in cases {
        if shapes.len() > 2 {
            // TensorFlow's op takes one or two operands.
            let mut g = Graph::new();
            let xs: Vec<Output> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    g.placeholder(&format!("x{i}"), DType::F32, Shape::known(s))
                        .unwrap()
                })
                .collect();
            let e = g.einsum(&xs, eq).unwrap_err().to_string();
            assert!(e.contains("1 or 2"), "{e}");
            continue;
        }
        let vals: Vec<Vec<f64>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| random(s.iter().product(), 100 + i as u64))
            .collect();
        let ops: Vec<(&[usize], &[f64])> = shapes
            .iter()
            .zip(&vals)
            .map(|(s, v)| (*s, v.as_slice()))
            .collect();
        let (shape, want) = naive_einsum(eq, &ops);
        for dtype in [DType::F64, DType::F32] {
            let out = einsum_run(eq, &ops, dtype);
            assert_eq!(out.shape(), shape.as_slice(), "{eq}");
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert_close(&out.to_f64_vec(), &want, tol, &format!("{eq} {dtype}"));
        }
    }
    // Integers.
    let out = einsum_run(
        "ij,jk->ik",
        &[(&[2, 2], &[1., 2., 3., 4.]), (&[2, 2], &[5., 6., 7., 8.])],
        DType::I32,
    );
    assert_eq!(out.to_f64_vec(), vec![19., 22., 43., 50.]);
}

#[test]
fn einsum_ellipsis_broadcasts() {
    // '...ij,...jk->...ik' with batch dims [2, 1] and [3]: a batched product over [2, 3].
    let (sa, sb) = ([2usize, 1, 2, 3], [3usize, 3, 2]);
    let (a, b) = (random(12, 1), random(18, 2));
    let out = einsum_run("...ij,...jk->...ik", &[(&sa, &a), (&sb, &b)], DType::F64);
    assert_eq!(out.shape(), &[2, 3, 2, 2]);
    let got = out.to_f64_vec();
    for p in 0..2 {
        for q in 0..3 {
            let want = flat(&matmul(&mat(&a, 2, 3, p), &mat(&b, 3, 2, q)));
            let at = (p * 3 + q) * 4;
            assert_close(&got[at..at + 4], &want, 1e-12, "...ij,...jk->...ik");
        }
    }
    // Implicit output: '...' first, then the labels used once.
    let x = random(2 * 3 * 4, 3);
    let out = einsum_run("...ij", &[(&[2, 3, 4], &x)], DType::F64);
    assert_eq!(out.to_f64_vec(), x);
    // Transposes of the innermost matrices; an operand without '...'.
    let out = einsum_run("...ij->...ji", &[(&[2, 3, 4], &x)], DType::F64);
    let want: Vec<f64> = (0..24)
        .map(|f| {
            let (bb, j, i) = (f / 12, (f / 3) % 4, f % 3);
            x[bb * 12 + i * 4 + j]
        })
        .collect();
    assert_eq!(out.to_f64_vec(), want);
    let w = random(4 * 2, 4);
    let out = einsum_run(
        "bij,jk->bik",
        &[(&[2, 3, 4], &x), (&[4, 2], &w)],
        DType::F64,
    );
    let out2 = einsum_run(
        "...j,jk->...k",
        &[(&[2, 3, 4], &x), (&[4, 2], &w)],
        DType::F64,
    );
    assert_close(
        &out2.to_f64_vec(),
        &out.to_f64_vec(),
        1e-12,
        "...j,jk->...k",
    );
    // Empty dims.
    let out = einsum_run("ij,jk->ik", &[(&[2, 0], &[]), (&[0, 3], &[])], DType::F64);
    assert_eq!(out.to_f64_vec(), vec![0.0; 6]);
}

#[test]
fn einsum_errors() {
    let mut g = Graph::new();
    let a = g
        .placeholder("a", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    let b = g
        .placeholder("b", DType::F32, Shape::known(&[4, 5]))
        .unwrap();
    for (eq, needle) in [
        ("ij,jk->ik", "label 'j'"),
        ("ij,jk->iz", "appears in no input"),
        ("ij,j?->ik", "invalid character"),
        ("ij->ij", "input subscripts"),
        ("i,jk->ik", "rank 2"),
        ("ij,jk->i->k", "more than one"),
    ] {
        let e = g.einsum(&[a, b], eq).unwrap_err().to_string();
        assert!(e.contains(needle), "{eq}: {e}");
    }
    // Unknown shapes: the kernel checks.
    let mut g = Graph::new();
    let a = loose(&mut g, "a", DType::F32);
    let b = loose(&mut g, "b", DType::F32);
    let y = g.einsum(&[a, b], "ij,jk->ik").unwrap();
    assert_eq!(g.shape(y), &Shape::new(vec![Dim::Unknown, Dim::Unknown]));
    let feeds = [
        (a, t(&[2, 3], vec![0f32; 6])),
        (b, t(&[4, 5], vec![0f32; 20])),
    ];
    let e = run_err(&g, &feeds, y).to_string();
    assert!(e.contains("label 'j'") && e.contains("Einsum"), "{e}");
    let feeds = [
        (a, t(&[2, 3, 1], vec![0f32; 6])),
        (b, t(&[3, 5], vec![0f32; 15])),
    ];
    let e = run_err(&g, &feeds, y).to_string();
    assert!(e.contains("rank 3"), "{e}");
    let mut g = Graph::new();
    let a = loose(&mut g, "a", DType::F32);
    let b = loose(&mut g, "b", DType::F32);
    let y = g.einsum(&[a, b], "...i,...i->...").unwrap();
    let feeds = [
        (a, t(&[2, 3], vec![0f32; 6])),
        (b, t(&[4, 3], vec![0f32; 12])),
    ];
    let e = run_err(&g, &feeds, y).to_string();
    assert!(e.contains("do not broadcast"), "{e}");
}
