//! Step-overhead and kernel benchmarks matching the workloads in ../shared/PEERS.md:
//! null step (add two fed scalars), a chain of 100 elementwise ops on a [16] tensor, and an
//! f32 1024^3 matmul. Run: `cargo bench --bench session`. The `*_traced` cases run the same
//! step with `RunOptions { trace: true }` (the cost of a timeline); chain100 and the transfer
//! loop print the per-op summary of one traced step first.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tfr::graph::ops::control_flow_ops::WhileOptions;
use tfr::prelude::*;

fn single_thread() -> SessionOptions {
    SessionOptions {
        inter_op_threads: 1,
        ..SessionOptions::default()
    }
}

fn null_step(c: &mut Criterion) {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::scalar()).unwrap();
    let sum = g.add(a, b).unwrap();
    let s = Session::new(&g, single_thread()).unwrap();
    let (ta, tb) = (Tensor::scalar(1.0f32), Tensor::scalar(2.0f32));
    let call = s.make_callable(&[a, b], &[sum], &[]).unwrap();
    let feeds = [ta.clone(), tb.clone()];
    c.bench_function("null_step/callable", |bench| {
        bench.iter(|| black_box(call.call(black_box(&feeds)).unwrap()))
    });
    let trace = RunOptions { trace: true };
    c.bench_function("null_step/callable_traced", |bench| {
        bench.iter(|| black_box(call.call_with_options(&trace, black_box(&feeds)).unwrap()))
    });
    c.bench_function("null_step/session_run", |bench| {
        bench.iter(|| {
            black_box(
                s.run(&[(a, ta.clone()), (b, tb.clone())], &[sum], &[])
                    .unwrap(),
            )
        })
    });
}

/// 50 x (x * a + b) on a [16] tensor: 100 elementwise ops, as in the peers' chain100.
fn chain_graph() -> (Graph, Output, Output) {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[16])).unwrap();
    let a = g.constant_from(&[16], vec![0.99f32; 16]).unwrap();
    let b = g.constant_from(&[16], vec![0.01f32; 16]).unwrap();
    let mut y = x;
    for _ in 0..50 {
        y = g.mul(y, a).unwrap();
        y = g.add(y, b).unwrap();
    }
    (g, x, y)
}

fn chain100(c: &mut Criterion) {
    let (g, x, y) = chain_graph();
    let s = Session::new(&g, single_thread()).unwrap();
    let call = s.make_callable(&[x], &[y], &[]).unwrap();
    let xv = [Tensor::new(&[16], (0..16).map(|i| i as f32 * 0.1).collect()).unwrap()];
    let trace = RunOptions { trace: true };
    print_op_summary("chain100", &call, &xv);
    c.bench_function("chain100/callable", |bench| {
        bench.iter(|| black_box(call.call(black_box(&xv)).unwrap()))
    });
    c.bench_function("chain100/callable_traced", |bench| {
        bench.iter(|| black_box(call.call_with_options(&trace, black_box(&xv)).unwrap()))
    });
}

/// Time by op type in one traced step (after a warm-up step).
fn print_op_summary(name: &str, call: &tfr::Callable, feeds: &[Tensor]) {
    call.call(feeds).unwrap();
    let (_, md) = call
        .call_with_options(&RunOptions { trace: true }, feeds)
        .unwrap();
    println!("{name}: one traced step\n{}", md.op_summary_table(10));
}

fn matmul1024(c: &mut Criterion) {
    const N: usize = 1024;
    let mut g = Graph::new();
    let a = g
        .placeholder("a", DType::F32, Shape::known(&[N, N]))
        .unwrap();
    let b = g
        .placeholder("b", DType::F32, Shape::known(&[N, N]))
        .unwrap();
    let p = g.matmul(a, b).unwrap();
    let data: Vec<f32> = (0..N * N)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let feeds = [
        Tensor::new(&[N, N], data.clone()).unwrap(),
        Tensor::new(&[N, N], data).unwrap(),
    ];
    let mut group = c.benchmark_group("matmul1024");
    group.throughput(Throughput::Elements((2 * N * N * N) as u64));
    group.sample_size(20);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let s = Session::new(&g, single_thread()).unwrap();
        let call = s.make_callable(&[a, b], &[p], &[]).unwrap();
        group.bench_function(format!("threads_{threads}"), |bench| {
            pool.install(|| bench.iter(|| black_box(call.call(&feeds).unwrap())))
        });
    }
    group.finish();
}

/// The cost of one Send/Recv pair: a step whose scalar crosses from CPU:0 to CPU:1 and back,
/// against the same step on one device.
fn transfer(c: &mut Criterion) {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let a = g.with_device("/device:CPU:0", |g| g.neg(x).unwrap());
    let b = g.with_device("/device:CPU:1", |g| g.neg(a).unwrap());
    let y = g.with_device("/device:CPU:0", |g| g.neg(b).unwrap());
    let feeds = [Tensor::scalar(1.0f32)];
    for devices in [1usize, 2] {
        let s = Session::new(
            &g,
            SessionOptions {
                cpu_devices: devices,
                soft_placement: true,
                ..single_thread()
            },
        )
        .unwrap();
        let call = s.make_callable(&[x], &[y], &[]).unwrap();
        c.bench_function(&format!("transfer/{devices}_devices"), |bench| {
            bench.iter(|| black_box(call.call(&feeds).unwrap()))
        });
    }
}

/// A loop of 100 iterations whose body (`x = sin(x)`) runs on CPU:1 while the loop itself is
/// on CPU:0: per iteration, the predicate and `x` go to CPU:1 and `sin(x)` comes back.
fn transfer_loop(c: &mut Criterion) {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar()).unwrap();
    let zero = g.scalar(0i32).unwrap();
    let r = g.with_device("/device:CPU:0", |g| {
        g.while_loop(
            |g, v| {
                let n = g.scalar(100i32)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let s = g.with_device("/device:CPU:1", |g| g.sin(v[1]))?;
                Ok(vec![g.add(v[0], one)?, s])
            },
            &[zero, x],
            &WhileOptions::default(),
        )
        .unwrap()
    });
    let feeds = [Tensor::scalar(0.5f64)];
    for devices in [1usize, 2] {
        let s = Session::new(
            &g,
            SessionOptions {
                cpu_devices: devices,
                soft_placement: true,
                ..single_thread()
            },
        )
        .unwrap();
        let call = s.make_callable(&[x], &[r[1]], &[]).unwrap();
        print_op_summary(
            &format!("transfer/loop100_{devices}_devices"),
            &call,
            &feeds,
        );
        c.bench_function(&format!("transfer/loop100_{devices}_devices"), |bench| {
            bench.iter(|| black_box(call.call(&feeds).unwrap()))
        });
    }
}

criterion_group!(
    benches,
    null_step,
    chain100,
    matmul1024,
    transfer,
    transfer_loop
);
criterion_main!(benches);
