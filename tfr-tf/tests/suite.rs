//! Every integration test of this crate in one binary (one link; see ARCHITECTURE.md). Run one
//! file's tests with `cargo test -p tfr-tf --test suite <file>::`.

mod common;
mod event_files;
mod graphdef_control_flow;
mod graphdef_errors;
mod graphdef_functions;
mod graphdef_import;
mod graphdef_roundtrip;
mod graphdef_variables;
mod graphdef_while;
mod keras_fixtures;
mod summary_ops;
