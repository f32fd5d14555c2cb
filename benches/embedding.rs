//! The embedding step of issue 14: look up 1,024 ids of width 128 in a `[rows, 128]` table, a
//! small dense layer (128 -> 16, softmax cross-entropy), and one SGD or Adagrad step, at table
//! sizes of 10k, 100k, 1M and 10M rows. The table's gradient is sparse (the 1,024 rows looked
//! up), so the step time should not depend on the table's size.
//!
//! Run: `cargo bench --bench embedding` (optionally a filter such as `-- embedding_step/sgd`).
//! `EMBEDDING_ROWS=10000,100000` picks the sizes (default all four; the 10M table takes
//! 5.1 GB, twice that with Adagrad's accumulator); `EMBEDDING_TRACE=1` prints one traced step's
//! time by op per case. One thread (`inter_op_threads: 1` and a
//! one-thread global rayon pool), so the step's own cost is measured.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;
use tfr::nn::layers::{dense, Activation};
use tfr::nn::optimizers::{Adagrad, Optimizer, Sgd};
use tfr::prelude::*;

const BATCH: usize = 1024;
const WIDTH: usize = 128;
const CLASSES: usize = 16;

fn table_sizes() -> Vec<usize> {
    std::env::var("EMBEDDING_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000, 10_000_000])
}

/// Ids spread over the whole table (xorshift), and labels.
fn feeds(rows: usize) -> [Tensor; 2] {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let ids: Vec<i32> = (0..BATCH)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % rows as u64) as i32
        })
        .collect();
    let labels: Vec<i32> = (0..BATCH).map(|i| (i * 7 % CLASSES) as i32).collect();
    [
        Tensor::new(&[BATCH], ids).expect("ids"),
        Tensor::new(&[BATCH], labels).expect("labels"),
    ]
}

/// The step's session (variables initialized) and its callable.
fn build(rows: usize, adagrad: bool) -> tfr::Result<(Session, tfr::Callable)> {
    let mut g = Graph::new();
    g.seed = Some(0);
    let ids = g.placeholder("ids", DType::I32, Shape::known(&[BATCH]))?;
    let labels = g.placeholder("labels", DType::I32, Shape::known(&[BATCH]))?;
    // A constant fill: initializing 1.28G random values would dominate the setup.
    let v = g.scalar(0.01f32)?;
    let init = g.fill(&[rows as i64, WIDTH as i64], v)?;
    let table = g.variable("table", init)?;
    let x = g.gather(table.value, ids, 0)?;
    let out = dense(&mut g, "dense", x, CLASSES, Activation::Linear, Some(1))?;
    let loss = tfr::nn::losses::sparse_softmax_cross_entropy(&mut g, out.output, labels)?;
    let vars = [table, out.kernel, out.bias];
    let train = if adagrad {
        Adagrad::new(0.1).minimize(&mut g, loss, &vars, None)?
    } else {
        Sgd::new(0.1).minimize(&mut g, loss, &vars, None)?
    };
    let init = g.global_variables_initializer()?;
    let s = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 1,
            ..SessionOptions::default()
        },
    )?;
    s.run(&[], &[], &[init])?;
    let step = s.make_callable(&[ids, labels], &[loss], &[train])?;
    Ok((s, step))
}

fn embedding_step(c: &mut Criterion) {
    // Kernels that split work use rayon's global pool: one thread.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    let mut group = c.benchmark_group("embedding_step");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, adagrad) in [("sgd", false), ("adagrad", true)] {
        for rows in table_sizes() {
            // One table at a time: the session (and its variables) is dropped before the next.
            let (_session, step) = build(rows, adagrad).expect("build");
            let f = feeds(rows);
            if std::env::var_os("EMBEDDING_TRACE").is_some() {
                step.call(&f).expect("step");
                let (_, md) = step
                    .call_with_options(&RunOptions { trace: true }, &f)
                    .expect("step");
                eprintln!(
                    "{name}/{rows}: one traced step\n{}",
                    md.op_summary_table(12)
                );
            }
            group.bench_with_input(BenchmarkId::new(name, rows), &f, |b, f| {
                b.iter(|| black_box(step.call(f).expect("step")))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, embedding_step);
criterion_main!(benches);
