//! Ops over [`CudaTensor`]s: each checks dtypes and shapes on the host, allocates its output
//! from the caching allocator and queues one kernel (or one cuBLAS call) on the device's
//! stream. Nothing waits for the GPU until a result is copied back.

use crate::device::CudaDevice;
use crate::kernels::{Bcast, BINARY_F32, MAX_RANK, REDUCTIONS_F32, ROW_THREADS, UNARY_F32};
use crate::tensor::CudaTensor;
use crate::{CudaError, Result};
use cudarc::cublas::sys as blas;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use std::ffi::c_void;
use tfr_graph::DType;

const ELEMENTWISE_THREADS: u32 = 256;
const MAX_BLOCKS: u64 = 1 << 20;
const MAX_ROW_BLOCKS: u64 = 1 << 16;

pub(crate) fn check_f32(op: &str, t: &CudaTensor) -> Result<()> {
    if t.dtype() == DType::F32 {
        Ok(())
    } else {
        Err(CudaError(format!(
            "{op}: no CUDA kernel for dtype {} (only float32 so far)",
            t.dtype()
        )))
    }
}

/// A grid-stride launch over `n` elements.
pub(crate) fn elementwise_config(n: u64) -> LaunchConfig {
    let blocks = n.div_ceil(ELEMENTWISE_THREADS as u64).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (ELEMENTWISE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (block-stride over rows beyond the grid).
pub(crate) fn row_config(rows: u64) -> LaunchConfig {
    let blocks = rows.clamp(1, MAX_ROW_BLOCKS) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The unary ops with a CUDA kernel.
pub fn unary_ops() -> impl Iterator<Item = &'static str> {
    UNARY_F32.iter().map(|(op, _)| *op)
}

/// The binary ops with a CUDA kernel.
pub fn binary_ops() -> impl Iterator<Item = &'static str> {
    BINARY_F32.iter().map(|(op, _)| *op)
}

/// The reductions with a CUDA kernel.
pub fn reduction_ops() -> impl Iterator<Item = &'static str> {
    REDUCTIONS_F32.iter().map(|(op, ..)| *op)
}

/// `op(x)` elementwise, for an op of [`UNARY_F32`] (e.g. `"Tanh"`).
pub fn unary(dev: &CudaDevice, op: &str, x: &CudaTensor) -> Result<CudaTensor> {
    if !unary_ops().any(|o| o == op) {
        return Err(CudaError(format!("no CUDA kernel for unary op `{op}`")));
    }
    check_f32(op, x)?;
    let y = CudaTensor::uninit(dev, DType::F32, x.shape())?;
    let n = x.num_elements() as u64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get(&format!("unary_{op}_f32"))?;
    let (xp, yp) = (x.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&n);
    // SAFETY: `unary_*_f32(const float* x, float* y, u64 n)` reads x[0..n) and writes y[0..n);
    // both blocks hold n f32s (shape checked above, y allocated for it); the arguments match
    // the signature in count and size (two device pointers as u64, one u64).
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(y)
}

/// numpy broadcasting of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() < r {
            1
        } else {
            s[i + s.len() - r]
        }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(CudaError(format!(
                "shapes {a:?} and {b:?} do not broadcast (dim {i}: {x} vs {y})"
            ))),
        })
        .collect()
}

/// The output shape and the strided-index argument of a `bcast_*` kernel for operands of
/// shapes `a` and `b`: each operand's row-major strides, aligned to the output's dims from the
/// right, with stride 0 along dims it broadcasts (size 1 or missing).
pub fn broadcast_args(a: &[usize], b: &[usize]) -> Result<(Vec<usize>, Bcast)> {
    let out = broadcast_shape(a, b)?;
    let r = out.len();
    if r > MAX_RANK {
        return Err(CudaError(format!(
            "broadcasting supports at most {MAX_RANK} dims, got {r}"
        )));
    }
    let strides = |s: &[usize]| -> [i64; MAX_RANK] {
        let mut st = [0i64; MAX_RANK];
        let mut acc = 1i64;
        for (j, &d) in s.iter().enumerate().rev() {
            let i = j + r - s.len();
            st[i] = if d == 1 { 0 } else { acc };
            acc = acc.saturating_mul(d as i64);
        }
        st
    };
    let mut dims = [1i64; MAX_RANK];
    for (i, &d) in out.iter().enumerate() {
        dims[i] = d as i64;
    }
    Ok((
        out,
        Bcast {
            rank: r as i32,
            pad: 0,
            dims,
            sa: strides(a),
            sb: strides(b),
        },
    ))
}

/// `op(x, y)` elementwise with numpy broadcasting, for an op of [`BINARY_F32`] (e.g. `"Add"`).
pub fn binary(dev: &CudaDevice, op: &str, x: &CudaTensor, y: &CudaTensor) -> Result<CudaTensor> {
    if !binary_ops().any(|o| o == op) {
        return Err(CudaError(format!("no CUDA kernel for binary op `{op}`")));
    }
    let kernels = (format!("binary_{op}_f32"), format!("bcast_{op}_f32"));
    pairwise_f32(dev, op, x, y, DType::F32, &kernels)
}

/// Launches a pair of f32 kernels with one output of `out` dtype: `kernels.0(x, y, z, u64 n)`
/// when the shapes are equal, else `kernels.1(x, y, z, u64 n, TfrBcast s)` over the broadcast
/// shape (the `binary_*`/`bcast_*` and `cmp_*`/`bcast_cmp_*` kernels).
pub(crate) fn pairwise_f32(
    dev: &CudaDevice,
    op: &str,
    x: &CudaTensor,
    y: &CudaTensor,
    out: DType,
    kernels: &(String, String),
) -> Result<CudaTensor> {
    check_f32(op, x)?;
    check_f32(op, y)?;
    let (xp, yp) = (x.ptr(), y.ptr());
    if x.shape() == y.shape() {
        let z = CudaTensor::uninit(dev, out, x.shape())?;
        let n = z.num_elements() as u64;
        if n == 0 {
            return Ok(z);
        }
        let f = dev.kernels()?.get(&kernels.0)?;
        let zp = z.ptr();
        let mut launch = dev.stream().launch_builder(f);
        launch.arg(&xp).arg(&yp).arg(&zp).arg(&n);
        // SAFETY: the same-shape kernels `(const float* x, const float* y, T* z, u64 n)` read
        // x and y at [0, n) and write z at [0, n); x and y hold n f32s (same shapes) and z n
        // elements of `out`, the kernel's output type; the arguments match the signature.
        unsafe { launch.launch(elementwise_config(n)) }?;
        return Ok(z);
    }
    let (shape, args) = broadcast_args(x.shape(), y.shape())?;
    let z = CudaTensor::uninit(dev, out, &shape)?;
    let n = z.num_elements() as u64;
    if n == 0 {
        return Ok(z);
    }
    let f = dev.kernels()?.get(&kernels.1)?;
    let zp = z.ptr();
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&zp).arg(&n).arg(&args);
    // SAFETY: the broadcasting kernels `(x, y, z, u64 n, TfrBcast s)` write z at [0, n) (z has
    // the broadcast shape, n elements) and read x and y at offsets sum(coord[d] * stride[d])
    // where coord < dims: `broadcast_args` gives each operand its own row-major strides over
    // its own dims (0 where it broadcasts), so every offset is inside that operand. `Bcast`
    // has the layout of `TfrBcast` and is passed by value.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(z)
}

/// Splits a shape into (rows, cols) around its last axis.
fn rows_cols(op: &str, x: &CudaTensor) -> Result<(u64, u64)> {
    let Some((&cols, outer)) = x.shape().split_last() else {
        return Err(CudaError(format!(
            "{op}: needs at least one dim, got a scalar"
        )));
    };
    Ok((outer.iter().product::<usize>() as u64, cols as u64))
}

/// `op` over the last axis for an op of [`REDUCTIONS_F32`] (`"Sum"`, `"Mean"`, `"Max"`, ...).
/// With `keep_dims` the last axis stays with size 1. Reduce a whole tensor by reshaping it to
/// `[1, n]` first.
pub fn reduce(dev: &CudaDevice, op: &str, x: &CudaTensor, keep_dims: bool) -> Result<CudaTensor> {
    if !reduction_ops().any(|o| o == op) {
        return Err(CudaError(format!("no CUDA kernel for reduction `{op}`")));
    }
    check_f32(op, x)?;
    let (rows, cols) = rows_cols(op, x)?;
    let mut shape = x.shape()[..x.rank() - 1].to_vec();
    if keep_dims {
        shape.push(1);
    }
    let y = CudaTensor::uninit(dev, DType::F32, &shape)?;
    if rows == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get(&format!("reduce_{op}_f32"))?;
    let (xp, yp) = (x.ptr(), y.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&rows).arg(&cols);
    // SAFETY: `reduce_*_f32(const float* x, float* y, u64 rows, u64 cols)` reads x at
    // [0, rows * cols) (x's element count) and writes y at [0, rows) (y's element count); the
    // block size is a multiple of 32 as its warp reduction requires.
    unsafe { launch.launch(row_config(rows)) }?;
    Ok(y)
}

fn softmax_impl(dev: &CudaDevice, x: &CudaTensor, take_log: bool) -> Result<CudaTensor> {
    let op = if take_log { "LogSoftmax" } else { "Softmax" };
    check_f32(op, x)?;
    let (rows, cols) = rows_cols(op, x)?;
    let y = CudaTensor::uninit(dev, DType::F32, x.shape())?;
    if rows == 0 || cols == 0 {
        return Ok(y);
    }
    let f = dev.kernels()?.get("softmax_f32")?;
    let (xp, yp, flag) = (x.ptr(), y.ptr(), take_log as i32);
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&xp).arg(&yp).arg(&rows).arg(&cols).arg(&flag);
    // SAFETY: `softmax_f32(const float* x, float* y, u64 rows, u64 cols, int take_log)` reads
    // x and writes y at [0, rows * cols), both of which hold that many f32s; block size is a
    // multiple of 32.
    unsafe { launch.launch(row_config(rows)) }?;
    Ok(y)
}

/// Softmax over the last axis.
pub fn softmax(dev: &CudaDevice, x: &CudaTensor) -> Result<CudaTensor> {
    softmax_impl(dev, x, false)
}

/// Log-softmax over the last axis.
pub fn log_softmax(dev: &CudaDevice, x: &CudaTensor) -> Result<CudaTensor> {
    softmax_impl(dev, x, true)
}

/// How cuBLAS may compute an f32 product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// IEEE f32 multiply-adds (TensorFlow's default).
    #[default]
    Exact,
    /// Tensor cores with TF32 inputs (10-bit mantissa), f32 accumulation.
    Tf32,
}

/// The column-major cuBLAS call computing a row-major `C[m, n] = op(A) op(B)`: cuBLAS sees each
/// row-major matrix as its transpose, so it computes `C^T = op(B)^T op(A)^T` with B as its
/// first operand. `ta`/`tb` say A is stored `[k, m]` / B is stored `[n, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmArgs {
    /// Whether cuBLAS transposes its first operand (B) and its second (A).
    pub trans_first: bool,
    pub trans_second: bool,
    /// cuBLAS's m, n, k: the column-major product is `[m x k] [k x n]`.
    pub m: i32,
    pub n: i32,
    pub k: i32,
    /// Leading dimensions of the first operand (B), the second (A) and the output.
    pub ld_first: i32,
    pub ld_second: i32,
    pub ldc: i32,
}

fn as_int(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        CudaError(format!(
            "matmul dimension {v} exceeds cuBLAS's 32-bit range"
        ))
    })
}

impl GemmArgs {
    pub fn new(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Result<GemmArgs> {
        Ok(GemmArgs {
            trans_first: tb,
            trans_second: ta,
            m: as_int(n)?,
            n: as_int(m)?,
            k: as_int(k)?,
            ld_first: as_int(if tb { k } else { n }.max(1))?,
            ld_second: as_int(if ta { m } else { k }.max(1))?,
            ldc: as_int(n.max(1))?,
        })
    }
}

/// `op(a) @ op(b)` for f32 matrices, through cuBLAS, computed exactly in f32.
pub fn matmul(
    dev: &CudaDevice,
    a: &CudaTensor,
    b: &CudaTensor,
    ta: bool,
    tb: bool,
) -> Result<CudaTensor> {
    matmul_with(dev, a, b, ta, tb, Precision::Exact)
}

/// [`matmul`] with a choice of [`Precision`].
pub fn matmul_with(
    dev: &CudaDevice,
    a: &CudaTensor,
    b: &CudaTensor,
    ta: bool,
    tb: bool,
    precision: Precision,
) -> Result<CudaTensor> {
    if a.rank() != 2 || b.rank() != 2 {
        return Err(CudaError(format!(
            "MatMul: operands must be matrices, got {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    gemm(dev, "MatMul", a, b, ta, tb, precision)
}

/// Batched `op(a) @ op(b)` over leading batch dims, which must be equal (no broadcasting).
pub fn batch_matmul(
    dev: &CudaDevice,
    a: &CudaTensor,
    b: &CudaTensor,
    adj_a: bool,
    adj_b: bool,
    precision: Precision,
) -> Result<CudaTensor> {
    if a.rank() < 2
        || a.rank() != b.rank()
        || a.shape()[..a.rank() - 2] != b.shape()[..b.rank() - 2]
    {
        return Err(CudaError(format!(
            "BatchMatMul: needs equal batch dims (no broadcasting yet), got {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    gemm(dev, "BatchMatMul", a, b, adj_a, adj_b, precision)
}

fn gemm(
    dev: &CudaDevice,
    op: &str,
    a: &CudaTensor,
    b: &CudaTensor,
    ta: bool,
    tb: bool,
    precision: Precision,
) -> Result<CudaTensor> {
    check_f32(op, a)?;
    check_f32(op, b)?;
    let r = a.rank();
    let (a0, a1) = (a.shape()[r - 2], a.shape()[r - 1]);
    let (b0, b1) = (b.shape()[r - 2], b.shape()[r - 1]);
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k != kb {
        return Err(CudaError(format!(
            "{op}: inner dims differ: {:?}{} x {:?}{}",
            a.shape(),
            if ta { "^T" } else { "" },
            b.shape(),
            if tb { "^T" } else { "" }
        )));
    }
    let batch: usize = a.shape()[..r - 2].iter().product();
    let mut shape = a.shape()[..r - 2].to_vec();
    shape.extend([m, n]);
    if batch == 0 || m == 0 || n == 0 {
        return CudaTensor::uninit(dev, DType::F32, &shape);
    }
    if k == 0 {
        return CudaTensor::zeros(dev, DType::F32, &shape);
    }
    let c = CudaTensor::uninit(dev, DType::F32, &shape)?;
    let g = GemmArgs::new(m, n, k, ta, tb)?;
    let op_of = |t: bool| {
        if t {
            blas::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let compute = match precision {
        Precision::Exact => blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        Precision::Tf32 => blas::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
    };
    let f32_type = blas::cudaDataType::CUDA_R_32F;
    let (alpha, beta) = (1.0f32, 0.0f32);
    let handle = dev.blas()?;
    dev.bind()?;
    // SAFETY: the handle's stream is the device stream, which holds every use of a, b and c.
    // cuBLAS reads its first operand (B: k*n f32s per batch, stride k*n), its second (A: m*k
    // per batch, stride m*k) and writes C (m*n per batch, stride m*n); each tensor holds
    // `batch` such matrices (shapes checked above). Leading dims follow `GemmArgs` (the
    // row-major transpose identity), alpha/beta are host f32s alive for the call, and all
    // sizes fit in 32 bits (checked by `GemmArgs::new`; batch and strides below likewise).
    unsafe {
        cudarc::cublas::result::gemm_strided_batched_ex(
            *handle.handle(),
            op_of(g.trans_first),
            op_of(g.trans_second),
            g.m,
            g.n,
            g.k,
            &alpha as *const f32 as *const c_void,
            b.ptr() as *const c_void,
            f32_type,
            g.ld_first,
            (k * n) as i64,
            a.ptr() as *const c_void,
            f32_type,
            g.ld_second,
            (m * k) as i64,
            &beta as *const f32 as *const c_void,
            c.ptr() as *mut c_void,
            f32_type,
            g.ldc,
            (m * n) as i64,
            as_int(batch)?,
            compute,
            blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `bcast_*` kernels' index arithmetic, in Rust.
    fn offsets(s: &Bcast, i: u64) -> (i64, i64) {
        let (mut rem, mut ia, mut ib) = (i, 0i64, 0i64);
        for d in (0..s.rank as usize).rev() {
            let c = (rem % s.dims[d] as u64) as i64;
            rem /= s.dims[d] as u64;
            ia += c * s.sa[d];
            ib += c * s.sb[d];
        }
        (ia, ib)
    }

    /// Reference broadcasting: the operand element at output coordinate `coord`.
    fn reference(shape: &[usize], out: &[usize], coord: &[usize]) -> usize {
        let off = out.len() - shape.len();
        shape.iter().enumerate().fold(0, |acc, (j, &d)| {
            acc * d + if d == 1 { 0 } else { coord[j + off] }
        })
    }

    #[test]
    fn broadcast_strides_address_the_right_elements() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 3], &[3]),
            (&[4, 1, 3], &[2, 1]),
            (&[1], &[5, 2]),
            (&[], &[3, 2]),
            (&[2, 1, 4, 1], &[3, 1, 5]),
            (&[3, 4], &[3, 4]),
        ];
        for &(a, b) in cases {
            let (out, s) = broadcast_args(a, b).unwrap();
            let n: usize = out.iter().product();
            for i in 0..n {
                let mut coord = vec![0; out.len()];
                let mut rem = i;
                for d in (0..out.len()).rev() {
                    coord[d] = rem % out[d];
                    rem /= out[d];
                }
                let (ia, ib) = offsets(&s, i as u64);
                assert_eq!(
                    ia as usize,
                    reference(a, &out, &coord),
                    "{a:?} x {b:?} at {i}"
                );
                assert_eq!(
                    ib as usize,
                    reference(b, &out, &coord),
                    "{a:?} x {b:?} at {i}"
                );
            }
        }
        assert!(broadcast_args(&[2, 3], &[4]).is_err());
        assert!(broadcast_args(&[1; 9], &[1]).is_err());
    }

    /// Column-major gemm exactly as BLAS defines it: C = op(A) op(B), A is m x k after op.
    #[allow(clippy::too_many_arguments)]
    fn blas_gemm(
        ta: bool,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[f64],
        lda: usize,
        b: &[f64],
        ldb: usize,
        c: &mut [f64],
        ldc: usize,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    let av = if ta { a[p + i * lda] } else { a[i + p * lda] };
                    let bv = if tb { b[j + p * ldb] } else { b[p + j * ldb] };
                    acc += av * bv;
                }
                c[i + j * ldc] = acc;
            }
        }
    }

    #[test]
    fn the_row_major_transpose_trick_gives_the_row_major_product() {
        let (m, n, k) = (3usize, 4usize, 5usize);
        for ta in [false, true] {
            for tb in [false, true] {
                // Row-major storage of A ([m,k] or [k,m]) and B ([k,n] or [n,k]).
                let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.7).sin()).collect();
                let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.3).cos()).collect();
                let av = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
                let g = GemmArgs::new(m, n, k, ta, tb).unwrap();
                let mut c = vec![0.0; m * n];
                blas_gemm(
                    g.trans_first,
                    g.trans_second,
                    g.m as usize,
                    g.n as usize,
                    g.k as usize,
                    &b,
                    g.ld_first as usize,
                    &a,
                    g.ld_second as usize,
                    &mut c,
                    g.ldc as usize,
                );
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|p| av(i, p) * bv(p, j)).sum();
                        assert!(
                            (c[i * n + j] - want).abs() < 1e-12,
                            "ta={ta} tb={tb} ({i},{j})"
                        );
                    }
                }
            }
        }
    }
}
