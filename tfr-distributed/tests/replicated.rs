//! Replicated training on real `tfr-server` processes: variables on `ps` tasks placed by the
//! replica device setter, each worker's computation on its own `worker` task, driven by one
//! client thread per worker (each with its own `ClusterSession`, as separate worker programs
//! would). Synchronous training (SyncReplicas: accumulators, token queue, global step) equals
//! one process on the concatenated batches; with a backup worker a stopped or killed worker
//! does not stop training and its late gradient is dropped; without one the chief's bounded
//! take fails cleanly; asynchronous training loses no update and converges. Every wait has a
//! deadline.

use crate::common;

use common::Cluster;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_distributed::{ChannelOptions, ClusterSession, ClusterSessionOptions, Error};
use tfr_graph::device::DeviceSpec;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tfr_nn::losses::mean_squared_error;
use tfr_nn::replication::{global_step, ReplicaDeviceSetter, SyncReplicas, SyncTrainOps};
use tfr_nn::{Optimizer, Sgd};

const LIMIT: Duration = Duration::from_secs(60);
const BATCH: usize = 4;
const LR: f32 = 0.1;
/// How long the chief waits for gradients (workers compile their steps meanwhile).
const TAKE: Duration = Duration::from_secs(30);

/// Runs `f` on a thread and waits at most `LIMIT` for its result.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?} (hang)"))
}

fn options(step_timeout: Duration) -> ClusterSessionOptions {
    ClusterSessionOptions {
        channel: ChannelOptions {
            connect_timeout: Duration::from_secs(3),
            ..ChannelOptions::default()
        },
        step_timeout: Some(step_timeout),
        ..ClusterSessionOptions::default()
    }
}

/// Worker `k`'s share of the data: y = x . [1, -2, 0.5] + 0.3 on a deterministic x.
fn batch(k: usize) -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..BATCH * 3)
        .map(|i| ((i + 7 * k) as f32 * 0.61).sin())
        .collect();
    let y: Vec<f32> = x
        .chunks(3)
        .map(|r| r[0] - 2.0 * r[1] + 0.5 * r[2] + 0.3)
        .collect();
    (
        Tensor::new(&[BATCH, 3], x).unwrap(),
        Tensor::new(&[BATCH, 1], y).unwrap(),
    )
}

/// Rows of several batches stacked (the single-process reference's batch).
fn concat(parts: &[Tensor], cols: usize) -> Tensor {
    let data: Vec<f32> = parts
        .iter()
        .flat_map(|t| t.to_vec::<f32>().unwrap())
        .collect();
    Tensor::new(&[data.len() / cols, cols], data).unwrap()
}

/// A linear regression on `rows`-row batches: (graph, x, y, loss, [w, b]).
fn linear_model(rows: usize) -> (Graph, Output, Output, Output, Vec<Variable>) {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[rows, 3]))
        .unwrap();
    let y = g
        .placeholder("y", DType::F32, Shape::known(&[rows, 1]))
        .unwrap();
    let w0 = g.constant_from(&[3, 1], vec![0.1f32, 0.2, 0.3]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let b0 = g.constant_from(&[1], vec![0.0f32]).unwrap();
    let b = g.variable("b", b0).unwrap();
    let xw = g.matmul(x, w.value).unwrap();
    let pred = g.add(xw, b.value).unwrap();
    let loss = mean_squared_error(&mut g, pred, y).unwrap();
    (g, x, y, loss, vec![w, b])
}

/// One worker's program for synchronous training.
struct SyncReplica {
    session: ClusterSession,
    x: Output,
    y: Output,
    ops: SyncTrainOps,
    init: NodeId,
    vars: Vec<Variable>,
    /// Gradients held by the first accumulator.
    held: Output,
    ready: Output,
    /// Computed on ps:0 from this worker's local step: running it once opens the ps task's
    /// channel to this worker (a stopped worker could not answer a new connection).
    probe: Output,
}

fn sync_replica(
    cluster: &Cluster,
    task: usize,
    num_ps: usize,
    m: usize,
    n: usize,
    step_timeout: Duration,
    take_timeout: Duration,
) -> SyncReplica {
    let (mut g, x, y, loss, vars) = linear_model(BATCH);
    let gs = global_step(&mut g).unwrap();
    let setter = ReplicaDeviceSetter::new(num_ps, &format!("/job:worker/task:{task}")).unwrap();
    let mut sync = SyncReplicas::new(Sgd::new(LR), m, n)
        .unwrap()
        .take_timeout_ms(take_timeout.as_millis() as u64);
    let ops = sync.minimize(&mut g, loss, &vars, &gs, &setter).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let held = g.accumulator_num_accumulated(&ops.accumulators[0]).unwrap();
    let ready = g.is_variable_initialized(&gs).unwrap();
    let probe = g
        .with_device("/job:ps/task:0", |g| g.add(ops.local_step.value, gs.value))
        .unwrap();
    setter.apply(&mut g).unwrap();
    let session = ClusterSession::new(&cluster.spec, &g, options(step_timeout)).unwrap();
    SyncReplica {
        session,
        x,
        y,
        ops,
        init,
        vars,
        held,
        ready,
        probe,
    }
}

impl SyncReplica {
    fn train_step(&self, data: &(Tensor, Tensor)) -> Result<(), Error> {
        self.session
            .run(
                &[(self.x, data.0.clone()), (self.y, data.1.clone())],
                &[],
                &[self.ops.train],
            )
            .map(|_| ())
    }

    fn scalar_i64(&self, o: Output) -> i64 {
        self.session.run(&[], &[o], &[]).unwrap()[0]
            .scalar_value::<i64>()
            .unwrap()
    }

    fn global_step(&self) -> i64 {
        self.scalar_i64(self.ops.global_step.value)
    }

    fn local_step(&self) -> i64 {
        self.scalar_i64(self.ops.local_step.value)
    }

    fn held(&self) -> i32 {
        self.session.run(&[], &[self.held], &[]).unwrap()[0]
            .scalar_value::<i32>()
            .unwrap()
    }

    fn params(&self) -> Vec<Vec<f32>> {
        let reads: Vec<Output> = self.vars.iter().map(|v| v.value).collect();
        self.session
            .run(&[], &reads, &[])
            .unwrap()
            .iter()
            .map(|t| t.to_vec::<f32>().unwrap())
            .collect()
    }

    /// Waits (bounded) until the chief initialized the model, then adopts the global step.
    fn join(&self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let ready = self.session.run(&[], &[self.ready], &[]).unwrap()[0]
                .scalar_value::<bool>()
                .unwrap();
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "the chief never initialized");
            thread::sleep(Duration::from_millis(10));
        }
        self.session
            .run(&[], &[], &[self.ops.local_step_init])
            .unwrap();
        self.session.run(&[], &[self.probe], &[]).unwrap();
    }
}

fn is_out_of_range(e: &Error) -> bool {
    matches!(e, Error::Task { code, .. } if *code == tonic::Code::OutOfRange)
}

/// A worker's loop: train on its batch until its local step reaches `steps`; the closed token
/// queue (out of range) ends it cleanly. Hands back the replica and the steps run (or the error).
fn worker_loop(r: SyncReplica, k: usize, steps: i64) -> (SyncReplica, Result<usize, Error>) {
    let data = batch(k);
    let mut run = 0;
    let result = loop {
        match r.session.run(&[], &[r.ops.local_step.value], &[]) {
            Ok(v) if v[0].scalar_value::<i64>().unwrap() >= steps => break Ok(run),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        match r.train_step(&data) {
            Ok(()) => run += 1,
            Err(e) if is_out_of_range(&e) => break Ok(run),
            Err(e) => break Err(e),
        }
    };
    (r, result)
}

/// The chief's aggregation loop (TF's queue runner): `updates` updates, then the token queue
/// is closed so no worker waits for a token that will not come.
fn chief_loop(r: &SyncReplica, updates: usize) -> Result<(), Error> {
    let mut result = Ok(());
    for _ in 0..updates {
        if let Err(e) = r.session.run(&[], &[], &[r.ops.chief_update]) {
            result = Err(e);
            break;
        }
    }
    r.session
        .run(&[], &[], &[r.ops.close_token_queue])
        .expect("close the token queue");
    result
}

#[test]
fn sync_training_equals_one_process_on_the_concatenated_batches() {
    const STEPS: usize = 5;
    let cluster = Cluster::start(&[("ps", 2), ("worker", 2)]);
    let chief = sync_replica(&cluster, 0, 2, 2, 2, LIMIT, TAKE);
    // The setter spread the two variables over the two ps tasks.
    let placed = chief
        .session
        .placement(&[], &[chief.vars[0].value, chief.vars[1].value], &[])
        .unwrap();
    let on = |name: &str, want: &str| {
        let (_, d) = placed.iter().find(|(n, _)| n == name).unwrap();
        DeviceSpec::parse(want)
            .unwrap()
            .matches(&DeviceSpec::parse(d).unwrap())
    };
    assert!(on("w/read", "/job:ps/task:0"), "{placed:?}");
    assert!(on("b/read", "/job:ps/task:1"), "{placed:?}");
    chief.session.run(&[], &[], &[chief.init]).unwrap();
    chief.join();
    let other = sync_replica(&cluster, 1, 2, 2, 2, LIMIT, TAKE);
    other.join();
    let aggregator = sync_replica(&cluster, 0, 2, 2, 2, LIMIT, TAKE);
    let chief_thread = thread::spawn(move || chief_loop(&aggregator, STEPS));
    let workers: Vec<_> = [chief, other]
        .into_iter()
        .enumerate()
        .map(|(k, r)| thread::spawn(move || worker_loop(r, k, STEPS as i64)))
        .collect();
    bounded("the chief", move || chief_thread.join().unwrap()).unwrap();
    let mut replicas = Vec::new();
    for (k, w) in workers.into_iter().enumerate() {
        let (r, steps) = bounded("a worker", move || w.join().unwrap());
        assert_eq!(steps.unwrap(), STEPS, "worker {k}");
        replicas.push(r);
    }
    assert_eq!(replicas[0].global_step(), STEPS as i64);
    let got = replicas[0].params();

    // One process, one batch of both workers' rows, plain SGD.
    let (mut g, x, y, loss, vars) = linear_model(2 * BATCH);
    let train = Sgd::new(LR).minimize(&mut g, loss, &vars, None).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let (b0, b1) = (batch(0), batch(1));
    let xs = concat(&[b0.0, b1.0], 3);
    let ys = concat(&[b0.1, b1.1], 1);
    for _ in 0..STEPS {
        s.run(&[(x, xs.clone()), (y, ys.clone())], &[], &[train])
            .unwrap();
    }
    let reads: Vec<Output> = vars.iter().map(|v| v.value).collect();
    let want = s.run(&[], &reads, &[]).unwrap();
    for (got, want) in got.iter().zip(&want) {
        let want = want.to_vec::<f32>().unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }
    // And training moved the parameters (the comparison is not of two initial values).
    assert!((got[1][0] - 0.0).abs() > 1e-3, "{got:?}");
}

#[test]
fn a_stopped_backup_worker_does_not_hold_steps_and_its_late_gradient_is_dropped() {
    const STEPS: usize = 6;
    let mut cluster = Cluster::start(&[("ps", 1), ("worker", 3)]);
    let chief = sync_replica(&cluster, 0, 1, 2, 3, LIMIT, TAKE);
    chief.session.run(&[], &[], &[chief.init]).unwrap();
    chief.join();
    let fast = sync_replica(&cluster, 1, 1, 2, 3, LIMIT, TAKE);
    fast.join();
    let slow = sync_replica(&cluster, 2, 1, 2, 3, LIMIT, TAKE);
    slow.join();
    assert_eq!(slow.local_step(), 0);
    // The straggler's task stops before its first step: its gradient is for step 0.
    cluster.signal("worker", 2, "STOP");
    let slow_thread = thread::spawn(move || {
        let r = slow.train_step(&batch(2));
        (slow, r)
    });
    let aggregator = sync_replica(&cluster, 0, 1, 2, 3, LIMIT, TAKE);
    let chief_thread = thread::spawn(move || {
        let r = chief_loop(&aggregator, STEPS);
        (aggregator, r)
    });
    let workers: Vec<_> = [chief, fast]
        .into_iter()
        .enumerate()
        .map(|(k, r)| thread::spawn(move || worker_loop(r, k, STEPS as i64)))
        .collect();
    let (aggregator, r) = bounded("the chief", move || chief_thread.join().unwrap());
    r.expect("the chief's updates proceed without the stopped worker");
    for w in workers {
        bounded("a worker", move || w.join().unwrap()).1.unwrap();
    }
    assert_eq!(aggregator.global_step(), STEPS as i64);
    let params = aggregator.params();
    let held = aggregator.held();
    // Resume the straggler: its step finishes, applying a step-0 gradient after step 6.
    cluster.signal("worker", 2, "CONT");
    let (_slow, r) = bounded("the resumed worker", move || slow_thread.join().unwrap());
    if let Err(e) = &r {
        assert!(is_out_of_range(e), "the resumed worker failed: {e}");
    }
    assert_eq!(aggregator.held(), held, "the late gradient was accumulated");
    assert_eq!(aggregator.params(), params);
    assert_eq!(aggregator.global_step(), STEPS as i64);
}

#[test]
fn a_killed_backup_worker_does_not_stop_sync_training() {
    const STEPS: usize = 8;
    let mut cluster = Cluster::start(&[("ps", 1), ("worker", 3)]);
    let chief = sync_replica(&cluster, 0, 1, 2, 3, Duration::from_secs(20), TAKE);
    chief.session.run(&[], &[], &[chief.init]).unwrap();
    chief.join();
    let mut replicas = vec![chief];
    for k in 1..3 {
        let r = sync_replica(&cluster, k, 1, 2, 3, Duration::from_secs(20), TAKE);
        r.join();
        replicas.push(r);
    }
    let aggregator = sync_replica(&cluster, 0, 1, 2, 3, LIMIT, TAKE);
    let (started_tx, started_rx) = mpsc::channel();
    let chief_thread = thread::spawn(move || {
        // Signal once a few updates went through with all three workers alive.
        let mut result = Ok(());
        for i in 0..STEPS {
            if let Err(e) = aggregator
                .session
                .run(&[], &[], &[aggregator.ops.chief_update])
            {
                result = Err(e);
                break;
            }
            if i == 2 {
                let _ = started_tx.send(());
            }
        }
        aggregator
            .session
            .run(&[], &[], &[aggregator.ops.close_token_queue])
            .unwrap();
        (aggregator, result)
    });
    let workers: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(k, r)| thread::spawn(move || worker_loop(r, k, STEPS as i64)))
        .collect();
    started_rx
        .recv_timeout(LIMIT)
        .expect("three updates with every worker alive");
    cluster.signal("worker", 2, "KILL");
    let (aggregator, r) = bounded("the chief", move || chief_thread.join().unwrap());
    r.expect("training goes on without the killed worker");
    assert_eq!(aggregator.global_step(), STEPS as i64);
    let results: Vec<_> = workers
        .into_iter()
        .map(|w| bounded("a worker", move || w.join().unwrap()).1)
        .collect();
    results[0].as_ref().expect("worker 0 ends cleanly");
    results[1].as_ref().expect("worker 1 ends cleanly");
    // The killed worker's error names its task (it ends cleanly only when it had already
    // finished its steps before the kill).
    if let Err(e) = &results[2] {
        assert!(e.to_string().contains("task:2"), "{e}");
    }
}

#[test]
fn without_a_backup_a_dead_worker_fails_the_chief_cleanly() {
    let mut cluster = Cluster::start(&[("ps", 1), ("worker", 2)]);
    let chief = sync_replica(&cluster, 0, 1, 2, 2, Duration::from_secs(20), TAKE);
    chief.session.run(&[], &[], &[chief.init]).unwrap();
    chief.join();
    cluster.signal("worker", 1, "KILL");
    // Worker 0 applies its gradient; the chief's take waits for a second one that never
    // comes, fails after its 3 s bound, and closing the token queue ends worker 0.
    let aggregator = sync_replica(&cluster, 0, 1, 2, 2, LIMIT, Duration::from_secs(3));
    let chief_thread = thread::spawn(move || chief_loop(&aggregator, 1));
    let worker = thread::spawn(move || worker_loop(chief, 0, 1));
    let e = bounded("the chief", move || chief_thread.join().unwrap()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("accumulator") && text.contains("1 of the 2"),
        "{text}"
    );
    let steps = bounded("worker 0", move || worker.join().unwrap())
        .1
        .unwrap();
    assert_eq!(
        steps, 0,
        "worker 0 ends with the closed queue, not with a step"
    );
}

#[test]
fn async_training_loses_no_update_and_converges() {
    const STEPS: usize = 25;
    let cluster = Cluster::start(&[("ps", 1), ("worker", 2)]);
    struct AsyncReplica {
        session: ClusterSession,
        x: Output,
        y: Output,
        loss: Output,
        train: NodeId,
        init: NodeId,
        counter: Output,
    }
    let build = |task: usize| {
        let (mut g, x, y, loss, vars) = linear_model(BATCH);
        let zero = g.scalar(0i64).unwrap();
        let counter = g.variable("steps", zero).unwrap();
        let setter = ReplicaDeviceSetter::new(1, &format!("/job:worker/task:{task}")).unwrap();
        setter.apply(&mut g).unwrap();
        let update = Sgd::new(LR).minimize(&mut g, loss, &vars, None).unwrap();
        let one = g.scalar(1i64).unwrap();
        let count = g.assign_add(&counter, one).unwrap();
        let train = g.group(&[update, count.node]).unwrap();
        let init = g.global_variables_initializer().unwrap();
        setter.apply(&mut g).unwrap();
        let session = ClusterSession::new(&cluster.spec, &g, options(LIMIT)).unwrap();
        AsyncReplica {
            session,
            x,
            y,
            loss,
            train,
            init,
            counter: counter.value,
        }
    };
    let replicas: Vec<AsyncReplica> = (0..2).map(build).collect();
    replicas[0]
        .session
        .run(&[], &[], &[replicas[0].init])
        .unwrap();
    let loss_of = |r: &AsyncReplica, k: usize| {
        let (x, y) = batch(k);
        r.session
            .run(&[(r.x, x), (r.y, y)], &[r.loss], &[])
            .unwrap()[0]
            .scalar_value::<f32>()
            .unwrap()
    };
    let before = loss_of(&replicas[0], 0) + loss_of(&replicas[1], 1);
    let workers: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            thread::spawn(move || {
                let (x, y) = batch(k);
                for _ in 0..STEPS {
                    r.session
                        .run(&[(r.x, x.clone()), (r.y, y.clone())], &[], &[r.train])
                        .unwrap();
                }
                r
            })
        })
        .collect();
    let replicas: Vec<AsyncReplica> = workers
        .into_iter()
        .map(|w| bounded("an async worker", move || w.join().unwrap()))
        .collect();
    let counted = replicas[1]
        .session
        .run(&[], &[replicas[1].counter], &[])
        .unwrap()[0]
        .scalar_value::<i64>()
        .unwrap();
    assert_eq!(counted, 2 * STEPS as i64, "an update was lost");
    let after = loss_of(&replicas[0], 0) + loss_of(&replicas[1], 1);
    assert!(after < before / 20.0, "loss {before} -> {after}");
}
