//! Layers, initializers, losses and metrics against plain-Rust references.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::nn_ops::{DataFormat, Padding};
use tfr_graph::{gradients, DType, Dim, Graph, Output, Shape};
use tfr_nn::initializers::{self, Initializer};
use tfr_nn::layers::{
    avg_pool, batch_norm, conv2d, dropout, embedding, flatten, global_avg_pool, max_pool,
    Activation, BatchNormOptions, Conv2DOptions, Training,
};
use tfr_nn::losses::{huber, sigmoid_cross_entropy, sigmoid_cross_entropy_with_logits};
use tfr_nn::metrics::{accuracy, top_k_accuracy};

fn session(g: &Graph) -> Session {
    Session::new(g, SessionOptions::default()).unwrap()
}

fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::new(shape, v).unwrap()
}

fn values(s: &Session, feeds: &[(Output, Tensor)], o: Output) -> Vec<f32> {
    s.run(feeds, &[o], &[]).unwrap()[0].to_vec::<f32>().unwrap()
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn initializers_have_the_promised_statistics() {
    let mut g = Graph::new();
    g.seed = Some(1);
    let n = 20_000;
    let cases = [
        (Initializer::Zeros, 0.0, 0.0),
        (Initializer::Ones, 1.0, 0.0),
        (Initializer::Constant(2.5), 2.5, 0.0),
        (
            Initializer::Uniform { lo: -1.0, hi: 3.0 },
            1.0,
            4.0 / 12f32.sqrt(),
        ),
        (
            Initializer::Normal {
                mean: 1.0,
                stddev: 2.0,
            },
            1.0,
            2.0,
        ),
        // Truncated at two stddevs: the stddev shrinks by 0.8796.
        (
            Initializer::TruncatedNormal {
                mean: -1.0,
                stddev: 1.0,
            },
            -1.0,
            0.8796,
        ),
        // fans (in, out) = (200, 100) for [200, 100]
        (Initializer::GlorotUniform, 0.0, (2.0f32 / 300.0).sqrt()),
        (Initializer::GlorotNormal, 0.0, (2.0f32 / 300.0).sqrt()),
        (Initializer::HeNormal, 0.0, (2.0f32 / 200.0).sqrt()),
        (Initializer::HeUniform, 0.0, (2.0f32 / 200.0).sqrt()),
    ];
    let outs: Vec<Output> = cases
        .iter()
        .map(|(i, _, _)| i.build(&mut g, &[200, 100], None).unwrap())
        .collect();
    let s = session(&g);
    let vals = s.run(&[], &outs, &[]).unwrap();
    for ((init, mean, std), v) in cases.iter().zip(&vals) {
        assert_eq!(v.shape(), &[200, 100], "{init:?}");
        let v = v.to_vec::<f32>().unwrap();
        let m = v.iter().sum::<f32>() / n as f32;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / n as f32).sqrt();
        assert!(
            (m - mean).abs() < 0.03 * std.max(1.0),
            "{init:?}: mean {m}, want {mean}"
        );
        assert!(
            (sd - std).abs() <= 0.03 * std,
            "{init:?}: stddev {sd}, want {std}"
        );
        if let Initializer::TruncatedNormal { mean, stddev } = init {
            assert!(
                v.iter().all(|x| (x - mean).abs() <= 2.0 * stddev),
                "{init:?} truncates"
            );
        }
    }
    assert_eq!(initializers::fans(&[5, 5, 3, 8]), (75, 200));
}

#[test]
fn conv2d_layer_matches_the_op_with_its_variables() {
    let mut g = Graph::new();
    g.seed = Some(2);
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 6, 6, 3]))
        .unwrap();
    let opts = Conv2DOptions::default()
        .strides(2)
        .activation(Activation::Linear)
        .bias_init(0.5);
    let c = conv2d(&mut g, "conv", x, 4, [3, 3], opts).unwrap();
    assert_eq!(g.shape(c.output), &Shape::known(&[2, 3, 3, 4]));
    assert_eq!(c.kernel.shape, Shape::known(&[3, 3, 3, 4]));
    let bias = c.bias.as_ref().unwrap();
    let reference = g.conv2d(x, c.kernel.value, &[1, 2, 2, 1], "SAME").unwrap();
    let reference = g.bias_add(reference, bias.value).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init]).unwrap();
    let feeds = [(
        x,
        t(
            &[2, 6, 6, 3],
            (0..216).map(|i| (i % 7) as f32 - 3.0).collect(),
        ),
    )];
    assert_eq!(values(&s, &feeds, c.output), values(&s, &feeds, reference));
    assert_eq!(values(&s, &[], bias.value), vec![0.5; 4]);
    // NCHW input and VALID padding.
    let xn = g
        .placeholder("xn", DType::F32, Shape::known(&[2, 3, 7, 5]))
        .unwrap();
    let opts = Conv2DOptions::default()
        .valid()
        .format(DataFormat::Nchw)
        .no_bias();
    let c = conv2d(&mut g, "conv_nchw", xn, 8, [3, 2], opts).unwrap();
    assert_eq!(g.shape(c.output), &Shape::known(&[2, 8, 5, 4]));
    assert!(c.bias.is_none());
    let unknown_c = g
        .placeholder(
            "uc",
            DType::F32,
            Shape::new(vec![2.into(), 4.into(), 4.into(), Dim::Unknown]),
        )
        .unwrap();
    let e = conv2d(
        &mut g,
        "bad",
        unknown_c,
        2,
        [3, 3],
        Conv2DOptions::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("dim 3"), "{e}");
}

#[test]
fn pooling_and_flatten_layers() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), 4.into(), 4.into(), 2.into()]),
        )
        .unwrap();
    let m = max_pool(&mut g, x, [2, 2], [2, 2], Padding::Valid, DataFormat::Nhwc).unwrap();
    let a = avg_pool(&mut g, x, [3, 3], [1, 1], Padding::Same, DataFormat::Nhwc).unwrap();
    let ga = global_avg_pool(&mut g, x, DataFormat::Nhwc).unwrap();
    let f = flatten(&mut g, m).unwrap();
    assert_eq!(
        g.shape(f),
        &Shape::new(vec![Dim::Sym("B".into()), Dim::Known(8)])
    );
    let data: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let s = session(&g);
    let feeds = [(x, t(&[1, 4, 4, 2], data.clone()))];
    assert_eq!(
        values(&s, &feeds, f),
        vec![10.0, 11.0, 14.0, 15.0, 26.0, 27.0, 30.0, 31.0]
    );
    // Corner (0, 0) of channel 0 averages the 2x2 block inside: (0 + 2 + 8 + 10) / 4.
    assert_eq!(values(&s, &feeds, a)[0], 5.0);
    assert_eq!(values(&s, &feeds, ga), vec![15.0, 16.0]);
    // Unknown inner dims: flatten reshapes at run time.
    let u = g
        .placeholder("u", DType::F32, Shape::unknown_dims(3))
        .unwrap();
    let fu = flatten(&mut g, u).unwrap();
    let s = session(&g);
    let out = s
        .run(&[(u, t(&[2, 3, 4], vec![1.0; 24]))], &[fu], &[])
        .unwrap();
    assert_eq!(out[0].shape(), &[2, 12]);
}

#[test]
fn batch_norm_trains_on_batch_statistics_and_updates_moving_averages() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[4, 1, 1, 2]))
        .unwrap();
    let opts = BatchNormOptions {
        momentum: 0.5,
        epsilon: 0.0,
        ..BatchNormOptions::default()
    };
    let train = batch_norm(&mut g, "bn", x, true, opts).unwrap();
    let update = train.update.unwrap();
    let data = t(
        &[4, 1, 1, 2],
        vec![1.0, 10.0, 3.0, 10.0, 5.0, 20.0, 7.0, 20.0],
    );
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init]).unwrap();
    let y = s
        .run(&[(x, data.clone())], &[train.output], &[update])
        .unwrap()[0]
        .to_vec::<f32>()
        .unwrap();
    // Channel 0: mean 4, variance 5; channel 1: mean 15, variance 25.
    let want = [
        -3.0 / 5f32.sqrt(),
        -1.0,
        -1.0 / 5f32.sqrt(),
        -1.0,
        1.0 / 5f32.sqrt(),
        1.0,
        3.0 / 5f32.sqrt(),
        1.0,
    ];
    for (a, b) in y.iter().zip(want) {
        assert!(close(*a, b, 1e-5), "{y:?}");
    }
    // moving = 0.5 * initial + 0.5 * batch (variance with Bessel's correction: 20/3, 100/3).
    let mm = values(&s, &[], train.moving_mean.value);
    let mv = values(&s, &[], train.moving_variance.value);
    assert_eq!(mm, vec![2.0, 7.5]);
    assert!(
        close(mv[0], 0.5 + 10.0 / 3.0, 1e-5) && close(mv[1], 0.5 + 50.0 / 3.0, 1e-5),
        "{mv:?}"
    );
    // Inference mode on a [batch, c] input uses the moving averages.
    let mut g = Graph::new();
    let x2 = g
        .placeholder("x2", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    let inf = batch_norm(&mut g, "bn2", x2, false, BatchNormOptions::default()).unwrap();
    assert!(inf.update.is_none());
    assert_eq!(g.shape(inf.output), &Shape::known(&[2, 3]));
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init]).unwrap();
    let v = values(
        &s,
        &[(x2, t(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))],
        inf.output,
    );
    for (a, b) in v.iter().zip([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) {
        assert!(close(*a, b / (1.0f32 + 1e-3).sqrt(), 1e-6), "{v:?}");
    }
}

#[test]
fn batch_norm_with_a_fed_mode_switches_and_keeps_averages_when_evaluating() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 1]))
        .unwrap();
    let flag = g
        .placeholder("training", DType::Bool, Shape::scalar())
        .unwrap();
    let opts = BatchNormOptions {
        epsilon: 0.0,
        ..BatchNormOptions::default()
    };
    let bn = batch_norm(&mut g, "bn", x, flag, opts).unwrap();
    let update = bn.update.unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init]).unwrap();
    let data = t(&[2, 1], vec![2.0, 4.0]);
    let eval = s
        .run(
            &[(x, data.clone()), (flag, Tensor::scalar(false))],
            &[bn.output],
            &[update],
        )
        .unwrap();
    assert_eq!(eval[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    assert_eq!(values(&s, &[], bn.moving_mean.value), vec![0.0]);
    let train = s
        .run(
            &[(x, data), (flag, Tensor::scalar(true))],
            &[bn.output],
            &[update],
        )
        .unwrap();
    assert_eq!(train[0].to_vec::<f32>().unwrap(), vec![-1.0, 1.0]);
    assert!(close(values(&s, &[], bn.moving_mean.value)[0], 0.03, 1e-6));
}

#[test]
fn dropout_scales_kept_values_and_is_identity_in_inference() {
    let mut g = Graph::new();
    g.seed = Some(9);
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(1000)]),
        )
        .unwrap();
    let on = dropout(&mut g, x, 0.25, true, None).unwrap();
    let off = dropout(&mut g, x, 0.25, false, None).unwrap();
    assert_eq!(off, x);
    let flag = g.placeholder("flag", DType::Bool, Shape::scalar()).unwrap();
    let fed = dropout(&mut g, x, 0.25, Training::Fed(flag), None).unwrap();
    assert!(dropout(&mut g, x, 1.0, true, None).is_err());
    let s = session(&g);
    let feeds = [(x, t(&[4, 1000], vec![3.0; 4000]))];
    let v = values(&s, &feeds, on);
    let kept = v.iter().filter(|&&a| a != 0.0).count();
    assert!(
        v.iter().all(|&a| a == 0.0 || a == 4.0),
        "kept values are scaled by 1/0.75"
    );
    assert!((2850..3150).contains(&kept), "about 75% kept: {kept}");
    let mut f = feeds.to_vec();
    f.push((flag, Tensor::scalar(false)));
    assert_eq!(values(&s, &f, fed), vec![3.0; 4000]);
    f[1] = (flag, Tensor::scalar(true));
    assert!(values(&s, &f, fed).contains(&0.0));
    // The gradient flows only through kept elements, scaled.
    let dx = gradients(&mut g, &[on], &[x], None).unwrap()[0].unwrap();
    let s = session(&g);
    let out = s.run(&feeds, &[on, dx], &[]).unwrap();
    let (y, d) = (
        out[0].to_vec::<f32>().unwrap(),
        out[1].to_vec::<f32>().unwrap(),
    );
    for (a, b) in y.iter().zip(&d) {
        assert_eq!(*b, if *a == 0.0 { 0.0 } else { 4.0 / 3.0 });
    }
}

#[test]
fn embedding_looks_up_rows_and_scatters_gradients() {
    let mut g = Graph::new();
    g.seed = Some(4);
    let ids = g
        .placeholder("ids", DType::I32, Shape::known(&[2, 3]))
        .unwrap();
    let e = embedding(&mut g, "emb", ids, 10, 4, None).unwrap();
    assert_eq!(g.shape(e.output), &Shape::known(&[2, 3, 4]));
    let sum = g.reduce_sum(e.output, None, false).unwrap();
    let dt = gradients(&mut g, &[sum], &[e.table.value], None).unwrap()[0].unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init]).unwrap();
    let table = values(&s, &[], e.table.value);
    assert!(table.iter().all(|v| v.abs() <= 0.05));
    let feeds = [(
        ids,
        Tensor::new(&[2, 3], vec![1i32, 7, 1, 0, 9, 7]).unwrap(),
    )];
    let out = s.run(&feeds, &[e.output, dt], &[]).unwrap();
    let got = out[0].to_vec::<f32>().unwrap();
    for (k, &id) in [1usize, 7, 1, 0, 9, 7].iter().enumerate() {
        assert_eq!(&got[k * 4..(k + 1) * 4], &table[id * 4..(id + 1) * 4]);
    }
    let grad = out[1].to_vec::<f32>().unwrap();
    let counts = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0];
    for (row, c) in counts.iter().enumerate() {
        assert_eq!(&grad[row * 4..(row + 1) * 4], &[*c; 4]);
    }
    let f = g.placeholder("f", DType::F32, Shape::known(&[2])).unwrap();
    assert!(embedding(&mut g, "bad", f, 10, 4, None).is_err());
}

#[test]
fn sigmoid_cross_entropy_and_huber_match_their_formulas() {
    let mut g = Graph::new();
    let logits = g.placeholder("l", DType::F64, Shape::known(&[6])).unwrap();
    let labels = g.placeholder("z", DType::F64, Shape::known(&[6])).unwrap();
    let per = sigmoid_cross_entropy_with_logits(&mut g, logits, labels).unwrap();
    let mean = sigmoid_cross_entropy(&mut g, logits, labels).unwrap();
    let h = huber(&mut g, logits, labels, 1.0).unwrap();
    let dh = gradients(&mut g, &[h], &[logits], None).unwrap()[0].unwrap();
    let xs = [-800.0, -2.0, -0.5, 0.0, 1.5, 900.0];
    let zs = [0.0, 1.0, 0.3, 0.5, 0.0, 1.0];
    let s = session(&g);
    let feeds = [
        (logits, Tensor::new(&[6], xs.to_vec()).unwrap()),
        (labels, Tensor::new(&[6], zs.to_vec()).unwrap()),
    ];
    let out = s.run(&feeds, &[per, mean, h, dh], &[]).unwrap();
    let per = out[0].to_vec::<f64>().unwrap();
    let want: Vec<f64> = xs
        .iter()
        .zip(zs)
        .map(|(&x, z)| {
            // -z log(sigmoid(x)) - (1 - z) log(1 - sigmoid(x)), with
            // log(sigmoid(x)) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x).
            let softplus = |v: f64| v.max(0.0) + (-v.abs()).exp().ln_1p();
            let (ls, l1s) = (-softplus(-x), -softplus(x));
            -z * ls - (1.0 - z) * l1s
        })
        .collect();
    for (a, b) in per.iter().zip(&want) {
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "{per:?} vs {want:?}"
        );
    }
    assert!((out[1].scalar_value::<f64>().unwrap() - want.iter().sum::<f64>() / 6.0).abs() < 1e-9);
    let hub: Vec<f64> = xs
        .iter()
        .zip(zs)
        .map(|(&x, z)| {
            let d: f64 = x - z;
            if d.abs() <= 1.0 {
                0.5 * d * d
            } else {
                d.abs() - 0.5
            }
        })
        .collect();
    let hm = hub.iter().sum::<f64>() / 6.0;
    assert!((out[2].scalar_value::<f64>().unwrap() - hm).abs() < 1e-9);
    let dhv = out[3].to_vec::<f64>().unwrap();
    for ((g, &x), z) in dhv.iter().zip(&xs).zip(zs) {
        let d: f64 = x - z;
        assert!((g - d.clamp(-1.0, 1.0) / 6.0).abs() < 1e-12, "{dhv:?}");
    }
}

#[test]
fn accuracy_and_top_k_accuracy() {
    let mut g = Graph::new();
    let logits = g
        .placeholder("l", DType::F32, Shape::known(&[4, 3]))
        .unwrap();
    let labels = g.placeholder("y", DType::I32, Shape::known(&[4])).unwrap();
    let acc = accuracy(&mut g, logits, labels).unwrap();
    let top1 = top_k_accuracy(&mut g, logits, labels, 1).unwrap();
    let top2 = top_k_accuracy(&mut g, logits, labels, 2).unwrap();
    let s = session(&g);
    let feeds = [
        (
            logits,
            t(
                &[4, 3],
                vec![0.1, 0.7, 0.2, 0.5, 0.4, 0.1, 0.3, 0.3, 0.4, 0.2, 0.2, 0.6],
            ),
        ),
        (labels, Tensor::new(&[4], vec![1i32, 1, 0, 0]).unwrap()),
    ];
    let out = s.run(&feeds, &[acc, top1, top2], &[]).unwrap();
    // Row 0 right; row 1 label second; row 2 label tied second; row 3 label tied last.
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 0.25);
    assert_eq!(out[1].scalar_value::<f32>().unwrap(), 0.25);
    // Top 2: rows 0, 1, 2 (fewer than two logits above 0.3) and row 3 (only 0.6 above 0.2).
    assert_eq!(out[2].scalar_value::<f32>().unwrap(), 1.0);
    let f = g.placeholder("f", DType::F32, Shape::known(&[4])).unwrap();
    assert!(accuracy(&mut g, logits, f).is_err());
}
