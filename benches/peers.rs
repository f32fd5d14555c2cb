//! The peers' workloads (../shared/PEERS.md) measured the way ../shared/peers/common.py measures
//! them: warm-up, then samples of back-to-back steps lasting ~20 ms each, median per step.
//! Prints one JSON line per workload (fw = "tfr"), like the peers' scripts, so
//! `benches/peers/compare.py` can put them side by side.
//!
//! Run: `cargo bench --bench peers -- [--threads N] [--workloads null,chain100,matmul1024,mlp64,mlp256]`.

use std::time::Instant;
use tfr::prelude::*;

struct Args {
    threads: usize,
    benches: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args { threads: 2, benches: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => args.threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(2),
            "--workloads" => args.benches = it.next().unwrap_or_default().split(',').map(str::to_string).collect(),
            _ => {}
        }
    }
    if args.benches.is_empty() {
        args.benches = ["null", "chain100", "matmul1024", "mlp64", "mlp256"].map(String::from).to_vec();
    }
    args
}

/// Median seconds per step, following common.py's `measure`.
fn measure(mut step: impl FnMut()) -> (f64, f64, usize) {
    let t0 = Instant::now();
    step();
    let first = t0.elapsed().as_secs_f64();
    let (mut n, t0) = (0usize, Instant::now());
    let el = loop {
        step();
        n += 1;
        let el = t0.elapsed().as_secs_f64();
        if n >= 3 && el >= 0.3 {
            break el;
        }
    };
    let est = el / n as f64;
    let inner = ((0.020 / est.max(1e-9)).round() as usize).max(1);
    let samples = 31usize.min((8.0 / (inner as f64 * est)) as usize).max(7);
    let mut per: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner {
                step();
            }
            t.elapsed().as_secs_f64() / inner as f64
        })
        .collect();
    per.sort_by(f64::total_cmp);
    (per[per.len() / 2], first, per.len())
}

fn report(bench: &str, variant: &str, threads: usize, (median, first, samples): (f64, f64, usize)) {
    println!(
        "{{\"fw\": \"tfr\", \"version\": \"{}\", \"bench\": \"{bench}\", \"variant\": \"{variant}\", \"threads\": {threads}, \"median_s\": {median:e}, \"first_s\": {first:e}, \"samples\": {samples}}}",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!("# tfr    {bench:15} {variant:22} median {:12.2} us", median * 1e6);
}

fn options(threads: usize) -> SessionOptions {
    SessionOptions { inter_op_threads: threads, ..SessionOptions::default() }
}

fn null(threads: usize) -> tfr::Result<()> {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar())?;
    let b = g.placeholder("b", DType::F32, Shape::scalar())?;
    let c = g.add(a, b)?;
    let s = Session::new(&g, options(threads))?;
    let (ta, tb) = (Tensor::scalar(1.0f32), Tensor::scalar(2.0f32));
    report("null", "session_run", threads, measure(|| {
        s.run(&[(a, ta.clone()), (b, tb.clone())], &[c], &[]).expect("step");
    }));
    let call = s.make_callable(&[a, b], &[c], &[])?;
    let feeds = [ta, tb];
    report("null", "callable", threads, measure(|| {
        call.call(&feeds).expect("step");
    }));
    Ok(())
}

fn chain100(threads: usize) -> tfr::Result<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[16]))?;
    let a = g.constant_from(&[16], vec![0.99f32; 16])?;
    let b = g.constant_from(&[16], vec![0.01f32; 16])?;
    let mut y = x;
    for _ in 0..50 {
        y = g.mul(y, a)?;
        y = g.add(y, b)?;
    }
    let s = Session::new(&g, options(threads))?;
    let call = s.make_callable(&[x], &[y], &[])?;
    let feeds = [Tensor::new(&[16], (0..16).map(|i| i as f32 / 16.0).collect())?];
    report("chain100", "callable", threads, measure(|| {
        call.call(&feeds).expect("step");
    }));
    Ok(())
}

fn matmul1024(threads: usize) -> tfr::Result<()> {
    const N: usize = 1024;
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::known(&[N, N]))?;
    let b = g.placeholder("b", DType::F32, Shape::known(&[N, N]))?;
    let p = g.matmul(a, b)?;
    let s = Session::new(&g, options(threads))?;
    let call = s.make_callable(&[a, b], &[p], &[])?;
    let data: Vec<f32> = (0..N * N).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let feeds = [Tensor::new(&[N, N], data.clone())?, Tensor::new(&[N, N], data)?];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let r = pool.install(|| measure(|| {
        call.call(&feeds).expect("step");
    }));
    eprintln!("# tfr    matmul1024 {:.1} GFLOP/s", 2.0 * (N as f64).powi(3) / r.0 / 1e9);
    report("matmul1024", "callable", threads, r);
    Ok(())
}

/// One SGD training step of the MLP 784-512-512-10 (ReLU, mean sparse softmax cross-entropy).
fn mlp(threads: usize, batch: usize) -> tfr::Result<()> {
    use tfr::nn::layers::{dense, Activation};
    use tfr::nn::optimizers::{Optimizer, Sgd};
    let mut g = Graph::new();
    g.seed = Some(0);
    let x = g.placeholder("x", DType::F32, Shape::known(&[batch, 784]))?;
    let y = g.placeholder("y", DType::I32, Shape::known(&[batch]))?;
    let mut h = x;
    let mut vars = Vec::new();
    for (i, units) in [512, 512].into_iter().enumerate() {
        let l = dense(&mut g, &format!("fc{i}"), h, units, Activation::Relu, None)?;
        vars.extend([l.kernel, l.bias]);
        h = l.output;
    }
    let out = dense(&mut g, "logits", h, 10, Activation::Linear, None)?;
    vars.extend([out.kernel, out.bias]);
    let loss = tfr::nn::losses::sparse_softmax_cross_entropy(&mut g, out.output, y)?;
    let train = Sgd::new(0.01).minimize(&mut g, loss, &vars, None)?;
    let init = g.global_variables_initializer()?;
    let s = Session::new(&g, options(threads))?;
    s.run(&[], &[], &[init])?;
    let step = s.make_callable(&[x, y], &[loss], &[train])?;
    let xs: Vec<f32> = (0..batch * 784).map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * 2.0).collect();
    let ys: Vec<i32> = (0..batch).map(|i| (i * 7 % 10) as i32).collect();
    let feeds = [Tensor::new(&[batch, 784], xs)?, Tensor::new(&[batch], ys)?];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let r = pool.install(|| measure(|| {
        step.call(&feeds).expect("step");
    }));
    report(&format!("mlp{batch}"), "callable", threads, r);
    Ok(())
}

fn main() -> tfr::Result<()> {
    let args = parse_args();
    for b in &args.benches {
        match b.as_str() {
            "null" => null(args.threads)?,
            "chain100" => chain100(args.threads)?,
            "matmul1024" => matmul1024(args.threads)?,
            "mlp64" => mlp(args.threads, 64)?,
            "mlp256" => mlp(args.threads, 256)?,
            other => eprintln!("# tfr    {other}: not implemented yet"),
        }
    }
    Ok(())
}
