//! Cumsum, Cumprod, TopKV2, Where, InTopKV2 (values worked out by hand from TensorFlow's
//! documented semantics, noted beside each case) and the run-time checks CheckNumerics, Assert
//! and Print, including every error path.

use tfr_core::{Error, Tensor};
use tfr_graph::{gradients, DType, Graph, GraphError, Output, Shape};

use crate::common;
use common::*;

fn ph(g: &mut Graph, name: &str, dtype: DType) -> Output {
    g.placeholder(name, dtype, Shape::unknown()).unwrap()
}

fn kernel_error(e: Error) -> (String, String) {
    match e {
        Error::Kernel { node, message, .. } => (node, message),
        other => panic!("expected a kernel error, got {other}"),
    }
}

fn scan(op: &str, x: Tensor, axis: i32, exclusive: bool, reverse: bool) -> Result<Tensor, Error> {
    let mut g = Graph::new();
    let p = ph(&mut g, "x", x.dtype());
    let a = ph(&mut g, "axis", DType::I32);
    let y = g
        .build(op)
        .name("scan")
        .input(p)
        .input(a)
        .attr("exclusive", exclusive)
        .attr("reverse", reverse)
        .finish1()
        .unwrap();
    session(&g)
        .run(&[(p, x), (a, Tensor::scalar(axis))], &[y], &[])
        .map(|mut v| v.remove(0))
}

#[test]
fn cumsum_and_cumprod_with_exclusive_and_reverse() {
    // x = [[1, 2, 3], [4, 5, 6]]
    let x = t(&[2, 3], vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // (exclusive, reverse, cumsum along axis 1, cumprod along axis 1)
    let cases = [
        (
            false,
            false,
            [1.0, 3.0, 6.0, 4.0, 9.0, 15.0],
            [1.0, 2.0, 6.0, 4.0, 20.0, 120.0],
        ),
        (
            true,
            false,
            [0.0, 1.0, 3.0, 0.0, 4.0, 9.0],
            [1.0, 1.0, 2.0, 1.0, 4.0, 20.0],
        ),
        (
            false,
            true,
            [6.0, 5.0, 3.0, 15.0, 11.0, 6.0],
            [6.0, 6.0, 3.0, 120.0, 30.0, 6.0],
        ),
        (
            true,
            true,
            [5.0, 3.0, 0.0, 11.0, 6.0, 0.0],
            [6.0, 3.0, 1.0, 30.0, 6.0, 1.0],
        ),
    ];
    for (exclusive, reverse, sum, prod) in cases {
        for axis in [1, -1] {
            let s = scan("Cumsum", x.clone(), axis, exclusive, reverse).unwrap();
            assert_eq!(s.to_f64_vec(), sum, "cumsum {exclusive} {reverse}");
            let p = scan("Cumprod", x.clone(), axis, exclusive, reverse).unwrap();
            assert_eq!(p.to_f64_vec(), prod, "cumprod {exclusive} {reverse}");
        }
    }
    // Along axis 0, in int32 and f32.
    let xi = t(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]);
    let s = scan("Cumsum", xi.clone(), 0, false, false).unwrap();
    assert_eq!(s.to_vec::<i32>().unwrap(), vec![1, 2, 3, 5, 7, 9]);
    let p = scan("Cumprod", xi, 0, true, false).unwrap();
    assert_eq!(p.to_vec::<i32>().unwrap(), vec![1, 1, 1, 1, 2, 3]);
    let xf = t(&[3], vec![0.5f32, 0.25, 2.0]);
    let s = scan("Cumsum", xf, 0, false, true).unwrap();
    assert_eq!(s.to_vec::<f32>().unwrap(), vec![2.75, 2.25, 2.0]);
}

#[test]
fn scan_errors_name_the_node() {
    let x = t(&[2, 3], vec![1.0f32; 6]);
    let (node, message) = kernel_error(scan("Cumsum", x.clone(), 2, false, false).unwrap_err());
    assert_eq!(node, "scan");
    assert!(message.contains("axis 2 is out of range"), "{message}");
    let (node, _) =
        kernel_error(scan("Cumprod", Tensor::scalar(1.0f32), 0, false, false).unwrap_err());
    assert_eq!(node, "scan");
    // A constant axis is checked when the graph is built.
    let mut g = Graph::new();
    let c = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let e = g.cumsum(c, 1, false, false).unwrap_err();
    assert!(matches!(e, GraphError::InvalidNode { .. }), "{e}");
    // Bool input is a dtype error.
    let b = g.constant_from(&[2], vec![true, false]).unwrap();
    let e = g.cumsum(b, 0, false, false).unwrap_err();
    assert!(e.to_string().contains("bool"), "{e}");
}

fn top_k(x: Tensor, k: i32, sorted: bool) -> Result<(Tensor, Tensor), Error> {
    let mut g = Graph::new();
    let p = ph(&mut g, "x", x.dtype());
    let kk = ph(&mut g, "k", DType::I32);
    let n = g
        .build("TopKV2")
        .name("topk")
        .input(p)
        .input(kk)
        .attr("sorted", sorted)
        .finish()
        .unwrap();
    let out = session(&g).run(
        &[(p, x), (kk, Tensor::scalar(k))],
        &[Output::new(n, 0), Output::new(n, 1)],
        &[],
    )?;
    Ok((out[0].clone(), out[1].clone()))
}

#[test]
fn top_k_sorts_and_breaks_ties_by_lower_index() {
    let x = t(
        &[2, 5],
        vec![1.0f32, 3.0, 3.0, 2.0, 5.0, 0.0, -1.0, 7.0, 7.0, 7.0],
    );
    let (v, i) = top_k(x.clone(), 3, true).unwrap();
    assert_eq!(v.shape(), &[2, 3]);
    assert_eq!(
        v.to_vec::<f32>().unwrap(),
        vec![5.0, 3.0, 3.0, 7.0, 7.0, 7.0]
    );
    assert_eq!(i.dtype(), DType::I32);
    assert_eq!(i.to_vec::<i32>().unwrap(), vec![4, 1, 2, 2, 3, 4]);
    let (v, i) = top_k(x.clone(), 5, false).unwrap();
    assert_eq!(
        v.to_vec::<f32>().unwrap(),
        vec![5.0, 3.0, 3.0, 2.0, 1.0, 7.0, 7.0, 7.0, 0.0, -1.0]
    );
    assert_eq!(
        i.to_vec::<i32>().unwrap(),
        vec![4, 1, 2, 3, 0, 2, 3, 4, 0, 1]
    );
    let (v, i) = top_k(x, 0, true).unwrap();
    assert_eq!((v.shape(), i.shape()), (&[2usize, 0][..], &[2usize, 0][..]));
    // Integers, 1-D.
    let (v, i) = top_k(t(&[4], vec![3i64, -2, 9, 3]), 2, true).unwrap();
    assert_eq!(v.to_vec::<i64>().unwrap(), vec![9, 3]);
    assert_eq!(i.to_vec::<i32>().unwrap(), vec![2, 0]);
    // Static shape: the last dim becomes k.
    let mut g = Graph::new();
    let c = g.constant_from(&[3, 4], vec![0f64; 12]).unwrap();
    let (v, i) = g.top_k(c, 2, true).unwrap();
    assert_eq!(g.shape(v), &Shape::known(&[3, 2]));
    assert_eq!(g.dtype(i), DType::I32);
}

#[test]
fn top_k_errors_name_the_node() {
    let x = t(&[2, 3], vec![1.0f32; 6]);
    let (node, message) = kernel_error(top_k(x.clone(), 4, true).unwrap_err());
    assert_eq!(node, "topk");
    assert!(message.contains("at least k columns"), "{message}");
    let (node, message) = kernel_error(top_k(x, -1, true).unwrap_err());
    assert_eq!(node, "topk");
    assert!(message.contains("non-negative"), "{message}");
    let (node, message) = kernel_error(top_k(Tensor::scalar(1.0f32), 1, true).unwrap_err());
    assert_eq!(node, "topk");
    assert!(message.contains("1-D"), "{message}");
    // Constant k beyond the static last dim: a graph error.
    let mut g = Graph::new();
    let c = g.constant_from(&[2, 3], vec![0f32; 6]).unwrap();
    let e = g.top_k(c, 4, true).unwrap_err();
    assert!(e.to_string().contains("at least k = 4 columns"), "{e}");
    let b = g.constant_from(&[2], vec![true, false]).unwrap();
    assert!(g.top_k(b, 1, true).is_err());
}

#[test]
fn where_returns_int64_coordinates() {
    let mut g = Graph::new();
    let b = g
        .constant_from(&[2, 3], vec![true, false, true, false, false, true])
        .unwrap();
    let w = g.where_(b).unwrap();
    assert_eq!(g.dtype(w), DType::I64);
    assert_eq!(g.shape(w).rank(), Some(2));
    let f = ph(&mut g, "f", DType::F32);
    let wf = g.where_(f).unwrap();
    let s = session(&g);
    let out = s
        .run(&[(f, t(&[4], vec![0.0f32, -2.0, 0.0, 0.5]))], &[w, wf], &[])
        .unwrap();
    assert_eq!(out[0].shape(), &[3, 2]);
    assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![0, 0, 0, 2, 1, 2]);
    assert_eq!(out[1].shape(), &[2, 1]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), vec![1, 3]);
    // Nothing true: [0, rank]; a true scalar: [1, 0].
    let out = s
        .run(&[(f, t(&[2, 2], vec![0.0f32; 4]))], &[wf], &[])
        .unwrap();
    assert_eq!(out[0].shape(), &[0, 2]);
    let out = s.run(&[(f, Tensor::scalar(3.0f32))], &[wf], &[]).unwrap();
    assert_eq!(out[0].shape(), &[1, 0]);
}

#[test]
fn in_top_k_counts_ties_as_in() {
    let mut g = Graph::new();
    let p = ph(&mut g, "p", DType::F32);
    let tg = ph(&mut g, "t", DType::I32);
    let k = ph(&mut g, "k", DType::I32);
    let y = g
        .build("InTopKV2")
        .name("intopk")
        .input(p)
        .input(tg)
        .input(k)
        .finish1()
        .unwrap();
    let preds = t(
        &[4, 4],
        vec![
            0.1f32,
            0.3,
            0.3,
            0.2, // target 2 ties the maximum: in the top 1
            0.5,
            0.1,
            0.2,
            0.2, // target 3: one class above, out of the top 1
            0.1,
            f32::NAN,
            0.3,
            0.2, // a NaN in the row: false
            0.1,
            0.2,
            0.3,
            0.4, // target 7 out of range: false
        ],
    );
    let s = session(&g);
    let targets = t(&[4], vec![2i32, 3, 2, 7]);
    let out = s
        .run(
            &[
                (p, preds.clone()),
                (tg, targets.clone()),
                (k, Tensor::scalar(1i32)),
            ],
            &[y],
            &[],
        )
        .unwrap();
    assert_eq!(
        out[0].to_vec::<bool>().unwrap(),
        vec![true, false, false, false]
    );
    let out = s
        .run(
            &[
                (p, preds.clone()),
                (tg, targets.clone()),
                (k, Tensor::scalar(2i32)),
            ],
            &[y],
            &[],
        )
        .unwrap();
    assert_eq!(
        out[0].to_vec::<bool>().unwrap(),
        vec![true, true, false, false]
    );
    // Targets not matching the rows: an error naming the node.
    let e = s
        .run(
            &[
                (p, preds),
                (tg, t(&[2], vec![0i32, 1])),
                (k, Tensor::scalar(1i32)),
            ],
            &[y],
            &[],
        )
        .unwrap_err();
    assert_eq!(kernel_error(e).0, "intopk");
    // int64 targets need an int64 k.
    let t64 = ph(&mut g, "t64", DType::I64);
    let e = g
        .build("InTopKV2")
        .name("mixed")
        .input(p)
        .input(t64)
        .input(k)
        .finish1();
    assert!(e.unwrap_err().to_string().contains("mixed"));
}

#[test]
fn check_numerics_fails_the_step_naming_node_and_message() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32);
    let y = g
        .build("CheckNumerics")
        .name("check_logits")
        .input(x)
        .attr("message", "logits are bad")
        .finish1()
        .unwrap();
    let s = session(&g);
    let ok = s
        .run(&[(x, t(&[2], vec![1.0f32, -2.0]))], &[y], &[])
        .unwrap();
    assert_eq!(ok[0].to_vec::<f32>().unwrap(), vec![1.0, -2.0]);
    for (vals, what) in [
        (vec![1.0f32, f32::NAN], "Tensor had NaN values"),
        (vec![f32::INFINITY, 0.0], "Tensor had Inf values"),
        (
            vec![f32::NEG_INFINITY, f32::NAN],
            "Tensor had Inf and NaN values",
        ),
    ] {
        let e = s.run(&[(x, t(&[2], vals))], &[y], &[]).unwrap_err();
        let text = e.to_string();
        let (node, message) = kernel_error(e);
        assert_eq!(node, "check_logits");
        assert!(
            message.contains("logits are bad") && message.contains(what),
            "{message}"
        );
        assert!(
            text.contains("check_logits") && text.contains("CheckNumerics"),
            "{text}"
        );
    }
    // Integer input: a graph error.
    let i = g.constant_from(&[1], vec![1i32]).unwrap();
    let e = g.check_numerics(i, "m").unwrap_err();
    assert!(e.to_string().contains("int32"), "{e}");
}

#[test]
fn check_numerics_and_print_pass_gradients_through() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3])).unwrap();
    let c = g.check_numerics(x, "x").unwrap();
    let extra = g.constant_from(&[2], vec![7i32, 8]).unwrap();
    let p = g.print(c, &[x, extra], "x = ").unwrap();
    let two = g.scalar(2.0f64).unwrap();
    let y = g.mul(p, two).unwrap();
    let sum = g.reduce_sum(y, None, false).unwrap();
    let dx = gradients(&mut g, &[sum], &[x], None).unwrap()[0].unwrap();
    let out = run(&g, &[(x, t(&[3], vec![1.0f64, 2.0, 3.0]))], &[p, dx]);
    assert_eq!(out[0].to_vec::<f64>().unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(out[1].to_vec::<f64>().unwrap(), vec![2.0, 2.0, 2.0]);
}

#[test]
fn assert_fails_the_step_naming_the_node_and_printing_data() {
    let mut g = Graph::new();
    let c = ph(&mut g, "c", DType::Bool);
    let d = g.constant_from(&[5], vec![1i32, 2, 3, 4, 5]).unwrap();
    let f = g.constant_from(&[], vec![0.5f32]).unwrap();
    let a = g
        .build("Assert")
        .name("positive_check")
        .input(c)
        .input(d)
        .input(f)
        .finish()
        .unwrap();
    let s = session(&g);
    s.run(&[(c, Tensor::scalar(true))], &[], &[a]).unwrap();
    let e = s.run(&[(c, Tensor::scalar(false))], &[], &[a]).unwrap_err();
    let (node, message) = kernel_error(e);
    assert_eq!(node, "positive_check");
    // summarize = 3 elements per tensor by default.
    assert_eq!(message, "assertion failed: [1 2 3...] [0.5]");
    // A non-scalar condition.
    let e = s
        .run(&[(c, t(&[2], vec![true, true]))], &[], &[a])
        .unwrap_err();
    let (node, message) = kernel_error(e);
    assert_eq!(node, "positive_check");
    assert!(message.contains("scalar"), "{message}");
    // A non-bool condition is a graph error.
    let e = g.build("Assert").name("bad").input(f).finish().unwrap_err();
    assert!(e.to_string().contains("bad"), "{e}");
    // Assert has no gradient and is stateful (kept even though nothing reads it).
    let def = tfr_graph::registry().get("Assert").unwrap();
    assert!(def.stateful);
}

#[test]
fn print_returns_its_input_and_respects_first_n() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::I64);
    let y = g
        .build("Print")
        .input(x)
        .input(x)
        .attr("message", "value: ")
        .attr("first_n", 1i64)
        .attr("summarize", 2i64)
        .finish1()
        .unwrap();
    let s = session(&g);
    for _ in 0..3 {
        let out = s.run(&[(x, t(&[3], vec![4i64, 5, 6]))], &[y], &[]).unwrap();
        assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![4, 5, 6]);
    }
    assert_eq!(
        tfr_core::kernels::debug_ops::summarize_tensor(&t(&[3], vec![4i64, 5, 6]), 2),
        "[4 5...]"
    );
    assert_eq!(
        tfr_core::kernels::debug_ops::summarize_tensor(&t(&[2], vec![true, false]), -1),
        "[true false]"
    );
}
