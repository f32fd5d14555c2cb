//! A thin client driving a cluster through a server's master service (`grpc://host:port`):
//! the in-process results, cached steps, extension, closing, and bad input.

use crate::common;

use common::{worker_status, Cluster};
use std::time::{Duration, Instant};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_distributed::{
    ChannelOptions, ClusterSession, ClusterSessionOptions, Error, RemoteSession,
    RemoteSessionOptions,
};
use tfr_graph::{DType, Graph, Output, Shape};

fn channel() -> ChannelOptions {
    ChannelOptions {
        connect_timeout: Duration::from_secs(3),
        ..ChannelOptions::default()
    }
}

fn remote_options() -> RemoteSessionOptions {
    RemoteSessionOptions {
        channel: channel(),
        soft_placement: false,
        ..RemoteSessionOptions::default()
    }
}

fn target(address: &str) -> String {
    format!("grpc://{address}")
}

/// A small network whose layers are pinned to the given devices in turn.
fn layered(devices: &[&str]) -> (Graph, Output, Output) {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[4, 8]))
        .unwrap();
    let mut h = x;
    for layer in 0..4 {
        h = g.with_device(devices[layer % devices.len()], |g| {
            let w = g
                .constant_from(
                    &[8, 8],
                    (0..64)
                        .map(|i| ((i * (layer + 5)) % 11) as f64 / 11.0 - 0.45)
                        .collect(),
                )
                .unwrap();
            let z = g.matmul(h, w).unwrap();
            let t = g.tanh(z).unwrap();
            g.add(t, h).unwrap()
        });
    }
    let y = g.reduce_sum(h, Some(&[1]), false).unwrap();
    (g, x, y)
}

fn xval(seed: usize) -> Tensor {
    Tensor::new(
        &[4, 8],
        (0..32)
            .map(|i| ((i * 3 + seed) as f64 * 0.29).cos() * 0.7)
            .collect(),
    )
    .unwrap()
}

#[test]
fn a_thin_client_gives_the_in_process_result_with_one_registration_per_task() {
    let cluster = Cluster::start(&[("worker", 2)]);
    let (g, x, y) = layered(&["/job:worker/task:0", "/job:worker/task:1"]);
    let local = Session::new(&g, SessionOptions::default()).unwrap();
    let remote =
        RemoteSession::new(&target(&cluster.tasks[1].address), &g, remote_options()).unwrap();
    let in_process = ClusterSession::new(
        &cluster.spec,
        &g,
        ClusterSessionOptions {
            channel: channel(),
            ..ClusterSessionOptions::default()
        },
    )
    .unwrap();
    for seed in 0..5 {
        let want = local.run(&[(x, xval(seed))], &[y], &[]).unwrap();
        let got = remote.run(&[(x, xval(seed))], &[y], &[]).unwrap();
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(in_process.run(&[(x, xval(seed))], &[y], &[]).unwrap(), want);
    }
    // By name, too: the same signature, so no new registration.
    let name = g.output_name(y);
    let got = remote
        .run_named(&[("x:0", xval(9))], &[&name], &[])
        .unwrap();
    assert_eq!(got, local.run(&[(x, xval(9))], &[y], &[]).unwrap());
    // The master (on task 1) and the in-process master each registered one partition per
    // task for the repeated step.
    for t in &cluster.tasks {
        let s = worker_status(&t.address);
        assert_eq!(s.registered_graphs, 2, "{}", s.task);
        assert_eq!(s.active_steps, 0, "{}", s.task);
    }
    // Closing the remote session deregisters its partitions.
    remote.close().unwrap();
    for t in &cluster.tasks {
        assert_eq!(worker_status(&t.address).registered_graphs, 1);
    }
}

/// A variable on `ps`, incremented by `2 x` computed on `worker`.
fn counter_graph() -> (Graph, Output, Output, tfr_graph::NodeId, Output) {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let (v, init) = g.with_device("/job:ps/task:0", |g| {
        let init = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
        let v = g.variable("w", init).unwrap();
        (v, g.global_variables_initializer().unwrap())
    });
    let delta = g.with_device("/job:worker/task:0", |g| {
        let two = g.scalar(2.0f32).unwrap();
        g.mul(x, two).unwrap()
    });
    let inc = g
        .with_device("/job:ps/task:0", |g| g.assign_add(&v, delta))
        .unwrap();
    (g, x, v.value, init, inc)
}

#[test]
fn clients_of_two_masters_share_a_ps_variable() {
    let cluster = Cluster::start(&[("ps", 1), ("worker", 1)]);
    let (g, x, value, init, inc) = counter_graph();
    let a = RemoteSession::new(&target(&cluster.tasks[0].address), &g, remote_options()).unwrap();
    let b = RemoteSession::new(&target(&cluster.tasks[1].address), &g, remote_options()).unwrap();
    a.run(&[], &[], &[init]).unwrap();
    let one = Tensor::new(&[2], vec![1.0f32, 10.0]).unwrap();
    for k in 0..6 {
        let s = if k % 2 == 0 { &a } else { &b };
        s.run(&[(x, one.clone())], &[inc], &[]).unwrap();
    }
    let want = vec![1.0 + 6.0 * 2.0, 2.0 + 6.0 * 20.0];
    for s in [&a, &b] {
        let v = s.run(&[], &[value], &[]).unwrap();
        assert_eq!(v[0].to_vec::<f32>().unwrap(), want);
    }
}

#[test]
fn extending_a_session_adds_nodes_and_keeps_registered_steps() {
    let cluster = Cluster::start(&[("worker", 2)]);
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g
        .with_device("/job:worker/task:1", |g| g.mul(a, a))
        .unwrap();
    let mut remote =
        RemoteSession::new(&target(&cluster.tasks[0].address), &g, remote_options()).unwrap();
    let r = remote
        .run(&[(a, Tensor::scalar(3.0f32))], &[b], &[])
        .unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 9.0);
    let registered = worker_status(&cluster.tasks[1].address).registered_graphs;

    let mut g2 = g.clone();
    let c = g2
        .with_device("/job:worker/task:0", |g| g.add(b, a))
        .unwrap();
    remote.extend(&g2).unwrap();
    // The old step is still registered: no new partition for it.
    let r = remote
        .run(&[(a, Tensor::scalar(4.0f32))], &[b], &[])
        .unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 16.0);
    assert_eq!(
        worker_status(&cluster.tasks[1].address).registered_graphs,
        registered
    );
    let r = remote
        .run(&[(a, Tensor::scalar(4.0f32))], &[c], &[])
        .unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 20.0);

    // An "extension" that changes a node is refused, naming it; the session still serves.
    let mut changed = Graph::new();
    let a2 = changed
        .placeholder("a", DType::F32, Shape::scalar())
        .unwrap();
    let n = changed.neg(a2).unwrap();
    changed.neg(n).unwrap();
    let e = remote.extend(&changed).unwrap_err();
    let m = e.to_string();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("may only add nodes") && m.contains("Mul"), "{m}");
    let r = remote
        .run(&[(a, Tensor::scalar(1.0f32))], &[c], &[])
        .unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 2.0);
}

#[test]
fn bad_graphs_and_feeds_are_errors_naming_the_node_and_the_master_keeps_serving() {
    let cluster = Cluster::start(&[("worker", 2)]);
    let master = target(&cluster.tasks[0].address);
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g
        .with_device("/job:worker/task:1", |g| g.add(a, a))
        .unwrap();

    // A graph that fails validation: an op nobody knows, on node `Add`.
    let json = g.to_json().replace("\"Add\"", "\"NoSuchOp\"");
    let bad: Graph = serde_json::from_str(&json).unwrap();
    let e = RemoteSession::new(&master, &bad, remote_options()).unwrap_err();
    let m = e.to_string();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("NoSuchOp") && m.contains(&master[7..]), "{m}");

    let s = RemoteSession::new(&master, &g, remote_options()).unwrap();
    // A feed of the wrong dtype: the error names the fed node and the task that refused it.
    let e = s.run(&[(a, Tensor::scalar(1i32))], &[b], &[]).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("feed for `a:0`"), "{m}");
    assert!(m.contains("expected float32") && m.contains("int32"), "{m}");
    assert!(m.contains("/job:worker/task:1"), "{m}");
    // Unknown names and out-of-range ids.
    let e = s
        .run_named(&[("a", Tensor::scalar(1.0f32))], &["nope:0"], &[])
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = s
        .run(
            &[],
            &[Output {
                node: tfr_graph::NodeId(999),
                index: 0,
            }],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("999"), "{e}");
    // A target that is not `grpc://host:port`.
    let e = RemoteSession::new("http://127.0.0.1:1", &g, remote_options()).unwrap_err();
    assert!(e.to_string().contains("grpc://"), "{e}");
    assert!(matches!(e, Error::Core(_)), "{e:?}");

    // Still serving, and every task alive.
    let r = s.run(&[(a, Tensor::scalar(2.5f32))], &[b], &[]).unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 5.0);
    let health = s.cluster_status(Duration::from_secs(2)).unwrap();
    assert_eq!(health.len(), 2);
    assert!(health.iter().all(|h| h.alive), "{health:?}");
}

/// A session whose client stops calling without closing it (a client that died) is closed
/// after the server's `--session-idle-timeout`, its partitions deregistered from the tasks; a
/// session in use stays open.
#[test]
fn an_abandoned_session_is_closed_after_the_idle_timeout() {
    let cluster = Cluster::start_with(&[("worker", 2)], &["--session-idle-timeout", "2"], &[]);
    let (g, x, y) = layered(&["/job:worker/task:0", "/job:worker/task:1"]);
    let master = target(&cluster.tasks[0].address);
    let abandoned = RemoteSession::new(&master, &g, remote_options()).unwrap();
    let kept = RemoteSession::new(&master, &g, remote_options()).unwrap();
    let want = abandoned.run(&[(x, xval(1))], &[y], &[]).unwrap();
    let last_call = Instant::now();
    assert_eq!(kept.run(&[(x, xval(1))], &[y], &[]).unwrap(), want);
    let graphs = || -> Vec<u64> {
        cluster
            .tasks
            .iter()
            .map(|t| worker_status(&t.address).registered_graphs)
            .collect()
    };
    assert_eq!(graphs(), [2, 2]);
    // `kept` runs a step every 100 ms, `abandoned` makes no call: within 20 s its partitions
    // are gone from both tasks, and not before its timeout (2 s: `kept` stays in use on a
    // loaded machine too).
    loop {
        assert_eq!(kept.run(&[(x, xval(1))], &[y], &[]).unwrap(), want);
        let now = graphs();
        if now == [1, 1] {
            break;
        }
        assert!(
            last_call.elapsed() < Duration::from_secs(20),
            "the abandoned session was not closed: {now:?} partitions registered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        last_call.elapsed() >= Duration::from_millis(1800),
        "closed after {:?}, before the timeout",
        last_call.elapsed()
    );
    // The abandoned session's next call is an error saying why; the other still runs.
    let e = abandoned.run(&[(x, xval(2))], &[y], &[]).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("no session") && m.contains("unused"), "{m}");
    assert_eq!(kept.run(&[(x, xval(1))], &[y], &[]).unwrap(), want);
    kept.close().unwrap();
    assert_eq!(graphs(), [0, 0]);
}
