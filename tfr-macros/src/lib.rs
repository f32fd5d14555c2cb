//! The `graph!` macro will live here: Rust-syntax model definitions expanded into static graphs, with shapes checked and gradients derived at compile time (issue 5).
