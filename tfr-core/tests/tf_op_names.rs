//! TensorFlow op names and their semantics: the alias table (`AddV2`, `SelectV2`, `ConcatV2`,
//! `GatherV2` with `batch_dims`, `BatchMatMulV2`, `ReverseV2`, `Mod`), ops whose TF semantics
//! differ from a same-named tfr op (`Pad` vs `PadV2`, `RealDiv` vs `Div`), `ArgMax`/`ArgMin`
//! with `output_type`, and strided-slice error paths. Expected values are worked out by hand
//! from TensorFlow's documented semantics (noted beside each case) or by plain-Rust loops.

use tfr_core::{Error, Tensor};
use tfr_graph::ops::strided_slice::StridedSliceMasks;
use tfr_graph::{registry, DType, Graph, GraphError, Output, Shape};

use crate::common;
use common::*;

fn iota_f(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    t(shape, (0..n).map(|v| v as f32).collect())
}

fn ph(g: &mut Graph, name: &str, dtype: DType) -> Output {
    g.placeholder(name, dtype, Shape::unknown()).unwrap()
}

fn kernel_node(e: Error) -> (String, String) {
    match e {
        Error::Kernel { node, message, .. } => (node, message),
        other => panic!("expected a kernel error, got {other}"),
    }
}

#[test]
fn aliases_build_the_tfr_op() {
    for (tf, tfr) in [
        ("AddV2", "Add"),
        ("ConcatV2", "Concat"),
        ("GatherV2", "Gather"),
        ("BatchMatMulV2", "BatchMatMul"),
        ("ReverseV2", "Reverse"),
        ("Mod", "TruncateMod"),
    ] {
        assert_eq!(registry().get(tf).map(|d| d.name), Some(tfr), "{tf}");
    }
    let mut g = Graph::new();
    let x = g.constant_from(&[2], vec![1.5f32, 2.0]).unwrap();
    let y = g.constant_from(&[], vec![0.25f32]).unwrap();
    let z = g.build("AddV2").input(x).input(y).finish1().unwrap();
    assert_eq!(g.node(z.node).op, "Add");
    assert_eq!(
        run(&g, &[], &[z])[0].to_vec::<f32>().unwrap(),
        vec![1.75, 2.25]
    );
}

#[test]
fn select_v2_broadcasts_all_three() {
    let mut g = Graph::new();
    let c = g.constant_from(&[2, 1], vec![true, false]).unwrap();
    let a = g.constant_from(&[3], vec![1i32, 2, 3]).unwrap();
    let b = g.constant_from(&[], vec![-1i32]).unwrap();
    let z = g
        .build("SelectV2")
        .input(c)
        .input(a)
        .input(b)
        .finish1()
        .unwrap();
    let out = &run(&g, &[], &[z])[0];
    assert_eq!(out.shape(), &[2, 3]);
    assert_eq!(out.to_vec::<i32>().unwrap(), vec![1, 2, 3, -1, -1, -1]);
}

/// TensorFlow's Select (V1): no broadcasting; a vector condition picks rows of `t` / `e`.
#[test]
fn select_v1_picks_rows_with_a_vector_condition() {
    let mut g = Graph::new();
    let t2 = g
        .constant_from(&[3, 2], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    let e2 = g
        .constant_from(&[3, 2], vec![-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0])
        .unwrap();
    let rows = g.constant_from(&[3], vec![true, false, true]).unwrap();
    let full = g
        .constant_from(&[3, 2], vec![true, false, false, true, true, false])
        .unwrap();
    let scalar = g.scalar(false).unwrap();
    let mut fetch = Vec::new();
    for c in [rows, full, scalar] {
        fetch.push(
            g.build("Select")
                .input(c)
                .input(t2)
                .input(e2)
                .finish1()
                .unwrap(),
        );
    }
    assert_eq!(g.shape(fetch[0]), &Shape::known(&[3, 2]));
    let out = run(&g, &[], &fetch);
    assert_eq!(
        out[0].to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, -3.0, -4.0, 5.0, 6.0]
    );
    assert_eq!(
        out[1].to_vec::<f32>().unwrap(),
        vec![1.0, -2.0, -3.0, 4.0, 5.0, -6.0]
    );
    assert_eq!(
        out[2].to_vec::<f32>().unwrap(),
        vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    );
    // The same vector condition in SelectV2 broadcasts along the last dim instead: a [3]
    // condition against [3, 2] is a shape error there.
    assert!(g
        .build("SelectV2")
        .input(rows)
        .input(t2)
        .input(e2)
        .finish1()
        .is_err());
    // V1 does not broadcast 'then' against 'else', nor a condition of another shape.
    let row = g.constant_from(&[2], vec![0.0f32, 0.0]).unwrap();
    let e = g
        .build("Select")
        .name("sel")
        .input(rows)
        .input(t2)
        .input(row)
        .finish1();
    assert!(e.unwrap_err().to_string().contains("sel"));
    let c2 = g.constant_from(&[2], vec![true, false]).unwrap();
    let e = g
        .build("Select")
        .name("sel2")
        .input(c2)
        .input(t2)
        .input(e2)
        .finish1();
    assert!(e.unwrap_err().to_string().contains("sel2"));
    // Shapes known only at run time: the kernel checks and names the node.
    let c = ph(&mut g, "c", DType::Bool);
    let tp = ph(&mut g, "tp", DType::F32);
    let s = g
        .build("Select")
        .name("sel3")
        .input(c)
        .input(tp)
        .input(tp)
        .finish1()
        .unwrap();
    let err = session(&g)
        .run(
            &[
                (c, t(&[2], vec![true, false])),
                (tp, t(&[3, 2], vec![0.0f32; 6])),
            ],
            &[s],
            &[],
        )
        .unwrap_err();
    assert_eq!(kernel_node(err).0, "sel3");
}

#[test]
fn concat_v2_takes_the_axis_last() {
    let mut g = Graph::new();
    let a = g.constant_from(&[2, 1], vec![1i64, 2]).unwrap();
    let b = g.constant_from(&[2, 2], vec![3i64, 4, 5, 6]).unwrap();
    let axis = g.scalar(-1i32).unwrap();
    let z = g
        .build("ConcatV2")
        .input(a)
        .input(b)
        .input(axis)
        .finish1()
        .unwrap();
    let out = &run(&g, &[], &[z])[0];
    assert_eq!(out.shape(), &[2, 3]);
    assert_eq!(out.to_vec::<i64>().unwrap(), vec![1, 3, 4, 2, 5, 6]);
}

fn gather_v2(
    params: Tensor,
    indices: Tensor,
    axis: i32,
    batch_dims: i64,
) -> Result<Tensor, String> {
    let mut g = Graph::new();
    let p = ph(&mut g, "p", params.dtype());
    let i = ph(&mut g, "i", indices.dtype());
    let a = g.scalar(axis).unwrap();
    let y = g
        .build("GatherV2")
        .name("gather")
        .input(p)
        .input(i)
        .input(a)
        .attr("batch_dims", batch_dims)
        .finish1()
        .map_err(|e| e.to_string())?;
    session(&g)
        .run(&[(p, params), (i, indices)], &[y], &[])
        .map(|mut v| v.remove(0))
        .map_err(|e| e.to_string())
}

#[test]
fn gather_v2_with_batch_dims() {
    // params[b, i, k] = 6 b + 2 i + k; indices [[2, 0], [1, 1]].
    let params = iota_f(&[2, 3, 2]);
    let idx = t(&[2, 2], vec![2i32, 0, 1, 1]);
    // out[b, j, k] = params[b, idx[b, j], k]
    let y = gather_v2(params.clone(), idx.clone(), 1, 1).unwrap();
    assert_eq!(y.shape(), &[2, 2, 2]);
    assert_eq!(y.to_f64_vec(), vec![4.0, 5.0, 0.0, 1.0, 8.0, 9.0, 8.0, 9.0]);
    // batch_dims = -1 counts from the indices' rank: the same.
    assert_eq!(gather_v2(params.clone(), idx.clone(), 1, -1).unwrap(), y);
    // Along axis 2: out[b, i, j] = params[b, i, idx2[b, j]] with idx2 = [[1], [0]].
    let idx2 = t(&[2, 1], vec![1i64, 0]);
    let y = gather_v2(params.clone(), idx2, 2, 1).unwrap();
    assert_eq!(y.shape(), &[2, 3, 1]);
    assert_eq!(y.to_f64_vec(), vec![1.0, 3.0, 5.0, 6.0, 8.0, 10.0]);
    // batch_dims = 0 is ordinary Gather.
    let y = gather_v2(params.clone(), t(&[1], vec![2i32]), 1, 0).unwrap();
    assert_eq!(y.to_f64_vec(), vec![4.0, 5.0, 10.0, 11.0]);
    // Errors name the node: axis below batch_dims, batch dims that differ, an index out of range.
    let e = gather_v2(params.clone(), idx.clone(), 0, 1).unwrap_err();
    assert!(e.contains("gather") && e.contains("batch_dims"), "{e}");
    let e = gather_v2(params.clone(), t(&[3, 1], vec![0i32, 0, 0]), 1, 1).unwrap_err();
    assert!(e.contains("gather") && e.contains("must match"), "{e}");
    let e = gather_v2(params, t(&[2, 1], vec![0i32, 3]), 1, 1).unwrap_err();
    assert!(e.contains("gather") && e.contains("not in [0, 3)"), "{e}");
}

/// `x @ y` over the last two dims with broadcast batch dims (plain loops).
fn ref_batch_matmul(
    x: &[f64],
    xs: &[usize],
    y: &[f64],
    ys: &[usize],
    adj_x: bool,
    adj_y: bool,
) -> (Vec<usize>, Vec<f64>) {
    let (xr, yr) = (xs.len(), ys.len());
    let (m, k) = if adj_x {
        (xs[xr - 1], xs[xr - 2])
    } else {
        (xs[xr - 2], xs[xr - 1])
    };
    let n = if adj_y { ys[yr - 2] } else { ys[yr - 1] };
    let (xb, yb) = (&xs[..xr - 2], &ys[..yr - 2]);
    let rank = xb.len().max(yb.len());
    let pad = |b: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - b.len()];
        v.extend_from_slice(b);
        v
    };
    let (xb, yb) = (pad(xb), pad(yb));
    let ob: Vec<usize> = xb.iter().zip(&yb).map(|(a, b)| *a.max(b)).collect();
    let nb: usize = ob.iter().product();
    let mut out = Vec::new();
    for flat in 0..nb {
        let (mut rest, mut xo, mut yo, mut xstride, mut ystride) = (flat, 0, 0, 1, 1);
        for d in (0..rank).rev() {
            let i = rest % ob[d];
            rest /= ob[d];
            xo += if xb[d] == 1 { 0 } else { i * xstride };
            yo += if yb[d] == 1 { 0 } else { i * ystride };
            xstride *= xb[d];
            ystride *= yb[d];
        }
        let xm = &x[xo * m * k..(xo + 1) * m * k];
        let ym = &y[yo * k * n..(yo + 1) * k * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let a = if adj_x { xm[l * m + i] } else { xm[i * k + l] };
                    let b = if adj_y { ym[j * k + l] } else { ym[l * n + j] };
                    s += a * b;
                }
                out.push(s);
            }
        }
    }
    let mut shape = ob;
    shape.extend([m, n]);
    (shape, out)
}

#[test]
fn batch_matmul_v2_broadcasts_batch_dims_with_adjoints() {
    for (xs, ys, adj_x, adj_y) in [
        (vec![2, 1, 2, 3], vec![3, 3, 4], false, false),
        (vec![2, 1, 3, 2], vec![3, 3, 4], true, false),
        (vec![1, 2, 3], vec![2, 2, 4, 3], false, true),
        (vec![3, 2], vec![2, 4, 3], true, true),
    ] {
        let nx: usize = xs.iter().product();
        let ny: usize = ys.iter().product();
        let xv = random(nx, 1);
        let yv = random(ny, 2);
        let mut g = Graph::new();
        let x = g.constant_from(&xs, xv.clone()).unwrap();
        let y = g.constant_from(&ys, yv.clone()).unwrap();
        let z = g
            .build("BatchMatMulV2")
            .input(x)
            .input(y)
            .attr("adj_x", adj_x)
            .attr("adj_y", adj_y)
            .finish1()
            .unwrap();
        let out = &run(&g, &[], &[z])[0];
        let (shape, want) = ref_batch_matmul(&xv, &xs, &yv, &ys, adj_x, adj_y);
        assert_eq!(out.shape(), shape.as_slice(), "{xs:?} {ys:?}");
        assert_close(&out.to_f64_vec(), &want, 1e-12, "BatchMatMulV2");
    }
    // Batch dims that do not broadcast: a graph error naming the node.
    let mut g = Graph::new();
    let x = g.constant_from(&[2, 2, 2], vec![0f32; 8]).unwrap();
    let y = g.constant_from(&[3, 2, 2], vec![0f32; 12]).unwrap();
    let e = g
        .build("BatchMatMulV2")
        .name("bmm")
        .input(x)
        .input(y)
        .finish1()
        .unwrap_err();
    assert!(e.to_string().contains("bmm"), "{e}");
}

#[test]
fn reverse_v2_and_mod() {
    let mut g = Graph::new();
    let x = g.constant_from(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
    let axis = g.constant_from(&[1], vec![1i32]).unwrap();
    let r = g.build("ReverseV2").input(x).input(axis).finish1().unwrap();
    // Mod: C's remainder, the sign follows x (TF's Mod = TruncateMod); fmod for floats.
    let a = g.constant_from(&[4], vec![-7i32, 7, -7, 7]).unwrap();
    let b = g.constant_from(&[4], vec![3i32, -3, -3, 3]).unwrap();
    let m = g.build("Mod").input(a).input(b).finish1().unwrap();
    let fa = g.constant_from(&[2], vec![-7.5f64, 7.5]).unwrap();
    let fb = g.constant_from(&[2], vec![2.0f64, -2.0]).unwrap();
    let fm = g.build("Mod").input(fa).input(fb).finish1().unwrap();
    let out = run(&g, &[], &[r, m, fm]);
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![3, 2, 1, 6, 5, 4]);
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![-1, 1, -1, 1]);
    assert_eq!(out[2].to_vec::<f64>().unwrap(), vec![-1.5, 1.5]);
}

/// TF's `Div` on integers truncates toward zero (safe_div, tensorflow/core/kernels/
/// cwise_op_div.cc) and fails on a zero divisor; `RealDiv` is float-only.
#[test]
fn div_truncates_integers_and_real_div_is_float_only() {
    let mut g = Graph::new();
    let a = ph(&mut g, "a", DType::I32);
    let b = ph(&mut g, "b", DType::I32);
    let q = g
        .build("Div")
        .name("idiv")
        .input(a)
        .input(b)
        .finish1()
        .unwrap();
    let s = session(&g);
    let out = s
        .run(
            &[
                (a, t(&[4], vec![-7i32, 7, -7, 7])),
                (b, t(&[4], vec![2i32, -2, -2, 2])),
            ],
            &[q],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![-3, -3, 3, 3]);
    let e = s
        .run(
            &[(a, t(&[1], vec![1i32])), (b, t(&[1], vec![0i32]))],
            &[q],
            &[],
        )
        .unwrap_err();
    let (node, message) = kernel_node(e);
    assert_eq!(node, "idiv");
    assert!(message.contains("division by zero"), "{message}");
    let e = g
        .build("RealDiv")
        .name("rd")
        .input(a)
        .input(b)
        .finish1()
        .unwrap_err();
    assert!(
        matches!(&e, GraphError::InvalidNode { node, .. } if node == "rd"),
        "{e}"
    );
    // Float Div and RealDiv agree.
    let x = g.constant_from(&[2], vec![-7.0f32, 1.0]).unwrap();
    let y = g.constant_from(&[2], vec![2.0f32, 3.0]).unwrap();
    let d = g.div(x, y).unwrap();
    let rd = g.real_div(x, y).unwrap();
    let out = run(&g, &[], &[d, rd]);
    assert_eq!(out[0], out[1]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), vec![-3.5, 1.0 / 3.0]);
}

#[test]
fn pad_has_no_value_input_and_pad_v2_takes_one() {
    let mut g = Graph::new();
    let x = g.constant_from(&[2, 2], vec![1i32, 2, 3, 4]).unwrap();
    let p = g.constant_from(&[2, 2], vec![1i32, 0, 0, 2]).unwrap();
    let v = g.scalar(9i32).unwrap();
    let pad = g.build("Pad").input(x).input(p).finish1().unwrap();
    let pad2 = g
        .build("PadV2")
        .input(x)
        .input(p)
        .input(v)
        .finish1()
        .unwrap();
    assert_eq!(g.shape(pad), &Shape::known(&[3, 4]));
    let out = run(&g, &[], &[pad, pad2]);
    assert_eq!(
        out[0].to_vec::<i32>().unwrap(),
        vec![0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0]
    );
    assert_eq!(
        out[1].to_vec::<i32>().unwrap(),
        vec![9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9]
    );
    // Pad with a value, PadV2 without one: arity errors naming the node.
    let e = g
        .build("Pad")
        .name("p3")
        .input(x)
        .input(p)
        .input(v)
        .finish1()
        .unwrap_err();
    assert!(
        e.to_string().contains("p3") && e.to_string().contains("expects 2 inputs"),
        "{e}"
    );
    let e = g
        .build("PadV2")
        .name("p2")
        .input(x)
        .input(p)
        .finish1()
        .unwrap_err();
    assert!(e.to_string().contains("p2"), "{e}");
    // Negative paddings at run time name the node.
    let xp = ph(&mut g, "xp", DType::F32);
    let pp = ph(&mut g, "pp", DType::I32);
    let y = g
        .build("Pad")
        .name("padneg")
        .input(xp)
        .input(pp)
        .finish1()
        .unwrap();
    let e = session(&g)
        .run(
            &[
                (xp, t(&[1], vec![1.0f32])),
                (pp, t(&[1, 2], vec![-1i32, 0])),
            ],
            &[y],
            &[],
        )
        .unwrap_err();
    assert_eq!(kernel_node(e).0, "padneg");
}

#[test]
fn arg_max_and_min_honour_output_type() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 4], vec![1.0f32, 5.0, 5.0, -2.0, 0.0, -3.0, 7.0, -3.0])
        .unwrap();
    let axis = g.scalar(1i32).unwrap();
    let mut fetch = Vec::new();
    for op in ["ArgMax", "ArgMin"] {
        for out_type in [DType::I32, DType::I64] {
            let y = g
                .build(op)
                .input(x)
                .input(axis)
                .attr("output_type", out_type)
                .finish1()
                .unwrap();
            assert_eq!(g.dtype(y), out_type);
            fetch.push(y);
        }
    }
    // Default output_type is int64.
    let d = g.build("ArgMax").input(x).input(axis).finish1().unwrap();
    assert_eq!(g.dtype(d), DType::I64);
    let out = run(&g, &[], &fetch);
    // Ties go to the smallest index.
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![1, 2]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), vec![1, 2]);
    assert_eq!(out[2].to_vec::<i32>().unwrap(), vec![3, 1]);
    assert_eq!(out[3].to_vec::<i64>().unwrap(), vec![3, 1]);
    let e = g
        .build("ArgMax")
        .name("am")
        .input(x)
        .input(axis)
        .attr("output_type", DType::F32)
        .finish1();
    let message = match e {
        Err(e) => e.to_string(),
        Ok(y) => session(&g).run(&[], &[y], &[]).unwrap_err().to_string(),
    };
    assert!(
        message.contains("am") && message.contains("output_type"),
        "{message}"
    );
}

#[test]
fn strided_slice_errors_name_the_node() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    let masks = StridedSliceMasks {
        shrink_axis: 1,
        ..StridedSliceMasks::default()
    };
    // x[5] of a length-3 vector.
    let y = g.strided_slice(x, &[5], &[6], &[1], masks).unwrap();
    let name = g.node(y.node).name.clone();
    let e = session(&g)
        .run(&[(x, t(&[3], vec![1.0f32, 2.0, 3.0]))], &[y], &[])
        .unwrap_err();
    assert_eq!(kernel_node(e).0, name);
    // A zero stride: the input's shape is unknown when the graph is built, so the step fails.
    let z = g
        .strided_slice(x, &[0], &[2], &[0], StridedSliceMasks::default())
        .unwrap();
    let name = g.node(z.node).name.clone();
    let e = session(&g)
        .run(&[(x, t(&[3], vec![1.0f32, 2.0, 3.0]))], &[z], &[])
        .unwrap_err();
    let (node, message) = kernel_node(e);
    assert_eq!(node, name);
    assert!(message.contains("stride"), "{message}");
    // Two ellipses.
    let two = StridedSliceMasks {
        ellipsis: 0b11,
        ..StridedSliceMasks::default()
    };
    let c = g.constant_from(&[2, 2], vec![0f32; 4]).unwrap();
    let e = g
        .strided_slice(c, &[0, 0], &[0, 0], &[1, 1], two)
        .unwrap_err();
    assert!(e.to_string().contains("ellipsis"), "{e}");
}

/// StridedSliceGrad with every mask: dy lands where x[..., newaxis, 1, ::-2] took its values.
#[test]
fn strided_slice_grad_with_all_masks() {
    let mut g = Graph::new();
    // x of shape [2, 3, 4]; x[..., newaxis, 1, ::-2] has shape [2, 1, 2] (k = 3, 1).
    let shape = g.constant_from(&[3], vec![2i32, 3, 4]).unwrap();
    let begin = g.constant_from(&[4], vec![0i32, 0, 1, 0]).unwrap();
    let end = g.constant_from(&[4], vec![0i32, 0, 2, 0]).unwrap();
    let strides = g.constant_from(&[4], vec![1i32, 1, 1, -2]).unwrap();
    let dy = g
        .constant_from(&[2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0])
        .unwrap();
    let dx = g
        .build("StridedSliceGrad")
        .input(shape)
        .input(begin)
        .input(end)
        .input(strides)
        .input(dy)
        .attr("begin_mask", 0b1000i64)
        .attr("end_mask", 0b1000i64)
        .attr("ellipsis_mask", 0b0001i64)
        .attr("new_axis_mask", 0b0010i64)
        .attr("shrink_axis_mask", 0b0100i64)
        .finish1()
        .unwrap();
    let out = &run(&g, &[], &[dx])[0];
    assert_eq!(out.shape(), &[2, 3, 4]);
    let mut want = vec![0.0f32; 24];
    // dy[b, 0, 0] -> x[b, 1, 3]; dy[b, 0, 1] -> x[b, 1, 1]
    want[4 + 3] = 1.0;
    want[4 + 1] = 2.0;
    want[12 + 4 + 3] = 3.0;
    want[12 + 4 + 1] = 4.0;
    assert_eq!(out.to_vec::<f32>().unwrap(), want);
}

/// A stored graph naming a TensorFlow alias loads as the tfr op and runs.
#[test]
fn loaded_graphs_resolve_aliases() {
    let mut g = Graph::new();
    let x = g.constant_from(&[2], vec![1i32, 2]).unwrap();
    let y = g.constant_from(&[2], vec![10i32, 20]).unwrap();
    let z = g.add(x, y).unwrap();
    let name = g.node(z.node).name.clone();
    let json = g.to_json().replace("\"op\": \"Add\"", "\"op\": \"AddV2\"");
    assert!(json.contains("AddV2"), "{json}");
    let loaded = Graph::from_json(&json).unwrap();
    let id = loaded.find(&name).unwrap();
    assert_eq!(loaded.node(id).op, "Add");
    let out = run(&loaded, &[], &[Output::new(id, 0)]);
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![11, 22]);
}

/// TensorFlow's inferred attributes (`T`, `Tidx`, `Tparams`, `N`, ...) are accepted when they
/// agree with the node, and errors naming the node when they do not.
#[test]
fn tensorflow_type_attributes_are_checked_not_rejected() {
    let mut g = Graph::new();
    let x = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let y = g.constant_from(&[2], vec![3.0f32, 4.0]).unwrap();
    let axis = g.scalar(0i32).unwrap();
    let z = g
        .build("AddV2")
        .input(x)
        .input(y)
        .attr("T", DType::F32)
        .finish1()
        .unwrap();
    let c = g
        .build("ConcatV2")
        .input(x)
        .input(y)
        .input(axis)
        .attr("N", 2i64)
        .attr("T", DType::F32)
        .attr("Tidx", DType::I32)
        .finish1()
        .unwrap();
    let idx = g.constant_from(&[1], vec![1i64]).unwrap();
    let gv = g
        .build("GatherV2")
        .input(x)
        .input(idx)
        .input(axis)
        .attr("Tparams", DType::F32)
        .attr("Tindices", DType::I64)
        .attr("Taxis", DType::I32)
        .finish1()
        .unwrap();
    let out = run(&g, &[], &[z, c, gv]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![4.0, 6.0]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(out[2].to_vec::<f32>().unwrap(), vec![2.0]);
    // A type attribute that names no dtype of the node, a wrong N, an unknown attribute.
    let e = g
        .build("AddV2")
        .name("wrong_t")
        .input(x)
        .input(y)
        .attr("T", DType::F64)
        .finish1()
        .unwrap_err();
    assert!(
        e.to_string().contains("wrong_t") && e.to_string().contains("`T`"),
        "{e}"
    );
    let e = g
        .build("ConcatV2")
        .name("wrong_n")
        .input(x)
        .input(y)
        .input(axis)
        .attr("N", 3i64)
        .finish1()
        .unwrap_err();
    assert!(
        e.to_string().contains("wrong_n") && e.to_string().contains("`N`"),
        "{e}"
    );
    let e = g
        .build("AddV2")
        .name("n_without_list")
        .input(x)
        .input(y)
        .attr("N", 2i64)
        .finish1()
        .unwrap_err();
    assert!(e.to_string().contains("n_without_list"), "{e}");
    let e = g
        .build("AddV2")
        .name("unknown")
        .input(x)
        .input(y)
        .attr("bogus", 1i64)
        .finish1()
        .unwrap_err();
    assert!(e.to_string().contains("unknown attribute `bogus`"), "{e}");
}
