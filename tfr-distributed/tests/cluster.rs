//! Steps over real `tfr-server` processes: the single-process results, shared `ps`
//! variables, dead tasks and bad input over the wire.

use crate::common;

use common::Cluster;
use std::time::{Duration, Instant};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_distributed::proto::worker_client::WorkerClient;
use tfr_distributed::proto::{Empty, Feed, RegisterGraphRequest, RunGraphRequest, TensorProto};
use tfr_distributed::{ChannelOptions, ClusterSession, ClusterSessionOptions, Error};
use tfr_graph::device::DeviceSpec;
use tfr_graph::{DType, Graph, Output, Shape};

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
                        .map(|i| ((i * (layer + 3)) % 7) as f64 / 7.0 - 0.4)
                        .collect(),
                )
                .unwrap();
            let z = g.matmul(h, w).unwrap();
            let t = g.tanh(z).unwrap();
            let skip = g.mul(h, h).unwrap();
            g.add(t, skip).unwrap()
        });
    }
    let y = g.reduce_sum(h, Some(&[1]), false).unwrap();
    (g, x, y)
}

fn xval(seed: usize) -> Tensor {
    Tensor::new(
        &[4, 8],
        (0..32)
            .map(|i| ((i + seed) as f64 * 0.37).sin() * 0.5)
            .collect(),
    )
    .unwrap()
}

fn options() -> ClusterSessionOptions {
    ClusterSessionOptions {
        channel: ChannelOptions {
            connect_timeout: Duration::from_secs(3),
            ..ChannelOptions::default()
        },
        soft_placement: false,
        ..ClusterSessionOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_graph_split_over_three_tasks_gives_the_single_process_result() {
    check_split_over_three_tasks(&Cluster::start(&[("ps", 1), ("worker", 2)]));
}

/// The same with every task on its own host (network namespaces joined by veth pairs; root
/// only): nothing binds only to loopback by accident.
#[test]
fn a_graph_split_over_three_hosts_gives_the_single_process_result() {
    match Cluster::start_on_hosts(&[("ps", 1), ("worker", 2)]) {
        Ok(cluster) => check_split_over_three_tasks(&cluster),
        Err(why) => eprintln!("skipped: tasks on separate hosts need network namespaces: {why}"),
    }
}

fn check_split_over_three_tasks(cluster: &Cluster) {
    let devices = [
        "/job:worker/task:0/device:CPU:0",
        "/job:ps/task:0",
        "/job:worker/task:1/device:CPU:0",
    ];
    let (g, x, y) = layered(&devices);
    let local = Session::new(&g, SessionOptions::default()).unwrap();
    let s = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    let placed = s.placement(&[x], &[y], &[]).unwrap();
    for d in devices {
        let want = DeviceSpec::parse(d).unwrap();
        assert!(
            placed
                .iter()
                .any(|(_, p)| want.matches(&DeviceSpec::parse(p).unwrap())),
            "nothing placed on {d}: {placed:?}"
        );
    }
    for seed in 0..3 {
        let want = local.run(&[(x, xval(seed))], &[y], &[]).unwrap();
        let got = s.run(&[(x, xval(seed))], &[y], &[]).unwrap();
        assert_eq!(got, want, "seed {seed}");
    }
    // Each task registered its partition once for the three steps.
    let rt = runtime();
    for t in &cluster.tasks {
        let status = rt.block_on(async {
            let mut c = WorkerClient::connect(format!("http://{}", t.address))
                .await
                .unwrap();
            c.status(Empty {}).await.unwrap().into_inner()
        });
        assert_eq!(status.registered_graphs, 1, "{}", status.task);
        assert_eq!(status.active_steps, 0, "{}", status.task);
    }
}

/// The same graph built by each client: a variable on the `ps` task, updated from `worker`.
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
fn a_ps_variable_is_shared_by_two_clients() {
    let cluster = Cluster::start(&[("ps", 1), ("worker", 1)]);
    let (g, x, value, init, inc) = counter_graph();
    let a = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    a.run(&[], &[], &[init]).unwrap();
    let (g2, x2, value2, _, inc2) = counter_graph();
    let b = ClusterSession::new(&cluster.spec, &g2, options()).unwrap();
    let one = Tensor::new(&[2], vec![1.0f32, 10.0]).unwrap();
    a.run(&[(x, one.clone())], &[inc], &[]).unwrap();
    b.run(&[(x2, one.clone())], &[inc2], &[]).unwrap();
    // Two clients at once, several steps each.
    std::thread::scope(|scope| {
        let a = &a;
        let b = &b;
        let one = &one;
        scope.spawn(move || {
            for _ in 0..5 {
                a.run(&[(x, one.clone())], &[inc], &[]).unwrap();
            }
        });
        scope.spawn(move || {
            for _ in 0..5 {
                b.run(&[(x2, one.clone())], &[inc2], &[]).unwrap();
            }
        });
    });
    let want = vec![1.0 + 12.0 * 2.0, 2.0 + 12.0 * 20.0];
    assert_eq!(
        a.run(&[], &[value], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        want
    );
    assert_eq!(
        b.run(&[], &[value2], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        want
    );
    // A client that ends does not take the variable along.
    drop(a);
    let c = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    assert_eq!(
        c.run(&[], &[value], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        want
    );
}

#[test]
fn a_killed_task_is_an_error_naming_it_within_the_deadline() {
    let mut cluster = Cluster::start(&[("worker", 2)]);
    let (g, x, y) = layered(&["/job:worker/task:0", "/job:worker/task:1"]);
    let s = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    s.run(&[(x, xval(0))], &[y], &[]).unwrap();
    let dead = cluster.task("worker", 1).address.clone();
    cluster.signal("worker", 1, "KILL");
    cluster.wait_exit("worker", 1, Duration::from_secs(10));
    let start = Instant::now();
    let e = s.run(&[(x, xval(1))], &[y], &[]).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let m = e.to_string();
    assert!(m.contains("/job:worker/task:1") && m.contains(&dead), "{m}");
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    // The surviving task is not left with the step.
    let rt = runtime();
    let live = cluster.task("worker", 0).address.clone();
    let status = rt.block_on(async {
        let mut c = WorkerClient::connect(format!("http://{live}"))
            .await
            .unwrap();
        c.status(Empty {}).await.unwrap().into_inner()
    });
    assert_eq!(status.active_steps, 0);
}

#[test]
fn an_unreachable_task_is_an_error_naming_its_address() {
    let port = common::free_ports(1)[0];
    let address = format!("127.0.0.1:{port}");
    let spec =
        tfr_distributed::ClusterConfig::from_json(&format!(r#"{{"worker": ["{address}"]}}"#))
            .unwrap()
            .cluster;
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g
        .with_device("/job:worker/task:0", |g| g.add(a, a))
        .unwrap();
    let s = ClusterSession::new(&spec, &g, options()).unwrap();
    let start = Instant::now();
    let e = s
        .run(&[(a, Tensor::scalar(1.0f32))], &[b], &[])
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let m = e.to_string();
    assert!(
        m.contains(&address) && m.contains("/job:worker/task:0"),
        "{m}"
    );
}

#[test]
fn sigterm_stops_a_task_cleanly() {
    let mut cluster = Cluster::start(&[("worker", 1)]);
    // A connected session keeps its RunGraph stream (and connection) to the task open, and
    // between steps nothing drives its side: the task ends its streams and, after a grace
    // period, stops whether or not the connection closed.
    let (g, x, y) = layered(&["/job:worker/task:0"]);
    let s = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    s.run(&[(x, xval(0))], &[y], &[]).unwrap();
    cluster.signal("worker", 0, "TERM");
    let status = cluster.wait_exit("worker", 0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let e = s.run(&[(x, xval(1))], &[y], &[]).unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
}

/// Client threads sharing one session share its RunGraph stream to each task (and the
/// tasks' RecvTensors streams): every step gets its own answers.
#[test]
fn steps_of_many_threads_on_one_session_get_their_own_results() {
    let cluster = Cluster::start(&[("worker", 2)]);
    let devices = ["/job:worker/task:0", "/job:worker/task:1"];
    let (g, x, y) = layered(&devices);
    let local = Session::new(&g, SessionOptions::default()).unwrap();
    let want: Vec<Tensor> = (0..40)
        .map(|seed| local.run(&[(x, xval(seed))], &[y], &[]).unwrap().remove(0))
        .collect();
    let s = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (s, want) = (&s, &want);
            scope.spawn(move || {
                for seed in (t..40).step_by(4) {
                    let got = s.run(&[(x, xval(seed))], &[y], &[]).unwrap();
                    assert_eq!(got[0], want[seed], "seed {seed}");
                }
            });
        }
    });
    // Several steps at once from one thread: each result in its feed set's place.
    let sets: Vec<Vec<(Output, Tensor)>> = (0..8).map(|seed| vec![(x, xval(seed))]).collect();
    for (seed, got) in s.run_many(&sets, &[y], &[]).into_iter().enumerate() {
        assert_eq!(got.unwrap()[0], want[seed], "seed {seed}");
    }
    for t in &cluster.tasks {
        let status = common::worker_status(&t.address);
        assert_eq!(status.registered_graphs, 1, "{}", status.task);
        assert_eq!(status.active_steps, 0, "{}", status.task);
    }
}

#[test]
fn bad_input_over_the_wire_is_an_error_and_the_server_keeps_serving() {
    let cluster = Cluster::start(&[("worker", 1)]);
    let address = cluster.tasks[0].address.clone();
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g
        .with_device("/job:worker/task:0", |g| g.add(a, a))
        .unwrap();
    let s = ClusterSession::new(&cluster.spec, &g, options()).unwrap();

    // A feed of the wrong dtype, through the session.
    let e = s.run(&[(a, Tensor::scalar(1i32))], &[b], &[]).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("feed for `a:0`") && m.contains("/job:worker/task:0"),
        "{m}"
    );

    let rt = runtime();
    rt.block_on(async {
        let mut c = WorkerClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        // Garbage bytes as a graph.
        let e = c
            .register_graph(RegisterGraphRequest {
                graph: vec![0xff, 0x13, 0x37, 0x00, 0x42],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("does not load"), "{e}");
        // A graph that fails validation: an op no registry knows.
        let json = g.to_json().replace("\"Add\"", "\"NoSuchOp\"");
        let bad: Graph = serde_json::from_str(&json).unwrap();
        let e = c
            .register_graph(RegisterGraphRequest {
                graph: bad.to_bytes(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("NoSuchOp"), "{e}");
        // Feeds naming nodes that do not exist, or that are no `_Arg`.
        let e = c
            .register_graph(RegisterGraphRequest {
                graph: g.to_bytes(),
                feeds: vec![Feed {
                    arg_node: Some(99),
                    name: "a".into(),
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("node 99"), "{e}");
        // An unknown handle, and a truncated tensor.
        let e = c
            .run_graph(RunGraphRequest {
                handle: 12345,
                step_id: 1,
                feeds: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    });
    // A real registration, then a truncated feed tensor for it.
    s.run(&[(a, Tensor::scalar(2.0f32))], &[b], &[]).unwrap();
    rt.block_on(async {
        let mut c = WorkerClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let status = c.status(Empty {}).await.unwrap().into_inner();
        assert!(status.registered_graphs >= 1);
        let e = c
            .run_graph(RunGraphRequest {
                handle: 1,
                step_id: 7,
                feeds: vec![TensorProto {
                    dtype: "F32".into(),
                    dims: vec![],
                    data: vec![0, 0, 0],
                }],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains("3 bytes"), "{e}");
    });
    // Still serving.
    let out = s.run(&[(a, Tensor::scalar(2.5f32))], &[b], &[]).unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 5.0);
}

#[test]
fn a_failing_node_aborts_the_step_on_every_task_naming_task_and_node() {
    let cluster = Cluster::start(&[("worker", 2)]);
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::I32, Shape::known(&[2])).unwrap();
    let b = g.placeholder("b", DType::I32, Shape::known(&[2])).unwrap();
    let q = g
        .with_device("/job:worker/task:1", |g| g.floor_div(a, b))
        .unwrap();
    // Task 0 waits for task 1's value: it must be woken by the abort, not hang.
    let r = g
        .with_device("/job:worker/task:0", |g| g.add(q, a))
        .unwrap();
    let s = ClusterSession::new(&cluster.spec, &g, options()).unwrap();
    let ok = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![7, -7]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 2]).unwrap()),
            ],
            &[r],
            &[],
        )
        .unwrap();
    assert_eq!(ok[0].to_vec::<i32>().unwrap(), vec![3 + 7, -4 - 7]);
    let start = Instant::now();
    let e = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![7, -7]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 0]).unwrap()),
            ],
            &[r],
            &[],
        )
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let m = e.to_string();
    assert!(m.contains("/job:worker/task:1"), "{m}");
    assert!(m.contains("FloorDiv"), "{m}");
    assert!(!m.contains("aborted"), "the cause, not a cancellation: {m}");
    // Both tasks dropped the step and still serve.
    let rt = runtime();
    for t in &cluster.tasks {
        let status = rt.block_on(async {
            let mut c = WorkerClient::connect(format!("http://{}", t.address))
                .await
                .unwrap();
            c.status(Empty {}).await.unwrap().into_inner()
        });
        assert_eq!(status.active_steps, 0, "{}", status.task);
    }
    let again = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![8, 9]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 3]).unwrap()),
            ],
            &[r],
            &[],
        )
        .unwrap();
    assert_eq!(again[0].to_vec::<i32>().unwrap(), vec![12, 12]);
}
