//! What the image kernels (convolution, pooling, normalization) share: their float element
//! type and gemm, parallel loops of small tasks, and NHWC/NCHW layouts of 4-D tensors.
//!
//! Everything computes in NHWC; NCHW tensors are transposed in and out (TensorFlow's CPU
//! kernels support only NHWC for most of these). Parallel loops make small tasks
//! (`task_pieces`), so a thread preempted by the OS delays a little of the work, not half of it.

use super::matmul_op::{gemm_product, MatMulElem, MatRef};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit};
use crate::num::{FloatElem, Numeric};
use crate::tensor::{Dims, Tensor};
use rayon::prelude::*;
use std::ops::Range;
use tfr_graph::ops::nn_ops::DataFormat;
use tfr_graph::DType;

// ---- gemm ----------------------------------------------------------------------------------

/// Float types with a gemm: f32 and f64 (crate-private).
pub(crate) trait ConvElem: FloatElem + MatMulElem + Send + Sync + 'static {}
impl ConvElem for f32 {}
impl ConvElem for f64 {}

/// A strided matrix operand (the matrix-product kernels' type).
pub(super) type Mat<'a, T> = MatRef<'a, T>;

/// `dst = a @ b` (or `dst += a @ b` when `accumulate`) for an `m x k` matrix `a` and a `k x n`
/// matrix `b` into the row-major `m x n` block `dst`, through the matrix-product kernels' gemm.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_into<T: ConvElem>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    dst: &mut [T],
    accumulate: bool,
    parallel: bool,
) -> KResult {
    gemm_product(m, n, k, a, b, dst, accumulate, T::one(), T::one(), parallel)
}

// ---- shapes and layouts ----------------------------------------------------------------------

/// Elements per task, at most, of the parallel loops over outputs (more when one piece is
/// larger): enough work per task to hide rayon's overhead, and tasks small enough that a
/// preempted thread delays little.
pub(super) const TASK_ELEMS: usize = 1 << 15;

/// How many `len`-long pieces one task of a parallel loop takes, at most.
pub(super) fn task_pieces(len: usize) -> usize {
    (TASK_ELEMS / len.max(1)).max(1)
}

/// A vector of `n` zeros filled piece by piece: each `chunk`-long piece (the last may be
/// shorter) is handed to `f(scratch, index, piece)`, in parallel when asked (in tasks of a few
/// pieces, each with its own `init()` scratch).
pub(super) fn build_zeroed<T: ConvElem, S>(
    n: usize,
    chunk: usize,
    parallel: bool,
    init: impl Fn() -> S + Send + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) -> KResult + Send + Sync,
) -> KResult<Vec<T>> {
    // `vec!` of zeros is `calloc` for f32 and f64: fresh pages from the OS come zeroed, with
    // no pass over them here (a page is touched first by the task that writes it).
    let mut v = vec![T::zero(); n];
    let chunk = chunk.max(1);
    if parallel {
        // Small tasks (`task_pieces`): a thread that the OS preempts holds up one task, not
        // half of the output.
        v.par_chunks_mut(chunk)
            .enumerate()
            .with_max_len(task_pieces(chunk))
            .try_for_each_init(&init, |s, (i, piece)| f(s, i, piece))?;
    } else {
        let mut s = init();
        v.chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(i, piece)| f(&mut s, i, piece))?;
    }
    Ok(v)
}

/// The product of `dims`, or an error when it overflows.
pub(super) fn checked_len(dims: &[usize]) -> KResult<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::invalid(format!("shape {dims:?} is too large")))
}

/// The dims of a 4-D tensor, or an error naming it.
pub(super) fn dims4(t: &Tensor, what: &str, expect: &str) -> KResult<[usize; 4]> {
    match *t.shape() {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref s => Err(KernelError::invalid(format!(
            "{what} must be 4-D {expect}, got shape {s:?}"
        ))),
    }
}

/// A 4-entry sizes input (`input_sizes`, `filter_sizes`, `orig_input_shape`).
pub(super) fn sizes4(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<[usize; 4]> {
    let v = ctx.input_ints(i)?;
    match *v.as_slice() {
        [a, b, c, d] if v.iter().all(|&x| x >= 0) => {
            Ok([a as usize, b as usize, c as usize, d as usize])
        }
        _ => Err(KernelError::invalid(format!(
            "{what} must be 4 non-negative sizes, got {v:?}"
        ))),
    }
}

/// Transposes NCHW data to NHWC; `dims` are (n, c, h, w).
pub(super) fn nchw_to_nhwc<T: Copy + Send + Sync>(x: &[T], [n, c, h, w]: [usize; 4]) -> Vec<T> {
    let hw = h * w;
    let mut out = Vec::with_capacity(x.len());
    for img in 0..n {
        let src = &x[img * c * hw..(img + 1) * c * hw];
        for p in 0..hw {
            out.extend((0..c).map(|ch| src[ch * hw + p]));
        }
    }
    out
}

/// Transposes NHWC data to NCHW; `dims` are (n, h, w, c).
pub(super) fn nhwc_to_nchw<T: Copy + Send + Sync>(x: &[T], [n, h, w, c]: [usize; 4]) -> Vec<T> {
    let hw = h * w;
    let mut out = Vec::with_capacity(x.len());
    for img in 0..n {
        let src = &x[img * c * hw..(img + 1) * c * hw];
        for ch in 0..c {
            out.extend((0..hw).map(|p| src[p * c + ch]));
        }
    }
    out
}

/// An input image tensor as NHWC data and its (n, h, w, c) dims.
pub(super) fn image_in<'a, T: ConvElem>(
    t: &'a Tensor,
    what: &str,
    format: DataFormat,
) -> KResult<(std::borrow::Cow<'a, [T]>, [usize; 4])> {
    let expect = match format {
        DataFormat::Nhwc => "[batch, height, width, channels] (NHWC)",
        DataFormat::Nchw => "[batch, channels, height, width] (NCHW)",
    };
    let d = dims4(t, what, expect)?;
    let data = t.as_slice::<T>()?;
    Ok(match format {
        DataFormat::Nhwc => (data.into(), d),
        DataFormat::Nchw => (nchw_to_nhwc(data, d).into(), format.nhwc(&d)),
    })
}

/// An NHWC result as a tensor in `format`.
pub(super) fn image_out<T: ConvElem>(data: Vec<T>, nhwc: [usize; 4], format: DataFormat) -> Tensor {
    let (data, dims) = match format {
        DataFormat::Nhwc => (data, nhwc),
        DataFormat::Nchw => (nhwc_to_nchw(&data, nhwc), format.from_nhwc(nhwc)),
    };
    Tensor::from_parts(Dims::from_slice(&dims), T::into_buffer(data))
}

/// Converts a sizes vector given in `format` order to (n, h, w, c).
pub(super) fn sizes_nhwc(sizes: [usize; 4], format: DataFormat) -> [usize; 4] {
    format.nhwc(&sizes)
}

/// The clipped range `[start, start + window)` of input indices, `start` possibly negative.
#[inline]
pub(super) fn clip(start: isize, window: usize, limit: usize) -> Range<usize> {
    let lo = start.max(0) as usize;
    let hi = (start + window as isize).clamp(0, limit as isize) as usize;
    lo..hi.max(lo)
}

/// The float dtype of input `i` (for ops whose input 0 is a sizes vector).
pub(super) fn float_input(init: &KernelInit<'_>, i: usize) -> DType {
    init.inputs.get(i).map_or(DType::F32, |t| t.dtype)
}

/// Products with fewer multiply-adds than this run on the calling thread.
pub(super) const PAR_WORK: usize = 1 << 18;

/// Runs `f(row, out_row)` over `rows`-many `len`-long rows of `out`, in parallel when asked.
pub(super) fn for_rows<T: Send>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    if len == 0 {
        return;
    }
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .with_max_len(task_pieces(len))
            .for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(len).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// Checks that `t` has the input's shape.
pub(super) fn check_same(t: &Tensor, like: &Tensor, what: &str, like_what: &str) -> KResult {
    if t.shape() != like.shape() {
        return Err(KernelError::invalid(format!(
            "{what} has shape {:?}, but {like_what} has shape {:?}",
            t.shape(),
            like.shape()
        )));
    }
    Ok(())
}

pub(super) fn cast<T: ConvElem>(v: f64) -> T {
    <T as Numeric>::from_f64(v)
}

pub(super) fn vector<T: ConvElem>(v: Vec<T>) -> Tensor {
    Tensor::from_parts(Dims::from_slice(&[v.len()]), T::into_buffer(v))
}
