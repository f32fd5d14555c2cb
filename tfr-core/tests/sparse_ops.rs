//! Part, Stitch, row access to variables and sparse gradients (issue 14): values against
//! hand-computed references (TensorFlow's semantics), gradients against central differences,
//! out-of-range indices as errors naming the node.

use crate::common;

use common::{assert_close, random, run, run_err, session, t};
use tfr_core::{Code, Error, Tensor};
use tfr_graph::gradients::{gradients, sparse_gradients, UnconnectedGradients};
use tfr_graph::indexed_slices::Gradient;
use tfr_graph::{DType, Graph, Output, Shape};

fn ints(g: &mut Graph, shape: &[usize], v: Vec<i32>) -> Output {
    g.constant_from(shape, v).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>().unwrap()
}

/// An `InvalidArgument` whose message names `node` and contains `what`.
fn assert_invalid(e: &Error, node: &str, what: &str) {
    let s = e.to_string();
    assert!(s.contains(node) && s.contains(what), "{s}");
    assert!(matches!(e, Error::Kernel { .. }), "{s}");
    assert_eq!(e.code(), Code::InvalidArgument, "{s}");
}

/// d(sum(w * f(x)))/dx symbolically and by central differences, for an f64 input `x` of
/// `shape` and fixed random weights `w`.
fn check_gradient(shape: &[usize], f: impl Fn(&mut Graph, Output) -> Output, what: &str) {
    let n: usize = shape.iter().product();
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(shape)).unwrap();
    let y = f(&mut g, x);
    let ys = g.shape(y).to_known().expect("a known output shape");
    let m: usize = ys.iter().product();
    let w = g.constant_from(&ys, random(m, 7)).unwrap();
    let wy = g.mul(w, y).unwrap();
    let loss = g.reduce_sum(wy, None, false).unwrap();
    let dx = gradients(&mut g, &[loss], &[x], None).unwrap()[0].unwrap();
    let s = session(&g);
    let x0 = random(n, 3);
    let eval = |v: &[f64]| {
        let out = s.run(&[(x, t(shape, v.to_vec()))], &[loss], &[]).unwrap();
        out[0].scalar_value::<f64>().unwrap()
    };
    let symbolic = f64s(&s.run(&[(x, t(shape, x0.clone()))], &[dx], &[]).unwrap()[0]);
    let h = 1e-6;
    let numeric: Vec<f64> = (0..n)
        .map(|i| {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += h;
            down[i] -= h;
            (eval(&up) - eval(&down)) / (2.0 * h)
        })
        .collect();
    assert_close(&symbolic, &numeric, 1e-6, what);
}

#[test]
fn dynamic_partition_splits_rows_in_order() {
    let mut g = Graph::new();
    let data = g
        .constant_from(&[5, 2], (0..10).map(|v| v as f32).collect())
        .unwrap();
    let parts = ints(&mut g, &[5], vec![1, 0, 2, 0, 1]);
    let outs = g.dynamic_partition(data, parts, 4).unwrap();
    assert_eq!(
        g.shape(outs[0]),
        &Shape::new(vec![tfr_graph::Dim::Unknown, tfr_graph::Dim::Known(2)])
    );
    let got = run(&g, &[], &outs);
    assert_eq!(got[0].to_vec::<f32>().unwrap(), vec![2.0, 3.0, 6.0, 7.0]);
    assert_eq!(got[1].to_vec::<f32>().unwrap(), vec![0.0, 1.0, 8.0, 9.0]);
    assert_eq!(got[2].to_vec::<f32>().unwrap(), vec![4.0, 5.0]);
    assert_eq!(got[3].shape(), &[0, 2]);
    // Partitions of rank 2 over data [2, 2, 1], and int64 data.
    let mut g = Graph::new();
    let data = g
        .constant_from(&[2, 2, 1], vec![10i64, 11, 12, 13])
        .unwrap();
    let parts = ints(&mut g, &[2, 2], vec![1, 1, 0, 1]);
    let outs = g.dynamic_partition(data, parts, 2).unwrap();
    let got = run(&g, &[], &outs);
    assert_eq!(got[0].to_vec::<i64>().unwrap(), vec![12]);
    assert_eq!(got[1].to_vec::<i64>().unwrap(), vec![10, 11, 13]);
    assert_eq!(got[1].shape(), &[3, 1]);
}

#[test]
fn dynamic_stitch_merges_by_index_later_wins() {
    for op in ["DynamicStitch", "ParallelDynamicStitch"] {
        let mut g = Graph::new();
        let i0 = ints(&mut g, &[2], vec![0, 4]);
        let i1 = ints(&mut g, &[2, 1], vec![1, 0]);
        let d0 = g
            .constant_from(&[2, 2], vec![1.0f64, 2.0, 3.0, 4.0])
            .unwrap();
        let d1 = g
            .constant_from(&[2, 1, 2], vec![5.0f64, 6.0, 7.0, 8.0])
            .unwrap();
        let m = g.build(op).inputs([i0, i1, d0, d1]).finish1().unwrap();
        // Constant indices: the static shape is known.
        assert_eq!(g.shape(m), &Shape::known(&[5, 2]));
        let got = f64s(&run(&g, &[], &[m])[0]);
        // Row 0 is written by data0 then overwritten by data1; rows 2, 3 are never written.
        assert_eq!(
            got,
            vec![7.0, 8.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0],
            "{op}"
        );
    }
}

#[test]
fn partition_and_stitch_errors_name_the_node() {
    let mut g = Graph::new();
    let data = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let p = g.placeholder("p", DType::I32, Shape::known(&[3])).unwrap();
    let id = g
        .build("DynamicPartition")
        .name("part")
        .input(data)
        .input(p)
        .attr("num_partitions", 2i64)
        .finish()
        .unwrap();
    let e = run_err(&g, &[(p, t(&[3], vec![0, 2, 1]))], Output::new(id, 0));
    assert_invalid(&e, "part", "partitions[1] = 2 is not in [0, 2)");
    let e = run_err(&g, &[(p, t(&[3], vec![0, -1, 1]))], Output::new(id, 0));
    assert_invalid(&e, "part", "partitions[1] = -1");
    // Graph-time checks: partitions must be a prefix of data, num_partitions >= 1.
    let bad = g.constant_from(&[2], vec![0i32, 1]).unwrap();
    assert!(g.dynamic_partition(data, bad, 2).is_err());
    assert!(g.dynamic_partition(data, p, 0).is_err());
    // Stitch: a negative index, and mismatched rows.
    let i = g.placeholder("i", DType::I32, Shape::known(&[3])).unwrap();
    let m = g
        .build("DynamicStitch")
        .name("stitch")
        .inputs([i, data])
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(i, t(&[3], vec![0, -3, 1]))], m);
    assert_invalid(&e, "stitch", "indices[0][1] = -3 is negative");
    let wide = g.constant_from(&[3, 2], vec![0.0f32; 6]).unwrap();
    assert!(g.dynamic_stitch(&[i, i], &[data, wide]).is_err());
    assert!(g.dynamic_stitch(&[i], &[]).is_err());
}

#[test]
fn partition_and_stitch_gradients_match_central_differences() {
    check_gradient(
        &[5, 3],
        |g, x| {
            let p = ints(g, &[5], vec![2, 0, 2, 1, 0]);
            let outs = g.dynamic_partition(x, p, 3).unwrap();
            // Use two of the three outputs (the third gets zeros), with known shapes.
            let a = g.reshape(outs[0], &[2, 3]).unwrap();
            let b = g.reshape(outs[2], &[2, 3]).unwrap();
            let bb = g.mul(b, b).unwrap();
            g.concat(&[a, bb], 0).unwrap()
        },
        "DynamicPartition",
    );
    check_gradient(
        &[4, 2],
        |g, x| {
            let i0 = ints(g, &[2], vec![3, 0]);
            let i1 = ints(g, &[2], vec![1, 2]);
            let top = g.slice(x, &[0, 0], &[2, 2]).unwrap();
            let bottom = g.slice(x, &[2, 0], &[2, 2]).unwrap();
            let sq = g.square(bottom).unwrap();
            g.dynamic_stitch(&[i0, i1], &[top, sq]).unwrap()
        },
        "DynamicStitch",
    );
}

#[test]
fn resource_gather_reads_rows_and_checks_range() {
    let mut g = Graph::new();
    let init = g
        .constant_from(&[4, 3], (0..12).map(|v| v as f32).collect())
        .unwrap();
    let v = g.variable("table", init).unwrap();
    let ids = g
        .placeholder("ids", DType::I64, Shape::known(&[2, 2]))
        .unwrap();
    let rows = g.resource_gather(&v, ids).unwrap();
    assert_eq!(g.shape(rows), &Shape::known(&[2, 2, 3]));
    let init_all = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init_all]).unwrap();
    let got = s
        .run(&[(ids, t(&[2, 2], vec![3i64, 0, 0, 2]))], &[rows], &[])
        .unwrap();
    assert_eq!(
        got[0].to_vec::<f32>().unwrap(),
        vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 6.0, 7.0, 8.0]
    );
    let e = s
        .run(&[(ids, t(&[2, 2], vec![0i64, 4, 0, 0]))], &[rows], &[])
        .unwrap_err();
    assert_invalid(
        &e,
        &g.node(rows.node).name,
        "indices[1] = 4 is not in [0, 4)",
    );
}

#[test]
fn resource_scatters_update_rows_in_place() {
    let mut g = Graph::new();
    let init = g.constant_from(&[3, 2], vec![1.0f64; 6]).unwrap();
    let v = g.variable("v", init).unwrap();
    let ids = g.constant_from(&[3], vec![2i32, 0, 2]).unwrap();
    let upd = g
        .constant_from(&[3, 2], vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let add = g.resource_scatter_add(&v, ids, upd).unwrap();
    let sub = g.resource_scatter_sub(&v, ids, upd).unwrap();
    let set = g.resource_scatter_update(&v, ids, upd).unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init_all]).unwrap();
    let value = |s: &tfr_core::Session| f64s(&s.run(&[], &[v.value], &[]).unwrap()[0]);
    s.run(&[], &[], &[add]).unwrap();
    // Duplicates add up: row 2 gets (1, 2) + (5, 6).
    assert_eq!(value(&s), vec![4.0, 5.0, 1.0, 1.0, 7.0, 9.0]);
    s.run(&[], &[], &[sub]).unwrap();
    assert_eq!(value(&s), vec![1.0; 6]);
    s.run(&[], &[], &[set]).unwrap();
    // Of duplicates the last wins.
    assert_eq!(value(&s), vec![3.0, 4.0, 1.0, 1.0, 5.0, 6.0]);
    // Out of range, and updates of the wrong shape (at graph time).
    let bad = g.constant_from(&[1], vec![3i32]).unwrap();
    let row = g.constant_from(&[1, 2], vec![0.0f64, 0.0]).unwrap();
    let op = g.resource_scatter_add(&v, bad, row).unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init_all]).unwrap();
    let e = s.run(&[], &[], &[op]).unwrap_err();
    assert_invalid(&e, &g.node(op).name, "indices[0] = 3 is not in [0, 3)");
    assert!(g.resource_scatter_add(&v, ids, row).is_err());
}

/// The gradient of a gather from a variable is slices (never the dense table); the dense API
/// returns their sum scattered into zeros, and several gathers' slices are concatenated.
#[test]
fn gather_gradients_are_indexed_slices() {
    let mut g = Graph::new();
    let init = g
        .constant_from(&[5, 2], (0..10).map(|v| v as f64).collect())
        .unwrap();
    let v = g.variable("table", init).unwrap();
    let a = ints(&mut g, &[3], vec![4, 1, 4]);
    let b = ints(&mut g, &[1, 2], vec![0, 1]);
    let ra = g.gather(v.value, a, 0).unwrap();
    let rb = g.resource_gather(&v, b).unwrap();
    let sa = g.square(ra).unwrap();
    let la = g.reduce_sum(sa, None, false).unwrap();
    let lb = g.reduce_sum(rb, None, false).unwrap();
    let loss = g.add(la, lb).unwrap();
    let grads = sparse_gradients(
        &mut g,
        &[loss],
        &[v.value],
        None,
        UnconnectedGradients::None,
    )
    .unwrap();
    let Some(Gradient::Slices(s)) = grads[0] else {
        panic!("expected slices, got {:?}", grads[0]);
    };
    let dense = gradients(&mut g, &[loss], &[v.value], None).unwrap()[0].unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let sess = session(&g);
    sess.run(&[], &[], &[init_all]).unwrap();
    let got = sess
        .run(&[], &[s.indices, s.values, s.dense_shape, dense], &[])
        .unwrap();
    let mut idx = got[0].to_vec::<i32>().unwrap();
    idx.sort_unstable();
    assert_eq!(
        idx,
        vec![0, 1, 1, 4, 4],
        "all five gathered rows, none densified"
    );
    assert_eq!(got[1].shape(), &[5, 2]);
    assert_eq!(got[2].to_vec::<i32>().unwrap(), vec![5, 2]);
    // d/dv: 2 v on rows gathered by `a` (row 4 twice), 1 on rows gathered by `b`.
    assert_eq!(
        f64s(&got[3]),
        vec![1.0, 1.0, 5.0, 7.0, 0.0, 0.0, 0.0, 0.0, 32.0, 36.0]
    );
    // A dense consumer next to the gathers: the sum is dense, slices converted once.
    let sq = g.square(v.value).unwrap();
    let ls = g.reduce_sum(sq, None, false).unwrap();
    let both = g.add(loss, ls).unwrap();
    let grads = sparse_gradients(
        &mut g,
        &[both],
        &[v.value],
        None,
        UnconnectedGradients::None,
    )
    .unwrap();
    assert!(matches!(grads[0], Some(Gradient::Dense(_))));
}

/// Inside a gradient the dense rule still runs where the gathered tensor is not an x (the
/// slices become dense for the producer's rule), and along another axis.
#[test]
fn gathers_of_computed_tensors_differentiate_as_before() {
    check_gradient(
        &[4, 3],
        |g, x| {
            let t = g.tanh(x).unwrap();
            let i = ints(g, &[2, 2], vec![3, 0, 3, 1]);
            g.gather(t, i, 0).unwrap()
        },
        "Gather axis 0 of tanh(x)",
    );
    check_gradient(
        &[4, 3],
        |g, x| {
            let i = ints(g, &[2], vec![2, 2]);
            g.gather(x, i, 1).unwrap()
        },
        "Gather axis 1",
    );
}

#[test]
fn unsorted_segment_max_min_and_mean() {
    let mut g = Graph::new();
    let data = g
        .constant_from(&[4, 2], vec![1.0f32, -2.0, 5.0, 0.5, -3.0, 4.0, 2.0, 2.0])
        .unwrap();
    let ids = ints(&mut g, &[4], vec![0, 2, 0, 2]);
    let n = g.scalar(4i32).unwrap();
    let mx = g.unsorted_segment_max(data, ids, n).unwrap();
    let mn = g.unsorted_segment_min(data, ids, n).unwrap();
    let mean = g.unsorted_segment_mean(data, ids, n).unwrap();
    assert_eq!(g.shape(mx), &Shape::known(&[4, 2]));
    let got = run(&g, &[], &[mx, mn, mean]);
    let (lo, hi) = (f32::MIN, f32::MAX);
    // Empty segments (1, 3) are the lowest (max) or highest (min) finite value, as in TF.
    assert_eq!(
        got[0].to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, lo, lo, 5.0, 2.0, lo, lo]
    );
    assert_eq!(
        got[1].to_vec::<f32>().unwrap(),
        vec![-3.0, -2.0, hi, hi, 2.0, 0.5, hi, hi]
    );
    assert_eq!(
        got[2].to_vec::<f32>().unwrap(),
        vec![-1.0, 1.0, 0.0, 0.0, 3.5, 1.25, 0.0, 0.0]
    );
    // Integers, and an id out of range.
    let di = g.constant_from(&[3], vec![7i64, -1, 3]).unwrap();
    let ii = ints(&mut g, &[3], vec![1, 1, 0]);
    let two = g.scalar(2i32).unwrap();
    let m = g.unsorted_segment_max(di, ii, two).unwrap();
    assert_eq!(run(&g, &[], &[m])[0].to_vec::<i64>().unwrap(), vec![3, 7]);
    let bad = g
        .placeholder("ids", DType::I32, Shape::known(&[3]))
        .unwrap();
    let m = g
        .build("UnsortedSegmentMin")
        .name("seg_min")
        .inputs([di, bad, two])
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(bad, t(&[3], vec![0, 2, 1]))], m);
    assert_invalid(&e, "seg_min", "segment_ids[1] = 2 is not in [0, 2)");
}

#[test]
fn sparse_segment_reductions() {
    let mut g = Graph::new();
    let data = g
        .constant_from(&[3, 2], vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let idx = ints(&mut g, &[4], vec![0, 2, 2, 1]);
    let seg = ints(&mut g, &[4], vec![0, 0, 0, 2]);
    let sum = g.sparse_segment_sum(data, idx, seg).unwrap();
    let mean = g.sparse_segment_mean(data, idx, seg).unwrap();
    let sqrt_n = g.sparse_segment_sqrt_n(data, idx, seg).unwrap();
    let got = run(&g, &[], &[sum, mean, sqrt_n]);
    assert_eq!(f64s(&got[0]), vec![11.0, 14.0, 0.0, 0.0, 3.0, 4.0]);
    assert_close(
        &f64s(&got[1]),
        &[11.0 / 3.0, 14.0 / 3.0, 0.0, 0.0, 3.0, 4.0],
        1e-12,
        "mean",
    );
    let r3 = 3f64.sqrt();
    assert_close(
        &f64s(&got[2]),
        &[11.0 / r3, 14.0 / r3, 0.0, 0.0, 3.0, 4.0],
        1e-12,
        "sqrt_n",
    );
    // Unsorted segment ids and out-of-range indices are errors.
    let p = g
        .placeholder("seg", DType::I32, Shape::known(&[4]))
        .unwrap();
    let q = g
        .placeholder("idx", DType::I32, Shape::known(&[4]))
        .unwrap();
    let op = g
        .build("SparseSegmentSum")
        .name("sss")
        .inputs([data, q, p])
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[
            (p, t(&[4], vec![0, 1, 0, 1])),
            (q, t(&[4], vec![0, 0, 0, 0])),
        ],
        op,
    );
    assert_invalid(&e, "sss", "sorted");
    let e = run_err(
        &g,
        &[
            (p, t(&[4], vec![0, 0, 1, 1])),
            (q, t(&[4], vec![0, 3, 0, 0])),
        ],
        op,
    );
    assert_invalid(&e, "sss", "indices[1] = 3 is not in [0, 3)");
}

#[test]
fn gather_nd_scatter_nd_and_unique() {
    let mut g = Graph::new();
    let p = g
        .constant_from(&[2, 3, 2], (0..12).collect::<Vec<i32>>())
        .unwrap();
    let rows = g.constant_from(&[2, 1], vec![1i32, 0]).unwrap();
    let elems = g.constant_from(&[2, 3], vec![1i32, 2, 1, 0, 0, 0]).unwrap();
    let a = g.gather_nd(p, rows).unwrap();
    let b = g.gather_nd(p, elems).unwrap();
    assert_eq!(g.shape(a), &Shape::known(&[2, 3, 2]));
    assert_eq!(g.shape(b), &Shape::known(&[2]));
    let upd = g.constant_from(&[3], vec![1.0f32, 2.0, 4.0]).unwrap();
    let at = g.constant_from(&[3, 1], vec![3i32, 0, 3]).unwrap();
    let shape = ints(&mut g, &[1], vec![5]);
    let sc = g.scatter_nd(at, upd, shape).unwrap();
    assert_eq!(g.shape(sc), &Shape::known(&[5]));
    let x = g.constant_from(&[6], vec![4i64, 2, 4, 7, 2, 2]).unwrap();
    let (y, idx) = g.unique(x).unwrap();
    let got = run(&g, &[], &[a, b, sc, y, idx]);
    let mut want_a: Vec<i32> = (6..12).collect();
    want_a.extend(0..6);
    assert_eq!(got[0].to_vec::<i32>().unwrap(), want_a);
    assert_eq!(got[1].to_vec::<i32>().unwrap(), vec![11, 0]);
    assert_eq!(
        got[2].to_vec::<f32>().unwrap(),
        vec![2.0, 0.0, 0.0, 5.0, 0.0]
    );
    assert_eq!(got[3].to_vec::<i64>().unwrap(), vec![4, 2, 7]);
    assert_eq!(got[4].to_vec::<i32>().unwrap(), vec![0, 1, 0, 2, 1, 1]);
    // Out-of-range tuples name the tuple.
    let bad = g
        .placeholder("t", DType::I32, Shape::known(&[1, 2]))
        .unwrap();
    let gn = g
        .build("GatherNd")
        .name("gnd")
        .inputs([p, bad])
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(bad, t(&[1, 2], vec![1, 3]))], gn);
    assert_invalid(
        &e,
        "gnd",
        "index tuple 0 = [1, 3] is out of range: dim 1 has size 3",
    );
}
