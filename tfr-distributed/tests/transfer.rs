//! Large tensors between tasks travel as streams of chunks (RecvTensor is server-streaming):
//! a 10 MB tensor in 1 MB chunks arrives equal to what was sent.

use crate::common;

use common::{worker_status, Cluster};
use std::time::Duration;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_distributed::{ChannelOptions, ClusterSession, ClusterSessionOptions};
use tfr_graph::{DType, Graph, Shape};

#[test]
fn a_tensor_bigger_than_a_chunk_arrives_equal_on_the_other_task() {
    const N: usize = 10 * 1024 * 1024 / 4; // 10 MiB of f32
    let cluster = Cluster::start_with(&[("worker", 2)], &["--chunk-bytes", "1048576"], &[]);
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[N])).unwrap();
    // Made on task 0 (so it is sent from there), received and returned by task 1.
    let made = g
        .with_device("/job:worker/task:0", |g| {
            let two = g.scalar(2.0f32)?;
            let y = g.mul(x, two)?;
            let one = g.scalar(1.0f32)?;
            g.add(y, one)
        })
        .unwrap();
    let received = g
        .with_device("/job:worker/task:1", |g| {
            let z = g.scalar(0.0f32)?;
            g.add(made, z)
        })
        .unwrap();
    let xs = Tensor::new(
        &[N],
        (0..N).map(|i| (i as f32 * 1e-3).sin() * 100.0).collect(),
    )
    .unwrap();
    let want = Session::new(&g, SessionOptions::default())
        .unwrap()
        .run(&[(x, xs.clone())], &[received], &[])
        .unwrap();
    let s = ClusterSession::new(
        &cluster.spec,
        &g,
        ClusterSessionOptions {
            channel: ChannelOptions {
                connect_timeout: Duration::from_secs(3),
                ..ChannelOptions::default()
            },
            // Keep `+ 0` on task 1 so the value crosses tasks.
            optimize: false,
            ..ClusterSessionOptions::default()
        },
    )
    .unwrap();
    let sender = &cluster.tasks[0].address;
    let before = worker_status(sender);
    for _ in 0..2 {
        let got = s.run(&[(x, xs.clone())], &[received], &[]).unwrap();
        assert_eq!(got, want);
    }
    let after = worker_status(sender);
    assert_eq!(after.tensors_sent - before.tensors_sent, 2);
    // 10 MiB in 1 MiB chunks, twice.
    assert_eq!(after.chunks_sent - before.chunks_sent, 20);
}
