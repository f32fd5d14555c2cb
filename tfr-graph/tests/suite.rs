//! Every integration test of this crate in one binary: one link instead of one per file
//! (CI builds on 2 cores with limited disk). Run one file's tests with
//! `cargo test -p tfr-graph --test suite <file>::`.

mod builder;
mod builder_args;
mod graph_errors;
mod op_list;
mod untrusted_sizes;
