//! An embedding training step at growing table sizes (issue 14): 1,024 ids looked up in an
//! `[rows, 128]` f32 table (`ResourceGather`), a small dense layer (128 -> 16, tanh), a squared
//! loss, and SGD. The table's gradient is sparse and applied with
//! `ResourceSparseApplyGradientDescent`, so the step should cost the same at 10k and 10M rows.
//! Run: `cargo bench -p tfr-nn --bench embedding` (`EMBEDDING_BENCH_ROWS=10000,100000` to pick sizes; the
//! 10M-row table takes 5 GB).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Shape};
use tfr_nn::optimizers::{Optimizer, Sgd};

const BATCH: usize = 1024;
const WIDTH: usize = 128;
const HIDDEN: usize = 16;
/// Id batches cycled through, so consecutive steps do not hit the same (cached) rows.
const BATCHES: usize = 16;

fn table_sizes() -> Vec<usize> {
    match std::env::var("EMBEDDING_BENCH_ROWS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("EMBEDDING_BENCH_ROWS: comma-separated row counts")
            })
            .collect(),
        Err(_) => vec![10_000, 100_000, 1_000_000, 10_000_000],
    }
}

/// Deterministic ids spread over the whole table.
fn id_batches(rows: usize) -> Vec<Tensor> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BATCHES)
        .map(|_| {
            let ids: Vec<i32> = (0..BATCH)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % rows as u64) as i32
                })
                .collect();
            Tensor::new(&[BATCH], ids).unwrap()
        })
        .collect()
}

fn embedding_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("embedding_step");
    group.sample_size(30);
    for rows in table_sizes() {
        let mut g = Graph::new();
        let fill = g.scalar(0.01f32).unwrap();
        let t0 = g.fill(&[rows as i64, WIDTH as i64], fill).unwrap();
        let table = g.variable("table", t0).unwrap();
        let w0 = g
            .constant_from(
                &[WIDTH, HIDDEN],
                (0..WIDTH * HIDDEN)
                    .map(|i| ((i % 13) as f32 - 6.0) / 50.0)
                    .collect(),
            )
            .unwrap();
        let w = g.variable("w", w0).unwrap();
        let ids = g
            .placeholder("ids", DType::I32, Shape::known(&[BATCH]))
            .unwrap();
        let rows_read = g.resource_gather(&table, ids).unwrap();
        let h = g.matmul(rows_read, w.value).unwrap();
        let y = g.tanh(h).unwrap();
        let sq = g.square(y).unwrap();
        let loss = g.reduce_mean(sq, None, false).unwrap();
        let train = Sgd::new(0.1)
            .minimize(&mut g, loss, &[table.clone(), w.clone()], None)
            .unwrap();
        let init = g.global_variables_initializer().unwrap();
        let s = Session::new(&g, SessionOptions::default()).unwrap();
        s.run(&[], &[], &[init]).unwrap();
        let step = s.make_callable(&[ids], &[loss], &[train]).unwrap();
        let batches = id_batches(rows);
        let mut k = 0;
        group.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, _| {
            b.iter(|| {
                k = (k + 1) % BATCHES;
                black_box(step.call(std::slice::from_ref(&batches[k])).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, embedding_step);
criterion_main!(benches);
