//! Reduction and matrix-product kernels, checked against plain-Rust references.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};

// ---- helpers ----------------------------------------------------------------------------------

use crate::common;
use common::*;

/// Reference reduction of a row-major tensor over `axes` (normalized).
fn ref_reduce(
    x: &[f64],
    dims: &[usize],
    axes: &[usize],
    keep: bool,
    f: impl Fn(&[f64]) -> f64,
) -> (Vec<usize>, Vec<f64>) {
    let rank = dims.len();
    let mut strides = vec![1; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let out_full: Vec<usize> = (0..rank)
        .map(|i| if axes.contains(&i) { 1 } else { dims[i] })
        .collect();
    let n_out: usize = out_full.iter().product();
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); n_out];
    for (flat, &v) in x.iter().enumerate() {
        let mut o = 0;
        for d in 0..rank {
            let idx = flat / strides[d] % dims[d];
            let idx = if axes.contains(&d) { 0 } else { idx };
            o = o * out_full[d] + idx;
        }
        groups[o].push(v);
    }
    let shape = (0..rank)
        .filter(|i| keep || !axes.contains(i))
        .map(|i| out_full[i])
        .collect();
    (shape, groups.iter().map(|g| f(g)).collect())
}

type Builder = fn(&mut Graph, Output, Option<&[i64]>, bool) -> tfr_graph::Result<Output>;

type Reference = fn(&[f64]) -> f64;

fn float_reductions() -> Vec<(&'static str, Builder, Reference)> {
    vec![
        ("Sum", Graph::reduce_sum, |g| g.iter().sum()),
        ("Mean", Graph::reduce_mean, |g| {
            g.iter().sum::<f64>() / g.len() as f64
        }),
        ("Max", Graph::reduce_max, |g| {
            g.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        }),
        ("Min", Graph::reduce_min, |g| {
            g.iter().copied().fold(f64::INFINITY, f64::min)
        }),
        ("Prod", Graph::reduce_prod, |g| g.iter().product()),
        ("LogSumExp", Graph::reduce_logsumexp, |g| {
            g.iter().map(|v| v.exp()).sum::<f64>().ln()
        }),
    ]
}

// ---- reductions -------------------------------------------------------------------------------

#[test]
fn every_reduction_over_every_axis_subset_matches_reference() {
    let dims = [2usize, 3, 1, 4];
    let x: Vec<f64> = random(24, 1).iter().map(|v| v * 2.0).collect();
    let mut g = Graph::new();
    let xp = g.placeholder("x", DType::F64, Shape::known(&dims)).unwrap();
    let mut cases = Vec::new();
    for (name, build, f) in float_reductions() {
        for mask in 0u32..16 {
            let axes: Vec<usize> = (0..4).filter(|a| mask & (1 << a) != 0).collect();
            if axes.is_empty() {
                continue;
            }
            // Name half of the axes negatively and repeat one: both must be ignored.
            let mut named: Vec<i64> = axes
                .iter()
                .map(|&a| if a % 2 == 1 { a as i64 - 4 } else { a as i64 })
                .collect();
            named.push(axes[0] as i64);
            for keep in [false, true] {
                let y = build(&mut g, xp, Some(&named), keep).unwrap();
                cases.push((name, axes.clone(), keep, y, f));
            }
        }
    }
    let fetches: Vec<Output> = cases.iter().map(|c| c.3).collect();
    let out = run(&g, &[(xp, t(&dims, x.clone()))], &fetches);
    for ((name, axes, keep, _, f), got) in cases.iter().zip(&out) {
        let (shape, want) = ref_reduce(&x, &dims, axes, *keep, f);
        let what = format!("{name} over {axes:?} keep_dims={keep}");
        assert_eq!(got.shape(), &shape[..], "{what}");
        assert_close(&got.to_f64_vec(), &want, 1e-12, &what);
    }
}

#[test]
fn all_axes_none_and_keep_dims() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let s = g.reduce_sum(x, None, false).unwrap();
    let sk = g.reduce_sum(x, None, true).unwrap();
    let m = g.reduce_mean(x, Some(&[-1]), true).unwrap();
    let mx = g.reduce_max(x, Some(&[0]), false).unwrap();
    let out = run(&g, &[], &[s, sk, m, mx]);
    assert_eq!(out[0].shape(), &[] as &[usize]);
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 21.0);
    assert_eq!(out[1].shape(), &[1, 1]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), vec![21.0]);
    assert_eq!(out[2].shape(), &[2, 1]);
    assert_eq!(out[2].to_vec::<f32>().unwrap(), vec![2.0, 5.0]);
    assert_eq!(out[3].to_vec::<f32>().unwrap(), vec![4.0, 5.0, 6.0]);
}

#[test]
fn empty_axis_list_returns_the_input() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::I32, Shape::known(&[2, 2]))
        .unwrap();
    let y = g.reduce_sum(x, Some(&[]), true).unwrap();
    let z = g.reduce_max(x, Some(&[]), false).unwrap();
    let out = run(&g, &[(x, t(&[2, 2], vec![1, 2, 3, 4]))], &[y, z]);
    for o in &out {
        assert_eq!(o.shape(), &[2, 2]);
        assert_eq!(o.to_vec::<i32>().unwrap(), vec![1, 2, 3, 4]);
    }
}

#[test]
fn integer_reductions_wrap_and_mean_truncates() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 3], vec![1i32, 2, 4, -1, -2, -4])
        .unwrap();
    let sum = g.reduce_sum(x, Some(&[1]), false).unwrap();
    let mean = g.reduce_mean(x, Some(&[1]), false).unwrap();
    let mean0 = g.reduce_mean(x, Some(&[0]), false).unwrap();
    let prod = g.reduce_prod(x, Some(&[1]), false).unwrap();
    let max = g.reduce_max(x, None, false).unwrap();
    let min = g.reduce_min(x, None, false).unwrap();
    let bytes = g.constant_from(&[300], vec![255u8; 300]).unwrap();
    let byte_mean = g.reduce_mean(bytes, None, false).unwrap();
    let byte_sum = g.reduce_sum(bytes, None, false).unwrap();
    let big = g.constant_from(&[2], vec![i64::MAX, 1]).unwrap();
    let big_sum = g.reduce_sum(big, None, false).unwrap();
    let out = run(
        &g,
        &[],
        &[
            sum, mean, mean0, prod, max, min, byte_mean, byte_sum, big_sum,
        ],
    );
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![7, -7]);
    // 7 / 3 and -7 / 3 truncate toward zero.
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![2, -2]);
    assert_eq!(out[2].to_vec::<i32>().unwrap(), vec![0, 0, 0]);
    assert_eq!(out[3].to_vec::<i32>().unwrap(), vec![8, -8]);
    assert_eq!(out[4].scalar_value::<i32>().unwrap(), 4);
    assert_eq!(out[5].scalar_value::<i32>().unwrap(), -4);
    // The mean does not wrap (it accumulates wider); the sum wraps like TensorFlow's.
    assert_eq!(out[6].scalar_value::<u8>().unwrap(), 255);
    assert_eq!(
        out[7].scalar_value::<u8>().unwrap(),
        (255u32 * 300 % 256) as u8
    );
    assert_eq!(out[8].scalar_value::<i64>().unwrap(), i64::MIN);
}

#[test]
fn reductions_of_empty_dims_give_identities() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let xi = g.placeholder("xi", DType::I32, Shape::unknown()).unwrap();
    let xb = g.placeholder("xb", DType::Bool, Shape::unknown()).unwrap();
    let f = [
        g.reduce_sum(x, Some(&[0]), false).unwrap(),
        g.reduce_prod(x, Some(&[0]), false).unwrap(),
        g.reduce_max(x, Some(&[0]), false).unwrap(),
        g.reduce_min(x, Some(&[0]), false).unwrap(),
        g.reduce_mean(x, Some(&[0]), false).unwrap(),
        g.reduce_logsumexp(x, Some(&[0]), false).unwrap(),
        g.reduce_sum(x, Some(&[1]), true).unwrap(),
        g.reduce_max(xi, Some(&[0]), false).unwrap(),
        g.reduce_min(xi, Some(&[0]), false).unwrap(),
        g.reduce_mean(xi, Some(&[0]), false).unwrap(),
        g.reduce_all(xb, None, false).unwrap(),
        g.reduce_any(xb, None, false).unwrap(),
    ];
    let out = run(
        &g,
        &[
            (x, t::<f32>(&[0, 2], vec![])),
            (xi, t::<i32>(&[0, 2], vec![])),
            (xb, t::<bool>(&[0], vec![])),
        ],
        &f,
    );
    let v = |i: usize| out[i].to_vec::<f32>().unwrap();
    assert_eq!(v(0), vec![0.0, 0.0]);
    assert_eq!(v(1), vec![1.0, 1.0]);
    assert_eq!(v(2), vec![f32::NEG_INFINITY; 2]);
    assert_eq!(v(3), vec![f32::INFINITY; 2]);
    assert!(v(4).iter().all(|m| m.is_nan()), "{:?}", v(4));
    assert_eq!(v(5), vec![f32::NEG_INFINITY; 2]);
    assert_eq!(out[6].shape(), &[0, 1]);
    assert_eq!(out[7].to_vec::<i32>().unwrap(), vec![i32::MIN; 2]);
    assert_eq!(out[8].to_vec::<i32>().unwrap(), vec![i32::MAX; 2]);
    assert_eq!(out[9].to_vec::<i32>().unwrap(), vec![0, 0]);
    assert!(out[10].scalar_value::<bool>().unwrap());
    assert!(!out[11].scalar_value::<bool>().unwrap());
}

#[test]
fn all_and_any() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 3], vec![true, true, false, false, false, false])
        .unwrap();
    let all1 = g.reduce_all(x, Some(&[1]), false).unwrap();
    let any1 = g.reduce_any(x, Some(&[-1]), true).unwrap();
    let all0 = g.reduce_all(x, Some(&[0]), false).unwrap();
    let any0 = g.reduce_any(x, Some(&[0]), false).unwrap();
    let out = run(&g, &[], &[all1, any1, all0, any0]);
    assert_eq!(out[0].to_vec::<bool>().unwrap(), vec![false, false]);
    assert_eq!(out[1].shape(), &[2, 1]);
    assert_eq!(out[1].to_vec::<bool>().unwrap(), vec![true, false]);
    assert_eq!(out[2].to_vec::<bool>().unwrap(), vec![false, false, false]);
    assert_eq!(out[3].to_vec::<bool>().unwrap(), vec![true, true, false]);
}

#[test]
fn logsumexp_is_stable() {
    let mut g = Graph::new();
    let x = g
        .constant_from(
            &[3, 2],
            vec![
                1000.0f32,
                1000.0,
                -1000.0,
                -1000.0,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
            ],
        )
        .unwrap();
    let y = g.reduce_logsumexp(x, Some(&[1]), false).unwrap();
    let xd = g
        .constant_from(&[4], vec![800.0f64, 0.0, -5.0, 799.0])
        .unwrap();
    let yd = g.reduce_logsumexp(xd, None, true).unwrap();
    let out = run(&g, &[], &[y, yd]);
    let v = out[0].to_vec::<f32>().unwrap();
    let ln2 = std::f32::consts::LN_2;
    assert!((v[0] - (1000.0 + ln2)).abs() < 1e-3, "{v:?}");
    assert!((v[1] - (-1000.0 + ln2)).abs() < 1e-3, "{v:?}");
    assert_eq!(v[2], f32::NEG_INFINITY);
    assert_eq!(out[1].shape(), &[1]);
    let want = 800.0 + (1.0 + (-800.0f64).exp() + (-805.0f64).exp() + (-1.0f64).exp()).ln();
    assert!((out[1].to_vec::<f64>().unwrap()[0] - want).abs() < 1e-12);
}

#[test]
fn large_reductions_run_in_parallel_and_agree() {
    let (rows, cols) = (300usize, 211usize);
    let x = random(rows * cols, 7);
    let mut g = Graph::new();
    let xp = g
        .placeholder("x", DType::F64, Shape::known(&[rows, cols]))
        .unwrap();
    let s0 = g.reduce_sum(xp, Some(&[0]), false).unwrap();
    let s1 = g.reduce_sum(xp, Some(&[1]), false).unwrap();
    let m1 = g.reduce_mean(xp, Some(&[1]), false).unwrap();
    let all = g.reduce_sum(xp, None, false).unwrap();
    let mx = g.reduce_max(xp, Some(&[0]), false).unwrap();
    let lse = g.reduce_logsumexp(xp, Some(&[1]), false).unwrap();
    let out = run(
        &g,
        &[(xp, t(&[rows, cols], x.clone()))],
        &[s0, s1, m1, all, mx, lse],
    );
    let dims = [rows, cols];
    let sum = |g: &[f64]| g.iter().sum::<f64>();
    assert_close(
        &out[0].to_f64_vec(),
        &ref_reduce(&x, &dims, &[0], false, sum).1,
        1e-9,
        "sum0",
    );
    assert_close(
        &out[1].to_f64_vec(),
        &ref_reduce(&x, &dims, &[1], false, sum).1,
        1e-9,
        "sum1",
    );
    let mean = |g: &[f64]| g.iter().sum::<f64>() / g.len() as f64;
    assert_close(
        &out[2].to_f64_vec(),
        &ref_reduce(&x, &dims, &[1], false, mean).1,
        1e-9,
        "mean1",
    );
    assert_close(&out[3].to_f64_vec(), &[x.iter().sum()], 1e-9, "sum all");
    let max = |g: &[f64]| g.iter().copied().fold(f64::MIN, f64::max);
    assert_close(
        &out[4].to_f64_vec(),
        &ref_reduce(&x, &dims, &[0], false, max).1,
        0.0,
        "max0",
    );
    let lse_ref = |g: &[f64]| g.iter().map(|v| v.exp()).sum::<f64>().ln();
    assert_close(
        &out[5].to_f64_vec(),
        &ref_reduce(&x, &dims, &[1], false, lse_ref).1,
        1e-12,
        "lse",
    );

    // A long f32 sum of ones is exact when partial sums stay small.
    let mut g = Graph::new();
    let ones = g.placeholder("ones", DType::F32, Shape::unknown()).unwrap();
    let s = g.reduce_sum(ones, None, false).unwrap();
    let n = 1 << 21;
    let out = run(&g, &[(ones, t(&[n], vec![1.0f32; n]))], &[s]);
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), n as f32);
}

#[test]
fn non_contiguous_axes_on_a_large_input() {
    let dims = [8usize, 40, 6, 30];
    let x = random(dims.iter().product(), 11);
    let mut g = Graph::new();
    let xp = g.placeholder("x", DType::F64, Shape::known(&dims)).unwrap();
    let y = g.reduce_sum(xp, Some(&[0, 2]), true).unwrap();
    let z = g.reduce_max(xp, Some(&[1, 3]), false).unwrap();
    let out = run(&g, &[(xp, t(&dims, x.clone()))], &[y, z]);
    let (shape, want) = ref_reduce(&x, &dims, &[0, 2], true, |g| g.iter().sum());
    assert_eq!(out[0].shape(), &shape[..]);
    assert_close(&out[0].to_f64_vec(), &want, 1e-9, "sum over [0, 2]");
    let (shape, want) = ref_reduce(&x, &dims, &[1, 3], false, |g| {
        g.iter().copied().fold(f64::MIN, f64::max)
    });
    assert_eq!(out[1].shape(), &shape[..]);
    assert_close(&out[1].to_f64_vec(), &want, 0.0, "max over [1, 3]");
}

#[test]
fn argmax_and_argmin_take_the_first_of_ties() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 4], vec![3.0f32, 7.0, 7.0, 1.0, 5.0, 5.0, 2.0, 2.0])
        .unwrap();
    let am1 = g.argmax(x, 1).unwrap();
    let an1 = g.argmin(x, -1).unwrap();
    let am0 = g.argmax(x, 0).unwrap();
    let axis = g.scalar(0i32).unwrap();
    let an0 = g
        .build("ArgMin")
        .input(x)
        .input(axis)
        .attr("output_type", DType::I32)
        .finish1()
        .unwrap();
    let xi = g.constant_from(&[3], vec![4i64, 9, 9]).unwrap();
    let ami = g.argmax(xi, 0).unwrap();
    let out = run(&g, &[], &[am1, an1, am0, an0, ami]);
    assert_eq!(out[0].dtype(), DType::I64);
    assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![1, 0]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), vec![3, 2]);
    assert_eq!(out[2].to_vec::<i64>().unwrap(), vec![1, 0, 0, 1]);
    assert_eq!(out[3].dtype(), DType::I32);
    assert_eq!(out[3].to_vec::<i32>().unwrap(), vec![0, 1, 1, 0]);
    assert_eq!(out[4].scalar_value::<i64>().unwrap(), 1);
}

#[test]
fn large_argmax_matches_reference() {
    let (rows, cols) = (400usize, 97usize);
    let x: Vec<f32> = random(rows * cols, 3).iter().map(|&v| v as f32).collect();
    let mut g = Graph::new();
    let xp = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let a1 = g.argmax(xp, 1).unwrap();
    let a0 = g.argmin(xp, 0).unwrap();
    let out = run(&g, &[(xp, t(&[rows, cols], x.clone()))], &[a1, a0]);
    let want1: Vec<i64> = (0..rows)
        .map(|r| {
            let row = &x[r * cols..(r + 1) * cols];
            (0..cols).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as i64
        })
        .collect();
    let want0: Vec<i64> = (0..cols)
        .map(|c| {
            (0..rows).fold(0, |b, i| {
                if x[i * cols + c] < x[b * cols + c] {
                    i
                } else {
                    b
                }
            }) as i64
        })
        .collect();
    assert_eq!(out[0].to_vec::<i64>().unwrap(), want1);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), want0);
}

#[test]
fn reduction_errors_name_the_node_and_the_expectation() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    let axis = g.placeholder("axis", DType::I32, Shape::unknown()).unwrap();
    let s = g
        .build("Sum")
        .name("my_sum")
        .input(x)
        .input(axis)
        .attr("keep_dims", false)
        .finish1()
        .unwrap();
    let xv = t(&[2, 3], vec![0.0f32; 6]);
    let e = run_err(&g, &[(x, xv.clone()), (axis, t(&[1], vec![2]))], s);
    let msg = e.to_string();
    assert!(
        msg.contains("`my_sum`") && msg.contains("axis 2") && msg.contains("rank 2"),
        "{msg}"
    );
    assert!(msg.contains("[-2, 2)"), "{msg}");
    let e = run_err(&g, &[(x, xv.clone()), (axis, t(&[1], vec![-3]))], s);
    assert!(e.to_string().contains("axis -3"), "{e}");
    let e = run_err(&g, &[(x, xv.clone()), (axis, t(&[1, 1], vec![0]))], s);
    assert!(
        e.to_string().contains("`my_sum`") && e.to_string().contains("scalar or vector"),
        "{e}"
    );
    // Valid fed axes work, including a scalar axis.
    let out = session(&g)
        .run(
            &[
                (x, t(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])),
                (axis, Tensor::scalar(-1i32)),
            ],
            &[s],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![6.0, 15.0]);

    let xe = g.placeholder("xe", DType::F32, Shape::unknown()).unwrap();
    let dim = g.placeholder("dim", DType::I64, Shape::unknown()).unwrap();
    let am = g
        .build("ArgMax")
        .name("am")
        .input(xe)
        .input(dim)
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[(xe, t::<f32>(&[2, 0], vec![])), (dim, Tensor::scalar(1i64))],
        am,
    );
    assert!(
        e.to_string().contains("`am`") && e.to_string().contains("axis 1 is empty"),
        "{e}"
    );
    let e = run_err(
        &g,
        &[
            (xe, t(&[2], vec![1.0f32, 2.0])),
            (dim, Tensor::scalar(1i64)),
        ],
        am,
    );
    assert!(
        e.to_string().contains("`am`") && e.to_string().contains("rank 1"),
        "{e}"
    );
    let e = run_err(
        &g,
        &[
            (xe, t(&[2], vec![1.0f32, 2.0])),
            (dim, t(&[2], vec![0i64, 0])),
        ],
        am,
    );
    assert!(e.to_string().contains("must be a scalar"), "{e}");
    let e = run_err(
        &g,
        &[(xe, Tensor::scalar(1.0f32)), (dim, Tensor::scalar(0i64))],
        am,
    );
    assert!(e.to_string().contains("rank >= 1"), "{e}");
}

// ---- matrix products --------------------------------------------------------------------------

/// Reference product of row-major `a` (m x k) and `b` (k x n).
fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

fn transpose(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = x[i * cols + j];
        }
    }
    out
}

#[test]
fn matmul_small_by_hand() {
    let mut g = Graph::new();
    let a = g
        .constant_from(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let b = g
        .constant_from(&[3, 2], vec![7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0])
        .unwrap();
    let c = g.matmul(a, b).unwrap();
    // a^T (3x2) @ a (2x3) = 3x3
    let d = g.matmul_t(a, a, true, false).unwrap();
    let ai = g.constant_from(&[2, 2], vec![1i32, 2, 3, 4]).unwrap();
    let ci = g.matmul_t(ai, ai, false, true).unwrap();
    let out = run(&g, &[], &[c, d, ci]);
    assert_eq!(out[0].shape(), &[2, 2]);
    assert_eq!(
        out[0].to_vec::<f32>().unwrap(),
        vec![58.0, 64.0, 139.0, 154.0]
    );
    assert_eq!(
        out[1].to_vec::<f32>().unwrap(),
        vec![17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]
    );
    assert_eq!(out[2].to_vec::<i32>().unwrap(), vec![5, 11, 11, 25]);
}

#[test]
fn matmul_matches_naive_loop_with_every_transpose() {
    let (m, k, n) = (37usize, 53usize, 29usize);
    let a = random(m * k, 21);
    let b = random(k * n, 22);
    let want = naive(&a, &b, m, k, n);
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        let mut fetches = Vec::new();
        let mut feeds = Vec::new();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (ad, ash) = if ta {
                (transpose(&a, m, k), [k, m])
            } else {
                (a.clone(), [m, k])
            };
            let (bd, bsh) = if tb {
                (transpose(&b, k, n), [n, k])
            } else {
                (b.clone(), [k, n])
            };
            let pa = g
                .placeholder(&format!("a{ta}{tb}"), dtype, Shape::known(&ash))
                .unwrap();
            let pb = g
                .placeholder(&format!("b{ta}{tb}"), dtype, Shape::known(&bsh))
                .unwrap();
            let to_tensor = |d: Vec<f64>, s: &[usize]| match dtype {
                DType::F32 => t(s, d.iter().map(|&v| v as f32).collect()),
                _ => t(s, d),
            };
            feeds.push((pa, to_tensor(ad, &ash)));
            feeds.push((pb, to_tensor(bd, &bsh)));
            fetches.push(g.matmul_t(pa, pb, ta, tb).unwrap());
        }
        let out = run(&g, &feeds, &fetches);
        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
        for (o, case) in out.iter().zip(["nn", "tn", "nt", "tt"]) {
            assert_eq!(o.shape(), &[m, n]);
            assert_close(&o.to_f64_vec(), &want, tol, &format!("{dtype} {case}"));
        }
    }
}

#[test]
fn large_matmul_runs_multithreaded_and_matches() {
    let (m, k, n) = (96usize, 80usize, 72usize);
    let a = random(m * k, 5);
    let b = random(k * n, 6);
    let mut g = Graph::new();
    let pa = g
        .placeholder("a", DType::F64, Shape::known(&[m, k]))
        .unwrap();
    let pb = g
        .placeholder("b", DType::F64, Shape::known(&[n, k]))
        .unwrap();
    let c = g.matmul_t(pa, pb, false, true).unwrap();
    let out = run(
        &g,
        &[
            (pa, t(&[m, k], a.clone())),
            (pb, t(&[n, k], transpose(&b, k, n))),
        ],
        &[c],
    );
    assert_close(
        &out[0].to_f64_vec(),
        &naive(&a, &b, m, k, n),
        1e-12,
        "96x80x72",
    );
}

#[test]
fn integer_matmul_matches_naive() {
    let (m, k, n) = (5usize, 7usize, 3usize);
    let a: Vec<i64> = (0..m * k).map(|i| (i as i64 * 37) % 11 - 5).collect();
    let b: Vec<i64> = (0..k * n).map(|i| (i as i64 * 13) % 7 - 3).collect();
    let want: Vec<i64> = naive(
        &a.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        m,
        k,
        n,
    )
    .iter()
    .map(|&v| v as i64)
    .collect();
    let mut g = Graph::new();
    let pa = g.constant_from(&[m, k], a.clone()).unwrap();
    let pb = g.constant_from(&[k, n], b.clone()).unwrap();
    let c = g.matmul(pa, pb).unwrap();
    let a8 = g.constant_from(&[1, 2], vec![200u8, 100]).unwrap();
    let b8 = g.constant_from(&[2, 1], vec![2u8, 1]).unwrap();
    let c8 = g.matmul(a8, b8).unwrap();
    let out = run(&g, &[], &[c, c8]);
    assert_eq!(out[0].to_vec::<i64>().unwrap(), want);
    // 200 * 2 + 100 wraps modulo 256.
    assert_eq!(out[1].to_vec::<u8>().unwrap(), vec![(500 % 256) as u8]);
}

#[test]
fn matmul_with_zero_sized_dims() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::unknown()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::unknown()).unwrap();
    let c = g.matmul(a, b).unwrap();
    let ai = g.placeholder("ai", DType::I32, Shape::unknown()).unwrap();
    let bi = g.placeholder("bi", DType::I32, Shape::unknown()).unwrap();
    let ci = g.matmul(ai, bi).unwrap();
    let s = session(&g);
    // k = 0: zeros.
    let out = s
        .run(
            &[
                (a, t::<f32>(&[2, 0], vec![])),
                (b, t::<f32>(&[0, 3], vec![])),
                (ai, t::<i32>(&[2, 0], vec![])),
                (bi, t::<i32>(&[0, 3], vec![])),
            ],
            &[c, ci],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].shape(), &[2, 3]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![0.0; 6]);
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![0; 6]);
    // m = 0.
    let out = s
        .run(
            &[
                (a, t::<f32>(&[0, 4], vec![])),
                (b, t(&[4, 2], vec![1.0f32; 8])),
                (ai, t::<i32>(&[3, 1], vec![1, 2, 3])),
                (bi, t::<i32>(&[1, 0], vec![])),
            ],
            &[c, ci],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].shape(), &[0, 2]);
    assert_eq!(out[1].shape(), &[3, 0]);
}

/// Reference batch matmul over the broadcast batch of `x` [.., m, k] and `y` [.., k, n]
/// (no adjoints), both with batch dims of equal rank.
fn naive_batch(
    x: &[f64],
    xb: &[usize],
    y: &[f64],
    yb: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<usize>, Vec<f64>) {
    let batch: Vec<usize> = xb.iter().zip(yb).map(|(&a, &b)| a.max(b)).collect();
    let total: usize = batch.iter().product();
    let mut out = Vec::new();
    for flat in 0..total {
        let (mut xi, mut yi, mut rem) = (0, 0, flat);
        let mut idx = vec![0; batch.len()];
        for d in (0..batch.len()).rev() {
            idx[d] = rem % batch[d];
            rem /= batch[d];
        }
        for d in 0..batch.len() {
            xi = xi * xb[d] + if xb[d] == 1 { 0 } else { idx[d] };
            yi = yi * yb[d] + if yb[d] == 1 { 0 } else { idx[d] };
        }
        out.extend(naive(
            &x[xi * m * k..(xi + 1) * m * k],
            &y[yi * k * n..(yi + 1) * k * n],
            m,
            k,
            n,
        ));
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (shape, out)
}

#[test]
fn batch_matmul_broadcasts_batch_dims() {
    let (m, k, n) = (2usize, 3usize, 4usize);
    let x = random(2 * m * k, 31);
    let y = random(3 * k * n, 32);
    let mut g = Graph::new();
    let px = g
        .placeholder("x", DType::F64, Shape::known(&[2, 1, m, k]))
        .unwrap();
    let py = g
        .placeholder("y", DType::F64, Shape::known(&[3, k, n]))
        .unwrap();
    let z = g.batch_matmul(px, py, false, false).unwrap();
    // The same product with both operands stored transposed.
    let xt: Vec<f64> = x.chunks(m * k).flat_map(|c| transpose(c, m, k)).collect();
    let yt: Vec<f64> = y.chunks(k * n).flat_map(|c| transpose(c, k, n)).collect();
    let pxt = g
        .placeholder("xt", DType::F64, Shape::known(&[2, 1, k, m]))
        .unwrap();
    let pyt = g
        .placeholder("yt", DType::F64, Shape::known(&[3, n, k]))
        .unwrap();
    let zt = g.batch_matmul(pxt, pyt, true, true).unwrap();
    // Rank 2 against rank 3.
    let p2 = g
        .placeholder("x2", DType::F64, Shape::known(&[m, k]))
        .unwrap();
    let z2 = g.batch_matmul(p2, py, false, false).unwrap();
    let out = run(
        &g,
        &[
            (px, t(&[2, 1, m, k], x.clone())),
            (py, t(&[3, k, n], y.clone())),
            (pxt, t(&[2, 1, k, m], xt)),
            (pyt, t(&[3, n, k], yt)),
            (p2, t(&[m, k], x[..m * k].to_vec())),
        ],
        &[z, zt, z2],
    );
    let (shape, want) = naive_batch(&x, &[2, 1], &y, &[1, 3], m, k, n);
    assert_eq!(shape, vec![2, 3, m, n]);
    assert_eq!(out[0].shape(), &shape[..]);
    assert_close(&out[0].to_f64_vec(), &want, 1e-12, "batch");
    assert_eq!(out[1].shape(), &shape[..]);
    assert_close(&out[1].to_f64_vec(), &want, 1e-12, "batch adjoint");
    let (shape2, want2) = naive_batch(&x[..m * k], &[1], &y, &[3], m, k, n);
    assert_eq!(out[2].shape(), &shape2[..]);
    assert_close(&out[2].to_f64_vec(), &want2, 1e-12, "rank 2 x rank 3");
}

#[test]
fn many_small_batches_and_integer_batches() {
    let (b, m, k, n) = (700usize, 8usize, 8usize, 8usize);
    let x = random(b * m * k, 41);
    let y = random(b * k * n, 42);
    let mut g = Graph::new();
    let px = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let py = g.placeholder("y", DType::F32, Shape::unknown()).unwrap();
    let z = g.batch_matmul(px, py, false, false).unwrap();
    let xi = g.constant_from(&[2, 1, 2], vec![1i32, 2, 3, 4]).unwrap();
    let yi = g.constant_from(&[2, 1], vec![10i32, 100]).unwrap();
    let zi = g.batch_matmul(xi, yi, false, false).unwrap();
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let out = run(
        &g,
        &[(px, t(&[b, m, k], f32s(&x))), (py, t(&[b, k, n], f32s(&y)))],
        &[z, zi],
    );
    let (_, want) = naive_batch(&x, &[b], &y, &[b], m, k, n);
    assert_close(&out[0].to_f64_vec(), &want, 1e-4, "700 small batches");
    assert_eq!(out[1].shape(), &[2, 1, 1]);
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![210, 430]);
}

#[test]
fn batch_matmul_zero_sized() {
    let mut g = Graph::new();
    let px = g.placeholder("x", DType::F64, Shape::unknown()).unwrap();
    let py = g.placeholder("y", DType::F64, Shape::unknown()).unwrap();
    let z = g.batch_matmul(px, py, false, false).unwrap();
    let s = session(&g);
    let out = s
        .run(
            &[
                (px, t::<f64>(&[3, 2, 0], vec![])),
                (py, t::<f64>(&[1, 0, 2], vec![])),
            ],
            &[z],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].shape(), &[3, 2, 2]);
    assert_eq!(out[0].to_vec::<f64>().unwrap(), vec![0.0; 12]);
    let out = s
        .run(
            &[
                (px, t::<f64>(&[0, 2, 3], vec![])),
                (py, t(&[3, 1], vec![1.0; 3])),
            ],
            &[z],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].shape(), &[0, 2, 1]);
}

#[test]
fn matmul_errors_show_both_shapes() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::unknown()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::unknown()).unwrap();
    let c = g
        .build("MatMul")
        .name("mm")
        .input(a)
        .input(b)
        .finish1()
        .unwrap();
    let bm = g
        .build("BatchMatMul")
        .name("bmm")
        .input(a)
        .input(b)
        .attr("adj_y", true)
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[
            (a, t(&[2, 3], vec![0.0f32; 6])),
            (b, t(&[4, 2], vec![0.0f32; 8])),
        ],
        c,
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`mm`") && msg.contains("inner dimensions differ"),
        "{msg}"
    );
    assert!(
        msg.contains("[2, 3]") && msg.contains("[4, 2]") && msg.contains("3 != 4"),
        "{msg}"
    );
    let e = run_err(
        &g,
        &[
            (a, t(&[2, 1, 3], vec![0.0f32; 6])),
            (b, t(&[3, 2], vec![0.0f32; 6])),
        ],
        c,
    );
    assert!(
        e.to_string().contains("`mm`") && e.to_string().contains("two matrices"),
        "{e}"
    );

    // adj_y: y [.., n, k] = [5, 2, 4] has k = 4, but x has k = 3.
    let e = run_err(
        &g,
        &[
            (a, t(&[2, 3], vec![0.0f32; 6])),
            (b, t(&[5, 2, 4], vec![0.0f32; 40])),
        ],
        bm,
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`bmm`") && msg.contains("[2, 3]") && msg.contains("[5, 2, 4]"),
        "{msg}"
    );
    let e = run_err(
        &g,
        &[
            (a, t(&[2, 2, 3], vec![0.0f32; 12])),
            (b, t(&[3, 2, 3], vec![0.0f32; 18])),
        ],
        bm,
    );
    assert!(
        e.to_string().contains("`bmm`") && e.to_string().contains("do not broadcast"),
        "{e}"
    );
    let e = run_err(
        &g,
        &[
            (a, t(&[3], vec![0.0f32; 3])),
            (b, t(&[3, 3], vec![0.0f32; 9])),
        ],
        bm,
    );
    assert!(e.to_string().contains("rank >= 2"), "{e}");
}

// ---- executors --------------------------------------------------------------------------------

#[test]
fn parallel_executor_gives_the_same_results() {
    let (m, k, n) = (64usize, 48usize, 80usize);
    let a: Vec<f32> = random(m * k, 51).iter().map(|&v| v as f32).collect();
    let b: Vec<f32> = random(k * n, 52).iter().map(|&v| v as f32).collect();
    let mut g = Graph::new();
    let pa = g
        .placeholder("a", DType::F32, Shape::known(&[m, k]))
        .unwrap();
    let pb = g
        .placeholder("b", DType::F32, Shape::known(&[k, n]))
        .unwrap();
    let c = g.matmul(pa, pb).unwrap();
    let c2 = g.matmul_t(pa, pa, false, true).unwrap();
    let s0 = g.reduce_sum(c, Some(&[0]), false).unwrap();
    let s1 = g.reduce_mean(c2, Some(&[1]), true).unwrap();
    let mx = g.reduce_max(pb, None, false).unwrap();
    let am = g.argmax(c, 1).unwrap();
    let lse = g.reduce_logsumexp(c, Some(&[-1]), false).unwrap();
    let bb = g.batch_matmul(c2, c, false, false).unwrap();
    let fetches = [c, c2, s0, s1, mx, am, lse, bb];
    let feeds = [(pa, t(&[m, k], a)), (pb, t(&[k, n], b))];
    let results: Vec<Vec<Tensor>> = [1, 2]
        .into_iter()
        .map(|threads| {
            let s = Session::new(
                &g,
                SessionOptions {
                    inter_op_threads: threads,
                    ..Default::default()
                },
            )
            .unwrap();
            // Twice: the second run reuses the cached executable.
            let first = s.run(&feeds, &fetches, &[]).unwrap();
            assert_eq!(first, s.run(&feeds, &fetches, &[]).unwrap());
            first
        })
        .collect();
    assert_eq!(results[0].len(), fetches.len());
    for (i, (x, y)) in results[0].iter().zip(&results[1]).enumerate() {
        assert_eq!(x.shape(), y.shape(), "fetch {i}");
        assert_eq!(x.to_f64_vec(), y.to_f64_vec(), "fetch {i}");
    }
}
