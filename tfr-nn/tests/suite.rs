//! Every integration test of this crate in one binary: one link instead of one per file
//! (CI builds on 2 cores with limited disk). Run one file's tests with
//! `cargo test -p tfr-nn --test suite <file>::`.

mod checkpoint;
mod checkpoint_fallback;
mod checkpoint_files;
mod common;
mod datasets;
mod embedding;
mod layers;
mod models;
mod optimizers;
mod partitioned;
mod quantize;
mod queues;
mod replication;
mod rnn;
mod sampled_losses;
mod schedules;
mod shakespeare;
mod training;
