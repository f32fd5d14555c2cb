//! 8-bit quantization ops (TF's QuantizeV2, Dequantize, QuantizedMatMul, QuantizedBiasAdd,
//! QuantizedRelu, Requantize, RequantizationRange, FakeQuantWithMinMaxVars): codes worked out by
//! hand from TF's formulas, the int8 products of every implementation equal to the reference
//! bit for bit, results within the quantization error of their f32 counterparts, and bad ranges
//! as errors.

use tfr_core::kernels::qgemm::{qgemm_u8, QGemmPath};
use tfr_core::kernels::quantization_ops::codes;
use tfr_core::{Code, Tensor};
use tfr_graph::ops::quantization_ops::{QuantizeMode, Quantized};
use tfr_graph::{gradients, DType, Graph, Output, Shape};

use crate::common;
use common::*;

pub(crate) fn bytes(n: usize, seed: u64) -> Vec<u8> {
    random(n, seed)
        .iter()
        .map(|v| ((v + 1.0) * 127.9) as u8)
        .collect()
}

#[test]
fn every_int8_product_path_equals_the_reference() {
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (4, 4, 16),
        (17, 33, 65),
        (64, 300, 40),
        (2, 1030, 3),
    ] {
        let a = bytes(m * k, (m * 31 + k) as u64);
        let b = bytes(k * n, (k * 17 + n) as u64);
        for &(za, zb) in &[(0, 0), (128, 7), (-5, 300), (255, 255)] {
            let mut want = vec![0i32; m * n];
            qgemm_u8(&a, &b, &mut want, m, k, n, za, zb, QGemmPath::Reference);
            for path in [QGemmPath::Portable, QGemmPath::Vnni] {
                let mut got = vec![-1i32; m * n];
                qgemm_u8(&a, &b, &mut got, m, k, n, za, zb, path);
                assert_eq!(got, want, "{path:?} {m}x{k}x{n} zero points {za}, {zb}");
            }
        }
    }
}

fn quantize_graph(
    x: Tensor,
    min: f32,
    max: f32,
    mode: &str,
    round: &str,
) -> tfr_core::Result<Vec<Tensor>> {
    let mut g = Graph::new();
    let xp = g
        .placeholder("x", DType::F32, Shape::known(x.shape()))
        .unwrap();
    let lo = g.scalar(min).unwrap();
    let hi = g.scalar(max).unwrap();
    let id = g
        .build("QuantizeV2")
        .inputs([xp, lo, hi])
        .attr("mode", mode)
        .attr("round_mode", round)
        .finish()
        .unwrap();
    let outs: Vec<Output> = (0..3).map(|i| Output::new(id, i)).collect();
    common::session(&g).run(&[(xp, x)], &outs, &[])
}

fn codes_of(out: &[Tensor]) -> (Vec<u8>, f32, f32) {
    (
        out[0].to_vec::<u8>().unwrap(),
        out[1].scalar_value::<f32>().unwrap(),
        out[2].scalar_value::<f32>().unwrap(),
    )
}

#[test]
fn quantize_modes_give_tensorflows_codes() {
    let x = t(&[5], vec![-1.0f32, 0.0, 0.5, 1.0, 7.0]);
    // MIN_COMBINED over [-1, 1]: (x + 1) * 127.5, rounded half up, clamped.
    let out = quantize_graph(x.clone(), -1.0, 1.0, "MIN_COMBINED", "HALF_AWAY_FROM_ZERO").unwrap();
    assert_eq!(codes_of(&out), (vec![0, 128, 191, 255, 255], -1.0, 1.0));
    // MIN_FIRST: round(x * 127.5) - round(-127.5): -1 -> 0, 0 -> 128, 0.5 -> 192, 1 -> 256 -> 255.
    let out = quantize_graph(x.clone(), -1.0, 1.0, "MIN_FIRST", "HALF_AWAY_FROM_ZERO").unwrap();
    assert_eq!(codes_of(&out), (vec![0, 128, 192, 255, 255], -1.0, 1.0));
    // SCALED for an unsigned type: the range becomes [0, 2], scale 127.5.
    let out = quantize_graph(x.clone(), -1.0, 2.0, "SCALED", "HALF_AWAY_FROM_ZERO").unwrap();
    assert_eq!(codes_of(&out), (vec![0, 0, 64, 128, 255], 0.0, 2.0));
    let halves = t(&[2], vec![1.0f32 / 127.5 * 0.5, 1.0f32 / 127.5 * 2.5]);
    let away = quantize_graph(halves.clone(), 0.0, 2.0, "SCALED", "HALF_AWAY_FROM_ZERO").unwrap();
    let even = quantize_graph(halves, 0.0, 2.0, "SCALED", "HALF_TO_EVEN").unwrap();
    assert_eq!(away[0].to_vec::<u8>().unwrap(), vec![1, 3]);
    assert_eq!(even[0].to_vec::<u8>().unwrap(), vec![0, 2]);
    // The range is widened to hold 0 and to span at least 1% of its magnitude.
    let out = quantize_graph(
        t(&[1], vec![0.75f32]),
        0.5,
        1.0,
        "MIN_COMBINED",
        "HALF_AWAY_FROM_ZERO",
    )
    .unwrap();
    assert_eq!(codes_of(&out), (vec![191], 0.0, 1.0));
    let out = quantize_graph(
        t(&[1], vec![0.0f32]),
        0.0,
        0.0,
        "MIN_COMBINED",
        "HALF_AWAY_FROM_ZERO",
    )
    .unwrap();
    assert_eq!(codes_of(&out).2, 0.01);
}

#[test]
fn bad_ranges_and_modes_are_errors() {
    let x = t(&[2], vec![0.0f32, 1.0]);
    let e =
        quantize_graph(x.clone(), 1.0, -1.0, "MIN_COMBINED", "HALF_AWAY_FROM_ZERO").unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("min must not exceed max"), "{e}");
    let e = quantize_graph(
        x.clone(),
        f32::NAN,
        1.0,
        "MIN_COMBINED",
        "HALF_AWAY_FROM_ZERO",
    )
    .unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    let mut g = Graph::new();
    let xp = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let lo = g.scalar(0f32).unwrap();
    let e = g
        .build("QuantizeV2")
        .inputs([xp, lo, lo])
        .attr("mode", "MIN_MAX")
        .finish()
        .unwrap_err();
    assert!(
        e.to_string().contains("MIN_COMBINED, MIN_FIRST or SCALED"),
        "{e}"
    );
    let v = g.constant_from(&[2], vec![0f32, 1.0]).unwrap();
    let e = g
        .build("QuantizeV2")
        .inputs([xp, v, lo])
        .finish()
        .unwrap_err();
    assert!(e.to_string().contains("must be a scalar"), "{e}");
    let e = quantize_graph(x, 0.0, 1.0, "MIN_COMBINED", "HALF_TO_EVEN").unwrap_err();
    assert!(
        e.to_string().contains("only supported with mode SCALED"),
        "{e}"
    );
}

/// Quantize then dequantize lands within half a step of the input (MIN_FIRST: a step and a half,
/// since TF rounds `min` to a code with the scale in f64 when encoding but in f32 when decoding,
/// so a range whose `min` falls on half a code, as every symmetric one does, may shift by one).
#[test]
fn dequantize_inverts_quantize_within_half_a_step() {
    let vals: Vec<f32> = random(200, 9).iter().map(|v| (v * 3.0) as f32).collect();
    for mode in [
        QuantizeMode::MinCombined,
        QuantizeMode::MinFirst,
        QuantizeMode::Scaled,
    ] {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[200]))
            .unwrap();
        let lo = g.scalar(-3.0f32).unwrap();
        let hi = g.scalar(3.0f32).unwrap();
        let q = g.quantize(x, lo, hi, mode).unwrap();
        let y = g.dequantize(q, mode).unwrap();
        let out = run(&g, &[(x, t(&[200], vals.clone()))], &[y, q.min, q.max]);
        let (lo, hi) = (
            out[1].scalar_value::<f32>().unwrap(),
            out[2].scalar_value::<f32>().unwrap(),
        );
        let step = (hi - lo) / 255.0;
        for (got, want) in out[0].to_vec::<f32>().unwrap().iter().zip(&vals) {
            let want = want.clamp(lo, hi);
            let bound = if mode == QuantizeMode::MinFirst {
                step * 1.5
            } else {
                step * 0.5
            };
            assert!(
                (got - want).abs() <= bound + 1e-5,
                "{mode:?}: {got} vs {want} (step {step})"
            );
        }
    }
}

#[test]
fn per_channel_quantize_uses_each_channels_range() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 2], vec![1.0f32, 10.0, -1.0, 5.0])
        .unwrap();
    let lo = g.constant_from(&[2], vec![-1.0f32, 0.0]).unwrap();
    let hi = g.constant_from(&[2], vec![1.0f32, 10.0]).unwrap();
    let id = g
        .build("QuantizeV2")
        .inputs([x, lo, hi])
        .attr("axis", 1i64)
        .finish()
        .unwrap();
    assert_eq!(g.shape(Output::new(id, 1)), &Shape::known(&[2]));
    let out = run(&g, &[], &[Output::new(id, 0)]);
    // Column 0 over [-1, 1], column 1 over [0, 10].
    assert_eq!(out[0].to_vec::<u8>().unwrap(), vec![255, 255, 0, 128]);
}

pub(crate) fn quantized_input(
    g: &mut Graph,
    vals: &[f32],
    shape: &[usize],
    lo: f32,
    hi: f32,
) -> Quantized {
    let x = g.constant_from(shape, vals.to_vec()).unwrap();
    let lo = g.scalar(lo).unwrap();
    let hi = g.scalar(hi).unwrap();
    g.quantize(x, lo, hi, QuantizeMode::MinFirst).unwrap()
}

pub(crate) fn matmul_f32(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] * b[p * n + j];
            }
        }
    }
    c
}

#[test]
fn quantized_matmul_matches_f32_within_the_quantization_error() {
    let (m, k, n) = (5, 37, 6);
    let a: Vec<f32> = random(m * k, 1)
        .iter()
        .map(|v| (v * 2.0 - 0.3) as f32)
        .collect();
    let b: Vec<f32> = random(k * n, 2).iter().map(|v| *v as f32).collect();
    let mut g = Graph::new();
    let qa = quantized_input(&mut g, &a, &[m, k], -2.5, 2.0);
    let qb = quantized_input(&mut g, &b, &[k, n], -1.0, 1.0);
    let c = g.quantized_matmul(qa, qb, false, false).unwrap();
    let cf = g.dequantize(c, QuantizeMode::MinFirst).unwrap();
    let out = run(&g, &[], &[cf, c.min, c.max]);
    let want = matmul_f32(&a, &b, m, k, n);
    let (ea, eb) = (4.5 / 255.0 / 2.0, 2.0 / 255.0 / 2.0);
    let bound = k as f32 * (ea * 1.0 + eb * 2.5 + ea * eb) + 1e-3;
    for (got, want) in out[0].to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!(
            (got - want).abs() <= bound,
            "{got} vs {want} (bound {bound})"
        );
    }
    let (lo, hi) = codes::product_range(-2.5, 2.0, -1.0, 1.0);
    assert_eq!(out[1].scalar_value::<f32>().unwrap(), lo);
    assert_eq!(out[2].scalar_value::<f32>().unwrap(), hi);
    // Transposed operands give the same codes.
    let mut g2 = Graph::new();
    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let qa = quantized_input(&mut g2, &at, &[k, m], -2.5, 2.0);
    let qb = quantized_input(&mut g2, &b, &[k, n], -1.0, 1.0);
    let ct = g2.quantized_matmul(qa, qb, true, false).unwrap();
    let c1 = run(&g, &[], &[c.value]).remove(0).to_vec::<i32>().unwrap();
    let c2 = run(&g2, &[], &[ct.value])
        .remove(0)
        .to_vec::<i32>()
        .unwrap();
    assert_eq!(c1, c2);
    // Mismatched inner dims are a build error.
    let qb2 = quantized_input(&mut g2, &b[..6], &[6, 1], -1.0, 1.0);
    let e = g2.quantized_matmul(qa, qb2, false, false).unwrap_err();
    assert!(e.to_string().contains("inner dims"), "{e}");
}

#[test]
fn requantize_bias_add_and_relu_keep_values_within_a_step() {
    let x: Vec<f32> = vec![-1.5, -0.2, 0.0, 0.7, 1.9, 3.0];
    let bias: Vec<f32> = vec![0.5, -0.25, 1.0];
    let mut g = Graph::new();
    let qx = quantized_input(&mut g, &x, &[2, 3], -2.0, 3.0);
    let qb = quantized_input(&mut g, &bias, &[3], -1.0, 1.0);
    let sum = g.quantized_bias_add(qx, qb).unwrap();
    let (lo, hi) = g.requantization_range(sum).unwrap();
    let q8 = g.requantize(sum, lo, hi).unwrap();
    let back = g.dequantize(q8, QuantizeMode::MinFirst).unwrap();
    let relu = g.quantized_relu(q8).unwrap();
    let relu_f = g.dequantize(relu, QuantizeMode::MinFirst).unwrap();
    let out = run(&g, &[], &[back, lo, hi, relu_f, sum.min, sum.max]);
    let want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + bias[i % 3]).collect();
    let (lo, hi) = (
        out[1].scalar_value::<f32>().unwrap(),
        out[2].scalar_value::<f32>().unwrap(),
    );
    assert!(
        (-1.05..=0.0).contains(&lo) && (3.95..=4.05).contains(&hi),
        "[{lo}, {hi}]"
    );
    let step = (hi - lo) / 255.0 + 5.0 / 255.0 + 2.0 / 255.0;
    for (got, w) in out[0].to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!((got - w).abs() <= step, "{got} vs {w}");
    }
    for (got, w) in out[3].to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!((got - w.max(0.0)).abs() <= step, "relu {got} vs {w}");
    }
    let (slo, shi) = codes::sum_range(-2.0, 3.0, -1.0, 1.0);
    assert_eq!(
        (
            out[4].scalar_value::<f32>().unwrap(),
            out[5].scalar_value::<f32>().unwrap()
        ),
        (slo, shi)
    );
    // A requested range above zero is refused, as in TF.
    let mut g = Graph::new();
    let qx = quantized_input(&mut g, &x, &[6], -2.0, 3.0);
    let qb = quantized_input(&mut g, &bias, &[3], -1.0, 1.0);
    let qx = Quantized {
        value: g.reshape(qx.value, &[2, 3]).unwrap(),
        ..qx
    };
    let sum = g.quantized_bias_add(qx, qb).unwrap();
    let one = g.scalar(1.0f32).unwrap();
    let two = g.scalar(2.0f32).unwrap();
    let q = g.requantize(sum, one, two).unwrap();
    let e = common::session(&g).run(&[], &[q.value], &[]).unwrap_err();
    assert!(
        e.to_string().contains("requested_output_min must be <= 0"),
        "{e}"
    );
}

#[test]
fn code_conversions_follow_tensorflow() {
    // quint8 over [-1, 3]: 256 steps over 4 * 256/255, so 63.75 codes per unit; min -1 is
    // code -64 before the shift, 0.0 is code 64 and decodes to 0.
    assert_eq!(codes::float_to_code(0.0, -1.0, 3.0, 8, 0), 64);
    assert_eq!(codes::float_to_code(1.0, -1.0, 3.0, 8, 0), 128);
    assert!(codes::code_to_float(64, -1.0, 3.0, 8, 0).abs() < 1e-6);
    assert_eq!(codes::float_to_code(5.0, -1.0, 3.0, 8, 0), 255);
    assert_eq!(codes::float_to_code_unclamped(5.0, -1.0, 3.0, 8, 0), 383);
    // A degenerate range maps everything to code 0 and back to min.
    assert_eq!(codes::float_to_code(3.0, 2.0, 2.0, 8, 0), 0);
    assert_eq!(codes::code_to_float(9, 2.0, 2.0, 8, 0), 2.0);
}

fn fake_quant_graph(x: &[f32], min: f32, max: f32) -> (Graph, Output, Output, [Output; 3]) {
    let mut g = Graph::new();
    let xp = g
        .placeholder("x", DType::F32, Shape::known(&[x.len()]))
        .unwrap();
    let lo = g.scalar(min).unwrap();
    let hi = g.scalar(max).unwrap();
    let y = g.fake_quant(xp, lo, hi, 8, false).unwrap();
    let w = g
        .constant_from(&[x.len()], (1..=x.len()).map(|v| v as f32).collect())
        .unwrap();
    let wy = g.mul(y, w).unwrap();
    let loss = g.reduce_sum(wy, None, false).unwrap();
    let d = gradients(&mut g, &[loss], &[xp, lo, hi], None).unwrap();
    let d = [d[0].unwrap(), d[1].unwrap(), d[2].unwrap()];
    (g, xp, y, d)
}

#[test]
fn fake_quant_nudges_the_range_and_passes_gradients_straight_through() {
    // [-0.1, 1.0]: the zero point 23.18 is nudged to 23, so the range becomes
    // [-23 s, 232 s] with s = 1.1 / 255.
    let s = 1.1f32 / 255.0;
    let (nmin, nmax) = (-23.0 * s, 232.0 * s);
    let x = vec![-0.5f32, 0.0, 0.3, 0.95, 1.5];
    let (g, xp, y, d) = fake_quant_graph(&x, -0.1, 1.0);
    let out = run(&g, &[(xp, t(&[5], x.clone()))], &[y, d[0], d[1], d[2]]);
    let ys = out[0].to_vec::<f32>().unwrap();
    assert_eq!(ys[1], 0.0, "0 is a level");
    assert!(
        (ys[0] - nmin).abs() < 1e-6 && (ys[4] - nmax).abs() < 1e-6,
        "{ys:?}"
    );
    for (&yv, &xv) in ys[2..4].iter().zip(&x[2..4]) {
        assert!((yv - xv).abs() <= s / 2.0 + 1e-6);
        let level = (yv - nmin) / s;
        assert!(
            (level - level.round()).abs() < 1e-3,
            "{yv} is not on a level"
        );
    }
    // Inside the range the upstream gradient (the weights 1..=5) passes; outside it goes to
    // min (x below) or max (x above).
    assert_eq!(
        out[1].to_vec::<f32>().unwrap(),
        vec![0.0, 2.0, 3.0, 4.0, 0.0]
    );
    assert_eq!(out[2].scalar_value::<f32>().unwrap(), 1.0);
    assert_eq!(out[3].scalar_value::<f32>().unwrap(), 5.0);
    let (g, xp, y, _) = fake_quant_graph(&x, 1.0, -1.0);
    let e = common::session(&g)
        .run(&[(xp, t(&[5], x))], &[y], &[])
        .unwrap_err();
    assert!(e.to_string().contains("min must not exceed max"), "{e}");
}

pub(crate) fn conv_f32(
    x: &[f32],
    xs: [usize; 4],
    f: &[f32],
    fs: [usize; 4],
    stride: usize,
    same: bool,
) -> (Vec<f32>, [usize; 4]) {
    let [n, h, w, c] = xs;
    let [fh, fw, _, oc] = fs;
    let (oh, ow, ph, pw) = if same {
        let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
        let nh = ((oh - 1) * stride + fh).saturating_sub(h);
        let nw = ((ow - 1) * stride + fw).saturating_sub(w);
        (oh, ow, nh / 2, nw / 2)
    } else {
        ((h - fh) / stride + 1, (w - fw) / stride + 1, 0, 0)
    };
    let mut out = vec![0f32; n * oh * ow * oc];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let mut s = 0f32;
                    for i in 0..fh {
                        for j in 0..fw {
                            let (y, xx) = (
                                (oy * stride + i) as isize - ph as isize,
                                (ox * stride + j) as isize - pw as isize,
                            );
                            if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                continue;
                            }
                            for ch in 0..c {
                                s += x[((b * h + y as usize) * w + xx as usize) * c + ch]
                                    * f[((i * fw + j) * c + ch) * oc + o];
                            }
                        }
                    }
                    out[((b * oh + oy) * ow + ox) * oc + o] = s;
                }
            }
        }
    }
    (out, [n, oh, ow, oc])
}

#[test]
fn quantized_conv2d_matches_f32_within_the_quantization_error() {
    let (xs, fs) = ([2, 7, 6, 3], [3, 3, 3, 4]);
    let x: Vec<f32> = random(2 * 7 * 6 * 3, 5)
        .iter()
        .map(|v| (v + 0.5) as f32)
        .collect();
    let f: Vec<f32> = random(3 * 3 * 3 * 4, 6).iter().map(|v| *v as f32).collect();
    for (stride, same) in [(1, true), (2, true), (1, false), (2, false)] {
        let mut g = Graph::new();
        let qx = quantized_input(&mut g, &x, &xs, -0.5, 1.5);
        let qf = quantized_input(&mut g, &f, &fs, -1.0, 1.0);
        let padding = if same { "SAME" } else { "VALID" };
        let y = g
            .quantized_conv2d(qx, qf, [stride as i64; 2], padding)
            .unwrap();
        let yf = g.dequantize(y, QuantizeMode::MinFirst).unwrap();
        let out = run(&g, &[], &[yf]);
        let (want, shape) = conv_f32(&x, xs, &f, fs, stride, same);
        assert_eq!(out[0].shape(), &shape);
        let (ex, ef) = (2.0 / 255.0, 2.0 / 255.0);
        let bound = 27.0 * (ex * 1.0 + ef * 1.5 + ex * ef) + 1e-3;
        for (got, w) in out[0].to_vec::<f32>().unwrap().iter().zip(&want) {
            assert!(
                (got - w).abs() <= bound,
                "stride {stride} {padding}: {got} vs {w}"
            );
        }
    }
    // SAME padding needs a code for 0.0: a range without 0 is an error.
    let mut g = Graph::new();
    let xv = g.constant_from(&xs, vec![7u8; 2 * 7 * 6 * 3]).unwrap();
    let lo = g.scalar(0.5f32).unwrap();
    let hi = g.scalar(1.0f32).unwrap();
    let qx = Quantized {
        value: xv,
        min: lo,
        max: hi,
    };
    let qf = quantized_input(&mut g, &f, &fs, -1.0, 1.0);
    let y = g.quantized_conv2d(qx, qf, [1, 1], "SAME").unwrap();
    let e = common::session(&g).run(&[], &[y.value], &[]).unwrap_err();
    assert!(e.to_string().contains("does not hold 0.0"), "{e}");
}

#[test]
fn quantized_pools_work_on_codes() {
    let xs = [1, 5, 5, 2];
    let x: Vec<f32> = random(50, 8).iter().map(|v| *v as f32).collect();
    let mut g = Graph::new();
    let qx = quantized_input(&mut g, &x, &xs, -1.0, 1.0);
    let mx = g.quantized_pool(qx, true, [2, 2], [2, 2], "SAME").unwrap();
    let av = g
        .quantized_pool(qx, false, [3, 3], [1, 1], "VALID")
        .unwrap();
    let out = run(&g, &[], &[qx.value, mx.value, av.value, mx.min, mx.max]);
    let codes = out[0].to_vec::<u8>().unwrap();
    let at = |y: usize, x: usize, c: usize| codes[(y * 5 + x) * 2 + c] as u32;
    assert_eq!(out[1].shape(), &[1, 3, 3, 2]);
    let mx_codes = out[1].to_vec::<u8>().unwrap();
    for oy in 0..3 {
        for ox in 0..3 {
            for c in 0..2 {
                let mut m = 0;
                for y in 2 * oy..(2 * oy + 2).min(5) {
                    for x in 2 * ox..(2 * ox + 2).min(5) {
                        m = m.max(at(y, x, c));
                    }
                }
                assert_eq!(mx_codes[(oy * 3 + ox) * 2 + c] as u32, m);
            }
        }
    }
    let av_codes = out[2].to_vec::<u8>().unwrap();
    assert_eq!(out[2].shape(), &[1, 3, 3, 2]);
    let s: u32 = (0..3)
        .flat_map(|y| (0..3).map(move |x| (y, x)))
        .map(|(y, x)| at(y + 1, x + 2, 1))
        .sum();
    assert_eq!(
        av_codes[(3 + 2) * 2 + 1] as u32,
        s / 9,
        "truncated mean of codes"
    );
    assert_eq!(out[3].scalar_value::<f32>().unwrap(), -1.0);
    assert_eq!(out[4].scalar_value::<f32>().unwrap(), 1.0);
}

/// The kernel keeps the last `b` packed; a different `b` (fed, so a new buffer each step) must
/// not reuse it.
#[test]
fn quantized_matmul_repacks_when_b_changes() {
    let (m, k, n) = (3, 9, 5);
    let mut g = Graph::new();
    let a = g
        .placeholder("a", DType::U8, Shape::known(&[m, k]))
        .unwrap();
    let b = g
        .placeholder("b", DType::U8, Shape::known(&[k, n]))
        .unwrap();
    let lo = g.scalar(-1.0f32).unwrap();
    let hi = g.scalar(1.0f32).unwrap();
    let c = g
        .quantized_matmul(
            Quantized {
                value: a,
                min: lo,
                max: hi,
            },
            Quantized {
                value: b,
                min: lo,
                max: hi,
            },
            false,
            false,
        )
        .unwrap();
    let s = common::session(&g);
    let av = bytes(m * k, 1);
    for seed in [2, 3, 2] {
        let bv = bytes(k * n, seed);
        let got = s
            .run(
                &[(a, t(&[m, k], av.clone())), (b, t(&[k, n], bv.clone()))],
                &[c.value],
                &[],
            )
            .unwrap()
            .remove(0)
            .to_vec::<i32>()
            .unwrap();
        let z = codes::float_to_code_unclamped(0.0, -1.0, 1.0, 8, 0) as i32;
        let mut want = vec![0i32; m * n];
        qgemm_u8(&av, &bv, &mut want, m, k, n, z, z, QGemmPath::Reference);
        assert_eq!(got, want, "b seed {seed}");
    }
}

#[test]
fn quantized_concat_joins_over_the_widest_range() {
    let a = vec![-0.9f32, -0.2, 0.0, 0.4, 0.7, 1.0];
    let b = vec![0.5f32, 3.9, 2.0, 0.0];
    let mut g = Graph::new();
    let qa = quantized_input(&mut g, &a, &[2, 3], -1.0, 1.0);
    let qb = quantized_input(&mut g, &b, &[2, 2], 0.0, 4.0);
    let c = g.quantized_concat(&[qa, qb], 1).unwrap();
    assert_eq!(g.shape(c.value), &Shape::known(&[2, 5]));
    let cf = g.dequantize(c, QuantizeMode::MinFirst).unwrap();
    let out = run(&g, &[], &[cf, c.min, c.max]);
    assert_eq!(out[1].scalar_value::<f32>().unwrap(), -1.0);
    assert_eq!(out[2].scalar_value::<f32>().unwrap(), 4.0);
    let want = [-0.9f32, -0.2, 0.0, 0.5, 3.9, 0.4, 0.7, 1.0, 2.0, 0.0];
    let step = 5.0 / 255.0 * 1.5 + 4.0 / 255.0;
    for (got, w) in out[0].to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!((got - w).abs() <= step, "{got} vs {w}");
    }
    // Shapes that differ outside the axis are refused when the graph is built.
    let qc = quantized_input(&mut g, &b, &[4, 1], 0.0, 4.0);
    let e = g.quantized_concat(&[qa, qc], 1).unwrap_err();
    assert!(e.to_string().contains("outside dim 1"), "{e}");
}

/// Every op that takes a range checks it when it runs: a range fed as `[2, 1]` (min above
/// max), `[NaN, 1]` or `[0, inf]` is an `InvalidArgument` that says which, in every input
/// range of every op, while the same graph runs with `[0, 1]`.
#[test]
fn every_range_input_rejects_min_above_max_and_non_finite_ends() {
    let mut g = Graph::new();
    let lo = g.placeholder("lo", DType::F32, Shape::scalar()).unwrap();
    let hi = g.placeholder("hi", DType::F32, Shape::scalar()).unwrap();
    let zero = g.scalar(0f32).unwrap();
    let one = g.scalar(1f32).unwrap();
    let fed = |g: &mut Graph, shape: &[usize], n: usize| Quantized {
        value: g.constant_from(shape, bytes(n, n as u64)).unwrap(),
        min: lo,
        max: hi,
    };
    let fixed = |g: &mut Graph, shape: &[usize], n: usize| Quantized {
        value: g.constant_from(shape, bytes(n, 7 * n as u64)).unwrap(),
        min: zero,
        max: one,
    };
    let mut cases: Vec<(&str, Output)> = Vec::new();
    let x = fed(&mut g, &[6], 6);
    cases.push((
        "Dequantize",
        g.dequantize(x, QuantizeMode::MinFirst).unwrap(),
    ));
    let (a, b) = (fed(&mut g, &[2, 3], 6), fixed(&mut g, &[3, 4], 12));
    cases.push((
        "QuantizedMatMul a",
        g.quantized_matmul(a, b, false, false).unwrap().value,
    ));
    let (a, b) = (fixed(&mut g, &[2, 3], 6), fed(&mut g, &[3, 4], 12));
    cases.push((
        "QuantizedMatMul b",
        g.quantized_matmul(a, b, false, false).unwrap().value,
    ));
    let (img, k) = (
        fed(&mut g, &[1, 4, 4, 2], 32),
        fixed(&mut g, &[3, 3, 2, 2], 36),
    );
    cases.push((
        "QuantizedConv2D input",
        g.quantized_conv2d(img, k, [1, 1], "SAME").unwrap().value,
    ));
    let (img, k) = (
        fixed(&mut g, &[1, 4, 4, 2], 32),
        fed(&mut g, &[3, 3, 2, 2], 36),
    );
    cases.push((
        "QuantizedConv2D filter",
        g.quantized_conv2d(img, k, [1, 1], "SAME").unwrap().value,
    ));
    for max in [true, false] {
        let img = fed(&mut g, &[1, 4, 4, 2], 32);
        let p = g.quantized_pool(img, max, [2, 2], [2, 2], "VALID").unwrap();
        cases.push((
            if max {
                "QuantizedMaxPool"
            } else {
                "QuantizedAvgPool"
            },
            p.value,
        ));
    }
    let (a, b) = (fixed(&mut g, &[2, 3], 6), fed(&mut g, &[2, 3], 6));
    cases.push((
        "QuantizedConcat",
        g.quantized_concat(&[a, b], 0).unwrap().value,
    ));
    let (x, bias) = (fed(&mut g, &[2, 3], 6), fixed(&mut g, &[3], 3));
    cases.push((
        "QuantizedBiasAdd input",
        g.quantized_bias_add(x, bias).unwrap().value,
    ));
    let (x, bias) = (fixed(&mut g, &[2, 3], 6), fed(&mut g, &[3], 3));
    cases.push((
        "QuantizedBiasAdd bias",
        g.quantized_bias_add(x, bias).unwrap().value,
    ));
    let x = fed(&mut g, &[6], 6);
    cases.push(("QuantizedRelu", g.quantized_relu(x).unwrap().value));
    let wide = |g: &mut Graph, min: Output, max: Output| Quantized {
        value: g
            .constant_from(&[4], vec![-70_000i32, -5, 9, 1 << 20])
            .unwrap(),
        min,
        max,
    };
    let x = wide(&mut g, lo, hi);
    cases.push((
        "Requantize input range",
        g.requantize(x, zero, one).unwrap().value,
    ));
    let x = wide(&mut g, zero, one);
    cases.push((
        "Requantize requested range",
        g.requantize(x, lo, hi).unwrap().value,
    ));
    let x = wide(&mut g, lo, hi);
    cases.push(("RequantizationRange", g.requantization_range(x).unwrap().0));
    let xf = g.constant_from(&[3], vec![-0.5f32, 0.25, 2.0]).unwrap();
    cases.push((
        "FakeQuantWithMinMaxVars",
        g.fake_quant(xf, lo, hi, 8, false).unwrap(),
    ));
    let dy = g.constant_from(&[3], vec![1f32, 1.0, 1.0]).unwrap();
    let grad = g
        .build("FakeQuantWithMinMaxVarsGradient")
        .inputs([dy, xf, lo, hi])
        .finish()
        .unwrap();
    cases.push(("FakeQuantWithMinMaxVarsGradient", Output::new(grad, 0)));

    let s = common::session(&g);
    let feed = |a: f32, b: f32| vec![(lo, Tensor::scalar(a)), (hi, Tensor::scalar(b))];
    for (op, y) in &cases {
        s.run(&feed(0.0, 1.0), &[*y], &[])
            .unwrap_or_else(|e| panic!("{op} over [0, 1]: {e}"));
        for (a, b, msg) in [
            (2.0, 1.0, "min must not exceed max"),
            (f32::NAN, 1.0, "must be finite"),
            (0.0, f32::INFINITY, "must be finite"),
        ] {
            let e = s.run(&feed(a, b), &[*y], &[]).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{op} over [{a}, {b}]: {e}");
            assert!(e.to_string().contains(msg), "{op} over [{a}, {b}]: {e}");
        }
    }
    assert_eq!(cases.len(), 16);
}
