//! Sharded embeddings on parameter-server tasks (issue 14 over the runtime of issue 12): a
//! table split into shards on two real `ps` tasks, looked up and trained sparsely from a
//! `worker` task, ends with the values of the same training in one process.

use crate::common::Cluster;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tfr_nn::embedding::{PartitionStrategy, ShardedEmbedding};
use tfr_nn::{Optimizer, Sgd};

const ROWS: usize = 10;
const DIM: usize = 2;
const SHARDS: usize = 3;

/// Three uneven shards on ps:0, ps:1, ps:0; `loss = sum(lookup(ids)^2)` on worker:0 and one
/// SGD step over the shards. Returns the graph, the ids, the loss, the step and the shards'
/// values.
fn model(strategy: PartitionStrategy) -> (Graph, Output, Output, NodeId, NodeId, Vec<Output>) {
    let mut g = Graph::new();
    let devices = ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:0"];
    let emb = ShardedEmbedding::new(
        &mut g,
        "emb",
        ROWS,
        DIM,
        SHARDS,
        strategy,
        &devices,
        &|g, p, shape| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|i| (p * 100 + i) as f32 * 0.125 - 1.0).collect();
            g.constant_from(shape, values)
        },
    )
    .unwrap();
    let ids = g
        .placeholder("ids", DType::I64, Shape::known(&[5]))
        .unwrap();
    let loss = g.with_device("/job:worker/task:0", |g| {
        let rows = emb.lookup(g, ids).unwrap();
        let sq = g.square(rows).unwrap();
        g.reduce_sum(sq, None, false).unwrap()
    });
    let train = Sgd::new(0.25)
        .minimize(&mut g, loss, &emb.shards, None)
        .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let values = emb.shards.iter().map(|v| v.value).collect();
    (g, ids, loss, train, init, values)
}

/// Three training steps; the losses and the shards' final values.
fn train(session: &Session, ids: Output, loss: Output, step: NodeId) -> Vec<f32> {
    let mut losses = Vec::new();
    for batch in [[0i64, 9, 4, 4, 7], [3, 3, 1, 9, 0], [8, 2, 5, 4, 6]] {
        let feed = Tensor::new(&[5], batch.to_vec()).unwrap();
        let out = session.run(&[(ids, feed)], &[loss], &[step]).unwrap();
        losses.push(out[0].scalar_value::<f32>().unwrap());
    }
    losses
}

#[test]
fn a_table_sharded_over_ps_tasks_trains_like_one_process() {
    tfr_distributed::register_session_factory();
    let cluster = Cluster::start(&[("ps", 2), ("worker", 1)]);
    let worker = cluster.tasks[2].address.clone();
    for strategy in [PartitionStrategy::Mod, PartitionStrategy::Div] {
        let (g, ids, loss, step, init, values) = model(strategy);
        let local = Session::new(&g, SessionOptions::default()).unwrap();
        local.run(&[], &[], &[init]).unwrap();
        let remote = Session::new(
            &g,
            SessionOptions {
                target: format!("grpc://{worker}"),
                ..SessionOptions::default()
            },
        )
        .unwrap();
        remote.run(&[], &[], &[init]).unwrap();
        let before = remote.run(&[], &values, &[]).unwrap();
        let want = train(&local, ids, loss, step);
        let got = train(&remote, ids, loss, step);
        assert_eq!(got, want, "{strategy:?}: losses");
        let (want, got) = (
            local.run(&[], &values, &[]).unwrap(),
            remote.run(&[], &values, &[]).unwrap(),
        );
        for p in 0..SHARDS {
            let (w, v) = (
                want[p].to_vec::<f32>().unwrap(),
                got[p].to_vec::<f32>().unwrap(),
            );
            assert_eq!(v, w, "{strategy:?}: shard {p}");
            assert_ne!(
                v,
                before[p].to_vec::<f32>().unwrap(),
                "{strategy:?}: shard {p} trained"
            );
        }
        // An id outside the table is an error from the task, not a hang or a crash.
        let bad = Tensor::new(&[5], vec![0i64, 1, ROWS as i64, 2, 3]).unwrap();
        let e = remote.run(&[(ids, bad)], &[loss], &[]).unwrap_err();
        assert!(e.to_string().contains("not in [0,"), "{e}");
    }
}
