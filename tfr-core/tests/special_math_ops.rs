//! Special-function, safe-division, activation and L2Loss kernels against reference values.
//!
//! Reference values were computed with mpmath 1.3.0 at 30 significant digits (`mp.tan`,
//! `mp.asin`, `mp.log(abs(mp.gamma(x)))`, `mp.digamma`, `mp.polygamma(n, x)`, `mp.erfc`,
//! `mp.atan2`, ...) and rounded to f64; elementary identities (0, 1, pi/4) are exact.

use tfr_core::{Error, Tensor};
use tfr_graph::{DType, Graph, GraphError, Output, Shape};

use crate::common;
use common::*;

fn feed(g: &mut Graph, name: &str, dtype: DType, xs: &[f64]) -> (Output, Tensor) {
    let p = g
        .placeholder(name, dtype, Shape::known(&[xs.len()]))
        .unwrap();
    let t = match dtype {
        DType::F32 => Tensor::new(&[xs.len()], xs.iter().map(|&v| v as f32).collect()),
        _ => Tensor::new(&[xs.len()], xs.to_vec()),
    };
    (p, t.unwrap())
}

/// `op(xs)` in `dtype`, as f64.
fn unary(op: &str, dtype: DType, xs: &[f64]) -> Vec<f64> {
    let mut g = Graph::new();
    let (x, t) = feed(&mut g, "x", dtype, xs);
    let y = g.build(op).input(x).finish1().unwrap();
    assert_eq!(g.dtype(y), dtype, "{op}");
    run(&g, &[(x, t)], &[y])[0].to_f64_vec()
}

/// `op(xs, ys)` in `dtype`, as f64.
fn binary(op: &str, dtype: DType, xs: &[f64], ys: &[f64]) -> Vec<f64> {
    let mut g = Graph::new();
    let (x, tx) = feed(&mut g, "x", dtype, xs);
    let (y, ty) = feed(&mut g, "y", dtype, ys);
    let z = g.build(op).input(x).input(y).finish1().unwrap();
    run(&g, &[(x, tx), (y, ty)], &[z])[0].to_f64_vec()
}

/// Checks `op` in f64 (tight) and f32 (single-precision tolerance).
fn check_unary(op: &str, xs: &[f64], want: &[f64]) {
    assert_close(
        &unary(op, DType::F64, xs),
        want,
        1e-13,
        &format!("{op} f64"),
    );
    assert_close(&unary(op, DType::F32, xs), want, 2e-5, &format!("{op} f32"));
}

fn check_binary(op: &str, xs: &[f64], ys: &[f64], want: &[f64]) {
    assert_close(
        &binary(op, DType::F64, xs, ys),
        want,
        1e-13,
        &format!("{op} f64"),
    );
    assert_close(
        &binary(op, DType::F32, xs, ys),
        want,
        2e-5,
        &format!("{op} f32"),
    );
}

#[test]
fn trigonometric_and_hyperbolic() {
    check_unary(
        "Tan",
        &[-1.2, -0.3, 0.0, 0.7, 1.5],
        &[
            -2.5721516221263188,
            -0.30933624960962325,
            0.0,
            0.8422883804630794,
            14.101419947171719,
        ],
    );
    let xs = [-0.9, -0.3, 0.0, 0.45, 0.99];
    check_unary(
        "Asin",
        &xs,
        &[
            -1.1197695149986342,
            -0.3046926540153975,
            0.0,
            0.4667653390472964,
            1.4292568534704693,
        ],
    );
    check_unary(
        "Acos",
        &xs,
        &[
            2.6905658417935308,
            1.8754889808102941,
            std::f64::consts::FRAC_PI_2,
            1.1040309877476002,
            0.1415394733244273,
        ],
    );
    check_unary(
        "Atan",
        &[-5.0, -0.3, 0.0, 0.7, 100.0],
        &[
            -1.373400766945016,
            -0.2914567944778671,
            0.0,
            0.6107259643892086,
            1.5607966601082315,
        ],
    );
    let hs = [-3.0, -0.3, 0.0, 0.7, 5.0];
    check_unary(
        "Sinh",
        &hs,
        &[
            -10.017874927409903,
            -0.3045202934471426,
            0.0,
            0.7585837018395335,
            74.20321057778875,
        ],
    );
    check_unary(
        "Cosh",
        &hs,
        &[
            10.067661995777765,
            1.0453385141288605,
            1.0,
            1.255169005630943,
            74.20994852478785,
        ],
    );
    check_unary(
        "Asinh",
        &[-3.0, -0.3, 0.0, 0.7, 50.0],
        &[
            -1.8184464592320668,
            -0.29567304756342244,
            0.0,
            0.6526665660823557,
            4.605270170991424,
        ],
    );
    check_unary(
        "Acosh",
        &[1.0, 1.5, 2.0, 10.0, 1e3],
        &[
            0.0,
            0.9624236501192069,
            1.3169578969248168,
            2.993222846126381,
            7.600902209541989,
        ],
    );
    check_unary(
        "Atanh",
        &[-0.9, -0.3, 0.0, 0.5, 0.99],
        &[
            -1.4722194895832204,
            -0.3095196042031117,
            0.0,
            0.5493061443340549,
            2.6466524123622457,
        ],
    );
    // Outside the domain: NaN; atanh(+-1) = +-inf.
    check_unary("Asin", &[1.5, -2.0], &[f64::NAN, f64::NAN]);
    check_unary("Acos", &[1.5], &[f64::NAN]);
    check_unary("Acosh", &[0.5], &[f64::NAN]);
    check_unary(
        "Atanh",
        &[1.0, -1.0, 2.0],
        &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN],
    );
}

#[test]
fn gamma_family_and_erfc() {
    let xs = [0.5, 1.0, 2.5, 10.0, -0.5, -2.5, 1e-3, 30.0];
    check_unary(
        "Lgamma",
        &xs,
        &[
            0.5723649429247001,
            0.0,
            0.2846828704729192,
            12.801827480081469,
            1.2655121234846454,
            -0.056243716497674054,
            6.907178885383853,
            71.25703896716801,
        ],
    );
    // log|Gamma| has poles at 0, -1, -2, ...
    check_unary("Lgamma", &[0.0, -1.0, -3.0], &[f64::INFINITY; 3]);
    let want = [
        -1.9635100260214235,
        -0.5772156649015329,
        0.7031566406452432,
        2.251752589066721,
        0.03648997397857652,
        1.103156640645243,
        -1000.5755719318103,
        3.384438132685525,
    ];
    assert_close(
        &unary("Digamma", DType::F64, &xs),
        &want,
        1e-13,
        "Digamma f64",
    );
    assert_close(
        &unary("Digamma", DType::F32, &xs),
        &want,
        1e-4,
        "Digamma f32",
    );
    // Poles of digamma: NaN (Eigen's convention, which TensorFlow uses).
    check_unary("Digamma", &[0.0, -2.0], &[f64::NAN, f64::NAN]);
    check_unary(
        "Erfc",
        &[-2.0, -0.5, 0.0, 0.5, 3.0, 10.0],
        &[
            1.9953222650189528,
            1.5204998778130465,
            1.0,
            0.4795001221869535,
            2.209049699858544e-05,
            2.088487583762545e-45,
        ],
    );
}

#[test]
fn polygamma_of_orders_0_to_3() {
    let xs = [0.5, 1.0, 2.5, 10.0];
    let ones = [1.0; 4];
    check_binary(
        "Polygamma",
        &ones,
        &xs,
        &[
            4.934802200544679,
            1.6449340668482264,
            0.49035775610023485,
            0.10516633568168575,
        ],
    );
    check_binary(
        "Polygamma",
        &[2.0; 4],
        &xs,
        &[
            -16.82879664423432,
            -2.4041138063191885,
            -0.2362040516417274,
            -0.011049834970802067,
        ],
    );
    check_binary(
        "Polygamma",
        &[3.0, 3.0],
        &[0.5, 3.0],
        &[97.40909103400244, 0.11893940226682916],
    );
    // Order 0 is digamma; trigamma at a negative non-integer; non-integer order is NaN.
    check_binary(
        "Polygamma",
        &[0.0, 1.0, 1.5, -1.0],
        &[0.5, -0.5, 2.0, 2.0],
        &[-1.9635100260214235, 8.934802200544679, f64::NAN, f64::NAN],
    );
}

#[test]
fn rint_and_round_tie_to_even() {
    let xs = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4, -2.6, 3.7];
    let want = [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 2.0, -3.0, 4.0];
    check_unary("Rint", &xs, &want);
    check_unary("Round", &xs, &want);
    // Round also takes integers (unchanged), as TensorFlow's.
    let mut g = Graph::new();
    let x = g.constant_from(&[3], vec![-3i32, 0, 7]).unwrap();
    let y = g.round(x).unwrap();
    assert_eq!(
        run(&g, &[], &[y])[0].to_vec::<i32>().unwrap(),
        vec![-3, 0, 7]
    );
}

#[test]
fn float_tests_return_bools() {
    let xs = [0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.5];
    for dtype in [DType::F32, DType::F64] {
        for (op, want) in [
            ("IsNan", [false, true, false, false, false]),
            ("IsInf", [false, false, true, true, false]),
            ("IsFinite", [true, false, false, false, true]),
        ] {
            let mut g = Graph::new();
            let (x, t) = feed(&mut g, "x", dtype, &xs);
            let y = g.build(op).input(x).finish1().unwrap();
            assert_eq!(g.dtype(y), DType::Bool);
            let got = run(&g, &[(x, t)], &[y])[0].to_vec::<bool>().unwrap();
            assert_eq!(got, want, "{op} {dtype}");
        }
    }
}

#[test]
fn atan2_covers_every_quadrant() {
    // Inputs are (y, x).
    check_binary(
        "Atan2",
        &[1.0, 1.0, -1.0, -1.0, 0.0, 2.0, 0.5],
        &[1.0, -1.0, -1.0, 1.0, -1.0, 0.0, 3.0],
        &[
            std::f64::consts::FRAC_PI_4,
            2.356194490192345,
            -2.356194490192345,
            -std::f64::consts::FRAC_PI_4,
            std::f64::consts::PI,
            std::f64::consts::FRAC_PI_2,
            0.16514867741462683,
        ],
    );
}

#[test]
fn safe_divisions_follow_tensorflow() {
    // Xlogy: 0 where x == 0 (even with y == 0), else x * log(y).
    check_binary(
        "Xlogy",
        &[0.0, 0.0, 2.0, 0.5, -1.5],
        &[0.0, 5.0, 3.0, 0.1, 2.0],
        &[
            0.0,
            0.0,
            2.1972245773362196,
            -1.1512925464970227,
            -1.0397207708399179,
        ],
    );
    // Xdivy: 0 where x == 0, else x / y (so x != 0, y == 0 is inf).
    check_binary(
        "Xdivy",
        &[0.0, 3.0, -1.0, 1.0],
        &[0.0, 4.0, 8.0, 0.0],
        &[0.0, 0.75, -0.125, f64::INFINITY],
    );
    // DivNoNan: 0 where y == 0 (even 0 / 0), else x / y.
    check_binary(
        "DivNoNan",
        &[1.0, 0.0, 3.0, -1.0],
        &[0.0, 0.0, 4.0, 8.0],
        &[0.0, 0.0, 0.75, -0.125],
    );
    check_binary(
        "RealDiv",
        &[1.0, -7.0, 0.0],
        &[4.0, 2.0, 0.0],
        &[0.25, -3.5, f64::NAN],
    );
    // Broadcasting.
    let mut g = Graph::new();
    let x = g.constant_from(&[2, 1], vec![1.0f64, 0.0]).unwrap();
    let y = g.constant_from(&[3], vec![0.0f64, 2.0, 4.0]).unwrap();
    let z = g.div_no_nan(x, y).unwrap();
    let out = &run(&g, &[], &[z])[0];
    assert_eq!(out.shape(), &[2, 3]);
    assert_eq!(out.to_f64_vec(), vec![0.0, 0.5, 0.25, 0.0, 0.0, 0.0]);
}

#[test]
fn logical_xor() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[4], vec![false, false, true, true])
        .unwrap();
    let y = g
        .constant_from(&[4], vec![false, true, false, true])
        .unwrap();
    let z = g.logical_xor(x, y).unwrap();
    assert_eq!(
        run(&g, &[], &[z])[0].to_vec::<bool>().unwrap(),
        vec![false, true, true, false]
    );
}

#[test]
fn leaky_relu_softsign_and_l2_loss() {
    let xs = [-2.0, -0.5, 0.0, 0.5, 3.0];
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        let (x, t) = feed(&mut g, "x", dtype, &xs);
        // Default alpha is 0.2.
        let lr = g.build("LeakyRelu").input(x).finish1().unwrap();
        let lr3 = g.leaky_relu(x, 0.3).unwrap();
        let ss = g.softsign(x).unwrap();
        let l2 = g.l2_loss(x).unwrap();
        assert_eq!(g.shape(l2), &Shape::scalar());
        let out = run(&g, &[(x, t)], &[lr, lr3, ss, l2]);
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-15 };
        assert_close(
            &out[0].to_f64_vec(),
            &[-0.4, -0.1, 0.0, 0.5, 3.0],
            tol,
            "LeakyRelu",
        );
        assert_close(
            &out[1].to_f64_vec(),
            &[-0.6, -0.15, 0.0, 0.5, 3.0],
            tol,
            "LeakyRelu 0.3",
        );
        assert_close(
            &out[2].to_f64_vec(),
            &[-2.0 / 3.0, -1.0 / 3.0, 0.0, 1.0 / 3.0, 0.75],
            tol,
            "Softsign",
        );
        // (4 + 0.25 + 0 + 0.25 + 9) / 2
        assert_close(&out[3].to_f64_vec(), &[6.75], tol, "L2Loss");
    }
}

/// An integer input is a graph error naming the node, not a panic or a missing kernel.
#[test]
fn integer_inputs_are_errors_naming_the_node() {
    for op in [
        "Tan",
        "Asin",
        "Lgamma",
        "Digamma",
        "Erfc",
        "Rint",
        "IsNan",
        "LeakyRelu",
        "Softsign",
        "L2Loss",
    ] {
        let mut g = Graph::new();
        let x = g.constant_from(&[2], vec![1i32, 2]).unwrap();
        let err = g.build(op).name("bad").input(x).finish1().unwrap_err();
        match &err {
            GraphError::InvalidNode { node, message, .. } => {
                assert_eq!(node, "bad", "{op}");
                assert!(message.contains("int32"), "{op}: {message}");
            }
            other => panic!("{op}: unexpected error {other}"),
        }
    }
    for op in [
        "Atan2",
        "Xlogy",
        "Xdivy",
        "DivNoNan",
        "RealDiv",
        "Polygamma",
    ] {
        let mut g = Graph::new();
        let x = g.constant_from(&[2], vec![1i64, 2]).unwrap();
        let err = g
            .build(op)
            .name("bad")
            .input(x)
            .input(x)
            .finish1()
            .unwrap_err();
        assert!(err.to_string().contains("bad"), "{op}: {err}");
    }
    // Mixed float dtypes.
    let mut g = Graph::new();
    let x = g.constant_from(&[1], vec![1.0f32]).unwrap();
    let y = g.constant_from(&[1], vec![1.0f64]).unwrap();
    let err = g
        .build("Atan2")
        .name("mixed")
        .input(x)
        .input(y)
        .finish1()
        .unwrap_err();
    assert!(err.to_string().contains("mixed"), "{err}");
    // Incompatible shapes.
    let a = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let b = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let err = g
        .build("Xlogy")
        .name("shapes")
        .input(a)
        .input(b)
        .finish1()
        .unwrap_err();
    assert!(err.to_string().contains("shapes"), "{err}");
}

/// Shapes that only meet at run time fail the step with an error naming the node.
#[test]
fn runtime_shape_mismatch_names_the_node() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let y = g.placeholder("y", DType::F32, Shape::unknown()).unwrap();
    let z = g
        .build("Atan2")
        .name("quad")
        .input(x)
        .input(y)
        .finish1()
        .unwrap();
    let err = session(&g)
        .run(
            &[
                (x, t(&[2], vec![1.0f32, 2.0])),
                (y, t(&[3], vec![1.0f32, 2.0, 3.0])),
            ],
            &[z],
            &[],
        )
        .unwrap_err();
    match err {
        Error::Kernel { node, .. } => assert_eq!(node, "quad"),
        other => panic!("unexpected {other}"),
    }
}

/// TensorFlow's rules at the special points (math_grad.py): d xlogy / dx = xlogy(x != 0, y),
/// so 0 at x == 0; d xdivy / dx = xdivy(x != 0, y); DivNoNan's gradients are 0 where y == 0.
#[test]
fn safe_division_gradients_at_the_special_points() {
    use tfr_graph::gradients;
    for (op, dx_want, dy_want) in [
        // x = [0, 2], y = [4, 4]
        ("Xlogy", [0.0, 4f64.ln()], [0.0, 0.5]),
        ("Xdivy", [0.0, 0.25], [0.0, -2.0 / 16.0]),
    ] {
        let mut g = Graph::new();
        let x = g.constant_from(&[2], vec![0.0f64, 2.0]).unwrap();
        let y = g.constant_from(&[2], vec![4.0f64, 4.0]).unwrap();
        let z = g.build(op).input(x).input(y).finish1().unwrap();
        let s = g.reduce_sum(z, None, false).unwrap();
        let d = gradients(&mut g, &[s], &[x, y], None).unwrap();
        let out = run(&g, &[], &[d[0].unwrap(), d[1].unwrap()]);
        assert_close(&out[0].to_f64_vec(), &dx_want, 1e-15, op);
        assert_close(&out[1].to_f64_vec(), &dy_want, 1e-15, op);
    }
    let mut g = Graph::new();
    let x = g.constant_from(&[2], vec![3.0f64, 2.0]).unwrap();
    let y = g.constant_from(&[2], vec![0.0f64, 4.0]).unwrap();
    let z = g.div_no_nan(x, y).unwrap();
    let s = g.reduce_sum(z, None, false).unwrap();
    let d = gradients(&mut g, &[s], &[x, y], None).unwrap();
    let out = run(&g, &[], &[d[0].unwrap(), d[1].unwrap()]);
    assert_eq!(out[0].to_f64_vec(), vec![0.0, 0.25]);
    assert_eq!(out[1].to_f64_vec(), vec![0.0, -2.0 / 16.0]);
}
