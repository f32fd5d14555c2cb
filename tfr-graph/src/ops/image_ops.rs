//! TensorFlow's spatial rearrangement and resizing ops: MirrorPad (and MirrorPadGrad),
//! DepthToSpace / SpaceToDepth, SpaceToBatchND / BatchToSpaceND, ResizeBilinear /
//! ResizeNearestNeighbor with their gradient ops. Gradient rules are in `image_grad.rs`.
//!
//! Shapes are static wherever the integer inputs (paddings, block shapes, sizes) are graph
//! constants (seen through `Identity` and a loop invariant's `Enter`, as `InferCtx::const_ints`
//! does); otherwise the rank is kept and the dims the kernel decides are unknown.

use super::array_ops::infer_pad;
use super::builder_args::checked_i32s;
use super::nn_ops::DataFormat;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};
use crate::value::TensorValue;

type InferResult = std::result::Result<Vec<TensorType>, String>;

const I32: DTypeSet = DTypeSet::of(&[DType::I32]);

/// How MirrorPad mirrors: TensorFlow's `mode` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorMode {
    /// The edge is not repeated: `[1, 2, 3]` padded by 2 is `[3, 2, 1, 2, 3, 2, 1]`.
    Reflect,
    /// The edge is repeated: `[1, 2, 3]` padded by 2 is `[2, 1, 1, 2, 3, 3, 2]`.
    Symmetric,
}

impl MirrorMode {
    pub fn parse(s: &str) -> std::result::Result<MirrorMode, String> {
        match s {
            "REFLECT" => Ok(MirrorMode::Reflect),
            "SYMMETRIC" => Ok(MirrorMode::Symmetric),
            other => Err(format!("mode must be REFLECT or SYMMETRIC, got {other:?}")),
        }
    }
    /// How much smaller than the dim a padding must stay: a padding may be at most
    /// `dim - offset` (TensorFlow's rule: 1 for REFLECT, 0 for SYMMETRIC).
    pub fn offset(self) -> i64 {
        match self {
            MirrorMode::Reflect => 1,
            MirrorMode::Symmetric => 0,
        }
    }
    /// The source index in `[0, dim)` of index `i` of the padded axis (`i` relative to the
    /// first unpadded element, so negative in the leading padding).
    pub fn source(self, i: i64, dim: i64) -> i64 {
        let off = self.offset();
        if i < 0 {
            -i - 1 + off
        } else if i >= dim {
            2 * dim - 1 - off - i
        } else {
            i
        }
    }
}

/// The checked (before, after) pairs of a `[rank, 2]` paddings (or crops) value.
pub fn padding_pairs(
    p: &[i64],
    rank: usize,
    what: &str,
) -> std::result::Result<Vec<(i64, i64)>, String> {
    if p.len() != 2 * rank {
        return Err(format!(
            "{what} must have shape [{rank}, 2], got {} values",
            p.len()
        ));
    }
    let pairs: Vec<(i64, i64)> = p.chunks(2).map(|c| (c[0], c[1])).collect();
    if let Some(i) = pairs.iter().position(|&(a, b)| a < 0 || b < 0) {
        return Err(format!(
            "{what} must be non-negative, got {:?} in row {i}",
            pairs[i]
        ));
    }
    Ok(pairs)
}

/// Checks a MirrorPad padding of one axis of size `dim` against the mode's limit.
pub fn check_mirror_padding(
    mode: MirrorMode,
    axis: usize,
    (before, after): (i64, i64),
    dim: usize,
) -> std::result::Result<(), String> {
    let limit = dim as i64 - mode.offset();
    if before > limit || after > limit {
        let rule = match mode {
            MirrorMode::Reflect => "less than",
            MirrorMode::Symmetric => "at most",
        };
        return Err(format!(
            "paddings must be {rule} the dimension size in {} mode: axis {axis} of size {dim} \
             padded by ({before}, {after}), the most allowed is {}",
            if mode == MirrorMode::Reflect {
                "REFLECT"
            } else {
                "SYMMETRIC"
            },
            limit.max(0)
        ));
    }
    Ok(())
}

/// Checks a `[n, 2]` paddings input's static shape.
fn check_pairs_shape(ctx: &InferCtx<'_>, i: usize, what: &str) -> std::result::Result<(), String> {
    let s = &ctx.input(i).shape;
    if s.rank().is_some_and(|r| r != 2) || s.dim(1).known().is_some_and(|d| d != 2) {
        return Err(format!(
            "{what} must be a matrix of shape [n, 2], got shape {s}"
        ));
    }
    Ok(())
}

fn infer_mirror_pad(ctx: &InferCtx<'_>) -> InferResult {
    let mode = MirrorMode::parse(ctx.attrs.string("mode")?)?;
    check_pairs_shape(ctx, 1, "paddings")?;
    let s = &ctx.input(0).shape;
    if let (Some(dims), Some(p)) = (s.dims(), ctx.const_ints(1)) {
        let pairs = padding_pairs(&p, dims.len(), "paddings")?;
        for (axis, (d, &pair)) in dims.iter().zip(&pairs).enumerate() {
            if let Some(n) = d.known() {
                check_mirror_padding(mode, axis, pair, n)?;
            }
        }
    }
    infer_pad(ctx)
}

fn infer_mirror_pad_grad(ctx: &InferCtx<'_>) -> InferResult {
    let mode = MirrorMode::parse(ctx.attrs.string("mode")?)?;
    check_pairs_shape(ctx, 1, "paddings")?;
    let s = &ctx.input(0).shape;
    let dtype = ctx.dtype(0);
    let (Some(dims), Some(p)) = (s.dims(), ctx.const_ints(1)) else {
        let shape = s.rank().map_or(Shape::unknown(), Shape::unknown_dims);
        return Ok(vec![TensorType { dtype, shape }]);
    };
    let pairs = padding_pairs(&p, dims.len(), "paddings")?;
    let mut out = Vec::with_capacity(dims.len());
    for (axis, (d, &(a, b))) in dims.iter().zip(&pairs).enumerate() {
        out.push(match d.known() {
            Some(n) => {
                let inner = (n as i64) - a - b;
                if inner < 0 {
                    return Err(format!(
                        "axis {axis} of the padded gradient has size {n}, less than its \
                         paddings ({a}, {b})"
                    ));
                }
                check_mirror_padding(mode, axis, (a, b), inner as usize)?;
                Dim::Known(inner as usize)
            }
            None => Dim::Unknown,
        });
    }
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(out),
    }])
}

// ---- DepthToSpace / SpaceToDepth -------------------------------------------------------------

/// The `block_size` attribute, at least 2 as in TensorFlow.
pub fn block_size_attr(attrs: &crate::attr::Attrs) -> std::result::Result<usize, String> {
    let b = *attrs.int("block_size")?;
    if !(2..=(1 << 20)).contains(&b) {
        return Err(format!("block_size must be at least 2, got {b}"));
    }
    Ok(b as usize)
}

/// (batch, height, width, channels) of a 4-D image shape in `format`.
fn image4(s: &Shape, what: &str, format: DataFormat) -> std::result::Result<[Dim; 4], String> {
    match s.dims() {
        None => Ok([Dim::Unknown, Dim::Unknown, Dim::Unknown, Dim::Unknown]),
        Some(d) if d.len() == 4 => Ok(format.nhwc(d)),
        Some(_) => Err(format!(
            "{what} must be 4-D ({}), got shape {s}",
            format.name()
        )),
    }
}

fn divide(d: &Dim, by: usize, what: impl Fn(usize) -> String) -> std::result::Result<Dim, String> {
    match d.known() {
        Some(n) if n % by != 0 => Err(what(n)),
        Some(n) => Ok(Dim::Known(n / by)),
        None => Ok(Dim::Unknown),
    }
}

fn infer_depth_to_space(ctx: &InferCtx<'_>) -> InferResult {
    let bs = block_size_attr(ctx.attrs)?;
    let format = DataFormat::parse(ctx.attrs.string("data_format")?)?;
    let [n, h, w, c] = image4(&ctx.input(0).shape, "input", format)?;
    let c = divide(&c, bs * bs, |c| {
        format!(
            "the input's depth ({c}) must be divisible by block_size * block_size ({})",
            bs * bs
        )
    })?;
    let nhwc = [n, h.mul(&Dim::Known(bs)), w.mul(&Dim::Known(bs)), c];
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: Shape::new(format.from_nhwc(nhwc).to_vec()),
    }])
}

fn infer_space_to_depth(ctx: &InferCtx<'_>) -> InferResult {
    let bs = block_size_attr(ctx.attrs)?;
    let format = DataFormat::parse(ctx.attrs.string("data_format")?)?;
    let [n, h, w, c] = image4(&ctx.input(0).shape, "input", format)?;
    let msg = |what: &'static str| {
        move |v: usize| format!("the input's {what} ({v}) must be divisible by block_size ({bs})")
    };
    let h = divide(&h, bs, msg("height"))?;
    let w = divide(&w, bs, msg("width"))?;
    let nhwc = [n, h, w, c.mul(&Dim::Known(bs * bs))];
    Ok(vec![TensorType {
        dtype: ctx.dtype(0),
        shape: Shape::new(format.from_nhwc(nhwc).to_vec()),
    }])
}

// ---- SpaceToBatchND / BatchToSpaceND ----------------------------------------------------------

/// Checks a `block_shape` value: M >= 1 entries, each at least 1.
pub fn check_block_shape(b: &[i64]) -> std::result::Result<(), String> {
    if b.is_empty() {
        return Err("block_shape must have at least one entry".into());
    }
    if let Some(v) = b.iter().find(|&&v| !(1..=(1 << 31)).contains(&v)) {
        return Err(format!(
            "block_shape entries must be at least 1, got {v} in {b:?}"
        ));
    }
    Ok(())
}

/// Shared shape function of SpaceToBatchND (`to_batch`) and BatchToSpaceND.
fn infer_space_batch(ctx: &InferCtx<'_>, to_batch: bool) -> InferResult {
    let what = if to_batch { "paddings" } else { "crops" };
    let bshape = &ctx.input(1).shape;
    if bshape.rank().is_some_and(|r| r != 1) {
        return Err(format!("block_shape must be a vector, got shape {bshape}"));
    }
    check_pairs_shape(ctx, 2, what)?;
    let dtype = ctx.dtype(0);
    let s = &ctx.input(0).shape;
    let m = bshape.dim(0).known().or(ctx.input(2).shape.dim(0).known());
    if let (Some(m), Some(r)) = (m, s.rank()) {
        if r < m + 1 {
            return Err(format!(
                "input must have rank at least {} (batch + {m} block dims), got shape {s}",
                m + 1
            ));
        }
    }
    let (Some(dims), Some(block)) = (s.dims(), ctx.const_ints(1)) else {
        let shape = s.rank().map_or(Shape::unknown(), Shape::unknown_dims);
        return Ok(vec![TensorType { dtype, shape }]);
    };
    check_block_shape(&block)?;
    let m = block.len();
    if dims.len() < m + 1 {
        return Err(format!(
            "input must have rank at least {} (batch + {m} block dims), got shape {s}",
            m + 1
        ));
    }
    let prod = block
        .iter()
        .try_fold(1usize, |acc, &b| acc.checked_mul(b as usize))
        .ok_or_else(|| format!("the product of block_shape {block:?} overflows"))?;
    let mut out = dims.to_vec();
    out[0] = if to_batch {
        dims[0].mul(&Dim::Known(prod))
    } else {
        divide(&dims[0], prod, |n| {
            format!(
                "the input's batch ({n}) must be divisible by the product of block_shape \
                 {block:?} ({prod})"
            )
        })?
    };
    let pairs = match ctx.const_ints(2) {
        Some(p) => Some(padding_pairs(&p, m, what)?),
        None => None,
    };
    for i in 0..m {
        let b = block[i] as usize;
        out[i + 1] = match (dims[i + 1].known(), &pairs) {
            (Some(d), Some(p)) => {
                let (lo, hi) = (p[i].0 as usize, p[i].1 as usize);
                if to_batch {
                    let padded = d
                        .checked_add(lo)
                        .and_then(|v| v.checked_add(hi))
                        .ok_or_else(|| format!("padding spatial dim {i} overflows"))?;
                    if padded % b != 0 {
                        return Err(format!(
                            "padded spatial dim {i} ({d} + {lo} + {hi} = {padded}) must be \
                             divisible by block_shape[{i}] = {b}"
                        ));
                    }
                    Dim::Known(padded / b)
                } else {
                    let full = d
                        .checked_mul(b)
                        .ok_or_else(|| format!("spatial dim {i} times its block overflows"))?;
                    if lo.saturating_add(hi) > full {
                        return Err(format!(
                            "crops ({lo}, {hi}) of spatial dim {i} exceed its size {d} * \
                             block_shape[{i}] {b} = {full}"
                        ));
                    }
                    Dim::Known(full - lo - hi)
                }
            }
            _ => Dim::Unknown,
        };
    }
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(out),
    }])
}

fn infer_space_to_batch(ctx: &InferCtx<'_>) -> InferResult {
    infer_space_batch(ctx, true)
}

fn infer_batch_to_space(ctx: &InferCtx<'_>) -> InferResult {
    infer_space_batch(ctx, false)
}

// ---- resizing --------------------------------------------------------------------------------

/// The `align_corners` and `half_pixel_centers` attributes, which TensorFlow forbids together.
pub fn resize_attrs(attrs: &crate::attr::Attrs) -> std::result::Result<(bool, bool), String> {
    let align = attrs.bool_opt("align_corners").copied().unwrap_or(false);
    let half = attrs
        .bool_opt("half_pixel_centers")
        .copied()
        .unwrap_or(false);
    if align && half {
        return Err("if half_pixel_centers is true, align_corners must be false".into());
    }
    Ok((align, half))
}

/// The static `[height, width]` of an int32[2] size input (unknown dims when not constant).
fn size2(ctx: &InferCtx<'_>, i: usize) -> std::result::Result<[Dim; 2], String> {
    let s = &ctx.input(i).shape;
    if s.rank().is_some_and(|r| r != 1) || s.dim(0).known().is_some_and(|n| n != 2) {
        return Err(format!(
            "size must be a vector of 2 elements (new height, new width), got shape {s}"
        ));
    }
    match ctx.const_ints(i) {
        Some(v) if v.len() == 2 => {
            if v.iter().any(|&d| d <= 0) {
                return Err(format!("size must be positive, got {v:?}"));
            }
            Ok([Dim::Known(v[0] as usize), Dim::Known(v[1] as usize)])
        }
        _ => Ok([Dim::Unknown, Dim::Unknown]),
    }
}

/// ResizeBilinear / ResizeNearestNeighbor (`dtype` of the output) and the nearest-neighbor
/// gradient (`images` is the gradient, `size` the original size).
fn infer_resize(ctx: &InferCtx<'_>, dtype: DType) -> InferResult {
    resize_attrs(ctx.attrs)?;
    let [n, _, _, c] = image4(&ctx.input(0).shape, "images", DataFormat::Nhwc)?;
    let [h, w] = size2(ctx, 1)?;
    Ok(vec![TensorType {
        dtype,
        shape: Shape::new(vec![n, h, w, c]),
    }])
}

fn infer_resize_bilinear(ctx: &InferCtx<'_>) -> InferResult {
    // TensorFlow's ResizeBilinear always returns float32.
    infer_resize(ctx, DType::F32)
}

fn infer_resize_nearest(ctx: &InferCtx<'_>) -> InferResult {
    infer_resize(ctx, ctx.dtype(0))
}

fn infer_resize_bilinear_grad(ctx: &InferCtx<'_>) -> InferResult {
    resize_attrs(ctx.attrs)?;
    let [gn, _, _, gc] = image4(&ctx.input(0).shape, "grads", DataFormat::Nhwc)?;
    let [n, h, w, c] = image4(&ctx.input(1).shape, "original_image", DataFormat::Nhwc)?;
    let n = n
        .merge(&gn)
        .ok_or_else(|| format!("grads' batch {gn} differs from original_image's {n}"))?;
    let c = c
        .merge(&gc)
        .ok_or_else(|| format!("grads' channels {gc} differ from original_image's {c}"))?;
    Ok(vec![TensorType {
        dtype: ctx.dtype(1),
        shape: Shape::new(vec![n, h, w, c]),
    }])
}

// ---- definitions -----------------------------------------------------------------------------

fn resize_op(name: &'static str, infer: crate::op_def::InferFn) -> OpDef {
    OpDef::new(name, infer)
        .attr_default("align_corners", AttrKind::Bool, false)
        .attr_default("half_pixel_centers", AttrKind::Bool, false)
}

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("MirrorPad", infer_mirror_pad)
            .doc(
                "pads by mirroring the input at its edges: REFLECT leaves the edge out \
                 (paddings < dim), SYMMETRIC repeats it (paddings <= dim)",
            )
            .input("input", DTypeSet::ANY)
            .input("paddings", DTypeSet::INDEX)
            .output("output")
            .attr("mode", AttrKind::Str),
        OpDef::new("MirrorPadGrad", infer_mirror_pad_grad)
            .doc("MirrorPad's gradient: folds the padded gradient back onto the input's elements")
            .input("input", DTypeSet::NUMERIC)
            .input("paddings", DTypeSet::INDEX)
            .output("output")
            .attr("mode", AttrKind::Str),
        OpDef::new("DepthToSpace", infer_depth_to_space)
            .doc("moves depth blocks of block_size * block_size channels into spatial blocks")
            .input("input", DTypeSet::ANY)
            .output("output")
            .attr("block_size", AttrKind::Int)
            .attr_default("data_format", AttrKind::Str, "NHWC"),
        OpDef::new("SpaceToDepth", infer_space_to_depth)
            .doc("moves block_size x block_size spatial blocks into the depth dim")
            .input("input", DTypeSet::ANY)
            .output("output")
            .attr("block_size", AttrKind::Int)
            .attr_default("data_format", AttrKind::Str, "NHWC"),
        OpDef::new("SpaceToBatchND", infer_space_to_batch)
            .doc(
                "zero-pads the M spatial dims after the batch, then moves block_shape blocks \
                 of them into the batch dim",
            )
            .input("input", DTypeSet::ANY)
            .input("block_shape", DTypeSet::INDEX)
            .input("paddings", DTypeSet::INDEX)
            .output("output"),
        OpDef::new("BatchToSpaceND", infer_batch_to_space)
            .doc(
                "moves blocks of the batch dim back into the M spatial dims, then crops them \
                 (SpaceToBatchND's inverse)",
            )
            .input("input", DTypeSet::ANY)
            .input("block_shape", DTypeSet::INDEX)
            .input("crops", DTypeSet::INDEX)
            .output("output"),
        resize_op("ResizeBilinear", infer_resize_bilinear)
            .doc("bilinear resizing of NHWC images to `size` = [height, width]; float32 output")
            .input("images", DTypeSet::NUMERIC)
            .input("size", I32)
            .output("resized_images"),
        resize_op("ResizeBilinearGrad", infer_resize_bilinear_grad)
            .doc("ResizeBilinear's gradient: float32 grads spread onto original_image's shape")
            .input("grads", DTypeSet::of(&[DType::F32]))
            .input("original_image", DTypeSet::FLOAT)
            .output("output"),
        resize_op("ResizeNearestNeighbor", infer_resize_nearest)
            .doc("nearest-neighbor resizing of NHWC images to `size` = [height, width]")
            .input("images", DTypeSet::NUMERIC)
            .input("size", I32)
            .output("resized_images"),
        resize_op("ResizeNearestNeighborGrad", infer_resize_nearest)
            .doc("ResizeNearestNeighbor's gradient: sums grads onto the original `size`")
            .input("grads", DTypeSet::NUMERIC)
            .input("size", I32)
            .output("output"),
    ]
}

// ---- builders --------------------------------------------------------------------------------

/// A `[n, 2]` int32 constant of (before, after) pairs.
fn pairs_const(g: &mut Graph, builder: &str, arg: &str, pairs: &[(i64, i64)]) -> Result<Output> {
    let flat: Vec<i64> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let flat = checked_i32s(builder, arg, &flat)?;
    g.constant(TensorValue::new(&[pairs.len(), 2], flat).expect("length matches"))
}

fn ints_const(g: &mut Graph, builder: &str, arg: &str, v: &[i64]) -> Result<Output> {
    let data = checked_i32s(builder, arg, v)?;
    g.constant(TensorValue::new(&[data.len()], data).expect("length matches"))
}

impl Graph {
    /// `MirrorPad` with `mode` "REFLECT" or "SYMMETRIC" and one (before, after) per dim.
    pub fn mirror_pad(&mut self, x: Output, paddings: &[(i64, i64)], mode: &str) -> Result<Output> {
        let p = pairs_const(self, "mirror_pad", "paddings", paddings)?;
        self.build("MirrorPad")
            .input(x)
            .input(p)
            .attr("mode", mode)
            .finish1()
    }
    /// `DepthToSpace` (NHWC).
    pub fn depth_to_space(&mut self, x: Output, block_size: i64) -> Result<Output> {
        self.build("DepthToSpace")
            .input(x)
            .attr("block_size", block_size)
            .finish1()
    }
    /// `SpaceToDepth` (NHWC).
    pub fn space_to_depth(&mut self, x: Output, block_size: i64) -> Result<Output> {
        self.build("SpaceToDepth")
            .input(x)
            .attr("block_size", block_size)
            .finish1()
    }
    /// `SpaceToBatchND` with one block size and one (before, after) padding per spatial dim.
    pub fn space_to_batch_nd(
        &mut self,
        x: Output,
        block_shape: &[i64],
        paddings: &[(i64, i64)],
    ) -> Result<Output> {
        let b = ints_const(self, "space_to_batch_nd", "block_shape", block_shape)?;
        let p = pairs_const(self, "space_to_batch_nd", "paddings", paddings)?;
        self.build("SpaceToBatchND").inputs([x, b, p]).finish1()
    }
    /// `BatchToSpaceND` with one block size and one (before, after) crop per spatial dim.
    pub fn batch_to_space_nd(
        &mut self,
        x: Output,
        block_shape: &[i64],
        crops: &[(i64, i64)],
    ) -> Result<Output> {
        let b = ints_const(self, "batch_to_space_nd", "block_shape", block_shape)?;
        let c = pairs_const(self, "batch_to_space_nd", "crops", crops)?;
        self.build("BatchToSpaceND").inputs([x, b, c]).finish1()
    }
    /// `ResizeBilinear` of NHWC `images` to `size` = [height, width] (a float32 result).
    pub fn resize_bilinear(
        &mut self,
        images: Output,
        size: [i64; 2],
        align_corners: bool,
        half_pixel_centers: bool,
    ) -> Result<Output> {
        self.resize(
            "ResizeBilinear",
            images,
            size,
            align_corners,
            half_pixel_centers,
        )
    }
    /// `ResizeNearestNeighbor` of NHWC `images` to `size` = [height, width].
    pub fn resize_nearest_neighbor(
        &mut self,
        images: Output,
        size: [i64; 2],
        align_corners: bool,
        half_pixel_centers: bool,
    ) -> Result<Output> {
        self.resize(
            "ResizeNearestNeighbor",
            images,
            size,
            align_corners,
            half_pixel_centers,
        )
    }
    fn resize(
        &mut self,
        op: &str,
        images: Output,
        size: [i64; 2],
        align_corners: bool,
        half_pixel_centers: bool,
    ) -> Result<Output> {
        let s = ints_const(self, op, "size", &size)?;
        self.build(op)
            .input(images)
            .input(s)
            .attr("align_corners", align_corners)
            .attr("half_pixel_centers", half_pixel_centers)
            .finish1()
    }
}
