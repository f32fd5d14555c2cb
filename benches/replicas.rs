//! The paper's synchronous replica microbenchmark (TensorFlow OSDI'16 §6.2), on real task
//! processes on loopback: the bench binary re-runs itself as each task's server (environment
//! `TFR_REPLICAS_BENCH_SERVE`). Every worker is a `worker` task process driven by its own
//! client thread (its own `ClusterSession`), the model lives on `--ps` ps tasks, and the
//! workers run their steps in lockstep (a barrier in the bench process before and after each
//! step), so a step lasts as long as its slowest worker, as in synchronous training. Null
//! models (no computation beyond what the fetch needs):
//!
//! - `scalar`: one f32 scalar variable per ps task, all read and added on the worker;
//! - `dense`: a 100 MB f32 model split evenly over the ps tasks, every shard fetched whole by
//!   the worker every step (summed on the worker);
//! - `sparse`: a 1,000,000 x 16 f32 embedding (64 MB) split over the ps tasks; each step every
//!   worker gathers 32 random rows (16 from each of 2 shards; gathered on the ps tasks).
//!
//! Then synchronous training (`SyncReplicas`, graph ops: accumulators, token queue) of a tiny
//! model with 3 workers, one of them delayed (a sleep before each of its steps), with 0 and 1
//! backup workers: the step time is the chief's update interval.
//!
//! Run (`harness = false`; arguments after `--`):
//! `cargo bench --bench replicas -- [--workers 1,2,4,8] [--ps 2] [--steps 200]
//!  [--dense-steps 5] [--straggler-ms 100] [--skip-dense]`
//! It prints one line per measurement and a fitted cost model (see `benches/RESULTS.md`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tfr_core::Tensor;
use tfr_distributed::{
    ClusterConfig, ClusterSession, ClusterSessionOptions, ClusterSpec, Server, ServerOptions,
    TaskId,
};
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tfr_nn::losses::mean_squared_error;
use tfr_nn::replication::{global_step, ReplicaDeviceSetter, SyncReplicas};
use tfr_nn::Sgd;

const SERVE: &str = "TFR_REPLICAS_BENCH_SERVE";
const DENSE_FLOATS: usize = 25_000_000; // 100 MB
const EMBED_ROWS: usize = 1_000_000;
const EMBED_DIM: usize = 16;
const SPARSE_ROWS: usize = 32;

/// Server mode: `TFR_REPLICAS_BENCH_SERVE=<cluster json>;<job>;<task>`.
fn serve(spec: &str) -> Result<(), String> {
    let mut parts = spec.splitn(3, ';');
    let (json, job, task) = match (parts.next(), parts.next(), parts.next()) {
        (Some(j), Some(job), Some(t)) => (j, job, t),
        _ => return Err(format!("{SERVE} must be `json;job;task`, got `{spec}`")),
    };
    let cluster = ClusterConfig::from_json(json)
        .map_err(|e| e.to_string())?
        .cluster;
    let index = task.parse().map_err(|_| format!("bad task `{task}`"))?;
    let options = ServerOptions {
        stop_on_signal: true,
        ..ServerOptions::default()
    };
    let server =
        Server::start(&cluster, &TaskId::new(job, index), options).map_err(|e| e.to_string())?;
    println!("listening on {}", server.address());
    server.wait().map_err(|e| e.to_string())
}

/// Server processes, killed on drop.
struct Tasks(Vec<Child>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(jobs: &[(&str, usize)]) -> Result<(ClusterSpec, Tasks), String> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let listeners = (0..jobs.iter().map(|j| j.1).sum())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    let mut ports = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.port());
    for (job, n) in jobs {
        let addrs = (0..*n)
            .map(|_| ports.next().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Option<Vec<_>>>()
            .ok_or("no port")?;
        map.insert(job.to_string(), addrs);
    }
    drop(listeners);
    let json = serde_json::to_string(&map).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut tasks = Tasks(Vec::new());
    for (job, addrs) in &map {
        for i in 0..addrs.len() {
            let mut child = Command::new(&exe)
                .env(SERVE, format!("{json};{job};{i}"))
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("spawn a server: {e}"))?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            tasks.0.push(child);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| format!("/job:{job}/task:{i} did not start within 30 s"))?;
            if !line.contains("listening") {
                return Err(format!("/job:{job}/task:{i}: {line}"));
            }
        }
    }
    Ok((ClusterSpec::new(map).map_err(|e| e.to_string())?, tasks))
}

fn options() -> ClusterSessionOptions {
    ClusterSessionOptions {
        step_timeout: Some(Duration::from_secs(300)),
        ..ClusterSessionOptions::default()
    }
}

/// Worker `k`'s graph of the three null models (same variable names in every worker's graph:
/// the variables are shared on the ps tasks).
struct NullModels {
    g: Graph,
    init: NodeId,
    scalar: Output,
    dense: Output,
    sparse: Output,
    ids: Vec<Output>,
}

fn null_models(ps: usize, k: usize) -> Result<NullModels, Box<dyn std::error::Error>> {
    let mut g = Graph::new();
    let worker = format!("/job:worker/task:{k}");
    let mut scalars = Vec::new();
    let mut shards = Vec::new();
    let mut gathered = Vec::new();
    let mut ids = Vec::new();
    for p in 0..ps {
        let dev = format!("/job:ps/task:{p}");
        let (s, d, e, id) = g.with_device(&dev, |g| -> tfr_graph::Result<_> {
            let one = g.scalar(1.0f32)?;
            let s = g.variable(&format!("scalar_{p}"), one)?;
            let n = (DENSE_FLOATS / ps) as i64;
            let v = g.scalar(0.5f32)?;
            let fill = g.fill(&[n], v)?;
            let d = g.variable(&format!("dense_{p}"), fill)?;
            let rows = (EMBED_ROWS / ps) as i64;
            let fill = g.fill(&[rows, EMBED_DIM as i64], v)?;
            let e = g.variable(&format!("embedding_{p}"), fill)?;
            let id = g.placeholder(&format!("ids_{p}"), DType::I32, Shape::unknown())?;
            let rows = g.gather(e.value, id, 0)?;
            Ok((s, d, rows, id))
        })?;
        scalars.push(s.value);
        shards.push(d.value);
        gathered.push(e);
        ids.push(id);
    }
    let init = g.global_variables_initializer()?;
    let (scalar, dense, sparse) = g.with_device(&worker, |g| -> tfr_graph::Result<_> {
        let scalar = g.add_n(&scalars)?;
        let sums = shards
            .iter()
            .map(|d| g.reduce_sum(*d, None, false))
            .collect::<tfr_graph::Result<Vec<_>>>()?;
        let dense = g.add_n(&sums)?;
        let rows = g.concat(&gathered, 0)?;
        let sparse = g.reduce_sum(rows, None, false)?;
        Ok((scalar, dense, sparse))
    })?;
    Ok(NullModels {
        g,
        init,
        scalar,
        dense,
        sparse,
        ids,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A small deterministic generator (xorshift) for the sparse model's row ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Lockstep steps of every worker: (lockstep step times, every worker's own run times), ms.
fn lockstep(
    sessions: &[Arc<ClusterSession>],
    models: &[Arc<NullModels>],
    which: &'static str,
    steps: usize,
    ps: usize,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let w = sessions.len();
    let barrier = Arc::new(Barrier::new(w));
    let handles: Vec<_> = (0..w)
        .map(|k| {
            let (s, m, barrier) = (sessions[k].clone(), models[k].clone(), barrier.clone());
            std::thread::spawn(move || -> Result<(Vec<f64>, Vec<f64>), String> {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (k as u64 + 1));
                let per_shard = SPARSE_ROWS / ps;
                let shard_rows = (EMBED_ROWS / ps) as u64;
                let (mut step_ms, mut own_ms) = (Vec::new(), Vec::new());
                for i in 0..steps + 2 {
                    let feeds: Vec<(Output, Tensor)> = if which == "sparse" {
                        m.ids
                            .iter()
                            .map(|&o| {
                                let ids: Vec<i32> = (0..per_shard)
                                    .map(|_| (rng.next() % shard_rows) as i32)
                                    .collect();
                                Tensor::new(&[per_shard], ids).map(|t| (o, t))
                            })
                            .collect::<Result<_, _>>()
                            .map_err(|e| e.to_string())?
                    } else {
                        Vec::new()
                    };
                    let fetch = match which {
                        "scalar" => m.scalar,
                        "dense" => m.dense,
                        _ => m.sparse,
                    };
                    barrier.wait();
                    let t0 = Instant::now();
                    s.run(&feeds, &[fetch], &[]).map_err(|e| e.to_string())?;
                    let own = t0.elapsed().as_secs_f64() * 1e3;
                    barrier.wait();
                    let all = t0.elapsed().as_secs_f64() * 1e3;
                    if i >= 2 {
                        // The first two steps register and warm the graphs.
                        step_ms.push(all);
                        own_ms.push(own);
                    }
                }
                Ok((step_ms, own_ms))
            })
        })
        .collect();
    let mut step = Vec::new();
    let mut own = Vec::new();
    for (k, h) in handles.into_iter().enumerate() {
        let (s, o) = h.join().map_err(|_| format!("worker {k} panicked"))??;
        if k == 0 {
            step = s;
        }
        own.extend(o);
    }
    Ok((step, own))
}

/// Synchronous training of a tiny linear model with 3 workers, m of them per update, worker 2
/// sleeping `delay` before each step: the chief's update intervals (ms).
fn straggler(m: usize, delay: Duration, updates: usize) -> Result<Vec<f64>, String> {
    const N: usize = 3;
    let (spec, _tasks) = start(&[("ps", 1), ("worker", N)])?;
    struct Replica {
        s: ClusterSession,
        train: NodeId,
        update: NodeId,
        close: NodeId,
        local_init: NodeId,
        init: NodeId,
        chief_init: NodeId,
        x: Output,
        y: Output,
    }
    let build = |k: usize| -> Result<Replica, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[4, 3]))
            .map_err(|x| e(&x))?;
        let y = g
            .placeholder("y", DType::F32, Shape::known(&[4, 1]))
            .map_err(|x| e(&x))?;
        let w0 = g
            .constant_from(&[3, 1], vec![0.1f32, 0.2, 0.3])
            .map_err(|x| e(&x))?;
        let w = g.variable("w", w0).map_err(|x| e(&x))?;
        let gs = global_step(&mut g).map_err(|x| e(&x))?;
        let pred = g.matmul(x, w.value).map_err(|x| e(&x))?;
        let loss = mean_squared_error(&mut g, pred, y).map_err(|x| e(&x))?;
        let setter =
            ReplicaDeviceSetter::new(1, &format!("/job:worker/task:{k}")).map_err(|x| e(&x))?;
        let mut sync = SyncReplicas::new(Sgd::new(0.01), m, N)
            .map_err(|x| e(&x))?
            .take_timeout_ms(60_000);
        let ops = sync
            .minimize(&mut g, loss, &[w], &gs, &setter)
            .map_err(|x| e(&x))?;
        let init = g.global_variables_initializer().map_err(|x| e(&x))?;
        setter.apply(&mut g).map_err(|x| e(&x))?;
        let s = ClusterSession::new(&spec, &g, options()).map_err(|x| e(&x))?;
        Ok(Replica {
            s,
            train: ops.train,
            update: ops.chief_update,
            close: ops.close_token_queue,
            local_init: ops.local_step_init,
            init,
            chief_init: ops.chief_init,
            x,
            y,
        })
    };
    let replicas = (0..N).map(build).collect::<Result<Vec<_>, _>>()?;
    let run = |r: &Replica, t: &[NodeId]| r.s.run(&[], &[], t).map_err(|e| e.to_string());
    run(&replicas[0], &[replicas[0].init])?;
    run(&replicas[0], &[replicas[0].chief_init])?;
    for r in &replicas {
        run(r, &[r.local_init])?;
    }
    let aggregator = build(0)?;
    let chief = std::thread::spawn(move || -> Result<Vec<f64>, String> {
        let mut times = Vec::new();
        let mut last = Instant::now();
        let mut result = Ok(());
        for i in 0..updates + 3 {
            if let Err(e) = aggregator.s.run(&[], &[], &[aggregator.update]) {
                result = Err(e.to_string());
                break;
            }
            let now = Instant::now();
            if i >= 3 {
                times.push((now - last).as_secs_f64() * 1e3);
            }
            last = now;
        }
        let _ = aggregator.s.run(&[], &[], &[aggregator.close]);
        result.map(|()| times)
    });
    let workers: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            std::thread::spawn(move || {
                let x = Tensor::new(&[4, 3], vec![0.5f32; 12]).expect("x");
                let y = Tensor::new(&[4, 1], vec![1.0f32; 4]).expect("y");
                loop {
                    if k == N - 1 {
                        std::thread::sleep(delay);
                    }
                    // Ends with the closed token queue (out of range).
                    if r.s
                        .run(&[(r.x, x.clone()), (r.y, y.clone())], &[], &[r.train])
                        .is_err()
                    {
                        break;
                    }
                }
            })
        })
        .collect();
    let times = chief.join().map_err(|_| "the chief panicked")??;
    for w in workers {
        let _ = w.join();
    }
    Ok(times)
}

/// Least squares y = a + b x.
fn fit(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

/// The `q` quantile of sorted samples (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

struct Args {
    workers: Vec<usize>,
    ps: usize,
    steps: usize,
    dense_steps: usize,
    straggler_ms: u64,
    dense: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        workers: vec![1, 2, 4, 8],
        ps: 2,
        steps: 200,
        dense_steps: 5,
        straggler_ms: 100,
        dense: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name}: `{v}` is not a positive number"))
        };
        match flag.as_str() {
            "--workers" => {
                a.workers = value("--workers")?
                    .split(',')
                    .map(|v| num("--workers", v.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--ps" => a.ps = num("--ps", value("--ps")?)?,
            "--steps" => a.steps = num("--steps", value("--steps")?)?,
            "--dense-steps" => a.dense_steps = num("--dense-steps", value("--dense-steps")?)?,
            "--straggler-ms" => {
                a.straggler_ms = num("--straggler-ms", value("--straggler-ms")?)? as u64
            }
            "--skip-dense" => a.dense = false,
            // cargo bench passes `--bench`.
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !SPARSE_ROWS.is_multiple_of(a.ps) || a.ps > 16 {
        return Err(format!(
            "--ps: {} must divide {SPARSE_ROWS} (and be <= 16)",
            a.ps
        ));
    }
    Ok(a)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut rows: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    let mut own_samples: Vec<f64> = Vec::new();
    for &w in &args.workers {
        let (spec, _tasks) = start(&[("ps", args.ps), ("worker", w)])?;
        let models = (0..w)
            .map(|k| null_models(args.ps, k).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let sessions = models
            .iter()
            .map(|m| ClusterSession::new(&spec, &m.g, options()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        sessions[0].run(&[], &[], &[models[0].init])?;
        let mut which: Vec<(&'static str, usize)> = vec![("scalar", args.steps)];
        if args.dense {
            which.push(("dense", args.dense_steps));
        }
        which.push(("sparse", args.steps));
        for (name, steps) in which {
            let (mut step, mut own) = lockstep(&sessions, &models, name, steps, args.ps)?;
            let med = median(&mut step);
            let own_med = median(&mut own);
            println!(
                "{name:>6} workers {w:>2} ps {}: median step {med:9.3} ms (p90 {:9.3}), \
                 median worker fetch {own_med:9.3} ms, {} steps",
                args.ps,
                quantile(&step, 0.9),
                step.len()
            );
            if name == "scalar" {
                own_samples.extend(own.iter().copied());
            }
            rows.entry(name).or_default().push((w as f64, med));
        }
    }
    // The cost model: t(W) = a + b W per null model (a: per-step overhead, b: the cost each
    // added worker puts on the shared ps tasks and cores), fitted on every point and on all but
    // the largest W (to check the extrapolation against the largest measured).
    println!("\ncost model t(W) = a + b W (ms):");
    for (name, pts) in &rows {
        let (xs, ys): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
        let (a, b) = fit(&xs, &ys);
        let mut line = format!(
            "{name:>6}: a = {a:.3}, b = {b:.3}; predicts W=100: {:.1}, W=1000: {:.1}",
            a + 100.0 * b,
            a + 1000.0 * b
        );
        if xs.len() >= 3 {
            let k = xs.len() - 1;
            let (a2, b2) = fit(&xs[..k], &ys[..k]);
            line += &format!(
                "; fitted without W={}: predicts {:.3} there, measured {:.3}",
                xs[k],
                a2 + b2 * xs[k],
                ys[k]
            );
        }
        if *name == "dense" {
            line += &format!(
                "; effective ps bandwidth {:.0} MB/s",
                (DENSE_FLOATS * 4) as f64 / 1e6 / (b / 1e3)
            );
        }
        println!("{line}");
    }
    // Stragglers: the per-worker fetch time distribution (scalar model, all W) gives the
    // expected slowest of n workers (m = n) as the n/(n+1) quantile, and with b backups the
    // (n-b)/(n+1) quantile.
    own_samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "\nper-worker scalar fetch ({} samples): median {:.3} ms, p90 {:.3}, p99 {:.3}, max {:.3}",
        own_samples.len(),
        quantile(&own_samples, 0.5),
        quantile(&own_samples, 0.9),
        quantile(&own_samples, 0.99),
        own_samples[own_samples.len() - 1]
    );
    for n in [100.0f64, 1000.0] {
        let slowest = quantile(&own_samples, n / (n + 1.0));
        let backup5 = quantile(&own_samples, (n * 0.95) / (n + 1.0));
        println!(
            "  n = {n}: expected slowest worker's fetch {slowest:.3} ms (m = n); \
             with 5% backups (m = 0.95 n) {backup5:.3} ms"
        );
    }
    let delay = Duration::from_millis(args.straggler_ms);
    println!("\nsynchronous training, 3 workers, 1 ps, tiny model:");
    for (m, label) in [
        (3, "m = 3 of 3, no straggler"),
        (2, "m = 2 of 3, no straggler"),
    ] {
        let mut t = straggler(m, Duration::ZERO, 60)?;
        println!("  {label}: median update interval {:.3} ms", median(&mut t));
    }
    for (m, label) in [(3, "0 backups"), (2, "1 backup ")] {
        let mut t = straggler(m, delay, 30)?;
        println!(
            "  worker 2 delayed {} ms per step, {label} (m = {m} of 3): median update \
             interval {:.3} ms",
            args.straggler_ms,
            median(&mut t)
        );
    }
    Ok(())
}

fn main() {
    if let Ok(spec) = std::env::var(SERVE) {
        if let Err(e) = serve(&spec) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
