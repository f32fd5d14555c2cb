//! Every integration test of this crate in one binary: one link instead of one per file
//! (CI builds on 2 cores with limited disk). Run one file's tests with
//! `cargo test -p tfr-distributed --test suite <file>::`.

mod cluster;
mod common;
mod deploy;
mod embedding;
mod failure;
mod loops;
mod master;
mod recovery;
mod remote;
mod replicated;
mod security;
mod target;
mod tls;
mod transfer;
