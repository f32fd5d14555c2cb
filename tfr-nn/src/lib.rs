//! `tfr-nn`: training built from graph ops. Optimizers are ordinary graph ops over variables,
//! so a new training rule needs no change to the runtime (the paper's point). Layers (dense,
//! convolution, pooling, batch norm, dropout, LRN, embeddings), initializers, losses, metrics
//! and the paper's convolutional models are functions that add nodes to a graph.

#[cfg(feature = "runtime")]
pub mod datasets;
pub mod embedding;
pub mod initializers;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod models;
pub mod optimizers;
#[cfg(feature = "runtime")]
pub mod pipeline;
#[cfg(feature = "runtime")]
pub mod quantize;
pub mod replication;
pub mod rnn;
pub mod sampled_losses;
#[cfg(feature = "runtime")]
pub mod saver;
pub mod schedules;

pub use optimizers::{
    clip_by_global_norm, Adagrad, Adam, AdamW, LearningRate, Momentum, Optimizer, RmsProp, Sgd,
};
