//! `tfr`: TensorFlow's design rebuilt in Rust.
//!
//! Build a dataflow graph with [`Graph`]'s builder methods, then run the parts you need through
//! a [`Session`]:
//!
//! ```
//! use tfr::prelude::*;
//!
//! let mut g = Graph::new();
//! let x = g.placeholder("x", DType::F32, Shape::known(&[2]))?;
//! let w = g.constant_from(&[2], vec![3.0f32, 4.0])?;
//! let y = g.mul(x, w)?;
//! let s = Session::new(&g, SessionOptions::default())?;
//! let out = s.run(&[(x, Tensor::new(&[2], vec![1.0f32, 2.0])?)], &[y], &[])?;
//! assert_eq!(out[0].to_vec::<f32>()?, vec![3.0, 8.0]);
//! # Ok::<(), tfr::Error>(())
//! ```

/// The `ndarray` crate that feeds and fetches use (so a crate using `graph!` needs only `tfr`).
pub use ndarray;
pub use session::{DevicePolicy, Session};
pub use tfr_core::{
    self as core, Callable, Code, Error, Result, RunMetadata, RunOptions, SessionOptions, Tensor,
};
/// The GPU device (tfr-cuda): [`Session`] registers it, so programs rarely name it.
pub use tfr_cuda as cuda;
#[cfg(feature = "distributed")]
pub use tfr_distributed as distributed;
pub use tfr_graph::{
    self as graph, DType, Dim, Graph, GraphError, NodeId, Output, Shape, TensorValue,
};
pub use tfr_macros::graph;
pub use tfr_nn as nn;
/// TensorFlow GraphDef import/export and TensorBoard event files.
pub use tfr_tf as tf;

pub mod cli;
pub mod model;
pub mod session;

/// The names most programs need.
pub mod prelude {
    pub use crate::session::{DevicePolicy, Session};
    pub use tfr_core::{RunMetadata, RunOptions, SessionOptions, Tensor};
    pub use tfr_graph::{DType, Dim, Graph, NodeId, Output, Shape};
}
