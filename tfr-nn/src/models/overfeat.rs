//! Overfeat, the "fast" model of the convnet-benchmarks (96-256-512-1024-1024 filters, VALID
//! 11x11/4 and 5x5 convolutions, 2x2 pooling), with its 3072-4096 classifier and dropout 0.5.
//! Designed for 231x231x3; works from about 71x71.

use super::{check_images, conv, fc, pool};
use crate::layers::{dropout, flatten, Activation, Training};
use tfr_graph::ops::nn_ops::Padding::{Same, Valid};
use tfr_graph::{Graph, Output, Result};

/// Overfeat logits `[batch, classes]` for NHWC `images`.
pub fn overfeat(
    g: &mut Graph,
    images: Output,
    classes: usize,
    training: impl Into<Training>,
) -> Result<Output> {
    check_images(g, images, "overfeat")?;
    let training = training.into();
    g.with_scope("overfeat", |g| {
        let x = conv(g, "conv1", images, 96, 11, 4, Valid)?;
        let x = pool(g, x, 2, 2, Valid)?;
        let x = conv(g, "conv2", x, 256, 5, 1, Valid)?;
        let x = pool(g, x, 2, 2, Valid)?;
        let x = conv(g, "conv3", x, 512, 3, 1, Same)?;
        let x = conv(g, "conv4", x, 1024, 3, 1, Same)?;
        let x = conv(g, "conv5", x, 1024, 3, 1, Same)?;
        let x = pool(g, x, 2, 2, Valid)?;
        let x = flatten(g, x)?;
        let x = dropout(g, x, 0.5, training, None)?;
        let x = fc(g, "fc6", x, 3072, Activation::Relu)?;
        let x = dropout(g, x, 0.5, training, None)?;
        let x = fc(g, "fc7", x, 4096, Activation::Relu)?;
        fc(g, "fc8", x, classes, Activation::Linear)
    })
}
