//! Audit of op semantics against TensorFlow's documented behaviour: edge cases (ties, NaN,
//! negative integers, empty reductions, boundary points of piecewise gradients). Each expected
//! value says where it comes from (numpy/JAX computed, or TF's documentation/kernels).

use tfr_core::Tensor;
use tfr_graph::{gradients, AttrValue, Graph, Shape};

use crate::common;
use common::*;

/// Runs `op` on the given inputs (fed through placeholders, so the kernels run, not constant
/// folding) with `attrs`; the first output, or the error message.
fn op_result(op: &str, inputs: &[Tensor], attrs: &[(&str, AttrValue)]) -> Result<Tensor, String> {
    let mut g = Graph::new();
    let mut feeds = Vec::new();
    let mut b = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let p = g
            .placeholder(&format!("in{i}"), x.dtype(), Shape::known(x.shape()))
            .unwrap();
        feeds.push((p, x.clone()));
        b.push(p);
    }
    let mut nb = g.build(op).inputs(b);
    for (k, v) in attrs {
        nb = nb.attr(k, v.clone());
    }
    let y = nb.finish1().map_err(|e| e.to_string())?;
    session(&g)
        .run(&feeds, &[y], &[])
        .map(|mut v| v.remove(0))
        .map_err(|e| e.to_string())
}

fn op1(op: &str, inputs: &[Tensor]) -> Tensor {
    op_result(op, inputs, &[]).unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// The gradient of `sum(op(inputs) * w)` with respect to input `wrt` (w = ones), in f64.
fn grad_of(op: &str, inputs: &[Tensor], attrs: &[(&str, AttrValue)], wrt: usize) -> Vec<f64> {
    let mut g = Graph::new();
    let mut feeds = Vec::new();
    let mut b = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let p = g
            .placeholder(&format!("in{i}"), x.dtype(), Shape::known(x.shape()))
            .unwrap();
        feeds.push((p, x.clone()));
        b.push(p);
    }
    let mut nb = g.build(op).inputs(b.clone());
    for (k, v) in attrs {
        nb = nb.attr(k, v.clone());
    }
    let y = nb.finish1().unwrap();
    let loss = g.reduce_sum(y, None, false).unwrap();
    let d = gradients(&mut g, &[loss], &[b[wrt]], None).unwrap();
    let d = d[0].expect("a gradient");
    let out = run(&g, &feeds, &[d]).remove(0);
    out.to_f64_vec()
}

fn f32s(v: &[f32]) -> Tensor {
    t(&[v.len()], v.to_vec())
}

/// Bitwise-equal f64 views (NaN equals NaN), with the case in the message.
fn assert_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g.is_nan() && w.is_nan()) || g == w,
            "{what}: element {i} is {g}, expected {w} (got {got:?})"
        );
    }
}

#[test]
fn selu_gradient_at_zero_is_scale() {
    // TF's SeluGrad selects on the output: `outputs < 0 ? dy * (outputs + scale * alpha) :
    // dy * scale` (tensorflow/core/kernels/relu_op_functor.h), so x = 0 (and -0) gets `scale`.
    // Before the fix tfr selected on x > 0 and gave scale * alpha = 1.7581 at 0.
    let scale = 1.050_700_987_355_480_5_f64 as f32 as f64;
    let x = f32s(&[-1.0, -0.0, 0.0, 1.0]);
    let got = grad_of("Selu", &[x], &[], 0);
    // x = -1: scale * alpha * e^-1 (numpy: 1.7580993408473766 * exp(-1) = 0.64676857).
    assert_close(&got[..1], &[0.646_768_57], 1e-6, "Selu'(-1)");
    assert_same(&got[1..], &[scale, scale, scale], "Selu' at -0, 0, 1");
}

#[test]
fn float_floor_div_floors_the_quotient_in_its_dtype() {
    // TF's FloorDiv for floats is floor(x / y) with x / y rounded to T (google_floor_div_real):
    // in f32, 1 / 0.1 rounds to 10, so 1 // 0.1 = 10 (numpy's divmod-based floor_divide gives
    // 9). Before the fix tfr divided in f64 and gave 9.
    let z = op1(
        "FloorDiv",
        &[
            f32s(&[1.0, -7.5, 7.5, 0.0, -1.0]),
            f32s(&[0.1, 2.0, -2.0, 0.0, 0.0]),
        ],
    );
    assert_same(
        &z.to_f64_vec(),
        &[10.0, -4.0, -4.0, f64::NAN, f64::NEG_INFINITY],
        "FloorDiv f32",
    );
    // f64 likewise: 1 / 0.1 is exactly 10 in f64.
    let z = op1("FloorDiv", &[t(&[1], vec![1.0f64]), t(&[1], vec![0.1f64])]);
    assert_same(&z.to_f64_vec(), &[10.0], "FloorDiv f64");
    // FloorMod stays fmod-based with the divisor's sign (numpy.fmod + sign fix-up):
    // fmod(1, 0.1f32) = 0.099999986.
    let z = op1(
        "FloorMod",
        &[
            f32s(&[-7.5, 7.5, 5.0, -5.0, 1.0]),
            f32s(&[2.0, -2.0, 0.0, 3.0, 0.1]),
        ],
    );
    assert_same(
        &z.to_f64_vec(),
        &[0.5, -0.5, f64::NAN, 1.0, 0.099_999_986_588_954_93],
        "FloorMod f32",
    );
}

#[test]
fn cast_int64_to_float32_rounds_once() {
    // numpy: np.float32(np.int64(2**53 + 2**29 + 1)) = 9007200328482816 (2^53 + 2^30), as C++'s
    // static_cast TF uses; through f64 it rounded twice, to 2^53.
    let v = (1i64 << 53) + (1 << 29) + 1;
    let dst = tfr_graph::DType::F32;
    let z = op_result("Cast", &[t(&[2], vec![v, -v])], &[("DstT", dst.into())]).unwrap();
    let want = ((1i64 << 53) + (1 << 30)) as f64;
    assert_same(&z.to_f64_vec(), &[want, -want], "Cast int64 -> float32");
}

/// The gradient at the kinks of piecewise ops, as TF's gradient kernels define it (ReluGrad:
/// x > 0; Relu6Grad: 0 < y < 6; EluGrad: y < 0 selects; LeakyReluGrad: x > 0; Abs: sign(x);
/// Maximum/Minimum: x >= y / x <= y take it; Floor, Ceil, Round, Rint, Sign: zero; Sqrt at 0:
/// 0.5 / 0 = inf; Pow's exponent gradient is 0 where x <= 0).
#[test]
fn gradients_at_boundary_points_follow_tensorflow() {
    let x = f32s(&[-1.0, 0.0, 1.0, 6.0, 7.0]);
    let e1 = (-1.0f32).exp() as f64;
    let cases: &[(&str, [f64; 5])] = &[
        ("Relu", [0.0, 0.0, 1.0, 1.0, 1.0]),
        ("Relu6", [0.0, 0.0, 1.0, 0.0, 0.0]),
        ("Elu", [e1, 1.0, 1.0, 1.0, 1.0]),
        ("LeakyRelu", [0.2, 0.2, 1.0, 1.0, 1.0]),
        ("Abs", [-1.0, 0.0, 1.0, 1.0, 1.0]),
        ("Sign", [0.0; 5]),
        ("Floor", [0.0; 5]),
        ("Ceil", [0.0; 5]),
        ("Round", [0.0; 5]),
        ("Rint", [0.0; 5]),
    ];
    for (op, want) in cases {
        let got = grad_of(op, std::slice::from_ref(&x), &[], 0);
        assert_close(&got, want, 1e-6, op);
    }
    let sqrt = grad_of("Sqrt", &[f32s(&[0.0, -1.0])], &[], 0);
    assert_same(&sqrt, &[f64::INFINITY, f64::NAN], "Sqrt' at 0 and -1");
    // Ties (and a NaN x, for which x >= y is false) of Maximum / Minimum.
    let (a, b) = (f32s(&[1.0, 2.0, f32::NAN]), f32s(&[1.0, 1.0, 1.0]));
    let ins = [a, b];
    assert_same(
        &grad_of("Maximum", &ins, &[], 0),
        &[1.0, 1.0, 0.0],
        "Maximum dx",
    );
    assert_same(
        &grad_of("Maximum", &ins, &[], 1),
        &[0.0, 0.0, 1.0],
        "Maximum dy",
    );
    assert_same(
        &grad_of("Minimum", &ins, &[], 0),
        &[1.0, 0.0, 0.0],
        "Minimum dx",
    );
    assert_same(
        &grad_of("Minimum", &ins, &[], 1),
        &[0.0, 1.0, 1.0],
        "Minimum dy",
    );
    // Pow: dx = dy * y * x^(y-1) (0 * 0^-1 = NaN at x = y = 0, as TF); dy = z * log(x) only
    // where x > 0.
    let ins = [f32s(&[0.0, 0.0, -2.0, 2.0]), f32s(&[0.0, 2.0, 2.0, 0.5])];
    let dx = grad_of("Pow", &ins, &[], 0);
    assert_same(&dx[..3], &[f64::NAN, 0.0, -4.0], "Pow dx");
    let dy = grad_of("Pow", &ins, &[], 1);
    assert_same(&dy[..3], &[0.0, 0.0, 0.0], "Pow dy where x <= 0");
    // numpy: 2 ** 0.5 * log(2) = 0.98025814.
    assert_close(&dy[3..], &[0.980_258_14], 1e-6, "Pow dy");
}

/// NaN and integer edge cases of elementwise ops and reductions (TF 2.x propagates NaN through
/// Maximum/Minimum and Max/Min reductions; Sign(NaN) is NaN; integer Abs/Neg wrap; integer
/// Mean truncates and, for uint8, accumulates wider, as TF's MeanReducer casting
/// specializations; Sum accumulates in T).
#[test]
fn nan_and_integer_edge_cases() {
    let nan = f64::NAN;
    let z = op1(
        "Maximum",
        &[f32s(&[f32::NAN, 1.0, 2.0]), f32s(&[1.0, f32::NAN, 1.0])],
    );
    assert_same(&z.to_f64_vec(), &[nan, nan, 2.0], "Maximum NaN");
    let z = op1(
        "Minimum",
        &[f32s(&[f32::NAN, 1.0, 2.0]), f32s(&[1.0, f32::NAN, 1.0])],
    );
    assert_same(&z.to_f64_vec(), &[nan, nan, 1.0], "Minimum NaN");
    for r in ["Max", "Min", "Sum", "Prod", "Mean"] {
        for x in [[1.0f32, f32::NAN, 3.0], [f32::NAN, 1.0, 3.0]] {
            let z = op1(r, &[f32s(&x), t(&[], vec![0i32])]);
            assert_same(&z.to_f64_vec(), &[nan], r);
        }
    }
    let z = op1("Sign", &[f32s(&[f32::NAN, -0.0, -2.0, 3.0])]);
    assert_same(&z.to_f64_vec(), &[nan, 0.0, -1.0, 1.0], "Sign");
    let m = i32::MIN as f64;
    assert_same(
        &op1("Abs", &[t(&[1], vec![i32::MIN])]).to_f64_vec(),
        &[m],
        "Abs",
    );
    assert_same(
        &op1("Neg", &[t(&[1], vec![i32::MIN])]).to_f64_vec(),
        &[m],
        "Neg",
    );
    let axis = t(&[], vec![0i32]);
    let z = op1("Mean", &[t(&[3], vec![-1i32, -2, 0]), axis.clone()]);
    assert_same(&z.to_f64_vec(), &[-1.0], "Mean int32 truncates");
    let z = op1("Mean", &[t(&[2], vec![255u8, 255]), axis.clone()]);
    assert_same(&z.to_f64_vec(), &[255.0], "Mean uint8");
    let z = op1("Sum", &[t(&[2], vec![255u8, 255]), axis]);
    assert_same(&z.to_f64_vec(), &[254.0], "Sum uint8 wraps");
    let z = op1(
        "Pow",
        &[t(&[3], vec![-2i32, 0, 3]), t(&[3], vec![3i32, 0, 2])],
    );
    assert_same(&z.to_f64_vec(), &[-8.0, 1.0, 9.0], "Pow int32");
    // Integer errors name the node.
    for (op, y) in [("Pow", -1i32), ("Div", 0), ("FloorDiv", 0), ("FloorMod", 0)] {
        let e = op_result(op, &[t(&[1], vec![2i32]), t(&[1], vec![y])], &[]).unwrap_err();
        assert!(e.contains(&format!("node `{op}`")), "{op}: {e}");
    }
}

#[test]
fn range_checks_direction_and_counts_in_its_dtype() {
    // TF's RangeOp: "Requires start <= limit when delta > 0" / "start >= limit when delta < 0"
    // (numpy's arange would be empty); tfr returned an empty range.
    for (s, l, d) in [(0i32, -5i32, 2i32), (0, 5, -1)] {
        let ins = [t(&[], vec![s]), t(&[], vec![l]), t(&[], vec![d])];
        let e = op_result("Range", &ins, &[]).unwrap_err();
        assert!(
            e.contains("node `Range`") && e.contains("Requires start"),
            "{e}"
        );
    }
    let e = op_result(
        "Range",
        &[
            t(&[], vec![1.0f32]),
            t(&[], vec![0.0f32]),
            t(&[], vec![0.5f32]),
        ],
        &[],
    );
    assert!(e.unwrap_err().contains("Requires start <= limit"));
    // Equal bounds are an empty range either way.
    let z = op1(
        "Range",
        &[t(&[], vec![3i32]), t(&[], vec![3i32]), t(&[], vec![-1i32])],
    );
    assert_eq!(z.shape(), &[0]);
    // The size is ceil(|(limit - start) / delta|) in T: in f32 (0.3f - 0f) / 0.1f rounds to 3
    // (np.float32(0.3) / np.float32(0.1) == 3.0), so 3 elements; f64 arithmetic gave 4.
    let z = op1(
        "Range",
        &[
            t(&[], vec![0.0f32]),
            t(&[], vec![0.3f32]),
            t(&[], vec![0.1f32]),
        ],
    );
    assert_eq!(z.shape(), &[3]);
    // A constant range is checked (and sized) by the shape function alike.
    let mut g = Graph::new();
    let (s, l, d) = (
        g.scalar(0.0f32).unwrap(),
        g.scalar(0.3f32).unwrap(),
        g.scalar(0.1f32).unwrap(),
    );
    let r = g.range(s, l, d).unwrap();
    assert_eq!(g.shape(r).to_string(), Shape::known(&[3]).to_string());
    let (s, l, d) = (
        g.scalar(0i32).unwrap(),
        g.scalar(-5i32).unwrap(),
        g.scalar(1i32).unwrap(),
    );
    let e = g.range(s, l, d).unwrap_err().to_string();
    assert!(e.contains("Requires start <= limit"), "{e}");
}

#[test]
fn clip_by_value_with_min_above_max_gives_min() {
    // TF computes max(min(t, clip_max), clip_min) (tensorflow/tensorflow#57151: clip(x, 1, -1)
    // is all 1); numpy's clip gives clip_max. NaN stays NaN.
    let ins = [
        f32s(&[0.0, 5.0, 2.0, f32::NAN]),
        t(&[], vec![3.0f32]),
        t(&[], vec![1.0f32]),
    ];
    let z = op1("ClipByValue", &ins);
    assert_same(
        &z.to_f64_vec(),
        &[3.0, 3.0, 3.0, f64::NAN],
        "ClipByValue lo > hi",
    );
    let ins = [
        t(&[3], vec![-5i32, 0, 9]),
        t(&[], vec![-1i32]),
        t(&[], vec![4i32]),
    ];
    assert_same(
        &op1("ClipByValue", &ins).to_f64_vec(),
        &[-1.0, 0.0, 4.0],
        "ClipByValue int",
    );
}

#[test]
fn unsorted_segment_ops_drop_negative_ids() {
    // TF docs (tf.math.unsorted_segment_sum/max/min): "If the given segment ID i is negative,
    // the value is dropped"; an id >= num_segments is an error on CPU. tfr errored on -1.
    let data = f32s(&[1.0, 2.0, 3.0, 4.0]);
    let ids = t(&[4], vec![0i32, 0, -1, 2]);
    let num = t(&[], vec![3i32]);
    let low = -(f32::MAX as f64);
    let cases: [(&str, [f64; 3]); 3] = [
        ("UnsortedSegmentSum", [3.0, 0.0, 4.0]),
        ("UnsortedSegmentMax", [2.0, low, 4.0]),
        ("UnsortedSegmentMin", [1.0, -low, 4.0]),
    ];
    for (op, want) in cases {
        let ins = [data.clone(), ids.clone(), num.clone()];
        assert_same(&op1(op, &ins).to_f64_vec(), &want, op);
        let ins = [data.clone(), t(&[4], vec![0i32, 0, 3, 2]), num.clone()];
        let e = op_result(op, &ins, &[]).unwrap_err();
        assert!(e.contains(&format!("node `{op}`")), "{op}: {e}");
        // The dropped element gets a zero gradient (TF's _GatherDropNegatives); the others
        // their segment's (ties of max share it: 1 and 2 differ here, so no tie).
        let d = grad_of(op, &[data.clone(), ids.clone(), num.clone()], &[], 0);
        let want = match op {
            "UnsortedSegmentSum" => [1.0, 1.0, 0.0, 1.0],
            "UnsortedSegmentMax" => [0.0, 1.0, 0.0, 1.0],
            _ => [1.0, 0.0, 0.0, 1.0],
        };
        assert_same(&d, &want, &format!("{op} gradient"));
    }
    // Rank-2 data: the mask broadcasts over each slice.
    let data = t(&[3, 2], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let ids = t(&[3], vec![1i32, -1, 1]);
    let ins = [data, ids, t(&[], vec![2i32])];
    let z = op1("UnsortedSegmentSum", &ins);
    assert_same(&z.to_f64_vec(), &[0.0, 0.0, 6.0, 8.0], "rank 2 sum");
    let d = grad_of("UnsortedSegmentSum", &ins, &[], 0);
    assert_same(&d, &[1.0, 1.0, 0.0, 0.0, 1.0, 1.0], "rank 2 sum gradient");
}
