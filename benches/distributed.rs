//! Distributed runtime benchmarks (issue 12) over real processes on loopback: the bench
//! binary re-runs itself as each task's server (environment `TFR_DIST_BENCH_SERVE`), so no
//! other binary is needed.
//!
//! - `null_step/*`: a client and one worker task; a fed f32 scalar added to itself on the task
//!   and fetched, through an in-process master (`ClusterSession`) and through the task's
//!   master service (`RemoteSession`, `grpc://`).
//! - `transfer_100MB`: a 100 MB f32 variable on task 0 read by an op on task 1 (RecvTensor,
//!   streamed in 4 MiB chunks); throughput in bytes per second.
//! - `dispatch/4_tasks`: one step = one small subgraph on each of 4 worker tasks, each fetched;
//!   throughput in subgraphs per second.
//!
//! Run: `cargo bench -p tfr-distributed --bench distributed` (also registered in the root
//! package: `cargo bench --bench distributed`).

use criterion::{black_box, Criterion, Throughput};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tfr_core::Tensor;
use tfr_distributed::{
    ClusterConfig, ClusterSession, ClusterSessionOptions, ClusterSpec, RemoteSession,
    RemoteSessionOptions, Server, ServerOptions, TaskId,
};
use tfr_graph::{DType, Graph, Shape};

const SERVE: &str = "TFR_DIST_BENCH_SERVE";

/// Server mode: `TFR_DIST_BENCH_SERVE=<cluster json>;<job>;<task>`.
fn serve(spec: &str) -> Result<(), String> {
    // As `tfr-server` does.
    tfr_distributed::keep_freed_buffers();
    let mut parts = spec.splitn(3, ';');
    let (json, job, task) = match (parts.next(), parts.next(), parts.next()) {
        (Some(j), Some(job), Some(t)) => (j, job, t),
        _ => return Err(format!("{SERVE} must be `json;job;task`, got `{spec}`")),
    };
    let cluster = ClusterConfig::from_json(json)
        .map_err(|e| e.to_string())?
        .cluster;
    let index = task.parse().map_err(|_| format!("bad task `{task}`"))?;
    let task = TaskId::new(job, index);
    let options = ServerOptions {
        stop_on_signal: true,
        ..ServerOptions::default()
    };
    let server = Server::start(&cluster, &task, options).map_err(|e| e.to_string())?;
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

fn start(jobs: &[(&str, usize)]) -> (ClusterSpec, Tasks) {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let listeners: Vec<std::net::TcpListener> = (0..jobs.iter().map(|j| j.1).sum())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let mut ports = listeners
        .iter()
        .map(|l| l.local_addr().expect("address").port());
    for (job, n) in jobs {
        let addrs = (0..*n)
            .map(|_| format!("127.0.0.1:{}", ports.next().expect("port")))
            .collect();
        map.insert(job.to_string(), addrs);
    }
    drop(listeners);
    let json = format!(
        "{{{}}}",
        map.iter()
            .map(|(job, addrs)| format!(
                "\"{job}\": [{}]",
                addrs
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let exe = std::env::current_exe().expect("the bench binary");
    let mut tasks = Tasks(Vec::new());
    for (job, addrs) in &map {
        for i in 0..addrs.len() {
            let mut child = Command::new(&exe)
                .env(SERVE, format!("{json};{job};{i}"))
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a server");
            let stdout = child.stdout.take().expect("stdout");
            tasks.0.push(child);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the server starts within 30 s");
            assert!(line.contains("listening"), "{line}");
        }
    }
    (ClusterSpec::new(map).expect("spec"), tasks)
}

fn null_step(c: &mut Criterion) {
    let (spec, _tasks) = start(&[("worker", 1)]);
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let y = g
        .with_device("/job:worker/task:0", |g| g.add(x, x))
        .unwrap();
    let local = ClusterSession::new(&spec, &g, ClusterSessionOptions::default()).unwrap();
    let address = spec.address(&TaskId::new("worker", 0)).unwrap();
    let remote = RemoteSession::new(
        &format!("grpc://{address}"),
        &g,
        RemoteSessionOptions::default(),
    )
    .unwrap();
    let mut group = c.benchmark_group("null_step");
    let mut i = 0f32;
    group.bench_function("cluster_session", |b| {
        b.iter(|| {
            i += 1.0;
            let out = local.run(&[(x, Tensor::scalar(i))], &[y], &[]).unwrap();
            assert_eq!(out[0].scalar_value::<f32>().unwrap(), 2.0 * i);
        })
    });
    group.bench_function("remote_session", |b| {
        b.iter(|| {
            i += 1.0;
            let out = remote.run(&[(x, Tensor::scalar(i))], &[y], &[]).unwrap();
            assert_eq!(out[0].scalar_value::<f32>().unwrap(), 2.0 * i);
        })
    });
    group.finish();
}

fn transfer(c: &mut Criterion) {
    const N: usize = 25_000_000; // 100 MB of f32
    let (spec, _tasks) = start(&[("worker", 2)]);
    let mut g = Graph::new();
    let (big, init) = g.with_device("/job:worker/task:0", |g| {
        let v = g.scalar(1.5f32).unwrap();
        let fill = g.fill(&[N as i64], v).unwrap();
        let big = g.variable("big", fill).unwrap();
        (big, g.global_variables_initializer().unwrap())
    });
    let read = g
        .with_device("/job:worker/task:1", |g| g.identity(big.value))
        .unwrap();
    let s = ClusterSession::new(
        &spec,
        &g,
        ClusterSessionOptions {
            optimize: false,
            ..ClusterSessionOptions::default()
        },
    )
    .unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let mut group = c.benchmark_group("transfer");
    group.throughput(Throughput::Bytes((N * 4) as u64));
    group.sample_size(10);
    group.bench_function("100MB_between_two_tasks", |b| {
        b.iter(|| black_box(s.run(&[], &[], &[read.node]).unwrap()))
    });
    group.finish();
}

fn dispatch(c: &mut Criterion) {
    const TASKS: usize = 4;
    let (spec, _tasks) = start(&[("worker", TASKS)]);
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let ys: Vec<_> = (0..TASKS)
        .map(|k| {
            g.with_device(&format!("/job:worker/task:{k}"), |g| {
                let c = g.scalar(k as f32)?;
                g.add(x, c)
            })
            .unwrap()
        })
        .collect();
    let s = ClusterSession::new(&spec, &g, ClusterSessionOptions::default()).unwrap();
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(TASKS as u64));
    group.bench_function("4_tasks", |b| {
        b.iter(|| black_box(s.run(&[(x, Tensor::scalar(1.0f32))], &ys, &[]).unwrap()))
    });
    // Several clients at once (each a session with its own runtime): subgraphs started per
    // second by 4 concurrent client threads.
    let clients: Vec<ClusterSession> = (0..4)
        .map(|_| ClusterSession::new(&spec, &g, ClusterSessionOptions::default()).unwrap())
        .collect();
    for s in &clients {
        s.run(&[(x, Tensor::scalar(1.0f32))], &ys, &[]).unwrap();
    }
    group.bench_function("4_tasks_4_clients", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for s in &clients {
                    let ys = &ys;
                    scope.spawn(move || {
                        for _ in 0..iters.div_ceil(4) {
                            black_box(s.run(&[(x, Tensor::scalar(1.0f32))], ys, &[]).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

fn main() {
    if let Ok(spec) = std::env::var(SERVE) {
        if let Err(e) = serve(&spec) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    null_step(&mut c);
    transfer(&mut c);
    dispatch(&mut c);
    c.final_summary();
}
