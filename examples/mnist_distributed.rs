//! The main job's LeNet trained by data parallelism over local processes (issue 13): `--ps`
//! parameter-server tasks hold the variables (greedy by size), `--workers` worker tasks each
//! compute gradients on their own batches, synchronously with `--backup` backup workers
//! (SyncReplicas around Adam; the chief's aggregation loop runs beside its worker) or
//! asynchronously (`--async`). Every task is a child process of this program (it runs itself
//! with `--serve`); one client thread per worker drives its task through a `ClusterSession`
//! inside a `MonitoredSession`: the chief initializes or restores, writes sharded checkpoints
//! (one Save per ps task) every `--save-every` global steps; the others wait until the model
//! is ready. `--kill-worker-at STEP` SIGKILLs the last worker task at that global step and
//! restarts it (its client recovers and rejoins); `--kill-ps-at STEP` SIGKILLs a ps task (one
//! that does not hold the global step, when there are several) and restarts it (every client
//! recovers, the chief restores the latest checkpoint; synchronous training too).
//!
//! ```sh
//! cargo run --release --example mnist_distributed -- --workers 3 --ps 2 --backup 1 --steps 300
//! cargo run --release --example mnist_distributed -- --async --kill-ps-at 150
//! cargo run --release --example mnist_distributed -- --kill-ps-at 150
//! ```
//!
//! MNIST is fetched once (as by the `mnist` example) and cached under `$TFR_DATA`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tfr::distributed::{
    ChannelOptions, ClusterConfig, ClusterSession, ClusterSessionOptions, ClusterSpec, Error,
    Server, ServerOptions, TaskId,
};
use tfr::graph;
use tfr::nn::datasets::mnist::{self, Mnist};
use tfr::nn::pipeline::gather_rows;
use tfr::nn::replication::{
    global_step, Event, Failure, ModelOps, MonitoredConfig, MonitoredSession, PsStrategy,
    ReplicaDeviceSetter, ShardedSaver, StepRunner, SyncReplicas,
};
use tfr::nn::{Adam, Optimizer};
use tfr::{Graph, NodeId, Output, Tensor};

graph! {
    /// The main job's LeNet-5 (`examples/mnist.rs`), without its single-process train op.
    pub model LeNet<B> {
        seed = 7;
        input images: f32[B, 28, 28, 1];
        input labels: i32[B];
        scope "conv1" {
            var k1: f32[5, 5, 1, 32] = glorot_uniform();
            var c1: f32[32] = zeros();
            let h1 = max_pool(relu(bias_add(conv2d(images, k1), c1)), 2);
        }
        scope "conv2" {
            var k2: f32[5, 5, 32, 64] = glorot_uniform();
            var c2: f32[64] = zeros();
            let h2 = max_pool(relu(bias_add(conv2d(h1, k2), c2)), 2);
        }
        scope "fc1" {
            var w3: f32[3136, 1024] = glorot_uniform();
            var b3: f32[1024] = zeros();
            let h3 = relu(reshape(h2, [B, 3136]).matmul(w3) + b3);
        }
        scope "fc2" {
            var w4: f32[1024, 10] = glorot_uniform();
            var b4: f32[10] = zeros();
        }
        output logits = h3.matmul(w4) + b4;
        output loss = sparse_softmax_cross_entropy(logits, labels);
        output correct = sum(cast(argmax(logits, 1) == cast(labels, i64), f32));
    }
}

const USAGE: &str = "\
usage: mnist_distributed [--workers N] [--ps N] [--backup N] [--async] [--steps N] [--batch N]
                         [--save-every N] [--log-every N] [--kill-worker-at STEP]
                         [--kill-ps-at STEP] [--out DIR]

  --workers N         worker tasks (default 3); worker 0 is the chief
  --ps N              parameter-server tasks (default 2)
  --backup N          backup workers of synchronous training (default 1): each update
                      aggregates the first workers - backup gradients
  --async             asynchronous training instead (no aggregation, no backups)
  --steps N           global steps to train (default 1000)
  --batch N           examples per worker step (default 64)
  --save-every N      the chief checkpoints every N global steps (default 100)
  --log-every N       a progress line per worker every N of its steps (default 50)
  --kill-worker-at S  SIGKILL the last worker task at global step S, then restart it
  --kill-ps-at S      SIGKILL a ps task (one without the global step if --ps >= 2) at
                      global step S, then restart it
  --out DIR           checkpoints (default $TFR_DATA/mnist-distributed)";

struct Args {
    workers: usize,
    ps: usize,
    backup: usize,
    asynchronous: bool,
    steps: i64,
    batch: usize,
    save_every: u64,
    log_every: usize,
    kill_worker_at: Option<i64>,
    kill_ps_at: Option<i64>,
    out: PathBuf,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        workers: 3,
        ps: 2,
        backup: 1,
        asynchronous: false,
        steps: 1000,
        batch: 64,
        save_every: 100,
        log_every: 50,
        kill_worker_at: None,
        kill_ps_at: None,
        out: mnist::default_data_dir().join("mnist-distributed"),
    };
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: `{v}` is not a non-negative number"))
    }
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--workers" => a.workers = num(&flag, it.next())?,
            "--ps" => a.ps = num(&flag, it.next())?,
            "--backup" => a.backup = num(&flag, it.next())?,
            "--async" => a.asynchronous = true,
            "--steps" => a.steps = num(&flag, it.next())?,
            "--batch" => a.batch = num(&flag, it.next())?,
            "--save-every" => a.save_every = num(&flag, it.next())?,
            "--log-every" => a.log_every = num(&flag, it.next())?,
            "--kill-worker-at" => a.kill_worker_at = Some(num(&flag, it.next())?),
            "--kill-ps-at" => a.kill_ps_at = Some(num(&flag, it.next())?),
            "--out" => a.out = PathBuf::from(it.next().ok_or("--out needs a value")?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    let at_least_1 = [
        ("--workers", a.workers),
        ("--ps", a.ps),
        ("--batch", a.batch),
        ("--save-every", a.save_every as usize),
        ("--log-every", a.log_every),
    ];
    if let Some((flag, _)) = at_least_1.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{flag} must be at least 1"));
    }
    if !a.asynchronous && a.backup >= a.workers {
        return Err(format!(
            "--backup {} leaves no worker to aggregate: expected fewer than --workers {}",
            a.backup, a.workers
        ));
    }
    if a.kill_worker_at.is_some() && a.workers < 2 {
        return Err(
            "--kill-worker-at kills the last non-chief worker: needs --workers >= 2".into(),
        );
    }
    Ok(Some(a))
}

/// A cluster session as the training helpers' step runner.
struct Remote(ClusterSession);

impl StepRunner for Remote {
    type Error = Error;
    fn run_step(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> Result<Vec<Tensor>, Error> {
        self.0.run(feeds, fetches, targets)
    }
    fn classify(&self, e: &Error) -> Failure {
        // Status codes by name: this example does not depend on tonic.
        match e {
            Error::Unreachable { task, .. } => Failure::TaskLost(task.clone()),
            Error::Task {
                task,
                code,
                message,
                ..
            } => match format!("{code:?}").as_str() {
                "OutOfRange" => Failure::EndOfInput,
                "Unavailable" | "Aborted" => Failure::TaskLost(task.clone()),
                "NotFound" if message.contains("was the task restarted") => {
                    Failure::TaskLost(task.clone())
                }
                "FailedPrecondition" if message.contains("is not initialized") => {
                    Failure::TaskLost(task.clone())
                }
                _ => Failure::Other,
            },
            _ => Failure::Other,
        }
    }
}

/// The task processes (this program with `--serve`); all killed on drop.
struct Tasks {
    spec: ClusterSpec,
    spec_path: PathBuf,
    children: Vec<(String, usize, Option<Child>)>,
}

impl Tasks {
    fn start(ps: usize, workers: usize, dir: &std::path::Path) -> Result<Tasks, String> {
        let ports: Vec<u16> = {
            let ls: Vec<std::net::TcpListener> = (0..ps + workers)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cannot find a free port: {e}"))?;
            ls.iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        };
        let addr = |p: &u16| format!("127.0.0.1:{p}");
        let mut map = std::collections::BTreeMap::new();
        map.insert("ps".to_string(), ports[..ps].iter().map(addr).collect());
        map.insert("worker".to_string(), ports[ps..].iter().map(addr).collect());
        let spec_path = dir.join("cluster.json");
        let json = serde_like_json(&map);
        std::fs::write(&spec_path, json)
            .map_err(|e| format!("cannot write {}: {e}", spec_path.display()))?;
        let spec = ClusterSpec::new(map).map_err(|e| e.to_string())?;
        let mut tasks = Tasks {
            spec,
            spec_path,
            children: Vec::new(),
        };
        for (job, n) in [("ps", ps), ("worker", workers)] {
            for i in 0..n {
                tasks.children.push((job.to_string(), i, None));
            }
        }
        for k in 0..tasks.children.len() {
            tasks.launch(k)?;
        }
        Ok(tasks)
    }

    /// Starts (or restarts) task `k`; waits (at most 30 s) until it listens.
    fn launch(&mut self, k: usize) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let (job, index, slot) = &mut self.children[k];
        let mut child = Command::new(exe)
            .arg("--serve")
            .arg(&self.spec_path)
            .args([job.as_str(), &index.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start /job:{job}/task:{index}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        *slot = Some(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => return Ok(()),
                Ok(_) => {}
                Err(_) => return Err(format!("/job:{job}/task:{index} did not start in 30 s")),
            }
        }
    }

    fn kill(&mut self, job: &str, index: usize) -> Option<usize> {
        let k = self
            .children
            .iter()
            .position(|(j, i, _)| j == job && *i == index)?;
        if let Some(mut c) = self.children[k].2.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
        Some(k)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for (_, _, c) in &mut self.children {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The cluster spec as JSON (job -> addresses).
fn serde_like_json(map: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    let jobs: Vec<String> = map
        .iter()
        .map(|(job, addrs)| {
            let a: Vec<String> = addrs.iter().map(|x| format!("\"{x}\"")).collect();
            format!("\"{job}\": [{}]", a.join(", "))
        })
        .collect();
    format!("{{{}}}", jobs.join(", "))
}

/// `--serve FILE JOB INDEX`: run one task until killed.
fn serve(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let (file, job, index) = (
        it.next().ok_or("--serve FILE JOB INDEX")?,
        it.next().ok_or("--serve FILE JOB INDEX")?,
        it.next().ok_or("--serve FILE JOB INDEX")?,
    );
    let index: u32 = index.parse().map_err(|_| format!("task index `{index}`"))?;
    let config =
        ClusterConfig::from_file(std::path::Path::new(&file)).map_err(|e| e.to_string())?;
    let task = TaskId::new(&job, index);
    let options = ServerOptions {
        stop_on_signal: true,
        ..ServerOptions::default()
    };
    let server = Server::start(&config.cluster, &task, options).map_err(|e| e.to_string())?;
    println!("{} listening on {}", task.name(), server.address());
    let _ = std::io::stdout().flush();
    server.wait().map_err(|e| e.to_string())
}

/// One worker's program: its graph, the ops it runs, and the helper's ops.
struct Program {
    g: Graph,
    model: LeNet,
    train: NodeId,
    global_step: Output,
    ops: ModelOps,
    /// Synchronous training: the chief's update, the token queue's close and the release of
    /// workers waiting for a token.
    chief_update: Option<(NodeId, NodeId, NodeId)>,
    saver: Option<ShardedSaver>,
    /// The ps task holding the global step (and the token queue).
    step_ps: usize,
}

fn program(args: &Args, task: usize) -> Result<Program, Box<dyn std::error::Error>> {
    let model = LeNet::new();
    let mut g = model.graph().clone();
    let vars = g.variables().to_vec();
    let gs = global_step(&mut g)?;
    let setter = ReplicaDeviceSetter::new(args.ps, &format!("/job:worker/task:{task}"))?
        .strategy(PsStrategy::GreedyBySize);
    setter.apply(&mut g)?;
    let (train, chief_update, local_init, chief_init, sync_ready) = if args.asynchronous {
        let train = Adam::new(1e-3f32).minimize(&mut g, model.loss.output, &vars, Some(&gs))?;
        (train, None, Vec::new(), Vec::new(), None)
    } else {
        let m = args.workers - args.backup;
        let mut sync =
            SyncReplicas::new(Adam::new(1e-3f32), m, args.workers)?.take_timeout_ms(120_000);
        let ops = sync.minimize(&mut g, model.loss.output, &vars, &gs, &setter)?;
        (
            ops.train,
            Some((ops.chief_update, ops.close_token_queue, ops.release_workers)),
            vec![ops.local_step_init],
            vec![ops.chief_init],
            Some((ops.ready, ops.accumulators_step.name.clone())),
        )
    };
    // Place what the optimizer added (its slots join their variables' tasks).
    setter.apply(&mut g)?;
    let init = g.global_variables_initializer()?;
    // The model: every variable on a ps task, optimizer slots included (the local step of
    // synchronous training stays on its worker, and the step its accumulators were moved to
    // is no model state: restored, it would let workers start before the chief's init).
    let marker = sync_ready.as_ref().map(|(_, name)| name.clone());
    let model_vars: Vec<_> = g
        .variables()
        .iter()
        .filter(|v| g.node(v.handle.node).device.starts_with("/job:ps"))
        .filter(|v| Some(&v.name) != marker.as_ref())
        .cloned()
        .collect();
    let mut ops = ModelOps::new(&mut g, &model_vars, init, &gs)?;
    if let Some((ready, _)) = sync_ready {
        ops = ops.with_ready_flag(&mut g, ready, "the accumulators at the global step")?;
    }
    ops.local_init = local_init;
    ops.chief_init = chief_init;
    setter.apply(&mut g)?;
    let saver = if task == 0 {
        let dir = args.out.join("checkpoints");
        let saver = ShardedSaver::new::<Error>(&mut g, &model_vars, &dir, "model")?;
        Some(saver.with_max_to_keep(Some(3)))
    } else {
        None
    };
    let step_ps = g
        .node(gs.handle.node)
        .device
        .rsplit_once("/task:")
        .and_then(|(_, k)| k.split('/').next()?.parse().ok())
        .unwrap_or(0);
    Ok(Program {
        step_ps,
        g,
        model,
        train,
        global_step: gs.value,
        ops,
        chief_update,
        saver,
    })
}

fn connect(spec: &ClusterSpec, g: &Graph) -> impl FnMut() -> Result<Remote, Error> {
    let (spec, g) = (spec.clone(), g.clone());
    move || {
        let options = ClusterSessionOptions {
            channel: ChannelOptions {
                connect_timeout: Duration::from_secs(3),
                ..ChannelOptions::default()
            },
            step_timeout: Some(Duration::from_secs(180)),
            ..ClusterSessionOptions::default()
        };
        ClusterSession::new(&spec, &g, options).map(Remote)
    }
}

type Shared = (Arc<Tensor>, Arc<Tensor>);

/// Worker `task`'s loop until the global step reaches `--steps` (or the token queue closes).
fn worker(
    args: &Args,
    task: usize,
    spec: &ClusterSpec,
    data: Shared,
    progress: &AtomicI64,
) -> Result<(usize, f64), Box<dyn std::error::Error + Send + Sync>> {
    let mut p = program(args, task).map_err(|e| e.to_string())?;
    let saver = p.saver.take();
    let config = MonitoredConfig {
        is_chief: task == 0,
        save_every_steps: Some(args.save_every),
        ready_timeout: Duration::from_secs(120),
        max_recoveries: 5,
        recovery_timeout: Duration::from_secs(120),
        ..MonitoredConfig::default()
    };
    let mut s = MonitoredSession::new(connect(spec, &p.g), p.ops.clone(), saver, config)?;
    report(task, &mut s);
    let aggregator = match (task, p.chief_update) {
        (0, Some((update, close, release))) => {
            let mut ops = p.ops.clone();
            ops.local_init.clear();
            // A lost ps task stops the updates: wake the workers waiting for a token.
            ops.on_lost = vec![release];
            let config = MonitoredConfig {
                is_chief: false,
                save_every_steps: None,
                ..MonitoredConfig::default()
            };
            let mut agg = MonitoredSession::new(connect(spec, &p.g), ops, None, config)?;
            let (steps, gs) = (args.steps, p.global_step);
            Some(std::thread::spawn(move || -> Result<(), String> {
                let result = loop {
                    match agg.run(&[], &[gs], &[update]) {
                        Ok(Some(v)) if v[0].scalar_value::<i64>().unwrap_or(0) >= steps => {
                            break Ok(())
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e.to_string()),
                    }
                };
                // Workers waiting for a token end now (out of range), also after an error.
                let _ = agg.run(&[], &[], &[close]);
                result
            }))
        }
        _ => None,
    };
    let (images, labels) = data;
    let n = labels.shape()[0];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (task as u64 + 1);
    let start = Instant::now();
    let mut local = 0usize;
    loop {
        let idx: Vec<usize> = (0..args.batch)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n as u64) as usize
            })
            .collect();
        let feeds = [
            (p.model.images.output, gather_rows(&images, &idx)?),
            (p.model.labels.output, gather_rows(&labels, &idx)?),
        ];
        let out = s.run(&feeds, &[p.model.loss.output, p.global_step], &[p.train])?;
        let Some(out) = out else { break };
        local += 1;
        let gs = out[1].scalar_value::<i64>()?;
        progress.fetch_max(gs, Ordering::Relaxed);
        report(task, &mut s);
        if local.is_multiple_of(args.log_every) {
            println!(
                "worker {task}: local step {local}, global step {gs}, loss {:.4}, {:.2} steps/s",
                out[0].scalar_value::<f32>()?,
                local as f64 / start.elapsed().as_secs_f64()
            );
        }
        if gs >= args.steps {
            break;
        }
    }
    if let Some(a) = aggregator {
        a.join().map_err(|_| "the aggregator panicked")??;
    }
    if task == 0 {
        let acc = accuracy(&s, &p.model)?;
        if let Some(path) = s.finish()? {
            println!("chief: saved {}", path.display());
        }
        return Ok((local, acc));
    }
    Ok((local, f64::NAN))
}

fn report<R: StepRunner, F: FnMut() -> Result<R, R::Error>>(
    task: usize,
    s: &mut MonitoredSession<R, F>,
) {
    for e in s.take_events() {
        match e {
            Event::Initialized => println!("worker {task}: initialized the model"),
            Event::Restored {
                prefix,
                global_step,
                ..
            } => println!(
                "worker {task}: restored {} (global step {global_step})",
                prefix.display()
            ),
            Event::Ready { global_step } => {
                println!("worker {task}: model ready at global step {global_step}")
            }
            Event::Saved { prefix, .. } => {
                println!("worker {task}: checkpoint {}", prefix.display())
            }
            Event::Lost {
                task: lost,
                attempt,
            } => {
                println!("worker {task}: lost {lost}, recovering (attempt {attempt})")
            }
        }
    }
}

/// Test accuracy over the whole test set, through the chief's session.
fn accuracy<F: FnMut() -> Result<Remote, Error>>(
    s: &MonitoredSession<Remote, F>,
    m: &LeNet,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let data = mnist::load_default()?;
    let (x, y) = (
        Mnist::images_f32(&data.test_images)?,
        Mnist::labels_i32(&data.test_labels)?,
    );
    let n = y.shape()[0];
    let mut right = 0.0;
    for start in (0..n).step_by(1000) {
        let idx: Vec<usize> = (start..(start + 1000).min(n)).collect();
        let feeds = [
            (m.images.output, gather_rows(&x, &idx)?),
            (m.labels.output, gather_rows(&y, &idx)?),
        ];
        let out = s.runner().run_step(&feeds, &[m.correct.output], &[])?;
        right += f64::from(out[0].scalar_value::<f32>()?);
    }
    Ok(right / n as f64)
}

fn main() -> ExitCode {
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("--serve") {
        it.next();
        return match serve(it) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    tfr::cli::report(run(it))
}

fn run(it: impl Iterator<Item = String>) -> Result<(), Box<dyn std::error::Error>> {
    let Some(args) = parse_args(it)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let data = mnist::load_default()?;
    let images = Arc::new(Mnist::images_f32(&data.train_images)?);
    let labels = Arc::new(Mnist::labels_i32(&data.train_labels)?);
    std::fs::create_dir_all(&args.out)?;
    let mut tasks = Tasks::start(args.ps, args.workers, &args.out)?;
    let mode = if args.asynchronous {
        "asynchronous".to_string()
    } else {
        format!(
            "synchronous, {} of {} workers per update",
            args.workers - args.backup,
            args.workers
        )
    };
    println!(
        "{} ps and {} worker tasks started ({mode}); training {} global steps",
        args.ps, args.workers, args.steps
    );
    let args = Arc::new(args);
    let progress = Arc::new(AtomicI64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..args.workers)
        .map(|task| {
            let (args, progress, spec) = (args.clone(), progress.clone(), tasks.spec.clone());
            let data = (images.clone(), labels.clone());
            std::thread::spawn(move || worker(&args, task, &spec, data, &progress))
        })
        .collect();
    let mut kills: Vec<(i64, &str, usize)> = Vec::new();
    if let Some(at) = args.kill_worker_at {
        kills.push((at, "worker", args.workers - 1));
    }
    if let Some(at) = args.kill_ps_at {
        // A ps task without the global step when there is one: the surviving accumulators
        // and token queue are then ahead of the restored step (the harder case).
        let step_ps = program(&args, 0)?.step_ps;
        kills.push((at, "ps", (step_ps + 1) % args.ps));
    }
    kills.sort();
    for (at, job, index) in kills {
        while progress.load(Ordering::Relaxed) < at && !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(k) = tasks.kill(job, index) {
            println!(
                "-- killed /job:{job}/task:{index} (SIGKILL) at global step {}",
                progress.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_secs(2));
            tasks.launch(k)?;
            println!("-- restarted /job:{job}/task:{index}");
        }
    }
    let mut results = Vec::new();
    for (task, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => return Err(format!("worker {task}: {e}").into()),
            Err(_) => return Err(format!("worker {task} panicked").into()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let steps = progress.load(Ordering::Relaxed);
    let local: Vec<usize> = results.iter().map(|r| r.0).collect();
    println!(
        "done: global step {steps} in {secs:.1} s ({:.2} global steps/s); worker steps {local:?}; \
         test accuracy {:.2}%",
        steps as f64 / secs,
        100.0 * results[0].1
    );
    drop(tasks);
    Ok(())
}
