//! Matrix products: MatMul and BatchMatMul (batch dims broadcast). f32 and f64 go through the
//! `gemm` crate, with transposes expressed as strides (no copies); integer types use a plain
//! loop with wrapping arithmetic.

use super::broadcast::{broadcast_shape, for_each_broadcast};
use super::cwise_ops::unsupported;
use super::owned_parts::{input_grad_by_owned_rows, product_by_owned_rows};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_float, dispatch_numeric};
use rayon::prelude::*;
use tfr_graph::DTypeSet;

/// Products with at least this many multiply-adds (m * n * k) run on several threads.
const PAR_WORK: usize = 64 * 64 * 64;

/// A strided matrix operand: element (i, j) is at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// The same elements read transposed: element (i, j) is this matrix's (j, i).
    pub fn t(self) -> MatRef<'a, T> {
        MatRef {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The matrix from row `i` on (empty past the end; products check their operands'
    /// extent).
    pub fn from_row(self, i: usize) -> MatRef<'a, T> {
        MatRef {
            data: self.data.get(i * self.rs..).unwrap_or(&[]),
            ..self
        }
    }

    /// The matrix from column `j` on.
    pub fn from_col(self, j: usize) -> MatRef<'a, T> {
        self.t().from_row(j).t()
    }
}

/// Element types with a matrix product kernel.
pub trait MatMulElem: Numeric {
    /// `dst = a @ b` for an `m x k` matrix `a` and a `k x n` matrix `b`; `dst` is a row-major
    /// `m x n` block. `parallel` allows several threads. An internal error when the operands
    /// do not cover those shapes.
    fn matmul(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        dst: &mut [Self],
        parallel: bool,
    ) -> KResult;

    /// `dst += scale * (a @ b)` for the same operands, `dst` holding the row-major `m x n`
    /// matrix to update.
    #[allow(clippy::too_many_arguments)]
    fn matmul_update(
        m: usize,
        n: usize,
        k: usize,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        dst: &mut [Self],
        scale: Self,
        parallel: bool,
    ) -> KResult;
}

/// Whether every element (i, j), i < rows, j < cols, of a strided operand lies in its slice.
fn in_bounds<T>(x: &MatRef<'_, T>, rows: usize, cols: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * x.rs + (cols - 1) * x.cs < x.data.len()
}

/// Checks that `a` (m x k), `b` (k x n) and `dst` (m x n) cover their shapes.
fn check_operands<T>(
    m: usize,
    n: usize,
    k: usize,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    dst: &[T],
) -> KResult {
    check_inputs(m, n, k, a, b)?;
    if dst.len() >= m * n {
        Ok(())
    } else {
        Err(KernelError::internal(format!(
            "the matmul output has {} elements, not [{m}, {n}]",
            dst.len()
        )))
    }
}

/// Checks that `a` (m x k) and `b` (k x n) cover their shapes.
fn check_inputs<T>(m: usize, n: usize, k: usize, a: &MatRef<'_, T>, b: &MatRef<'_, T>) -> KResult {
    if in_bounds(a, m, k) && in_bounds(b, k, n) {
        Ok(())
    } else {
        Err(KernelError::internal(format!(
            "matmul operands do not cover [{m}, {k}] x [{k}, {n}]"
        )))
    }
}

fn gemm_parallelism(parallel: bool) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst = alpha * dst + beta * (a @ b)` through gemm (with `read_dst == false`, `dst` is only
/// written and alpha is ignored), after checking that the operands cover their shapes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_product<T: MatMulElem + 'static>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: &mut [T],
    read_dst: bool,
    alpha: T,
    beta: T,
    parallel: bool,
) -> KResult {
    if dst.len() < m * n {
        return check_operands(m, n, k, &a, &b, dst);
    }
    // SAFETY: `dst` holds at least m * n elements (checked), addressed with row stride n, and
    // is borrowed mutably here, so no one else touches it. `gemm_into_rows` checks `a` and `b`.
    unsafe {
        gemm_into_rows(
            m,
            n,
            k,
            a,
            b,
            dst.as_mut_ptr(),
            n,
            read_dst,
            alpha,
            beta,
            parallel,
        )
    }
}

/// [`gemm_product`] into an `m x n` block at `dst` with row stride `ldd` (a block of columns
/// of a wider matrix, which other threads may be writing other columns of).
///
/// # Safety
/// For i < m and j < n, `dst + i * ldd + j` is valid for reads and writes and no other
/// thread accesses it during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into_rows<T: MatMulElem + 'static>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: *mut T,
    ldd: usize,
    read_dst: bool,
    alpha: T,
    beta: T,
    parallel: bool,
) -> KResult {
    check_inputs(m, n, k, &a, &b)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty product is zero; callers only accumulate with alpha == 1.
        if !read_dst {
            for i in 0..m {
                // SAFETY: row i's n elements are the caller's (the function's contract).
                unsafe { std::slice::from_raw_parts_mut(dst.add(i * ldd), n) }.fill(T::ZERO);
            }
        }
        return Ok(());
    }
    // SAFETY: `dst` is addressed row-major (row stride ldd, column stride 1) within the block
    // the caller owns; `a` and `b` cover every element their strides address for (i < m,
    // p < k) and (p < k, j < n), checked above against the slice lengths. The output is
    // written through a pointer the caller owns exclusively, so it overlaps neither input
    // slice. gemm only reads `lhs`/`rhs` and reads `dst` only when `read_dst`. Callers use
    // f32 and f64, the types gemm implements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd as isize,
            read_dst,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            alpha,
            beta,
            false,
            false,
            false,
            gemm_parallelism(parallel),
        );
    }
    Ok(())
}

macro_rules! gemm_elem {
    ($($t:ty),*) => {$(
        impl MatMulElem for $t {
            fn matmul(
                m: usize,
                n: usize,
                k: usize,
                a: MatRef<'_, $t>,
                b: MatRef<'_, $t>,
                dst: &mut [$t],
                parallel: bool,
            ) -> KResult {
                if parallel && product_by_owned_rows(m, n, k, a, b, dst, false, 0.0, 1.0)? {
                    return Ok(());
                }
                gemm_product(m, n, k, a, b, dst, false, 0.0, 1.0, parallel)
            }

            fn matmul_update(
                m: usize,
                n: usize,
                k: usize,
                a: MatRef<'_, $t>,
                b: MatRef<'_, $t>,
                dst: &mut [$t],
                scale: $t,
                parallel: bool,
            ) -> KResult {
                if parallel && product_by_owned_rows(m, n, k, a, b, dst, true, 1.0, scale)? {
                    return Ok(());
                }
                gemm_product(m, n, k, a, b, dst, true, 1.0, scale, parallel)
            }
        }
    )*};
}
gemm_elem!(f32, f64);

macro_rules! loop_elem {
    ($($t:ty),*) => {$(
        impl MatMulElem for $t {
            fn matmul(
                m: usize,
                n: usize,
                k: usize,
                a: MatRef<'_, $t>,
                b: MatRef<'_, $t>,
                dst: &mut [$t],
                _parallel: bool,
            ) -> KResult {
                check_operands(m, n, k, &a, &b, dst)?;
                naive_matmul(m, n, k, a, b, dst);
                Ok(())
            }

            fn matmul_update(
                m: usize,
                n: usize,
                k: usize,
                a: MatRef<'_, $t>,
                b: MatRef<'_, $t>,
                dst: &mut [$t],
                scale: $t,
                _parallel: bool,
            ) -> KResult {
                check_operands(m, n, k, &a, &b, dst)?;
                let mut product = vec![<$t>::ZERO; m * n];
                naive_matmul(m, n, k, a, b, &mut product);
                for (d, p) in dst.iter_mut().zip(product) {
                    *d = d.add(scale.mul(p));
                }
                Ok(())
            }
        }
    )*};
}
loop_elem!(i32, i64, u8);

/// `dst = a @ b` by the i-p-j loop (rows of `b` stream through), wrapping on overflow.
pub fn naive_matmul<T: Numeric>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: &mut [T],
) {
    for (i, row) in dst.chunks_exact_mut(n.max(1)).take(m).enumerate() {
        row.fill(T::ZERO);
        for p in 0..k {
            let av = a.data[i * a.rs + p * a.cs];
            let brow = p * b.rs;
            for (j, d) in row.iter_mut().enumerate() {
                *d = d.add(av.mul(b.data[brow + j * b.cs]));
            }
        }
    }
}

/// The element count of an output shape, or an error when it does not fit in memory.
fn out_len(dims: &[usize]) -> KResult<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::invalid(format!("output shape {dims:?} is too large")))
}

/// Strides of a row-major `rows x cols` matrix, read transposed when `transpose`.
fn strides(cols: usize, transpose: bool) -> (usize, usize) {
    if transpose {
        (1, cols)
    } else {
        (cols, 1)
    }
}

fn describe(shape: &[usize], attr: &str, t: bool) -> String {
    format!("{shape:?} ({attr}={t})")
}

/// Writes the transpose of the row-major `rows x cols` matrix `x` into `dst` (`cols x rows`),
/// by 32 x 32 tiles.
pub(crate) fn transpose_into<T: Copy>(x: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = x[r * cols + c];
                }
            }
        }
    }
}

/// The sizes `(m, n, k)` and strided operands of an `m x k` by `k x n` product.
pub(crate) type MatMulOperands<'a, T> = (usize, usize, usize, MatRef<'a, T>, MatRef<'a, T>);

/// The operands of `MatMul(a, b)` with transpose flags, or an error naming both shapes.
pub(crate) fn matmul_operands<'a, T: MatMulElem>(
    a: &'a Tensor,
    b: &'a Tensor,
    ta: bool,
    tb: bool,
) -> KResult<MatMulOperands<'a, T>> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 2 || sb.len() != 2 {
        return Err(KernelError::invalid(format!(
            "MatMul expects two matrices, got shapes {sa:?} and {sb:?}"
        )));
    }
    let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
    let (k2, n) = if tb { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
    if k != k2 {
        return Err(KernelError::invalid(format!(
            "inner dimensions differ: a is {}, b is {}; {k} != {k2}",
            describe(sa, "transpose_a", ta),
            describe(sb, "transpose_b", tb)
        )));
    }
    let (ars, acs) = strides(sa[1], ta);
    let (brs, bcs) = strides(sb[1], tb);
    let a = MatRef {
        data: a.as_slice::<T>()?,
        rs: ars,
        cs: acs,
    };
    let b = MatRef {
        data: b.as_slice::<T>()?,
        rs: brs,
        cs: bcs,
    };
    Ok((m, n, k, a, b))
}

/// Whether a product of this many multiply-adds is worth several threads.
pub(crate) fn parallel_work(m: usize, n: usize, k: usize) -> bool {
    m.saturating_mul(n).saturating_mul(k) >= PAR_WORK
}

/// Inner dimensions up to this size never take the transposed path of [`matmul_into`]: the
/// product is cheaper than transposing its result (a gradient through a 10-class output
/// layer has k = 10; gemm does it directly 4-5x faster than a loop of row updates, session 18).
const SMALL_K: usize = 16;

/// `out = a @ b` for MatMul's operands, by the fastest path for their shapes and layout.
#[allow(clippy::too_many_arguments)]
fn matmul_into<T: MatMulElem>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    ta: bool,
    tb: bool,
    out: &mut [T],
) -> KResult {
    let parallel = parallel_work(m, n, k);
    if transposed_b_first(m, n, k, ta, tb) {
        if parallel && input_grad_by_owned_rows(m, n, k, a, b, out)? {
            return Ok(());
        }
        // gemm copies the operand that spans the output's columns into panels; from a
        // transposed `b` that copy gathers with a stride per element, and for a dense
        // layer's input gradient (dy @ w^T, w much larger than dy) it costs more than the
        // product. The transposed product b @ a^T packs `a` that way instead; its result
        // (as large as the output) is transposed back.
        let mut tmp = vec![T::ZERO; out.len()];
        T::matmul(n, m, k, b.t(), a.t(), &mut tmp, parallel)?;
        transpose_into(&tmp, n, m, out);
    } else {
        T::matmul(m, n, k, a, b, out, parallel)?;
    }
    Ok(())
}

/// Whether [`matmul_into`] computes `(b @ a^T)^T` rather than `a @ b`.
fn transposed_b_first(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> bool {
    tb && !ta && m < n && k > SMALL_K
}

fn matmul_kernel<T: MatMulElem>(ta: bool, tb: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (m, n, k, a, b) = matmul_operands::<T>(ctx.input(0), ctx.input(1), ta, tb)?;
        let mut out = vec![T::ZERO; out_len(&[m, n])?];
        matmul_into(m, n, k, a, b, ta, tb, &mut out)?;
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&[m, n]),
            T::into_buffer(out),
        ));
        Ok(())
    })
}

/// MatMulBiasAdd: the bias repeated over the output's rows, then the product accumulated onto
/// them (one pass over the output instead of MatMul's and the add's).
fn matmul_bias_add_kernel<T: MatMulElem>(ta: bool, tb: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (m, n, k, a, b) = matmul_operands::<T>(ctx.input(0), ctx.input(1), ta, tb)?;
        let bias = ctx.input(2).as_slice::<T>()?;
        if bias.len() != n {
            return Err(KernelError::invalid(format!(
                "bias has {} entries but the product is [{m}, {n}]",
                bias.len()
            )));
        }
        let len = out_len(&[m, n])?;
        let mut out = Vec::with_capacity(len);
        if !transposed_b_first(m, n, k, ta, tb) {
            for _ in 0..m {
                out.extend_from_slice(bias);
            }
            T::matmul_update(m, n, k, a, b, &mut out, T::ONE, parallel_work(m, n, k))?;
        } else {
            out.resize(len, T::ZERO);
            matmul_into(m, n, k, a, b, ta, tb, &mut out)?;
            for row in out.chunks_exact_mut(n.max(1)) {
                row.iter_mut().zip(bias).for_each(|(v, &c)| *v = v.add(c));
            }
        }
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&[m, n]),
            T::into_buffer(out),
        ));
        Ok(())
    })
}

fn batch_matmul_kernel<T: MatMulElem>(adj_x: bool, adj_y: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, y) = (ctx.input(0), ctx.input(1));
        let (sx, sy) = (x.shape(), y.shape());
        if sx.len() < 2 || sy.len() < 2 {
            return Err(KernelError::invalid(format!(
                "BatchMatMul expects inputs of rank >= 2, got shapes {sx:?} and {sy:?}"
            )));
        }
        let (rx, ry) = (sx.len() - 2, sy.len() - 2);
        let (m, k) = if adj_x {
            (sx[rx + 1], sx[rx])
        } else {
            (sx[rx], sx[rx + 1])
        };
        let (k2, n) = if adj_y {
            (sy[ry + 1], sy[ry])
        } else {
            (sy[ry], sy[ry + 1])
        };
        if k != k2 {
            return Err(KernelError::invalid(format!(
                "inner dimensions differ: x is {}, y is {}; {k} != {k2}",
                describe(sx, "adj_x", adj_x),
                describe(sy, "adj_y", adj_y)
            )));
        }
        let (bx, by) = (&sx[..rx], &sy[..ry]);
        let batch = broadcast_shape(&[bx, by]).map_err(|_| {
            KernelError::invalid(format!(
                "batch dimensions {bx:?} and {by:?} do not broadcast (x is {sx:?}, y is {sy:?})"
            ))
        })?;
        let mut out_dims: Dims = batch.clone();
        out_dims.extend([m, n]);
        let mn = out_len(&[m, n])?;
        let mut out = vec![T::ZERO; out_len(&out_dims)?];
        if out.is_empty() {
            ctx.set_output(Tensor::from_parts(out_dims, T::into_buffer(out)));
            return Ok(());
        }
        // Per output batch: the batch index into x and into y.
        let mut offsets = Vec::with_capacity(out.len() / mn);
        for_each_broadcast(&batch, [bx, by], |_, [i, j]| offsets.push((i, j)));
        let (xs, ys) = (x.as_slice::<T>()?, y.as_slice::<T>()?);
        let (x_size, y_size) = (sx[rx] * sx[rx + 1], sy[ry] * sy[ry + 1]);
        let (xrs, xcs) = strides(sx[rx + 1], adj_x);
        let (yrs, ycs) = strides(sy[ry + 1], adj_y);
        let operands = |i: usize, j: usize| {
            (
                MatRef {
                    data: &xs[i * x_size..(i + 1) * x_size],
                    rs: xrs,
                    cs: xcs,
                },
                MatRef {
                    data: &ys[j * y_size..(j + 1) * y_size],
                    rs: yrs,
                    cs: ycs,
                },
            )
        };
        let work = mn.saturating_mul(k);
        let total = work.saturating_mul(offsets.len());
        if work >= PAR_WORK || total < PAR_WORK {
            // Large products (each on several threads) or little work in all.
            for (dst, &(i, j)) in out.chunks_exact_mut(mn).zip(&offsets) {
                let (a, b) = operands(i, j);
                T::matmul(m, n, k, a, b, dst, work >= PAR_WORK)?;
            }
        } else {
            // Many small products: groups of batches on different threads.
            let per = PAR_WORK.div_ceil(work.max(1));
            out.par_chunks_mut(mn)
                .zip(offsets.par_iter())
                .with_min_len(per)
                .try_for_each(|(dst, &(i, j))| {
                    let (a, b) = operands(i, j);
                    T::matmul(m, n, k, a, b, dst, false)
                })?;
        }
        ctx.set_output(Tensor::from_parts(out_dims, T::into_buffer(out)));
        Ok(())
    })
}

fn matmul_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ta = *init.attrs.boolean("transpose_a")?;
    let tb = *init.attrs.boolean("transpose_b")?;
    Ok(
        dispatch_numeric!(init.dtype(), T => matmul_kernel::<T>(ta, tb), _ => return Err(unsupported(init))),
    )
}

fn batch_matmul_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ax = *init.attrs.boolean("adj_x")?;
    let ay = *init.attrs.boolean("adj_y")?;
    Ok(
        dispatch_numeric!(init.dtype(), T => batch_matmul_kernel::<T>(ax, ay), _ => return Err(unsupported(init))),
    )
}

pub fn register(r: &mut KernelRegistry) {
    r.cpu("MatMul", DTypeSet::NUMERIC, matmul_factory);
    r.cpu("BatchMatMul", DTypeSet::NUMERIC, batch_matmul_factory);
    r.cpu("MatMulBiasAdd", DTypeSet::FLOAT, |init| {
        let ta = *init.attrs.boolean("transpose_a")?;
        let tb = *init.attrs.boolean("transpose_b")?;
        Ok(dispatch_float!(init.dtype(), T => matmul_bias_add_kernel::<T>(ta, tb), _ => return Err(unsupported(init))))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposed-product path (transpose_b, fewer rows than columns) against the loop.
    #[test]
    fn transposed_b_with_few_rows_matches_the_loop() {
        let (m, k, n) = (3usize, 70usize, 101usize);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 37) % 23) as f64 - 11.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| ((i * 53) % 19) as f64 - 9.0).collect();
        let kernel = matmul_kernel::<f64>(false, true);
        let rm = crate::resource::ResourceMgr::default();
        let inputs = [
            Tensor::new(&[m, k], a.clone()).unwrap(),
            Tensor::new(&[n, k], b.clone()).unwrap(),
        ];
        let mut ctx = KernelContext::new(inputs.into_iter().map(Some).collect(), &rm, &[]);
        kernel.compute(&mut ctx).unwrap();
        let out = ctx.into_outputs().remove(0);
        assert_eq!(out.shape(), &[m, n]);
        let got = out.as_slice::<f64>().unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert_eq!(got[i * n + j], want, "({i}, {j})");
            }
        }
    }
}
