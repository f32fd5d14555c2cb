//! Scans and selections: Cumsum, Cumprod (with `exclusive` and `reverse`), TopKV2, Where,
//! InTopKV2. Gradient rules at the end of this file.

use super::builder_args::checked_i32;
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::grad::{index_scalar, GradCtx};
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{normalize_axis, Gradient, InferCtx, OpDef};
use crate::shape::{Dim, Shape};

type IResult = std::result::Result<Vec<TensorType>, String>;

pub fn op_defs() -> Vec<OpDef> {
    let mut defs = Vec::new();
    for (name, doc) in [
        (
            "Cumsum",
            "running sum along `axis`; `exclusive` leaves out the element itself, `reverse` \
             runs from the end",
        ),
        (
            "Cumprod",
            "running product along `axis`; `exclusive` leaves out the element itself, \
             `reverse` runs from the end",
        ),
    ] {
        defs.push(
            OpDef::new(name, infer_scan)
                .doc(doc)
                .input("x", DTypeSet::NUMERIC)
                .input("axis", DTypeSet::INDEX)
                .output("out")
                .attr_default("exclusive", AttrKind::Bool, false)
                .attr_default("reverse", AttrKind::Bool, false),
        );
    }
    defs.push(
        OpDef::new("TopKV2", infer_top_k)
            .doc(
                "the k largest entries of each last-axis row and their indices (int32); \
                 equal values keep the lower index first",
            )
            .input("input", DTypeSet::NUMERIC)
            .input("k", DTypeSet::INDEX)
            .output("values")
            .output("indices")
            .attr_default("sorted", AttrKind::Bool, true),
    );
    defs.push(
        OpDef::new("Where", infer_where)
            .doc("coordinates (int64, [n, rank]) of the true / nonzero elements, row-major order")
            .input("input", DTypeSet::NUMERIC_OR_BOOL)
            .output("index"),
    );
    defs.push(
        OpDef::new("InTopKV2", infer_in_top_k)
            .doc(
                "whether targets[i] is among the k largest predictions[i] (ties at the boundary \
                 count as in; a non-finite row or out-of-range target is false)",
            )
            .input("predictions", DTypeSet::FLOAT)
            .input("targets", DTypeSet::INDEX)
            .input("k", DTypeSet::INDEX)
            .output("precision"),
    );
    defs
}

/// A scalar axis within the input's rank (when both are known): the output has x's type.
fn infer_scan(ctx: &InferCtx<'_>) -> IResult {
    let axis = &ctx.input(1).shape;
    if axis.rank().is_some_and(|r| r != 0) {
        return Err(format!("axis must be a scalar, got shape {axis}"));
    }
    if let (Some(rank), Some(a)) = (ctx.input(0).shape.rank(), ctx.const_ints(1)) {
        if rank == 0 {
            return Err("x must be at least 1-D, got a scalar".into());
        }
        normalize_axis(a[0], rank)?;
    }
    Ok(vec![ctx.input(0).clone()])
}

fn infer_top_k(ctx: &InferCtx<'_>) -> IResult {
    let s = &ctx.input(0).shape;
    let k_shape = &ctx.input(1).shape;
    if k_shape.rank().is_some_and(|r| r != 0) {
        return Err(format!("k must be a scalar, got shape {k_shape}"));
    }
    let k = ctx.const_ints(1).map(|v| v[0]);
    if let Some(k) = k {
        if k < 0 {
            return Err(format!("k must be non-negative, got {k}"));
        }
    }
    let shape = match s.dims() {
        Some([]) => return Err("input must be at least 1-D, got a scalar".into()),
        Some(dims) => {
            let last = dims.len() - 1;
            if let (Some(k), Dim::Known(n)) = (k, &dims[last]) {
                if k as u64 > *n as u64 {
                    return Err(format!(
                        "input must have at least k = {k} columns, has {n} (shape {s})"
                    ));
                }
            }
            let mut d = dims.to_vec();
            d[last] = k.map_or(Dim::Unknown, |k| Dim::Known(k as usize));
            Shape::new(d)
        }
        None => Shape::unknown(),
    };
    Ok(vec![
        TensorType {
            dtype: ctx.dtype(0),
            shape: shape.clone(),
        },
        TensorType {
            dtype: DType::I32,
            shape,
        },
    ])
}

fn infer_where(ctx: &InferCtx<'_>) -> IResult {
    let shape = match ctx.input(0).shape.rank() {
        Some(r) => Shape::new(vec![Dim::Unknown, Dim::Known(r)]),
        None => Shape::new(vec![Dim::Unknown, Dim::Unknown]),
    };
    Ok(vec![TensorType {
        dtype: DType::I64,
        shape,
    }])
}

fn infer_in_top_k(ctx: &InferCtx<'_>) -> IResult {
    ctx.same_dtype(&[1, 2])?;
    let (p, t, k) = (
        &ctx.input(0).shape,
        &ctx.input(1).shape,
        &ctx.input(2).shape,
    );
    if p.rank().is_some_and(|r| r != 2) {
        return Err(format!("predictions must be 2-D, got shape {p}"));
    }
    if t.rank().is_some_and(|r| r != 1) {
        return Err(format!("targets must be 1-D, got shape {t}"));
    }
    if k.rank().is_some_and(|r| r != 0) {
        return Err(format!("k must be a scalar, got shape {k}"));
    }
    let batch = match (p.dim(0), t.dim(0)) {
        (Dim::Known(a), Dim::Known(b)) if a != b => {
            return Err(format!(
                "predictions have {a} rows but targets have {b} elements"
            ))
        }
        (Dim::Known(a), _) | (_, Dim::Known(a)) => Dim::Known(a),
        (d, _) => d,
    };
    Ok(vec![TensorType {
        dtype: DType::Bool,
        shape: Shape::new(vec![batch]),
    }])
}

impl Graph {
    /// `Cumsum` along `axis`.
    pub fn cumsum(
        &mut self,
        x: Output,
        axis: i64,
        exclusive: bool,
        reverse: bool,
    ) -> Result<Output> {
        let a = self.scalar(checked_i32("cumsum", "axis", axis)?)?;
        self.build("Cumsum")
            .input(x)
            .input(a)
            .attr("exclusive", exclusive)
            .attr("reverse", reverse)
            .finish1()
    }
    /// `Cumprod` along `axis`.
    pub fn cumprod(
        &mut self,
        x: Output,
        axis: i64,
        exclusive: bool,
        reverse: bool,
    ) -> Result<Output> {
        let a = self.scalar(checked_i32("cumprod", "axis", axis)?)?;
        self.build("Cumprod")
            .input(x)
            .input(a)
            .attr("exclusive", exclusive)
            .attr("reverse", reverse)
            .finish1()
    }
    /// `TopKV2`: (values, indices) of the `k` largest entries of each last-axis row.
    pub fn top_k(&mut self, x: Output, k: i64, sorted: bool) -> Result<(Output, Output)> {
        let kc = self.scalar(checked_i32("top_k", "k", k)?)?;
        let n = self
            .build("TopKV2")
            .input(x)
            .input(kc)
            .attr("sorted", sorted)
            .finish()?;
        Ok((Output::new(n, 0), Output::new(n, 1)))
    }
    /// `Where`: the int64 coordinates of the true (nonzero) elements.
    pub fn where_(&mut self, x: Output) -> Result<Output> {
        self.build("Where").input(x).finish1()
    }
}

// ---- gradients --------------------------------------------------------------------------------

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::{NotDifferentiable as No, Rule};
    vec![
        ("Cumsum", Rule(cumsum_grad)),
        ("Cumprod", Rule(cumprod_grad)),
        ("TopKV2", Rule(top_k_grad)),
        ("Where", No),
        ("InTopKV2", No),
    ]
}

fn flag(ctx: &GradCtx<'_>, name: &str) -> bool {
    ctx.attrs().bool_opt(name).copied().unwrap_or(false)
}

fn scan(
    g: &mut Graph,
    op: &str,
    x: Output,
    axis: Output,
    exclusive: bool,
    reverse: bool,
) -> Result<Output> {
    g.build(op)
        .input(x)
        .input(axis)
        .attr("exclusive", exclusive)
        .attr("reverse", reverse)
        .finish1()
}

fn cumsum_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // The transpose of a running sum is the running sum the other way.
    let (exclusive, reverse) = (flag(ctx, "exclusive"), flag(ctx, "reverse"));
    let (axis, dy) = (ctx.input(1)?, ctx.dy()?);
    let d = scan(ctx.graph, "Cumsum", dy, axis, exclusive, !reverse)?;
    Ok(vec![Some(d), None])
}

fn cumprod_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // As TensorFlow: cumsum(cumprod(x) * dy, reverse flipped) / x (undefined at x == 0).
    let (exclusive, reverse) = (flag(ctx, "exclusive"), flag(ctx, "reverse"));
    let (x, axis, y, dy) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0), ctx.dy()?);
    let g = &mut *ctx.graph;
    let p = g.mul(y, dy)?;
    let s = scan(g, "Cumsum", p, axis, exclusive, !reverse)?;
    Ok(vec![Some(g.div(s, x)?), None])
}

fn top_k_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // Each value's gradient goes back to the position it came from:
    // sum over k of one_hot(indices, n) * dy[..., None].
    let Some(dy) = ctx.grad(0) else {
        return Ok(vec![None, None]);
    };
    let (x, idx) = (ctx.input(0)?, ctx.output(1));
    let g = &mut *ctx.graph;
    let depth = match g.shape(x).dims().and_then(|d| d.last()?.known()) {
        Some(n) => index_scalar(g, n as i64, DType::I32)?,
        None => {
            let shape = g.shape_of(x)?;
            let rank = g.rank(x)?;
            let one = g.scalar(1i32)?;
            let last = g.sub(rank, one)?;
            let zero = g.scalar(0i32)?;
            g.build("Gather")
                .input(shape)
                .input(last)
                .input(zero)
                .finish1()?
        }
    };
    let on = g.scalar_like(x, 1.0)?;
    let off = g.scalar_like(x, 0.0)?;
    let oh = g
        .build("OneHot")
        .input(idx)
        .input(depth)
        .input(on)
        .input(off)
        .attr("axis", -1i64)
        .finish1()?;
    let dyk = g.expand_dims(dy, -1)?;
    let prod = g.mul(oh, dyk)?;
    let axis = g.scalar(-2i32)?;
    let dx = g.build("Sum").input(prod).input(axis).finish1()?;
    Ok(vec![Some(dx), None])
}
