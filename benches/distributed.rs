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
//!   throughput in subgraphs per second. The fed `x` lives on one task, which sends it to the
//!   other three; `dispatch/4_tasks_feed_per_task` feeds each task its own value instead, so
//!   a step is exactly one RunGraph per task; `dispatch/4_tasks_feed_per_task_8_in_flight` runs
//!   that step from 8 client threads sharing one session (8 steps in flight), `..._8_run_many`
//!   from one thread with `ClusterSession::run_many` (8 steps at once).
//! - `mlp_step/*`, `lenet_step/*`: the MLP 784-512-512-10 (batch 64 and 256) and LeNet (batch
//!   64) SGD steps of `../shared/PEERS.md` (`benches/common/models.rs`) in one process, and with their
//!   variables on a `ps` task and their compute on a `worker` task.
//!
//! The transfer and dispatch groups also print the CPU time all processes used per unit
//! (from /proc): on a shared machine it varies less than the wall time.
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

#[path = "common/models.rs"]
mod models;

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
    // Up to 6 processes share the machine's cores: one runtime thread per task (set
    // `TFR_BENCH_RUNTIME_THREADS=0` for the default, one per core).
    let threads = std::env::var("TFR_BENCH_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    let options = ServerOptions {
        stop_on_signal: true,
        runtime_threads: (threads > 0).then_some(threads),
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

/// CPU time (user + system) process `pid` used so far, from /proc (Linux; USER_HZ = 100).
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After `pid (comm) state`: utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time used so far by this process and the tasks.
fn cpu_total(tasks: &Tasks) -> Duration {
    std::iter::once(std::process::id())
        .chain(tasks.0.iter().map(Child::id))
        .filter_map(cpu_of)
        .sum()
}

/// Runs `step` `n` times; prints the wall time and the CPU time of every process per unit
/// (`per_step` units per step): on a shared machine the CPU figure is the steadier one.
fn cpu_per_unit(what: &str, tasks: &Tasks, n: usize, per_step: usize, mut step: impl FnMut()) {
    let (cpu0, t0) = (cpu_total(tasks), Instant::now());
    for _ in 0..n {
        step();
    }
    let (wall, cpu) = (t0.elapsed(), cpu_total(tasks) - cpu0);
    let units = (n * per_step) as f64;
    println!(
        "{what}: {n} steps, wall {:.1} us per unit ({:.0} per s); CPU of all processes {:.1} us \
         per unit ({:.0} per CPU-second)",
        wall.as_secs_f64() * 1e6 / units,
        units / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / units,
        units / cpu.as_secs_f64().max(1e-9)
    );
}

/// Whether the command line's benchmark filter (criterion's positional argument, matched as
/// a substring here) selects a benchmark named `name` (or no filter is given): the groups not
/// selected start no processes.
fn selected(name: &str) -> bool {
    const VALUED: [&str; 12] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--output-format",
        "--color",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--profile-time",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !VALUED.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| name.contains(f.trim_end_matches('$')) || f.contains(name))
}

fn null_step(c: &mut Criterion) {
    if !selected("null_step/") {
        return;
    }
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
    if !selected("transfer/100MB_between_two_tasks") {
        return;
    }
    let (spec, tasks) = start(&[("worker", 2)]);
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
    cpu_per_unit("transfer/100MB (unit: 100 MB step)", &tasks, 20, 1, || {
        black_box(s.run(&[], &[], &[read.node]).unwrap());
    });
    group.finish();
}

fn dispatch(c: &mut Criterion) {
    const TASKS: usize = 4;
    if !selected("dispatch/4_tasks") {
        return;
    }
    let (spec, tasks) = start(&[("worker", TASKS)]);
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
    cpu_per_unit(
        "dispatch/4_tasks (unit: subgraph)",
        &tasks,
        3000,
        TASKS,
        || {
            black_box(s.run(&[(x, Tensor::scalar(1.0f32))], &ys, &[]).unwrap());
        },
    );
    // The same with a feed per task (placed there): each task's subgraph takes its value from
    // the RunGraph message, so a step is exactly one RunGraph per task and nothing else (above,
    // `x` lives on one task and the other three receive it from there).
    let mut gi = Graph::new();
    let mut xs = Vec::new();
    let mut yis = Vec::new();
    for k in 0..TASKS {
        let (xk, yk) = gi
            .with_device(&format!("/job:worker/task:{k}"), |g| {
                let xk = g.placeholder(&format!("x{k}"), DType::F32, Shape::scalar())?;
                let c = g.scalar(k as f32)?;
                Ok::<_, tfr_graph::GraphError>((xk, g.add(xk, c)?))
            })
            .unwrap();
        xs.push(xk);
        yis.push(yk);
    }
    let si = ClusterSession::new(&spec, &gi, ClusterSessionOptions::default()).unwrap();
    let feeds: Vec<_> = xs.iter().map(|&xk| (xk, Tensor::scalar(1.0f32))).collect();
    group.bench_function("4_tasks_feed_per_task", |b| {
        b.iter(|| black_box(si.run(&feeds, &yis, &[]).unwrap()))
    });
    cpu_per_unit(
        "dispatch/4_tasks_feed_per_task (unit: subgraph)",
        &tasks,
        3000,
        TASKS,
        || {
            black_box(si.run(&feeds, &yis, &[]).unwrap());
        },
    );
    // Several steps in flight: client threads sharing the session (and so its RunGraph stream
    // to each task), each running the feed-per-task step; requests and answers of different
    // steps travel together.
    const IN_FLIGHT: usize = 8;
    let in_flight = |steps: u64| {
        std::thread::scope(|scope| {
            for _ in 0..IN_FLIGHT {
                let (si, feeds, yis) = (&si, &feeds, &yis);
                scope.spawn(move || {
                    for _ in 0..steps.div_ceil(IN_FLIGHT as u64) {
                        black_box(si.run(feeds, yis, &[]).unwrap());
                    }
                });
            }
        })
    };
    group.bench_function("4_tasks_feed_per_task_8_in_flight", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            in_flight(iters);
            start.elapsed()
        })
    });
    cpu_per_unit(
        "dispatch/4_tasks_feed_per_task_8_in_flight (unit: subgraph)",
        &tasks,
        1,
        8000 * TASKS,
        || in_flight(8000),
    );
    // The same 8 steps in flight from one thread (`ClusterSession::run_many`): no client
    // threads handing the session's runtime to each other.
    let feed_sets = vec![feeds.clone(); IN_FLIGHT];
    let concurrent = |steps: u64| {
        for _ in 0..steps.div_ceil(IN_FLIGHT as u64) {
            for r in si.run_many(&feed_sets, &yis, &[]) {
                black_box(r.unwrap());
            }
        }
    };
    group.bench_function("4_tasks_feed_per_task_8_run_many", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            concurrent(iters);
            start.elapsed()
        })
    });
    cpu_per_unit(
        "dispatch/4_tasks_feed_per_task_8_run_many (unit: subgraph)",
        &tasks,
        1,
        8000 * TASKS,
        || concurrent(8000),
    );
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

/// A training step of `../shared/PEERS.md`; with `ps`, its variables (and their updates) go to
/// `/job:ps/task:0` and the rest to `/job:worker/task:0`, as TensorFlow's
/// `replica_device_setter` places them.
fn placed(step: models::TrainStep, ps: bool) -> models::TrainStep {
    let mut step = step;
    if ps {
        tfr_nn::replication::ReplicaDeviceSetter::new(1, "/job:worker/task:0")
            .unwrap()
            .apply(&mut step.g)
            .unwrap();
    }
    step
}

/// The distributed overhead of a real step: the MLP step (batch 64 and 256) and the LeNet step
/// (batch 64) in one process (`tfr_core::Session`, default options) against the same step with
/// its variables on a `ps` task and its compute on a `worker` task (a `ClusterSession` in the
/// bench process as the client and master).
fn mlp_step(c: &mut Criterion) {
    if !selected("mlp_step/") && !selected("lenet_step/") {
        return;
    }
    type Build = fn(usize) -> Result<models::TrainStep, Box<dyn std::error::Error>>;
    let cases: [(&str, Build, usize); 3] = [
        ("mlp_step", models::mlp, 64),
        ("mlp_step", models::mlp, 256),
        ("lenet_step", models::lenet, 64),
    ];
    for (group_name, build, batch) in cases {
        if !selected(&format!("{group_name}/")) {
            continue;
        }
        // A fresh ps task per model: its variables outlive sessions, and the models name
        // theirs alike (`fc1/kernel`).
        let (spec, tasks) = start(&[("ps", 1), ("worker", 1)]);
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        let m = placed(build(batch).unwrap(), false);
        let s = tfr_core::Session::new(&m.g, tfr_core::SessionOptions::default()).unwrap();
        s.run(&[], &[], &[m.init]).unwrap();
        let step = s.make_callable(&[m.x, m.y], &[m.loss], &[m.train]).unwrap();
        let name = format!("one_process_batch{batch}");
        group.bench_function(&name, |b| {
            b.iter(|| black_box(step.call(&m.feeds).unwrap()))
        });
        if selected(&format!("{group_name}/{name}")) {
            cpu_per_unit(&format!("{group_name}/{name}"), &tasks, 50, 1, || {
                black_box(step.call(&m.feeds).unwrap());
            });
        }
        let m = placed(build(batch).unwrap(), true);
        let s = ClusterSession::new(&spec, &m.g, ClusterSessionOptions::default()).unwrap();
        s.run(&[], &[], &[m.init]).unwrap();
        let feeds = [(m.x, m.feeds[0].clone()), (m.y, m.feeds[1].clone())];
        let name = format!("ps_worker_batch{batch}");
        group.bench_function(&name, |b| {
            b.iter(|| black_box(s.run(&feeds, &[m.loss], &[m.train]).unwrap()))
        });
        if selected(&format!("{group_name}/{name}")) {
            cpu_per_unit(&format!("{group_name}/{name}"), &tasks, 50, 1, || {
                black_box(s.run(&feeds, &[m.loss], &[m.train]).unwrap());
            });
        }
        group.finish();
    }
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
    mlp_step(&mut c);
    c.final_summary();
}
