//! CPU kernels of the array ops: values against hand-worked results, every value dtype for the
//! data-movement ops, empty tensors, negative axes, zero-copy paths, and the error of every bad
//! input (which names the node, what was expected and what came).

use tfr_core::{Error, Session, SessionOptions, Tensor};
use tfr_graph::ops::strided_slice::StridedSliceMasks;
use tfr_graph::{bf16, f16, DType, Element, Graph, Output, Shape};

// ---- helpers ----------------------------------------------------------------------------------

fn session(g: &Graph, optimize: bool) -> Session {
    Session::new(
        g,
        SessionOptions {
            inter_op_threads: 1,
            optimize,
            ..SessionOptions::default()
        },
    )
    .unwrap()
}

/// Runs `fetches` with and without graph optimization (constant folding runs the same kernels
/// at compile time) and checks that both agree.
fn eval(g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]) -> Vec<Tensor> {
    let a = session(g, true).run(feeds, fetches, &[]).unwrap();
    let b = session(g, false).run(feeds, fetches, &[]).unwrap();
    assert_eq!(a, b, "optimized and plain runs disagree");
    a
}

fn eval1(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output) -> Tensor {
    eval(g, feeds, &[fetch]).remove(0)
}

/// Checks dtype, shape and values.
fn check<T: Element>(t: &Tensor, shape: &[usize], values: &[T]) {
    assert_eq!(t.dtype(), T::DTYPE, "{t:?}");
    assert_eq!(t.shape(), shape, "{t:?}");
    assert_eq!(t.as_slice::<T>().unwrap(), values, "{t:?}");
}

/// Runs a step that must fail in the kernel of `node` with a message holding every `part`.
fn expect_error(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output, parts: &[&str]) {
    let node = g.node(fetch.node).name.clone();
    for optimize in [true, false] {
        let e = session(g, optimize)
            .run(feeds, &[fetch], &[])
            .expect_err("the step should fail");
        let msg = e.to_string();
        assert!(matches!(e, Error::Kernel { .. }), "{msg}");
        assert!(msg.contains(&format!("`{node}`")), "no node name in: {msg}");
        for p in parts {
            assert!(msg.contains(p), "missing {p:?} in: {msg}");
        }
    }
}

fn t<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::new(shape, v).unwrap()
}

fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    t(shape, (0..n as i32).collect())
}

fn ph(g: &mut Graph, name: &str, dtype: DType) -> Output {
    g.placeholder(name, dtype, Shape::unknown()).unwrap()
}

/// Element types built from small integers, to run one test over every value dtype.
trait TestElem: Element + Copy {
    fn of(i: i64) -> Self;
}
impl TestElem for f32 {
    fn of(i: i64) -> Self {
        i as f32
    }
}
impl TestElem for f64 {
    fn of(i: i64) -> Self {
        i as f64
    }
}
impl TestElem for i32 {
    fn of(i: i64) -> Self {
        i as i32
    }
}
impl TestElem for i64 {
    fn of(i: i64) -> Self {
        i
    }
}
impl TestElem for u8 {
    fn of(i: i64) -> Self {
        i as u8
    }
}
impl TestElem for bool {
    fn of(i: i64) -> Self {
        i % 2 == 1
    }
}
impl TestElem for f16 {
    fn of(i: i64) -> Self {
        f16::from_f64(i as f64)
    }
}
impl TestElem for bf16 {
    fn of(i: i64) -> Self {
        bf16::from_f64(i as f64)
    }
}

fn vals<T: TestElem>(v: &[i64]) -> Vec<T> {
    v.iter().map(|&i| T::of(i)).collect()
}

// ---- every dtype ------------------------------------------------------------------------------

/// Concat, gather, transpose and the other data-movement ops on one dtype, fed at run time.
fn data_movement_for<T: TestElem>() {
    let mut g = Graph::new();
    let a = ph(&mut g, "a", T::DTYPE);
    let b = ph(&mut g, "b", T::DTYPE);
    let cat1 = g.concat(&[a, b], 1).unwrap();
    let cat0 = g.concat(&[a, a], -2).unwrap();
    let idx = g.constant_from(&[3], vec![2i32, 0, 2]).unwrap();
    let gat = g.gather(a, idx, -1).unwrap();
    let tr = g.transpose(a, &[1, 0]).unwrap();
    let sl = g.slice(a, &[0, 1], &[-1, 2]).unwrap();
    let ss = g
        .strided_slice(
            a,
            &[0],
            &[0],
            &[-1],
            StridedSliceMasks {
                begin: 1,
                end: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let rev = g.reverse(a, &[1]).unwrap();
    let til = g.tile(b, &[1, 2]).unwrap();
    let st = g.stack(&[b, b], 1).unwrap();
    let un = g.unstack(a, 3, 1).unwrap();
    let sp = g.split(a, 3, 1).unwrap();
    let bt = g.broadcast_to(b, &[2, 2, 1]).unwrap();
    let paddings = g.constant_from(&[2, 2], vec![1i32, 0, 0, 1]).unwrap();
    let cv = g.constant_from(&[], vec![T::of(1)]).unwrap();
    let pad = g
        .build("PadV2")
        .input(a)
        .input(paddings)
        .input(cv)
        .finish1()
        .unwrap();
    let fill = g.fill(&[2], cv).unwrap();
    let ones = g.ones_like(b).unwrap();
    let zeros = g.zeros_like(b).unwrap();
    let ex = g.expand_dims(b, 0).unwrap();
    let sq = g.squeeze(ex, &[]).unwrap();
    let fetches = [
        cat1, cat0, gat, tr, sl, ss, rev, til, st, un[2], sp[1], bt, pad, fill, ones, zeros, sq,
    ];
    // a = [[0, 1, 2], [3, 4, 5]], b = [[6], [7]]
    let av = t(&[2, 3], vals::<T>(&[0, 1, 2, 3, 4, 5]));
    let bv = t(&[2, 1], vals::<T>(&[6, 7]));
    let out = eval(&g, &[(a, av), (b, bv)], &fetches);
    check(&out[0], &[2, 4], &vals::<T>(&[0, 1, 2, 6, 3, 4, 5, 7]));
    check(
        &out[1],
        &[4, 3],
        &vals::<T>(&[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]),
    );
    check(&out[2], &[2, 3], &vals::<T>(&[2, 0, 2, 5, 3, 5]));
    check(&out[3], &[3, 2], &vals::<T>(&[0, 3, 1, 4, 2, 5]));
    check(&out[4], &[2, 2], &vals::<T>(&[1, 2, 4, 5]));
    check(&out[5], &[2, 3], &vals::<T>(&[3, 4, 5, 0, 1, 2]));
    check(&out[6], &[2, 3], &vals::<T>(&[2, 1, 0, 5, 4, 3]));
    check(&out[7], &[2, 2], &vals::<T>(&[6, 6, 7, 7]));
    check(&out[8], &[2, 2, 1], &vals::<T>(&[6, 6, 7, 7]));
    check(&out[9], &[2], &vals::<T>(&[2, 5]));
    check(&out[10], &[2, 1], &vals::<T>(&[1, 4]));
    check(&out[11], &[2, 2, 1], &vals::<T>(&[6, 7, 6, 7]));
    check(
        &out[12],
        &[3, 4],
        &vals::<T>(&[1, 1, 1, 1, 0, 1, 2, 1, 3, 4, 5, 1]),
    );
    check(&out[13], &[2], &vals::<T>(&[1, 1]));
    check(&out[14], &[2, 1], &vals::<T>(&[1, 1]));
    check(&out[15], &[2, 1], &vals::<T>(&[0, 0]));
    check(&out[16], &[2], &vals::<T>(&[6, 7]));
}

#[test]
fn data_movement_works_for_every_dtype() {
    data_movement_for::<f32>();
    data_movement_for::<f64>();
    data_movement_for::<i32>();
    data_movement_for::<i64>();
    data_movement_for::<u8>();
    data_movement_for::<bool>();
    data_movement_for::<f16>();
    data_movement_for::<bf16>();
}

// ---- reshape, expand_dims, squeeze ------------------------------------------------------------

#[test]
fn reshape_infers_one_dim_and_shares_the_buffer() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let r = g.reshape(x, &[3, -1]).unwrap();
    let s = g.reshape(x, &[-1]).unwrap();
    let e = g.reshape(x, &[2, 0, -1]).unwrap();
    let xv = iota(&[2, 3]);
    let out = session(&g, true)
        .run(&[(x, xv.clone())], &[r, s], &[])
        .unwrap();
    check(&out[0], &[3, 2], &[0, 1, 2, 3, 4, 5]);
    check(&out[1], &[6], &[0, 1, 2, 3, 4, 5]);
    assert!(out[0].shares_buffer_with(&xv), "reshape copied");
    assert!(out[1].shares_buffer_with(&xv), "reshape copied");
    // An empty tensor reshapes to an empty shape, and a scalar to [1, 1].
    let empty = t::<i32>(&[0, 4], vec![]);
    let y = session(&g, true)
        .run(&[(x, empty.clone())], &[r], &[])
        .unwrap();
    check::<i32>(&y[0], &[3, 0], &[]);
    let e1 = g.reshape(x, &[1, 1]).unwrap();
    let y = session(&g, true)
        .run(&[(x, t(&[], vec![5i32]))], &[e1], &[])
        .unwrap();
    check(&y[0], &[1, 1], &[5]);
    // -1 next to a 0 dim cannot be inferred.
    expect_error(
        &g,
        &[(x, empty)],
        e,
        &[
            "cannot reshape a tensor of 0 elements",
            "[2, 0, -1]",
            "cannot be inferred",
        ],
    );
}

#[test]
fn reshape_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    let shape = ph(&mut g, "shape", DType::I32);
    let r = g.reshape_to(x, shape).unwrap();
    let xv = t(&[2, 3], vec![0.0f32; 6]);
    expect_error(
        &g,
        &[(x, xv.clone()), (shape, t(&[2], vec![4, -1]))],
        r,
        &[
            "cannot reshape a tensor of 6 elements",
            "[2, 3]",
            "[4, -1]",
            "multiple of 4",
        ],
    );
    expect_error(
        &g,
        &[(x, xv.clone()), (shape, t(&[2], vec![4, 2]))],
        r,
        &["6 elements", "[4, 2]", "which has 8 elements"],
    );
    expect_error(
        &g,
        &[(x, xv.clone()), (shape, t(&[2], vec![-1, -1]))],
        r,
        &["at most one dim", "-1"],
    );
    expect_error(
        &g,
        &[(x, xv.clone()), (shape, t(&[2], vec![-2, -3]))],
        r,
        &["negative dim -2"],
    );
    expect_error(
        &g,
        &[(x, xv), (shape, t(&[1, 2], vec![3, 2]))],
        r,
        &["shape must be a 1-D tensor", "[1, 2]"],
    );
}

#[test]
fn expand_dims_and_squeeze() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let e0 = g.expand_dims(x, 0).unwrap();
    let e_last = g.expand_dims(x, -1).unwrap();
    let e_mid = g.expand_dims(x, 1).unwrap();
    let sq_all = g.squeeze(e_mid, &[]).unwrap();
    let sq_neg = g.squeeze(e_last, &[-1]).unwrap();
    let xv = iota(&[2, 3]);
    let out = eval(&g, &[(x, xv.clone())], &[e0, e_last, e_mid, sq_all, sq_neg]);
    check(&out[0], &[1, 2, 3], &[0, 1, 2, 3, 4, 5]);
    check(&out[1], &[2, 3, 1], &[0, 1, 2, 3, 4, 5]);
    check(&out[2], &[2, 1, 3], &[0, 1, 2, 3, 4, 5]);
    check(&out[3], &[2, 3], &[0, 1, 2, 3, 4, 5]);
    check(&out[4], &[2, 3], &[0, 1, 2, 3, 4, 5]);
    assert!(
        out.iter().all(|o| o.shares_buffer_with(&xv)),
        "a copy was made"
    );
    // Squeezing everything removes only the size-1 dims.
    let sq = g.squeeze(x, &[]).unwrap();
    let y = eval1(&g, &[(x, iota(&[1, 2, 1, 1]))], sq);
    check(&y, &[2], &[0, 1]);
    // A scalar expands to [1].
    let y = eval1(&g, &[(x, t(&[], vec![9i32]))], e_last);
    check(&y, &[1], &[9]);
}

#[test]
fn expand_dims_and_squeeze_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let e = g.expand_dims(x, 3).unwrap();
    expect_error(
        &g,
        &[(x, iota(&[2, 3]))],
        e,
        &["axis 3 is out of range", "[2, 3]", "[-3, 2]"],
    );
    let s = g.squeeze(x, &[1]).unwrap();
    expect_error(
        &g,
        &[(x, iota(&[2, 3]))],
        s,
        &["cannot squeeze dim 1", "[2, 3]", "expected size 1, got 3"],
    );
    let s2 = g.squeeze(x, &[5]).unwrap();
    expect_error(&g, &[(x, iota(&[2, 3]))], s2, &["squeeze dim 5", "rank 2"]);
}

// ---- transpose --------------------------------------------------------------------------------

/// out[perm-ordered index] = x[index], by naive index arithmetic.
fn naive_transpose(shape: &[usize], perm: &[usize]) -> Vec<i32> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let mut rest = flat;
        let mut oi = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            oi[d] = rest % out_shape[d];
            rest /= out_shape[d];
        }
        let mut ii = vec![0; shape.len()];
        for (d, &p) in perm.iter().enumerate() {
            ii[p] = oi[d];
        }
        let src = ii.iter().zip(shape).fold(0, |acc, (&i, &s)| acc * s + i);
        out.push(src as i32);
    }
    out
}

#[test]
fn transpose_values() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let p201 = g.transpose(x, &[2, 0, 1]).unwrap();
    let p102 = g.transpose(x, &[1, 0, 2]).unwrap();
    let rev = g.transpose(x, &[]).unwrap();
    let neg = g.transpose(x, &[-1, 0, -2]).unwrap();
    let ident = g.transpose(x, &[0, 1, 2]).unwrap();
    let xv = iota(&[2, 3, 4]);
    let out = eval(&g, &[(x, xv.clone())], &[p201, p102, rev, neg, ident]);
    // out[k, i, j] = x[i, j, k] = 12 i + 4 j + k
    check(
        &out[0],
        &[4, 2, 3],
        &[
            0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23,
        ],
    );
    check(
        &out[1],
        &[3, 2, 4],
        &[
            0, 1, 2, 3, 12, 13, 14, 15, 4, 5, 6, 7, 16, 17, 18, 19, 8, 9, 10, 11, 20, 21, 22, 23,
        ],
    );
    check(
        &out[2],
        &[4, 3, 2],
        &naive_transpose(&[2, 3, 4], &[2, 1, 0]),
    );
    assert_eq!(
        out[2].as_slice::<i32>().unwrap()[..6],
        [0, 12, 4, 16, 8, 20]
    );
    check(&out[3], &[4, 2, 3], out[0].as_slice::<i32>().unwrap());
    check(&out[4], &[2, 3, 4], xv.as_slice::<i32>().unwrap());
    assert!(out[4].shares_buffer_with(&xv), "identity perm copied");
    // A 4-D case against naive index arithmetic.
    let p4 = g.transpose(x, &[3, 1, 0, 2]).unwrap();
    let y = eval1(&g, &[(x, iota(&[2, 3, 4, 5]))], p4);
    check(
        &y,
        &[5, 3, 2, 4],
        &naive_transpose(&[2, 3, 4, 5], &[3, 1, 0, 2]),
    );
    // Empty tensors and scalars.
    let t2 = g.transpose(x, &[1, 0]).unwrap();
    let y = eval1(&g, &[(x, t::<i32>(&[0, 3], vec![]))], t2);
    check::<i32>(&y, &[3, 0], &[]);
    let y = eval1(&g, &[(x, t(&[], vec![4i32]))], rev);
    check(&y, &[], &[4]);
}

#[test]
fn transpose_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    let dup = g.transpose(x, &[0, 0]).unwrap();
    let short = g.transpose(x, &[0]).unwrap();
    let big = g.transpose(x, &[0, 2]).unwrap();
    let xv = t(&[2, 3], vec![0.0f32; 6]);
    for bad in [dup, short, big] {
        expect_error(
            &g,
            &[(x, xv.clone())],
            bad,
            &["is not a permutation of the 2 axes", "[2, 3]"],
        );
    }
}

// ---- concat, split, pack, unpack --------------------------------------------------------------

#[test]
fn concat_values_axes_and_empty_inputs() {
    let mut g = Graph::new();
    let a = ph(&mut g, "a", DType::F32);
    let b = ph(&mut g, "b", DType::F32);
    let c1 = g.concat(&[a, b], 1).unwrap();
    let cneg = g.concat(&[a, b, a], -1).unwrap();
    let av = t(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
    let bv = t(&[2, 1], vec![5.0f32, 6.0]);
    let out = eval(&g, &[(a, av.clone()), (b, bv)], &[c1, cneg]);
    check(&out[0], &[2, 3], &[1.0f32, 2.0, 5.0, 3.0, 4.0, 6.0]);
    check(
        &out[1],
        &[2, 5],
        &[1.0f32, 2.0, 5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 3.0, 4.0],
    );
    let c0 = g.concat(&[a, b], 0).unwrap();
    let y = eval1(
        &g,
        &[(a, av.clone()), (b, t(&[1, 2], vec![7.0f32, 8.0]))],
        c0,
    );
    check(&y, &[3, 2], &[1.0f32, 2.0, 3.0, 4.0, 7.0, 8.0]);
    // Empty pieces contribute nothing; all-empty gives an empty result.
    let y = eval1(&g, &[(a, av.clone()), (b, t::<f32>(&[2, 0], vec![]))], c1);
    check(&y, &[2, 2], &[1.0f32, 2.0, 3.0, 4.0]);
    let y = eval1(
        &g,
        &[
            (a, t::<f32>(&[0, 2], vec![])),
            (b, t::<f32>(&[0, 2], vec![])),
        ],
        c0,
    );
    check::<f32>(&y, &[0, 2], &[]);
    // A single value passes through.
    let one = g.concat(&[a], 0).unwrap();
    let y = session(&g, true)
        .run(&[(a, av.clone())], &[one], &[])
        .unwrap();
    assert!(y[0].shares_buffer_with(&av));
    // 3-D along the middle axis.
    let i = ph(&mut g, "i", DType::I32);
    let j = ph(&mut g, "j", DType::I32);
    let mid = g.concat(&[i, j], 1).unwrap();
    let y = eval1(&g, &[(i, iota(&[2, 1, 2])), (j, iota(&[2, 2, 2]))], mid);
    check(&y, &[2, 3, 2], &[0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn concat_errors() {
    let mut g = Graph::new();
    let a = ph(&mut g, "a", DType::F32);
    let b = ph(&mut g, "b", DType::F32);
    let c = g.concat(&[a, b], 1).unwrap();
    let c5 = g.concat(&[a, b], 5).unwrap();
    let av = t(&[2, 2], vec![0.0f32; 4]);
    expect_error(
        &g,
        &[(a, av.clone()), (b, t(&[3, 1], vec![0.0f32; 3]))],
        c,
        &[
            "values[1] is float32[3, 1]",
            "expected float32 with shape [2, 2]",
            "axis 1",
        ],
    );
    expect_error(
        &g,
        &[(a, av.clone()), (b, t(&[2], vec![0.0f32; 2]))],
        c,
        &["values[1] is float32[2]"],
    );
    expect_error(
        &g,
        &[(a, av.clone()), (b, av.clone())],
        c5,
        &["axis 5 is out of range", "rank 2", "[2, 2]"],
    );
    expect_error(
        &g,
        &[(a, t(&[], vec![1.0f32])), (b, t(&[], vec![1.0f32]))],
        c,
        &["cannot concatenate scalars", "Pack"],
    );
}

#[test]
fn split_values_and_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let s1 = g.split(x, 3, 1).unwrap();
    let s0 = g.split(x, 2, -2).unwrap();
    let mut fetches = s1.clone();
    fetches.extend(&s0);
    let out = eval(&g, &[(x, iota(&[2, 6]))], &fetches);
    check(&out[0], &[2, 2], &[0, 1, 6, 7]);
    check(&out[1], &[2, 2], &[2, 3, 8, 9]);
    check(&out[2], &[2, 2], &[4, 5, 10, 11]);
    check(&out[3], &[1, 6], &[0, 1, 2, 3, 4, 5]);
    check(&out[4], &[1, 6], &[6, 7, 8, 9, 10, 11]);
    // Splitting an empty dim gives empty parts.
    let out = eval(&g, &[(x, t::<i32>(&[2, 0], vec![]))], &s1);
    for o in &out {
        check::<i32>(o, &[2, 0], &[]);
    }
    expect_error(
        &g,
        &[(x, iota(&[2, 5]))],
        s1[0],
        &[
            "cannot split dim 1 of size 5",
            "[2, 5]",
            "into 3 equal parts",
            "divisible by 3",
        ],
    );
    let s9 = g.split(x, 2, 9).unwrap();
    expect_error(
        &g,
        &[(x, iota(&[2, 6]))],
        s9[0],
        &["axis 9 is out of range", "[2, 6]"],
    );
}

#[test]
fn pack_and_unpack() {
    let mut g = Graph::new();
    let a = ph(&mut g, "a", DType::I32);
    let b = ph(&mut g, "b", DType::I32);
    let c = ph(&mut g, "c", DType::I32);
    let s0 = g.stack(&[a, b, c], 0).unwrap();
    let s1 = g.stack(&[a, b, c], 1).unwrap();
    let sn = g.stack(&[a, b, c], -1).unwrap();
    let feeds = [
        (a, t(&[2], vec![1, 2])),
        (b, t(&[2], vec![3, 4])),
        (c, t(&[2], vec![5, 6])),
    ];
    let out = eval(&g, &feeds, &[s0, s1, sn]);
    check(&out[0], &[3, 2], &[1, 2, 3, 4, 5, 6]);
    check(&out[1], &[2, 3], &[1, 3, 5, 2, 4, 6]);
    check(&out[2], &[2, 3], &[1, 3, 5, 2, 4, 6]);
    // Stacking scalars makes a vector.
    let scalars = [
        (a, t(&[], vec![7])),
        (b, t(&[], vec![8])),
        (c, t(&[], vec![9])),
    ];
    check(&eval1(&g, &scalars, s0), &[3], &[7, 8, 9]);

    let x = ph(&mut g, "x", DType::I32);
    let u1 = g.unstack(x, 3, 1).unwrap();
    let u0 = g.unstack(x, 2, 0).unwrap();
    let un = g.unstack(x, 3, -1).unwrap();
    let mut fetches = u1.clone();
    fetches.extend(&u0);
    fetches.extend(&un);
    let out = eval(&g, &[(x, t(&[2, 3], vec![1, 2, 3, 4, 5, 6]))], &fetches);
    check(&out[0], &[2], &[1, 4]);
    check(&out[1], &[2], &[2, 5]);
    check(&out[2], &[2], &[3, 6]);
    check(&out[3], &[3], &[1, 2, 3]);
    check(&out[4], &[3], &[4, 5, 6]);
    check(&out[7], &[2], &[3, 6]);
}

#[test]
fn pack_and_unpack_errors() {
    let mut g = Graph::new();
    let a = ph(&mut g, "a", DType::I32);
    let b = ph(&mut g, "b", DType::I32);
    let s = g.stack(&[a, b], 0).unwrap();
    expect_error(
        &g,
        &[(a, iota(&[2])), (b, iota(&[3]))],
        s,
        &["values[1] is int32[3]", "expected int32[2] like values[0]"],
    );
    let s3 = g.stack(&[a, b], 3).unwrap();
    expect_error(
        &g,
        &[(a, iota(&[2])), (b, iota(&[2]))],
        s3,
        &["axis 3 is out of range", "[-2, 1]"],
    );
    let u = g.unstack(a, 3, 0).unwrap();
    expect_error(
        &g,
        &[(a, iota(&[2, 2]))],
        u[0],
        &[
            "cannot unpack dim 0",
            "[2, 2]",
            "into 3 tensors",
            "expected size 3, got 2",
        ],
    );
}

#[path = "array_cases/filling.rs"]
mod filling;
#[path = "array_cases/indexing.rs"]
mod indexing;
