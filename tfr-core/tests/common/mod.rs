//! Helpers shared by the kernel test binaries (each binary uses a subset).
#![allow(dead_code)]

use tfr_core::{Error, Session, SessionOptions, Tensor};
use tfr_graph::{Graph, Output};

pub fn session(g: &Graph) -> Session {
    Session::new(g, SessionOptions::default()).unwrap()
}

pub fn run(g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]) -> Vec<Tensor> {
    session(g).run(feeds, fetches, &[]).unwrap()
}

pub fn run_err(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output) -> Error {
    session(g).run(feeds, &[fetch], &[]).unwrap_err()
}

pub fn t<T: tfr_graph::Element>(shape: &[usize], data: Vec<T>) -> Tensor {
    Tensor::new(shape, data).unwrap()
}

/// A deterministic pseudo-random sequence in [-1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

pub fn assert_close(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= rel * w.abs().max(1.0)
        };
        assert!(ok, "{what}: element {i} is {g}, expected {w}");
    }
}
