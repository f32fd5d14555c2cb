//! TF's fused quantized products (`QuantizedMatMulWithBias{,AndRelu}AndRequantize`,
//! `QuantizedMatMulWithBiasAndDequantize`, `QuantizedConv2DWithBias{,AndRelu}AndRequantize`):
//! the int8 GEMM's paths and work splits equal to the reference bit for bit, the fused ops equal
//! to the reference product followed by [`OutputStage`]'s scalar arithmetic bit for bit, within
//! the quantization error of f32, and bad ranges and biases as errors.

use tfr_core::kernels::qgemm::{amx_in_use, qgemm_u8, set_amx_enabled, QGemmPath};
use tfr_core::kernels::quantization_ops::codes;
use tfr_core::kernels::quantized_fused_ops::OutputStage;
use tfr_core::Tensor;
use tfr_graph::ops::quantization_ops::Quantized;
use tfr_graph::{Graph, Output};

use crate::common::{self, random, run};
use crate::quantization_ops::{bytes, conv_f32, matmul_f32, quantized_input};

#[test]
fn every_gemm_path_tile_and_work_split_equals_the_reference() {
    // Serial and threaded over rows or over columns; tiles 1, 2 and 4 panels wide.
    for &(m, k, n) in &[
        (1, 784, 10),
        (1, 3136, 1024),
        (3, 600, 700),
        (64, 200, 100),
        (64, 25, 32),
        (100, 800, 64),
        (9, 27, 16),
        (13, 5, 48),
        (300, 75, 20),
    ] {
        let a = bytes(m * k, (m * 13 + k) as u64);
        let b = bytes(k * n, (k * 7 + n) as u64);
        for &(za, zb) in &[(0, 0), (131, 120)] {
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

/// The codes, range and zero point of a quantized constant.
fn codes_and_range(g: &Graph, q: Quantized) -> (Vec<u8>, (f32, f32), i32) {
    let out = run(g, &[], &[q.value, q.min, q.max]);
    let (lo, hi) = (
        out[1].scalar_value::<f32>().unwrap(),
        out[2].scalar_value::<f32>().unwrap(),
    );
    let z = codes::float_to_code_unclamped(0.0, lo, hi, 8, 0) as i32;
    (out[0].to_vec::<u8>().unwrap(), (lo, hi), z)
}

/// The reference of a fused product: int32 sums of the reference GEMM through the scalar stage.
fn reference_stage(sums: &[i32], n: usize, stage: &OutputStage) -> (Vec<u8>, Vec<f32>) {
    let reals: Vec<f32> = sums
        .iter()
        .enumerate()
        .map(|(i, &s)| stage.real(s, i % n))
        .collect();
    (reals.iter().map(|&v| stage.code(v)).collect(), reals)
}

#[test]
fn fused_matmuls_equal_the_reference_and_f32() {
    let (m, k, n) = (7, 45, 37);
    let a: Vec<f32> = random(m * k, 11).iter().map(|v| (v * 2.0) as f32).collect();
    let b: Vec<f32> = random(k * n, 12).iter().map(|v| *v as f32).collect();
    let bias: Vec<f32> = random(n, 13).iter().map(|v| (v * 3.0) as f32).collect();
    let want_f32 = matmul_f32(&a, &b, m, k, n);
    let (out_lo, out_hi) = (-6.0f32, 9.0f32);
    for relu in [false, true] {
        let mut g = Graph::new();
        let qa = quantized_input(&mut g, &a, &[m, k], -2.0, 2.0);
        let qb = quantized_input(&mut g, &b, &[k, n], -1.0, 1.0);
        let bv = g.constant_from(&[n], bias.clone()).unwrap();
        let range = (g.scalar(out_lo).unwrap(), g.scalar(out_hi).unwrap());
        let y = g
            .quantized_matmul_with_bias(qa, qb, bv, relu, range)
            .unwrap();
        let yf = g.quantized_matmul_with_bias_dequantize(qa, qb, bv).unwrap();
        let out = run(&g, &[], &[y.value, y.min, y.max, yf]);
        let (ca, ra, za) = codes_and_range(&g, qa);
        let (cb, rb, zb) = codes_and_range(&g, qb);
        let mut sums = vec![0i32; m * n];
        qgemm_u8(&ca, &cb, &mut sums, m, k, n, za, zb, QGemmPath::Reference);
        let stage = OutputStage::new(ra, rb, bias.clone(), relu, Some((out_lo, out_hi))).unwrap();
        let (want_codes, reals) = reference_stage(&sums, n, &stage);
        assert_eq!(out[0].to_vec::<u8>().unwrap(), want_codes, "relu {relu}");
        assert_eq!(out[1].scalar_value::<f32>().unwrap(), out_lo);
        assert_eq!(out[2].scalar_value::<f32>().unwrap(), out_hi);
        if !relu {
            assert_eq!(out[3].to_vec::<f32>().unwrap(), reals);
        }
        // Against f32: the product's quantization error plus half an output step.
        let (ea, eb) = (4.0 / 255.0 / 2.0, 2.0 / 255.0 / 2.0);
        let bound = k as f32 * (ea + eb * 2.0 + ea * eb) + (out_hi - out_lo) / 255.0 / 2.0 + 1e-3;
        let step = (out_hi - out_lo) / 255.0;
        for (i, &c) in want_codes.iter().enumerate() {
            let mut f = want_f32[i] + bias[i % n];
            if relu {
                f = f.max(0.0);
            }
            let got = out_lo + c as f32 * step;
            if (out_lo..=out_hi).contains(&f) {
                assert!((got - f).abs() <= bound, "relu {relu}: {got} vs {f}");
            }
        }
    }
}

#[test]
fn fused_convolutions_equal_the_reference_and_f32() {
    for (xs, fs) in [
        ([2, 9, 8, 3], [3, 3, 3, 20]),
        ([1, 12, 12, 1], [5, 5, 1, 32]),
    ] {
        let (xn, fnum) = (xs.iter().product(), fs.iter().product());
        let x: Vec<f32> = random(xn, 5).iter().map(|v| (v + 0.5) as f32).collect();
        let f: Vec<f32> = random(fnum, 6).iter().map(|v| *v as f32).collect();
        let oc = fs[3];
        let bias: Vec<f32> = random(oc, 7).iter().map(|v| *v as f32).collect();
        for (stride, same, relu) in [
            (1, true, true),
            (2, true, false),
            (1, false, true),
            (2, false, true),
        ] {
            let mut g = Graph::new();
            let qx = quantized_input(&mut g, &x, &xs, -0.5, 1.5);
            let qf = quantized_input(&mut g, &f, &fs, -1.0, 1.0);
            let bv = g.constant_from(&[oc], bias.clone()).unwrap();
            let range = (g.scalar(-4.0f32).unwrap(), g.scalar(5.0f32).unwrap());
            let padding = if same { "SAME" } else { "VALID" };
            let strides = [1, stride as i64, stride as i64, 1];
            let y = g
                .quantized_conv2d_with_bias(qx, qf, bv, relu, range, &strides, padding)
                .unwrap();
            // The unfused op's int32 sums are the reference's (tested against f32 elsewhere).
            let sums = g
                .quantized_conv2d(qx, qf, [stride as i64; 2], padding)
                .unwrap();
            let out = run(&g, &[], &[y.value, sums.value]);
            let (_, rx, _) = codes_and_range(&g, qx);
            let (_, rf, _) = codes_and_range(&g, qf);
            let stage = OutputStage::new(rx, rf, bias.clone(), relu, Some((-4.0, 5.0))).unwrap();
            let (want, _) = reference_stage(&out[1].to_vec::<i32>().unwrap(), oc, &stage);
            let what = format!("{xs:?} stride {stride} {padding} relu {relu}");
            assert_eq!(out[0].shape(), out[1].shape(), "{what}");
            assert_eq!(out[0].to_vec::<u8>().unwrap(), want, "{what}");
            let (want_f32, _) = conv_f32(&x, xs, &f, fs, stride, same);
            let taps = (fs[0] * fs[1] * fs[2]) as f32;
            let (ex, ef) = (1.0 / 255.0, 1.0 / 255.0);
            let bound = taps * (ex + ef * 1.5 + ex * ef) + 9.0 / 255.0 / 2.0 + 1e-3;
            for (i, &c) in want.iter().enumerate() {
                let mut v = want_f32[i] + bias[i % oc];
                if relu {
                    v = v.max(0.0);
                }
                let got = -4.0 + c as f32 * 9.0 / 255.0;
                if (-4.0..=5.0).contains(&v) {
                    assert!((got - v).abs() <= bound, "{what}: {got} vs {v}");
                }
            }
        }
    }
}

/// The AMX kernels (where the CPU has them) and the VNNI ones must give the same codes: the
/// tests that switch between them take turns, so each runs both.
static AMX_SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn fused_products_in_every_tile_and_work_split_equal_the_reference() {
    // The output stage applied in the GEMM's tiles: tiles 1, 2 and 4 panels wide, partial
    // tiles of rows and columns, serial and threaded over rows, over columns, and panel group
    // by panel group for a `b` too large for a core's cache; biases with NaN and infinities
    // (codes 0 and 255) and large enough to clamp.
    let _one_switcher = AMX_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for amx in [true, false] {
        set_amx_enabled(amx);
        eprintln!("AMX kernels in use: {}", amx_in_use());
        for &(m, k, n) in &[
            (1, 3136, 1024),
            (13, 1100, 1000),
            (64, 1100, 1000),
            (64, 200, 100),
            (50, 25, 32),
            (300, 75, 20),
            (7, 45, 37),
            (1, 784, 10),
            (700, 800, 64),
            (64, 784, 512),
            (40, 68, 50),
        ] {
            let a: Vec<f32> = random(m * k, 21).iter().map(|v| (v * 2.0) as f32).collect();
            let b: Vec<f32> = random(k * n, 22).iter().map(|v| *v as f32).collect();
            let mut bias: Vec<f32> = random(n, 23).iter().map(|v| (v * 8.0) as f32).collect();
            bias[0] = f32::NAN;
            bias[n / 2] = f32::INFINITY;
            bias[n - 1] = f32::NEG_INFINITY;
            for relu in [false, true] {
                let mut g = Graph::new();
                let qa = quantized_input(&mut g, &a, &[m, k], -2.0, 2.0);
                let qb = quantized_input(&mut g, &b, &[k, n], -0.8, 1.1);
                let bv = g.constant_from(&[n], bias.clone()).unwrap();
                let range = (g.scalar(-5.0f32).unwrap(), g.scalar(7.0f32).unwrap());
                let y = g
                    .quantized_matmul_with_bias(qa, qb, bv, relu, range)
                    .unwrap();
                let out = run(&g, &[], &[y.value]);
                let (ca, ra, za) = codes_and_range(&g, qa);
                let (cb, rb, zb) = codes_and_range(&g, qb);
                let mut sums = vec![0i32; m * n];
                qgemm_u8(&ca, &cb, &mut sums, m, k, n, za, zb, QGemmPath::Reference);
                let stage =
                    OutputStage::new(ra, rb, bias.clone(), relu, Some((-5.0, 7.0))).unwrap();
                let (want, _) = reference_stage(&sums, n, &stage);
                assert_eq!(
                    out[0].to_vec::<u8>().unwrap(),
                    want,
                    "{m}x{k}x{n} relu {relu}"
                );
            }
        }
    }
    set_amx_enabled(true);
}

/// The int32 sums of a convolution on codes, one product at a time: taps in the padding
/// (which holds the input's code of 0.0) contribute nothing.
#[allow(clippy::too_many_arguments)]
fn reference_conv_sums(
    x: &[u8],
    [n, h, w, c]: [usize; 4],
    f: &[u8],
    [fh, fw, _, oc]: [usize; 4],
    stride: usize,
    same: bool,
    (zx, zf): (i32, i32),
) -> Vec<i32> {
    let out_dim = |d: usize, k: usize| {
        if same {
            d.div_ceil(stride)
        } else {
            (d - k) / stride + 1
        }
    };
    let (oh, ow) = (out_dim(h, fh), out_dim(w, fw));
    let pad = |d: usize, o: usize, k: usize| {
        if same {
            ((o - 1) * stride + k).saturating_sub(d) / 2
        } else {
            0
        }
    };
    let (ph, pw) = (pad(h, oh, fh), pad(w, ow, fw));
    let mut out = vec![0i32; n * oh * ow * oc];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let mut s = 0i64;
                    for i in 0..fh {
                        for j in 0..fw {
                            let y = (oy * stride + i) as isize - ph as isize;
                            let xx = (ox * stride + j) as isize - pw as isize;
                            if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                continue;
                            }
                            for ch in 0..c {
                                let xv = x[((b * h + y as usize) * w + xx as usize) * c + ch];
                                let fv = f[((i * fw + j) * c + ch) * oc + o];
                                s += (xv as i64 - zx as i64) * (fv as i64 - zf as i64);
                            }
                        }
                    }
                    out[((b * oh + oy) * ow + ox) * oc + o] = s as i32;
                }
            }
        }
    }
    out
}

#[test]
fn fused_convolutions_read_in_place_or_gathered_equal_the_reference() {
    // Window rows of a multiple of 4 bytes are read straight from the padded input (LeNet's
    // second layer, odd channel counts with 4-wide windows, 1x1 filters), the others gathered
    // (5, 9, 15 bytes); batch 1 and 64 (split over threads), partial tiles of rows and of
    // columns (20, 37 channels) and whole ones (16, 32, 64), padding at every edge.
    let _one_switcher = AMX_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for amx in [true, false] {
        set_amx_enabled(amx);
        eprintln!("AMX kernels in use: {}", amx_in_use());
        for (xs, fs) in [
            ([1, 14, 14, 32], [5, 5, 32, 64]),
            ([64, 5, 4, 8], [3, 3, 8, 24]),
            ([2, 9, 8, 3], [4, 4, 3, 20]),
            ([3, 7, 9, 12], [1, 1, 12, 37]),
            ([2, 9, 8, 3], [3, 3, 3, 16]),
            ([64, 6, 6, 1], [5, 5, 1, 32]),
            ([1, 8, 7, 5], [3, 3, 5, 37]),
        ] {
            let (xn, fnum) = (xs.iter().product(), fs.iter().product());
            let x: Vec<f32> = random(xn, 31).iter().map(|v| (v + 0.5) as f32).collect();
            let f: Vec<f32> = random(fnum, 32).iter().map(|v| *v as f32).collect();
            let oc = fs[3];
            let bias: Vec<f32> = random(oc, 33).iter().map(|v| *v as f32).collect();
            for (stride, same, relu) in [(1, true, true), (2, true, false), (1, false, false)] {
                let mut g = Graph::new();
                let qx = quantized_input(&mut g, &x, &xs, -0.5, 1.5);
                let qf = quantized_input(&mut g, &f, &fs, -0.9, 1.1);
                let bv = g.constant_from(&[oc], bias.clone()).unwrap();
                let range = (g.scalar(-3.0f32).unwrap(), g.scalar(4.0f32).unwrap());
                let padding = if same { "SAME" } else { "VALID" };
                let strides = [1, stride as i64, stride as i64, 1];
                let y = g
                    .quantized_conv2d_with_bias(qx, qf, bv, relu, range, &strides, padding)
                    .unwrap();
                let out = run(&g, &[], &[y.value]);
                let (cx, rx, zx) = codes_and_range(&g, qx);
                let (cf, rf, zf) = codes_and_range(&g, qf);
                let sums = reference_conv_sums(&cx, xs, &cf, fs, stride, same, (zx, zf));
                let stage =
                    OutputStage::new(rx, rf, bias.clone(), relu, Some((-3.0, 4.0))).unwrap();
                let (want, _) = reference_stage(&sums, oc, &stage);
                let what = format!("{xs:?} * {fs:?} stride {stride} {padding} relu {relu}");
                assert_eq!(out[0].num_elements(), want.len(), "{what}");
                assert_eq!(out[0].to_vec::<u8>().unwrap(), want, "{what}");
            }
        }
    }
    set_amx_enabled(true);
}

#[test]
fn bad_frozen_ranges_and_biases_are_errors() {
    let mut g = Graph::new();
    let qa = quantized_input(&mut g, &[0.5; 6], &[2, 3], -1.0, 1.0);
    let qb = quantized_input(&mut g, &[0.25; 12], &[3, 4], -1.0, 1.0);
    let bias = g.constant_from(&[4], vec![0f32; 4]).unwrap();
    let short = g.constant_from(&[3], vec![0f32; 3]).unwrap();
    let e = g
        .quantized_matmul_with_bias_dequantize(qa, qb, short)
        .unwrap_err();
    assert!(e.to_string().contains("bias has 3 values"), "{e}");
    let lo = g
        .placeholder("lo", tfr_graph::DType::F32, tfr_graph::Shape::scalar())
        .unwrap();
    let hi = g
        .placeholder("hi", tfr_graph::DType::F32, tfr_graph::Shape::scalar())
        .unwrap();
    let y = g
        .quantized_matmul_with_bias(qa, qb, bias, true, (lo, hi))
        .unwrap();
    let s = common::session(&g);
    let feed = |a: f32, b: f32| -> Vec<(Output, Tensor)> {
        vec![(lo, Tensor::scalar(a)), (hi, Tensor::scalar(b))]
    };
    for (a, b, msg) in [
        (1.0, 1.0, "is empty"),
        (2.0, 1.0, "min must not exceed max"),
        (f32::NAN, 1.0, "finite"),
    ] {
        let e = s.run(&feed(a, b), &[y.value], &[]).unwrap_err();
        assert!(e.to_string().contains(msg), "[{a}, {b}]: {e}");
    }
    let ok = s.run(&feed(0.0, 1.0), &[y.value], &[]).unwrap();
    assert_eq!(ok[0].shape(), &[2, 4]);
}
