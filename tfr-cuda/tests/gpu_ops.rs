//! The runtime's GPU kernels against the CPU kernels: each test runs one graph in a CPU-only
//! session and in a session that requires a GPU, checks that the ops under test were placed
//! on the GPU, and compares every fetch to 1e-5 relative (plus a small absolute term where a
//! sum runs in another order). Without a usable GPU each test prints why it is skipped and
//! passes; with `TFR_REQUIRE_GPU=1` a missing GPU fails it.

mod common;

use common::*;
use tfr_core::Tensor;
use tfr_graph::gradients::gradients;
use tfr_graph::{DType, Graph, Output};

fn grads(g: &mut Graph, y: Output, xs: &[Output]) -> Vec<Output> {
    gradients(g, &[y], xs, None)
        .unwrap()
        .into_iter()
        .map(|o| o.expect("connected"))
        .collect()
}

/// `sum(y * mixed)`: a scalar whose gradient reaches every element of `y` with its own weight.
fn weighted_sum(g: &mut Graph, y: Output, shape: &[usize]) -> Output {
    let t = mixed(shape);
    let w = g.constant_from(shape, t.to_vec::<f32>().unwrap()).unwrap();
    let p = g.mul(y, w).unwrap();
    g.reduce_sum(p, None, false).unwrap()
}

#[test]
fn bias_add_and_its_gradient() {
    let (x, b) = (mixed(&[4, 5, 6, 3]), nonzero(&[3]));
    check_gpu_step(
        "bias_add",
        &[x, b],
        &["BiasAdd", "BiasAddGrad"],
        1e-5,
        |g, xs| {
            let y = g.bias_add(xs[0], xs[1]).unwrap();
            let l = weighted_sum(g, y, &[4, 5, 6, 3]);
            let mut out = vec![y];
            out.extend(grads(g, l, &[xs[1]]));
            out
        },
    );
}

#[test]
fn relu_gradient() {
    check_gpu_step(
        "relu_grad",
        &[mixed(&[7, 9])],
        &["ReluGrad"],
        0.0,
        |g, xs| {
            let y = g.relu(xs[0]).unwrap();
            let l = weighted_sum(g, y, &[7, 9]);
            grads(g, l, &[xs[0]])
        },
    );
}

#[test]
fn sparse_softmax_cross_entropy_with_int32_and_int64_labels() {
    let logits = mixed(&[6, 10]);
    for labels in [
        Tensor::new(&[6], vec![0i32, 3, 9, 1, 5, 5]).unwrap(),
        Tensor::new(&[6], vec![2i64, 7, 0, 9, 4, 1]).unwrap(),
    ] {
        let on = ["SparseSoftmaxCrossEntropyWithLogits"];
        check_gpu_step(
            "sparse_xent",
            &[logits.clone(), labels],
            &on,
            1e-6,
            |g, xs| {
                let loss = g
                    .sparse_softmax_cross_entropy_with_logits(xs[0], xs[1])
                    .unwrap();
                vec![loss, Output { index: 1, ..loss }]
            },
        );
    }
}

#[test]
fn softmax_cross_entropy_with_dense_labels() {
    let labels = Tensor::new(
        &[3, 4],
        vec![
            0.25f32, 0.25, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4,
        ],
    )
    .unwrap();
    check_gpu_step(
        "xent",
        &[mixed(&[3, 4]), labels],
        &["SoftmaxCrossEntropyWithLogits"],
        1e-6,
        |g, xs| {
            let loss = g.softmax_cross_entropy_with_logits(xs[0], xs[1]).unwrap();
            vec![loss, Output { index: 1, ..loss }]
        },
    );
}

#[test]
fn reductions_over_any_axes() {
    check_gpu_step(
        "reduce_axes",
        &[mixed(&[3, 4, 5, 2])],
        &["Sum", "Mean", "Max"],
        1e-5,
        |g, xs| {
            vec![
                g.reduce_sum(xs[0], Some(&[0, 2]), false).unwrap(),
                g.reduce_mean(xs[0], Some(&[1]), true).unwrap(),
                g.reduce_max(xs[0], Some(&[-1, 0]), false).unwrap(),
            ]
        },
    );
}

#[test]
fn casts_follow_the_cpu() {
    let x = Tensor::new(&[6], vec![1.7f32, -2.5, 3e9, -3e9, f32::NAN, 0.0]).unwrap();
    check_gpu_step(
        "cast",
        &[x, Tensor::new(&[3], vec![-7i32, 0, 300]).unwrap()],
        &["Cast"],
        0.0,
        |g, xs| {
            vec![
                g.cast(xs[0], DType::I32).unwrap(),
                g.cast(xs[0], DType::I64).unwrap(),
                g.cast(xs[0], DType::Bool).unwrap(),
                g.cast(xs[1], DType::F32).unwrap(),
                g.cast(xs[1], DType::U8).unwrap(),
            ]
        },
    );
}

#[test]
fn fills_and_likes() {
    check_gpu_step(
        "fills",
        &[mixed(&[2, 3]), Tensor::scalar(2.5f32)],
        &["Fill", "ZerosLike", "OnesLike"],
        0.0,
        |g, xs| {
            vec![
                g.fill(&[3, 2], xs[1]).unwrap(),
                g.zeros_like(xs[0]).unwrap(),
                g.ones_like(xs[0]).unwrap(),
            ]
        },
    );
}

#[test]
fn data_movement() {
    let on = [
        "Transpose",
        "Slice",
        "Concat",
        "PadV2",
        "Tile",
        "BroadcastTo",
    ];
    check_gpu_step(
        "movement",
        &[mixed(&[2, 3, 4]), nonzero(&[2, 1, 4])],
        &on,
        0.0,
        |g, xs| {
            vec![
                g.transpose(xs[0], &[2, 0, 1]).unwrap(),
                g.slice(xs[0], &[1, 0, 1], &[1, -1, 2]).unwrap(),
                g.concat(&[xs[0], xs[1]], 1).unwrap(),
                g.pad(xs[1], &[(1, 0), (0, 2), (1, 1)], 0.5).unwrap(),
                g.tile(xs[1], &[2, 3, 1]).unwrap(),
                g.broadcast_to(xs[1], &[3, 2, 5, 4]).unwrap(),
            ]
        },
    );
}

#[test]
fn shape_ops_share_the_buffer() {
    let on = ["Reshape", "ExpandDims", "Squeeze"];
    check_gpu_step("shapes", &[mixed(&[2, 1, 6])], &on, 0.0, |g, xs| {
        let r = g.reshape(xs[0], &[3, -1]).unwrap();
        let e = g.expand_dims(xs[0], -1).unwrap();
        let s = g.squeeze(xs[0], &[1]).unwrap();
        let y = g.relu(r).unwrap();
        vec![y, e, s]
    });
}

#[test]
fn gather_and_its_gradient() {
    let ids32 = Tensor::new(&[2, 2], vec![3i32, 0, 3, 1]).unwrap();
    let ids64 = Tensor::new(&[3], vec![1i64, 0, 1]).unwrap();
    let on = ["Gather", "UnsortedSegmentSum"];
    check_gpu_step(
        "gather",
        &[mixed(&[4, 5]), ids32, ids64],
        &on,
        1e-6,
        |g, xs| {
            let rows = g.gather(xs[0], xs[1], 0).unwrap();
            let cols = g.gather(xs[0], xs[2], 1).unwrap();
            let l = weighted_sum(g, rows, &[2, 2, 5]);
            let four = g.scalar(4i32).unwrap();
            let dense = g.unsorted_segment_sum(rows, xs[1], four).unwrap();
            let mut out = vec![rows, cols, dense];
            out.extend(grads(g, l, &[xs[0]]));
            out
        },
    );
}

#[test]
fn convolution_and_its_gradients() {
    for (strides, padding, size) in [(1, "SAME", 7), (2, "VALID", 8), (2, "SAME", 8)] {
        let (x, f) = (mixed(&[2, size, size, 3]), nonzero(&[3, 3, 3, 4]));
        let on = ["Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"];
        check_gpu_step("conv2d", &[x, f], &on, 1e-5, |g, xs| {
            let y = g
                .conv2d(xs[0], xs[1], &[1, strides, strides, 1], padding)
                .unwrap();
            let shape: Vec<usize> = g
                .shape(y)
                .dims()
                .unwrap()
                .iter()
                .map(|d| d.known().unwrap())
                .collect();
            let l = weighted_sum(g, y, &shape);
            let mut out = vec![y];
            out.extend(grads(g, l, &[xs[0], xs[1]]));
            out
        });
    }
}

#[test]
fn fused_convolution_with_bias_and_relu() {
    let (x, f, b) = (mixed(&[2, 6, 6, 2]), nonzero(&[3, 3, 2, 5]), mixed(&[5]));
    check_gpu_step("fused_conv", &[x, f, b], &["FusedConv2D"], 1e-5, |g, xs| {
        let y = g.conv2d(xs[0], xs[1], &[1, 1, 1, 1], "SAME").unwrap();
        let y = g.bias_add(y, xs[2]).unwrap();
        vec![g.relu(y).unwrap()]
    });
}

#[test]
fn pooling_and_its_gradients() {
    for (k, s, padding) in [(2, 2, "VALID"), (3, 2, "SAME"), (3, 1, "SAME")] {
        let on = ["MaxPool", "MaxPoolGrad", "AvgPool", "AvgPoolGrad"];
        check_gpu_step("pool", &[mixed(&[2, 7, 7, 3])], &on, 1e-6, |g, xs| {
            let (ks, st) = ([1, k, k, 1], [1, s, s, 1]);
            let m = g.max_pool(xs[0], &ks, &st, padding, "NHWC").unwrap();
            let a = g.avg_pool(xs[0], &ks, &st, padding, "NHWC").unwrap();
            let shape: Vec<usize> = g
                .shape(m)
                .dims()
                .unwrap()
                .iter()
                .map(|d| d.known().unwrap())
                .collect();
            let sum = g.add(m, a).unwrap();
            let l = weighted_sum(g, sum, &shape);
            let mut out = vec![m, a];
            out.extend(grads(g, l, &[xs[0]]));
            out
        });
    }
}

#[test]
fn comparisons_and_select() {
    let on = ["GreaterEqual", "Less", "SelectV2"];
    check_gpu_step(
        "select",
        &[mixed(&[3, 4]), mixed(&[4])],
        &on,
        0.0,
        |g, xs| {
            let c = g.greater_equal(xs[0], xs[1]).unwrap();
            let lt = g.less(xs[0], xs[1]).unwrap();
            let s = g.select(c, xs[0], xs[1]).unwrap();
            vec![c, lt, s]
        },
    );
}

#[test]
fn seeded_random_uniform_draws_the_cpus_numbers() {
    check_gpu_step("random_uniform", &[], &["RandomUniform"], 0.0, |g, _| {
        vec![g.random_uniform(&[5, 7], DType::F32, Some(42)).unwrap()]
    });
}

/// A small MLP trained a few steps with each optimizer on the CPU and on the GPU: the same
/// losses (the variables, their updates and every kernel of the step on the GPU).
#[test]
fn training_an_mlp_matches_the_cpu() {
    use tfr_core::{DevicePolicy, Session, SessionOptions};
    use tfr_nn::layers::{dense, Activation};
    use tfr_nn::losses::sparse_softmax_cross_entropy;
    use tfr_nn::optimizers::{Adam, Momentum, Optimizer, Sgd};
    let Some(_) = gpu("training_an_mlp_matches_the_cpu") else {
        return;
    };
    tfr_cuda::runtime::register().unwrap();
    type MakeOptimizer = fn() -> Box<dyn Optimizer>;
    let opts: [(&str, MakeOptimizer); 3] = [
        ("sgd", || Box::new(Sgd::new(0.1))),
        ("momentum", || Box::new(Momentum::new(0.05, 0.9, true))),
        ("adam", || Box::new(Adam::new(0.01))),
    ];
    for (name, make) in opts {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, tfr_graph::Shape::known(&[8, 12]))
            .unwrap();
        let y = g
            .placeholder("y", DType::I32, tfr_graph::Shape::known(&[8]))
            .unwrap();
        let h = dense(&mut g, "h", x, 16, Activation::Relu, Some(1)).unwrap();
        let o = dense(&mut g, "o", h.output, 4, Activation::Linear, Some(2)).unwrap();
        let loss = sparse_softmax_cross_entropy(&mut g, o.output, y).unwrap();
        let vars = g.variables().to_vec();
        let train = make().minimize(&mut g, loss, &vars, None).unwrap();
        let init = g.global_variables_initializer().unwrap();
        let feeds = [
            (x, mixed(&[8, 12])),
            (
                y,
                Tensor::new(&[8], vec![0i32, 1, 2, 3, 3, 2, 1, 0]).unwrap(),
            ),
        ];
        let losses = |device| {
            let options = SessionOptions {
                device,
                ..SessionOptions::default()
            };
            let s = Session::new(&g, options).unwrap();
            s.run(&[], &[], &[init]).unwrap();
            (0..5)
                .map(|_| {
                    s.run(&feeds, &[loss], &[train]).unwrap()[0]
                        .scalar_value::<f32>()
                        .unwrap()
                })
                .collect::<Vec<f32>>()
        };
        let (cpu, gpu) = (losses(DevicePolicy::Cpu), losses(DevicePolicy::Gpu));
        for (c, g) in cpu.iter().zip(&gpu) {
            assert!(
                (c - g).abs() <= 1e-5 * c.abs().max(1.0),
                "{name}: cpu {cpu:?} gpu {gpu:?}"
            );
        }
    }
}
