//! AlexNet as in TensorFlow's AlexNet benchmark (the convnet-benchmarks variant: 64-192-384-
//! 256-256 filters, LRN after the first two convolutions), with the classic classifier: two
//! 4096-unit layers with dropout 0.5. Designed for 224x224x3; works from about 63x63.

use super::{check_images, conv, fc, pool};
use crate::layers::{dropout, flatten, lrn, Activation, Training};
use tfr_graph::ops::nn_ops::Padding::{Same, Valid};
use tfr_graph::{Graph, Output, Result};

/// AlexNet logits `[batch, classes]` for NHWC `images`.
pub fn alexnet(
    g: &mut Graph,
    images: Output,
    classes: usize,
    training: impl Into<Training>,
) -> Result<Output> {
    check_images(g, images, "alexnet")?;
    let training = training.into();
    g.with_scope("alexnet", |g| {
        let lrn4 = |g: &mut Graph, x| lrn(g, x, 4, 1.0, 0.001 / 9.0, 0.75);
        let x = conv(g, "conv1", images, 64, 11, 4, Same)?;
        let x = lrn4(g, x)?;
        let x = pool(g, x, 3, 2, Valid)?;
        let x = conv(g, "conv2", x, 192, 5, 1, Same)?;
        let x = lrn4(g, x)?;
        let x = pool(g, x, 3, 2, Valid)?;
        let x = conv(g, "conv3", x, 384, 3, 1, Same)?;
        let x = conv(g, "conv4", x, 256, 3, 1, Same)?;
        let x = conv(g, "conv5", x, 256, 3, 1, Same)?;
        let x = pool(g, x, 3, 2, Valid)?;
        let x = flatten(g, x)?;
        let x = dropout(g, x, 0.5, training, None)?;
        let x = fc(g, "fc6", x, 4096, Activation::Relu)?;
        let x = dropout(g, x, 0.5, training, None)?;
        let x = fc(g, "fc7", x, 4096, Activation::Relu)?;
        fc(g, "fc8", x, classes, Activation::Linear)
    })
}
