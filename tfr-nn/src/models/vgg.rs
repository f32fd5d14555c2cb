//! OxfordNet: VGG-16 (configuration D), thirteen 3x3 convolutions in five blocks with 2x2
//! pooling, two 4096-unit layers with dropout 0.5. Designed for 224x224x3; works from 32x32.

use super::{check_images, conv, fc, pool};
use crate::layers::{dropout, flatten, Activation, Training};
use tfr_graph::ops::nn_ops::Padding::{Same, Valid};
use tfr_graph::{Graph, Output, Result};

/// Filters of each block's convolutions.
const BLOCKS: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

/// VGG-16 logits `[batch, classes]` for NHWC `images`.
pub fn vgg16(
    g: &mut Graph,
    images: Output,
    classes: usize,
    training: impl Into<Training>,
) -> Result<Output> {
    check_images(g, images, "vgg16")?;
    let training = training.into();
    g.with_scope("vgg16", |g| {
        let mut x = images;
        for (b, filters) in BLOCKS.iter().enumerate() {
            for (i, &f) in filters.iter().enumerate() {
                x = conv(g, &format!("conv{}_{}", b + 1, i + 1), x, f, 3, 1, Same)?;
            }
            x = pool(g, x, 2, 2, Valid)?;
        }
        let x = flatten(g, x)?;
        let x = fc(g, "fc6", x, 4096, Activation::Relu)?;
        let x = dropout(g, x, 0.5, training, None)?;
        let x = fc(g, "fc7", x, 4096, Activation::Relu)?;
        let x = dropout(g, x, 0.5, training, None)?;
        fc(g, "fc8", x, classes, Activation::Linear)
    })
}
