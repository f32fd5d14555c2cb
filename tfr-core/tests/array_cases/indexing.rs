//! Array kernels: slice, strided slice, gather and one_hot against their definitions.
//! Included by `tests/array_kernels.rs` (its helpers).

use super::*;

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
