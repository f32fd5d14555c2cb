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

// ---- slice, strided slice ---------------------------------------------------------------------

#[test]
fn slice_values_and_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let s = g.slice(x, &[1, 1], &[2, -1]).unwrap();
    let empty = g.slice(x, &[3, 1], &[0, 2]).unwrap();
    let all = g.slice(x, &[0, 0], &[-1, -1]).unwrap();
    let col = g.slice(x, &[0, 2], &[3, 1]).unwrap();
    let xv = iota(&[3, 4]);
    let out = eval(&g, &[(x, xv.clone())], &[s, empty, all, col]);
    check(&out[0], &[2, 3], &[5, 6, 7, 9, 10, 11]);
    check::<i32>(&out[1], &[0, 2], &[]);
    check(&out[2], &[3, 4], xv.as_slice::<i32>().unwrap());
    assert!(out[2].shares_buffer_with(&xv), "a full slice copied");
    check(&out[3], &[3, 1], &[2, 6, 10]);

    let bad = g.slice(x, &[2, 0], &[2, 1]).unwrap();
    expect_error(
        &g,
        &[(x, xv.clone())],
        bad,
        &[
            "slice begin 2 size 2 is out of range for dim 0",
            "[3, 4]",
            "0 <= begin + size <= 3",
        ],
    );
    // A negative begin is rejected by the graph when constant; fed, by the kernel.
    let b = ph(&mut g, "begin", DType::I32);
    let z = g.constant_from(&[2], vec![1i32, 1]).unwrap();
    let neg = g
        .build("Slice")
        .input(x)
        .input(b)
        .input(z)
        .finish1()
        .unwrap();
    expect_error(
        &g,
        &[(x, xv.clone()), (b, t(&[2], vec![-1, 0]))],
        neg,
        &["slice begin -1 size 1", "0 <= begin <= 3"],
    );
    let rank = g.slice(x, &[0], &[1]).unwrap();
    expect_error(
        &g,
        &[(x, xv)],
        rank,
        &["must have one entry per dim", "[3, 4]"],
    );
}

fn masks(begin: i64, end: i64, ellipsis: i64, new_axis: i64, shrink: i64) -> StridedSliceMasks {
    StridedSliceMasks {
        begin,
        end,
        ellipsis,
        new_axis,
        shrink_axis: shrink,
    }
}

/// A strided slice of a constant: the kernel's result and the graph's inferred shape agree.
fn strided(x: &Tensor, b: &[i64], e: &[i64], s: &[i64], m: StridedSliceMasks) -> Tensor {
    let mut g = Graph::new();
    let c = g.constant(x.to_value()).unwrap();
    let y = g.strided_slice(c, b, e, s, m).unwrap();
    let inferred = g.shape(y).clone();
    // Also through a placeholder, so the kernel runs at step time and not only when folding.
    let p = ph(&mut g, "p", x.dtype());
    let z = g.strided_slice(p, b, e, s, m).unwrap();
    let out = eval(&g, &[(p, x.clone())], &[y, z]);
    assert_eq!(out[0], out[1]);
    assert_eq!(
        inferred,
        Shape::known(out[0].shape()),
        "shape inference disagrees"
    );
    out[0].clone()
}

#[test]
fn strided_slice_matches_numpy() {
    let x = iota(&[2, 3, 4]); // x[i, j, k] = 12 i + 4 j + k
                              // x[:, 1:3, ::2]
    let y = strided(
        &x,
        &[0, 1, 0],
        &[0, 3, 0],
        &[1, 1, 2],
        masks(0b101, 0b101, 0, 0, 0),
    );
    check(&y, &[2, 2, 2], &[4, 6, 8, 10, 16, 18, 20, 22]);
    // x[::-1, :, -1]
    let y = strided(
        &x,
        &[0, 0, -1],
        &[0, 0, 0],
        &[-1, 1, 1],
        masks(0b011, 0b011, 0, 0, 0b100),
    );
    check(&y, &[2, 3], &[15, 19, 23, 3, 7, 11]);
    // x[..., 1]
    let y = strided(&x, &[0, 1], &[0, 2], &[1, 1], masks(0, 0, 0b01, 0, 0b10));
    check(&y, &[2, 3], &[1, 5, 9, 13, 17, 21]);
    // x[:, np.newaxis, 0, 1:]
    let y = strided(
        &x,
        &[0, 0, 0, 1],
        &[0, 0, 1, 0],
        &[1, 1, 1, 1],
        masks(0b0001, 0b1001, 0, 0b0010, 0b0100),
    );
    check(&y, &[2, 1, 3], &[1, 2, 3, 13, 14, 15]);
    // x[0, ..., np.newaxis]
    let y = strided(
        &x,
        &[0, 0, 0],
        &[1, 0, 0],
        &[1, 1, 1],
        masks(0, 0, 0b010, 0b100, 0b001),
    );
    check(&y, &[3, 4, 1], &(0..12).collect::<Vec<i32>>());
    // x[1, ::-2, 3:0:-1]: j in {2, 0}, k in {3, 2, 1}
    let y = strided(
        &x,
        &[1, 0, 3],
        &[2, 0, 0],
        &[1, -2, -1],
        masks(0b010, 0b010, 0, 0, 0b001),
    );
    check(&y, &[2, 3], &[23, 22, 21, 15, 14, 13]);
    // x[np.newaxis] and x[...] keep everything
    let y = strided(&x, &[0], &[0], &[1], masks(0, 0, 0, 1, 0));
    check(&y, &[1, 2, 3, 4], x.as_slice::<i32>().unwrap());
    let y = strided(&x, &[0], &[0], &[1], masks(0, 0, 1, 0, 0));
    check(&y, &[2, 3, 4], x.as_slice::<i32>().unwrap());

    let v = iota(&[10]);
    // (begin, end, stride, masks, numpy's result)
    let cases: Vec<(i64, i64, i64, StridedSliceMasks, Vec<i32>)> = vec![
        (8, 2, -2, masks(0, 0, 0, 0, 0), vec![8, 6, 4]), // v[8:2:-2]
        (-1, -4, -1, masks(0, 0, 0, 0, 0), vec![9, 8, 7]), // v[-1:-4:-1]
        (0, 0, -3, masks(1, 1, 0, 0, 0), vec![9, 6, 3, 0]), // v[::-3]
        (2, 100, 1, masks(0, 0, 0, 0, 0), (2..10).collect()), // v[2:100]
        (5, 2, 1, masks(0, 0, 0, 0, 0), vec![]),         // v[5:2]
        (-100, 3, 1, masks(0, 0, 0, 0, 0), vec![0, 1, 2]), // v[-100:3]
        (100, -100, -4, masks(0, 0, 0, 0, 0), vec![9, 5, 1]), // v[100:-100:-4]
        (3, 0, 1, masks(0, 1, 0, 0, 0), (3..10).collect()), // v[3:]
        (0, 3, -1, masks(1, 0, 0, 0, 0), vec![9, 8, 7, 6, 5, 4]), // v[:3:-1]
    ];
    for (b, e, s, m, want) in cases {
        let y = strided(&v, &[b], &[e], &[s], m);
        check(&y, &[want.len()], &want);
    }
    // v[-1] and v[0] shrink to scalars.
    check(
        &strided(&v, &[-1], &[0], &[1], masks(0, 0, 0, 0, 1)),
        &[],
        &[9],
    );
    check(
        &strided(&v, &[0], &[1], &[1], masks(0, 0, 0, 0, 1)),
        &[],
        &[0],
    );
    // An empty input dim.
    let e = t::<f32>(&[0, 3], vec![]);
    let y = strided(&e, &[0, 1], &[0, 0], &[1, 1], masks(0b01, 0b11, 0, 0, 0));
    check::<f32>(&y, &[0, 2], &[]);
}

#[test]
fn strided_slice_full_view_shares_the_buffer() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let y = g
        .strided_slice(x, &[0, 0], &[0, 0], &[1, 1], masks(0b11, 0b11, 0, 0, 0))
        .unwrap();
    let xv = iota(&[2, 3]);
    let out = session(&g, true)
        .run(&[(x, xv.clone())], &[y], &[])
        .unwrap();
    assert_eq!(out[0].shape(), &[2, 3]);
    assert!(out[0].shares_buffer_with(&xv));
}

#[test]
fn strided_slice_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let out_of_range = g
        .strided_slice(x, &[5], &[6], &[1], masks(0, 0, 0, 0, 1))
        .unwrap();
    expect_error(
        &g,
        &[(x, iota(&[3, 2]))],
        out_of_range,
        &[
            "index 5 is out of range for dim 0 of size 3",
            "input shape [3, 2]",
        ],
    );
    let zero = g
        .strided_slice(x, &[0], &[2], &[0], masks(0, 0, 0, 0, 0))
        .unwrap();
    expect_error(&g, &[(x, iota(&[3]))], zero, &["strides[0] must not be 0"]);
    let too_many = g
        .strided_slice(x, &[0, 0, 0], &[1, 1, 1], &[1, 1, 1], masks(0, 0, 0, 0, 0))
        .unwrap();
    expect_error(
        &g,
        &[(x, iota(&[3, 2]))],
        too_many,
        &["beyond the input's rank 2"],
    );
    let lengths = g
        .strided_slice(x, &[0, 0], &[1], &[1], masks(0, 0, 0, 0, 0))
        .unwrap();
    expect_error(
        &g,
        &[(x, iota(&[3, 2]))],
        lengths,
        &["must have equal lengths"],
    );
    let shrink_back = g
        .strided_slice(x, &[1], &[0], &[-1], masks(0, 0, 0, 0, 1))
        .unwrap();
    expect_error(
        &g,
        &[(x, iota(&[3]))],
        shrink_back,
        &["strides[0] = -1", "only stride 1"],
    );
    let two_ellipses = g
        .strided_slice(x, &[0, 0], &[0, 0], &[1, 1], masks(0, 0, 0b11, 0, 0))
        .unwrap();
    expect_error(
        &g,
        &[(x, iota(&[3, 2]))],
        two_ellipses,
        &["only one ellipsis"],
    );
}

// ---- pad, tile, broadcast_to, reverse ---------------------------------------------------------

#[test]
fn pad_values() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    let p0 = g.pad(x, &[(1, 0), (0, 2)], 0.0).unwrap();
    let p9 = g.pad(x, &[(0, 1), (1, 1)], 9.0).unwrap();
    let none = g.pad(x, &[(0, 0), (0, 0)], 3.0).unwrap();
    let xv = t(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let out = eval(&g, &[(x, xv.clone())], &[p0, p9, none]);
    check(
        &out[0],
        &[3, 5],
        &[0f32, 0., 0., 0., 0., 1., 2., 3., 0., 0., 4., 5., 6., 0., 0.],
    );
    check(
        &out[1],
        &[3, 5],
        &[9f32, 1., 2., 3., 9., 9., 4., 5., 6., 9., 9., 9., 9., 9., 9.],
    );
    assert!(out[2].shares_buffer_with(&xv), "padding by nothing copied");
    // An empty input pads to all-constant; a 1-D and a 3-D input.
    let y = eval1(&g, &[(x, t::<f32>(&[0, 1], vec![]))], p9);
    check(&y, &[1, 3], &[9.0f32; 3]);
    let x3 = ph(&mut g, "x3", DType::I32);
    let p3 = g.pad(x3, &[(0, 0), (1, 0), (0, 1)], 7.0).unwrap();
    let y = eval1(&g, &[(x3, iota(&[2, 1, 2]))], p3);
    check(&y, &[2, 2, 3], &[7, 7, 7, 0, 1, 7, 7, 7, 7, 2, 3, 7]);
}

#[test]
fn pad_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    let p = ph(&mut g, "paddings", DType::I32);
    let c = g.scalar(0.0f32).unwrap();
    let pad = g
        .build("PadV2")
        .input(x)
        .input(p)
        .input(c)
        .finish1()
        .unwrap();
    let xv = t(&[2, 3], vec![0.0f32; 6]);
    expect_error(
        &g,
        &[(x, xv.clone()), (p, t(&[2, 2], vec![0, -1, 0, 0]))],
        pad,
        &["paddings must be non-negative, got -1"],
    );
    expect_error(
        &g,
        &[(x, xv.clone()), (p, t(&[1, 2], vec![0, 1]))],
        pad,
        &[
            "paddings must have shape [2, 2]",
            "[2, 3]",
            "got shape [1, 2]",
        ],
    );
    let cv = ph(&mut g, "cv", DType::F32);
    let pad2 = g
        .build("PadV2")
        .input(x)
        .input(p)
        .input(cv)
        .finish1()
        .unwrap();
    expect_error(
        &g,
        &[
            (x, xv),
            (p, t(&[2, 2], vec![0, 1, 0, 0])),
            (cv, t(&[2], vec![1.0f32, 2.0])),
        ],
        pad2,
        &["constant_value must be a float32 scalar", "got float32[2]"],
    );
}

#[test]
fn tile_values_and_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let t21 = g.tile(x, &[2, 1]).unwrap();
    let t12 = g.tile(x, &[1, 2]).unwrap();
    let t22 = g.tile(x, &[2, 2]).unwrap();
    let t02 = g.tile(x, &[0, 2]).unwrap();
    let t11 = g.tile(x, &[1, 1]).unwrap();
    let xv = t(&[2, 2], vec![1, 2, 3, 4]);
    let out = eval(&g, &[(x, xv.clone())], &[t21, t12, t22, t02, t11]);
    check(&out[0], &[4, 2], &[1, 2, 3, 4, 1, 2, 3, 4]);
    check(&out[1], &[2, 4], &[1, 2, 1, 2, 3, 4, 3, 4]);
    check(
        &out[2],
        &[4, 4],
        &[1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4],
    );
    check::<i32>(&out[3], &[0, 4], &[]);
    check(&out[4], &[2, 2], &[1, 2, 3, 4]);
    // A 3-D tile repeating the middle axis.
    let t3 = g.tile(x, &[1, 3, 1]).unwrap();
    let y = eval1(&g, &[(x, iota(&[2, 1, 2]))], t3);
    check(&y, &[2, 3, 2], &[0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]);
    // Errors.
    let m = ph(&mut g, "m", DType::I32);
    let tm = g.build("Tile").input(x).input(m).finish1().unwrap();
    expect_error(
        &g,
        &[(x, xv.clone()), (m, t(&[1], vec![2]))],
        tm,
        &[
            "multiples must hold 2 non-negative entries",
            "[2, 2]",
            "got [2]",
        ],
    );
    expect_error(
        &g,
        &[(x, xv), (m, t(&[2], vec![1, -1]))],
        tm,
        &["got [1, -1]"],
    );
}

#[test]
fn broadcast_to_values_and_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let b23 = g.broadcast_to(x, &[2, 3]).unwrap();
    let b223 = g.broadcast_to(x, &[2, 2, 3]).unwrap();
    let out = eval(&g, &[(x, t(&[3], vec![1, 2, 3]))], &[b23, b223]);
    check(&out[0], &[2, 3], &[1, 2, 3, 1, 2, 3]);
    check(&out[1], &[2, 2, 3], &[1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
    let col = t(&[2, 1], vec![1, 2]);
    let out = eval(&g, &[(x, col)], &[b23, b223]);
    check(&out[0], &[2, 3], &[1, 1, 1, 2, 2, 2]);
    check(&out[1], &[2, 2, 3], &[1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]);
    let y = eval1(&g, &[(x, t(&[], vec![7]))], b23);
    check(&y, &[2, 3], &[7; 6]);
    let same = t(&[2, 3], vec![1, 2, 3, 4, 5, 6]);
    let y = session(&g, true)
        .run(&[(x, same.clone())], &[b23], &[])
        .unwrap();
    assert!(y[0].shares_buffer_with(&same));
    let b0 = g.broadcast_to(x, &[0, 3]).unwrap();
    check::<i32>(&eval1(&g, &[(x, t(&[1], vec![5]))], b0), &[0, 3], &[]);

    expect_error(
        &g,
        &[(x, t(&[2], vec![1, 2]))],
        b23,
        &[
            "cannot broadcast a tensor of shape [2] to shape [2, 3]",
            "input dim 0 is 2, expected 3 or 1",
        ],
    );
    let low = g.broadcast_to(x, &[3]).unwrap();
    expect_error(
        &g,
        &[(x, iota(&[2, 3]))],
        low,
        &[
            "cannot broadcast a tensor of shape [2, 3] to shape [3]",
            "lower than",
        ],
    );
}

#[test]
fn reverse_values_and_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let r0 = g.reverse(x, &[0]).unwrap();
    let r1 = g.reverse(x, &[1]).unwrap();
    let r01 = g.reverse(x, &[0, 1]).unwrap();
    let rn = g.reverse(x, &[-1]).unwrap();
    let none = g.reverse(x, &[]).unwrap();
    let xv = iota(&[2, 3]);
    let out = eval(&g, &[(x, xv.clone())], &[r0, r1, r01, rn, none]);
    check(&out[0], &[2, 3], &[3, 4, 5, 0, 1, 2]);
    check(&out[1], &[2, 3], &[2, 1, 0, 5, 4, 3]);
    check(&out[2], &[2, 3], &[5, 4, 3, 2, 1, 0]);
    check(&out[3], &[2, 3], &[2, 1, 0, 5, 4, 3]);
    check(&out[4], &[2, 3], &[0, 1, 2, 3, 4, 5]);
    // The middle axis of a 3-D tensor, and an empty one.
    let y = eval1(&g, &[(x, iota(&[2, 3, 2]))], r1);
    check(&y, &[2, 3, 2], &[4, 5, 2, 3, 0, 1, 10, 11, 8, 9, 6, 7]);
    check::<i32>(
        &eval1(&g, &[(x, t::<i32>(&[0, 2], vec![]))], r01),
        &[0, 2],
        &[],
    );

    let dup = g.reverse(x, &[1, -1]).unwrap();
    expect_error(
        &g,
        &[(x, xv.clone())],
        dup,
        &["axis 1 is specified more than once"],
    );
    let bad = g.reverse(x, &[2]).unwrap();
    expect_error(&g, &[(x, xv)], bad, &["axis 2 is out of range", "[2, 3]"]);
}

// ---- gather, one_hot --------------------------------------------------------------------------

#[test]
fn gather_values() {
    let mut g = Graph::new();
    let p = ph(&mut g, "params", DType::F64);
    let i = ph(&mut g, "indices", DType::I64);
    let g0 = g.gather(p, i, 0).unwrap();
    let g1 = g.gather(p, i, 1).unwrap();
    let gn = g.gather(p, i, -1).unwrap();
    let pv = t(&[3, 3], (1..=9).map(f64::from).collect());
    let out = eval(
        &g,
        &[(p, pv.clone()), (i, t(&[2], vec![2i64, 0]))],
        &[g0, g1, gn],
    );
    check(&out[0], &[2, 3], &[7., 8., 9., 1., 2., 3.]);
    check(&out[1], &[3, 2], &[3., 1., 6., 4., 9., 7.]);
    check(&out[2], &[3, 2], &[3., 1., 6., 4., 9., 7.]);
    // 2-D indices, a scalar index, empty indices.
    let idx2 = t(&[2, 2], vec![0i64, 1, 1, 2]);
    let y = eval1(&g, &[(p, pv.clone()), (i, idx2)], g0);
    check(
        &y,
        &[2, 2, 3],
        &[1., 2., 3., 4., 5., 6., 4., 5., 6., 7., 8., 9.],
    );
    let y = eval1(&g, &[(p, pv.clone()), (i, t(&[], vec![1i64]))], g1);
    check(&y, &[3], &[2., 5., 8.]);
    let y = eval1(&g, &[(p, pv.clone()), (i, t::<i64>(&[0], vec![]))], g0);
    check::<f64>(&y, &[0, 3], &[]);
    // 3-D params, middle axis.
    let y = eval1(
        &g,
        &[
            (p, t(&[2, 3, 2], (0..12).map(f64::from).collect())),
            (i, t(&[2], vec![2i64, 2])),
        ],
        g1,
    );
    check(&y, &[2, 2, 2], &[4., 5., 4., 5., 10., 11., 10., 11.]);
    // Int32 indices with constant inputs (folded).
    let mut g = Graph::new();
    let pc = g.constant_from(&[4], vec![10i32, 11, 12, 13]).unwrap();
    let ic = g.constant_from(&[3], vec![3i32, 3, 0]).unwrap();
    let y = g.gather(pc, ic, 0).unwrap();
    check(&eval1(&g, &[], y), &[3], &[13, 13, 10]);
}

#[test]
fn gather_errors_name_index_position_and_range() {
    let mut g = Graph::new();
    let p = ph(&mut g, "params", DType::F32);
    let i = ph(&mut g, "indices", DType::I32);
    let g0 = g.gather(p, i, 0).unwrap();
    let pv = t(&[3, 2], vec![0.0f32; 6]);
    expect_error(
        &g,
        &[(p, pv.clone()), (i, t(&[2, 2], vec![0, 1, 7, 2]))],
        g0,
        &["indices[1, 0] = 7 is not in [0, 3)", "axis 0", "[3, 2]"],
    );
    expect_error(
        &g,
        &[(p, pv.clone()), (i, t(&[3], vec![0, -1, 1]))],
        g0,
        &["indices[1] = -1 is not in [0, 3)"],
    );
    let g5 = g.gather(p, i, 5).unwrap();
    expect_error(
        &g,
        &[(p, pv.clone()), (i, t(&[1], vec![0]))],
        g5,
        &["axis 5 is out of range", "rank 2"],
    );
    expect_error(
        &g,
        &[(p, t(&[], vec![1.0f32])), (i, t(&[1], vec![0]))],
        g0,
        &["params must be at least 1-D"],
    );
    // Gathering from an empty dim: every index is out of range.
    expect_error(
        &g,
        &[(p, t::<f32>(&[0, 2], vec![])), (i, t(&[1], vec![0]))],
        g0,
        &["indices[0] = 0 is not in [0, 0)"],
    );
}

#[test]
fn one_hot_values() {
    let mut g = Graph::new();
    let i = ph(&mut g, "i", DType::I32);
    let on = g.scalar(1.0f32).unwrap();
    let off = g.scalar(0.0f32).unwrap();
    let last = g.one_hot(i, 3, on, off).unwrap();
    let d = g.scalar(3i32).unwrap();
    let first = g
        .build("OneHot")
        .input(i)
        .input(d)
        .input(on)
        .input(off)
        .attr("axis", 0i64)
        .finish1()
        .unwrap();
    let iv = t(&[4], vec![0, 2, -1, 5]);
    let out = eval(&g, &[(i, iv)], &[last, first]);
    // Out-of-range indices (-1, 5) give all-off rows.
    check(
        &out[0],
        &[4, 3],
        &[1f32, 0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0.],
    );
    check(
        &out[1],
        &[3, 4],
        &[1f32, 0., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0.],
    );
    // Int values, 2-D indices and the middle axis.
    let on7 = g.scalar(7i64).unwrap();
    let off1 = g.scalar(-1i64).unwrap();
    let d2 = g.scalar(2i32).unwrap();
    let mid = g
        .build("OneHot")
        .input(i)
        .input(d2)
        .input(on7)
        .input(off1)
        .attr("axis", 1i64)
        .finish1()
        .unwrap();
    let y = eval1(&g, &[(i, t(&[2, 2], vec![0, 1, 1, 9]))], mid);
    // out[a, d, b] = on if i[a, b] == d
    check(&y, &[2, 2, 2], &[7i64, -1, -1, 7, -1, -1, 7, -1]);
    // Empty indices.
    let y = eval1(&g, &[(i, t::<i32>(&[0], vec![]))], last);
    check::<f32>(&y, &[0, 3], &[]);
}

#[test]
fn one_hot_errors() {
    let mut g = Graph::new();
    let i = ph(&mut g, "i", DType::I32);
    let d = ph(&mut g, "depth", DType::I32);
    let on = g.scalar(true).unwrap();
    let off = g.scalar(false).unwrap();
    let oh = g
        .build("OneHot")
        .input(i)
        .input(d)
        .input(on)
        .input(off)
        .finish1()
        .unwrap();
    expect_error(
        &g,
        &[(i, t(&[1], vec![0])), (d, t(&[], vec![-2]))],
        oh,
        &["depth must be non-negative, got -2"],
    );
    let y = eval1(&g, &[(i, t(&[2], vec![1, 0])), (d, t(&[], vec![2]))], oh);
    check(&y, &[2, 2], &[false, true, true, false]);
    let d3 = g.scalar(3i32).unwrap();
    let bad_axis = g
        .build("OneHot")
        .input(i)
        .input(d3)
        .input(on)
        .input(off)
        .attr("axis", 4i64)
        .finish1()
        .unwrap(); // the rank of `i` is unknown, so only the kernel can tell
    expect_error(
        &g,
        &[(i, t(&[1], vec![0]))],
        bad_axis,
        &["axis 4 is out of range", "expected -1 or a value in [0, 1]"],
    );
}

// ---- fill, zeros/ones, shape, size, rank, range -----------------------------------------------

#[test]
fn fill_zeros_ones() {
    let mut g = Graph::new();
    let v = ph(&mut g, "v", DType::Bool);
    let f = g.fill(&[2, 3], v).unwrap();
    let e = g.fill(&[0, 3], v).unwrap();
    let s = g.fill(&[], v).unwrap();
    let out = eval(&g, &[(v, t(&[], vec![true]))], &[f, e, s]);
    check(&out[0], &[2, 3], &[true; 6]);
    check::<bool>(&out[1], &[0, 3], &[]);
    check(&out[2], &[], &[true]);

    let x = ph(&mut g, "x", DType::F16);
    let z = g.zeros_like(x).unwrap();
    let o = g.ones_like(x).unwrap();
    let out = eval(&g, &[(x, t(&[2], vec![f16::from_f32(3.0); 2]))], &[z, o]);
    check(&out[0], &[2], &[f16::ZERO; 2]);
    check(&out[1], &[2], &[f16::ONE; 2]);
    let b = ph(&mut g, "b", DType::Bool);
    let ob = g.ones_like(b).unwrap();
    check(&eval1(&g, &[(b, t(&[1], vec![false]))], ob), &[1], &[true]);

    let d = ph(&mut g, "dims", DType::I64);
    let c = g.scalar(1.5f64).unwrap();
    let fd = g.build("Fill").input(d).input(c).finish1().unwrap();
    check(
        &eval1(&g, &[(d, t(&[1], vec![2i64]))], fd),
        &[2],
        &[1.5, 1.5],
    );
    expect_error(
        &g,
        &[(d, t(&[2], vec![2i64, -3]))],
        fd,
        &["dims must be non-negative, got -3"],
    );
    let vv = ph(&mut g, "vv", DType::F64);
    let fv = g.fill(&[2], vv).unwrap();
    expect_error(
        &g,
        &[(vv, t(&[2], vec![1.0f64, 2.0]))],
        fv,
        &["value must be a scalar, got shape [2]"],
    );
}

#[test]
fn shape_size_rank() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::U8);
    let s = g.shape_of(x).unwrap();
    let n = g.size(x).unwrap();
    let r = g.rank(x).unwrap();
    let s64 = g
        .build("Shape")
        .input(x)
        .attr("out_type", DType::I64)
        .finish1()
        .unwrap();
    let n64 = g
        .build("Size")
        .input(x)
        .attr("out_type", DType::I64)
        .finish1()
        .unwrap();
    let xv = t(&[2, 3, 4], vec![0u8; 24]);
    let out = eval(&g, &[(x, xv)], &[s, n, r, s64, n64]);
    check(&out[0], &[3], &[2, 3, 4]);
    check(&out[1], &[], &[24]);
    check(&out[2], &[], &[3]);
    check(&out[3], &[3], &[2i64, 3, 4]);
    check(&out[4], &[], &[24i64]);
    let out = eval(&g, &[(x, t(&[], vec![1u8]))], &[s, n, r]);
    check::<i32>(&out[0], &[0], &[]);
    check(&out[1], &[], &[1]);
    check(&out[2], &[], &[0]);
    let out = eval(&g, &[(x, t::<u8>(&[5, 0], vec![]))], &[s, n]);
    check(&out[0], &[2], &[5, 0]);
    check(&out[1], &[], &[0]);
    // Constant inputs fold to constants.
    let c = g.constant_from(&[2, 2], vec![1.0f32; 4]).unwrap();
    let sc = g.shape_of(c).unwrap();
    check(&eval1(&g, &[], sc), &[2], &[2, 2]);
}

#[test]
fn range_values() {
    let mut g = Graph::new();
    let (a, b, c) = (
        ph(&mut g, "a", DType::I32),
        ph(&mut g, "b", DType::I32),
        ph(&mut g, "c", DType::I32),
    );
    let r = g.range(a, b, c).unwrap();
    let run = |s: i32, l: i32, d: i32| {
        eval1(
            &g,
            &[
                (a, t(&[], vec![s])),
                (b, t(&[], vec![l])),
                (c, t(&[], vec![d])),
            ],
            r,
        )
    };
    check(&run(0, 5, 1), &[5], &[0, 1, 2, 3, 4]);
    check(&run(10, 0, -3), &[4], &[10, 7, 4, 1]);
    check(&run(1, 8, 3), &[3], &[1, 4, 7]);
    check::<i32>(&run(3, 3, 1), &[0], &[]);
    check(&run(-3, 3, 2), &[3], &[-3, -1, 1]);
    // A range going away from its limit is an error in TensorFlow (not an empty range).
    expect_error(
        &g,
        &[
            (a, t(&[], vec![5])),
            (b, t(&[], vec![0])),
            (c, t(&[], vec![1])),
        ],
        r,
        &["Requires start <= limit when delta > 0: 5/0"],
    );
    expect_error(
        &g,
        &[
            (a, t(&[], vec![0])),
            (b, t(&[], vec![5])),
            (c, t(&[], vec![0])),
        ],
        r,
        &["delta must not be 0", "start 0, limit 5"],
    );
    expect_error(
        &g,
        &[
            (a, t(&[2], vec![0, 1])),
            (b, t(&[], vec![5])),
            (c, t(&[], vec![1])),
        ],
        r,
        &["start must be a scalar, got shape [2]"],
    );

    let mut g = Graph::new();
    let s = g.scalar(1.0f32).unwrap();
    let l = g.scalar(2.0f32).unwrap();
    let d = g.scalar(0.25f32).unwrap();
    let rf = g.range(s, l, d).unwrap();
    check(&eval1(&g, &[], rf), &[4], &[1.0f32, 1.25, 1.5, 1.75]);
    // Counts are ceil((limit - start) / delta).
    let s = g.scalar(0.0f64).unwrap();
    let l = g.scalar(-1.0f64).unwrap();
    let d = g.scalar(-0.3f64).unwrap();
    let rd = g.range(s, l, d).unwrap();
    let y = eval1(&g, &[], rd);
    assert_eq!(y.shape(), &[4]);
    let want = [0.0, -0.3, -0.6, -0.9];
    for (v, w) in y.as_slice::<f64>().unwrap().iter().zip(want) {
        assert!((v - w).abs() < 1e-12, "{y:?}");
    }
    // Large i64 values stay exact; u8 works.
    let big = 1i64 << 60;
    let s = g.scalar(big).unwrap();
    let l = g.scalar(big + 3).unwrap();
    let d = g.scalar(1i64).unwrap();
    let ri = g.range(s, l, d).unwrap();
    assert_eq!(g.shape(ri), &Shape::known(&[3]), "inexact inferred length");
    check(&eval1(&g, &[], ri), &[3], &[big, big + 1, big + 2]);
    let s = g.scalar(0u8).unwrap();
    let l = g.scalar(10u8).unwrap();
    let d = g.scalar(3u8).unwrap();
    let ru = g.range(s, l, d).unwrap();
    check(&eval1(&g, &[], ru), &[4], &[0u8, 3, 6, 9]);
    // An infinite limit is an error.
    let f = ph(&mut g, "f", DType::F32);
    let one = g.scalar(1.0f32).unwrap();
    let zero = g.scalar(0.0f32).unwrap();
    let rinf = g.range(zero, f, one).unwrap();
    expect_error(
        &g,
        &[(f, t(&[], vec![f32::INFINITY]))],
        rinf,
        &["does not have a finite size"],
    );
}

// ---- the parallel executor --------------------------------------------------------------------

#[test]
fn kernels_run_on_the_parallel_executor() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let a = g.transpose(x, &[1, 0]).unwrap();
    let b = g.tile(x, &[1, 2]).unwrap();
    let c = g.reverse(x, &[0]).unwrap();
    let ta = g.transpose(a, &[1, 0]).unwrap();
    let cat = g.concat(&[ta, b, c], 1).unwrap();
    let s = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 4,
            optimize: true,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    for _ in 0..20 {
        let out = s.run(&[(x, iota(&[2, 2]))], &[cat], &[]).unwrap();
        check(
            &out[0],
            &[2, 8],
            &[0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 0, 1],
        );
    }
}

#[test]
fn strided_slice_with_huge_fed_strides() {
    // Strides far beyond the dim take one element; nothing overflows.
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I32);
    let b = ph(&mut g, "b", DType::I64);
    let e = ph(&mut g, "e", DType::I64);
    let s = ph(&mut g, "s", DType::I64);
    let y = g
        .build("StridedSlice")
        .input(x)
        .input(b)
        .input(e)
        .input(s)
        .finish1()
        .unwrap();
    let run = |begin: i64, end: i64, stride: i64| {
        eval1(
            &g,
            &[
                (x, iota(&[2, 5])),
                (b, t(&[2], vec![0, begin])),
                (e, t(&[2], vec![2, end])),
                (s, t(&[2], vec![1, stride])),
            ],
            y,
        )
    };
    check(&run(1, i64::MAX, i64::MAX), &[2, 1], &[1, 6]);
    check(&run(i64::MAX, i64::MIN, i64::MIN), &[2, 1], &[4, 9]);
    check(&run(i64::MIN, i64::MAX, 2), &[2, 3], &[0, 2, 4, 5, 7, 9]);
}

#[test]
fn one_hot_axis_rules_match_tensorflow_in_the_graph() {
    let mut g = Graph::new();
    let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
    let on = g.scalar(1.0f32).unwrap();
    let off = g.scalar(0.0f32).unwrap();
    let d = g.scalar(3i32).unwrap();
    let build = |g: &mut Graph, axis: i64| {
        g.build("OneHot")
            .input(i)
            .input(d)
            .input(on)
            .input(off)
            .attr("axis", axis)
            .finish1()
    };
    let e = build(&mut g, -2).unwrap_err().to_string();
    assert!(e.contains("axis must be -1 or in [0, 1], got -2"), "{e}");
    assert!(build(&mut g, 2).is_err());
    let y = build(&mut g, 1).unwrap();
    assert_eq!(g.shape(y), &Shape::known(&[2, 3]));
    let y = build(&mut g, 0).unwrap();
    assert_eq!(g.shape(y), &Shape::known(&[3, 2]));
    let out = eval1(&g, &[(i, t(&[2], vec![2, 0]))], y);
    check(&out, &[3, 2], &[0f32, 1., 0., 0., 1., 0.]);
}

#[test]
fn shape_out_type_must_be_an_index_type() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    for op in ["Shape", "Size"] {
        let e = g
            .build(op)
            .input(x)
            .attr("out_type", DType::F32)
            .finish1()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("out_type must be int32 or int64, got float32"),
            "{e}"
        );
    }
    // A graph that skipped the check still fails when its kernel is built.
    let mut attrs = tfr_graph::Attrs::default();
    attrs.set("out_type", DType::F64);
    let init = tfr_core::KernelInit {
        node: "s",
        op: "Shape",
        attrs: &attrs,
        inputs: &[tfr_graph::TensorType::new(DType::F32, Shape::unknown())],
        outputs: &[],
        device: None,
    };
    let factory = tfr_core::kernel_registry()
        .find("Shape", tfr_core::DeviceType::CPU, DType::F32)
        .unwrap();
    let e = factory(&init).err().unwrap();
    assert!(
        e.contains("out_type must be int32 or int64, got float64"),
        "{e}"
    );
}
