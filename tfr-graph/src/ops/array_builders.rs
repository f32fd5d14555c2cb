//! The builder API of the array ops (`Graph::constant`, `placeholder`, `reshape`, `concat`,
//! `gather`, ...): each checks its Rust arguments and adds one node through `Graph::build`.

use super::builder_args::{checked_i32, checked_i32s};
use super::strided_slice::StridedSliceMasks;
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output};
use crate::shape::Shape;
use crate::value::{Element, TensorValue};

/// An i32 index vector constant for `builder`'s argument `arg`; values must fit an i32.
fn index_const(g: &mut Graph, builder: &str, arg: &str, v: &[i64]) -> Result<Output> {
    let data = checked_i32s(builder, arg, v)?;
    g.constant(TensorValue::new(&[data.len()], data).expect("length matches"))
}

impl Graph {
    pub fn constant(&mut self, value: TensorValue) -> Result<Output> {
        self.build("Const").attr("value", value).finish1()
    }

    /// A `DType::String` constant of byte strings (any bytes), row-major over `shape`.
    pub fn constant_strings<S: AsRef<[u8]>>(
        &mut self,
        shape: &[usize],
        data: &[S],
    ) -> Result<Output> {
        self.constant_from(shape, data.iter().map(|s| s.as_ref().to_vec()).collect())
    }

    /// A constant from row-major data and a shape.
    pub fn constant_from<T: Element>(&mut self, shape: &[usize], data: Vec<T>) -> Result<Output> {
        let n = data.len();
        let value =
            TensorValue::new(shape, data).ok_or_else(|| crate::error::GraphError::InvalidNode {
                node: "Const".into(),
                op: "Const".into(),
                message: format!("{n} values do not fill shape {shape:?}"),
            })?;
        self.constant(value)
    }

    pub fn placeholder(
        &mut self,
        name: &str,
        dtype: DType,
        shape: impl Into<Shape>,
    ) -> Result<Output> {
        self.build("Placeholder")
            .name(name)
            .attr("dtype", dtype)
            .attr("shape", shape.into())
            .finish1()
    }

    pub fn identity(&mut self, x: Output) -> Result<Output> {
        self.build("Identity").input(x).finish1()
    }
    pub fn stop_gradient(&mut self, x: Output) -> Result<Output> {
        self.build("StopGradient").input(x).finish1()
    }
    /// A `NoOp` that runs after `deps` (a group).
    pub fn group(&mut self, deps: &[NodeId]) -> Result<NodeId> {
        self.build("NoOp")
            .control_inputs(deps.iter().copied())
            .finish()
    }
    pub fn reshape(&mut self, x: Output, shape: &[i64]) -> Result<Output> {
        let s = index_const(self, "reshape", "shape", shape)?;
        self.build("Reshape").input(x).input(s).finish1()
    }
    pub fn reshape_to(&mut self, x: Output, shape: Output) -> Result<Output> {
        self.build("Reshape").input(x).input(shape).finish1()
    }
    pub fn transpose(&mut self, x: Output, perm: &[i64]) -> Result<Output> {
        let p = index_const(self, "transpose", "perm", perm)?;
        self.build("Transpose").input(x).input(p).finish1()
    }
    pub fn expand_dims(&mut self, x: Output, axis: i64) -> Result<Output> {
        let a = self.scalar(checked_i32("expand_dims", "axis", axis)?)?;
        self.build("ExpandDims").input(x).input(a).finish1()
    }
    pub fn squeeze(&mut self, x: Output, axes: &[i64]) -> Result<Output> {
        self.build("Squeeze")
            .input(x)
            .attr("squeeze_dims", axes.to_vec())
            .finish1()
    }
    pub fn concat(&mut self, xs: &[Output], axis: i64) -> Result<Output> {
        let a = self.scalar(checked_i32("concat", "axis", axis)?)?;
        self.build("Concat")
            .inputs(xs.iter().copied())
            .input(a)
            .finish1()
    }
    pub fn split(&mut self, x: Output, num: usize, axis: i64) -> Result<Vec<Output>> {
        let a = self.scalar(checked_i32("split", "axis", axis)?)?;
        let id = self
            .build("Split")
            .input(a)
            .input(x)
            .attr("num_split", num as i64)
            .finish()?;
        Ok((0..num).map(|i| Output::new(id, i)).collect())
    }
    pub fn slice(&mut self, x: Output, begin: &[i64], size: &[i64]) -> Result<Output> {
        let b = index_const(self, "slice", "begin", begin)?;
        let s = index_const(self, "slice", "size", size)?;
        self.build("Slice").input(x).input(b).input(s).finish1()
    }
    pub fn strided_slice(
        &mut self,
        x: Output,
        begin: &[i64],
        end: &[i64],
        strides: &[i64],
        masks: StridedSliceMasks,
    ) -> Result<Output> {
        let b = index_const(self, "strided_slice", "begin", begin)?;
        let e = index_const(self, "strided_slice", "end", end)?;
        let s = index_const(self, "strided_slice", "strides", strides)?;
        self.build("StridedSlice")
            .input(x)
            .input(b)
            .input(e)
            .input(s)
            .attr("begin_mask", masks.begin)
            .attr("end_mask", masks.end)
            .attr("ellipsis_mask", masks.ellipsis)
            .attr("new_axis_mask", masks.new_axis)
            .attr("shrink_axis_mask", masks.shrink_axis)
            .finish1()
    }
    /// Pads with zeros (or `value`); `paddings` holds (before, after) per dim.
    pub fn pad(&mut self, x: Output, paddings: &[(i64, i64)], value: f64) -> Result<Output> {
        let flat: Vec<i64> = paddings.iter().flat_map(|&(a, b)| [a, b]).collect();
        let flat = checked_i32s("pad", "paddings", &flat)?;
        let p =
            self.constant(TensorValue::new(&[paddings.len(), 2], flat).expect("length matches"))?;
        let v = self.scalar_like(x, value)?;
        self.build("PadV2").input(x).input(p).input(v).finish1()
    }
    pub fn tile(&mut self, x: Output, multiples: &[i64]) -> Result<Output> {
        let m = index_const(self, "tile", "multiples", multiples)?;
        self.build("Tile").input(x).input(m).finish1()
    }
    pub fn stack(&mut self, xs: &[Output], axis: i64) -> Result<Output> {
        self.build("Pack")
            .inputs(xs.iter().copied())
            .attr("axis", axis)
            .finish1()
    }
    pub fn unstack(&mut self, x: Output, num: usize, axis: i64) -> Result<Vec<Output>> {
        let id = self
            .build("Unpack")
            .input(x)
            .attr("num", num as i64)
            .attr("axis", axis)
            .finish()?;
        Ok((0..num).map(|i| Output::new(id, i)).collect())
    }
    pub fn gather(&mut self, params: Output, indices: Output, axis: i64) -> Result<Output> {
        let a = self.scalar(checked_i32("gather", "axis", axis)?)?;
        self.build("Gather")
            .input(params)
            .input(indices)
            .input(a)
            .finish1()
    }
    pub fn one_hot(
        &mut self,
        indices: Output,
        depth: usize,
        on: Output,
        off: Output,
    ) -> Result<Output> {
        let d = self.scalar(checked_i32("one_hot", "depth", depth)?)?;
        self.build("OneHot")
            .input(indices)
            .input(d)
            .input(on)
            .input(off)
            .finish1()
    }
    pub fn fill(&mut self, dims: &[i64], value: Output) -> Result<Output> {
        let d = index_const(self, "fill", "dims", dims)?;
        self.build("Fill").input(d).input(value).finish1()
    }
    pub fn zeros_like(&mut self, x: Output) -> Result<Output> {
        self.build("ZerosLike").input(x).finish1()
    }
    pub fn ones_like(&mut self, x: Output) -> Result<Output> {
        self.build("OnesLike").input(x).finish1()
    }
    pub fn shape_of(&mut self, x: Output) -> Result<Output> {
        self.build("Shape").input(x).finish1()
    }
    pub fn size(&mut self, x: Output) -> Result<Output> {
        self.build("Size").input(x).finish1()
    }
    pub fn rank(&mut self, x: Output) -> Result<Output> {
        self.build("Rank").input(x).finish1()
    }
    pub fn range(&mut self, start: Output, limit: Output, delta: Output) -> Result<Output> {
        self.build("Range")
            .input(start)
            .input(limit)
            .input(delta)
            .finish1()
    }
    pub fn broadcast_to(&mut self, x: Output, shape: &[i64]) -> Result<Output> {
        let s = index_const(self, "broadcast_to", "shape", shape)?;
        self.build("BroadcastTo").input(x).input(s).finish1()
    }
    pub fn reverse(&mut self, x: Output, axes: &[i64]) -> Result<Output> {
        let a = index_const(self, "reverse", "axes", axes)?;
        self.build("Reverse").input(x).input(a).finish1()
    }
}
