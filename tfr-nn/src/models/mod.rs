//! The convolutional networks of the TensorFlow paper's benchmarks (AlexNet, Overfeat,
//! OxfordNet/VGG-16, GoogLeNet) and a LeNet-5-style network for MNIST. Each function builds
//! the network on an NHWC image batch of any batch size (the spatial size must be large enough
//! for the architecture's VALID windows) and returns the logits; variables live under the
//! model's name scope. `training` switches dropout (and is otherwise unused).
//! `lstm_lm` is the paper's LSTM language model.

mod alexnet;
mod googlenet;
mod lenet;
pub mod lstm_lm;
mod overfeat;
mod vgg;

pub use alexnet::alexnet;
pub use googlenet::googlenet;
pub use lenet::lenet;
pub use overfeat::overfeat;
pub use vgg::vgg16;

use crate::initializers::Initializer;
use crate::layers::{conv2d, dense_with, max_pool, Activation, Conv2DOptions};
use tfr_graph::ops::nn_ops::{DataFormat, Padding};
use tfr_graph::{Graph, GraphError, Output, Result};

/// Checks that `images` is a 4-D batch with known spatial dims and channels.
fn check_images(g: &Graph, images: Output, model: &str) -> Result<()> {
    let s = g.shape(images);
    let ok = s.rank() == Some(4)
        && s.dims()
            .is_some_and(|d| d[1..].iter().all(|d| d.known().is_some_and(|v| v > 0)));
    if ok {
        return Ok(());
    }
    Err(GraphError::InvalidNode {
        node: model.into(),
        op: "Conv2D".into(),
        message: format!("needs NHWC images with known height, width and channels, got shape {s}"),
    })
}

/// A ReLU convolution, square `k` window, stride `s`.
fn conv(
    g: &mut Graph,
    name: &str,
    x: Output,
    filters: usize,
    k: usize,
    s: usize,
    padding: Padding,
) -> Result<Output> {
    let opts = Conv2DOptions::default().strides(s).padding(padding);
    Ok(conv2d(g, name, x, filters, [k, k], opts)?.output)
}

/// Square max pooling, NHWC.
fn pool(g: &mut Graph, x: Output, k: usize, s: usize, padding: Padding) -> Result<Output> {
    max_pool(g, x, [k, k], [s, s], padding, DataFormat::Nhwc)
}

/// A fully connected layer (He-normal for ReLU, Glorot-uniform for the logits).
fn fc(
    g: &mut Graph,
    name: &str,
    x: Output,
    units: usize,
    activation: Activation,
) -> Result<Output> {
    let init = match activation {
        Activation::Relu => Initializer::HeNormal,
        _ => Initializer::GlorotUniform,
    };
    Ok(dense_with(g, name, x, units, activation, init, None)?.output)
}
