//! The training steps of `../shared/PEERS.md` shared by the benches that run them (`peers.rs`
//! in one process, `distributed.rs` over tasks): each graph with its feeds and step nodes.
//! Each bench is a crate of its own, so they include this file with `#[path]` (in a folder, so
//! cargo does not take it for a bench target of its own).

use tfr_core::Tensor;
use tfr_graph::{DType, Graph, NodeId, Output, Shape};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One SGD training step: feed `x` and `y`, fetch `loss`, run `train`; `init` initializes
/// the variables and `feeds` are the step's inputs (fixed, as the peers' scripts use).
pub struct TrainStep {
    pub g: Graph,
    pub x: Output,
    pub y: Output,
    pub loss: Output,
    pub train: NodeId,
    pub init: NodeId,
    pub feeds: [Tensor; 2],
}

/// The MLP 784-512-512-10 (ReLU, mean sparse softmax cross-entropy, SGD lr 0.01) on `batch`
/// inputs.
pub fn mlp(batch: usize) -> Result<TrainStep> {
    use tfr_nn::layers::{dense, Activation};
    use tfr_nn::optimizers::{Optimizer, Sgd};
    let mut g = Graph::new();
    g.seed = Some(0);
    let x = g.placeholder("x", DType::F32, Shape::known(&[batch, 784]))?;
    let y = g.placeholder("y", DType::I32, Shape::known(&[batch]))?;
    let mut h = x;
    let mut vars = Vec::new();
    for (i, units) in [512, 512].into_iter().enumerate() {
        let l = dense(&mut g, &format!("fc{i}"), h, units, Activation::Relu, None)?;
        vars.extend([l.kernel, l.bias]);
        h = l.output;
    }
    let out = dense(&mut g, "logits", h, 10, Activation::Linear, None)?;
    vars.extend([out.kernel, out.bias]);
    let loss = tfr_nn::losses::sparse_softmax_cross_entropy(&mut g, out.output, y)?;
    let train = Sgd::new(0.01).minimize(&mut g, loss, &vars, None)?;
    let init = g.global_variables_initializer()?;
    let xs: Vec<f32> = (0..batch * 784)
        .map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * 2.0)
        .collect();
    let ys: Vec<i32> = (0..batch).map(|i| (i * 7 % 10) as i32).collect();
    let feeds = [Tensor::new(&[batch, 784], xs)?, Tensor::new(&[batch], ys)?];
    Ok(TrainStep {
        g,
        x,
        y,
        loss,
        train,
        init,
        feeds,
    })
}

/// The peers' LeNet-like CNN on `batch` 28x28x1 NHWC images (SGD lr 0.01): conv 5x5x32 SAME +
/// bias, relu, max pool 2x2/2 SAME, conv 5x5x64 SAME + bias, relu, max pool, flatten, fc 1024
/// relu, fc 10; mean sparse softmax cross-entropy. He-normal weights, zero biases,
/// standard-normal inputs (as ../shared/peers/common.py). Built with the tfr-nn layers, so each
/// conv + bias + relu is one FusedConv2D node (TensorFlow's grappler makes the same fusion in
/// the peers' graph).
pub fn lenet(batch: usize) -> Result<TrainStep> {
    use tfr_graph::ops::nn_ops::{DataFormat, Padding};
    use tfr_nn::initializers::Initializer;
    use tfr_nn::layers::{conv2d, dense_with, flatten, max_pool, Activation, Conv2DOptions};
    use tfr_nn::optimizers::{Optimizer, Sgd};
    let mut g = Graph::new();
    g.seed = Some(0);
    let x = g.placeholder("x", DType::F32, Shape::known(&[batch, 28, 28, 1]))?;
    let y = g.placeholder("y", DType::I32, Shape::known(&[batch]))?;
    let mut vars = Vec::new();
    let mut h = x;
    for (name, filters) in [("conv1", 32), ("conv2", 64)] {
        let c = conv2d(&mut g, name, h, filters, [5, 5], Conv2DOptions::default())?;
        vars.push(c.kernel);
        vars.extend(c.bias);
        h = max_pool(
            &mut g,
            c.output,
            [2, 2],
            [2, 2],
            Padding::Same,
            DataFormat::Nhwc,
        )?;
    }
    h = flatten(&mut g, h)?;
    for (name, units, act) in [
        ("fc1", 1024, Activation::Relu),
        ("fc2", 10, Activation::Linear),
    ] {
        let d = dense_with(&mut g, name, h, units, act, Initializer::HeNormal, None)?;
        vars.extend([d.kernel, d.bias]);
        h = d.output;
    }
    let loss = tfr_nn::losses::sparse_softmax_cross_entropy(&mut g, h, y)?;
    let train = Sgd::new(0.01).minimize(&mut g, loss, &vars, None)?;
    let init = g.global_variables_initializer()?;
    // Standard-normal inputs by Box-Muller over a fixed integer sequence.
    let uniform = |i: usize| ((i.wrapping_mul(2654435761) % 1_000_003) as f32 + 0.5) / 1_000_003.0;
    let xs: Vec<f32> = (0..batch * 28 * 28)
        .map(|i| {
            (-2.0 * uniform(2 * i).ln()).sqrt() * (std::f32::consts::TAU * uniform(2 * i + 1)).cos()
        })
        .collect();
    let ys: Vec<i32> = (0..batch).map(|i| (i * 7 % 10) as i32).collect();
    let feeds = [
        Tensor::new(&[batch, 28, 28, 1], xs)?,
        Tensor::new(&[batch], ys)?,
    ];
    Ok(TrainStep {
        g,
        x,
        y,
        loss,
        train,
        init,
        feeds,
    })
}
