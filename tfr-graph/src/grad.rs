//! The gradient-rule interface. Rules live beside their op families (`ops/math_grad.rs`, ...);
//! [`gradients`](crate::gradients::gradients) walks the graph backwards and calls them.
//!
//! The helpers at the end of this file are shared by the rules: reducing a broadcast gradient
//! back to an input's shape ([`sum_to`]), reshaping a gradient like a tensor ([`reshape_like`]),
//! and constant-or-runtime shape vectors ([`shape_of`]). Each emits constants when the static
//! shapes decide the answer and falls back to runtime shape ops otherwise.

use crate::attr::Attrs;
use crate::dtype::DType;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output};
use crate::op_def::normalize_axis;
use crate::shape::{Dim, Shape};
use crate::value::TensorValue;
use std::fmt::Display;

/// What a gradient rule sees: the graph to add backward nodes to, the forward node, and the
/// gradient flowing into each of its outputs (`None` where no gradient flows).
pub struct GradCtx<'a> {
    pub graph: &'a mut Graph,
    pub node: NodeId,
    pub out_grads: &'a [Option<Output>],
    /// Per input of the forward node, whether a gradient for it is needed. Rules may skip the
    /// inputs that are not wanted; whatever they return for them is dropped.
    pub wanted: &'a [bool],
}

/// A gradient rule: returns one optional gradient per input of the forward node.
pub type GradFn = fn(&mut GradCtx<'_>) -> Result<Vec<Option<Output>>>;

impl GradCtx<'_> {
    /// The forward node's op.
    pub fn op(&self) -> &str {
        &self.graph.node(self.node).op
    }
    /// The forward node's attributes.
    pub fn attrs(&self) -> &Attrs {
        &self.graph.node(self.node).attrs
    }
    pub fn num_inputs(&self) -> usize {
        self.graph.node(self.node).inputs.len()
    }
    /// Input `i` of the forward node; an error (never a panic) when it has no such input.
    pub fn input(&self, i: usize) -> Result<Output> {
        self.graph
            .node(self.node)
            .inputs
            .get(i)
            .copied()
            .ok_or_else(|| self.error(format!("has no input {i}")))
    }
    /// Output `i` of the forward node.
    pub fn output(&self, i: usize) -> Output {
        Output::new(self.node, i)
    }
    pub fn num_outputs(&self) -> usize {
        self.graph.node(self.node).outputs.len()
    }
    /// The gradient flowing into output `i`, if any.
    pub fn grad(&self, i: usize) -> Option<Output> {
        self.out_grads.get(i).copied().flatten()
    }
    /// The gradient flowing into output 0 (the only one of single-output ops).
    pub fn dy(&self) -> Result<Output> {
        self.grad(0)
            .ok_or_else(|| self.error("no gradient flows into output 0"))
    }
    /// Whether input `i` needs a gradient.
    pub fn wants(&self, i: usize) -> bool {
        self.wanted.get(i).copied().unwrap_or(false)
    }
    pub fn shape(&self, o: Output) -> Shape {
        self.graph.shape(o).clone()
    }
    pub fn dtype(&self, o: Output) -> DType {
        self.graph.dtype(o)
    }
    /// A [`GraphError::Gradient`] naming the forward node.
    pub fn error(&self, message: impl Display) -> GraphError {
        let node = self.graph.node(self.node);
        GraphError::Gradient(format!("node `{}` ({}): {message}", node.name, node.op))
    }
    /// The constant integer value of input `i`, when it is a graph constant (see [`const_ints`]).
    pub fn const_input(&self, i: usize) -> Option<Vec<i64>> {
        const_ints(self.graph, self.input(i).ok()?)
    }
}

// ---- helpers shared by the rules --------------------------------------------------------------

/// The value of `o` as integers, when it is a constant: a `Const`, or one seen through
/// `Identity` nodes and a loop invariant's `Enter` (the helper shape inference uses, so a rule
/// inside a loop body reads the constants it reads outside).
pub fn const_ints(g: &Graph, o: Output) -> Option<Vec<i64>> {
    let v = crate::ops::control_flow_ops::constant_behind(g, o)?;
    Some((0..v.num_elements()).map(|k| v.data.get_i64(k)).collect())
}

/// A 1-D integer constant of dtype `dtype` (int32 unless int64 is asked for).
pub fn index_vector(g: &mut Graph, values: &[i64], dtype: DType) -> Result<Output> {
    let n = values.len();
    let value = if dtype == DType::I64 {
        TensorValue::new(&[n], values.to_vec())
    } else {
        TensorValue::new(&[n], values.iter().map(|&v| v as i32).collect::<Vec<_>>())
    };
    let value = value.ok_or_else(|| GraphError::Gradient("index vector length".into()))?;
    g.constant(value)
}

/// An integer scalar constant of dtype `dtype` (int32 unless int64 is asked for).
pub fn index_scalar(g: &mut Graph, v: i64, dtype: DType) -> Result<Output> {
    if dtype == DType::I64 {
        g.scalar(v)
    } else {
        g.scalar(v as i32)
    }
}

/// The shape of `x` as a 1-D tensor of `dtype`: a constant when fully known, else a `Shape` op.
pub fn shape_of(g: &mut Graph, x: Output, dtype: DType) -> Result<Output> {
    match g.shape(x).to_known() {
        Some(dims) => {
            let v: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            index_vector(g, &v, dtype)
        }
        None => g.build("Shape").input(x).attr("out_type", dtype).finish1(),
    }
}

/// True when two static shapes are equal whenever a step runs: same rank and each dim known
/// and equal or the same symbol.
pub fn statically_equal(a: &Shape, b: &Shape) -> bool {
    match (a.dims(), b.dims()) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (Dim::Known(p), Dim::Known(q)) => p == q,
                    (Dim::Sym(p), Dim::Sym(q)) => p == q,
                    _ => false,
                })
        }
        _ => false,
    }
}

/// `t` reshaped to the shape of `like` (which has as many elements).
pub fn reshape_like(g: &mut Graph, t: Output, like: Output) -> Result<Output> {
    let target = g.shape(like).clone();
    if statically_equal(g.shape(t), &target) {
        return Ok(t);
    }
    let s = shape_of(g, like, DType::I32)?;
    let out = g.build("Reshape").input(t).input(s).finish1()?;
    g.refine_output_shape(out, target);
    Ok(out)
}

/// `t` broadcast to the shape of `like`.
pub fn broadcast_like(g: &mut Graph, t: Output, like: Output) -> Result<Output> {
    let target = g.shape(like).clone();
    if statically_equal(g.shape(t), &target) {
        return Ok(t);
    }
    let s = shape_of(g, like, DType::I32)?;
    let out = g.build("BroadcastTo").input(t).input(s).finish1()?;
    g.refine_output_shape(out, target);
    Ok(out)
}

/// The axes a gradient of static shape `grad` must be summed over to match an operand of static
/// shape `like` that was broadcast to it: (leading axes, kept axes where `like` has size 1).
/// `None` when the static shapes do not decide it.
fn static_broadcast_axes(grad: &[Dim], like: &[Dim]) -> Option<(usize, Vec<usize>)> {
    let lead = grad.len().checked_sub(like.len())?;
    let mut ones = Vec::new();
    for (i, (a, b)) in grad[lead..].iter().zip(like).enumerate() {
        match (a, b) {
            (a, Dim::Known(1)) => {
                if *a != Dim::Known(1) {
                    ones.push(lead + i);
                }
            }
            // A dim of `like` other than 1 fixes the broadcast dim: nothing to sum.
            (_, Dim::Known(_)) => {}
            // A broadcast dim of 1 means `like`'s dim is 1 too.
            (Dim::Known(1), _) => {}
            (Dim::Sym(p), Dim::Sym(q)) if p == q => {}
            _ => return None,
        }
    }
    Some((lead, ones))
}

/// Sums a gradient that flowed into a broadcast result back to the shape of the operand `like`
/// (numpy broadcasting). With static shapes that decide the axes this is one `Sum` over
/// constant axes (plus a `Squeeze` of leading axes); otherwise the axes are computed when the
/// step runs by `BroadcastGradientArgs`, as TensorFlow does.
pub fn sum_to(g: &mut Graph, grad: Output, like: Output) -> Result<Output> {
    let (gs, ls) = (g.shape(grad).clone(), g.shape(like).clone());
    if statically_equal(&gs, &ls) {
        return Ok(grad);
    }
    let decided = match (gs.dims(), ls.dims()) {
        (Some(gd), Some(ld)) => static_broadcast_axes(gd, ld),
        _ => None,
    };
    let out = match decided {
        Some((0, ones)) if ones.is_empty() => return Ok(grad),
        Some((lead, ones)) if ones.is_empty() => {
            let axes: Vec<i64> = (0..lead as i64).collect();
            let a = index_vector(g, &axes, DType::I32)?;
            g.build("Sum")
                .input(grad)
                .input(a)
                .attr("keep_dims", false)
                .finish1()?
        }
        Some((lead, ones)) => {
            let mut axes: Vec<i64> = (0..lead as i64).collect();
            axes.extend(ones.iter().map(|&a| a as i64));
            let a = index_vector(g, &axes, DType::I32)?;
            let s = g
                .build("Sum")
                .input(grad)
                .input(a)
                .attr("keep_dims", true)
                .finish1()?;
            if lead == 0 {
                s
            } else {
                g.build("Squeeze")
                    .input(s)
                    .attr("squeeze_dims", (0..lead as i64).collect::<Vec<_>>())
                    .finish1()?
            }
        }
        None => {
            let sl = g.build("Shape").input(like).finish1()?;
            let sg = g.build("Shape").input(grad).finish1()?;
            let args = g
                .build("BroadcastGradientArgs")
                .input(sl)
                .input(sg)
                .finish()?;
            let s = g
                .build("Sum")
                .input(grad)
                .input(Output::new(args, 0))
                .attr("keep_dims", false)
                .finish1()?;
            g.build("Reshape").input(s).input(sl).finish1()?
        }
    };
    g.refine_output_shape(out, ls);
    Ok(out)
}

/// The gradient `grad` of a reduction of `x` over `axis` reshaped to the reduction's keep-dims
/// shape (size 1 along the reduced axes), so it broadcasts against `x`.
pub fn reduction_kept(
    g: &mut Graph,
    grad: Output,
    x: Output,
    axis: Output,
    keep_dims: bool,
) -> Result<Output> {
    if keep_dims {
        return Ok(grad);
    }
    let xs = g.shape(x).clone();
    if let (Some(dims), Some(axes)) = (xs.dims(), const_ints(g, axis)) {
        let mut norm = axes
            .iter()
            .map(|&a| normalize_axis(a, dims.len()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(GraphError::Gradient)?;
        norm.sort_unstable();
        norm.dedup();
        let kept: Vec<Dim> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if norm.contains(&i) {
                    Dim::Known(1)
                } else {
                    d.clone()
                }
            })
            .collect();
        let kept = Shape::new(kept);
        if let Some(k) = kept.to_known() {
            let v: Vec<i64> = k.iter().map(|&d| d as i64).collect();
            let s = index_vector(g, &v, DType::I32)?;
            return g.build("Reshape").input(grad).input(s).finish1();
        }
        let mut t = grad;
        for a in norm {
            let ax = g.scalar(a as i32)?;
            t = g.build("ExpandDims").input(t).input(ax).finish1()?;
        }
        g.refine_output_shape(t, kept);
        return Ok(t);
    }
    let dt = g.dtype(axis);
    let sx = shape_of(g, x, dt)?;
    let rs = g.build("ReducedShape").input(sx).input(axis).finish1()?;
    g.build("Reshape").input(grad).input(rs).finish1()
}

/// `Sum` of `t` over all its axes (a scalar).
pub fn sum_all(g: &mut Graph, t: Output) -> Result<Output> {
    let axes = g.axes_const(t, None)?;
    g.build("Sum")
        .input(t)
        .input(axes)
        .attr("keep_dims", false)
        .finish1()
}

/// `Sum` of `t` over `axes` with `keep_dims`.
pub fn sum_axes(g: &mut Graph, t: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
    let a = index_vector(g, axes, DType::I32)?;
    g.build("Sum")
        .input(t)
        .input(a)
        .attr("keep_dims", keep_dims)
        .finish1()
}

/// The constant value of a scalar (or one-element) integer output, when it is a constant (see
/// [`const_ints`]).
pub fn const_scalar(g: &Graph, o: Output) -> Option<i64> {
    match const_ints(g, o)?.as_slice() {
        [v] => Some(*v),
        _ => None,
    }
}

/// The index dtype to use beside an index tensor `o`: int64 if it is int64, else int32.
pub fn index_dtype(g: &Graph, o: Output) -> DType {
    match g.dtype(o) {
        DType::I64 => DType::I64,
        _ => DType::I32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(v: &[&str]) -> Vec<Dim> {
        v.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(n) => Dim::Known(n),
                Err(_) if *s == "?" => Dim::Unknown,
                Err(_) => Dim::Sym(s.to_string()),
            })
            .collect()
    }

    #[test]
    fn static_broadcast_axes_decides_when_it_can() {
        let f = |a: &[&str], b: &[&str]| static_broadcast_axes(&dims(a), &dims(b));
        assert_eq!(f(&["2", "3"], &["3"]), Some((1, vec![])));
        assert_eq!(f(&["2", "3"], &["1", "3"]), Some((0, vec![0])));
        assert_eq!(f(&["2", "3"], &["2", "1"]), Some((0, vec![1])));
        assert_eq!(f(&["B", "3"], &["B", "1"]), Some((0, vec![1])));
        assert_eq!(f(&["B", "3"], &["3"]), Some((1, vec![])));
        assert_eq!(f(&["1", "3"], &["?", "3"]), Some((0, vec![])));
        assert_eq!(f(&["?", "3"], &["?", "3"]), None);
        assert_eq!(f(&["4", "3"], &["B", "3"]), None);
        assert_eq!(f(&["3"], &["2", "3"]), None);
    }

    #[test]
    fn sum_to_emits_constant_axes_for_known_shapes() {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[2, 1]))
            .unwrap();
        let d = g
            .placeholder("d", DType::F32, Shape::known(&[4, 2, 3]))
            .unwrap();
        let r = sum_to(&mut g, d, x).unwrap();
        assert_eq!(g.shape(r), &Shape::known(&[2, 1]));
        assert!(!g.nodes().iter().any(|n| n.op == "BroadcastGradientArgs"));
        let u = g
            .placeholder("u", DType::F32, Shape::unknown_dims(2))
            .unwrap();
        let r = sum_to(&mut g, d, u).unwrap();
        assert_eq!(g.shape(r), &Shape::unknown_dims(2));
        assert!(g.nodes().iter().any(|n| n.op == "BroadcastGradientArgs"));
        // Equal static shapes need nothing.
        let same = sum_to(&mut g, x, x).unwrap();
        assert_eq!(same, x);
    }
}
