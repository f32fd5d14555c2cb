//! CPU kernels of the summary ops (`tfr_graph::ops::summary_ops`): each outputs a scalar string
//! holding a serialized `Summary`. They live here, beside the `Summary` messages, and are
//! registered into tfr-core's kernel registry by [`register_summary_kernels`] (kernel
//! registration is open to any crate, as for device crates).

use crate::proto::{summary, Summary};
use crate::summary::{histogram, histogram_value, image, image_value, scalar_value};
use prost::Message;
use std::collections::HashSet;
use std::sync::Once;
use tfr_core::kernel::{register_kernels, KernelContext, KernelInit, OpKernel};
use tfr_core::{KernelError, Tensor};
use tfr_graph::{DType, DTypeSet};

type KResult<T = ()> = Result<T, KernelError>;

/// Registers the CPU kernels of `ScalarSummary`, `HistogramSummary`, `ImageSummary` and
/// `MergeSummary` (once per process; later calls do nothing). `SummaryWriter::new` and
/// `import_graph_def` call it, so a program writing summaries rarely needs to.
pub fn register_summary_kernels() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        register_kernels(|r| {
            // Kernels are chosen by input 0's dtype: the tags, a string, for every one.
            let s = DTypeSet::STRING;
            r.cpu("ScalarSummary", s, |_| Ok(Box::new(scalar_summary)));
            r.cpu("HistogramSummary", s, |_| Ok(Box::new(histogram_summary)));
            r.cpu("ImageSummary", s, image_summary_kernel);
            r.cpu("MergeSummary", s, |_| Ok(Box::new(merge_summary)));
        })
    });
}

fn invalid(message: impl Into<String>) -> KernelError {
    KernelError::invalid(message)
}

/// The output: the summary serialized into a scalar string.
fn set_summary(ctx: &mut KernelContext<'_>, s: &Summary) -> KResult {
    let t = Tensor::from_strings(&[], &[s.encode_to_vec()])
        .map_err(|e| KernelError::internal(e.to_string()))?;
    ctx.set_output(t);
    Ok(())
}

/// Tag `i` of `tags` as text (summary tags are protobuf strings: UTF-8).
fn tag_text(tags: &[Vec<u8>], i: usize) -> KResult<String> {
    String::from_utf8(tags[i].clone()).map_err(|_| {
        invalid(format!(
            "tag {} is not UTF-8 text",
            tfr_core::tensor::quote_bytes(&tags[i])
        ))
    })
}

fn strings(t: &Tensor, what: &str) -> KResult<Vec<Vec<u8>>> {
    t.as_strings()
        .map(<[Vec<u8>]>::to_vec)
        .map_err(|e| invalid(format!("{what}: {e}")))
}

/// The one tag of a scalar string input.
fn scalar_tag(t: &Tensor) -> KResult<String> {
    if t.rank() != 0 {
        return Err(invalid(format!(
            "tag must be a scalar, got shape {:?}",
            t.shape()
        )));
    }
    tag_text(&strings(t, "tag")?, 0)
}

fn scalar_summary(ctx: &mut KernelContext<'_>) -> KResult {
    let (tags, values) = (ctx.input(0), ctx.input(1));
    if tags.shape() != values.shape() {
        return Err(invalid(format!(
            "tags and values must have the same shape, got {:?} and {:?}",
            tags.shape(),
            values.shape()
        )));
    }
    let names = strings(tags, "tags")?;
    let mut s = Summary::default();
    for i in 0..names.len() {
        s.value.push(scalar_value(
            &tag_text(&names, i)?,
            values.get_f64(i) as f32,
        ));
    }
    set_summary(ctx, &s)
}

fn histogram_summary(ctx: &mut KernelContext<'_>) -> KResult {
    let tag = scalar_tag(ctx.input(0))?;
    let values = ctx.input(1);
    let h = histogram(&tag, (0..values.num_elements()).map(|i| values.get_f64(i)))
        .map_err(|e| invalid(e.to_string()))?;
    set_summary(
        ctx,
        &Summary {
            value: vec![histogram_value(&tag, h)],
        },
    )
}

fn image_summary_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let max_images = usize::try_from(*init.attrs.int("max_images")?)
        .map_err(|_| "max_images must not be negative".to_string())?;
    let bad_color = init.attrs.tensor("bad_color")?;
    let bad_color: Vec<u8> = match &bad_color.data {
        tfr_graph::Buffer::U8(v) if bad_color.shape.len() == 1 => v.clone(),
        _ => return Err("bad_color must be a uint8 vector".into()),
    };
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        image_summary(ctx, max_images, &bad_color)
    }))
}

/// Pixels of one image as TensorFlow's `ImageSummary` makes them from floats: the range of the
/// finite pixels (a pixel with any non-finite channel is `bad_color`) maps into [0, 255] by
/// `255 / max` when no value is negative, else by `127 / max|v|` around 128; values are
/// truncated to bytes. `$t` is the precision TensorFlow computes in (f32 for float and half).
macro_rules! normalize {
    ($t:ty, $values:expr, $depth:expr, $bad:expr) => {{
        let (values, depth, bad): (&[f64], usize, &[u8]) = ($values, $depth, $bad);
        let finite = |px: &[f64]| px.iter().all(|v| v.is_finite());
        let (mut lo, mut hi) = (<$t>::INFINITY, <$t>::NEG_INFINITY);
        for px in values.chunks_exact(depth).filter(|px| finite(px)) {
            for &v in px {
                lo = lo.min(v as $t);
                hi = hi.max(v as $t);
            }
        }
        const ZERO: $t = 1e-6;
        let (scale, offset): ($t, $t) = if lo < 0.0 {
            let m = lo.abs().max(hi.abs());
            (if m < ZERO { 0.0 } else { 127.0 / m }, 128.0)
        } else {
            (if hi < ZERO { 0.0 } else { 255.0 / hi }, 0.0)
        };
        let mut out = Vec::with_capacity(values.len());
        for px in values.chunks_exact(depth) {
            if finite(px) {
                out.extend(px.iter().map(|&v| ((v as $t) * scale + offset) as u8));
            } else {
                out.extend_from_slice(&bad[..depth]);
            }
        }
        out
    }};
}

fn image_summary(ctx: &mut KernelContext<'_>, max_images: usize, bad_color: &[u8]) -> KResult {
    let tag = scalar_tag(ctx.input(0))?;
    let t = ctx.input(1);
    let &[batch, h, w, depth] = t.shape() else {
        return Err(invalid(format!(
            "tensor must be 4-D [batch, height, width, channels] with 1, 3 or 4 channels, got shape {:?}",
            t.shape()
        )));
    };
    if ![1, 3, 4].contains(&depth) {
        return Err(invalid(format!(
            "tensor must have 1, 3 or 4 channels (the last dim), got shape {:?}",
            t.shape()
        )));
    }
    if bad_color.len() < depth {
        return Err(invalid(format!(
            "bad_color has {} elements, fewer than the {depth} channels of the images",
            bad_color.len()
        )));
    }
    let per = h * w * depth;
    let mut s = Summary::default();
    for i in 0..batch.min(max_images) {
        let range = i * per..(i + 1) * per;
        let pixels = match t.dtype() {
            DType::U8 => t.as_slice::<u8>().map_err(|e| invalid(e.to_string()))?[range].to_vec(),
            dtype => {
                let values: Vec<f64> = range.map(|k| t.get_f64(k)).collect();
                if dtype == DType::F64 {
                    normalize!(f64, &values, depth, bad_color)
                } else {
                    normalize!(f32, &values, depth, bad_color)
                }
            }
        };
        let name = if max_images > 1 {
            format!("{tag}/image/{i}")
        } else {
            format!("{tag}/image")
        };
        let img = image(&name, h, w, depth, &pixels).map_err(|e| invalid(e.to_string()))?;
        s.value.push(image_value(&name, img));
    }
    set_summary(ctx, &s)
}

fn merge_summary(ctx: &mut KernelContext<'_>) -> KResult {
    let mut merged = Summary::default();
    let mut tags = HashSet::new();
    for i in 0..ctx.num_inputs() {
        for (j, bytes) in strings(ctx.input(i), "inputs")?.iter().enumerate() {
            let part = Summary::decode(bytes.as_slice()).map_err(|e| {
                invalid(format!(
                    "input {i}, element {j} is not a serialized Summary: {e}"
                ))
            })?;
            for v in part.value {
                // Values without a tag (tensor summaries) may repeat, as in TensorFlow.
                if !v.tag.is_empty() && !tags.insert(v.tag.clone()) {
                    return Err(invalid(format!(
                        "duplicate tag `{}` found in summary inputs",
                        v.tag
                    )));
                }
                merged.value.push(v);
            }
        }
    }
    set_summary(ctx, &merged)
}

/// The values of a fetched summary tensor (each element a serialized `Summary`), in order.
pub fn decode_summaries(t: &Tensor) -> crate::Result<Vec<summary::Value>> {
    let bad = |message: String| crate::TfError::Decode {
        what: "a summary tensor".into(),
        message,
    };
    let parts = t.as_strings().map_err(|e| bad(e.to_string()))?;
    let mut values = Vec::new();
    for (i, bytes) in parts.iter().enumerate() {
        let s = Summary::decode(bytes.as_slice()).map_err(|e| bad(format!("element {i}: {e}")))?;
        values.extend(s.value);
    }
    Ok(values)
}
