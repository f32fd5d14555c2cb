//! The test accelerator's tests: one binary (see ARCHITECTURE.md, "Tests").

mod device_path;
