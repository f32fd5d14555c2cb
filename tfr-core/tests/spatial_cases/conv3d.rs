//! Depthwise convolution, Conv3D and 3-D pooling against naive references, TensorFlow's
//! CPU tie rule of MaxPool3DGrad, their error paths and numeric gradients. Part of
//! `tests/spatial_ops.rs`, whose helpers it uses.

use super::*;

// ---- depthwise convolution and Conv3D --------------------------------------------------------

/// A naive convolution over 3 spatial dims in f64 (`depthwise`: filter [.., in, mult]).
#[allow(clippy::too_many_arguments)]
fn reference_conv(
    x: &[f64],
    xd: [usize; 5],
    f: &[f64],
    fd: [usize; 5],
    strides: [usize; 3],
    dil: [usize; 3],
    padding: Padding,
    depthwise: bool,
) -> (Vec<f64>, [usize; 5]) {
    let [n, _, _, _, c] = xd;
    let mut out_sp = [0; 3];
    let mut pad = [0; 3];
    for i in 0..3 {
        let (o, p, _) = window_geometry(xd[i + 1], fd[i], strides[i], dil[i], padding).unwrap();
        out_sp[i] = o;
        pad[i] = p;
    }
    let cout = if depthwise { c * fd[4] } else { fd[4] };
    let od = [n, out_sp[0], out_sp[1], out_sp[2], cout];
    let mut out = Vec::new();
    for b in 0..n {
        for z in 0..out_sp[0] {
            for y in 0..out_sp[1] {
                for xx in 0..out_sp[2] {
                    for oc in 0..cout {
                        let mut acc = 0.0;
                        for kz in 0..fd[0] {
                            for ky in 0..fd[1] {
                                for kx in 0..fd[2] {
                                    let p = [
                                        (z * strides[0] + kz * dil[0]) as isize - pad[0] as isize,
                                        (y * strides[1] + ky * dil[1]) as isize - pad[1] as isize,
                                        (xx * strides[2] + kx * dil[2]) as isize - pad[2] as isize,
                                    ];
                                    if (0..3).any(|i| p[i] < 0 || p[i] as usize >= xd[i + 1]) {
                                        continue;
                                    }
                                    let base = (((b * xd[1] + p[0] as usize) * xd[2]
                                        + p[1] as usize)
                                        * xd[3]
                                        + p[2] as usize)
                                        * c;
                                    let tap = ((kz * fd[1] + ky) * fd[2] + kx) * fd[3];
                                    if depthwise {
                                        let (ic, m) = (oc / fd[4], oc % fd[4]);
                                        acc += x[base + ic] * f[(tap + ic) * fd[4] + m];
                                    } else {
                                        for ic in 0..c {
                                            acc += x[base + ic] * f[(tap + ic) * fd[4] + oc];
                                        }
                                    }
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
    }
    (out, od)
}

#[test]
fn depthwise_conv_matches_a_literal_and_the_reference() {
    // 1x1 filter: output channel c * 2 + m is x[c] * filter[c, m].
    let mut g = Graph::new();
    let x = g
        .constant_from(&[1, 1, 2, 2], vec![1.0f32, 2., 3., 4.])
        .unwrap();
    let f = g
        .constant_from(&[1, 1, 2, 2], vec![1.0f32, 2., 3., 4.])
        .unwrap();
    let y = g
        .depthwise_conv2d_native(x, f, &[1, 1, 1, 1], "VALID", &[1, 1, 1, 1])
        .unwrap();
    assert_eq!(
        f32s(&run(&g, &[], &[y])[0]),
        vec![1., 2., 6., 8., 3., 6., 12., 16.]
    );
    let cases = [
        ([2, 5, 6, 3], [3, 3, 3, 2], [1, 1], [1, 1], "SAME"),
        ([1, 7, 6, 2], [3, 2, 2, 1], [2, 3], [1, 1], "VALID"),
        ([1, 7, 7, 2], [2, 3, 2, 3], [2, 1], [2, 2], "SAME"),
    ];
    for (k, (xd, fd, s, d, pad)) in cases.into_iter().enumerate() {
        let xv = random(xd.iter().product(), 20 + k as u64);
        let fv = random(fd.iter().product(), 40 + k as u64);
        let padding = Padding::parse(pad).unwrap();
        let (want, od) = reference_conv(
            &xv,
            [xd[0], 1, xd[1], xd[2], xd[3]],
            &fv,
            [1, fd[0], fd[1], fd[2], fd[3]],
            [1, s[0], s[1]],
            [1, d[0], d[1]],
            padding,
            true,
        );
        for dtype in [DType::F32, DType::F64] {
            let mut g = Graph::new();
            let x = ph(&mut g, "x", dtype, &xd);
            let f = ph(&mut g, "f", dtype, &fd);
            let y = g
                .depthwise_conv2d_native(
                    x,
                    f,
                    &[1, s[0] as i64, s[1] as i64, 1],
                    pad,
                    &[1, d[0] as i64, d[1] as i64, 1],
                )
                .unwrap();
            assert_eq!(g.shape(y), &Shape::known(&[od[0], od[2], od[3], od[4]]));
            let out = run(
                &g,
                &[(x, tensor(dtype, &xd, &xv)), (f, tensor(dtype, &fd, &fv))],
                &[y],
            );
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert_close(
                &out[0].to_f64_vec(),
                &want,
                tol,
                &format!("depthwise case {k} {dtype}"),
            );
        }
        // Gradients of both inputs, numerically.
        check_gradient(
            &xd,
            |g, x| {
                let f = g.constant_from(&fd, fv.clone()).unwrap();
                g.depthwise_conv2d_native(
                    x,
                    f,
                    &[1, s[0] as i64, s[1] as i64, 1],
                    pad,
                    &[1, d[0] as i64, d[1] as i64, 1],
                )
                .unwrap()
            },
            &xv,
            &format!("depthwise dx case {k}"),
        );
        check_gradient(
            &fd,
            |g, f| {
                let x = g.constant_from(&xd, xv.clone()).unwrap();
                g.depthwise_conv2d_native(
                    x,
                    f,
                    &[1, s[0] as i64, s[1] as i64, 1],
                    pad,
                    &[1, d[0] as i64, d[1] as i64, 1],
                )
                .unwrap()
            },
            &fv,
            &format!("depthwise dfilter case {k}"),
        );
    }
}

#[test]
fn conv3d_matches_the_reference() {
    let cases = [
        (
            [1, 3, 4, 5, 2],
            [2, 3, 2, 2, 3],
            [1, 1, 1],
            [1, 1, 1],
            "SAME",
        ),
        (
            [2, 5, 4, 4, 1],
            [3, 2, 2, 1, 2],
            [2, 1, 2],
            [1, 1, 1],
            "VALID",
        ),
        (
            [1, 5, 5, 4, 2],
            [2, 2, 2, 2, 1],
            [1, 2, 1],
            [2, 1, 2],
            "SAME",
        ),
    ];
    for (k, (xd, fd, s, d, pad)) in cases.into_iter().enumerate() {
        let xv = random(xd.iter().product(), 60 + k as u64);
        let fv = random(fd.iter().product(), 80 + k as u64);
        let (want, od) =
            reference_conv(&xv, xd, &fv, fd, s, d, Padding::parse(pad).unwrap(), false);
        let strides = [1, s[0] as i64, s[1] as i64, s[2] as i64, 1];
        let dil = [1, d[0] as i64, d[1] as i64, d[2] as i64, 1];
        for dtype in [DType::F32, DType::F64] {
            let mut g = Graph::new();
            let x = ph(&mut g, "x", dtype, &xd);
            let f = ph(&mut g, "f", dtype, &fd);
            let y = g.conv3d(x, f, &strides, pad, &dil).unwrap();
            assert_eq!(g.shape(y), &Shape::known(&od));
            let out = run(
                &g,
                &[(x, tensor(dtype, &xd, &xv)), (f, tensor(dtype, &fd, &fv))],
                &[y],
            );
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert_close(
                &out[0].to_f64_vec(),
                &want,
                tol,
                &format!("conv3d case {k} {dtype}"),
            );
        }
        check_gradient(
            &xd,
            |g, x| {
                let f = g.constant_from(&fd, fv.clone()).unwrap();
                g.conv3d(x, f, &strides, pad, &dil).unwrap()
            },
            &xv,
            &format!("conv3d dx case {k}"),
        );
        check_gradient(
            &fd,
            |g, f| {
                let x = g.constant_from(&xd, xv.clone()).unwrap();
                g.conv3d(x, f, &strides, pad, &dil).unwrap()
            },
            &fv,
            &format!("conv3d dfilter case {k}"),
        );
    }
}

#[test]
fn convolution_errors() {
    let mut g = Graph::new();
    let x4 = ph(&mut g, "x4", DType::F32, &[1, 4, 4, 2]);
    let f4 = ph(&mut g, "f4", DType::F32, &[2, 2, 3, 1]);
    let e = g
        .depthwise_conv2d_native(x4, f4, &[1, 1, 1, 1], "SAME", &[1; 4])
        .unwrap_err();
    assert!(e.to_string().contains("in_channels"), "{e}");
    let f4 = ph(&mut g, "f4b", DType::F32, &[5, 2, 2, 1]);
    let e = g
        .depthwise_conv2d_native(x4, f4, &[1, 1, 1, 1], "VALID", &[1; 4])
        .unwrap_err();
    assert!(e.to_string().contains("VALID"), "{e}");
    let e = g
        .depthwise_conv2d_native(x4, f4, &[2, 1, 1, 1], "SAME", &[1; 4])
        .unwrap_err();
    assert!(e.to_string().contains("batch and channel"), "{e}");
    let x5 = ph(&mut g, "x5", DType::F32, &[1, 4, 4, 4, 2]);
    let f5 = ph(&mut g, "f5", DType::F32, &[2, 2, 2, 3, 1]);
    let e = g.conv3d(x5, f5, &[1; 5], "SAME", &[1; 5]).unwrap_err();
    assert!(e.to_string().contains("in_channels"), "{e}");
    let e = g.conv3d(x4, f5, &[1; 5], "SAME", &[1; 5]).unwrap_err();
    assert!(e.to_string().contains("5-D"), "{e}");
    let f5 = ph(&mut g, "f5b", DType::F32, &[2, 2, 2, 2, 1]);
    let e = g.conv3d(x5, f5, &[1, 1, 1], "SAME", &[1; 5]).unwrap_err();
    assert!(e.to_string().contains("5 entries"), "{e}");
    let e = g.conv3d(x5, f5, &[1; 5], "FULL", &[1; 5]).unwrap_err();
    assert!(e.to_string().contains("SAME or VALID"), "{e}");
    // At run time: channels, the window, out_backprop's shape, NCDHW on the CPU.
    let mut g = Graph::new();
    let x = ph_unknown(&mut g, "x", DType::F32, 5);
    let f = ph_unknown(&mut g, "f", DType::F32, 5);
    let y = g
        .build("Conv3D")
        .name("c3")
        .inputs([x, f])
        .attr("strides", vec![1i64; 5])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let xv = t32(&[1, 2, 2, 2, 1], &[0.; 8]);
    let e = run_err(
        &g,
        &[(x, xv.clone()), (f, t32(&[1, 1, 1, 2, 1], &[0.; 2]))],
        y,
    );
    assert_kernel_error(e, "c3", &["in_channels (2"]);
    let e = run_err(
        &g,
        &[(x, xv.clone()), (f, t32(&[3, 1, 1, 1, 1], &[0.; 3]))],
        y,
    );
    assert_kernel_error(e, "c3", &["larger than the input"]);
    let sizes = g.constant_from(&[5], vec![1i32, 2, 2, 2, 1]).unwrap();
    let dy = ph_unknown(&mut g, "dy", DType::F32, 5);
    let bi = g
        .build("Conv3DBackpropInputV2")
        .name("c3bi")
        .inputs([sizes, f, dy])
        .attr("strides", vec![1i64; 5])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[
            (f, t32(&[1, 1, 1, 1, 1], &[1.])),
            (dy, t32(&[1, 1, 1, 1, 1], &[1.])),
        ],
        bi,
    );
    assert_kernel_error(
        e,
        "c3bi",
        &["out_backprop has shape [1, 1, 1, 1, 1]", "[1, 2, 2, 2, 1]"],
    );
    let nc = g
        .build("Conv3D")
        .inputs([x, f])
        .attr("strides", vec![1i64; 5])
        .attr("padding", "VALID")
        .attr("data_format", "NCDHW")
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(x, xv), (f, t32(&[1, 1, 1, 2, 1], &[0.; 2]))], nc);
    assert!(e.to_string().contains("NDHWC"), "{e}");
}

// ---- 3-D pooling -----------------------------------------------------------------------------

fn reference_pool3d(
    x: &[f64],
    xd: [usize; 5],
    k: [usize; 3],
    s: [usize; 3],
    padding: Padding,
    max: bool,
) -> Vec<f64> {
    let mut geo = [(0, 0); 3];
    for i in 0..3 {
        let (o, p, _) = window_geometry(xd[i + 1], k[i], s[i], 1, padding).unwrap();
        geo[i] = (o, p);
    }
    let c = xd[4];
    let mut out = Vec::new();
    for b in 0..xd[0] {
        for z in 0..geo[0].0 {
            for y in 0..geo[1].0 {
                for w in 0..geo[2].0 {
                    for ch in 0..c {
                        let (mut acc, mut n) = (if max { f64::NEG_INFINITY } else { 0.0 }, 0);
                        for kz in 0..k[0] {
                            for ky in 0..k[1] {
                                for kx in 0..k[2] {
                                    let p = [
                                        (z * s[0] + kz) as isize - geo[0].1 as isize,
                                        (y * s[1] + ky) as isize - geo[1].1 as isize,
                                        (w * s[2] + kx) as isize - geo[2].1 as isize,
                                    ];
                                    if (0..3).any(|i| p[i] < 0 || p[i] as usize >= xd[i + 1]) {
                                        continue;
                                    }
                                    let v = x[(((b * xd[1] + p[0] as usize) * xd[2]
                                        + p[1] as usize)
                                        * xd[3]
                                        + p[2] as usize)
                                        * c
                                        + ch];
                                    acc = if max { acc.max(v) } else { acc + v };
                                    n += 1;
                                }
                            }
                        }
                        out.push(if max { acc } else { acc / n as f64 });
                    }
                }
            }
        }
    }
    out
}

#[test]
fn pool3d_matches_the_reference() {
    let cases = [
        ([1, 4, 5, 3, 2], [2, 2, 2], [2, 2, 2], "SAME"),
        ([2, 5, 4, 4, 1], [3, 2, 2], [1, 2, 1], "VALID"),
        ([1, 3, 3, 5, 3], [2, 3, 2], [2, 1, 3], "SAME"),
    ];
    for (k, (xd, ks, s, pad)) in cases.into_iter().enumerate() {
        let xv = random(xd.iter().product(), 100 + k as u64);
        let padding = Padding::parse(pad).unwrap();
        let ksize = [1, ks[0] as i64, ks[1] as i64, ks[2] as i64, 1];
        let strides = [1, s[0] as i64, s[1] as i64, s[2] as i64, 1];
        for max in [true, false] {
            let want = reference_pool3d(&xv, xd, ks, s, padding, max);
            let mut g = Graph::new();
            let x = ph(&mut g, "x", DType::F64, &xd);
            let y = if max {
                g.max_pool3d(x, &ksize, &strides, pad)
            } else {
                g.avg_pool3d(x, &ksize, &strides, pad)
            }
            .unwrap();
            let out = run(&g, &[(x, tensor(DType::F64, &xd, &xv))], &[y]);
            assert_close(
                &out[0].to_f64_vec(),
                &want,
                1e-12,
                &format!("pool case {k} max {max}"),
            );
            check_gradient(
                &xd,
                |g, x| {
                    if max {
                        g.max_pool3d(x, &ksize, &strides, pad)
                    } else {
                        g.avg_pool3d(x, &ksize, &strides, pad)
                    }
                    .unwrap()
                },
                &xv,
                &format!("pool3d gradient case {k} max {max}"),
            );
        }
    }
    // SAME average over the window's elements inside the input: [1, 2, 3] by 2, stride 2.
    let mut g = Graph::new();
    let x = g
        .constant_from(&[1, 1, 1, 3, 1], vec![1.0f32, 2., 3.])
        .unwrap();
    let y = g
        .avg_pool3d(x, &[1, 1, 1, 2, 1], &[1, 1, 1, 2, 1], "SAME")
        .unwrap();
    assert_eq!(f32s(&run(&g, &[], &[y])[0]), vec![1.5, 3.]);
}

#[test]
fn max_pool3d_grad_ties_follow_tensorflow_cpu() {
    // TensorFlow's CPU MaxPool3DGrad gives a window's gradient to every element within 1e-5
    // of the maximum (pooling_ops_3d.cc); MaxPool3DGradGrad reads the first one in scan order.
    let mut g = Graph::new();
    let xv = vec![1.0f32, 1., 0., 1., 0.5, 1., 1., 0.];
    let x = g.constant_from(&[1, 2, 2, 2, 1], xv).unwrap();
    let k = [1i64, 2, 2, 2, 1];
    let y = g.max_pool3d(x, &k, &k, "VALID").unwrap();
    let dy = g.constant_from(&[1, 1, 1, 1, 1], vec![3.0f32]).unwrap();
    let dx = g
        .build("MaxPool3DGrad")
        .inputs([x, y, dy])
        .attr("ksize", k.to_vec())
        .attr("strides", k.to_vec())
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let gg_in = g
        .constant_from(
            &[1, 2, 2, 2, 1],
            vec![5.0f32, 6., 7., 8., 9., 10., 11., 12.],
        )
        .unwrap();
    let gg = g
        .build("MaxPool3DGradGrad")
        .inputs([x, y, gg_in])
        .attr("ksize", k.to_vec())
        .attr("strides", k.to_vec())
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let out = run(&g, &[], &[dx, gg]);
    assert_eq!(f32s(&out[0]), vec![3., 3., 0., 3., 0., 3., 3., 0.]);
    assert_eq!(f32s(&out[1]), vec![5.]);
}

#[test]
fn pool3d_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32, &[1, 2, 2, 2, 1]);
    let e = g
        .max_pool3d(x, &[1, 3, 1, 1, 1], &[1; 5], "VALID")
        .unwrap_err();
    assert!(e.to_string().contains("larger than the input"), "{e}");
    let e = g
        .avg_pool3d(x, &[1, 1, 1, 1, 2], &[1; 5], "VALID")
        .unwrap_err();
    assert!(e.to_string().contains("batch and channel"), "{e}");
    let e = g
        .avg_pool3d(x, &[1, 0, 1, 1, 1], &[1; 5], "VALID")
        .unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
    let x4 = ph(&mut g, "x4", DType::F32, &[1, 2, 2, 1]);
    let e = g.max_pool3d(x4, &[1; 5], &[1; 5], "VALID").unwrap_err();
    assert!(e.to_string().contains("5-D"), "{e}");
    // At run time: a window larger than the fed input, a gradient of the wrong shape.
    let mut g = Graph::new();
    let x = ph_unknown(&mut g, "x", DType::F32, 5);
    let y = g
        .build("MaxPool3D")
        .name("mp3")
        .input(x)
        .attr("ksize", vec![1i64, 2, 2, 2, 1])
        .attr("strides", vec![1i64; 5])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(x, t32(&[1, 1, 2, 2, 1], &[0.; 4]))], y);
    assert_kernel_error(e, "mp3", &["larger than the input"]);
    let sizes = g.constant_from(&[5], vec![1i32, 2, 2, 2, 1]).unwrap();
    let d = ph_unknown(&mut g, "d", DType::F32, 5);
    let ag = g
        .build("AvgPool3DGrad")
        .name("apg")
        .inputs([sizes, d])
        .attr("ksize", vec![1i64, 2, 2, 2, 1])
        .attr("strides", vec![1i64; 5])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(d, t32(&[1, 2, 1, 1, 1], &[0.; 2]))], ag);
    assert_kernel_error(e, "apg", &["grad has shape [1, 2, 1, 1, 1]"]);
}
