//! Sparse gradients: TensorFlow's `IndexedSlices`. The gradient of a gather from a tensor (or a
//! variable, `ResourceGather`) is non-zero only on the rows it read, so it is kept as the pair
//! (row indices, row values) plus the dense shape. [`gradients`](crate::gradients) carries such
//! values without densifying them: several sparse contributions to one tensor are concatenated,
//! and a value becomes dense (one `UnsortedSegmentSum`) only where a consumer needs it: a
//! backward rule of a dense op, a sum with a dense contribution, or the dense API.

use crate::dtype::DType;
use crate::error::Result;
use crate::grad::{const_ints, index_scalar};
use crate::graph::{Graph, Output};
use crate::shape::Shape;

/// Rows `indices` of a tensor of shape `dense_shape` hold `values`; every other row is zero.
/// Duplicate indices add up (the dense value is `UnsortedSegmentSum(values, indices, rows)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedSlices {
    /// 1-D int32 or int64 row indices.
    pub indices: Output,
    /// `[len(indices), dense_shape[1..]...]`.
    pub values: Output,
    /// The dense tensor's shape, a 1-D integer tensor.
    pub dense_shape: Output,
}

/// A gradient as [`crate::gradients::sparse_gradients`] returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gradient {
    Dense(Output),
    Slices(IndexedSlices),
}

impl Gradient {
    /// The dense value (converting slices with one `UnsortedSegmentSum`), with the static
    /// shape of `like` when it is known better.
    pub fn to_dense(&self, g: &mut Graph, like: Option<&Shape>) -> Result<Output> {
        match self {
            Gradient::Dense(o) => Ok(*o),
            Gradient::Slices(s) => s.to_dense(g, like),
        }
    }

    /// The dtype of the gradient's values.
    pub fn dtype(&self, g: &Graph) -> DType {
        match self {
            Gradient::Dense(o) => g.dtype(*o),
            Gradient::Slices(s) => g.dtype(s.values),
        }
    }

    pub fn as_slices(&self) -> Option<&IndexedSlices> {
        match self {
            Gradient::Slices(s) => Some(s),
            Gradient::Dense(_) => None,
        }
    }
}

impl IndexedSlices {
    /// The number of rows of the dense tensor: a constant when `dense_shape` is one.
    pub fn dense_rows(&self, g: &mut Graph) -> Result<Output> {
        let dt = index_type(g, self.dense_shape);
        if let Some(dims) = const_ints(g, self.dense_shape) {
            if let Some(&rows) = dims.first() {
                return index_scalar(g, rows, dt);
            }
        }
        let zero = index_scalar(g, 0, dt)?;
        g.build("Gather")
            .input(self.dense_shape)
            .input(zero)
            .input(zero)
            .finish1()
    }

    /// The dense value: the rows scatter-added into zeros.
    pub fn to_dense(&self, g: &mut Graph, like: Option<&Shape>) -> Result<Output> {
        let rows = self.dense_rows(g)?;
        let rows = cast_index(g, rows, index_type(g, self.indices))?;
        let dense = g
            .build("UnsortedSegmentSum")
            .input(self.values)
            .input(self.indices)
            .input(rows)
            .finish1()?;
        if let Some(shape) = like {
            g.refine_output_shape(dense, shape.clone());
        }
        Ok(dense)
    }
}

fn index_type(g: &Graph, o: Output) -> DType {
    crate::grad::index_dtype(g, o)
}

fn cast_index(g: &mut Graph, o: Output, dtype: DType) -> Result<Output> {
    if g.dtype(o) == dtype {
        Ok(o)
    } else {
        g.cast(o, dtype)
    }
}

/// Several sparse contributions to one tensor as one: indices and values concatenated (never
/// densified). Indices of different integer types are joined as int64.
pub fn concat_slices(g: &mut Graph, parts: &[IndexedSlices]) -> Result<IndexedSlices> {
    match parts {
        [one] => Ok(*one),
        _ => {
            let wide = parts.iter().any(|p| g.dtype(p.indices) == DType::I64);
            let dt = if wide { DType::I64 } else { DType::I32 };
            let mut indices = Vec::with_capacity(parts.len());
            for p in parts {
                indices.push(cast_index(g, p.indices, dt)?);
            }
            let values: Vec<Output> = parts.iter().map(|p| p.values).collect();
            Ok(IndexedSlices {
                indices: g.concat(&indices, 0)?,
                values: g.concat(&values, 0)?,
                dense_shape: parts[0].dense_shape,
            })
        }
    }
}

/// The sum of the gradients reaching `o` over several paths: dense parts with `AddN`, sparse
/// parts concatenated; a mix is dense (the sparse parts densified once, together).
pub fn sum_gradients(g: &mut Graph, o: Output, parts: Vec<Gradient>) -> Result<Gradient> {
    if let [one] = parts.as_slice() {
        return Ok(*one);
    }
    let (mut dense, mut sparse) = (Vec::new(), Vec::new());
    for p in parts {
        match p {
            Gradient::Dense(d) => dense.push(d),
            Gradient::Slices(s) => sparse.push(s),
        }
    }
    let shape = g.shape(o).clone();
    if !sparse.is_empty() {
        let joined = concat_slices(g, &sparse)?;
        if dense.is_empty() {
            return Ok(Gradient::Slices(joined));
        }
        dense.push(joined.to_dense(g, Some(&shape))?);
    }
    if let [one] = dense.as_slice() {
        return Ok(Gradient::Dense(*one));
    }
    let sum = g.build("AddN").inputs(dense).finish1()?;
    g.refine_output_shape(sum, shape);
    Ok(Gradient::Dense(sum))
}
