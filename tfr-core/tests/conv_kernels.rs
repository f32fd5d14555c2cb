//! Convolution, pooling, batch normalization and LRN kernels: values against naive references
//! written here (random inputs, several strides, paddings and dilations, NHWC and NCHW, f32 and
//! f64), TensorFlow's tie and padding rules, every error path, and numeric gradient checks
//! (central differences in f64) of each new op, its backprop ops included.

use tfr_core::{Error, Session, SessionOptions, Tensor};
use tfr_graph::ops::nn_ops::{window_geometry, Padding};
use tfr_graph::{gradients, registry, DType, Gradient, Graph, GraphError, Output, Shape};

// ---- helpers ----------------------------------------------------------------------------------

fn session(g: &Graph, threads: usize) -> Session {
    Session::new(
        g,
        SessionOptions {
            inter_op_threads: threads,
            ..SessionOptions::default()
        },
    )
    .unwrap()
}

fn run(g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]) -> Vec<Tensor> {
    session(g, 1).run(feeds, fetches, &[]).unwrap()
}

/// A deterministic pseudo-random sequence in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// Distinct values in (-1, 1) (no ties, in f32 too), shuffled deterministically.
fn distinct(n: usize, seed: u64) -> Vec<f64> {
    let r = random(n, seed);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| r[a].total_cmp(&r[b]));
    let mut v = vec![0.0; n];
    for (rank, &i) in idx.iter().enumerate() {
        v[i] = 2.0 * (rank as f64 + 0.5) / n as f64 - 1.0;
    }
    v
}

fn tensor(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    match dtype {
        DType::F32 => Tensor::new(shape, v.iter().map(|&x| x as f32).collect()),
        _ => Tensor::new(shape, v.to_vec()),
    }
    .unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

/// NHWC data (n, h, w, c) to NCHW.
fn to_nchw(x: &[f64], [n, h, w, c]: [usize; 4]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    out.push(x[((i * h + y) * w + xx) * c + ch]);
                }
            }
        }
    }
    out
}

/// NCHW data (dims given as n, h, w, c) back to NHWC.
fn from_nchw(x: &[f64], [n, h, w, c]: [usize; 4]) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    let mut k = 0;
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    out[((i * h + y) * w + xx) * c + ch] = x[k];
                    k += 1;
                }
            }
        }
    }
    out
}

fn layout(dims: [usize; 4], format: &str) -> Vec<usize> {
    let [n, h, w, c] = dims;
    if format == "NCHW" {
        vec![n, c, h, w]
    } else {
        dims.to_vec()
    }
}

fn spatial(v: [i64; 2], format: &str) -> Vec<i64> {
    if format == "NCHW" {
        vec![1, 1, v[0], v[1]]
    } else {
        vec![1, v[0], v[1], 1]
    }
}

fn pad_of(s: &str) -> Padding {
    Padding::parse(s).unwrap()
}

// ---- naive references (NHWC, f64) ---------------------------------------------------------------

#[derive(Clone, Debug)]
struct ConvCase {
    x: [usize; 4],
    f: [usize; 4],
    strides: [usize; 2],
    dilations: [usize; 2],
    padding: &'static str,
}

impl ConvCase {
    fn geometry(&self) -> ([usize; 4], [usize; 2]) {
        let (oh, pt, _) = window_geometry(
            self.x[1],
            self.f[0],
            self.strides[0],
            self.dilations[0],
            pad_of(self.padding),
        )
        .unwrap();
        let (ow, pl, _) = window_geometry(
            self.x[2],
            self.f[1],
            self.strides[1],
            self.dilations[1],
            pad_of(self.padding),
        )
        .unwrap();
        ([self.x[0], oh, ow, self.f[3]], [pt, pl])
    }

    /// Calls `visit(out_index, in_index, filter_index)` for every product of the convolution.
    fn for_each_product(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let ([n, oh, ow, o], [pt, pl]) = self.geometry();
        let [_, h, w, c] = self.x;
        let [fh, fw, _, _] = self.f;
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for kh in 0..fh {
                        let iy =
                            (oy * self.strides[0] + kh * self.dilations[0]) as isize - pt as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kw in 0..fw {
                            let ix = (ox * self.strides[1] + kw * self.dilations[1]) as isize
                                - pl as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..c {
                                let xi = ((b * h + iy as usize) * w + ix as usize) * c + ci;
                                for co in 0..o {
                                    let oi = ((b * oh + oy) * ow + ox) * o + co;
                                    let fi = ((kh * fw + kw) * c + ci) * o + co;
                                    visit(oi, xi, fi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    fn forward(&self, x: &[f64], f: &[f64]) -> Vec<f64> {
        let (od, _) = self.geometry();
        let mut out = vec![0.0; od.iter().product()];
        self.for_each_product(|o, i, k| out[o] += x[i] * f[k]);
        out
    }
    fn backprop_input(&self, f: &[f64], dy: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; self.x.iter().product()];
        self.for_each_product(|o, i, k| dx[i] += dy[o] * f[k]);
        dx
    }
    fn backprop_filter(&self, x: &[f64], dy: &[f64]) -> Vec<f64> {
        let mut df = vec![0.0; self.f.iter().product()];
        self.for_each_product(|o, i, k| df[k] += dy[o] * x[i]);
        df
    }
}

fn conv_cases() -> Vec<ConvCase> {
    let c = |x, f, strides, dilations, padding| ConvCase {
        x,
        f,
        strides,
        dilations,
        padding,
    };
    vec![
        c([2, 7, 6, 3], [3, 3, 3, 4], [1, 1], [1, 1], "SAME"),
        c([2, 7, 6, 3], [3, 3, 3, 4], [1, 1], [1, 1], "VALID"),
        c([1, 8, 9, 2], [3, 2, 2, 5], [2, 3], [1, 1], "SAME"),
        c([1, 8, 9, 2], [3, 2, 2, 5], [2, 3], [1, 1], "VALID"),
        c([2, 9, 9, 3], [3, 3, 3, 2], [1, 1], [2, 2], "SAME"),
        c([2, 9, 10, 3], [2, 3, 3, 2], [1, 2], [2, 3], "VALID"),
        c([3, 5, 5, 4], [1, 1, 4, 6], [1, 1], [1, 1], "SAME"),
        c([2, 6, 6, 4], [1, 1, 4, 3], [2, 2], [1, 1], "VALID"),
        c([2, 5, 4, 1], [5, 5, 1, 3], [1, 1], [1, 1], "SAME"),
        c([1, 4, 4, 2], [4, 4, 2, 2], [1, 1], [1, 1], "VALID"),
        c([2, 6, 7, 3], [4, 4, 3, 2], [3, 2], [1, 1], "SAME"),
        // Few input channels (direct loops) with full 16-channel blocks and a remainder.
        c([3, 9, 7, 1], [5, 5, 1, 37], [1, 1], [1, 1], "SAME"),
        c([2, 11, 9, 2], [3, 3, 2, 20], [2, 1], [2, 1], "VALID"),
        // Direct tiles: a pair of channel blocks and a single one; two pairs with a stride;
        // a single block with dilation; 50 filter rows (passes padded to a tile size).
        c([3, 9, 7, 1], [5, 5, 1, 48], [1, 1], [1, 1], "SAME"),
        c([2, 7, 5, 2], [3, 3, 2, 64], [2, 2], [1, 1], "SAME"),
        c([1, 6, 7, 3], [2, 2, 3, 16], [1, 1], [1, 2], "VALID"),
        c([2, 6, 6, 2], [5, 5, 2, 32], [1, 1], [1, 1], "SAME"),
        // LeNet-sized, large enough to take the parallel chunked paths.
        c([8, 28, 28, 1], [5, 5, 1, 32], [1, 1], [1, 1], "SAME"),
        c([4, 14, 14, 16], [5, 5, 16, 24], [1, 1], [1, 1], "SAME"),
    ]
}

// ---- convolution values -----------------------------------------------------------------------

/// Runs Conv2D and both backprops for a case in `format` and `dtype`; returns (y, dx, df) in
/// NHWC order.
fn run_conv(
    case: &ConvCase,
    format: &str,
    dtype: DType,
    x: &[f64],
    f: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (od, _) = case.geometry();
    let (xs, ys) = (layout(case.x, format), layout(od, format));
    let mut g = Graph::new();
    let xp = g.placeholder("x", dtype, Shape::known(&xs)).unwrap();
    let fp = g.placeholder("f", dtype, Shape::known(&case.f)).unwrap();
    let dyp = g.placeholder("dy", dtype, Shape::known(&ys)).unwrap();
    let strides = spatial([case.strides[0] as i64, case.strides[1] as i64], format);
    let dil = spatial([case.dilations[0] as i64, case.dilations[1] as i64], format);
    let y = g
        .conv2d_full(xp, fp, &strides, case.padding, format, &dil)
        .unwrap();
    assert_eq!(g.shape(y), &Shape::known(&ys), "{case:?} {format}");
    let xsz: Vec<i32> = xs.iter().map(|&d| d as i32).collect();
    let xsz = g.constant_from(&[4], xsz).unwrap();
    let fsz: Vec<i32> = case.f.iter().map(|&d| d as i32).collect();
    let fsz = g.constant_from(&[4], fsz).unwrap();
    let dx = conv_attrs(
        g.build("Conv2DBackpropInput"),
        &strides,
        case.padding,
        format,
        &dil,
    )
    .inputs([xsz, fp, dyp])
    .finish1()
    .unwrap();
    let df = conv_attrs(
        g.build("Conv2DBackpropFilter"),
        &strides,
        case.padding,
        format,
        &dil,
    )
    .inputs([xp, fsz, dyp])
    .finish1()
    .unwrap();
    assert_eq!(g.shape(dx), &Shape::known(&xs));
    assert_eq!(g.shape(df), &Shape::known(&case.f));
    let nhwc_in = |v: &[f64], d: [usize; 4]| {
        if format == "NCHW" {
            to_nchw(v, d)
        } else {
            v.to_vec()
        }
    };
    let feeds = [
        (xp, tensor(dtype, &xs, &nhwc_in(x, case.x))),
        (fp, tensor(dtype, &case.f, f)),
        (dyp, tensor(dtype, &ys, &nhwc_in(dy, od))),
    ];
    // Two threads, so the kernels' parallel paths run.
    let out = session(&g, 2).run(&feeds, &[y, dx, df], &[]).unwrap();
    let back = |t: &Tensor, d: [usize; 4]| {
        let v = t.to_f64_vec();
        if format == "NCHW" {
            from_nchw(&v, d)
        } else {
            v
        }
    };
    (
        back(&out[0], od),
        back(&out[1], case.x),
        out[2].to_f64_vec(),
    )
}

#[test]
fn conv2d_and_its_backprops_match_the_naive_reference() {
    for (k, case) in conv_cases().iter().enumerate() {
        let (od, _) = case.geometry();
        let x = random(case.x.iter().product(), 10 + k as u64);
        let f = random(case.f.iter().product(), 20 + k as u64);
        let dy = random(od.iter().product(), 30 + k as u64);
        let want = (
            case.forward(&x, &f),
            case.backprop_input(&f, &dy),
            case.backprop_filter(&x, &dy),
        );
        for format in ["NHWC", "NCHW"] {
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
                let what = format!("{case:?} {format} {dtype}");
                let (y, dx, df) = run_conv(case, format, dtype, &x, &f, &dy);
                assert_close(&y, &want.0, tol, &format!("Conv2D {what}"));
                assert_close(&dx, &want.1, tol, &format!("Conv2DBackpropInput {what}"));
                assert_close(&df, &want.2, tol, &format!("Conv2DBackpropFilter {what}"));
            }
        }
    }
}

#[test]
fn fused_conv2d_and_the_fused_filter_backprop_match_the_reference() {
    for (k, case) in conv_cases().iter().enumerate() {
        let (od, _) = case.geometry();
        let o = case.f[3];
        let x = random(case.x.iter().product(), 110 + k as u64);
        let f = random(case.f.iter().product(), 120 + k as u64);
        let b: Vec<f64> = random(o, 130 + k as u64).iter().map(|v| 3.0 * v).collect();
        let dy = random(od.iter().product(), 140 + k as u64);
        let conv = case.forward(&x, &f);
        let want_df = case.backprop_filter(&x, &dy);
        let mut want_db = vec![0.0; o];
        for (i, v) in dy.iter().enumerate() {
            want_db[i % o] += v;
        }
        for format in ["NHWC", "NCHW"] {
            let (xs, ys) = (layout(case.x, format), layout(od, format));
            let strides = spatial([case.strides[0] as i64, case.strides[1] as i64], format);
            let dil = spatial([case.dilations[0] as i64, case.dilations[1] as i64], format);
            let mut g = Graph::new();
            let xp = g.placeholder("x", DType::F64, Shape::known(&xs)).unwrap();
            let fp = g
                .placeholder("f", DType::F64, Shape::known(&case.f))
                .unwrap();
            let bp = g.placeholder("b", DType::F64, Shape::known(&[o])).unwrap();
            let dyp = g.placeholder("dy", DType::F64, Shape::known(&ys)).unwrap();
            let acts = ["Linear", "Relu", "Relu6"];
            let mut fetch: Vec<Output> = acts
                .iter()
                .map(|a| {
                    g.fused_conv2d(xp, fp, bp, &strides, case.padding, format, &dil, a)
                        .unwrap()
                })
                .collect();
            let fsz: Vec<i32> = case.f.iter().map(|&d| d as i32).collect();
            let fsz = g.constant_from(&[4], fsz).unwrap();
            let builder = g.build("Conv2DBackpropFilterBias");
            let id = conv_attrs(builder, &strides, case.padding, format, &dil)
                .inputs([xp, fsz, dyp])
                .finish()
                .unwrap();
            assert_eq!(g.shape(Output::new(id, 1)), &Shape::known(&[o]));
            fetch.extend([Output::new(id, 0), Output::new(id, 1)]);
            let conv_in = |v: &[f64], d| {
                if format == "NCHW" {
                    to_nchw(v, d)
                } else {
                    v.to_vec()
                }
            };
            let feeds = [
                (xp, tensor(DType::F64, &xs, &conv_in(&x, case.x))),
                (fp, tensor(DType::F64, &case.f, &f)),
                (bp, tensor(DType::F64, &[o], &b)),
                (dyp, tensor(DType::F64, &ys, &conv_in(&dy, od))),
            ];
            let out = session(&g, 2).run(&feeds, &fetch, &[]).unwrap();
            let what = format!("{case:?} {format}");
            for (i, act) in acts.iter().enumerate() {
                let mut got = out[i].to_f64_vec();
                if format == "NCHW" {
                    got = from_nchw(&got, od);
                }
                let want: Vec<f64> = conv
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        let z = v + b[j % o];
                        match *act {
                            "Linear" => z,
                            "Relu" => z.max(0.0),
                            _ => z.clamp(0.0, 6.0),
                        }
                    })
                    .collect();
                assert_close(&got, &want, 1e-12, &format!("FusedConv2D {act} {what}"));
            }
            assert_close(
                &out[3].to_f64_vec(),
                &want_df,
                1e-12,
                &format!("filter {what}"),
            );
            assert_close(
                &out[4].to_f64_vec(),
                &want_db,
                1e-12,
                &format!("bias {what}"),
            );
        }
    }
}

#[test]
fn same_padding_follows_tensorflow_arithmetic() {
    // TF: out = ceil(in / stride); pad = max((out - 1) * stride + k - in, 0), before = pad / 2.
    assert_eq!(window_geometry(5, 3, 2, 1, Padding::Same), Ok((3, 1, 1)));
    assert_eq!(window_geometry(6, 3, 2, 1, Padding::Same), Ok((3, 0, 1)));
    assert_eq!(window_geometry(28, 5, 1, 1, Padding::Same), Ok((28, 2, 2)));
    assert_eq!(window_geometry(28, 2, 2, 1, Padding::Same), Ok((14, 0, 0)));
    assert_eq!(window_geometry(7, 2, 2, 1, Padding::Same), Ok((4, 0, 1)));
    assert_eq!(window_geometry(10, 3, 1, 2, Padding::Same), Ok((10, 2, 2)));
    assert_eq!(window_geometry(10, 3, 3, 2, Padding::Valid), Ok((2, 0, 0)));
    assert_eq!(window_geometry(1, 4, 1, 1, Padding::Same), Ok((1, 1, 2)));
    assert!(window_geometry(3, 4, 1, 1, Padding::Valid).is_err());
    // A 2x2 input, 2x2 filter of ones, stride 1, SAME: the padding goes after.
    let mut g = Graph::new();
    let x = g
        .constant_from(&[1, 2, 2, 1], vec![1.0f32, 2.0, 3.0, 4.0])
        .unwrap();
    let f = g.constant_from(&[2, 2, 1, 1], vec![1.0f32; 4]).unwrap();
    let y = g.conv2d(x, f, &[1, 1, 1, 1], "SAME").unwrap();
    let out = run(&g, &[], &[y]);
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[10.0, 6.0, 7.0, 4.0]);
}

#[test]
fn conv2d_of_empty_batches_and_channels() {
    for (x, f) in [
        ([0, 4, 4, 2], [3, 3, 2, 3]),
        ([2, 4, 4, 0], [3, 3, 0, 3]),
        ([2, 4, 4, 2], [3, 3, 2, 0]),
    ] {
        let mut g = Graph::new();
        let xp = g.placeholder("x", DType::F32, Shape::known(&x)).unwrap();
        let fp = g.placeholder("f", DType::F32, Shape::known(&f)).unwrap();
        let y = g.conv2d(xp, fp, &[1, 1, 1, 1], "SAME").unwrap();
        let (dx, df) = {
            let gr = gradients(&mut g, &[y], &[xp, fp], None).unwrap();
            (gr[0].unwrap(), gr[1].unwrap())
        };
        let feeds = [
            (xp, tensor(DType::F32, &x, &vec![1.0; x.iter().product()])),
            (fp, tensor(DType::F32, &f, &vec![1.0; f.iter().product()])),
        ];
        let out = run(&g, &feeds, &[y, dx, df]);
        assert_eq!(out[0].shape(), &[x[0], 4, 4, f[3]]);
        assert!(out[0].to_f64_vec().iter().all(|&v| v == 0.0));
        assert_eq!(out[1].shape(), &x);
        assert_eq!(out[2].shape(), &f);
    }
}

// ---- pooling values ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct PoolCase {
    x: [usize; 4],
    k: [usize; 2],
    s: [usize; 2],
    padding: &'static str,
}

impl PoolCase {
    fn out(&self) -> ([usize; 4], [usize; 2]) {
        let (oh, pt, _) =
            window_geometry(self.x[1], self.k[0], self.s[0], 1, pad_of(self.padding)).unwrap();
        let (ow, pl, _) =
            window_geometry(self.x[2], self.k[1], self.s[1], 1, pad_of(self.padding)).unwrap();
        ([self.x[0], oh, ow, self.x[3]], [pt, pl])
    }
    /// The input indices of each output's window, in row-major window order.
    fn windows(&self) -> Vec<Vec<usize>> {
        let ([n, oh, ow, c], [pt, pl]) = self.out();
        let [_, h, w, _] = self.x;
        let mut out = Vec::new();
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut win = Vec::new();
                        for ky in 0..self.k[0] {
                            for kx in 0..self.k[1] {
                                let iy = (oy * self.s[0] + ky) as isize - pt as isize;
                                let ix = (ox * self.s[1] + kx) as isize - pl as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    win.push(((b * h + iy as usize) * w + ix as usize) * c + ch);
                                }
                            }
                        }
                        out.push(win);
                    }
                }
            }
        }
        out
    }
}

fn pool_cases() -> Vec<PoolCase> {
    let p = |x, k, s, padding| PoolCase { x, k, s, padding };
    vec![
        p([2, 6, 6, 3], [2, 2], [2, 2], "SAME"),
        p([2, 7, 5, 3], [2, 2], [2, 2], "SAME"),
        p([1, 7, 5, 2], [3, 3], [2, 2], "VALID"),
        p([2, 8, 8, 2], [3, 3], [2, 2], "SAME"),
        p([1, 5, 6, 4], [3, 2], [1, 3], "SAME"),
        p([1, 4, 4, 1], [4, 4], [1, 1], "VALID"),
        p([1, 3, 3, 2], [5, 5], [1, 1], "SAME"),
        p([8, 28, 28, 32], [2, 2], [2, 2], "SAME"),
        // Windows apart (stride above the window): elements outside every window.
        p([2, 7, 8, 3], [2, 2], [3, 3], "SAME"),
        p([1, 9, 9, 2], [3, 2], [3, 2], "VALID"),
    ]
}

/// Runs MaxPool, AvgPool, MaxPoolGrad, AvgPoolGrad and MaxPoolGradGrad; results in NHWC.
fn run_pools(
    case: &PoolCase,
    format: &str,
    dtype: DType,
    x: &[f64],
    dy: &[f64],
    ddx: &[f64],
) -> Vec<Vec<f64>> {
    let (od, _) = case.out();
    let (xs, ys) = (layout(case.x, format), layout(od, format));
    let mut g = Graph::new();
    let xp = g.placeholder("x", dtype, Shape::known(&xs)).unwrap();
    let dyp = g.placeholder("dy", dtype, Shape::known(&ys)).unwrap();
    let ddxp = g.placeholder("ddx", dtype, Shape::known(&xs)).unwrap();
    let k = spatial([case.k[0] as i64, case.k[1] as i64], format);
    let s = spatial([case.s[0] as i64, case.s[1] as i64], format);
    let mp = g.max_pool(xp, &k, &s, case.padding, format).unwrap();
    let ap = g.avg_pool(xp, &k, &s, case.padding, format).unwrap();
    let mg = pool_attrs(g.build("MaxPoolGrad"), &k, &s, case.padding, format)
        .inputs([xp, mp, dyp])
        .finish1()
        .unwrap();
    let mgg = pool_attrs(g.build("MaxPoolGradGrad"), &k, &s, case.padding, format)
        .inputs([xp, mp, ddxp])
        .finish1()
        .unwrap();
    let sizes: Vec<i32> = xs.iter().map(|&d| d as i32).collect();
    let sizes = g.constant_from(&[4], sizes).unwrap();
    let ag = pool_attrs(g.build("AvgPoolGrad"), &k, &s, case.padding, format)
        .inputs([sizes, dyp])
        .finish1()
        .unwrap();
    let conv = |v: &[f64], d| {
        if format == "NCHW" {
            to_nchw(v, d)
        } else {
            v.to_vec()
        }
    };
    let feeds = [
        (xp, tensor(dtype, &xs, &conv(x, case.x))),
        (dyp, tensor(dtype, &ys, &conv(dy, od))),
        (ddxp, tensor(dtype, &xs, &conv(ddx, case.x))),
    ];
    let out = session(&g, 2)
        .run(&feeds, &[mp, ap, mg, ag, mgg], &[])
        .unwrap();
    let dims = [od, od, case.x, case.x, od];
    out.iter()
        .zip(dims)
        .map(|(t, d)| {
            let v = t.to_f64_vec();
            if format == "NCHW" {
                from_nchw(&v, d)
            } else {
                v
            }
        })
        .collect()
}

#[test]
fn pooling_and_its_gradients_match_the_naive_reference() {
    for (k, case) in pool_cases().iter().enumerate() {
        let (od, _) = case.out();
        let nx: usize = case.x.iter().product();
        let x = distinct(nx, 40 + k as u64);
        let dy = random(od.iter().product(), 50 + k as u64);
        let ddx = random(nx, 60 + k as u64);
        let wins = case.windows();
        let argmax = |w: &Vec<usize>| {
            let mut best = w[0];
            for &i in &w[1..] {
                if x[i] > x[best] {
                    best = i;
                }
            }
            best
        };
        let want_max: Vec<f64> = wins.iter().map(|w| x[argmax(w)]).collect();
        let want_avg: Vec<f64> = wins
            .iter()
            .map(|w| w.iter().map(|&i| x[i]).sum::<f64>() / w.len() as f64)
            .collect();
        let (mut want_mg, mut want_ag) = (vec![0.0; nx], vec![0.0; nx]);
        for (o, w) in wins.iter().enumerate() {
            want_mg[argmax(w)] += dy[o];
            for &i in w {
                want_ag[i] += dy[o] / w.len() as f64;
            }
        }
        let want_mgg: Vec<f64> = wins.iter().map(|w| ddx[argmax(w)]).collect();
        let want = [want_max, want_avg, want_mg, want_ag, want_mgg];
        let names = [
            "MaxPool",
            "AvgPool",
            "MaxPoolGrad",
            "AvgPoolGrad",
            "MaxPoolGradGrad",
        ];
        for format in ["NHWC", "NCHW"] {
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
                let got = run_pools(case, format, dtype, &x, &dy, &ddx);
                for i in 0..5 {
                    assert_close(
                        &got[i],
                        &want[i],
                        tol,
                        &format!("{} {case:?} {format} {dtype}", names[i]),
                    );
                }
            }
        }
    }
}

#[test]
fn max_pool_grad_sends_ties_to_the_first_maximum() {
    // One 2x2 window of equal values, then a window whose max appears twice.
    let mut g = Graph::new();
    let x = g
        .constant_from(
            &[1, 2, 4, 1],
            vec![5.0f32, 5.0, 1.0, 7.0, 5.0, 5.0, 7.0, 2.0],
        )
        .unwrap();
    let y = g
        .max_pool(x, &[1, 2, 2, 1], &[1, 2, 2, 1], "VALID", "NHWC")
        .unwrap();
    let dy = g.constant_from(&[1, 1, 2, 1], vec![1.0f32, 10.0]).unwrap();
    let dx = g
        .build("MaxPoolGrad")
        .inputs([x, y, dy])
        .attr("ksize", vec![1i64, 2, 2, 1])
        .attr("strides", vec![1i64, 2, 2, 1])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    let out = run(&g, &[], &[y, dx]);
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[5.0, 7.0]);
    assert_eq!(
        out[1].as_slice::<f32>().unwrap(),
        &[1.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn avg_pool_same_divides_by_the_valid_count() {
    // TF: avg_pool of [[1, 2, 3], [4, 5, 6], [7, 8, 9]], 2x2 window, stride 2, SAME
    // = [[3, 4.5], [7.5, 9]].
    let mut g = Graph::new();
    let x = g
        .constant_from(&[1, 3, 3, 1], (1..=9).map(|v| v as f32).collect())
        .unwrap();
    let y = g
        .avg_pool(x, &[1, 2, 2, 1], &[1, 2, 2, 1], "SAME", "NHWC")
        .unwrap();
    let m = g
        .max_pool(x, &[1, 2, 2, 1], &[1, 2, 2, 1], "SAME", "NHWC")
        .unwrap();
    let out = run(&g, &[], &[y, m]);
    assert_eq!(out[0].shape(), &[1, 2, 2, 1]);
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[3.0, 4.5, 7.5, 9.0]);
    assert_eq!(out[1].as_slice::<f32>().unwrap(), &[5.0, 6.0, 8.0, 9.0]);
}

// ---- batch normalization and LRN values -------------------------------------------------------

#[test]
fn fused_batch_norm_matches_the_reference() {
    let dims = [3, 4, 5, 6];
    let (n, c) = (dims[0] * dims[1] * dims[2], dims[3]);
    let x: Vec<f64> = random(n * c, 70).iter().map(|v| 3.0 * v + 1.0).collect();
    let scale: Vec<f64> = random(c, 71).iter().map(|v| v + 1.5).collect();
    let offset = random(c, 72);
    let mean_in = random(c, 73);
    let var_in: Vec<f64> = random(c, 74).iter().map(|v| v + 1.2).collect();
    let eps = 1e-3;
    let mut bmean = vec![0.0; c];
    let mut bvar = vec![0.0; c];
    for r in 0..n {
        for j in 0..c {
            bmean[j] += x[r * c + j] / n as f64;
        }
    }
    for r in 0..n {
        for j in 0..c {
            bvar[j] += (x[r * c + j] - bmean[j]).powi(2) / n as f64;
        }
    }
    let norm = |m: &[f64], v: &[f64]| -> Vec<f64> {
        (0..n * c)
            .map(|i| {
                let j = i % c;
                (x[i] - m[j]) / (v[j] + eps).sqrt() * scale[j] + offset[j]
            })
            .collect()
    };
    for format in ["NHWC", "NCHW"] {
        for training in [true, false] {
            for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
                let mut g = Graph::new();
                let xs = layout(dims, format);
                let xp = g.placeholder("x", dtype, Shape::known(&xs)).unwrap();
                let v = |g: &mut Graph, name, d: &[f64]| {
                    g.placeholder(name, dtype, Shape::known(&[d.len()]))
                        .unwrap()
                };
                let (sp, op) = (v(&mut g, "s", &scale), v(&mut g, "o", &offset));
                let (mp, vp) = (v(&mut g, "m", &mean_in), v(&mut g, "v", &var_in));
                let bn = g
                    .fused_batch_norm(xp, sp, op, mp, vp, eps, format, training)
                    .unwrap();
                let xin = if format == "NCHW" {
                    to_nchw(&x, dims)
                } else {
                    x.clone()
                };
                let feeds = [
                    (xp, tensor(dtype, &xs, &xin)),
                    (sp, tensor(dtype, &[c], &scale)),
                    (op, tensor(dtype, &[c], &offset)),
                    (mp, tensor(dtype, &[c], &mean_in)),
                    (vp, tensor(dtype, &[c], &var_in)),
                ];
                let rs = [Output::new(bn.y.node, 3), Output::new(bn.y.node, 4)];
                let out = run(
                    &g,
                    &feeds,
                    &[bn.y, bn.batch_mean, bn.batch_variance, rs[0], rs[1]],
                );
                let mut y = out[0].to_f64_vec();
                if format == "NCHW" {
                    y = from_nchw(&y, dims);
                }
                let what = format!("{format} training={training} {dtype}");
                if training {
                    assert_close(&y, &norm(&bmean, &bvar), tol, &what);
                    assert_close(&out[1].to_f64_vec(), &bmean, tol, &what);
                    let corrected: Vec<f64> =
                        bvar.iter().map(|v| v * n as f64 / (n - 1) as f64).collect();
                    assert_close(&out[2].to_f64_vec(), &corrected, tol, &what);
                    assert_close(&out[3].to_f64_vec(), &bmean, tol, &what);
                    assert_close(&out[4].to_f64_vec(), &bvar, tol, &what);
                } else {
                    assert_close(&y, &norm(&mean_in, &var_in), tol, &what);
                    assert_close(&out[1].to_f64_vec(), &mean_in, tol, &what);
                    assert_close(&out[2].to_f64_vec(), &var_in, tol, &what);
                }
            }
        }
    }
}

#[test]
fn fused_batch_norm_training_accepts_empty_statistics() {
    let mut g = Graph::new();
    let x = g
        .constant_from(&[2, 1, 1, 2], vec![1.0f32, 10.0, 3.0, 30.0])
        .unwrap();
    let ones = g.constant_from(&[2], vec![1.0f32, 1.0]).unwrap();
    let zeros = g.constant_from(&[2], vec![0.0f32, 0.0]).unwrap();
    let empty = g.constant_from(&[0], Vec::<f32>::new()).unwrap();
    let bn = g
        .fused_batch_norm(x, ones, zeros, empty, empty, 0.0, "NHWC", true)
        .unwrap();
    let out = run(&g, &[], &[bn.y, bn.batch_mean, bn.batch_variance]);
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[-1.0, -1.0, 1.0, 1.0]);
    assert_eq!(out[1].as_slice::<f32>().unwrap(), &[2.0, 20.0]);
    assert_eq!(out[2].as_slice::<f32>().unwrap(), &[2.0, 200.0]);
}

#[test]
fn lrn_matches_tensorflow_formula() {
    let dims = [2, 3, 2, 9];
    let c = dims[3];
    let x = random(dims.iter().product(), 80);
    for (r, bias, alpha, beta) in [
        (2i64, 1.0, 1e-1, 0.75),
        (5, 2.0, 1e-4, 0.75),
        (0, 1.0, 1.0, 0.5),
    ] {
        let mut g = Graph::new();
        let xp = g.placeholder("x", DType::F64, Shape::known(&dims)).unwrap();
        let y = g.lrn(xp, r, bias, alpha, beta).unwrap();
        let out = run(&g, &[(xp, tensor(DType::F64, &dims, &x))], &[y]);
        let want: Vec<f64> = (0..x.len())
            .map(|i| {
                let (row, j) = (i / c, i % c);
                let lo = j.saturating_sub(r as usize);
                let hi = (j + r as usize + 1).min(c);
                let s: f64 = (lo..hi).map(|k| x[row * c + k].powi(2)).sum();
                x[i] / (bias + alpha * s).powf(beta)
            })
            .collect();
        assert_close(&out[0].to_f64_vec(), &want, 1e-12, &format!("LRN r={r}"));
    }
}

// ---- errors -----------------------------------------------------------------------------------

fn graph_error(r: Result<Output, GraphError>, parts: &[&str]) {
    let e = r.expect_err("building the node should fail").to_string();
    for p in parts {
        assert!(e.contains(p), "missing {p:?} in: {e}");
    }
}

/// Runs a step that must fail in the kernel of `fetch`'s node with every `part` in the message.
fn kernel_error(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output, parts: &[&str]) {
    let node = g.node(fetch.node).name.clone();
    let e = session(g, 1)
        .run(feeds, &[fetch], &[])
        .expect_err("the step should fail");
    let msg = e.to_string();
    assert!(matches!(e, Error::Kernel { .. }), "{msg}");
    assert!(msg.contains(&format!("`{node}`")), "no node name in: {msg}");
    for p in parts {
        assert!(msg.contains(p), "missing {p:?} in: {msg}");
    }
}

#[test]
fn bad_attributes_and_shapes_are_graph_errors() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 8, 8, 3]))
        .unwrap();
    let f = g
        .placeholder("f", DType::F32, Shape::known(&[3, 3, 3, 4]))
        .unwrap();
    let f5 = g
        .placeholder("f5", DType::F32, Shape::known(&[3, 3, 5, 4]))
        .unwrap();
    let big = g
        .placeholder("big", DType::F32, Shape::known(&[9, 9, 3, 4]))
        .unwrap();
    let x3 = g
        .placeholder("x3", DType::F32, Shape::known(&[8, 8, 3]))
        .unwrap();
    let xi = g
        .placeholder("xi", DType::I32, Shape::known(&[2, 8, 8, 3]))
        .unwrap();
    let ones = [1i64, 1, 1, 1];
    graph_error(
        g.conv2d(x, f, &ones, "FULL"),
        &["padding must be SAME or VALID", "FULL"],
    );
    graph_error(g.conv2d(x, f5, &ones, "SAME"), &["channels", "3 vs 5"]);
    graph_error(
        g.conv2d(x, big, &ones, "VALID"),
        &["larger than the input", "VALID"],
    );
    graph_error(
        g.conv2d(x3, f, &ones, "SAME"),
        &["input must be 4-D", "[8, 8, 3]"],
    );
    graph_error(g.conv2d(x, x3, &ones, "SAME"), &["filter must be 4-D"]);
    graph_error(g.conv2d(xi, f, &ones, "SAME"), &["dtype"]);
    graph_error(
        g.conv2d(x, f, &[1, 1, 1], "SAME"),
        &["strides must have 4 entries"],
    );
    graph_error(
        g.conv2d(x, f, &[2, 1, 1, 1], "SAME"),
        &["batch and channel", "[2, 1, 1, 1]"],
    );
    graph_error(
        g.conv2d(x, f, &[1, 0, 1, 1], "SAME"),
        &["strides must be positive"],
    );
    let b4 = g.placeholder("b4", DType::F32, Shape::known(&[4])).unwrap();
    let b5 = g.placeholder("b5", DType::F32, Shape::known(&[5])).unwrap();
    graph_error(
        g.fused_conv2d(x, f, b5, &ones, "SAME", "NHWC", &ones, "Relu"),
        &["bias must have one entry per output channel", "4 vs 5"],
    );
    graph_error(
        g.fused_conv2d(x, f, b4, &ones, "SAME", "NHWC", &ones, "Tanh"),
        &["activation must be Linear, Relu or Relu6", "Tanh"],
    );
    graph_error(
        g.conv2d_full(x, f, &ones, "SAME", "NWHC", &ones),
        &["data_format must be NHWC or NCHW", "NWHC"],
    );
    graph_error(
        g.conv2d_full(x, f, &ones, "SAME", "NHWC", &[1, 2, 2, 2]),
        &["dilations must be 1 in the batch and channel dims"],
    );
    graph_error(
        g.max_pool(x, &[1, 9, 9, 1], &ones, "VALID", "NHWC"),
        &["larger than the input"],
    );
    graph_error(
        g.max_pool(x, &[1, 2, 2, 2], &ones, "VALID", "NHWC"),
        &["ksize"],
    );
    graph_error(
        g.avg_pool(x, &[1, 2, 2, 1], &ones, "same", "NHWC"),
        &["padding"],
    );
    graph_error(
        g.max_pool(x3, &[1, 2, 2, 1], &ones, "SAME", "NHWC"),
        &["4-D"],
    );
    graph_error(g.lrn(x3, 2, 1.0, 1.0, 0.5), &["4-D"]);
    graph_error(g.lrn(x, -1, 1.0, 1.0, 0.5), &["depth_radius"]);
    let c4 = g.placeholder("c4", DType::F32, Shape::known(&[4])).unwrap();
    let c3 = g.placeholder("c3", DType::F32, Shape::known(&[3])).unwrap();
    graph_error(
        g.fused_batch_norm(x, c4, c3, c3, c3, 1e-3, "NHWC", true)
            .map(|b| b.y),
        &["scale must have one entry per channel"],
    );
    graph_error(
        g.fused_batch_norm(x, c3, c3, c3, c3, -1.0, "NHWC", true)
            .map(|b| b.y),
        &["epsilon"],
    );
    let empty = g.constant_from(&[0], Vec::<f32>::new()).unwrap();
    graph_error(
        g.fused_batch_norm(x, c3, c3, empty, c3, 1e-3, "NHWC", false)
            .map(|b| b.y),
        &["mean must have one entry per channel"],
    );
    // The backprop ops check out_backprop against the convolution they invert.
    let sizes = g.constant_from(&[4], vec![2i32, 8, 8, 3]).unwrap();
    let wrong_dy = g
        .placeholder("dy", DType::F32, Shape::known(&[2, 7, 8, 4]))
        .unwrap();
    graph_error(
        g.build("Conv2DBackpropInput")
            .inputs([sizes, f, wrong_dy])
            .attr("strides", ones.to_vec())
            .attr("padding", "SAME")
            .finish1(),
        &["out_backprop has shape [2, 7, 8, 4]", "[2, 8, 8, 4]"],
    );
    let three = g.constant_from(&[3], vec![8i32, 8, 3]).unwrap();
    graph_error(
        g.build("Conv2DBackpropInput")
            .inputs([three, f, wrong_dy])
            .attr("strides", ones.to_vec())
            .attr("padding", "SAME")
            .finish1(),
        &["input_sizes must be a vector of 4 sizes"],
    );
}

#[test]
fn bad_inputs_are_kernel_errors_naming_the_node() {
    // Shapes left unknown to the graph, so the kernels see the bad values.
    let mut g = Graph::new();
    let u = |g: &mut Graph, name: &str, rank| {
        g.placeholder(name, DType::F32, Shape::unknown_dims(rank))
            .unwrap()
    };
    let x = u(&mut g, "x", 4);
    let f = u(&mut g, "f", 4);
    let ones = [1i64, 1, 1, 1];
    let conv = g.conv2d(x, f, &ones, "SAME").unwrap();
    let valid = g.conv2d(x, f, &ones, "VALID").unwrap();
    let t = |shape: &[usize]| tensor(DType::F32, shape, &vec![0.5; shape.iter().product()]);
    kernel_error(
        &g,
        &[(x, t(&[1, 5, 5, 3])), (f, t(&[3, 3, 2, 4]))],
        conv,
        &["input has 3 channels but the filter expects 2"],
    );
    kernel_error(
        &g,
        &[(x, t(&[1, 2, 5, 3])), (f, t(&[3, 3, 3, 4]))],
        valid,
        &["larger than the input", "VALID"],
    );
    kernel_error(
        &g,
        &[(x, t(&[1, 5, 5, 3])), (f, t(&[0, 3, 3, 4]))],
        conv,
        &["at least 1x1"],
    );
    let huge = g
        .conv2d_full(x, f, &ones, "SAME", "NHWC", &[1, 1 << 40, 1 << 40, 1])
        .unwrap();
    kernel_error(
        &g,
        &[(x, t(&[1, 5, 5, 1])), (f, t(&[2, 2, 1, 4]))],
        huge,
        &["too large"],
    );
    let bias = u(&mut g, "bias", 1);
    let fused = g
        .fused_conv2d(x, f, bias, &ones, "SAME", "NHWC", &ones, "Relu")
        .unwrap();
    kernel_error(
        &g,
        &[
            (x, t(&[1, 5, 5, 3])),
            (f, t(&[3, 3, 3, 4])),
            (bias, t(&[3])),
        ],
        fused,
        &["bias must be a vector of 4 entries", "[3]"],
    );
    // Backprop ops: sizes and out_backprop checked at run time.
    let sizes = g
        .placeholder("sizes", DType::I32, Shape::unknown_dims(1))
        .unwrap();
    let dy = u(&mut g, "dy", 4);
    let bi = conv_attrs(g.build("Conv2DBackpropInput"), &ones, "SAME", "NHWC", &ones)
        .inputs([sizes, f, dy])
        .finish1()
        .unwrap();
    let bf = conv_attrs(
        g.build("Conv2DBackpropFilter"),
        &ones,
        "SAME",
        "NHWC",
        &ones,
    )
    .inputs([x, sizes, dy])
    .finish1()
    .unwrap();
    let s = |v: Vec<i32>| Tensor::new(&[v.len()], v).unwrap();
    kernel_error(
        &g,
        &[
            (sizes, s(vec![1, 5, 5])),
            (f, t(&[3, 3, 3, 4])),
            (dy, t(&[1, 5, 5, 4])),
        ],
        bi,
        &["input_sizes must be 4 non-negative sizes", "[1, 5, 5]"],
    );
    kernel_error(
        &g,
        &[
            (sizes, s(vec![1, -5, 5, 3])),
            (f, t(&[3, 3, 3, 4])),
            (dy, t(&[1, 5, 5, 4])),
        ],
        bi,
        &["non-negative"],
    );
    kernel_error(
        &g,
        &[
            (sizes, s(vec![1, 5, 5, 3])),
            (f, t(&[3, 3, 3, 4])),
            (dy, t(&[1, 4, 5, 4])),
        ],
        bi,
        &["out_backprop has shape [1, 4, 5, 4]", "[1, 5, 5, 4]"],
    );
    kernel_error(
        &g,
        &[
            (sizes, s(vec![3, 3, 3, 4])),
            (x, t(&[1, 5, 5, 2])),
            (dy, t(&[1, 5, 5, 4])),
        ],
        bf,
        &["input has 2 channels but the filter expects 3"],
    );
    let any = g.placeholder("any", DType::F32, Shape::unknown()).unwrap();
    let bf3 = conv_attrs(
        g.build("Conv2DBackpropFilter"),
        &ones,
        "SAME",
        "NHWC",
        &ones,
    )
    .inputs([any, sizes, dy])
    .finish1()
    .unwrap();
    kernel_error(
        &g,
        &[
            (sizes, s(vec![3, 3, 3, 4])),
            (any, t(&[1, 5, 5])),
            (dy, t(&[1, 5, 5, 4])),
        ],
        bf3,
        &["input must be 4-D", "[1, 5, 5]"],
    );
    // Pooling.
    let mp = g
        .max_pool(x, &[1, 3, 3, 1], &ones, "VALID", "NHWC")
        .unwrap();
    kernel_error(&g, &[(x, t(&[1, 2, 4, 1]))], mp, &["larger than the input"]);
    let y = u(&mut g, "y", 4);
    let mg = g
        .build("MaxPoolGrad")
        .inputs([x, y, dy])
        .attr("ksize", vec![1i64, 2, 2, 1])
        .attr("strides", vec![1i64, 2, 2, 1])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    kernel_error(
        &g,
        &[
            (x, t(&[1, 4, 4, 1])),
            (y, t(&[1, 2, 2, 1])),
            (dy, t(&[1, 2, 3, 1])),
        ],
        mg,
        &["grad has shape [1, 2, 3, 1]", "[1, 2, 2, 1]"],
    );
    kernel_error(
        &g,
        &[
            (x, t(&[1, 4, 4, 1])),
            (y, t(&[1, 4, 4, 1])),
            (dy, t(&[1, 2, 2, 1])),
        ],
        mg,
        &["orig_output has shape [1, 4, 4, 1]"],
    );
    let ag = g
        .build("AvgPoolGrad")
        .inputs([sizes, dy])
        .attr("ksize", vec![1i64, 2, 2, 1])
        .attr("strides", vec![1i64, 2, 2, 1])
        .attr("padding", "VALID")
        .finish1()
        .unwrap();
    kernel_error(
        &g,
        &[(sizes, s(vec![1, 4, 4, 1])), (dy, t(&[1, 3, 2, 1]))],
        ag,
        &["grad has shape [1, 3, 2, 1]"],
    );
    // Batch norm and LRN.
    let v = |g: &mut Graph, name: &str| u(g, name, 1);
    let (sc, of, me, va) = (
        v(&mut g, "sc"),
        v(&mut g, "of"),
        v(&mut g, "me"),
        v(&mut g, "va"),
    );
    let bn = g
        .fused_batch_norm(x, sc, of, me, va, 1e-3, "NHWC", false)
        .unwrap();
    let good = t(&[3]);
    kernel_error(
        &g,
        &[
            (x, t(&[1, 2, 2, 3])),
            (sc, t(&[2])),
            (of, good.clone()),
            (me, good.clone()),
            (va, good.clone()),
        ],
        bn.y,
        &["scale must be a vector of 3 entries", "[2]"],
    );
    kernel_error(
        &g,
        &[
            (x, t(&[1, 2, 2, 3])),
            (sc, good.clone()),
            (of, good.clone()),
            (me, t(&[0])),
            (va, good.clone()),
        ],
        bn.y,
        &["mean must be a vector of 3 entries"],
    );
    let l = g.lrn(any, 2, 1.0, 1.0, 0.5).unwrap();
    kernel_error(
        &g,
        &[(any, t(&[2, 3, 4]))],
        l,
        &["input must be 4-D", "[2, 3, 4]"],
    );
}

// ---- numeric gradient checks ------------------------------------------------------------------

type BuildFn = Box<dyn Fn(&mut Graph, &[Output]) -> Result<Vec<Output>, GraphError>>;

struct GradCase {
    op: &'static str,
    label: String,
    inputs: Vec<(Vec<usize>, Vec<f64>)>,
    build: BuildFn,
}

fn grad_case(
    op: &'static str,
    label: impl Into<String>,
    inputs: Vec<(Vec<usize>, Vec<f64>)>,
    build: impl Fn(&mut Graph, &[Output]) -> Result<Vec<Output>, GraphError> + 'static,
) -> GradCase {
    GradCase {
        op,
        label: label.into(),
        inputs,
        build: Box::new(build),
    }
}

/// Builds the case with f64 placeholders (static shapes, or known rank only when `dynamic`).
fn build_case(c: &GradCase, dynamic: bool) -> (Graph, Vec<Output>, Vec<Output>) {
    let mut g = Graph::new();
    let xs: Vec<Output> = c
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (s, _))| {
            let shape = if dynamic {
                Shape::unknown_dims(s.len())
            } else {
                Shape::known(s)
            };
            g.placeholder(&format!("x{i}"), DType::F64, shape).unwrap()
        })
        .collect();
    let ys = (c.build)(&mut g, &xs).unwrap_or_else(|e| panic!("{} ({}): {e}", c.op, c.label));
    (g, xs, ys)
}

/// Checks d(sum_k w_k . y_k)/dx_i symbolically (static and dynamic shapes) against central
/// differences in f64.
fn check_gradient(c: &GradCase, seed: u64) {
    let name = format!("{} ({})", c.op, c.label);
    let (g, xs, ys) = build_case(c, false);
    let s = session(&g, 1);
    let feeds = |vals: &[Vec<f64>]| -> Vec<(Output, Tensor)> {
        xs.iter()
            .zip(&c.inputs)
            .zip(vals)
            .map(|((&x, (shape, _)), v)| (x, tensor(DType::F64, shape, v)))
            .collect()
    };
    let values: Vec<Vec<f64>> = c.inputs.iter().map(|(_, v)| v.clone()).collect();
    let y0 = s.run(&feeds(&values), &ys, &[]).unwrap();
    let ws: Vec<Vec<f64>> = y0
        .iter()
        .enumerate()
        .map(|(k, y)| random(y.num_elements(), seed + k as u64))
        .collect();
    let loss = |vals: &[Vec<f64>]| -> f64 {
        let out = s.run(&feeds(vals), &ys, &[]).unwrap();
        out.iter()
            .zip(&ws)
            .map(|(y, w)| {
                y.to_f64_vec()
                    .iter()
                    .zip(w)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            })
            .sum()
    };
    let eps = 1e-5;
    let mut numeric = Vec::new();
    for i in 0..values.len() {
        let mut gi = Vec::new();
        for j in 0..values[i].len() {
            let mut v = values.clone();
            v[i][j] += eps;
            let up = loss(&v);
            v[i][j] -= 2.0 * eps;
            gi.push((up - loss(&v)) / (2.0 * eps));
        }
        numeric.push(gi);
    }
    for dynamic in [false, true] {
        let (mut g, xs, ys) = build_case(c, dynamic);
        let w_nodes: Vec<Output> = y0
            .iter()
            .enumerate()
            .map(|(k, y)| {
                let shape = if dynamic {
                    Shape::unknown_dims(y.rank())
                } else {
                    Shape::known(y.shape())
                };
                g.placeholder(&format!("w{k}"), DType::F64, shape).unwrap()
            })
            .collect();
        let grads = gradients(&mut g, &ys, &xs, Some(&w_nodes))
            .unwrap_or_else(|e| panic!("{name}: gradients: {e}"));
        let mut f: Vec<(Output, Tensor)> = xs
            .iter()
            .zip(&c.inputs)
            .map(|(&x, (shape, v))| (x, tensor(DType::F64, shape, v)))
            .collect();
        for ((&w, v), y) in w_nodes.iter().zip(&ws).zip(&y0) {
            f.push((w, tensor(DType::F64, y.shape(), v)));
        }
        let fetch: Vec<Output> = grads.iter().flatten().copied().collect();
        let out = session(&g, 2)
            .run(&f, &fetch, &[])
            .unwrap_or_else(|e| panic!("{name}: backward: {e}"));
        let mut out = out.into_iter();
        for (i, gr) in grads.iter().enumerate() {
            let sym = match gr {
                Some(_) => {
                    let t = out.next().unwrap();
                    assert_eq!(
                        t.shape(),
                        c.inputs[i].0.as_slice(),
                        "{name}: gradient shape"
                    );
                    t.to_f64_vec()
                }
                None => vec![0.0; values[i].len()],
            };
            let mode = if dynamic {
                "dynamic shapes"
            } else {
                "static shapes"
            };
            for (j, (a, b)) in sym.iter().zip(&numeric[i]).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                    "{name} [{mode}]: d/dx{i}[{j}] symbolic {a}, numeric {b}"
                );
            }
        }
    }
}

fn conv_attrs<'a>(
    b: tfr_graph::NodeBuilder<'a>,
    strides: &[i64],
    padding: &str,
    format: &str,
    dil: &[i64],
) -> tfr_graph::NodeBuilder<'a> {
    b.attr("strides", strides.to_vec())
        .attr("padding", padding)
        .attr("data_format", format)
        .attr("dilations", dil.to_vec())
}

fn pool_attrs<'a>(
    b: tfr_graph::NodeBuilder<'a>,
    k: &[i64],
    s: &[i64],
    padding: &str,
    format: &str,
) -> tfr_graph::NodeBuilder<'a> {
    b.attr("ksize", k.to_vec())
        .attr("strides", s.to_vec())
        .attr("padding", padding)
        .attr("data_format", format)
}

fn conv_grad_cases() -> Vec<GradCase> {
    let mut cs = Vec::new();
    let configs = [
        ("NHWC", [2, 5, 5, 2], [3, 3, 2, 3], [1, 1], [1, 1], "SAME"),
        ("NHWC", [1, 6, 5, 2], [2, 3, 2, 2], [2, 2], [1, 1], "VALID"),
        ("NHWC", [1, 7, 7, 1], [3, 2, 1, 2], [1, 2], [2, 2], "SAME"),
        ("NCHW", [2, 5, 4, 2], [3, 3, 2, 2], [2, 1], [1, 1], "SAME"),
        ("NHWC", [2, 3, 3, 3], [1, 1, 3, 2], [1, 1], [1, 1], "VALID"),
    ];
    for (k, (format, x, f, st, dl, padding)) in configs.into_iter().enumerate() {
        let case = ConvCase {
            x,
            f,
            strides: [st[0] as usize, st[1] as usize],
            dilations: [dl[0] as usize, dl[1] as usize],
            padding,
        };
        let (od, _) = case.geometry();
        let (xs, ys) = (layout(x, format), layout(od, format));
        let strides = spatial(st, format);
        let dil = spatial(dl, format);
        let label = format!("{format} x {xs:?} f {f:?} strides {st:?} dilations {dl:?} {padding}");
        let seed = 100 + 10 * k as u64;
        let xv = random(xs.iter().product(), seed);
        let fv = random(f.iter().product(), seed + 1);
        let dyv = random(ys.iter().product(), seed + 2);
        let (s1, d1) = (strides.clone(), dil.clone());
        cs.push(grad_case(
            "Conv2D",
            label.clone(),
            vec![(xs.clone(), xv.clone()), (f.to_vec(), fv.clone())],
            move |g, i| {
                let b = g.build("Conv2D").inputs([i[0], i[1]]);
                Ok(vec![conv_attrs(b, &s1, padding, format, &d1).finish1()?])
            },
        ));
        let (s2, d2, xs2) = (strides.clone(), dil.clone(), xs.clone());
        cs.push(grad_case(
            "Conv2DBackpropInput",
            label.clone(),
            vec![(f.to_vec(), fv.clone()), (ys.clone(), dyv.clone())],
            move |g, i| {
                let v: Vec<i32> = xs2.iter().map(|&d| d as i32).collect();
                let sizes = g.constant_from(&[4], v)?;
                let b = g.build("Conv2DBackpropInput").inputs([sizes, i[0], i[1]]);
                Ok(vec![conv_attrs(b, &s2, padding, format, &d2).finish1()?])
            },
        ));
        for (act, n) in [("Relu", 0u64), ("Linear", 1), ("Relu6", 2)] {
            let (s4, d4) = (strides.clone(), dil.clone());
            let o = f[3];
            cs.push(grad_case(
                "FusedConv2D",
                format!("{label} {act}"),
                vec![
                    (xs.clone(), xv.clone()),
                    (f.to_vec(), fv.clone()),
                    (vec![o], random(o, seed + 3 + n)),
                ],
                move |g, i| {
                    let y = g.fused_conv2d(i[0], i[1], i[2], &s4, padding, format, &d4, act)?;
                    Ok(vec![y])
                },
            ));
        }
        let (s5, d5) = (strides.clone(), dil.clone());
        cs.push(grad_case(
            "Conv2DBackpropFilterBias",
            label.clone(),
            vec![(xs.clone(), xv.clone()), (ys.clone(), dyv.clone())],
            move |g, i| {
                let v: Vec<i32> = f.iter().map(|&d| d as i32).collect();
                let sizes = g.constant_from(&[4], v)?;
                let b = g
                    .build("Conv2DBackpropFilterBias")
                    .inputs([i[0], sizes, i[1]]);
                let id = conv_attrs(b, &s5, padding, format, &d5).finish()?;
                Ok(vec![Output::new(id, 0), Output::new(id, 1)])
            },
        ));
        let (s3, d3) = (strides.clone(), dil.clone());
        cs.push(grad_case(
            "Conv2DBackpropFilter",
            label,
            vec![(xs.clone(), xv), (ys.clone(), dyv)],
            move |g, i| {
                let v: Vec<i32> = f.iter().map(|&d| d as i32).collect();
                let sizes = g.constant_from(&[4], v)?;
                let b = g.build("Conv2DBackpropFilter").inputs([i[0], sizes, i[1]]);
                Ok(vec![conv_attrs(b, &s3, padding, format, &d3).finish1()?])
            },
        ));
    }
    cs
}

fn pool_grad_cases() -> Vec<GradCase> {
    let mut cs = Vec::new();
    let configs = [
        ("NHWC", [2, 4, 4, 2], [2, 2], [2, 2], "VALID"),
        ("NHWC", [1, 5, 5, 2], [3, 3], [2, 2], "SAME"),
        ("NCHW", [1, 5, 4, 2], [2, 3], [1, 2], "SAME"),
        ("NHWC", [1, 3, 5, 1], [2, 2], [1, 1], "VALID"),
    ];
    for (k, (format, x, ks, st, padding)) in configs.into_iter().enumerate() {
        let pc = PoolCase {
            x,
            k: [ks[0] as usize, ks[1] as usize],
            s: [st[0] as usize, st[1] as usize],
            padding,
        };
        let (od, _) = pc.out();
        let (xs, ys) = (layout(x, format), layout(od, format));
        let (kk, ss) = (spatial(ks, format), spatial(st, format));
        let label = format!("{format} x {xs:?} ksize {ks:?} strides {st:?} {padding}");
        let seed = 200 + 10 * k as u64;
        let xv = distinct(xs.iter().product(), seed);
        let dyv = random(ys.iter().product(), seed + 1);
        let ddv = random(xs.iter().product(), seed + 2);
        for op in ["MaxPool", "AvgPool"] {
            let (k1, s1) = (kk.clone(), ss.clone());
            cs.push(grad_case(
                op,
                label.clone(),
                vec![(xs.clone(), xv.clone())],
                move |g, i| {
                    Ok(vec![pool_attrs(
                        g.build(op).input(i[0]),
                        &k1,
                        &s1,
                        padding,
                        format,
                    )
                    .finish1()?])
                },
            ));
        }
        // The backprop ops, differentiated in their linear (gradient) inputs; the pooled input
        // is a constant so no finite difference crosses a tie.
        let (k2, s2, xs2, xv2) = (kk.clone(), ss.clone(), xs.clone(), xv.clone());
        cs.push(grad_case(
            "MaxPoolGrad",
            label.clone(),
            vec![(ys.clone(), dyv.clone())],
            move |g, i| {
                let x = g.constant_from(&xs2, xv2.clone())?;
                let y =
                    pool_attrs(g.build("MaxPool").input(x), &k2, &s2, padding, format).finish1()?;
                let b = g.build("MaxPoolGrad").inputs([x, y, i[0]]);
                Ok(vec![pool_attrs(b, &k2, &s2, padding, format).finish1()?])
            },
        ));
        let (k3, s3, xs3, xv3) = (kk.clone(), ss.clone(), xs.clone(), xv.clone());
        cs.push(grad_case(
            "MaxPoolGradGrad",
            label.clone(),
            vec![(xs.clone(), ddv)],
            move |g, i| {
                let x = g.constant_from(&xs3, xv3.clone())?;
                let y =
                    pool_attrs(g.build("MaxPool").input(x), &k3, &s3, padding, format).finish1()?;
                let b = g.build("MaxPoolGradGrad").inputs([x, y, i[0]]);
                Ok(vec![pool_attrs(b, &k3, &s3, padding, format).finish1()?])
            },
        ));
        let (k4, s4, xs4) = (kk.clone(), ss.clone(), xs.clone());
        cs.push(grad_case(
            "AvgPoolGrad",
            label,
            vec![(ys.clone(), dyv)],
            move |g, i| {
                let v: Vec<i32> = xs4.iter().map(|&d| d as i32).collect();
                let sizes = g.constant_from(&[4], v)?;
                let b = g.build("AvgPoolGrad").inputs([sizes, i[0]]);
                Ok(vec![pool_attrs(b, &k4, &s4, padding, format).finish1()?])
            },
        ));
    }
    cs
}

fn norm_grad_cases() -> Vec<GradCase> {
    let mut cs = Vec::new();
    for (format, x) in [("NHWC", [2, 3, 2, 3]), ("NCHW", [2, 3, 2, 2])] {
        let xs = layout(x, format);
        let c = x[3];
        for training in [true, false] {
            for outputs in [vec![0usize], vec![0, 1, 2, 3, 4]] {
                let label = format!("{format} {xs:?} training={training} outputs {outputs:?}");
                let xv: Vec<f64> = random(xs.iter().product(), 300)
                    .iter()
                    .map(|v| 2.0 * v + 0.5)
                    .collect();
                let scale: Vec<f64> = random(c, 301).iter().map(|v| v + 1.5).collect();
                let var: Vec<f64> = random(c, 304).iter().map(|v| v + 1.5).collect();
                cs.push(grad_case(
                    "FusedBatchNorm",
                    label,
                    vec![
                        (xs.clone(), xv),
                        (vec![c], scale),
                        (vec![c], random(c, 302)),
                        (vec![c], random(c, 303)),
                        (vec![c], var),
                    ],
                    move |g, i| {
                        let bn = g.fused_batch_norm(
                            i[0], i[1], i[2], i[3], i[4], 1e-3, format, training,
                        )?;
                        Ok(outputs.iter().map(|&k| Output::new(bn.y.node, k)).collect())
                    },
                ));
            }
        }
    }
    for (r, bias, alpha, beta) in [(1i64, 1.0, 0.5, 0.75), (2, 2.0, 1e-1, 0.5)] {
        cs.push(grad_case(
            "LRN",
            format!("depth_radius {r} bias {bias} alpha {alpha} beta {beta}"),
            vec![(vec![2, 2, 1, 5], random(20, 400 + r as u64))],
            move |g, i| Ok(vec![g.lrn(i[0], r, bias, alpha, beta)?]),
        ));
    }
    cs
}

/// The new ops with a gradient rule; each must have a numeric case below.
const IMAGE_OPS: &[&str] = &[
    "Conv2D",
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "FusedConv2D",
    "Conv2DBackpropFilterBias",
    "MaxPool",
    "MaxPoolGrad",
    "MaxPoolGradGrad",
    "AvgPool",
    "AvgPoolGrad",
    "FusedBatchNorm",
    "FusedBatchNormGrad",
    "LRN",
    "LRNGrad",
];

#[test]
fn every_image_op_declares_its_gradient_and_rules_are_checked() {
    let mut cases: Vec<&str> = conv_grad_cases().iter().map(|c| c.op).collect();
    cases.extend(pool_grad_cases().iter().map(|c| c.op));
    cases.extend(norm_grad_cases().iter().map(|c| c.op));
    for op in IMAGE_OPS {
        let def = registry()
            .get(op)
            .unwrap_or_else(|| panic!("{op} is not registered"));
        match def.gradient {
            Gradient::Unset => panic!("{op} declares no gradient"),
            Gradient::Rule(_) => assert!(cases.contains(op), "{op} has a rule but no numeric case"),
            Gradient::NotDifferentiable => {
                assert!(["FusedBatchNormGrad", "LRNGrad"].contains(op), "{op}")
            }
        }
    }
}

#[test]
fn numeric_gradients_of_convolutions() {
    for (k, c) in conv_grad_cases().iter().enumerate() {
        check_gradient(c, 1000 + k as u64);
    }
}

#[test]
fn numeric_gradients_of_pooling() {
    for (k, c) in pool_grad_cases().iter().enumerate() {
        check_gradient(c, 2000 + k as u64);
    }
}

#[test]
fn numeric_gradients_of_batch_norm_and_lrn() {
    for (k, c) in norm_grad_cases().iter().enumerate() {
        check_gradient(c, 3000 + k as u64);
    }
}

#[test]
fn second_derivative_through_a_convolution() {
    // d/dx of (dL/dx . v) for L = sum(w * conv(x, f)^2): exercises the gradients of both
    // backprop ops inside a second-order graph, against differences of the first gradient.
    let (xs, fs) = ([1usize, 4, 4, 2], [3usize, 3, 2, 2]);
    let xv = random(32, 500);
    let fv = random(36, 501);
    let vv = random(32, 502);
    let build = || {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F64, Shape::known(&xs)).unwrap();
        let f = g.constant_from(&fs, fv.clone()).unwrap();
        let v = g.constant_from(&xs, vv.clone()).unwrap();
        let y = g.conv2d(x, f, &[1, 1, 1, 1], "SAME").unwrap();
        let sq = g.square(y).unwrap();
        let l = g.reduce_sum(sq, None, false).unwrap();
        let dx = gradients(&mut g, &[l], &[x], None).unwrap()[0].unwrap();
        let p = g.mul(dx, v).unwrap();
        let s = g.reduce_sum(p, None, false).unwrap();
        let h = gradients(&mut g, &[s], &[x], None).unwrap()[0].unwrap();
        (g, x, s, h)
    };
    let (g, x, s, h) = build();
    let sess = session(&g, 1);
    let at = |v: &[f64]| {
        sess.run(&[(x, tensor(DType::F64, &xs, v))], &[s], &[])
            .unwrap()[0]
            .scalar_value::<f64>()
            .unwrap()
    };
    let sym = sess
        .run(&[(x, tensor(DType::F64, &xs, &xv))], &[h], &[])
        .unwrap()[0]
        .to_f64_vec();
    for j in 0..xv.len() {
        let mut p = xv.clone();
        p[j] += 1e-5;
        let up = at(&p);
        p[j] -= 2e-5;
        let num = (up - at(&p)) / 2e-5;
        assert!(
            (sym[j] - num).abs() <= 1e-6 + 1e-5 * num.abs(),
            "[{j}] {} vs {num}",
            sym[j]
        );
    }
}
