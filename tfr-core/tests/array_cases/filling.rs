//! Array kernels: pad, tile, broadcast_to, reverse, the fills and shape ops, range, and the
//! parallel executor on array graphs. Included by `tests/array_kernels.rs` (its helpers).

use super::*;

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
