//! Activation, softmax, bias and cross-entropy kernels, checked against plain-Rust references.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};

use crate::common;
use common::*;

/// Reference softmax of each `cols`-long row (in f64, max subtracted).
fn ref_softmax(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|r| {
            let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
            r.iter().map(move |v| (v - m).exp() / s).collect::<Vec<_>>()
        })
        .collect()
}

fn ref_log_softmax(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|r| {
            let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            r.iter().map(move |v| v - lse).collect::<Vec<_>>()
        })
        .collect()
}

// ---- activations ----------------------------------------------------------------------------

#[test]
fn activations_match_their_formulas() {
    const ALPHA: f64 = 1.6732632423543772848170429916717;
    const SCALE: f64 = 1.0507009873554804934193349852946;
    let xs = vec![
        -1000.0, -20.0, -3.5, -1.0, -1e-8, 0.0, 1e-8, 0.5, 2.0, 5.9, 6.0, 7.5, 40.0, 1000.0,
    ];
    type Reference = fn(f64) -> f64;
    let refs: [(&str, Reference); 5] = [
        ("Relu", |x| x.max(0.0)),
        ("Relu6", |x| x.clamp(0.0, 6.0)),
        ("Elu", |x| if x > 0.0 { x } else { x.exp_m1() }),
        ("Selu", |x| {
            SCALE * if x > 0.0 { x } else { ALPHA * x.exp_m1() }
        }),
        ("Softplus", |x| {
            // log(1 + e^x) without overflow.
            if x > 30.0 {
                x + (-x).exp()
            } else {
                x.exp().ln_1p()
            }
        }),
    ];
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        let x = g.placeholder("x", dtype, Shape::unknown()).unwrap();
        let ys = [
            g.relu(x).unwrap(),
            g.relu6(x).unwrap(),
            g.elu(x).unwrap(),
            g.selu(x).unwrap(),
            g.softplus(x).unwrap(),
        ];
        let feed = match dtype {
            DType::F32 => t(&[xs.len()], xs.iter().map(|&v| v as f32).collect()),
            _ => t(&[xs.len()], xs.clone()),
        };
        let out = run(&g, &[(x, feed)], &ys);
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
        for ((name, f), o) in refs.iter().zip(&out) {
            assert_eq!(o.dtype(), dtype);
            let want: Vec<f64> = xs.iter().map(|&v| f(v)).collect();
            assert_close(&o.to_f64_vec(), &want, tol, &format!("{name} {dtype}"));
        }
        // Large inputs stay finite and exact.
        let sp = out[4].to_f64_vec();
        assert_eq!(sp[xs.len() - 1], 1000.0);
        assert_eq!(sp[0], 0.0);
    }
}

#[test]
fn activations_reuse_a_uniquely_held_buffer() {
    // Relu of a fed value that nothing else reads: the result is still correct when the
    // kernel writes in place (and the caller's tensor is untouched).
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[4])).unwrap();
    let y = g.neg(x).unwrap();
    let z = g.relu(y).unwrap();
    let w = g.elu(z).unwrap();
    let feed = t(&[4], vec![1.0f32, -2.0, 3.0, -4.0]);
    let out = run(&g, &[(x, feed.clone())], &[w]);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![0.0, 2.0, 0.0, 4.0]);
    assert_eq!(feed.to_vec::<f32>().unwrap(), vec![1.0, -2.0, 3.0, -4.0]);
}

// ---- softmax ----------------------------------------------------------------------------------

#[test]
fn softmax_and_log_softmax_are_stable() {
    let mut g = Graph::new();
    let x = g
        .constant_from(
            &[3, 3],
            vec![
                1.0f32, 2.0, 3.0, 1000.0, 1000.0, 1000.0, 1000.0, 0.0, -1000.0,
            ],
        )
        .unwrap();
    let s = g.softmax(x).unwrap();
    let ls = g.log_softmax(x).unwrap();
    let out = run(&g, &[], &[s, ls]);
    let xs = [1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0, 1000.0, 0.0, -1000.0];
    assert_eq!(out[0].shape(), &[3, 3]);
    assert_close(&out[0].to_f64_vec(), &ref_softmax(&xs, 3), 1e-6, "softmax");
    assert_close(
        &out[1].to_f64_vec(),
        &ref_log_softmax(&xs, 3),
        1e-6,
        "log_softmax",
    );
    let sm = out[0].to_vec::<f32>().unwrap();
    assert!(sm.iter().all(|v| v.is_finite()), "{sm:?}");
    assert_eq!(&sm[6..], &[1.0, 0.0, 0.0]);
    let lsm = out[1].to_vec::<f32>().unwrap();
    assert_eq!(lsm[6], 0.0);
    assert_eq!(lsm[8], -2000.0);
}

#[test]
fn softmax_over_the_last_axis_of_rank_3_and_large_inputs() {
    let dims = [3usize, 4, 5];
    let x = random(60, 2).iter().map(|v| v * 10.0).collect::<Vec<_>>();
    let big_dims = [50usize, 40, 30];
    let xb = random(60_000, 3)
        .iter()
        .map(|v| v * 50.0)
        .collect::<Vec<_>>();
    let mut g = Graph::new();
    let p = g.placeholder("x", DType::F64, Shape::known(&dims)).unwrap();
    let pb = g.placeholder("xb", DType::F64, Shape::unknown()).unwrap();
    let fetches = [
        g.softmax(p).unwrap(),
        g.log_softmax(p).unwrap(),
        g.softmax(pb).unwrap(),
        g.log_softmax(pb).unwrap(),
    ];
    let out = run(
        &g,
        &[(p, t(&dims, x.clone())), (pb, t(&big_dims, xb.clone()))],
        &fetches,
    );
    assert_eq!(out[0].shape(), &dims);
    assert_close(&out[0].to_f64_vec(), &ref_softmax(&x, 5), 1e-12, "softmax");
    assert_close(
        &out[1].to_f64_vec(),
        &ref_log_softmax(&x, 5),
        1e-12,
        "log_softmax",
    );
    assert_eq!(out[2].shape(), &big_dims);
    assert_close(
        &out[2].to_f64_vec(),
        &ref_softmax(&xb, 30),
        1e-12,
        "big softmax",
    );
    assert_close(
        &out[3].to_f64_vec(),
        &ref_log_softmax(&xb, 30),
        1e-12,
        "big log_softmax",
    );
    for row in out[2].to_f64_vec().chunks(30) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn softmax_of_empty_and_scalar_inputs() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let s = g.build("Softmax").name("sm").input(x).finish1().unwrap();
    let out = run(&g, &[(x, t::<f32>(&[0, 3], vec![]))], &[s]);
    assert_eq!(out[0].shape(), &[0, 3]);
    let out = run(&g, &[(x, t::<f32>(&[2, 0], vec![]))], &[s]);
    assert_eq!(out[0].shape(), &[2, 0]);
    let e = run_err(&g, &[(x, Tensor::scalar(1.0f32))], s);
    assert!(
        e.to_string().contains("`sm`") && e.to_string().contains("rank >= 1"),
        "{e}"
    );
}

// ---- BiasAdd ----------------------------------------------------------------------------------

#[test]
fn bias_add_nhwc_and_nchw() {
    let mut g = Graph::new();
    // NHWC [2, 2, 3]: bias along the last dim.
    let v: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let x = g.constant_from(&[2, 2, 3], v.clone()).unwrap();
    let b = g.constant_from(&[3], vec![100.0f32, 200.0, 300.0]).unwrap();
    let y = g.bias_add(x, b).unwrap();
    // NCHW [2, 3, 2]: bias along dim 1.
    let xc = g.constant_from(&[2, 3, 2], v.clone()).unwrap();
    let yc = g
        .build("BiasAdd")
        .input(xc)
        .input(b)
        .attr("data_format", "NCHW")
        .finish1()
        .unwrap();
    let xi = g.constant_from(&[2, 2], vec![1i64, 2, 3, 4]).unwrap();
    let bi = g.constant_from(&[2], vec![10i64, 20]).unwrap();
    let yi = g.bias_add(xi, bi).unwrap();
    let out = run(&g, &[], &[y, yc, yi]);
    let want: Vec<f32> = (0..12)
        .map(|i| i as f32 + 100.0 * (i % 3 + 1) as f32)
        .collect();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), want);
    let want: Vec<f32> = (0..12)
        .map(|i| i as f32 + 100.0 * ((i / 2) % 3 + 1) as f32)
        .collect();
    assert_eq!(out[1].shape(), &[2, 3, 2]);
    assert_eq!(out[1].to_vec::<f32>().unwrap(), want);
    assert_eq!(out[2].to_vec::<i64>().unwrap(), vec![11, 22, 13, 24]);
}

#[test]
fn bias_add_shape_errors() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::unknown()).unwrap();
    let y = g
        .build("BiasAdd")
        .name("ba")
        .input(x)
        .input(b)
        .finish1()
        .unwrap();
    let yc = g
        .build("BiasAdd")
        .name("ba_nchw")
        .input(x)
        .input(b)
        .attr("data_format", "NCHW")
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[
            (x, t(&[2, 3], vec![0.0f32; 6])),
            (b, t(&[2], vec![0.0f32; 2])),
        ],
        y,
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`ba`") && msg.contains("bias has 2 entries") && msg.contains("[2, 3]"),
        "{msg}"
    );
    let e = run_err(
        &g,
        &[
            (x, t(&[2, 3], vec![0.0f32; 6])),
            (b, t(&[1, 3], vec![0.0f32; 3])),
        ],
        y,
    );
    assert!(e.to_string().contains("bias must be 1-D"), "{e}");
    let e = run_err(
        &g,
        &[(x, t(&[3], vec![0.0f32; 3])), (b, t(&[3], vec![0.0f32; 3]))],
        y,
    );
    assert!(e.to_string().contains("rank >= 2"), "{e}");
    let e = run_err(
        &g,
        &[
            (x, t(&[2, 3], vec![0.0f32; 6])),
            (b, t(&[3], vec![0.0f32; 3])),
        ],
        yc,
    );
    assert!(
        e.to_string().contains("`ba_nchw`") && e.to_string().contains("rank >= 3"),
        "{e}"
    );
    let e = run_err(
        &g,
        &[
            (x, t(&[1, 2, 3], vec![0.0f32; 6])),
            (b, t(&[3], vec![0.0f32; 3])),
        ],
        yc,
    );
    assert!(e.to_string().contains("channel dim 1 is 2"), "{e}");
}

// ---- cross-entropy ----------------------------------------------------------------------------

fn xent_node(g: &mut Graph, op: &str, name: &str, f: Output, l: Output) -> (Output, Output) {
    let id = g.build(op).name(name).input(f).input(l).finish().unwrap();
    (Output::new(id, 0), Output::new(id, 1))
}

#[test]
fn softmax_cross_entropy_values_and_backprop() {
    let f = vec![1.0, 2.0, 3.0, 1000.0, 0.0, -1000.0, 0.5, 0.5, 0.5];
    let l = vec![0.0, 0.0, 1.0, 0.25, 0.75, 0.0, 0.2, 0.3, 0.5];
    let mut g = Graph::new();
    let pf = g
        .placeholder("f", DType::F64, Shape::known(&[3, 3]))
        .unwrap();
    let pl = g
        .placeholder("l", DType::F64, Shape::known(&[3, 3]))
        .unwrap();
    let (loss, back) = xent_node(&mut g, "SoftmaxCrossEntropyWithLogits", "xent", pf, pl);
    let loss_only = g.softmax_cross_entropy_with_logits(pf, pl).unwrap();
    let out = run(
        &g,
        &[(pf, t(&[3, 3], f.clone())), (pl, t(&[3, 3], l.clone()))],
        &[loss, back, loss_only],
    );
    let logp = ref_log_softmax(&f, 3);
    let want_loss: Vec<f64> = (0..3)
        .map(|r| -(0..3).map(|j| l[r * 3 + j] * logp[r * 3 + j]).sum::<f64>())
        .collect();
    let want_back: Vec<f64> = ref_softmax(&f, 3)
        .iter()
        .zip(&l)
        .map(|(s, y)| s - y)
        .collect();
    assert_eq!(out[0].shape(), &[3]);
    assert_close(&out[0].to_f64_vec(), &want_loss, 1e-12, "loss");
    assert_eq!(out[1].shape(), &[3, 3]);
    assert_close(&out[1].to_f64_vec(), &want_back, 1e-12, "backprop");
    assert_eq!(out[2], out[0]);
    // Row 2: loss 0.75 * 1000 (the second class is 1000 below the first).
    assert!((out[0].to_f64_vec()[1] - 750.0).abs() < 1e-9);
    // Uniform logits: loss is log(3) for any distribution.
    assert!((out[0].to_f64_vec()[2] - 3f64.ln()).abs() < 1e-12);
}

#[test]
fn sparse_softmax_cross_entropy_values_and_backprop() {
    let f32s: Vec<f32> = vec![1.0, 2.0, 3.0, 1000.0, 0.0, -1000.0];
    let f: Vec<f64> = f32s.iter().map(|&v| v as f64).collect();
    for label_dtype in [DType::I32, DType::I64] {
        let mut g = Graph::new();
        let pf = g.placeholder("f", DType::F32, Shape::unknown()).unwrap();
        let pl = g.placeholder("l", label_dtype, Shape::unknown()).unwrap();
        let (loss, back) = xent_node(
            &mut g,
            "SparseSoftmaxCrossEntropyWithLogits",
            "sxent",
            pf,
            pl,
        );
        let labels = match label_dtype {
            DType::I32 => t(&[2], vec![2i32, 1]),
            _ => t(&[2], vec![2i64, 1]),
        };
        let out = run(
            &g,
            &[(pf, t(&[2, 3], f32s.clone())), (pl, labels)],
            &[loss, back],
        );
        let logp = ref_log_softmax(&f, 3);
        let sm = ref_softmax(&f, 3);
        assert_eq!(out[0].dtype(), DType::F32);
        assert_close(
            &out[0].to_f64_vec(),
            &[-logp[2], -logp[4]],
            1e-6,
            "sparse loss",
        );
        let mut want_back = sm.clone();
        want_back[2] -= 1.0;
        want_back[3 + 1] -= 1.0;
        assert_close(&out[1].to_f64_vec(), &want_back, 1e-6, "sparse backprop");
        assert_eq!(out[0].to_vec::<f32>().unwrap()[1], 1000.0);
    }
}

#[test]
fn sparse_and_dense_cross_entropy_agree_on_one_hot_labels() {
    let (b, c) = (300usize, 120usize);
    let f = random(b * c, 9)
        .iter()
        .map(|v| v * 30.0)
        .collect::<Vec<_>>();
    let ids: Vec<i64> = (0..b).map(|i| ((i * 37) % c) as i64).collect();
    let mut onehot = vec![0.0; b * c];
    for (i, &k) in ids.iter().enumerate() {
        onehot[i * c + k as usize] = 1.0;
    }
    let mut g = Graph::new();
    let pf = g
        .placeholder("f", DType::F64, Shape::known(&[b, c]))
        .unwrap();
    let pl = g
        .placeholder("l", DType::F64, Shape::known(&[b, c]))
        .unwrap();
    let pi = g.placeholder("i", DType::I64, Shape::known(&[b])).unwrap();
    let (dl, db) = xent_node(&mut g, "SoftmaxCrossEntropyWithLogits", "dense", pf, pl);
    let (sl, sb) = xent_node(
        &mut g,
        "SparseSoftmaxCrossEntropyWithLogits",
        "sparse",
        pf,
        pi,
    );
    let out = run(
        &g,
        &[
            (pf, t(&[b, c], f.clone())),
            (pl, t(&[b, c], onehot)),
            (pi, t(&[b], ids.clone())),
        ],
        &[dl, db, sl, sb],
    );
    assert_close(&out[0].to_f64_vec(), &out[2].to_f64_vec(), 1e-12, "loss");
    assert_close(
        &out[1].to_f64_vec(),
        &out[3].to_f64_vec(),
        1e-12,
        "backprop",
    );
    let logp = ref_log_softmax(&f, c);
    let want: Vec<f64> = ids
        .iter()
        .enumerate()
        .map(|(i, &k)| -logp[i * c + k as usize])
        .collect();
    assert_close(&out[2].to_f64_vec(), &want, 1e-12, "sparse loss");
}

#[test]
fn cross_entropy_errors() {
    let mut g = Graph::new();
    let pf = g.placeholder("f", DType::F32, Shape::unknown()).unwrap();
    let pl = g.placeholder("l", DType::I32, Shape::unknown()).unwrap();
    let pd = g.placeholder("d", DType::F32, Shape::unknown()).unwrap();
    let (sl, _) = xent_node(
        &mut g,
        "SparseSoftmaxCrossEntropyWithLogits",
        "sxent",
        pf,
        pl,
    );
    let (dl, _) = xent_node(&mut g, "SoftmaxCrossEntropyWithLogits", "dxent", pf, pd);
    let f = t(&[3, 4], vec![0.0f32; 12]);
    let e = run_err(&g, &[(pf, f.clone()), (pl, t(&[3], vec![0, 7, 1]))], sl);
    let msg = e.to_string();
    assert!(
        msg.contains("`sxent`") && msg.contains("label value of 7") && msg.contains("index 1"),
        "{msg}"
    );
    assert!(msg.contains("[0, 4)"), "{msg}");
    let e = run_err(&g, &[(pf, f.clone()), (pl, t(&[3], vec![0, 1, -1]))], sl);
    assert!(e.to_string().contains("-1 at index 2"), "{e}");
    let e = run_err(&g, &[(pf, f.clone()), (pl, t(&[2], vec![0, 1]))], sl);
    assert!(
        e.to_string().contains("labels must be a vector of 3"),
        "{e}"
    );
    let e = run_err(
        &g,
        &[
            (pf, t(&[12], vec![0.0f32; 12])),
            (pl, t(&[3], vec![0, 1, 1])),
        ],
        sl,
    );
    assert!(e.to_string().contains("features must be a matrix"), "{e}");
    let e = run_err(
        &g,
        &[(pf, f.clone()), (pd, t(&[4, 3], vec![0.0f32; 12]))],
        dl,
    );
    let msg = e.to_string();
    assert!(
        msg.contains("`dxent`")
            && msg.contains("same shape")
            && msg.contains("[3, 4]")
            && msg.contains("[4, 3]"),
        "{msg}"
    );
    // Zero classes: any label is out of range.
    let e = run_err(
        &g,
        &[(pf, t::<f32>(&[1, 0], vec![])), (pl, t(&[1], vec![0]))],
        sl,
    );
    assert!(e.to_string().contains("[0, 0)"), "{e}");
}

#[test]
fn cross_entropy_of_empty_batches() {
    let mut g = Graph::new();
    let pf = g.placeholder("f", DType::F32, Shape::unknown()).unwrap();
    let pl = g.placeholder("l", DType::I64, Shape::unknown()).unwrap();
    let pd = g.placeholder("d", DType::F32, Shape::unknown()).unwrap();
    let (sl, sb) = xent_node(
        &mut g,
        "SparseSoftmaxCrossEntropyWithLogits",
        "sxent",
        pf,
        pl,
    );
    let (dl, db) = xent_node(&mut g, "SoftmaxCrossEntropyWithLogits", "dxent", pf, pd);
    let s = session(&g);
    let out = s
        .run(
            &[
                (pf, t::<f32>(&[0, 5], vec![])),
                (pl, t::<i64>(&[0], vec![])),
            ],
            &[sl, sb],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].shape(), &[0]);
    assert_eq!(out[1].shape(), &[0, 5]);
    let out = s
        .run(
            &[
                (pf, t::<f32>(&[2, 0], vec![])),
                (pd, t::<f32>(&[2, 0], vec![])),
            ],
            &[dl, db],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
    assert_eq!(out[1].shape(), &[2, 0]);
}

// ---- executors --------------------------------------------------------------------------------

#[test]
fn parallel_executor_gives_the_same_results() {
    let (b, c) = (256usize, 160usize);
    let f: Vec<f32> = random(b * c, 13)
        .iter()
        .map(|&v| (v * 20.0) as f32)
        .collect();
    let ids: Vec<i32> = (0..b).map(|i| ((i * 7) % c) as i32).collect();
    let bias: Vec<f32> = random(c, 14).iter().map(|&v| v as f32).collect();
    let mut g = Graph::new();
    let pf = g
        .placeholder("f", DType::F32, Shape::known(&[b, c]))
        .unwrap();
    let pl = g.placeholder("l", DType::I32, Shape::known(&[b])).unwrap();
    let pb = g.placeholder("b", DType::F32, Shape::known(&[c])).unwrap();
    let biased = g.bias_add(pf, pb).unwrap();
    let sm = g.softmax(biased).unwrap();
    let lsm = g.log_softmax(pf).unwrap();
    let r = g.relu(lsm).unwrap();
    let sp = g.softplus(pf).unwrap();
    let (sl, sb) = xent_node(
        &mut g,
        "SparseSoftmaxCrossEntropyWithLogits",
        "sxent",
        biased,
        pl,
    );
    let (dl, db) = xent_node(&mut g, "SoftmaxCrossEntropyWithLogits", "dxent", pf, sm);
    let fetches = [biased, sm, lsm, r, sp, sl, sb, dl, db];
    let feeds = [(pf, t(&[b, c], f)), (pl, t(&[b], ids)), (pb, t(&[c], bias))];
    let results: Vec<Vec<Tensor>> = [1, 2]
        .into_iter()
        .map(|threads| {
            let s = Session::new(
                &g,
                SessionOptions {
                    inter_op_threads: threads,
                    ..Default::default()
                },
            )
            .unwrap();
            let first = s.run(&feeds, &fetches, &[]).unwrap();
            assert_eq!(first, s.run(&feeds, &fetches, &[]).unwrap());
            first
        })
        .collect();
    assert_eq!(results[0].len(), fetches.len());
    for (i, (x, y)) in results[0].iter().zip(&results[1]).enumerate() {
        assert_eq!(x.shape(), y.shape(), "fetch {i}");
        assert_eq!(x.to_f64_vec(), y.to_f64_vec(), "fetch {i}");
    }
    // The softmax rows sum to one.
    for row in results[1][1].to_f64_vec().chunks(c) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
}
