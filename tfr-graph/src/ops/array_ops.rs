//! Constants, placeholders and ops that move data without arithmetic.

use super::strided_slice::{strided_slice_masks, StridedSliceSpec};
use super::{from_dtype_shape_attrs, no_outputs, output_count, same_as_input, shape_from_tensor};
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::TensorType;
use crate::op_def::{normalize_axis, InferCtx, OpDef};
use crate::passes::ARG_OP;
use crate::shape::{Dim, ElementCount, Shape};

pub fn op_defs() -> Vec<OpDef> {
    let any = DTypeSet::ANY;
    // Ops that only move or describe values take strings too (TF's DT_STRING).
    let moves = DTypeSet::ANY_OR_STRING;
    let idx = DTypeSet::INDEX;
    let mut defs = vec![
        OpDef::new("Const", infer_const).doc("a constant tensor").output("output")
            .attr("value", AttrKind::Tensor).cheap(),
        OpDef::new("Placeholder", from_dtype_shape_attrs)
            .doc("a value fed when a step runs; its shape may hold unknown or symbolic dims")
            .output("output").attr("dtype", AttrKind::DType)
            .attr_default("shape", AttrKind::Shape, Shape::unknown()).cheap(),
        OpDef::new(ARG_OP, from_dtype_shape_attrs)
            .doc("internal: the value fed at position `index` of a step").output("output")
            .attr("index", AttrKind::Int).attr("dtype", AttrKind::DType)
            .attr("shape", AttrKind::Shape).cheap(),
        OpDef::new("Identity", same_as_input).input("input", moves).output("output").cheap(),
        OpDef::new("StopGradient", same_as_input)
            .doc("identity whose gradient is zero").input("input", moves).output("output").cheap(),
        OpDef::new("NoOp", no_outputs).doc("does nothing; groups control dependencies").cheap(),
        OpDef::new("Reshape", infer_reshape).input("tensor", moves).input("shape", idx)
            .output("output").cheap(),
        OpDef::new("Transpose", infer_transpose).input("x", any).input("perm", idx)
            .output("y"),
        OpDef::new("ExpandDims", infer_expand_dims).input("input", moves).input("axis", idx)
            .output("output").cheap(),
        OpDef::new("Squeeze", infer_squeeze).input("input", moves).output("output")
            .attr_default("squeeze_dims", AttrKind::Ints, Vec::<i64>::new()).cheap(),
        OpDef::new("Concat", infer_concat).doc("joins tensors along `axis` (ConcatV2)")
            .list_input("values", any, 1).input("axis", idx).output("output"),
        OpDef::new("Split", infer_split).doc("splits `value` into `num_split` equal parts along `axis`")
            .input("axis", idx).input("value", any).attr("num_split", AttrKind::Int),
        OpDef::new("Slice", infer_slice).input("input", any).input("begin", idx)
            .input("size", idx).output("output"),
        OpDef::new("StridedSlice", infer_strided_slice)
            .doc("numpy-style slicing with begin/end/strides and masks")
            .input("input", any).input("begin", idx).input("end", idx).input("strides", idx)
            .output("output")
            .attr_default("begin_mask", AttrKind::Int, 0i64)
            .attr_default("end_mask", AttrKind::Int, 0i64)
            .attr_default("ellipsis_mask", AttrKind::Int, 0i64)
            .attr_default("new_axis_mask", AttrKind::Int, 0i64)
            .attr_default("shrink_axis_mask", AttrKind::Int, 0i64),
        OpDef::new("PadV2", infer_pad).doc("pads with constant_value; paddings is [rank, 2]")
            .input("input", any).input("paddings", idx).input("constant_value", any)
            .output("output"),
        OpDef::new("Tile", infer_tile).input("input", any).input("multiples", idx)
            .output("output"),
        OpDef::new("Pack", infer_pack).doc("stacks tensors of one shape along a new `axis`")
            .list_input("values", any, 1).output("output")
            .attr_default("axis", AttrKind::Int, 0i64),
        OpDef::new("Unpack", infer_unpack).doc("splits along `axis` into `num` tensors, removing it")
            .input("value", any).attr("num", AttrKind::Int)
            .attr_default("axis", AttrKind::Int, 0i64),
        OpDef::new("Gather", infer_gather)
            .doc("gathers slices of params along axis at indices (GatherV2); out of range is an error")
            .input("params", any).input("indices", idx).input("axis", idx).output("output")
            .attr_default("batch_dims", AttrKind::Int, 0i64),
        OpDef::new("OneHot", infer_one_hot).input("indices", DTypeSet::of(&[DType::I32, DType::I64, DType::U8]))
            .input("depth", DTypeSet::of(&[DType::I32]))
            .input("on_value", any).input("off_value", any).output("output")
            .attr_default("axis", AttrKind::Int, -1i64),
        OpDef::new("Fill", infer_fill).input("dims", idx).input("value", any).output("output"),
        OpDef::new("ZerosLike", same_as_input).input("x", any).output("y").cheap(),
        OpDef::new("OnesLike", same_as_input).input("x", any).output("y").cheap(),
        OpDef::new("Shape", infer_shape_op).input("input", moves).output("output")
            .attr_default("out_type", AttrKind::DType, DType::I32).cheap(),
        OpDef::new("Size", infer_scalar_out).input("input", moves).output("output")
            .attr_default("out_type", AttrKind::DType, DType::I32).cheap(),
        OpDef::new("Rank", infer_rank).input("input", moves).output("output").cheap(),
        OpDef::new("Range", infer_range).doc("[start, limit) by delta")
            .input("start", DTypeSet::NUMERIC).input("limit", DTypeSet::NUMERIC)
            .input("delta", DTypeSet::NUMERIC).output("output"),
        OpDef::new("BroadcastTo", infer_broadcast_to).input("input", any).input("shape", idx)
            .output("output"),
        OpDef::new("Reverse", infer_reverse).doc("reverses along the given axes (ReverseV2)")
            .input("tensor", any).input("axis", idx).output("output"),
    ];
    defs.extend(gradient_op_defs());
    defs
}

fn one(dtype: DType, shape: Shape) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_const(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let v = ctx.attrs.tensor("value")?;
    let count = v
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(v.num_elements()) {
        return Err(format!(
            "value has {} elements but shape {:?}",
            v.num_elements(),
            v.shape
        ));
    }
    one(v.dtype(), Shape::known(&v.shape))
}

fn infer_reshape(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let target = shape_from_tensor(ctx, 1)?;
    let Some(dims) = target.dims() else {
        return one(ctx.dtype(0), target);
    };
    let unknown = dims.iter().filter(|d| **d == Dim::Unknown).count();
    let known: usize = dims.iter().filter_map(Dim::known).product();
    if let Some(n) = ctx.const_ints(1) {
        if n.iter().filter(|&&d| d == -1).count() > 1 {
            return Err(format!("at most one -1 in the target shape, got {n:?}"));
        }
    }
    match ctx.input(0).shape.num_elements() {
        Some(total) if unknown == 0 && ctx.const_ints(1).is_some() && total != known => {
            Err(format!(
                "cannot reshape a tensor of {total} elements ({}) to {target}",
                ctx.input(0).shape
            ))
        }
        Some(total) if unknown == 1 && ctx.const_ints(1).is_some() => {
            if known == 0 || total % known != 0 {
                return Err(format!(
                    "cannot reshape a tensor of {total} elements ({}) to {target}",
                    ctx.input(0).shape
                ));
            }
            let filled = dims
                .iter()
                .map(|d| {
                    if *d == Dim::Unknown {
                        Dim::Known(total / known)
                    } else {
                        d.clone()
                    }
                })
                .collect();
            one(ctx.dtype(0), Shape::new(filled))
        }
        _ => reshape_symbolic(ctx, target),
    }
}

/// Reshape of an input whose count has symbolic dims: a `-1` is solved symbolically (`[B, 784]`
/// to `[-1, 784]` is `[B, 784]`, while `[B, 28, 28, 1]` to `[-1, 392]` has `2*B` rows, which
/// stays unknown), and a count that can never match is an error.
fn reshape_symbolic(ctx: &InferCtx<'_>, target: Shape) -> Result<Vec<TensorType>, String> {
    let input = &ctx.input(0).shape;
    let (Some(dims), Some(_), Some(total)) = (
        target.dims(),
        ctx.const_ints(1),
        input.dims().and_then(ElementCount::of),
    ) else {
        return one(ctx.dtype(0), target);
    };
    let fixed: Vec<Dim> = dims
        .iter()
        .filter(|d| **d != Dim::Unknown)
        .cloned()
        .collect();
    let Some(wanted) = ElementCount::of(&fixed) else {
        return one(ctx.dtype(0), target);
    };
    let mismatch = || format!("cannot reshape a tensor of {total} elements ({input}) to {target}");
    if fixed.len() == dims.len() {
        if total.equals(&wanted) == Some(false) {
            return Err(format!("{} ({wanted} elements)", mismatch()));
        }
        return one(ctx.dtype(0), target);
    }
    let inferred = total.quotient(&wanted).ok_or_else(mismatch)?;
    let filled = dims
        .iter()
        .map(|d| {
            if *d == Dim::Unknown {
                inferred.clone()
            } else {
                d.clone()
            }
        })
        .collect();
    one(ctx.dtype(0), Shape::new(filled))
}

/// The permutation of a transpose; reversed axes when the perm input is empty.
fn infer_transpose(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let s = &ctx.input(0).shape;
    let Some(perm) = ctx.const_ints(1) else {
        return one(
            ctx.dtype(0),
            s.rank().map_or(Shape::unknown(), Shape::unknown_dims),
        );
    };
    let Some(r) = s.rank() else {
        // An empty perm reverses however many axes there are.
        let shape = if perm.is_empty() {
            Shape::unknown()
        } else {
            Shape::unknown_dims(perm.len())
        };
        return one(ctx.dtype(0), shape);
    };
    let perm: Vec<usize> = if perm.is_empty() {
        (0..r).rev().collect()
    } else {
        perm.iter()
            .map(|&p| normalize_axis(p, r))
            .collect::<Result<_, _>>()?
    };
    let mut sorted = perm.clone();
    sorted.sort();
    if perm.len() != r || sorted != (0..r).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of {r} axes"));
    }
    one(
        ctx.dtype(0),
        Shape::new(perm.iter().map(|&p| s.dim(p)).collect()),
    )
}

fn infer_expand_dims(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let s = &ctx.input(0).shape;
    let (Some(dims), Some(axis)) = (s.dims(), ctx.const_ints(1)) else {
        return one(
            ctx.dtype(0),
            s.rank()
                .map_or(Shape::unknown(), |r| Shape::unknown_dims(r + 1)),
        );
    };
    if axis.len() != 1 {
        return Err(format!("axis must hold one value, got {axis:?}"));
    }
    let a = normalize_axis(axis[0], dims.len() + 1)?;
    let mut d = dims.to_vec();
    d.insert(a, Dim::Known(1));
    one(ctx.dtype(0), Shape::new(d))
}

fn infer_squeeze(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let s = &ctx.input(0).shape;
    let Some(dims) = s.dims() else {
        return one(ctx.dtype(0), Shape::unknown());
    };
    let axes = ctx.attrs.ints("squeeze_dims")?;
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| normalize_axis(a, dims.len()))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        let chosen = axes.is_empty() || axes.contains(&i);
        match d {
            Dim::Known(1) if chosen => {}
            Dim::Known(n) if !axes.is_empty() && chosen => {
                return Err(format!("cannot squeeze dim {i} of size {n} in {s}"))
            }
            Dim::Unknown | Dim::Sym(_) if axes.is_empty() => {
                return one(ctx.dtype(0), Shape::unknown())
            }
            Dim::Unknown | Dim::Sym(_) if chosen => {}
            _ => out.push(d.clone()),
        }
    }
    one(ctx.dtype(0), Shape::new(out))
}

fn infer_concat(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let n = ctx.inputs.len() - 1;
    let dtype = ctx.same_dtype(&(0..n).collect::<Vec<_>>())?;
    let rank = ctx.inputs[..n].iter().find_map(|t| t.shape.rank());
    let (Some(rank), Some(axis)) = (rank, ctx.const_ints(n)) else {
        return one(dtype, rank.map_or(Shape::unknown(), Shape::unknown_dims));
    };
    let axis = normalize_axis(axis.first().copied().unwrap_or(0), rank)?;
    let mut out: Vec<Dim> = vec![Dim::Unknown; rank];
    let mut total = Some(0usize);
    for (k, t) in ctx.inputs[..n].iter().enumerate() {
        let Some(d) = t.shape.dims() else {
            total = None;
            continue;
        };
        if d.len() != rank {
            return Err(format!("values[{k}] has rank {}, expected {rank}", d.len()));
        }
        for (i, di) in d.iter().enumerate() {
            if i == axis {
                total = total.zip(di.known()).map(|(a, b)| a + b);
            } else {
                out[i] = out[i].merge(di).ok_or_else(|| {
                    format!(
                        "values[{k}] has shape {} which disagrees in dim {i}: {} != {}",
                        t.shape, out[i], di
                    )
                })?;
            }
        }
    }
    out[axis] = total.map_or(Dim::Unknown, Dim::Known);
    one(dtype, Shape::new(out))
}

fn infer_split(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let num = *ctx.attrs.int("num_split")?;
    if num < 1 {
        return Err(format!("num_split must be >= 1, got {num}"));
    }
    output_count(num, "num_split")?;
    let s = &ctx.input(1).shape;
    let shape = match (s.dims(), ctx.const_ints(0)) {
        (Some(d), Some(a)) => {
            let axis = normalize_axis(a.first().copied().unwrap_or(0), d.len())?;
            let mut d = d.to_vec();
            if let Dim::Known(n) = d[axis] {
                if n % num as usize != 0 {
                    return Err(format!(
                        "dim {axis} of size {n} does not split into {num} equal parts"
                    ));
                }
                d[axis] = Dim::Known(n / num as usize);
            } else {
                d[axis] = Dim::Unknown;
            }
            Shape::new(d)
        }
        (Some(d), None) => Shape::unknown_dims(d.len()),
        _ => Shape::unknown(),
    };
    Ok(vec![
        TensorType {
            dtype: ctx.dtype(1),
            shape
        };
        num as usize
    ])
}

fn infer_slice(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let s = &ctx.input(0).shape;
    let (Some(begin), Some(size)) = (ctx.const_ints(1), ctx.const_ints(2)) else {
        return one(
            ctx.dtype(0),
            s.rank().map_or(Shape::unknown(), Shape::unknown_dims),
        );
    };
    if begin.len() != size.len() || s.rank().is_some_and(|r| r != begin.len()) {
        return Err(format!(
            "begin {begin:?} and size {size:?} must both have one entry per dim of {s}"
        ));
    }
    let mut out = Vec::new();
    for (i, (&b, &z)) in begin.iter().zip(&size).enumerate() {
        let dim = s.dim(i);
        if b < 0 {
            return Err(format!("begin[{i}] = {b} is negative"));
        }
        out.push(match (z, dim.known()) {
            (-1, Some(n)) if b as usize <= n => Dim::Known(n - b as usize),
            (-1, None) => Dim::Unknown,
            (z, Some(n)) if z >= 0 && b.checked_add(z).is_some_and(|e| e as usize <= n) => {
                Dim::Known(z as usize)
            }
            (z, None) if z >= 0 => Dim::Known(z as usize),
            _ => {
                return Err(format!(
                    "slice begin {b} size {z} is out of range for dim {i} of {s}"
                ))
            }
        });
    }
    one(ctx.dtype(0), Shape::new(out))
}

fn infer_strided_slice(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let masks = strided_slice_masks(ctx.attrs)?;
    let s = &ctx.input(0).shape;
    match (
        s.to_known(),
        ctx.const_ints(1),
        ctx.const_ints(2),
        ctx.const_ints(3),
    ) {
        (Some(input), Some(b), Some(e), Some(st)) => {
            let spec = StridedSliceSpec::resolve(&input, &b, &e, &st, masks)?;
            one(ctx.dtype(0), Shape::known(&spec.output_shape))
        }
        _ => one(ctx.dtype(0), Shape::unknown()),
    }
}

/// `PadV2` (input, paddings, constant_values) and TensorFlow's `Pad` (input, paddings: zeros).
pub(crate) fn infer_pad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = if ctx.inputs.len() > 2 {
        ctx.same_dtype(&[0, 2])?
    } else {
        ctx.dtype(0)
    };
    let s = &ctx.input(0).shape;
    let (Some(dims), Some(p)) = (s.dims(), ctx.const_ints(1)) else {
        return one(
            dtype,
            s.rank().map_or(Shape::unknown(), Shape::unknown_dims),
        );
    };
    if p.len() != 2 * dims.len() || p.iter().any(|&v| v < 0) {
        return Err(format!(
            "paddings must be [{}, 2] of non-negative values, got {p:?}",
            dims.len()
        ));
    }
    let mut out = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        out.push(match d {
            Dim::Known(n) => {
                let padded = p[2 * i]
                    .checked_add(p[2 * i + 1])
                    .and_then(|pad| usize::try_from(pad).ok())
                    .and_then(|pad| n.checked_add(pad))
                    .ok_or_else(|| format!("padding dim {i} of {s} by {p:?} overflows"))?;
                Dim::Known(padded)
            }
            _ => Dim::Unknown,
        });
    }
    one(dtype, Shape::new(out))
}

fn infer_tile(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let s = &ctx.input(0).shape;
    let (Some(dims), Some(m)) = (s.dims(), ctx.const_ints(1)) else {
        return one(
            ctx.dtype(0),
            s.rank().map_or(Shape::unknown(), Shape::unknown_dims),
        );
    };
    if m.len() != dims.len() || m.iter().any(|&v| v < 0) {
        return Err(format!(
            "multiples must have {} non-negative entries, got {m:?}",
            dims.len()
        ));
    }
    let mut out = Vec::with_capacity(dims.len());
    for (d, &k) in dims.iter().zip(&m) {
        out.push(match d {
            Dim::Known(n) => n
                .checked_mul(k as usize)
                .map(Dim::Known)
                .ok_or_else(|| format!("tiling {s} by {m:?} overflows"))?,
            d => d.mul(&Dim::Known(k as usize)),
        });
    }
    one(ctx.dtype(0), Shape::new(out))
}

fn infer_pack(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&(0..ctx.inputs.len()).collect::<Vec<_>>())?;
    let mut shape = Shape::unknown();
    for (k, t) in ctx.inputs.iter().enumerate() {
        shape = shape
            .merge(&t.shape)
            .map_err(|e| format!("values[{k}]: all values need one shape: {e}"))?;
    }
    let Some(dims) = shape.dims() else {
        return one(dtype, Shape::unknown());
    };
    let axis = normalize_axis(*ctx.attrs.int("axis")?, dims.len() + 1)?;
    let mut d = dims.to_vec();
    d.insert(axis, Dim::Known(ctx.inputs.len()));
    one(dtype, Shape::new(d))
}

fn infer_unpack(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let num = *ctx.attrs.int("num")?;
    let count = output_count(num, "num")?;
    let s = &ctx.input(0).shape;
    let shape = match s.dims() {
        Some(d) => {
            let axis = normalize_axis(*ctx.attrs.int("axis")?, d.len())?;
            if let Dim::Known(n) = d[axis] {
                if n as i64 != num {
                    return Err(format!("num = {num} but dim {axis} of {s} is {n}"));
                }
            }
            let mut d = d.to_vec();
            d.remove(axis);
            Shape::new(d)
        }
        None => Shape::unknown(),
    };
    Ok(vec![
        TensorType {
            dtype: ctx.dtype(0),
            shape
        };
        count
    ])
}

fn infer_gather(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let p = &ctx.input(0).shape;
    let i = &ctx.input(1).shape;
    let batch_dims = *ctx.attrs.int("batch_dims")?;
    let (Some(pd), Some(id), Some(axis)) = (p.dims(), i.dims(), ctx.const_ints(2)) else {
        return one(ctx.dtype(0), Shape::unknown());
    };
    let axis = normalize_axis(axis.first().copied().unwrap_or(0), pd.len())?;
    let b = gather_batch_dims(batch_dims, axis, pd.len(), id.len())?;
    for k in 0..b {
        if let (Dim::Known(x), Dim::Known(y)) = (&pd[k], &id[k]) {
            if x != y {
                return Err(format!(
                    "params dim {k} ({x}) and indices dim {k} ({y}) must match: they are batch \
                     dims (batch_dims = {batch_dims})"
                ));
            }
        }
    }
    let mut out = pd[..axis].to_vec();
    out.extend(id[b..].iter().cloned());
    out.extend(pd[axis + 1..].iter().cloned());
    one(ctx.dtype(0), Shape::new(out))
}

/// GatherV2's `batch_dims` normalized against the indices' rank (TensorFlow adds the rank to a
/// negative value) and checked: at most rank(indices), below rank(params), at most `axis`.
pub fn gather_batch_dims(
    batch_dims: i64,
    axis: usize,
    params_rank: usize,
    indices_rank: usize,
) -> Result<usize, String> {
    let b = if batch_dims < 0 {
        batch_dims + indices_rank as i64
    } else {
        batch_dims
    };
    if b < 0 || b > indices_rank as i64 {
        return Err(format!(
            "batch_dims = {batch_dims} must be in [-{indices_rank}, {indices_rank}] for indices \
             of rank {indices_rank}"
        ));
    }
    let b = b as usize;
    if b > 0 && b >= params_rank {
        return Err(format!(
            "batch_dims = {b} must be less than the rank of params ({params_rank})"
        ));
    }
    if axis < b {
        return Err(format!("axis {axis} must be at least batch_dims = {b}"));
    }
    Ok(b)
}

fn infer_one_hot(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[2, 3])?;
    let depth = ctx.const_ints(1).and_then(|v| v.first().copied());
    let depth_dim = match depth {
        Some(d) if d < 0 => return Err(format!("depth must be non-negative, got {d}")),
        Some(d) => Dim::Known(d as usize),
        None => Dim::Unknown,
    };
    let Some(dims) = ctx.input(0).shape.dims() else {
        return one(dtype, Shape::unknown());
    };
    let axis = *ctx.attrs.int("axis")?;
    // As in TensorFlow: -1 (the last axis) or an axis in [0, rank]; no other negatives.
    let a = match axis {
        -1 => dims.len(),
        a if (0..=dims.len() as i64).contains(&a) => a as usize,
        a => {
            return Err(format!(
                "axis must be -1 or in [0, {}], got {a}",
                dims.len()
            ))
        }
    };
    let mut d = dims.to_vec();
    d.insert(a, depth_dim);
    one(dtype, Shape::new(d))
}

fn infer_fill(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    one(ctx.dtype(1), shape_from_tensor(ctx, 0)?)
}

/// The `out_type` of Shape and Size: int32 or int64.
fn index_out_type(ctx: &InferCtx<'_>) -> Result<DType, String> {
    match *ctx.attrs.dtype("out_type")? {
        t @ (DType::I32 | DType::I64) => Ok(t),
        t => Err(format!("out_type must be int32 or int64, got {t}")),
    }
}

fn infer_shape_op(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let out = index_out_type(ctx)?;
    let len = ctx.input(0).shape.rank().map_or(Dim::Unknown, Dim::Known);
    one(out, Shape::new(vec![len]))
}

fn infer_scalar_out(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    one(index_out_type(ctx)?, Shape::scalar())
}

fn infer_rank(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    one(DType::I32, Shape::scalar())
}

fn infer_range(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1, 2])?;
    let len = match (ctx.const_f64s(0), ctx.const_f64s(1), ctx.const_f64s(2)) {
        (Some(s), Some(l), Some(d)) if s.len() == 1 && l.len() == 1 && d.len() == 1 => {
            if d[0] == 0.0 {
                return Err("delta must not be 0".into());
            }
            // TensorFlow's direction checks (the kernel's, so a constant range fails here).
            if d[0] > 0.0 && s[0] > l[0] {
                return Err(format!(
                    "Requires start <= limit when delta > 0: {}/{}",
                    s[0], l[0]
                ));
            }
            if d[0] < 0.0 && s[0] < l[0] {
                return Err(format!(
                    "Requires start >= limit when delta < 0: {}/{}",
                    s[0], l[0]
                ));
            }
            if dtype.is_integer() {
                // Exact for integers beyond 2^53, as the kernel counts.
                let v = |k| ctx.const_ints(k).and_then(|v| v.first().copied());
                let (s, l, d) = (v(0).unwrap_or(0), v(1).unwrap_or(0), v(2).unwrap_or(1));
                let (diff, d) = (i128::from(l) - i128::from(s), i128::from(d));
                if diff == 0 || (diff > 0) != (d > 0) {
                    Dim::Known(0)
                } else {
                    Dim::Known(((diff.abs() + d.abs() - 1) / d.abs()) as usize)
                }
            } else {
                // The count in the dtype's precision, as the kernel (f32 quotients in f32).
                let c = if dtype == DType::F32 {
                    (((l[0] as f32 - s[0] as f32) / d[0] as f32) as f64).ceil()
                } else {
                    ((l[0] - s[0]) / d[0]).ceil()
                };
                if !c.is_finite() {
                    return Err(format!(
                        "range from {} to {} by {} does not have a finite size",
                        s[0], l[0], d[0]
                    ));
                }
                Dim::Known(c.max(0.0) as usize)
            }
        }
        _ => Dim::Unknown,
    };
    one(dtype, Shape::new(vec![len]))
}

fn infer_broadcast_to(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let target = shape_from_tensor(ctx, 1)?;
    let b = ctx.input(0).shape.broadcast(&target)?;
    if b.rank().is_some() && target.rank().is_some() && b.rank() != target.rank() {
        return Err(format!(
            "cannot broadcast {} to the lower rank {target}",
            ctx.input(0).shape
        ));
    }
    one(ctx.dtype(0), target.merge(&b).unwrap_or(target.clone()))
}

fn infer_reverse(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    if let (Some(r), Some(axes)) = (ctx.input(0).shape.rank(), ctx.const_ints(1)) {
        for a in axes {
            normalize_axis(a, r)?;
        }
    }
    same_as_input(ctx)
}

// ---- ops emitted by the gradient rules (array_grad.rs) ----------------------------------------

/// Ops that gradient rules emit: shape arithmetic evaluated when a step runs (for shapes only
/// partly known statically), and the scatter form of strided slicing.
pub fn gradient_op_defs() -> Vec<OpDef> {
    let idx = DTypeSet::INDEX;
    vec![
        OpDef::new("BroadcastGradientArgs", infer_broadcast_gradient_args)
            .doc("the axes to sum a broadcast of shapes s0 and s1 over to get back to each")
            .input("s0", idx)
            .input("s1", idx)
            .output("r0")
            .output("r1")
            .cheap(),
        OpDef::new("InvertPermutation", infer_invert_permutation)
            .doc("the inverse of a permutation vector")
            .input("x", idx)
            .output("y")
            .cheap(),
        OpDef::new("ConcatOffset", infer_concat_offset)
            .doc("where each input of a Concat of the given shapes starts along concat_dim")
            .input("concat_dim", idx)
            .list_input("shape", idx, 1)
            .output("offset")
            .cheap(),
        OpDef::new("StridedSliceGrad", infer_strided_slice_grad)
            .doc("`dy` scattered into zeros of `shape` at the elements StridedSlice takes")
            .input("shape", idx)
            .input("begin", idx)
            .input("end", idx)
            .input("strides", idx)
            .input("dy", DTypeSet::ANY)
            .output("output")
            .attr_default("begin_mask", AttrKind::Int, 0i64)
            .attr_default("end_mask", AttrKind::Int, 0i64)
            .attr_default("ellipsis_mask", AttrKind::Int, 0i64)
            .attr_default("new_axis_mask", AttrKind::Int, 0i64)
            .attr_default("shrink_axis_mask", AttrKind::Int, 0i64),
    ]
}

fn vector_input(ctx: &InferCtx<'_>, i: usize, what: &str) -> Result<(), String> {
    match ctx.input(i).shape.rank() {
        Some(r) if r != 1 => Err(format!(
            "{what} must be a vector, got shape {}",
            ctx.input(i).shape
        )),
        _ => Ok(()),
    }
}

fn infer_broadcast_gradient_args(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let dtype = ctx.same_dtype(&[0, 1])?;
    vector_input(ctx, 0, "s0")?;
    vector_input(ctx, 1, "s1")?;
    let t = TensorType {
        dtype,
        shape: Shape::new(vec![Dim::Unknown]),
    };
    Ok(vec![t.clone(), t])
}

fn infer_invert_permutation(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    vector_input(ctx, 0, "x")?;
    same_as_input(ctx)
}

fn infer_concat_offset(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let n = ctx.inputs.len() - 1;
    let idx: Vec<usize> = (1..=n).collect();
    let dtype = ctx.same_dtype(&idx)?;
    let mut shape = Shape::unknown();
    for i in 1..=n {
        vector_input(ctx, i, "shape")?;
        shape = shape
            .merge(&ctx.input(i).shape)
            .map_err(|e| format!("shapes must have one rank: {e}"))?;
    }
    Ok(vec![TensorType { dtype, shape }; n])
}

fn infer_strided_slice_grad(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    strided_slice_masks(ctx.attrs)?;
    vector_input(ctx, 0, "shape")?;
    one(ctx.dtype(4), shape_from_tensor(ctx, 0)?)
}
