//! Every integration test of this crate in one binary: one link instead of one per file
//! (CI builds on 2 cores with limited disk). Run one file's tests with
//! `cargo test -p tfr-core --test suite <file>::`.

mod accumulators;
mod array_kernels;
mod candidate_sampling;
mod common;
mod control_flow;
mod conv_kernels;
mod devices_control_flow;
mod elementwise_fusion;
mod gradients;
mod huge_sizes;
mod linalg_ops;
mod loop_gradient_scaling;
mod loop_gradients;
mod loop_machine_code;
mod math_kernels;
mod nested_loops;
mod nn_kernels;
mod placement;
mod quantization_ops;
mod quantized_fused_ops;
mod queues;
mod random_kernels;
mod rnn_ops;
mod sampling_ops;
mod scalar_loops;
mod selection_and_debug_ops;
mod session_basics;
mod sparse_ops;
mod spatial_ops;
mod special_math_ops;
mod step_trace;
mod strings;
mod tf_op_names;
mod tf_semantics;
mod truncate_and_squared_difference;
