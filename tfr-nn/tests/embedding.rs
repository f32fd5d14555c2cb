//! Sparse embedding training (issue 14): sparse optimizer updates against dense ones, sharded
//! lookups against a gather from the whole table, sparse gradients per shard.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::indexed_slices::Gradient;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tfr_nn::embedding::{shard_sizes, PartitionStrategy, ShardedEmbedding};
use tfr_nn::optimizers::{
    clip_by_global_norm, clip_gradient_values_by_global_norm, compute_gradient_values,
    compute_gradients, Adagrad, Adam, Momentum, Optimizer, Sgd,
};

const ROWS: usize = 7;
const DIM: usize = 3;
/// Rows 1 and 5 twice (duplicates are summed), rows 0, 2, 4 never.
const IDS: [i32; 5] = [5, 1, 3, 5, 1];

fn table_values() -> Vec<f32> {
    (0..ROWS * DIM)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0)
        .collect()
}

/// Three steps of `opt` on loss = sum(c * gather(table, IDS)^2) with sparse (`minimize`) or
/// dense (`compute_gradients` + `apply_gradients`) gradients; the table after each step.
fn train(mut opt: Box<dyn Optimizer>, sparse: bool) -> Vec<Vec<f32>> {
    let mut g = Graph::new();
    let init = g.constant_from(&[ROWS, DIM], table_values()).unwrap();
    let table = g.variable("table", init).unwrap();
    let ids = g.constant_from(&[IDS.len()], IDS.to_vec()).unwrap();
    let rows = g.gather(table.value, ids, 0).unwrap();
    let sq = g.square(rows).unwrap();
    let c = g
        .constant_from(
            &[IDS.len(), DIM],
            (0..15).map(|i| 0.5 + i as f32 / 10.0).collect(),
        )
        .unwrap();
    let weighted = g.mul(c, sq).unwrap();
    let loss = g.reduce_sum(weighted, None, false).unwrap();
    let vars = [table.clone()];
    let step: NodeId = if sparse {
        let grads = compute_gradient_values(&mut g, loss, &vars).unwrap();
        assert!(
            matches!(grads[0].0, Gradient::Slices(_)),
            "a sparse gradient"
        );
        opt.apply_gradient_values(&mut g, &grads, None).unwrap()
    } else {
        let grads = compute_gradients(&mut g, loss, &vars).unwrap();
        opt.apply_gradients(&mut g, &grads, None).unwrap()
    };
    let init_all = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init_all]).unwrap();
    (0..3)
        .map(|_| {
            s.run(&[], &[], &[step]).unwrap();
            s.run(&[], &[table.value], &[]).unwrap()[0]
                .to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

/// Makes a fresh optimizer for one case.
type MakeOptimizer = fn() -> Box<dyn Optimizer>;

#[test]
fn sparse_updates_equal_dense_ones_on_touched_rows_and_leave_the_rest_bit_identical() {
    let optimizers: Vec<(&str, MakeOptimizer)> = vec![
        ("sgd", || Box::new(Sgd::new(0.1))),
        ("sgd composed", || {
            let mut s = Sgd::new(0.1);
            s.fused = false;
            Box::new(s)
        }),
        ("momentum", || Box::new(Momentum::new(0.1, 0.9, false))),
        ("nesterov", || Box::new(Momentum::new(0.1, 0.9, true))),
        ("adagrad", || Box::new(Adagrad::new(0.1))),
        ("adam", || Box::new(Adam::new(0.05))),
    ];
    let initial = table_values();
    for (name, make) in optimizers {
        let sparse = train(make(), true);
        let dense = train(make(), false);
        for (step, (s, d)) in sparse.iter().zip(&dense).enumerate() {
            for row in 0..ROWS {
                let r = row * DIM..(row + 1) * DIM;
                if IDS.contains(&(row as i32)) {
                    for (a, b) in s[r.clone()].iter().zip(&d[r.clone()]) {
                        assert!(
                            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                            "{name} step {step} row {row}: sparse {a}, dense {b}"
                        );
                    }
                    assert_ne!(&s[r.clone()], &initial[r], "{name}: row {row} trained");
                } else {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&s[r.clone()]),
                        bits(&initial[r]),
                        "{name} step {step}: untouched row {row} changed"
                    );
                }
            }
        }
    }
}

/// A sparse SGD step by hand: duplicates are summed before the update.
#[test]
fn duplicate_indices_are_summed() {
    let sparse = train(Box::new(Sgd::new(0.1)), true);
    let t0 = table_values();
    let c = |k: usize, j: usize| 0.5 + (k * DIM + j) as f32 / 10.0;
    for row in [1usize, 5] {
        for j in 0..DIM {
            let w = t0[row * DIM + j];
            let grad: f32 = IDS
                .iter()
                .enumerate()
                .filter(|(_, &i)| i as usize == row)
                .map(|(k, _)| 2.0 * c(k, j) * w)
                .sum();
            let want = w - 0.1 * grad;
            let got = sparse[0][row * DIM + j];
            assert!((got - want).abs() < 1e-6, "row {row}: {got} vs {want}");
        }
    }
}

/// The full table as shards: shard `p` holds the table's rows assigned to it by `strategy`.
fn shard_rows(rows: usize, shards: usize, strategy: PartitionStrategy) -> Vec<Vec<usize>> {
    let sizes = shard_sizes(rows, shards, strategy);
    let mut start = 0;
    (0..shards)
        .map(|p| {
            let ids: Vec<usize> = match strategy {
                PartitionStrategy::Mod => (0..sizes[p]).map(|r| r * shards + p).collect(),
                PartitionStrategy::Div => (start..start + sizes[p]).collect(),
            };
            start += sizes[p];
            ids
        })
        .collect()
}

fn full_table(rows: usize, dim: usize) -> Vec<f64> {
    (0..rows * dim).map(|i| i as f64 * 0.25 - 3.0).collect()
}

fn sharded(
    g: &mut Graph,
    rows: usize,
    dim: usize,
    shards: usize,
    strategy: PartitionStrategy,
) -> ShardedEmbedding {
    let layout = shard_rows(rows, shards, strategy);
    let table = full_table(rows, dim);
    let devices = ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2"];
    ShardedEmbedding::new(
        g,
        "emb",
        rows,
        dim,
        shards,
        strategy,
        &devices,
        &|g, p, shape| {
            let values: Vec<f64> = layout[p]
                .iter()
                .flat_map(|&r| table[r * dim..(r + 1) * dim].to_vec())
                .collect();
            g.constant_from(shape, values)
        },
    )
    .unwrap()
}

fn three_devices(g: &Graph) -> Session {
    Session::new(
        g,
        SessionOptions {
            cpu_devices: 3,
            soft_placement: false,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn sharded_lookup_equals_a_gather_from_the_whole_table() {
    let ids: Vec<i64> = vec![0, 10, 3, 3, 7, 1, 9, 2];
    for (rows, shards) in [(11usize, 3usize), (10, 3), (4, 3), (2, 3), (9, 1)] {
        for strategy in [PartitionStrategy::Mod, PartitionStrategy::Div] {
            let dim = 2;
            let mut g = Graph::new();
            let emb = sharded(&mut g, rows, dim, shards, strategy);
            let id_ph = g
                .placeholder("ids", DType::I64, Shape::known(&[2, 4]))
                .unwrap();
            let out = emb.lookup(&mut g, id_ph).unwrap();
            assert_eq!(g.shape(out), &Shape::known(&[2, 4, dim]));
            let init = g.global_variables_initializer().unwrap();
            let s = three_devices(&g);
            s.run(&[], &[], &[init]).unwrap();
            let these: Vec<i64> = ids.iter().map(|&i| i % rows as i64).collect();
            let feed = Tensor::new(&[2, 4], these.clone()).unwrap();
            let got = s.run(&[(id_ph, feed)], &[out], &[]).unwrap()[0]
                .to_vec::<f64>()
                .unwrap();
            let table = full_table(rows, dim);
            let want: Vec<f64> = these
                .iter()
                .flat_map(|&i| table[i as usize * dim..(i as usize + 1) * dim].to_vec())
                .collect();
            assert_eq!(got, want, "{rows} rows in {shards} shards, {strategy:?}");
            // An id outside the table is an error.
            let bad = Tensor::new(&[2, 4], vec![0i64, 1, 2, rows as i64, 0, 0, 0, 0]).unwrap();
            let e = s.run(&[(id_ph, bad)], &[out], &[]).unwrap_err();
            assert!(e.to_string().contains("not in [0,"), "{e}");
        }
    }
}

#[test]
fn sharded_training_is_sparse_per_shard_on_the_shards_devices() {
    let (rows, dim, shards) = (10, 2, 3);
    let ids = [4i32, 9, 4, 0];
    let mut results = Vec::new();
    for strategy in [PartitionStrategy::Mod, PartitionStrategy::Div] {
        let mut g = Graph::new();
        let emb = sharded(&mut g, rows, dim, shards, strategy);
        let id_c = g.constant_from(&[4], ids.to_vec()).unwrap();
        let out = emb.lookup(&mut g, id_c).unwrap();
        let sq = g.square(out).unwrap();
        let loss = g.reduce_sum(sq, None, false).unwrap();
        let grads = compute_gradient_values(&mut g, loss, &emb.shards).unwrap();
        for (gr, v) in &grads {
            assert!(matches!(gr, Gradient::Slices(_)), "shard `{}`", v.name);
        }
        let train = Sgd::new(0.25)
            .apply_gradient_values(&mut g, &grads, None)
            .unwrap();
        let init = g.global_variables_initializer().unwrap();
        let s = three_devices(&g);
        let placed = s.placement(&[], &[], &[train]).unwrap();
        for (p, v) in emb.shards.iter().enumerate() {
            let gathers: Vec<&(String, String)> = placed
                .iter()
                .filter(|(n, _)| {
                    g.node_by_name(n).is_ok_and(|id| {
                        g.node(id).op == "ResourceGather" && g.node(id).inputs[0] == v.handle
                    })
                })
                .collect();
            assert_eq!(gathers.len(), 1, "one gather per shard");
            assert!(gathers[0].1.ends_with(&format!("CPU:{p}")), "{gathers:?}");
        }
        s.run(&[], &[], &[init]).unwrap();
        s.run(&[], &[], &[train]).unwrap();
        // Reassemble the whole table from the shards.
        let layout = shard_rows(rows, shards, strategy);
        let values: Vec<Output> = emb.shards.iter().map(|v: &Variable| v.value).collect();
        let got = s.run(&[], &values, &[]).unwrap();
        let mut table = vec![0.0; rows * dim];
        for (p, t) in got.iter().enumerate() {
            let v = t.to_vec::<f64>().unwrap();
            for (k, &r) in layout[p].iter().enumerate() {
                table[r * dim..(r + 1) * dim].copy_from_slice(&v[k * dim..(k + 1) * dim]);
            }
        }
        results.push(table);
    }
    // d(sum x^2)/dx = 2x per occurrence: row 4 twice.
    let mut want = full_table(rows, dim);
    for &i in &ids {
        for j in 0..dim {
            let w0 = full_table(rows, dim)[i as usize * dim + j];
            want[i as usize * dim + j] -= 0.25 * 2.0 * w0;
        }
    }
    assert_eq!(results[0], want, "mod");
    assert_eq!(results[1], want, "div");
}

#[test]
fn lookup_arguments_are_checked() {
    let mut g = Graph::new();
    let emb = sharded(&mut g, 10, 2, 3, PartitionStrategy::Mod);
    let f = g.placeholder("f", DType::F32, Shape::known(&[2])).unwrap();
    let e = emb.lookup(&mut g, f).unwrap_err();
    assert!(e.to_string().contains("int32 or int64"), "{e}");
    // Shards laid out for `mod` 10 / 3 = [4, 3, 3] are also a valid `div` layout; [3, 3, 4] is
    // neither.
    let mut g = Graph::new();
    let shards: Vec<Variable> = [3usize, 3, 4]
        .iter()
        .enumerate()
        .map(|(p, &n)| {
            let v = g.constant_from(&[n, 2], vec![0.0f32; n * 2]).unwrap();
            g.variable(&format!("s{p}"), v).unwrap()
        })
        .collect();
    let ids = g.constant_from(&[1], vec![0i32]).unwrap();
    let e = tfr_nn::embedding::embedding_lookup(&mut g, &shards, ids, PartitionStrategy::Div)
        .unwrap_err();
    assert!(e.to_string().contains("[3, 3, 4]"), "{e}");
}

#[test]
fn global_norm_clipping_keeps_slices_sparse() {
    let mut g = Graph::new();
    let init = g.constant_from(&[4, 2], vec![1.0f32; 8]).unwrap();
    let table = g.variable("t", init).unwrap();
    let w0 = g.constant_from(&[2], vec![3.0f32, 4.0]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let ids = g.constant_from(&[2], vec![2i32, 0]).unwrap();
    let rows = g.gather(table.value, ids, 0).unwrap();
    let prod = g.mul(rows, w.value).unwrap();
    let loss = g.reduce_sum(prod, None, false).unwrap();
    let grads = compute_gradient_values(&mut g, loss, &[table.clone(), w.clone()]).unwrap();
    let values: Vec<Gradient> = grads.iter().map(|(gr, _)| *gr).collect();
    let (clipped, norm) = clip_gradient_values_by_global_norm(&mut g, &values, 1.0).unwrap();
    let Gradient::Slices(s) = clipped[0] else {
        panic!("clipping densified the slices");
    };
    let dense: Vec<Output> = grads
        .iter()
        .map(|(gr, v)| gr.to_dense(&mut g, Some(&v.shape)).unwrap())
        .collect();
    let (dense_clipped, dense_norm) = clip_by_global_norm(&mut g, &dense, 1.0).unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let sess = Session::new(&g, SessionOptions::default()).unwrap();
    sess.run(&[], &[], &[init_all]).unwrap();
    let got = sess
        .run(&[], &[norm, dense_norm, s.values, dense_clipped[0]], &[])
        .unwrap();
    // Table gradient rows: w twice -> norm^2 = 2 * 25; w's gradient: (2, 2) -> 8.
    let n = got[0].scalar_value::<f32>().unwrap();
    assert!((n - 58f32.sqrt()).abs() < 1e-5, "{n}");
    assert_eq!(n, got[1].scalar_value::<f32>().unwrap());
    let scale = 1.0 / 58f32.sqrt();
    let v = got[2].to_vec::<f32>().unwrap();
    for (a, b) in v.iter().zip([3.0, 4.0, 3.0, 4.0]) {
        assert!((a - b * scale).abs() < 1e-6);
    }
    let d = got[3].to_vec::<f32>().unwrap();
    assert_eq!(d[2..4], [0.0, 0.0], "row 1 untouched");
}
