//! `tfr-tf`: TensorFlow interoperability.
//!
//! - GraphDef export ([`to_graph_def`], [`write_graph_def`]) and import
//!   ([`import_graph_def`], [`read_graph_def`]), with feeds and fetches by TF tensor name.
//!   Import inlines the calls of the graph's function library (`PartitionedCall`,
//!   `StatefulPartitionedCall`, nodes whose op is a function name), turns `VarHandleOp`s into
//!   tfr variables ([`Imported::variables`], restorable with `tfr_nn::Saver` from tfr
//!   checkpoints), leaves out TensorFlow's own saver subgraph ([`Imported::dropped`]) and can
//!   import only what named outputs need ([`ImportOptions::prune_to`]).
//! - TensorBoard event files: [`SummaryWriter`] writes them (TFRecord framing, masked CRC32C,
//!   flushed by a background thread), [`read_events`] reads and checks them.
//! - Summary ops' kernels ([`register_summary_kernels`]): `ScalarSummary`, `HistogramSummary`,
//!   `ImageSummary`, `MergeSummary` (defined in `tfr_graph::ops::summary_ops`) output serialized
//!   `Summary` protobufs, which [`SummaryWriter::add_summary_tensor`] writes at a step.
//!
//! The protobuf messages are the crate's own `.proto` files (`proto/`), wire-compatible with
//! TensorFlow's, compiled by protox and prost at build time.

pub mod convert;
pub mod error;
pub mod events;
pub mod export;
pub mod import;
pub mod npy;
pub mod parse;
pub mod record;
pub mod summary;
pub mod summary_kernels;
pub mod tf_attrs;

pub mod proto {
    //! The TensorFlow-compatible messages, generated from `proto/*.proto` by prost.
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));
}

pub use error::{Result, TfError};
pub use events::{event_files, read_events, scalars, SummaryWriter, FILE_VERSION};
pub use export::{
    graph_def_bytes, tf_op_name, to_graph_def, to_graph_def_with, write_graph_def, ExportOptions,
};
pub use import::{
    decode_graph_def, import_graph_def, import_graph_def_with, read_graph_def, ImportOptions,
    Imported,
};
pub use npy::{read_case, read_npy, write_npy, GraphCase};
pub use summary_kernels::{decode_summaries, register_summary_kernels};
