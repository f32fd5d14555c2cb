//! Failure semantics over real processes: a stopped task makes a step time out (naming it),
//! a running step can be cancelled, and the master notices a dead task and recovers when it
//! comes back. Every wait is bounded.

use crate::common;

use common::{bounded, worker_status, Cluster};
use std::time::{Duration, Instant};
use tfr_core::Tensor;
use tfr_distributed::{
    CancelToken, ChannelOptions, ClusterSession, ClusterSessionOptions, Error, RemoteSession,
    RemoteSessionOptions, RunOptions,
};
use tfr_graph::{DType, Graph, Output, Shape};

fn channel() -> ChannelOptions {
    ChannelOptions {
        connect_timeout: Duration::from_secs(2),
        ..ChannelOptions::default()
    }
}

fn cluster_options() -> ClusterSessionOptions {
    ClusterSessionOptions {
        channel: channel(),
        ..ClusterSessionOptions::default()
    }
}

fn remote_options() -> RemoteSessionOptions {
    RemoteSessionOptions {
        channel: channel(),
        ..RemoteSessionOptions::default()
    }
}

/// `y = (a * a on task 1) + a on task 0`: task 0 waits for task 1's value.
fn two_task_graph() -> (Graph, Output, Output) {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let sq = g
        .with_device("/job:worker/task:1", |g| g.mul(a, a))
        .unwrap();
    let y = g
        .with_device("/job:worker/task:0", |g| g.add(sq, a))
        .unwrap();
    (g, a, y)
}

fn value(r: &[Tensor]) -> f32 {
    r[0].scalar_value::<f32>().unwrap()
}

#[test]
fn a_stopped_task_makes_the_step_time_out_naming_it_not_hang() {
    let mut cluster = Cluster::start(&[("worker", 2)]);
    let stopped = cluster.task("worker", 1).address.clone();
    let (g, a, y) = two_task_graph();
    let local = ClusterSession::new(&cluster.spec, &g, cluster_options()).unwrap();
    let remote = RemoteSession::new(
        &format!("grpc://{}", cluster.tasks[0].address),
        &g,
        remote_options(),
    )
    .unwrap();
    assert_eq!(
        value(
            &local
                .run(&[(a, Tensor::scalar(3.0f32))], &[y], &[])
                .unwrap()
        ),
        12.0
    );
    assert_eq!(
        value(
            &remote
                .run(&[(a, Tensor::scalar(3.0f32))], &[y], &[])
                .unwrap()
        ),
        12.0
    );
    cluster.signal("worker", 1, "STOP");
    let timeout = RunOptions {
        timeout: Some(Duration::from_millis(1500)),
        cancel: None,
    };
    let (local, remote) = bounded("the timed-out steps", Duration::from_secs(30), move || {
        for (what, r) in [
            (
                "in-process master",
                local.run_with(&[(a, Tensor::scalar(1.0f32))], &[y], &[], &timeout),
            ),
            (
                "remote master",
                remote.run_with(&[(a, Tensor::scalar(1.0f32))], &[y], &[], &timeout),
            ),
        ] {
            let e = r.expect_err(what);
            let m = e.to_string();
            assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{what}: {m}");
            assert!(
                m.contains("/job:worker/task:1") && m.contains(&stopped),
                "{what}: {m}"
            );
        }
        (local, remote)
    });
    // The live task dropped the step.
    assert_eq!(worker_status(&cluster.tasks[0].address).active_steps, 0);
    // Resumed, the task serves the next steps.
    cluster.signal("worker", 1, "CONT");
    assert_eq!(
        value(
            &local
                .run(&[(a, Tensor::scalar(2.0f32))], &[y], &[])
                .unwrap()
        ),
        6.0
    );
    assert_eq!(
        value(
            &remote
                .run(&[(a, Tensor::scalar(2.0f32))], &[y], &[])
                .unwrap()
        ),
        6.0
    );
}

#[test]
fn a_running_step_is_cancelled_on_every_task() {
    let mut cluster = Cluster::start(&[("worker", 2)]);
    let (g, a, y) = two_task_graph();
    let local = ClusterSession::new(&cluster.spec, &g, cluster_options()).unwrap();
    let remote = RemoteSession::new(
        &format!("grpc://{}", cluster.tasks[0].address),
        &g,
        remote_options(),
    )
    .unwrap();
    local
        .run(&[(a, Tensor::scalar(1.0f32))], &[y], &[])
        .unwrap();
    remote
        .run(&[(a, Tensor::scalar(1.0f32))], &[y], &[])
        .unwrap();
    // Task 1 stops: task 0's partition waits for its value until the step is cancelled.
    cluster.signal("worker", 1, "STOP");
    for remote_master in [false, true] {
        let token = CancelToken::new();
        let canceller = token.clone();
        let started = Instant::now();
        let cancel_thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            canceller.cancel();
        });
        let options = RunOptions {
            timeout: None,
            cancel: Some(token),
        };
        let (l, r) = (local.clone(), &remote);
        let e = std::thread::scope(|scope| {
            let h = scope.spawn(move || {
                let feeds = [(a, Tensor::scalar(1.0f32))];
                if remote_master {
                    r.run_with(&feeds, &[y], &[], &options)
                } else {
                    l.run_with(&feeds, &[y], &[], &options)
                }
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            while !h.is_finished() {
                assert!(Instant::now() < deadline, "the cancelled step hangs");
                std::thread::sleep(Duration::from_millis(20));
            }
            h.join().unwrap().expect_err("a cancelled step fails")
        });
        cancel_thread.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(e.code(), tonic::Code::Cancelled, "{e}");
        assert!(matches!(e, Error::Cancelled(_)), "{e:?}");
        assert!(e.to_string().contains("cancelled"), "{e}");
        // The live task is not left waiting.
        assert_eq!(worker_status(&cluster.tasks[0].address).active_steps, 0);
    }
    cluster.signal("worker", 1, "CONT");
    let r = local
        .run(&[(a, Tensor::scalar(5.0f32))], &[y], &[])
        .unwrap();
    assert_eq!(value(&r), 30.0);
    // A token cancelled before the step starts stops it at once.
    let token = CancelToken::new();
    token.cancel();
    let e = remote
        .run_with(
            &[(a, Tensor::scalar(5.0f32))],
            &[y],
            &[],
            &RunOptions {
                timeout: None,
                cancel: Some(token),
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Cancelled, "{e}");
}

#[test]
fn the_master_notices_a_dead_task_and_recovers_when_it_restarts() {
    let mut cluster = Cluster::start(&[("worker", 2)]);
    let dead = cluster.task("worker", 1).address.clone();
    let (g, a, y) = two_task_graph();
    let remote = RemoteSession::new(
        &format!("grpc://{}", cluster.tasks[0].address),
        &g,
        remote_options(),
    )
    .unwrap();
    let local = ClusterSession::new(&cluster.spec, &g, cluster_options()).unwrap();
    remote
        .run(&[(a, Tensor::scalar(1.0f32))], &[y], &[])
        .unwrap();
    local
        .run(&[(a, Tensor::scalar(1.0f32))], &[y], &[])
        .unwrap();
    let health = remote.cluster_status(Duration::from_secs(2)).unwrap();
    assert!(health.iter().all(|h| h.alive), "{health:?}");

    cluster.signal("worker", 1, "KILL");
    cluster.wait_exit("worker", 1, Duration::from_secs(10));
    // The health check names the dead task and its address, within its bound.
    let started = Instant::now();
    let health = remote.cluster_status(Duration::from_secs(2)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(8));
    let down: Vec<_> = health.iter().filter(|h| !h.alive).collect();
    assert_eq!(down.len(), 1, "{health:?}");
    assert_eq!(down[0].task, "/job:worker/task:1");
    assert!(down[0].error.contains(&dead), "{:?}", down[0]);
    let in_process = local.health(Duration::from_secs(2));
    assert!(in_process[0].status.is_ok());
    let e = in_process[1].status.as_ref().unwrap_err();
    assert!(e.to_string().contains(&dead), "{e}");
    // A step names the dead task and its address.
    for r in [
        remote.run(&[(a, Tensor::scalar(2.0f32))], &[y], &[]),
        local.run(&[(a, Tensor::scalar(2.0f32))], &[y], &[]),
    ] {
        let e = r.unwrap_err();
        let m = e.to_string();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{m}");
        assert!(m.contains("/job:worker/task:1") && m.contains(&dead), "{m}");
    }
    // The task comes back (empty: no registered graphs); the next steps register anew.
    cluster.launch(1);
    assert_eq!(worker_status(&dead).registered_graphs, 0);
    let r = remote
        .run(&[(a, Tensor::scalar(2.0f32))], &[y], &[])
        .unwrap();
    assert_eq!(value(&r), 6.0);
    let r = local
        .run(&[(a, Tensor::scalar(3.0f32))], &[y], &[])
        .unwrap();
    assert_eq!(value(&r), 12.0);
    assert_eq!(worker_status(&dead).registered_graphs, 2);
}

#[test]
fn a_client_that_goes_away_mid_step_cancels_the_step() {
    use tfr_distributed::proto::master::master_client::MasterClient;
    use tfr_distributed::proto::master::{CreateSessionRequest, NamedTensor, RunStepRequest};
    let mut cluster = Cluster::start(&[("worker", 2)]);
    let live = cluster.tasks[0].address.clone();
    let (g, a, y) = two_task_graph();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let step = |session: u64| RunStepRequest {
        session,
        feeds: vec![NamedTensor {
            name: g.output_name(a),
            tensor: Some(tfr_distributed::wire::tensor_to_proto(&Tensor::scalar(2.0f32)).unwrap()),
        }],
        fetches: vec![g.output_name(y)],
        ..Default::default()
    };
    let mut client = rt
        .block_on(MasterClient::connect(format!("http://{live}")))
        .unwrap();
    let session = rt
        .block_on(client.create_session(CreateSessionRequest {
            graph: g.to_bytes(),
            options: None,
        }))
        .unwrap()
        .into_inner()
        .session;
    rt.block_on(client.run_step(step(session))).unwrap();
    cluster.signal("worker", 1, "STOP");
    // The client gives up on the step after 500 ms and drops the call.
    let r = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(500), client.run_step(step(session))).await
    });
    assert!(r.is_err(), "the step cannot finish while task 1 is stopped");
    // The master cancels the abandoned step: task 0 stops waiting for task 1's value.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if worker_status(&live).active_steps == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned step still runs on task 0"
        );
        // Drives the client's connection (it sends the reset of the dropped call).
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
    cluster.signal("worker", 1, "CONT");
    let out = rt
        .block_on(client.run_step(step(session)))
        .unwrap()
        .into_inner();
    let v = tfr_distributed::wire::tensor_from_proto(&out.fetches[0], "y").unwrap();
    assert_eq!(v.scalar_value::<f32>().unwrap(), 6.0);
}
