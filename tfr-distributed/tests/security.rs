//! The shared secret (every RPC of both services; a call without it or with a wrong one is
//! `Unauthenticated` and changes nothing) and message size limits, over real processes.

use crate::common;

use common::Cluster;
use std::time::Duration;
use tfr_core::Tensor;
use tfr_distributed::proto::master::master_client::MasterClient;
use tfr_distributed::proto::master::RunStepRequest;
use tfr_distributed::proto::worker_client::WorkerClient;
use tfr_distributed::proto::{Empty, RecvTensorRequest, RegisterGraphRequest, StatusResponse};
use tfr_distributed::{
    ChannelOptions, ClusterSession, ClusterSessionOptions, RemoteSession, RemoteSessionOptions,
    Secret,
};
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tonic::metadata::MetadataValue;

const VAR: &str = "TFR_TEST_CLUSTER_SECRET";
const SECRET: &str = "correct-horse-battery";

fn channel(secret: Option<&str>) -> ChannelOptions {
    ChannelOptions {
        connect_timeout: Duration::from_secs(3),
        secret: secret.map(|s| Secret::new(s, "test").unwrap()),
        ..ChannelOptions::default()
    }
}

fn remote(
    address: &str,
    g: &Graph,
    secret: Option<&str>,
) -> tfr_distributed::Result<RemoteSession> {
    RemoteSession::new(
        &format!("grpc://{address}"),
        g,
        RemoteSessionOptions {
            channel: channel(secret),
            ..RemoteSessionOptions::default()
        },
    )
}

/// A variable on `ps`, incremented by `2 x` computed on `worker`.
fn counter_graph() -> (Graph, Output, Output, NodeId, Output) {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let (v, init) = g.with_device("/job:ps/task:0", |g| {
        let zero = g.scalar(0.0f32).unwrap();
        let v = g.variable("w", zero).unwrap();
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

/// Calls a task's worker `Status` with the given secret metadata (None: none sent).
fn raw_status(address: &str, secret: Option<&str>) -> Result<StatusResponse, tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = WorkerClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let mut r = tonic::Request::new(Empty {});
        if let Some(s) = secret {
            r.metadata_mut()
                .insert("tfr-secret", MetadataValue::try_from(s).unwrap());
        }
        c.status(r).await.map(|r| r.into_inner())
    })
}

#[test]
fn every_call_needs_the_secret_and_a_refused_call_changes_nothing() {
    let cluster = Cluster::start_with(
        &[("ps", 1), ("worker", 1)],
        &["--secret-env", VAR],
        &[(VAR, SECRET)],
    );
    let ps = cluster.tasks[0].address.clone();
    let worker = cluster.tasks[1].address.clone();
    let (g, x, value, init, inc) = counter_graph();

    // Raw worker calls: none, a wrong and the right secret.
    for (secret, ok) in [
        (None, false),
        (Some("wrong-secret-123"), false),
        (Some(SECRET), true),
    ] {
        let r = raw_status(&ps, secret);
        match (r, ok) {
            (Ok(s), true) => assert_eq!(s.registered_graphs, 0),
            (Err(e), false) => {
                assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
                assert!(e.message().contains("secret"), "{e}");
            }
            (r, _) => panic!("secret {secret:?}: {r:?}"),
        }
    }
    // An unauthenticated RegisterGraph registers nothing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(async {
            let mut c = WorkerClient::connect(format!("http://{ps}")).await.unwrap();
            c.register_graph(RegisterGraphRequest {
                graph: g.to_bytes(),
                ..Default::default()
            })
            .await
        })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    assert_eq!(raw_status(&ps, Some(SECRET)).unwrap().registered_graphs, 0);
    // RecvTensor, which the server answers without tonic's codec, checks it too.
    let e = rt
        .block_on(async {
            let mut c = WorkerClient::connect(format!("http://{ps}")).await.unwrap();
            c.recv_tensor(RecvTensorRequest {
                step_id: 1,
                key: "k".into(),
            })
            .await
        })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");

    // Sessions without or with a wrong secret are refused, naming where.
    for secret in [None, Some("wrong-secret-123")] {
        let e = remote(&worker, &g, secret).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        let s = ClusterSession::new(
            &cluster.spec,
            &g,
            ClusterSessionOptions {
                channel: channel(secret),
                ..ClusterSessionOptions::default()
            },
        )
        .unwrap();
        let e = s.run(&[], &[], &[init]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        assert!(e.to_string().contains("/job:ps/task:0"), "{e}");
    }

    // With the secret: a step across both tasks (the worker-to-ps transfer carries it too).
    let ok = remote(&worker, &g, Some(SECRET)).unwrap();
    ok.run(&[], &[], &[init]).unwrap();
    ok.run(&[(x, Tensor::scalar(1.5f32))], &[inc], &[]).unwrap();
    let before = ok.run(&[], &[value], &[]).unwrap()[0]
        .scalar_value::<f32>()
        .unwrap();
    assert_eq!(before, 3.0);

    // A RunStep of that session without the secret changes nothing.
    let session = ok.session_id();
    let e = rt
        .block_on(async {
            let mut c = MasterClient::connect(format!("http://{worker}"))
                .await
                .unwrap();
            c.run_step(RunStepRequest {
                session,
                targets: vec![g.node(inc.node).name.clone()],
                ..Default::default()
            })
            .await
        })
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let after = ok.run(&[], &[value], &[]).unwrap()[0]
        .scalar_value::<f32>()
        .unwrap();
    assert_eq!(after, before);
}

#[test]
fn oversized_messages_are_errors_and_the_server_keeps_serving() {
    let cluster = Cluster::start_with(&[("worker", 1)], &["--max-message-bytes", "65536"], &[]);
    let address = cluster.tasks[0].address.clone();
    let mut g = Graph::new();
    let a = g
        .placeholder("a", DType::F32, Shape::unknown_dims(1))
        .unwrap();
    let b = g
        .with_device("/job:worker/task:0", |g| g.reduce_sum(a, Some(&[0]), false))
        .unwrap();
    let big = Tensor::new(&[65536], vec![1.0f32; 65536]).unwrap();
    let small = Tensor::new(&[4], vec![1.0f32; 4]).unwrap();

    let s = ClusterSession::new(
        &cluster.spec,
        &g,
        ClusterSessionOptions {
            channel: channel(None),
            ..ClusterSessionOptions::default()
        },
    )
    .unwrap();
    let e = s.run(&[(a, big.clone())], &[b], &[]).unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(
            e.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{:?}: {m}",
        e.code()
    );
    assert!(
        m.contains("/job:worker/task:0") && m.contains(&address),
        "{m}"
    );
    let r = s.run(&[(a, small.clone())], &[b], &[]).unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 4.0);

    // Through the master: the client's RunStep is too large for it.
    let rs = remote(&address, &g, None).unwrap();
    let e = rs.run(&[(a, big)], &[b], &[]).unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{:?}: {e}",
        e.code()
    );
    let r = rs.run(&[(a, small)], &[b], &[]).unwrap();
    assert_eq!(r[0].scalar_value::<f32>().unwrap(), 4.0);
}
