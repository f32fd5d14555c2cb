//! CPU kernels, one file per family (mirroring `tfr_graph::ops`). Each file has a
//! `register(&mut KernelRegistry)` that adds its kernels.

pub mod accumulator_ops;
pub mod activation_ops;
pub mod array_ops;
pub mod broadcast;
pub mod candidate_sampling_ops;
pub mod control_flow_ops;
pub mod conv3d_ops;
pub mod conv_ops;
pub mod cwise_ops;
pub mod data_flow_ops;
pub mod debug_ops;
pub mod einsum_op;
pub mod embedding_ops;
pub mod fused_elementwise;
pub mod grad_ops;
pub mod image_ops;
pub mod io_ops;
pub mod linalg_ops;
pub mod matmul_op;
pub mod nn_ops;
pub mod output_alloc;
pub mod partition_ops;
pub mod qgemm;
pub mod quantization_ops;
pub mod quantized_spatial_ops;
pub mod random_ops;
pub mod reduction_ops;
pub mod rnn_ops;
pub mod sampling_ops;
pub mod segment_ops;
pub mod selection_ops;
pub mod sendrecv_ops;
pub(crate) mod simd;
pub mod sparse_training_ops;
pub mod special_math_ops;
pub mod state_ops;
pub mod training_ops;

use crate::kernel::KernelRegistry;

pub fn register_all(r: &mut KernelRegistry) {
    accumulator_ops::register(r);
    activation_ops::register(r);
    array_ops::register(r);
    candidate_sampling_ops::register(r);
    conv_ops::register(r);
    conv3d_ops::register(r);
    control_flow_ops::register(r);
    cwise_ops::register(r);
    data_flow_ops::register(r);
    debug_ops::register(r);
    einsum_op::register(r);
    embedding_ops::register(r);
    fused_elementwise::register(r);
    grad_ops::register(r);
    image_ops::register(r);
    io_ops::register(r);
    linalg_ops::register(r);
    matmul_op::register(r);
    nn_ops::register(r);
    partition_ops::register(r);
    quantization_ops::register(r);
    quantized_spatial_ops::register(r);
    random_ops::register(r);
    reduction_ops::register(r);
    rnn_ops::register(r);
    sampling_ops::register(r);
    segment_ops::register(r);
    selection_ops::register(r);
    sendrecv_ops::register(r);
    sparse_training_ops::register(r);
    special_math_ops::register(r);
    state_ops::register(r);
    training_ops::register(r);
}
