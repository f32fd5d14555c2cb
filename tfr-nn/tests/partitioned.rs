//! Partitioned variables (issue 13): a variable split into shards over ps tasks reads, trains
//! and looks up exactly like the unpartitioned variable; errors name the argument.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, Output, Shape};
use tfr_nn::optimizers::compute_gradients;
use tfr_nn::replication::{PartitionedVariable, Partitioner, ReplicaDeviceSetter};
use tfr_nn::{Optimizer, Sgd};

const ROWS: usize = 7;
const DIM: usize = 3;

fn table() -> Vec<f32> {
    (0..ROWS * DIM)
        .map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0)
        .collect()
}

/// The whole variable read two ways: `dense` uses it in a product, otherwise a lookup of ids
/// with duplicates. Returns (graph, loss, vars to train, the whole value).
fn model(partitioned: bool, dense: bool) -> (Graph, Output, Vec<Variable>, Output) {
    let mut g = Graph::new();
    let init = g.constant_from(&[ROWS, DIM], table()).unwrap();
    let (vars, whole, rows) = if partitioned {
        let p =
            PartitionedVariable::new(&mut g, "emb", init, Partitioner::FixedSize(3), &[]).unwrap();
        let whole = p.as_tensor(&mut g).unwrap();
        let rows = if dense {
            None
        } else {
            let ids = g.constant_from(&[5], vec![6i32, 0, 3, 6, 2]).unwrap();
            Some(p.lookup(&mut g, ids).unwrap())
        };
        (p.shards.clone(), whole, rows)
    } else {
        let v = g.variable("emb", init).unwrap();
        let rows = if dense {
            None
        } else {
            let ids = g.constant_from(&[5], vec![6i32, 0, 3, 6, 2]).unwrap();
            Some(g.gather(v.value, ids, 0).unwrap())
        };
        (vec![v.clone()], v.value, rows)
    };
    let used = match rows {
        Some(r) => r,
        None => {
            let x = g
                .constant_from(&[2, ROWS], (0..2 * ROWS).map(|i| i as f32 / 9.0).collect())
                .unwrap();
            g.matmul(x, whole).unwrap()
        }
    };
    let sq = g.square(used).unwrap();
    let n = g.shape(sq).num_elements().unwrap();
    let c = g
        .constant_from(
            &g.shape(sq).to_known().unwrap(),
            (0..n).map(|i| 0.5 + i as f32 / 10.0).collect(),
        )
        .unwrap();
    let weighted = g.mul(c, sq).unwrap();
    let loss = g.reduce_sum(weighted, None, false).unwrap();
    (g, loss, vars, whole)
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

/// (loss, gradient of the whole variable, value after 3 SGD steps)
fn run(partitioned: bool, dense: bool) -> (f32, Vec<f32>, Vec<f32>) {
    let (mut g, loss, vars, whole) = model(partitioned, dense);
    let grads = compute_gradients(&mut g, loss, &vars).unwrap();
    let parts: Vec<Output> = grads.iter().map(|(gr, _)| *gr).collect();
    let grad = if parts.len() == 1 {
        parts[0]
    } else {
        g.concat(&parts, 0).unwrap()
    };
    let train = Sgd::new(0.01).minimize(&mut g, loss, &vars, None).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let out = s.run(&[], &[loss, grad, whole], &[]).unwrap();
    assert_eq!(out[2].to_vec::<f32>().unwrap(), table(), "initial value");
    for _ in 0..3 {
        s.run(&[], &[], &[train]).unwrap();
    }
    let after = s.run(&[], &[whole], &[]).unwrap()[0]
        .to_vec::<f32>()
        .unwrap();
    (
        out[0].scalar_value::<f32>().unwrap(),
        out[1].to_vec::<f32>().unwrap(),
        after,
    )
}

#[test]
fn a_partitioned_variable_reads_and_trains_like_the_whole_one() {
    for dense in [true, false] {
        let (l1, g1, a1) = run(false, dense);
        let (l2, g2, a2) = run(true, dense);
        close(&[l2], &[l1]);
        close(&g2, &g1);
        close(&a2, &a1);
        assert!(
            g1.iter().any(|&x| x.abs() > 1e-3),
            "a gradient that is not zero"
        );
        assert_ne!(a1, table(), "training moved the variable");
    }
}

#[test]
fn shards_are_contiguous_rows_and_spread_over_ps_tasks() {
    let mut g = Graph::new();
    let init = g.constant_from(&[ROWS, DIM], table()).unwrap();
    let p = PartitionedVariable::new(&mut g, "emb", init, Partitioner::FixedSize(3), &[]).unwrap();
    let names: Vec<&str> = p.shards.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["emb/part_0", "emb/part_1", "emb/part_2"]);
    let rows: Vec<usize> = p
        .shards
        .iter()
        .map(|s| s.shape.to_known().unwrap()[0])
        .collect();
    assert_eq!(rows, [3, 2, 2]);
    assert_eq!(p.offsets(), [0, 3, 5]);
    assert_eq!(p.as_sharded_embedding().rows, ROWS);
    // The replica device setter's round robin: consecutive shards on consecutive tasks.
    let setter = ReplicaDeviceSetter::new(2, "/job:worker/task:0").unwrap();
    setter.apply(&mut g).unwrap();
    let devices: Vec<String> = p
        .shards
        .iter()
        .map(|s| g.node(s.handle.node).device.clone())
        .collect();
    assert_eq!(
        devices,
        ["/job:ps/task:0", "/job:ps/task:1", "/job:ps/task:0"]
    );
    // Explicit devices win.
    let mut g = Graph::new();
    let init = g.constant_from(&[ROWS, DIM], table()).unwrap();
    let p = PartitionedVariable::new(
        &mut g,
        "emb",
        init,
        Partitioner::FixedSize(2),
        &["/job:ps/task:1", "/job:ps/task:0"],
    )
    .unwrap();
    assert_eq!(g.node(p.shards[0].handle.node).device, "/job:ps/task:1");
    assert_eq!(g.node(p.shards[1].handle.node).device, "/job:ps/task:0");
}

#[test]
fn assign_writes_each_shard_its_rows() {
    let mut g = Graph::new();
    let init = g.constant_from(&[ROWS, DIM], table()).unwrap();
    let p = PartitionedVariable::new(&mut g, "emb", init, Partitioner::FixedSize(4), &[]).unwrap();
    let new: Vec<f32> = (0..ROWS * DIM).map(|i| i as f32).collect();
    let value = g.constant_from(&[ROWS, DIM], new.clone()).unwrap();
    let assign = p.assign(&mut g, value).unwrap();
    let whole = p.as_tensor(&mut g).unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init_all]).unwrap();
    s.run(&[], &[], &[assign]).unwrap();
    let got = s.run(&[], &[whole], &[]).unwrap();
    assert_eq!(got[0], Tensor::new(&[ROWS, DIM], new).unwrap());
    let wrong = g.constant_from(&[2, DIM], vec![0f32; 2 * DIM]).unwrap();
    let e = p.assign(&mut g, wrong).unwrap_err().to_string();
    assert!(
        e.contains("emb") && e.contains("value") && e.contains("[7, 3]"),
        "{e}"
    );
}

#[test]
fn partitioners_choose_shard_counts_and_reject_bad_input() {
    let f32_ = DType::F32;
    assert_eq!(
        Partitioner::FixedSize(3).num_shards(&[7, 3], f32_).unwrap(),
        3
    );
    // Never more shards than rows.
    assert_eq!(
        Partitioner::FixedSize(9).num_shards(&[4, 3], f32_).unwrap(),
        4
    );
    // 1000 x 256 f32 = 1,024,000 bytes: 3 slices of >= 256 KiB, capped at 8.
    let mm = |max_shards, min_slice_bytes| Partitioner::MinMax {
        max_shards,
        min_slice_bytes,
    };
    assert_eq!(mm(8, 256 << 10).num_shards(&[1000, 256], f32_).unwrap(), 3);
    assert_eq!(mm(2, 1).num_shards(&[1000, 256], f32_).unwrap(), 2);
    assert_eq!(mm(8, 1 << 30).num_shards(&[1000, 256], f32_).unwrap(), 1);
    let e = Partitioner::FixedSize(0)
        .num_shards(&[4], f32_)
        .unwrap_err();
    assert!(e.to_string().contains("partitioner"), "{e}");
    let e = Partitioner::FixedSize(2).num_shards(&[], f32_).unwrap_err();
    assert!(e.to_string().contains("scalar"), "{e}");
    let e = mm(0, 1).num_shards(&[4], f32_).unwrap_err();
    assert!(e.to_string().contains("max_shards"), "{e}");
    let mut g = Graph::new();
    let unknown = g.placeholder("u", DType::F32, Shape::unknown()).unwrap();
    let e = PartitionedVariable::new(&mut g, "v", unknown, Partitioner::FixedSize(2), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`u:0`") && e.contains("fully known"), "{e}");
}
