//! `tfr-graph`: the graph IR and the op registry.
//!
//! Every op is defined once, in `ops/<family>_ops.rs`: its inputs and the dtypes they accept, its
//! attributes, its shape function, its flags and its gradient rule (`ops/<family>_grad.rs`).
//! The runtime builder API (methods on [`Graph`]) and the `graph!` macro both build nodes
//! through [`Graph::build`], which runs those checks, so the two can never disagree.

pub mod attr;
pub mod device;
pub mod dtype;
pub mod error;
pub mod fusion;
pub mod grad;
pub mod gradients;
pub mod graph;
pub mod indexed_slices;
pub mod op_def;
pub mod ops;
pub mod passes;
pub mod serialize;
pub mod shape;
pub mod validate;
pub mod value;

pub use attr::{AttrKind, AttrValue, Attrs};
pub use dtype::{DType, DTypeSet};
pub use error::{GraphError, Result};
pub use gradients::{
    gradients, gradients_or_zeros, gradients_with, sparse_gradients, UnconnectedGradients,
};
pub use graph::{Graph, Node, NodeBuilder, NodeId, Output, TensorType};
pub use half::{bf16, f16};
pub use indexed_slices::IndexedSlices;
pub use op_def::{registry, Gradient, OpDef, Registry};
pub use shape::{broadcast_shapes, Dim, ElementCount, Shape};
pub use value::{Buffer, Element, TensorValue};
