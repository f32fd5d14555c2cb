//! Checkpoints and recovery of replicated training on real `tfr-server` processes: sharded
//! checkpoints (one `Save` per ps task, in one step), the monitored training loop (the chief
//! initializes or restores, others wait with a deadline, periodic checkpoints), recovery from a
//! SIGKILLed ps task restarted on its port (the loss goes on from the checkpoint), a non-chief
//! without a chief failing cleanly, and the end of the data ending every worker. Every wait
//! has a deadline; the cluster guard kills every process, also when a test fails.

use crate::common;
use crate::remote;

use common::{Cluster, TempDir};
use remote::Remote;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tfr_core::kernels::io_ops::Checkpoint;
use tfr_core::Tensor;
use tfr_distributed::Error;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tfr_nn::losses::mean_squared_error;
use tfr_nn::replication::{
    global_step, Event, ModelOps, MonitoredConfig, MonitoredSession, ReplicaDeviceSetter,
    ShardedSaver, SyncReplicas, SyncTrainOps, TrainError,
};
use tfr_nn::{Optimizer, Sgd};

const LIMIT: Duration = Duration::from_secs(90);
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` on a thread and waits at most `LIMIT` for its result.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?} (hang)"))
}

/// The batch of global step `step`: y = x . [1, -2, 0.5] + 0.3 on a deterministic x.
fn batch(step: i64) -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..12)
        .map(|i| ((i as i64 + 5 * step) as f32 * 0.37).sin())
        .collect();
    let y: Vec<f32> = x
        .chunks(3)
        .map(|r| r[0] - 2.0 * r[1] + 0.5 * r[2] + 0.3)
        .collect();
    (
        Tensor::new(&[4, 3], x).unwrap(),
        Tensor::new(&[4, 1], y).unwrap(),
    )
}

/// A worker's linear regression, variables spread over `num_ps` ps tasks.
struct Model {
    g: Graph,
    x: Output,
    y: Output,
    loss: Output,
    train: NodeId,
    vars: Vec<Variable>,
    ops: ModelOps,
}

fn model(num_ps: usize, task: usize) -> Model {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[4, 3]))
        .unwrap();
    let y = g
        .placeholder("y", DType::F32, Shape::known(&[4, 1]))
        .unwrap();
    let w0 = g.constant_from(&[3, 1], vec![0.1f32, 0.2, 0.3]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let b0 = g.constant_from(&[1], vec![0.0f32]).unwrap();
    let b = g.variable("b", b0).unwrap();
    let gs = global_step(&mut g).unwrap();
    let xw = g.matmul(x, w.value).unwrap();
    let pred = g.add(xw, b.value).unwrap();
    let loss = mean_squared_error(&mut g, pred, y).unwrap();
    let setter = ReplicaDeviceSetter::new(num_ps, &format!("/job:worker/task:{task}")).unwrap();
    setter.apply(&mut g).unwrap();
    let vars = vec![w, b, gs.clone()];
    let train = Sgd::new(0.1)
        .minimize(&mut g, loss, &vars[..2], Some(&gs))
        .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let ops = ModelOps::new(&mut g, &vars, init, &gs).unwrap();
    setter.apply(&mut g).unwrap();
    Model {
        g,
        x,
        y,
        loss,
        train,
        vars,
        ops,
    }
}

fn values(r: &Remote, vars: &[Variable]) -> Vec<Vec<f32>> {
    let reads: Vec<Output> = vars.iter().map(|v| v.value).collect();
    r.0.run(&[], &reads, &[])
        .unwrap()
        .iter()
        .map(|t| t.to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn sharded_checkpoint_saves_one_shard_per_ps_task_and_restores() {
    let cluster = Cluster::start(&[("ps", 2), ("worker", 1)]);
    let dir = TempDir::new("sharded");
    let mut m = model(2, 0);
    let saver = ShardedSaver::new::<Error>(&mut m.g, &m.vars, &dir.0, "model").unwrap();
    // Round robin: w and the global step on ps:0, b on ps:1.
    let shards = saver.shards();
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert_eq!(shards[0].0, "/job:ps/task:0");
    assert_eq!(shards[0].1, ["w".to_string(), "global_step".to_string()]);
    assert_eq!(shards[1].0, "/job:ps/task:1");
    assert_eq!(shards[1].1, ["b".to_string()]);
    let r = Remote::new(&cluster.spec, &m.g, STEP_TIMEOUT).unwrap();
    // Each shard's Save runs on its task, both in the one save step.
    let placed = r.0.placement(&[], &[], &saver.save_ops()).unwrap();
    for (k, op) in saver.save_ops().into_iter().enumerate() {
        let name = &m.g.node(op).name;
        let (_, device) = placed.iter().find(|(n, _)| n == name).unwrap();
        assert!(
            device.contains(&format!("/job:ps/replica:0/task:{k}")),
            "{name} on {device}"
        );
    }
    r.0.run(&[], &[], &[m.ops.init]).unwrap();
    for step in 0..3 {
        let (x, y) = batch(step);
        r.0.run(&[(m.x, x), (m.y, y)], &[], &[m.train]).unwrap();
    }
    let saved = values(&r, &m.vars[..2]);
    let prefix = saver.save(&r, 3).unwrap();
    assert_eq!(prefix, dir.0.join("model-3"));
    let files = saver.shard_files(&prefix);
    assert_eq!(files[0], dir.0.join("model-3-0-of-2.safetensors"));
    // Each file holds its task's variables only.
    let shard0 = Checkpoint::open(&files[0]).unwrap();
    assert_eq!(
        shard0
            .tensor("w", Some(DType::F32))
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        saved[0]
    );
    assert_eq!(
        shard0.tensor("global_step", Some(DType::I64)).unwrap(),
        Tensor::scalar(3i64)
    );
    assert!(shard0.tensor("b", None).is_err());
    let shard1 = Checkpoint::open(&files[1]).unwrap();
    assert_eq!(
        shard1
            .tensor("b", Some(DType::F32))
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        saved[1]
    );
    assert_eq!(saver.latest::<Error>().unwrap(), Some(prefix.clone()));
    // Nothing staged is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("staging")), "{names:?}");

    // Change every variable, restore, values back.
    for step in 3..6 {
        let (x, y) = batch(step);
        r.0.run(&[(m.x, x), (m.y, y)], &[], &[m.train]).unwrap();
    }
    assert_ne!(values(&r, &m.vars[..2]), saved);
    let (restored, skipped) = saver.restore_latest(&r).unwrap().unwrap();
    assert_eq!(restored, prefix);
    assert!(skipped.is_empty());
    assert_eq!(values(&r, &m.vars[..2]), saved);
    let gs = r.0.run(&[], &[m.ops.global_step], &[]).unwrap();
    assert_eq!(gs[0], Tensor::scalar(3i64));

    // A second checkpoint; keeping one deletes the first one's shards.
    let saver = saver.with_max_to_keep(Some(1));
    let p6 = saver.save(&r, 6).unwrap();
    assert!(saver.shard_files(&p6).iter().all(|f| f.is_file()));
    assert!(files.iter().all(|f| !f.exists()), "old shards kept");
    // A missing shard is an error naming it; a truncated shard is skipped for an older one.
    let e = saver.restore(&r, &prefix).unwrap_err().to_string();
    assert!(
        e.contains("model-3-0-of-2.safetensors") && e.contains("no such shard"),
        "{e}"
    );
    let saver = saver.with_max_to_keep(None);
    let p7 = saver.save(&r, 7).unwrap();
    let f7 = saver.shard_files(&p7);
    let bytes = std::fs::read(&f7[1]).unwrap();
    std::fs::write(&f7[1], &bytes[..bytes.len() / 2]).unwrap();
    let (restored, skipped) = saver.restore_latest(&r).unwrap().unwrap();
    assert_eq!(restored, p6);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("model-7"), "{skipped:?}");
}

#[test]
fn a_killed_ps_task_is_restarted_and_training_resumes_from_the_latest_checkpoint() {
    const STEPS: i64 = 30;
    const KILL_AFTER: i64 = 15;
    let mut cluster = Cluster::start(&[("ps", 2), ("worker", 1)]);
    let dir = TempDir::new("recover");
    let spec = cluster.spec.clone();
    let ckpt = dir.0.clone();
    let (progress_tx, progress_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let trainer = thread::spawn(move || {
        let mut m = model(2, 0);
        let saver = ShardedSaver::new::<Error>(&mut m.g, &m.vars, &ckpt, "model").unwrap();
        let config = MonitoredConfig {
            is_chief: true,
            save_every_steps: Some(5),
            max_recoveries: 2,
            recovery_timeout: Duration::from_secs(45),
            ..MonitoredConfig::default()
        };
        let g = m.g.clone();
        let make = move || Remote::new(&spec, &g, STEP_TIMEOUT);
        let mut s = MonitoredSession::new(make, m.ops.clone(), Some(saver), config)?;
        let mut losses: Vec<(i64, f32)> = Vec::new();
        let mut paused = false;
        loop {
            let out = s.run_at_step(
                |gs| {
                    let (x, y) = batch(gs);
                    vec![(m.x, x), (m.y, y)]
                },
                &[m.loss],
                &[m.train],
            )?;
            let (gs, out) = out.expect("no end of input here");
            let loss = out[0].scalar_value::<f32>().unwrap();
            losses.push((gs, loss));
            if gs + 1 == KILL_AFTER && !paused {
                paused = true;
                // Hold here while ps:1 is killed: the next step finds it gone.
                let _ = progress_tx.send(gs + 1);
                let _ = go_rx.recv_timeout(LIMIT);
            }
            if gs + 1 >= STEPS {
                break;
            }
        }
        let events = s.events().to_vec();
        s.finish()?;
        Ok::<_, TrainError<Error>>((losses, events))
    });
    // Kill ps:1 (it holds b) mid-training; the trainer goes on while it is down (its task
    // unreachable), then it comes back on its port, empty.
    let reached = progress_rx
        .recv_timeout(LIMIT)
        .expect("training progresses");
    assert_eq!(reached, KILL_AFTER);
    cluster.signal("ps", 1, "KILL");
    cluster.wait_exit("ps", 1, Duration::from_secs(10));
    go_tx.send(()).unwrap();
    thread::sleep(Duration::from_millis(800));
    cluster.launch(1);
    let (losses, events) = bounded("the trainer", move || trainer.join().unwrap()).unwrap();

    let lost = events
        .iter()
        .position(|e| matches!(e, Event::Lost { task, .. } if task.contains("ps")))
        .unwrap_or_else(|| panic!("no lost task noticed: {events:?}"));
    let Some(Event::Restored {
        global_step: back_to,
        prefix,
        ..
    }) = events[lost..]
        .iter()
        .find(|e| matches!(e, Event::Restored { .. }))
    else {
        panic!("no restore after the loss: {events:?}")
    };
    assert!(prefix.ends_with(format!("model-{back_to}")), "{prefix:?}");
    // It is a checkpoint saved before the kill (every 5 steps), not the initial values.
    assert!(
        events[..lost]
            .iter()
            .any(|e| matches!(e, Event::Saved { global_step, .. } if global_step == back_to)),
        "{events:?}"
    );
    assert!(*back_to >= 5 && *back_to < KILL_AFTER, "{events:?}");
    // The steps before the kill went past the checkpoint; after it, training repeated them
    // from the checkpoint's values: the same loss at the restored step.
    let first = losses.iter().position(|(gs, _)| gs == back_to).unwrap();
    let again = losses[first + 1..]
        .iter()
        .position(|(gs, _)| gs == back_to)
        .map(|i| i + first + 1)
        .unwrap_or_else(|| panic!("step {back_to} not run again: {losses:?}"));
    let (before, after) = (losses[first].1, losses[again].1);
    assert!(
        (before - after).abs() <= 1e-6 * before.abs().max(1.0),
        "loss at step {back_to}: {before} before the kill, {after} after the restore"
    );
    // Training went on to the end, and the loss came down.
    assert_eq!(losses.last().unwrap().0, STEPS - 1);
    assert!(losses.last().unwrap().1 < losses[0].1 / 4.0, "{losses:?}");
}

/// A worker's synchronous linear regression over 2 ps tasks, 1 of 2 gradients per update
/// (one backup): round robin puts w and the global step (with the token queue) on ps:0, b on
/// ps:1. The readiness checks include the accumulators being at the global step.
fn sync_model(task: usize) -> (Model, SyncTrainOps) {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[4, 3]))
        .unwrap();
    let y = g
        .placeholder("y", DType::F32, Shape::known(&[4, 1]))
        .unwrap();
    let w0 = g.constant_from(&[3, 1], vec![0.1f32, 0.2, 0.3]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let b0 = g.constant_from(&[1], vec![0.0f32]).unwrap();
    let b = g.variable("b", b0).unwrap();
    let gs = global_step(&mut g).unwrap();
    let xw = g.matmul(x, w.value).unwrap();
    let pred = g.add(xw, b.value).unwrap();
    let loss = mean_squared_error(&mut g, pred, y).unwrap();
    let setter = ReplicaDeviceSetter::new(2, &format!("/job:worker/task:{task}")).unwrap();
    let mut sync = SyncReplicas::new(Sgd::new(0.1), 1, 2)
        .unwrap()
        .take_timeout_ms(20_000);
    let vars = vec![w, b, gs.clone()];
    let sync_ops = sync
        .minimize(&mut g, loss, &vars[..2], &gs, &setter)
        .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let mut ops = ModelOps::new(&mut g, &vars, init, &gs)
        .unwrap()
        .with_ready_flag(&mut g, sync_ops.ready, "accumulators")
        .unwrap();
    ops.chief_init = vec![sync_ops.chief_init];
    ops.local_init = vec![sync_ops.local_step_init];
    setter.apply(&mut g).unwrap();
    let m = Model {
        g,
        x,
        y,
        loss,
        train: sync_ops.train,
        vars,
        ops,
    };
    (m, sync_ops)
}

/// Mean squared error of y = x w + b on a batch, in plain Rust.
fn mse(w: &[f32], b: f32, (x, y): &(Tensor, Tensor)) -> f32 {
    let (x, y) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    let se: f32 = x
        .chunks(3)
        .zip(&y)
        .map(|(r, t)| {
            let p = r[0] * w[0] + r[1] * w[1] + r[2] * w[2] + b;
            (p - t) * (p - t)
        })
        .sum();
    se / y.len() as f32
}

/// One step of the chief worker: (global step, loss, w, b), the parameters as read by it.
type Record = (i64, f32, Vec<f32>, f32);

#[test]
fn sync_training_recovers_from_a_killed_ps_task_without_the_global_step() {
    const STEPS: i64 = 40;
    const KILL_AT: i64 = 14;
    let mut cluster = Cluster::start(&[("ps", 2), ("worker", 2)]);
    let dir = TempDir::new("sync-recover");
    let recovering = |poll_ms: u64, is_chief: bool| MonitoredConfig {
        is_chief,
        save_every_steps: is_chief.then_some(6),
        ready_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(poll_ms),
        max_recoveries: 3,
        recovery_timeout: Duration::from_secs(30),
    };
    let (progress_tx, progress_rx) = mpsc::channel::<i64>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (other_tx, other_rx) = mpsc::channel::<i64>();
    // The other worker (the backup of m = 1 of n = 2), on batch(2 gs + 1), started first. It
    // is slower (20 ms per step) and looks for the model every 100 ms, so the chief worker's
    // first step after a restore reads the restored values.
    let other = {
        let spec = cluster.spec.clone();
        let config = recovering(100, false);
        thread::spawn(move || {
            let (m, _) = sync_model(1);
            let g = m.g.clone();
            let make = move || Remote::new(&spec, &g, STEP_TIMEOUT);
            let mut s = MonitoredSession::new(make, m.ops.clone(), None, config)?;
            let mut steps = 0;
            while let Some((gs, _)) = s.run_at_step(
                |gs| {
                    let (x, y) = batch(2 * gs + 1);
                    vec![(m.x, x), (m.y, y)]
                },
                &[],
                &[m.train],
            )? {
                steps += 1;
                let _ = other_tx.send(gs);
                // A slower worker: the chief worker's steps drive training until it holds.
                thread::sleep(Duration::from_millis(20));
            }
            Ok::<_, TrainError<Error>>((steps, s.events().to_vec()))
        })
    };
    // The chief worker: restores or initializes, checkpoints every 4 steps, trains on
    // batch(2 gs); records what every step read.
    let chief = {
        let (spec, ckpt) = (cluster.spec.clone(), dir.0.clone());
        let config = recovering(50, true);
        thread::spawn(move || {
            let (mut m, _) = sync_model(0);
            // Global step and token queue on ps:0, b (and its accumulator) on ps:1.
            let on = |k: usize| m.g.node(m.vars[k].handle.node).device.clone();
            assert!(on(2).contains("/job:ps/task:0"), "global step on {}", on(2));
            assert!(on(1).contains("/job:ps/task:1"), "b on {}", on(1));
            let saver = ShardedSaver::new::<Error>(&mut m.g, &m.vars, &ckpt, "model")
                .unwrap()
                .with_max_to_keep(None);
            let saver = Some(saver);
            let g = m.g.clone();
            let make = move || Remote::new(&spec, &g, STEP_TIMEOUT);
            let mut s = MonitoredSession::new(make, m.ops.clone(), saver, config)?;
            let mut records: Vec<Record> = Vec::new();
            let mut paused_at = None;
            let fetches = [m.loss, m.vars[0].value, m.vars[1].value];
            while let Some((gs, out)) = s.run_at_step(
                |gs| {
                    let (x, y) = batch(2 * gs);
                    vec![(m.x, x), (m.y, y)]
                },
                &fetches,
                &[m.train],
            )? {
                let v: Vec<Vec<f32>> = out.iter().map(|t| t.to_vec::<f32>().unwrap()).collect();
                records.push((gs, v[0][0], v[1].clone(), v[2][0]));
                if gs >= KILL_AT && paused_at.is_none() {
                    // Hold here while ps:1 is killed.
                    paused_at = Some(records.len());
                    let _ = progress_tx.send(gs);
                    let _ = go_rx.recv_timeout(LIMIT);
                }
            }
            let events = s.events().to_vec();
            s.finish()?;
            Ok::<_, TrainError<Error>>((records, events, paused_at.unwrap_or(0)))
        })
    };
    // The aggregation loop (the chief's queue runner), its own session; on a lost task it
    // wakes the workers waiting for tokens. Closes the token queue at the end.
    let aggregator = {
        let spec = cluster.spec.clone();
        let config = recovering(50, false);
        thread::spawn(move || {
            let (m, sync) = sync_model(0);
            let mut ops = m.ops.clone();
            ops.local_init.clear();
            ops.on_lost = vec![sync.release_workers];
            let g = m.g.clone();
            let make = move || Remote::new(&spec, &g, STEP_TIMEOUT);
            let mut s = MonitoredSession::new(make, ops, None, config)?;
            let result = loop {
                match s.run(&[], &[], &[sync.chief_update]) {
                    Ok(Some(_)) => {}
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
                match s.global_step() {
                    Ok(gs) if gs >= STEPS => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            let _ = s.run(&[], &[], &[sync.close_token_queue]);
            let last = s.global_step();
            result.and(last).map(|gs| (gs, s.events().to_vec()))
        })
    };
    // Once both workers trained, the chief worker holds at step KILL_AT while the other one
    // trains 4 more steps; then ps:1 is SIGKILLed (the accumulator on ps:0, the global step
    // and the tokens are ahead of the latest checkpoint), and started again, empty.
    let deadline = Instant::now() + LIMIT;
    let mut other_step = other_rx
        .recv_timeout(LIMIT)
        .expect("the other worker trains");
    let paused = progress_rx
        .recv_timeout(LIMIT)
        .expect("the chief worker reaches the kill step");
    // The chief worker holds; the other worker (m = 1) moves the global step on.
    while other_step < paused + 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        other_step = other_rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the other worker stopped at {other_step}: {e}"));
    }
    cluster.signal("ps", 1, "KILL");
    cluster.wait_exit("ps", 1, Duration::from_secs(10));
    go_tx.send(()).unwrap();
    thread::sleep(Duration::from_millis(500));
    let restart = cluster
        .tasks
        .iter()
        .position(|t| t.job == "ps" && t.index == 1);
    cluster.launch(restart.unwrap());

    let (records, events, paused_at) = bounded("the chief worker", move || chief.join().unwrap())
        .unwrap_or_else(|e| panic!("the chief worker failed: {e}"));
    let (last_step, agg_events) = bounded("the aggregator", move || aggregator.join().unwrap())
        .unwrap_or_else(|e| panic!("the aggregator failed: {e}"));
    let (other_steps, other_events) = bounded("the other worker", move || other.join().unwrap())
        .unwrap_or_else(|e| panic!("the other worker failed: {e}"));

    // The chief noticed the loss and restored a checkpoint saved before it, older than the
    // steps it had run (the surviving state was ahead of it).
    let lost = events
        .iter()
        .position(|e| matches!(e, Event::Lost { task, .. } if task.contains("ps")))
        .unwrap_or_else(|| panic!("no lost task noticed: {events:?}"));
    let Some(Event::Restored {
        global_step: back_to,
        prefix,
        ..
    }) = events[lost..]
        .iter()
        .find(|e| matches!(e, Event::Restored { .. }))
        .cloned()
    else {
        panic!("no restore after the loss: {events:?}")
    };
    assert!(
        events[..lost]
            .iter()
            .any(|e| matches!(e, Event::Saved { global_step, .. } if *global_step == back_to)),
        "{events:?}"
    );
    assert!(prefix.ends_with(format!("model-{back_to}")), "{prefix:?}");
    // The first step after the restore ran at the restored step on the checkpoint's values,
    // and its loss is the loss of those values (it continues from the checkpoint).
    let files: Vec<_> = (0..2)
        .map(|k| dir.0.join(format!("model-{back_to}-{k}-of-2.safetensors")))
        .collect();
    let w = Checkpoint::open(&files[0])
        .unwrap()
        .tensor("w", Some(DType::F32))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = Checkpoint::open(&files[1])
        .unwrap()
        .tensor("b", Some(DType::F32))
        .unwrap()
        .to_vec::<f32>()
        .unwrap()[0];
    // The global step had gone past the checkpoint (the other worker trained on meanwhile).
    assert!(
        back_to >= 6 && back_to < other_step,
        "restored {back_to}, the global step was at {other_step}"
    );
    let back = paused_at;
    let first_after = records[back..]
        .iter()
        .position(|r| r.0 == back_to && r.2 == w && r.3 == b)
        .map(|i| i + back)
        .unwrap_or_else(|| {
            panic!(
                "no step at {back_to} on the checkpoint's values {w:?} {b} after the restore: \
                 {:?}; events {events:?}",
                &records[back - 1..]
            )
        });
    let (_, loss, _, _) = &records[first_after];
    let want = mse(&w, b, &batch(2 * back_to));
    assert!(
        (loss - want).abs() <= 1e-5 * want.max(1.0),
        "loss {loss} at the restored step, the checkpoint's values give {want}"
    );
    // The same loss as when that step first ran (the checkpoint holds that step's values).
    if let Some(before) = records[..back].iter().find(|r| r.0 == back_to && r.2 == w) {
        assert!(
            (before.1 - loss).abs() <= 1e-6 * loss.max(1.0),
            "{before:?} vs {loss}"
        );
    }
    // Training went on to the end and the loss came down; the other processes recovered.
    assert!(last_step >= STEPS, "{last_step}");
    assert!(records.last().unwrap().0 >= back_to + 6, "{records:?}");
    assert!(
        records.last().unwrap().1 < records[0].1 / 4.0,
        "{records:?}"
    );
    assert!(other_steps > 0);
    for (who, ev) in [("aggregator", &agg_events), ("other worker", &other_events)] {
        assert!(
            ev.iter().any(|e| matches!(e, Event::Lost { .. })),
            "the {who} did not notice the loss: {ev:?}"
        );
    }
}

#[test]
fn a_non_chief_without_a_chief_gives_up_at_its_deadline() {
    let cluster = Cluster::start(&[("ps", 1), ("worker", 2)]);
    let spec = cluster.spec.clone();
    let (e, waited) = bounded("the non-chief", move || {
        let m = model(1, 1);
        let g = m.g.clone();
        let make = move || Remote::new(&spec, &g, STEP_TIMEOUT);
        let config = MonitoredConfig {
            is_chief: false,
            ready_timeout: Duration::from_millis(1500),
            ..MonitoredConfig::default()
        };
        let start = Instant::now();
        let r = MonitoredSession::new(make, m.ops, None, config);
        (r.err().expect("no chief, not ready"), start.elapsed())
    });
    let text = e.to_string();
    assert!(matches!(e, TrainError::NotReady(_)), "{text}");
    assert!(
        text.contains("not ready within 1.5s") && text.contains("w, b, global_step"),
        "{text}"
    );
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10));
}

/// A worker that trains on examples dequeued from a shared queue on ps:0, until the queue is
/// closed and empty.
struct QueueWorker {
    m: Model,
    fill: NodeId,
    close: NodeId,
    data_x: Output,
    data_y: Output,
}

fn queue_worker(task: usize) -> QueueWorker {
    let mut g = Graph::new();
    let q = g
        .with_device("/job:ps/task:0", |g| {
            g.fifo_queue(
                "examples",
                &[DType::F32, DType::F32],
                &[Shape::known(&[4, 3]), Shape::known(&[4, 1])],
                None,
            )
        })
        .unwrap();
    let data_x = g
        .placeholder("data_x", DType::F32, Shape::unknown())
        .unwrap();
    let data_y = g
        .placeholder("data_y", DType::F32, Shape::unknown())
        .unwrap();
    let fill = g.queue_enqueue_many(&q, &[data_x, data_y]).unwrap();
    let close = g.queue_close(&q, false).unwrap();
    let batch = g.queue_dequeue(&q).unwrap();
    let (x, y) = (batch[0], batch[1]);
    let w0 = g.constant_from(&[3, 1], vec![0.1f32, 0.2, 0.3]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let gs = global_step(&mut g).unwrap();
    let xw = g.matmul(x, w.value).unwrap();
    let loss = mean_squared_error(&mut g, xw, y).unwrap();
    let setter = ReplicaDeviceSetter::new(1, &format!("/job:worker/task:{task}")).unwrap();
    setter.apply(&mut g).unwrap();
    let vars = vec![w, gs.clone()];
    let train = Sgd::new(0.05)
        .minimize(&mut g, loss, &vars[..1], Some(&gs))
        .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let ops = ModelOps::new(&mut g, &vars, init, &gs).unwrap();
    setter.apply(&mut g).unwrap();
    QueueWorker {
        m: Model {
            g,
            x,
            y,
            loss,
            train,
            vars,
            ops,
        },
        fill,
        close,
        data_x,
        data_y,
    }
}

#[test]
fn the_end_of_the_data_ends_every_worker_cleanly() {
    const BATCHES: i64 = 24;
    let cluster = Cluster::start(&[("ps", 1), ("worker", 2)]);
    let dir = TempDir::new("end");
    let (ready_tx, ready_rx) = mpsc::channel();
    let workers: Vec<_> = (0..2)
        .map(|task| {
            let spec = cluster.spec.clone();
            let ckpt = dir.0.clone();
            let ready_tx = ready_tx.clone();
            thread::spawn(move || {
                let mut w = queue_worker(task);
                let saver = (task == 0).then(|| {
                    ShardedSaver::new::<Error>(&mut w.m.g, &w.m.vars, &ckpt, "model").unwrap()
                });
                let g = w.m.g.clone();
                let make = move || Remote::new(&spec, &g, STEP_TIMEOUT);
                let config = MonitoredConfig {
                    is_chief: task == 0,
                    save_every_steps: Some(10),
                    ready_timeout: Duration::from_secs(30),
                    ..MonitoredConfig::default()
                };
                let mut s = MonitoredSession::new(make, w.m.ops.clone(), saver, config)?;
                if task == 0 {
                    // The chief feeds the whole data set, then closes the queue.
                    let (xs, ys): (Vec<Tensor>, Vec<Tensor>) = (0..BATCHES).map(batch).unzip();
                    let stack = |ts: &[Tensor], cols: usize| {
                        let data: Vec<f32> =
                            ts.iter().flat_map(|t| t.to_vec::<f32>().unwrap()).collect();
                        Tensor::new(&[ts.len(), 4, cols], data).unwrap()
                    };
                    let runner = &s.runner().0;
                    let fill = |feeds: &[(Output, Tensor)], op: NodeId| {
                        runner.run(feeds, &[], &[op]).map_err(|e| TrainError::Step {
                            what: "filling the queue".into(),
                            source: e,
                        })
                    };
                    fill(
                        &[(w.data_x, stack(&xs, 3)), (w.data_y, stack(&ys, 1))],
                        w.fill,
                    )?;
                    fill(&[], w.close)?;
                    let _ = ready_tx.send(());
                }
                let mut steps = 0i64;
                let mut losses = Vec::new();
                while let Some(out) = s.run(&[], &[w.m.loss], &[w.m.train])? {
                    steps += 1;
                    losses.push(out[0].scalar_value::<f32>().unwrap());
                }
                let last = s.finish()?;
                Ok::<_, TrainError<Error>>((steps, losses, last))
            })
        })
        .collect();
    drop(ready_tx);
    ready_rx
        .recv_timeout(LIMIT)
        .expect("the chief filled the queue");
    let results: Vec<_> = workers
        .into_iter()
        .map(|w| bounded("a worker", move || w.join().unwrap()).unwrap())
        .collect();
    let total: i64 = results.iter().map(|r| r.0).sum();
    assert_eq!(total, BATCHES, "every batch trained exactly once");
    // The chief's latest checkpoint holds the final global step; only the chief saves.
    let state = tfr_nn::saver::read_state(&dir.0).unwrap().unwrap();
    assert_eq!(state.latest, format!("model-{BATCHES}"), "{state:?}");
    assert!(results[1].2.is_none(), "only the chief saves");
}
