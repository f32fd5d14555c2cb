//! Helpers shared by the test files.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{Graph, Output};

/// A deterministic pseudo-random f32 vector in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn run(g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]) -> Vec<Tensor> {
    let s = Session::new(g, SessionOptions::default()).expect("session");
    s.run(feeds, fetches, &[]).expect("run")
}

/// A unique empty directory under the target's temp dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tfr-tf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
