//! The peers' workloads (../shared/PEERS.md) measured the way ../shared/peers/common.py measures
//! them: warm-up, then samples of back-to-back steps lasting ~20 ms each, median per step.
//! Prints one JSON line per workload (fw = "tfr"), like the peers' scripts, so
//! `benches/peers/compare.py` can put them side by side.
//!
//! Run: `cargo bench --bench peers -- [--threads N] [--workloads null,chain100,matmul1024,mlp64,mlp256,cnn64,while1000,while1000_grad,lstm,lstm_sampled100k,lstm_full100k,lstm_gemms]`.

use std::time::Instant;
use tfr::prelude::*;

#[path = "common/models.rs"]
mod models;

struct Args {
    threads: usize,
    benches: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        threads: 2,
        benches: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => args.threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(2),
            "--workloads" => {
                args.benches = it
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            _ => {}
        }
    }
    if args.benches.is_empty() {
        args.benches = ["null", "chain100", "matmul1024", "mlp64", "mlp256", "cnn64"]
            .map(String::from)
            .to_vec();
    }
    args
}

/// USER_HZ: the kernel reports CPU times in these ticks (100 on every Linux we run on).
const TICKS_PER_S: f64 = 100.0;

/// `(busy ticks of the whole machine including steal, ticks used by this process)`, from
/// `/proc/stat` and `/proc/self/stat` (zeros where they are missing), as common.py's
/// `cpu_snapshot`.
fn cpu_snapshot() -> (f64, f64) {
    let machine = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = machine
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user, nice, system, irq, softirq, steal.
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = own.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (busy, ticks(11) + ticks(12))
}

/// CPU seconds other processes (and VM steal) used between two snapshots.
fn foreign_cpu_s(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((b.0 - a.0) - (b.1 - a.1)).max(0.0) / TICKS_PER_S
}

/// Waits (at most `PEERS_MAX_WAIT` seconds, default 120) for a one-second window in which other
/// processes use under 0.15 cores, as common.py's `wait_quiet` does before each peer workload.
fn wait_quiet() {
    let max_wait: f64 = std::env::var("PEERS_MAX_WAIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120.0);
    let t0 = Instant::now();
    loop {
        let a = cpu_snapshot();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let load = foreign_cpu_s(a, cpu_snapshot());
        if load < 0.15 || t0.elapsed().as_secs_f64() > max_wait {
            return;
        }
    }
}

/// Seconds per step, following common.py's `measure`: after waiting for a quiet window, samples
/// during which other processes used noticeable CPU are discarded and retaken (up to 3x the
/// sample count), so tfr and the peers are timed under the same rule. Returns the median, the
/// first step, the number of samples kept, the mean CPU seconds per step of this process over
/// all timed samples (unlike wall time it barely moves when other processes share the cores)
/// and the fastest sample.
fn measure(mut step: impl FnMut()) -> (f64, f64, usize, f64, f64) {
    if std::env::var_os("PEERS_NO_QUIET").is_none() {
        wait_quiet();
    }
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
    let (mut clean, mut dirty) = (Vec::new(), Vec::new());
    let (mut own_ticks, mut steps) = (0.0, 0usize);
    for _ in 0..3 * samples {
        let a = cpu_snapshot();
        let t = Instant::now();
        for _ in 0..inner {
            step();
        }
        let el = t.elapsed().as_secs_f64();
        let b = cpu_snapshot();
        own_ticks += b.1 - a.1;
        steps += inner;
        let quiet = foreign_cpu_s(a, b) <= 0.011 + 0.1 * el;
        if quiet { &mut clean } else { &mut dirty }.push(el / inner as f64);
        if clean.len() >= samples {
            break;
        }
    }
    let mut per = if clean.len() >= (samples / 2).max(5) {
        clean
    } else {
        clean.into_iter().chain(dirty).collect()
    };
    let cpu = own_ticks / TICKS_PER_S / steps as f64;
    per.sort_by(f64::total_cmp);
    (per[per.len() / 2], first, per.len(), cpu, per[0])
}

fn report(
    bench: &str,
    variant: &str,
    threads: usize,
    (median, first, samples, cpu, min): (f64, f64, usize, f64, f64),
) {
    println!(
        "{{\"fw\": \"tfr\", \"version\": \"{}\", \"bench\": \"{bench}\", \"variant\": \"{variant}\", \"threads\": {threads}, \"median_s\": {median:e}, \"min_s\": {min:e}, \"first_s\": {first:e}, \"samples\": {samples}, \"cpu_s\": {cpu:e}}}",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!(
        "# tfr    {bench:15} {variant:22} median {:12.2} us  min {:12.2} us   cpu {:12.2} us/step",
        median * 1e6,
        min * 1e6,
        cpu * 1e6
    );
}

fn options(threads: usize) -> SessionOptions {
    SessionOptions {
        inter_op_threads: threads,
        ..SessionOptions::default()
    }
}

fn null(threads: usize) -> tfr::Result<()> {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar())?;
    let b = g.placeholder("b", DType::F32, Shape::scalar())?;
    let c = g.add(a, b)?;
    let s = Session::new(&g, options(threads))?;
    let (ta, tb) = (Tensor::scalar(1.0f32), Tensor::scalar(2.0f32));
    report(
        "null",
        "session_run",
        threads,
        measure(|| {
            s.run(&[(a, ta.clone()), (b, tb.clone())], &[c], &[])
                .expect("step");
        }),
    );
    let call = s.make_callable(&[a, b], &[c], &[])?;
    let feeds = [ta, tb];
    report(
        "null",
        "callable",
        threads,
        measure(|| {
            call.call(&feeds).expect("step");
        }),
    );
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
    let feeds = [Tensor::new(
        &[16],
        (0..16).map(|i| i as f32 / 16.0).collect(),
    )?];
    report(
        "chain100",
        "callable",
        threads,
        measure(|| {
            call.call(&feeds).expect("step");
        }),
    );
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
    let data: Vec<f32> = (0..N * N)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let feeds = [
        Tensor::new(&[N, N], data.clone())?,
        Tensor::new(&[N, N], data)?,
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let r = pool.install(|| {
        measure(|| {
            call.call(&feeds).expect("step");
        })
    });
    eprintln!(
        "# tfr    matmul1024 {:.1} GFLOP/s",
        2.0 * (N as f64).powi(3) / r.0 / 1e9
    );
    report("matmul1024", "callable", threads, r);
    Ok(())
}

/// The three products of the `lstm` workload's softmax layer (not a peers' workload): logits
/// `[400, 200] @ [200, 10000]`, the input gradient `[400, 10000] @ [200, 10000]^T` and the
/// weight gradient `[400, 200]^T @ [400, 10000]`, each timed alone.
fn lstm_gemms(threads: usize) -> tfr::Result<()> {
    let (m, h, v) = (400usize, 200usize, 10_000usize);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let data = |n: usize| {
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    let cases = [
        ("logits_nn", [m, h], [h, v], false, false),
        ("dx_nt", [m, v], [h, v], false, true),
        ("dw_tn", [m, h], [m, v], true, false),
    ];
    for (name, sa, sb, ta, tb) in cases {
        let mut g = Graph::new();
        let a = g.placeholder("a", DType::F32, Shape::known(&sa))?;
        let b = g.placeholder("b", DType::F32, Shape::known(&sb))?;
        let p = g.matmul_t(a, b, ta, tb)?;
        let s = Session::new(&g, options(threads))?;
        let call = s.make_callable(&[a, b], &[p], &[])?;
        let feeds = [
            Tensor::new(&sa, data(sa[0] * sa[1]))?,
            Tensor::new(&sb, data(sb[0] * sb[1]))?,
        ];
        let r = pool.install(|| {
            measure(|| {
                call.call(&feeds).expect("step");
            })
        });
        eprintln!(
            "# tfr    lstm_gemms {name} {:.1} GFLOP/s",
            2.0 * (m * h * v) as f64 / r.0 / 1e9
        );
        report("lstm_gemms", name, threads, r);
    }
    Ok(())
}

/// One SGD training step of the MLP 784-512-512-10 (ReLU, mean sparse softmax cross-entropy;
/// `benches/common/models.rs`).
fn mlp(threads: usize, batch: usize) -> tfr::Result<()> {
    let models::TrainStep {
        g,
        x,
        y,
        loss,
        train,
        init,
        feeds,
    } = models::mlp(batch).expect("the MLP builds");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    // Two ways to use the threads: a dataflow pool running independent nodes at once, or nodes
    // in order with each kernel (gemm) using every thread.
    for (variant, inter_op) in [("callable", threads), ("callable_intra_op", 1)] {
        let s = Session::new(&g, options(inter_op))?;
        s.run(&[], &[], &[init])?;
        if std::env::var_os("TFR_DUMP").is_some() {
            for (n, d) in s.placement(&[x, y], &[loss], &[train])? {
                eprintln!("{n} {d}");
            }
        }
        let step = s.make_callable(&[x, y], &[loss], &[train])?;
        if std::env::var_os("PEERS_TRACE").is_some() {
            print_trace(&format!("mlp{batch}"), variant, &pool, &step, &feeds)?;
        }
        let r = pool.install(|| {
            measure(|| {
                step.call(&feeds).expect("step");
            })
        });
        report(&format!("mlp{batch}"), variant, threads, r);
    }
    Ok(())
}

/// One SGD training step (lr 0.01) of the peers' LeNet-like CNN on 64 28x28x1 NHWC images
/// (`benches/common/models.rs`, which describes it).
fn cnn(threads: usize) -> tfr::Result<()> {
    let models::TrainStep {
        g,
        x,
        y,
        loss,
        train,
        init,
        feeds,
    } = models::lenet(64).expect("the CNN builds");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    for (variant, inter_op) in [("callable", threads), ("callable_intra_op", 1)] {
        let s = Session::new(&g, options(inter_op))?;
        s.run(&[], &[], &[init])?;
        let step = s.make_callable(&[x, y], &[loss], &[train])?;
        if std::env::var_os("PEERS_TRACE").is_some() {
            print_trace("cnn64", variant, &pool, &step, &feeds)?;
        }
        let r = pool.install(|| {
            measure(|| {
                step.call(&feeds).expect("step");
            })
        });
        report("cnn64", variant, threads, r);
    }
    Ok(())
}

/// 1000 iterations of `x = x * 0.999 + 1` on a scalar inside one step, as a `while_loop`
/// (`i < 1000`); with `grad`, also d(x_1000)/d(x_0) through the backward loop. Reports the step
/// (`median_s`, with `iters`) and prints the time per iteration.
fn while1000(threads: usize, grad: bool) -> tfr::Result<()> {
    use tfr::graph::ops::control_flow_ops::WhileOptions;
    const N: i32 = 1000;
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(N)?;
            g.less(v[0], n)
        },
        |g, v| {
            let one = g.scalar(1i32)?;
            let c = g.scalar(0.999f32)?;
            let b = g.scalar(1.0f32)?;
            let y = g.mul(v[1], c)?;
            Ok(vec![g.add(v[0], one)?, g.add(y, b)?])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    let mut fetches = vec![r[1]];
    if grad {
        let dx = tfr::graph::gradients(&mut g, &[r[1]], &[x], None)?[0]
            .ok_or_else(|| tfr::GraphError::Gradient("no gradient for x".into()))?;
        fetches.push(dx);
    }
    let s = Session::new(&g, options(threads))?;
    let call = s.make_callable(&[x], &fetches, &[])?;
    let feeds = [Tensor::scalar(1.0f32)];
    let out = call.call(&feeds)?;
    let want_y = 1000.0 + (1.0 - 1000.0) * 0.999f64.powi(N);
    let want_g = 0.999f64.powi(N);
    let got_y = out[0].scalar_value::<f32>()? as f64;
    assert!(
        (got_y - want_y).abs() < 1e-1,
        "while1000: {got_y} != {want_y}"
    );
    if grad {
        let got_g = out[1].scalar_value::<f32>()? as f64;
        assert!(
            (got_g - want_g).abs() < 1e-3,
            "while1000_grad: {got_g} != {want_g}"
        );
    }
    let bench = if grad { "while1000_grad" } else { "while1000" };
    let (median, first, samples, _cpu, _min) = measure(|| {
        call.call(&feeds).expect("step");
    });
    println!(
        "{{\"fw\": \"tfr\", \"version\": \"{}\", \"bench\": \"{bench}\", \"variant\": \"callable\", \"threads\": {threads}, \"iters\": {N}, \"median_s\": {median:e}, \"first_s\": {first:e}, \"samples\": {samples}}}",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!(
        "# tfr    {bench:15} {:22} median {:12.2} us/step, {:.4} us/iteration",
        "callable",
        median * 1e6,
        median * 1e6 / N as f64
    );
    Ok(())
}

/// The LSTM language model of ../shared/PEERS.md (`lstm`: vocabulary 10k, embedding 200,
/// 2 x 200 LSTM, 20 steps, batch 20, full softmax, SGD; peers' ids uniform in the vocabulary)
/// with `tfr_nn::models::lstm_lm`: one fused `BlockLSTM` op per layer (`block`), unrolled
/// (`callable`) and as a `scan` loop (`loop`); with
/// `sampled`, sampled softmax (512 log-uniform samples) at vocabulary `vocab`.
fn lstm_lm(threads: usize, vocab: usize, sampled: Option<usize>) -> tfr::Result<()> {
    use tfr::nn::models::lstm_lm::{lstm_lm, LstmLmConfig, Softmax};
    use tfr::nn::rnn::LstmImpl;
    let softmax = sampled.map_or(Softmax::Full, Softmax::Sampled);
    let bench = match sampled {
        None if vocab == 10_000 => "lstm".to_string(),
        None => format!("lstm_full{}k", vocab / 1000),
        Some(n) => format!("lstm_sampled{n}_{}k", vocab / 1000),
    };
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut ids = || -> Vec<i32> {
        (0..400)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % vocab as u64) as i32
            })
            .collect()
    };
    let feeds = [
        Tensor::new(&[20, 20], ids())?,
        Tensor::new(&[20, 20], ids())?,
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let imps = [
        ("block", LstmImpl::Block),
        ("callable", LstmImpl::Unrolled),
        ("loop", LstmImpl::Loop),
    ];
    // `LSTM_IMPLS=block,callable` picks variants (default: all three); `LSTM_NO_LOOP` drops
    // the loop.
    let picked = std::env::var("LSTM_IMPLS").unwrap_or_else(|_| "block,callable,loop".into());
    for (variant, imp) in imps {
        if !picked.split(',').any(|p| p == variant)
            || (variant == "loop" && std::env::var_os("LSTM_NO_LOOP").is_some())
        {
            continue;
        }
        let mut g = Graph::new();
        let mut c = LstmLmConfig::paper(vocab, softmax);
        c.implementation = imp;
        let m = lstm_lm(&mut g, &c)?;
        let init = g.global_variables_initializer()?;
        for (v2, inter_op) in [
            (variant.to_string(), threads),
            (format!("{variant}_intra_op"), 1),
        ] {
            let sess = Session::new(&g, options(inter_op))?;
            sess.run(&[], &[], &[init])?;
            let step = sess.make_callable(&[m.ids, m.targets], &[m.loss], &[m.train])?;
            if std::env::var_os("PEERS_TRACE").is_some() {
                print_trace(&bench, &v2, &pool, &step, &feeds)?;
            }
            let r = pool.install(|| {
                measure(|| {
                    step.call(&feeds).expect("step");
                })
            });
            report(&bench, &v2, threads, r);
        }
    }
    Ok(())
}

/// With `PEERS_TRACE` set: one traced step (after two warm-up steps), its time by op type and
/// its 15 slowest nodes, on stderr. With `PEERS_TRACE_STEPS=N`, N traced steps, and the
/// nodes' times are their medians over them (one traced step is too noisy to compare builds).
fn print_trace(
    bench: &str,
    variant: &str,
    pool: &rayon::ThreadPool,
    step: &tfr::Callable,
    feeds: &[Tensor],
) -> tfr::Result<()> {
    let steps: usize = std::env::var("PEERS_TRACE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let traces = pool.install(|| -> tfr::Result<Vec<_>> {
        step.call(feeds)?;
        step.call(feeds)?;
        (0..steps)
            .map(|_| {
                Ok(step
                    .call_with_options(&RunOptions { trace: true }, feeds)?
                    .1)
            })
            .collect()
    })?;
    let md = &traces[0];
    eprintln!(
        "# {bench} {variant}: one traced step\n{}",
        md.op_summary_table(25)
    );
    if std::env::var("PEERS_TRACE").is_ok_and(|v| v == "timeline") {
        let mut by_start: Vec<_> = md.step_stats.iter().collect();
        by_start.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
        for s in by_start.iter().filter(|s| s.end_us - s.start_us >= 100.0) {
            eprintln!(
                "#   {:9.1} .. {:9.1} us  {:28} {}",
                s.start_us, s.end_us, s.op, s.node
            );
        }
    }
    // Each node's median time over the traced steps.
    let mut by_node: std::collections::BTreeMap<(&str, &str), Vec<f64>> = Default::default();
    for t in &traces {
        for s in &t.step_stats {
            by_node
                .entry((s.node.as_str(), s.op.as_str()))
                .or_default()
                .push(s.end_us - s.start_us);
        }
    }
    let mut nodes: Vec<(f64, &str, &str)> = by_node
        .into_iter()
        .map(|((node, op), mut v)| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], op, node)
        })
        .collect();
    nodes.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!("# slowest nodes, median of {steps} traced step(s):");
    for (us, op, node) in nodes.iter().take(15) {
        eprintln!("#   {us:9.1} us  {op:28} {node}");
    }
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
            "cnn64" => cnn(args.threads)?,
            "while1000" => while1000(args.threads, false)?,
            "while1000_grad" => while1000(args.threads, true)?,
            "lstm" => lstm_lm(args.threads, 10_000, None)?,
            "lstm_full100k" => lstm_lm(args.threads, 100_000, None)?,
            "lstm_gemms" => lstm_gemms(args.threads)?,
            "lstm_sampled100k" => lstm_lm(args.threads, 100_000, Some(512))?,
            other => eprintln!("# tfr    {other}: not implemented yet"),
        }
    }
    Ok(())
}
