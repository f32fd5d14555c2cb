//! Multinomial (frequencies against softmax with a fixed seed, reproducibility, errors),
//! Bincount and DenseBincount against hand-counted values.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};

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

// ---- Multinomial ------------------------------------------------------------------------------

#[test]
fn multinomial_frequencies_follow_softmax() {
    let logits = [0.0, 1.0, 2.0, -1.0, -1.0, f64::NEG_INFINITY];
    let n = 20_000;
    let mut g = Graph::new();
    g.seed = Some(42);
    let (l, tl) = feed(&mut g, "l", DType::F32, &[2, 3], &logits);
    let s = g.multinomial(l, n as i64, Some(7), DType::I64).unwrap();
    assert_eq!(g.shape(s), &Shape::known(&[2, n]));
    let session = Session::new(&g, SessionOptions::default()).unwrap();
    let first = session
        .run(&[(l, tl.clone())], &[s], &[])
        .unwrap()
        .remove(0);
    assert_eq!(first.dtype(), DType::I64);
    let v = first.to_f64_vec();
    for row in 0..2 {
        let r = &logits[row * 3..row * 3 + 3];
        let z: f64 = r.iter().map(|x| x.exp()).sum();
        for (c, lc) in r.iter().enumerate() {
            let freq = v[row * n..(row + 1) * n]
                .iter()
                .filter(|&&x| x == c as f64)
                .count() as f64
                / n as f64;
            let p = lc.exp() / z;
            assert!(
                (freq - p).abs() < 0.015,
                "row {row} class {c}: {freq} vs {p}"
            );
        }
    }
    // The next run continues the stream; a new session replays it.
    let second = session
        .run(&[(l, tl.clone())], &[s], &[])
        .unwrap()
        .remove(0);
    assert_ne!(second.to_f64_vec(), v);
    let again = Session::new(&g, SessionOptions::default()).unwrap();
    let replay = again.run(&[(l, tl)], &[s], &[]).unwrap().remove(0);
    assert_eq!(replay.to_f64_vec(), v);
}

#[test]
fn multinomial_output_dtype_and_errors() {
    let mut g = Graph::new();
    let (l, tl) = feed(&mut g, "l", DType::F64, &[1, 2], &[0.0, 0.0]);
    let s = g.multinomial(l, 5, Some(1), DType::I32).unwrap();
    let out = run(&g, &[(l, tl)], &[s]).remove(0);
    assert_eq!((out.dtype(), out.shape()), (DType::I32, &[1usize, 5][..]));
    assert!(out.to_f64_vec().iter().all(|&v| v == 0.0 || v == 1.0));
    let v = g.placeholder("v", DType::F32, Shape::known(&[3])).unwrap();
    let e = g
        .multinomial(v, 5, None, DType::I64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2-D"), "{e}");
    let e = g
        .multinomial(l, -1, None, DType::I64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-negative"), "{e}");
    let mut g = Graph::new();
    let l = loose(&mut g, "l", DType::F32);
    let s = g.multinomial(l, 3, Some(2), DType::I64).unwrap();
    let e = run_err(&g, &[(l, t(&[3], vec![0f32; 3]))], s).to_string();
    assert!(e.contains("2-D") && e.contains("Multinomial"), "{e}");
    let e = run_err(&g, &[(l, t(&[2, 0], Vec::<f32>::new()))], s).to_string();
    assert!(e.contains("num_classes"), "{e}");
}

// ---- Bincount / DenseBincount -----------------------------------------------------------------

#[test]
fn bincount_counts_and_sums_weights() {
    let mut g = Graph::new();
    let (a, ta) = feed(&mut g, "a", DType::I32, &[7], &[1., 1., 2., 5., 0., 7., 1.]);
    let empty = g.constant_from::<f32>(&[0], vec![]).unwrap();
    let counts = g.bincount(a, 6, empty).unwrap();
    let (w, tw) = feed(
        &mut g,
        "w",
        DType::F64,
        &[7],
        &[0.5, 1., 2., 3., 4., 5., 6.],
    );
    let weighted = g.bincount(a, 3, w).unwrap();
    let out = run(&g, &[(a, ta), (w, tw)], &[counts, weighted]);
    assert_eq!(out[0].dtype(), DType::F32);
    assert_eq!(out[0].to_f64_vec(), vec![1., 3., 1., 0., 0., 1.]);
    assert_eq!(out[1].to_f64_vec(), vec![4., 7.5, 2.]);
    // Errors: negative values, negative size, weights of another shape.
    let mut g = Graph::new();
    let a = loose(&mut g, "a", DType::I32);
    let s = loose(&mut g, "s", DType::I32);
    let w = loose(&mut g, "w", DType::F32);
    let y = g
        .build("Bincount")
        .input(a)
        .input(s)
        .input(w)
        .finish1()
        .unwrap();
    let run_with = |g: &Graph, av: Vec<i32>, size: i32, wv: Vec<f32>| {
        let n = av.len();
        let wn = wv.len();
        run_err(
            g,
            &[
                (a, t(&[n], av)),
                (s, Tensor::scalar(size)),
                (w, t(&[wn], wv)),
            ],
            y,
        )
        .to_string()
    };
    let e = run_with(&g, vec![1, -1], 3, vec![]);
    assert!(e.contains("non-negative") && e.contains("Bincount"), "{e}");
    let e = run_with(&g, vec![1], -2, vec![]);
    assert!(e.contains("size (-2)"), "{e}");
    let e = run_with(&g, vec![1, 2], 3, vec![1.0]);
    assert!(e.contains("weights"), "{e}");
}

#[test]
fn dense_bincount_rows_and_binary_output() {
    let mut g = Graph::new();
    let (a, ta) = feed(&mut g, "a", DType::I32, &[2, 3], &[0., 1., 1., 2., 2., 9.]);
    let size = g.scalar(3i32).unwrap();
    let empty = g.constant_from::<i64>(&[0], vec![]).unwrap();
    let y = g
        .build("DenseBincount")
        .input(a)
        .input(size)
        .input(empty)
        .finish1()
        .unwrap();
    let b = g
        .build("DenseBincount")
        .input(a)
        .input(size)
        .input(empty)
        .attr("binary_output", true)
        .finish1()
        .unwrap();
    assert_eq!(g.shape(y), &Shape::known(&[2, 3]));
    let out = run(&g, &[(a, ta)], &[y, b]);
    assert_eq!(out[0].to_f64_vec(), vec![1., 2., 0., 0., 0., 2.]);
    assert_eq!(out[1].to_f64_vec(), vec![1., 1., 0., 0., 0., 1.]);
}
