//! TensorBoard summaries as graph ops, with TensorFlow's names, signatures and semantics: each
//! outputs a scalar `string` holding a serialized `tensorflow.Summary` protobuf, which a step
//! fetches and `tfr_tf::SummaryWriter::add_summary` writes as an event.
//!
//! - `ScalarSummary(tags, values)`: one simple value per element (tags and values of one shape).
//! - `HistogramSummary(tag, values)`: TensorFlow's default buckets; a NaN or infinity is an
//!   error naming the tag.
//! - `ImageSummary(tag, tensor)`: up to `max_images` PNGs of `tensor` [batch, height, width,
//!   channels] (channels 1, 3 or 4); floats are normalized per image as TensorFlow does,
//!   non-finite pixels painted `bad_color`. Tags `tag/image/i`, or `tag/image` when
//!   `max_images` is 1.
//! - `MergeSummary(inputs)`: the values of every input summary in one; a tag twice is an error.
//!
//! The protobuf messages live in `tfr-tf`, so their CPU kernels are registered by that crate
//! (`tfr_tf::register_summary_kernels()`, also run by `SummaryWriter::new` and
//! `import_graph_def`). None is differentiable: their outputs are strings.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};
use crate::value::TensorValue;

/// The summary ops (their kernels come from `tfr-tf`).
pub const SUMMARY_OPS: [&str; 4] = [
    "ScalarSummary",
    "HistogramSummary",
    "ImageSummary",
    "MergeSummary",
];

/// What `ScalarSummary` and `HistogramSummary` summarize (TF's real number types here).
const REAL: DTypeSet = DTypeSet::of(&[
    DType::F32,
    DType::F64,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::F16,
    DType::BF16,
]);

/// The image dtypes of `ImageSummary` (TF's: uint8, float, half, double).
const IMAGE: DTypeSet = DTypeSet::of(&[DType::U8, DType::F32, DType::F16, DType::F64]);

/// `ImageSummary`'s default `bad_color`: opaque red.
pub fn default_bad_color() -> TensorValue {
    TensorValue {
        shape: vec![4],
        data: crate::value::Buffer::U8(vec![255, 0, 0, 255]),
    }
}

pub fn op_defs() -> Vec<OpDef> {
    let string = DTypeSet::STRING;
    vec![
        OpDef::new("ScalarSummary", infer_scalar_summary)
            .doc("a Summary with one simple value per element of `values`, tagged by the same element of `tags`")
            .input("tags", string)
            .input("values", REAL)
            .output("summary")
            .no_gradient(),
        OpDef::new("HistogramSummary", infer_histogram_summary)
            .doc("a Summary holding a histogram of `values` (TensorFlow's default buckets) under `tag`")
            .input("tag", string)
            .input("values", REAL)
            .output("summary")
            .no_gradient(),
        OpDef::new("ImageSummary", infer_image_summary)
            .doc("a Summary with up to `max_images` PNG images of `tensor` [batch, height, width, channels]")
            .input("tag", string)
            .input("tensor", IMAGE)
            .output("summary")
            .attr_default("max_images", AttrKind::Int, 3i64)
            .attr_default("bad_color", AttrKind::Tensor, default_bad_color())
            .no_gradient(),
        OpDef::new("MergeSummary", infer_merge_summary)
            .doc("one Summary holding the values of every input summary; a tag twice is an error")
            .list_input("inputs", string, 1)
            .output("summary")
            .no_gradient(),
    ]
}

fn summary_out() -> Vec<TensorType> {
    vec![TensorType::new(DType::String, Shape::scalar())]
}

fn scalar_tag(ctx: &InferCtx<'_>) -> std::result::Result<(), String> {
    let tag = &ctx.input(0).shape;
    match tag.rank() {
        Some(r) if r != 0 => Err(format!("tag must be a scalar, got shape {tag}")),
        _ => Ok(()),
    }
}

fn infer_scalar_summary(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let (tags, values) = (&ctx.input(0).shape, &ctx.input(1).shape);
    tags.merge(values).map_err(|_| {
        format!("tags and values must have the same shape, got {tags} and {values}")
    })?;
    Ok(summary_out())
}

fn infer_histogram_summary(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    scalar_tag(ctx)?;
    Ok(summary_out())
}

fn infer_image_summary(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    scalar_tag(ctx)?;
    let max_images = *ctx.attrs.int("max_images")?;
    if max_images < 1 {
        return Err(format!("max_images must be at least 1, got {max_images}"));
    }
    let bad = ctx.attrs.tensor("bad_color")?;
    if bad.dtype() != DType::U8 || bad.shape.len() != 1 {
        return Err(format!(
            "bad_color must be a uint8 vector, got {}{:?}",
            bad.dtype(),
            bad.shape
        ));
    }
    let t = &ctx.input(1).shape;
    if let Some(r) = t.rank() {
        let channels = t.dim(3.min(r.saturating_sub(1)));
        let bad_channels = matches!(channels, Dim::Known(c) if ![1, 3, 4].contains(&c));
        if r != 4 || bad_channels {
            return Err(format!(
                "tensor must be 4-D [batch, height, width, channels] with 1, 3 or 4 channels, got shape {t}"
            ));
        }
    }
    Ok(summary_out())
}

fn infer_merge_summary(_: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    Ok(summary_out())
}

impl Graph {
    /// `ScalarSummary` of the scalar `value` under `tag` (a string constant made here).
    pub fn scalar_summary(&mut self, tag: &str, value: Output) -> Result<Output> {
        let tags = self.constant_strings(&[], &[tag])?;
        self.build("ScalarSummary")
            .input(tags)
            .input(value)
            .finish1()
    }

    /// `HistogramSummary` of every element of `values` under `tag`.
    pub fn histogram_summary(&mut self, tag: &str, values: Output) -> Result<Output> {
        let tag = self.constant_strings(&[], &[tag])?;
        self.build("HistogramSummary")
            .input(tag)
            .input(values)
            .finish1()
    }

    /// `ImageSummary` of at most `max_images` images of `images` [batch, height, width,
    /// channels] under `tag` (`bad_color` opaque red).
    pub fn image_summary(&mut self, tag: &str, images: Output, max_images: i64) -> Result<Output> {
        let tag = self.constant_strings(&[], &[tag])?;
        self.build("ImageSummary")
            .input(tag)
            .input(images)
            .attr("max_images", max_images)
            .finish1()
    }

    /// `MergeSummary` of `summaries` (scalar or vector string tensors of serialized Summaries).
    pub fn merge_summary(&mut self, summaries: &[Output]) -> Result<Output> {
        self.build("MergeSummary")
            .inputs(summaries.iter().copied())
            .finish1()
    }
}
