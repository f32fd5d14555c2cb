//! Summary values: scalars, histograms with TensorFlow's default buckets, PNG images.

use crate::error::{Result, TfError};
use crate::proto::{self, summary};
use std::sync::OnceLock;

/// TensorFlow's default histogram bucket limits: +-1e-12 growing by 1.1 up to 1e20, zero
/// between, +-f64::MAX at the ends (`tensorflow/core/lib/histogram/histogram.cc`).
pub fn default_bucket_limits() -> &'static [f64] {
    static LIMITS: OnceLock<Vec<f64>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1.0e-12;
        while v < 1.0e20 {
            pos.push(v);
            v *= 1.1;
        }
        pos.push(f64::MAX);
        let mut limits: Vec<f64> = pos.iter().rev().map(|x| -x).collect();
        limits.push(0.0);
        limits.extend(pos);
        limits
    })
}

/// A histogram of `values` as TensorFlow encodes it: bucket i counts the values in
/// [limit[i-1], limit[i]); runs of empty buckets are merged into one. Non-finite values are an
/// error naming the tag (TensorFlow's HistogramSummary rejects them too).
pub fn histogram(
    tag: &str,
    values: impl IntoIterator<Item = f64>,
) -> Result<proto::HistogramProto> {
    let limits = default_bucket_limits();
    let mut counts = vec![0.0f64; limits.len()];
    let (mut min, mut max) = (f64::MAX, -f64::MAX);
    let (mut num, mut sum, mut sum_squares) = (0.0, 0.0, 0.0);
    for x in values {
        if !x.is_finite() {
            return Err(TfError::Summary {
                tag: tag.into(),
                message: format!("histogram of a non-finite value ({x})"),
            });
        }
        let b = limits.partition_point(|&l| l <= x).min(limits.len() - 1);
        counts[b] += 1.0;
        min = min.min(x);
        max = max.max(x);
        num += 1.0;
        sum += x;
        sum_squares += x * x;
    }
    let mut h = proto::HistogramProto {
        min,
        max,
        num,
        sum,
        sum_squares,
        ..Default::default()
    };
    let mut i = 0;
    while i < counts.len() {
        let (mut end, mut count) = (limits[i], counts[i]);
        i += 1;
        if count <= 0.0 {
            while i < counts.len() && counts[i] <= 0.0 {
                end = limits[i];
                count = counts[i];
                i += 1;
            }
        }
        h.bucket_limit.push(end);
        h.bucket.push(count);
    }
    Ok(h)
}

/// An image in height x width x channels layout (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), encoded
/// as PNG for TensorBoard's Images tab.
pub fn image(
    tag: &str,
    height: usize,
    width: usize,
    channels: usize,
    pixels: &[u8],
) -> Result<summary::Image> {
    let bad = |message: String| TfError::Summary {
        tag: tag.into(),
        message,
    };
    let color = match channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        c => return Err(bad(format!("images have 1 to 4 channels, got {c}"))),
    };
    let expected = height
        .checked_mul(width)
        .and_then(|n| n.checked_mul(channels));
    if expected != Some(pixels.len()) || height == 0 || width == 0 {
        return Err(bad(format!(
            "{} bytes for a {height}x{width}x{channels} image",
            pixels.len()
        )));
    }
    let (h32, w32) = match (u32::try_from(height), u32::try_from(width)) {
        (Ok(h), Ok(w)) if h < (1 << 24) && w < (1 << 24) => (h, w),
        _ => return Err(bad(format!("a {height}x{width} image is too large"))),
    };
    let mut encoded = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut encoded, w32, h32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc
            .write_header()
            .map_err(|e| bad(format!("PNG encoding: {e}")))?;
        w.write_image_data(pixels)
            .map_err(|e| bad(format!("PNG encoding: {e}")))?;
    }
    Ok(summary::Image {
        height: h32 as i32,
        width: w32 as i32,
        colorspace: channels as i32,
        encoded_image_string: encoded,
    })
}

/// Pixels from floats in [0, 1] (clamped), as `image` takes them.
pub fn pixels_from_unit_floats(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

pub fn scalar_value(tag: &str, value: f32) -> summary::Value {
    summary::Value {
        tag: tag.into(),
        value: Some(summary::value::Value::SimpleValue(value)),
        ..Default::default()
    }
}

pub fn histogram_value(tag: &str, h: proto::HistogramProto) -> summary::Value {
    summary::Value {
        tag: tag.into(),
        value: Some(summary::value::Value::Histo(h)),
        ..Default::default()
    }
}

pub fn image_value(tag: &str, img: summary::Image) -> summary::Value {
    summary::Value {
        tag: tag.into(),
        value: Some(summary::value::Value::Image(img)),
        ..Default::default()
    }
}
