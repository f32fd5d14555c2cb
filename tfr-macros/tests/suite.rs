//! Every integration test of this crate in one binary: one link instead of one per file
//! (CI builds on 2 cores with limited disk). Run one file's tests with
//! `cargo test -p tfr-macros --test suite <file>::`.

mod abstraction;
mod control_flow;
mod control_flow_grad;
mod equivalence;
mod pass_cases;
mod smoke;
mod spellings;
mod symbolic_dims;
mod train;
mod ui;
