//! GoogLeNet (Inception v1): the stem (7x7/2 convolution, pooling, LRN, 1x1 and 3x3
//! convolutions), nine inception modules, global average pooling, dropout 0.4 and a linear
//! classifier (the auxiliary classifiers are left out). SAME windows throughout, so any image
//! size works; designed for 224x224x3.

use super::{check_images, conv, fc, pool};
use crate::layers::{dropout, global_avg_pool, lrn, Activation, Training};
use tfr_graph::ops::nn_ops::Padding::Same;
use tfr_graph::{Graph, Output, Result};

/// An inception module's widths: 1x1; 3x3 reduce, 3x3; 5x5 reduce, 5x5; pool projection.
type Widths = (usize, usize, usize, usize, usize, usize);

/// Four branches concatenated along the channels.
fn inception(g: &mut Graph, name: &str, x: Output, w: Widths) -> Result<Output> {
    let (b1, r3, b3, r5, b5, bp) = w;
    g.with_scope(name, |g| {
        let a = conv(g, "1x1", x, b1, 1, 1, Same)?;
        let b = conv(g, "3x3_reduce", x, r3, 1, 1, Same)?;
        let b = conv(g, "3x3", b, b3, 3, 1, Same)?;
        let c = conv(g, "5x5_reduce", x, r5, 1, 1, Same)?;
        let c = conv(g, "5x5", c, b5, 5, 1, Same)?;
        let d = pool(g, x, 3, 1, Same)?;
        let d = conv(g, "pool_proj", d, bp, 1, 1, Same)?;
        g.concat(&[a, b, c, d], 3)
    })
}

/// GoogLeNet logits `[batch, classes]` for NHWC `images`.
pub fn googlenet(
    g: &mut Graph,
    images: Output,
    classes: usize,
    training: impl Into<Training>,
) -> Result<Output> {
    check_images(g, images, "googlenet")?;
    let training = training.into();
    g.with_scope("googlenet", |g| {
        let lrn2 = |g: &mut Graph, x| lrn(g, x, 2, 1.0, 2e-5, 0.75);
        let x = conv(g, "conv1", images, 64, 7, 2, Same)?;
        let x = pool(g, x, 3, 2, Same)?;
        let x = lrn2(g, x)?;
        let x = conv(g, "conv2_reduce", x, 64, 1, 1, Same)?;
        let x = conv(g, "conv2", x, 192, 3, 1, Same)?;
        let x = lrn2(g, x)?;
        let mut x = pool(g, x, 3, 2, Same)?;
        let stages: [&[(&str, Widths)]; 3] = [
            &[
                ("inception_3a", (64, 96, 128, 16, 32, 32)),
                ("inception_3b", (128, 128, 192, 32, 96, 64)),
            ],
            &[
                ("inception_4a", (192, 96, 208, 16, 48, 64)),
                ("inception_4b", (160, 112, 224, 24, 64, 64)),
                ("inception_4c", (128, 128, 256, 24, 64, 64)),
                ("inception_4d", (112, 144, 288, 32, 64, 64)),
                ("inception_4e", (256, 160, 320, 32, 128, 128)),
            ],
            &[
                ("inception_5a", (256, 160, 320, 32, 128, 128)),
                ("inception_5b", (384, 192, 384, 48, 128, 128)),
            ],
        ];
        for (i, stage) in stages.iter().enumerate() {
            for &(name, w) in stage.iter() {
                x = inception(g, name, x, w)?;
            }
            if i < 2 {
                x = pool(g, x, 3, 2, Same)?;
            }
        }
        let x = global_avg_pool(g, x, tfr_graph::ops::nn_ops::DataFormat::Nhwc)?;
        let x = dropout(g, x, 0.4, training, None)?;
        fc(g, "logits", x, classes, Activation::Linear)
    })
}
