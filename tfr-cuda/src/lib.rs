//! The CUDA device will live here: cudarc-backed allocator, streams and kernels, loaded dynamically so builds need no CUDA toolkit (issue 8).
