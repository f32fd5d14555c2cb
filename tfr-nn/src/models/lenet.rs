//! A LeNet-5-style network for MNIST, as in TensorFlow's "Deep MNIST" tutorial: two 5x5
//! convolutions (32 and 64 filters, ReLU, 2x2 max pooling), a 1024-unit layer, dropout 0.5 and
//! 10 logits.

use super::{check_images, conv, fc, pool};
use crate::layers::{dropout, flatten, Activation, Training};
use tfr_graph::ops::nn_ops::Padding::Same;
use tfr_graph::{Graph, Output, Result};

/// LeNet logits `[batch, 10]` for NHWC `images` (28x28x1 for MNIST; any size works).
pub fn lenet(g: &mut Graph, images: Output, training: impl Into<Training>) -> Result<Output> {
    check_images(g, images, "lenet")?;
    let training = training.into();
    g.with_scope("lenet", |g| {
        let x = conv(g, "conv1", images, 32, 5, 1, Same)?;
        let x = pool(g, x, 2, 2, Same)?;
        let x = conv(g, "conv2", x, 64, 5, 1, Same)?;
        let x = pool(g, x, 2, 2, Same)?;
        let x = flatten(g, x)?;
        let x = fc(g, "fc1", x, 1024, Activation::Relu)?;
        let x = dropout(g, x, 0.5, training, None)?;
        fc(g, "logits", x, 10, Activation::Linear)
    })
}
