//! Kernels of `tfr_graph::ops::linalg_ops` but Einsum (`einsum_op.rs`): MatrixBandPart, the
//! diagonal ops (V1 as V3 with k = 0), MatrixInverse, MatrixDeterminant, Cholesky and
//! MatrixTriangularSolve. The factorizations compute in f64 (partial-pivoting LU, Cholesky,
//! substitution) and round the result to the input's dtype.

use super::broadcast::{broadcast_shape, for_each_broadcast};
use super::output_alloc::{alloc, num_elements};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_any, dispatch_float};
use tfr_graph::ops::linalg_ops::{check_diag_range, diag_len, diag_range, diag_v3_size};
use tfr_graph::{DTypeSet, Element};

type Factory = Result<Box<dyn OpKernel>, String>;

pub fn register(r: &mut KernelRegistry) {
    let any = DTypeSet::NUMERIC_OR_BOOL;
    r.cpu("MatrixBandPart", any, |init| {
        Ok(dispatch_any!(init.dtype(), T => band_part::<T>(), _ => return Err(unsupported(init))))
    });
    for op in [
        "MatrixDiag",
        "MatrixDiagPart",
        "MatrixSetDiag",
        "MatrixDiagV3",
        "MatrixDiagPartV3",
        "MatrixSetDiagV3",
    ] {
        r.cpu(op, any, diag_factory);
    }
    r.cpu("MatrixInverse", DTypeSet::FLOAT, |init| {
        let adjoint = init.attrs.bool_opt("adjoint").copied().unwrap_or(false);
        float_kernel(init, move |ctx| inverse(ctx, adjoint))
    });
    r.cpu("MatrixDeterminant", DTypeSet::FLOAT, |init| {
        float_kernel(init, determinant)
    });
    r.cpu("Cholesky", DTypeSet::FLOAT, |init| {
        float_kernel(init, cholesky)
    });
    r.cpu("MatrixTriangularSolve", DTypeSet::FLOAT, |init| {
        let lower = init.attrs.bool_opt("lower").copied().unwrap_or(true);
        let adjoint = init.attrs.bool_opt("adjoint").copied().unwrap_or(false);
        float_kernel(init, move |ctx| triangular_solve(ctx, lower, adjoint))
    });
}

fn unsupported(init: &KernelInit<'_>) -> String {
    format!("no CPU kernel for {} with dtype {}", init.op, init.dtype())
}

/// `(batch, rows, cols)` of a tensor of rank >= 2 (`what` names it in the error).
fn matrices(shape: &[usize], what: &str) -> KResult<(usize, usize, usize)> {
    let r = shape.len();
    if r < 2 {
        return Err(KernelError::invalid(format!(
            "{what} must have rank >= 2, got shape {shape:?}"
        )));
    }
    let batch = num_elements(&shape[..r - 2])?;
    Ok((batch, shape[r - 2], shape[r - 1]))
}

/// An integer scalar input (`what` names it).
fn int_scalar(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<i64> {
    let t = ctx.input(i);
    if t.rank() != 0 {
        return Err(KernelError::invalid(format!(
            "{what} must be a scalar, got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.get_i64(0))
}

// ---- MatrixBandPart ---------------------------------------------------------------------------

fn band_part<T: Element + Clone + Default>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| -> KResult {
        let lo = int_scalar(ctx, 1, "num_lower")?;
        let hi = int_scalar(ctx, 2, "num_upper")?;
        let x = ctx.input(0);
        let (_, m, n) = matrices(x.shape(), "input")?;
        if lo > m as i64 {
            return Err(KernelError::invalid(format!(
                "num_lower must be negative or at most the number of rows ({m}), got {lo}"
            )));
        }
        if hi > n as i64 {
            return Err(KernelError::invalid(format!(
                "num_upper must be negative or at most the number of columns ({n}), got {hi}"
            )));
        }
        let mut out = x.as_slice::<T>()?.to_vec();
        if m > 0 && n > 0 {
            for mat in out.chunks_exact_mut(m * n) {
                for i in 0..m {
                    for j in 0..n {
                        let d = j as i64 - i as i64;
                        if (lo >= 0 && -d > lo) || (hi >= 0 && d > hi) {
                            mat[i * n + j] = T::default();
                        }
                    }
                }
            }
        }
        let dims = x.dims().clone();
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(out)));
        Ok(())
    })
}

// ---- diagonal ops -----------------------------------------------------------------------------

/// Which diagonal op a kernel runs.
#[derive(Clone, Copy, PartialEq)]
enum DiagOp {
    Diag,
    Part,
    Set,
}

/// One diagonal band of `m x n` matrices: diagonals k0..=k1, stored `max_len` long.
struct Band {
    m: usize,
    n: usize,
    k0: i64,
    k1: i64,
    max_len: usize,
    super_right: bool,
    sub_right: bool,
}

impl Band {
    fn num_diags(&self) -> usize {
        (self.k1 - self.k0 + 1) as usize
    }
    /// Where element p of diagonal d sits in its stored row (TensorFlow's alignment).
    fn offset(&self, d: i64) -> usize {
        let len = diag_len(self.m as i64, self.n as i64, d).max(0) as usize;
        if (d >= 0 && self.super_right) || (d <= 0 && self.sub_right) {
            self.max_len - len
        } else {
            0
        }
    }
    /// Calls `f(diag_index, stored position, row, col)` for every element of every diagonal.
    fn for_each(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        for l in 0..self.num_diags() {
            let d = self.k1 - l as i64;
            let len = diag_len(self.m as i64, self.n as i64, d).max(0) as usize;
            let off = self.offset(d);
            let (r0, c0) = ((-d).max(0) as usize, d.max(0) as usize);
            for p in 0..len {
                f(l, off + p, r0 + p, c0 + p);
            }
        }
    }
}

fn diag_factory(init: &KernelInit<'_>) -> Factory {
    let (op, v3) = match init.op {
        "MatrixDiag" => (DiagOp::Diag, false),
        "MatrixDiagPart" => (DiagOp::Part, false),
        "MatrixSetDiag" => (DiagOp::Set, false),
        "MatrixDiagV3" => (DiagOp::Diag, true),
        "MatrixDiagPartV3" => (DiagOp::Part, true),
        _ => (DiagOp::Set, true),
    };
    let align = init
        .attrs
        .string_opt("align")
        .cloned()
        .unwrap_or_else(|| "RIGHT_LEFT".into());
    let (super_right, sub_right) = match align.as_str() {
        "RIGHT_LEFT" => (true, false),
        "LEFT_RIGHT" => (false, true),
        "LEFT_LEFT" => (false, false),
        "RIGHT_RIGHT" => (true, true),
        a => return Err(format!("unknown align `{a}`")),
    };
    Ok(
        dispatch_any!(init.dtype(), T => Box::new(move |ctx: &mut KernelContext<'_>| {
        diag_compute::<T>(ctx, op, v3, super_right, sub_right)
    }), _ => return Err(unsupported(init))),
    )
}

/// The diagonal range of a V3 op's `k` input (`(0, 0)` for V1 ops).
fn k_input(ctx: &KernelContext<'_>, v3: bool, i: usize) -> KResult<(i64, i64)> {
    if !v3 {
        return Ok((0, 0));
    }
    let k = ctx.input(i);
    if k.rank() > 1 {
        return Err(KernelError::invalid(format!(
            "k must be a scalar or a vector, got shape {:?}",
            k.shape()
        )));
    }
    diag_range(&ctx.input_ints(i)?).map_err(KernelError::invalid)
}

fn diag_compute<T: Element + Clone + Default>(
    ctx: &mut KernelContext<'_>,
    op: DiagOp,
    v3: bool,
    super_right: bool,
    sub_right: bool,
) -> KResult {
    let k_at = match op {
        DiagOp::Set => 2,
        _ => 1,
    };
    let (k0, k1) = k_input(ctx, v3, k_at)?;
    let pad_at = match op {
        DiagOp::Diag => 4,
        _ => 2,
    };
    let pad = if v3 && op != DiagOp::Set {
        let p = ctx.input(pad_at);
        if p.rank() != 0 {
            return Err(KernelError::invalid(format!(
                "padding_value must be a scalar, got shape {:?}",
                p.shape()
            )));
        }
        p.as_slice::<T>()?[0].clone()
    } else {
        T::default()
    };
    let nd = (k1 - k0 + 1) as usize;
    let diag_dims = if nd > 1 { 2 } else { 1 };
    match op {
        DiagOp::Diag => {
            let d = ctx.input(0);
            let s = d.shape();
            if s.len() < diag_dims {
                return Err(KernelError::invalid(format!(
                    "diagonal must have rank >= {diag_dims}, got shape {s:?}"
                )));
            }
            let r = s.len();
            if nd > 1 && s[r - 2] != nd {
                return Err(KernelError::invalid(format!(
                    "diagonal of shape {s:?} has {} diagonals but k = [{k0}, {k1}] names {nd}",
                    s[r - 2]
                )));
            }
            let max_len = s[r - 1];
            let (rows, cols) = if v3 {
                let nr = int_scalar(ctx, 2, "num_rows")?;
                let nc = int_scalar(ctx, 3, "num_cols")?;
                diag_v3_size(max_len as i64, k0, k1, nr, nc).map_err(KernelError::invalid)?
            } else {
                (max_len as i64, max_len as i64)
            };
            let band = Band {
                m: rows as usize,
                n: cols as usize,
                k0,
                k1,
                max_len,
                super_right,
                sub_right,
            };
            let mut out_dims: Dims = s[..r - diag_dims].into();
            out_dims.extend([band.m, band.n]);
            let total = num_elements(&out_dims)?;
            let mut out = alloc::<T>(total)?;
            out.resize(total, pad.clone());
            let src = d.as_slice::<T>()?;
            let (mn, per) = (band.m * band.n, nd * max_len);
            if mn > 0 {
                for (b, mat) in out.chunks_exact_mut(mn).enumerate() {
                    band.for_each(|l, j, i, c| {
                        mat[i * band.n + c] = src[b * per + l * max_len + j].clone()
                    });
                }
            }
            ctx.set_output(Tensor::from_parts(out_dims, T::into_buffer(out)));
        }
        DiagOp::Part | DiagOp::Set => {
            let x = ctx.input(0);
            let s = x.shape().to_vec();
            let (batch, m, n) = matrices(&s, "input")?;
            if v3 {
                check_diag_range(m as i64, n as i64, k0, k1).map_err(KernelError::invalid)?;
            }
            let max_len = (m as i64 + k1.min(0)).min(n as i64 - k0.max(0)).max(0) as usize;
            let band = Band {
                m,
                n,
                k0,
                k1,
                max_len,
                super_right,
                sub_right,
            };
            let mut diag_shape: Dims = s[..s.len() - 2].into();
            if nd > 1 {
                diag_shape.push(nd);
            }
            diag_shape.push(max_len);
            let per = nd * max_len;
            if op == DiagOp::Part {
                let total = num_elements(&diag_shape)?;
                let mut out = alloc::<T>(total)?;
                out.resize(total, pad.clone());
                let src = x.as_slice::<T>()?;
                for b in 0..batch {
                    let mat = &src[b * m * n..(b + 1) * m * n];
                    let dst = &mut out[b * per..(b + 1) * per];
                    band.for_each(|l, j, i, c| dst[l * max_len + j] = mat[i * n + c].clone());
                }
                ctx.set_output(Tensor::from_parts(diag_shape, T::into_buffer(out)));
            } else {
                let d = ctx.input(1);
                if d.shape() != diag_shape.as_slice() {
                    return Err(KernelError::invalid(format!(
                        "diagonal must have shape {:?} for input of shape {s:?} and k = \
                         [{k0}, {k1}], got {:?}",
                        diag_shape.as_slice(),
                        d.shape()
                    )));
                }
                let diag = d.as_slice::<T>()?;
                let mut out = x.as_slice::<T>()?.to_vec();
                if m * n > 0 {
                    for (b, mat) in out.chunks_exact_mut(m * n).enumerate() {
                        let src = &diag[b * per..(b + 1) * per];
                        band.for_each(|l, j, i, c| mat[i * n + c] = src[l * max_len + j].clone());
                    }
                }
                ctx.set_output(Tensor::from_parts(s.as_slice().into(), T::into_buffer(out)));
            }
        }
    }
    Ok(())
}

// ---- factorizations (in f64) ------------------------------------------------------------------

type F64Fn = dyn Fn(&KernelContext<'_>) -> KResult<(Dims, Vec<f64>)> + Send + Sync;

/// A float kernel whose `compute` returns f64 values, rounded to the input's dtype.
fn float_kernel(
    init: &KernelInit<'_>,
    compute: impl Fn(&KernelContext<'_>) -> KResult<(Dims, Vec<f64>)> + Send + Sync + 'static,
) -> Factory {
    let compute: Box<F64Fn> = Box::new(compute);
    dispatch_float!(init.dtype(), T => {
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
            let (dims, v) = compute(ctx)?;
            let out: Vec<T> = v.into_iter().map(T::from_f64).collect();
            ctx.set_output(Tensor::from_parts(dims, T::into_buffer(out)));
            Ok(())
        }))
    }, _ => Err(unsupported(init)))
}

/// `(batch, m)` of a batch of square matrices.
fn square(shape: &[usize], what: &str) -> KResult<(usize, usize)> {
    let (batch, m, n) = matrices(shape, what)?;
    if m != n {
        return Err(KernelError::invalid(format!(
            "{what} must be a batch of square matrices, got shape {shape:?}"
        )));
    }
    Ok((batch, m))
}

/// LU with partial pivoting of the row-major `n x n` matrix `a`, in place: returns the row
/// permutation and its sign.
fn lu(a: &mut [f64], n: usize) -> (Vec<usize>, f64) {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut sign = 1.0;
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| a[i * n + k].abs().total_cmp(&a[j * n + k].abs()))
            .unwrap_or(k);
        if p != k {
            for j in 0..n {
                a.swap(k * n + j, p * n + j);
            }
            perm.swap(k, p);
            sign = -sign;
        }
        let pivot = a[k * n + k];
        if pivot == 0.0 {
            continue;
        }
        for i in k + 1..n {
            let f = a[i * n + k] / pivot;
            a[i * n + k] = f;
            if f != 0.0 {
                for j in k + 1..n {
                    a[i * n + j] -= f * a[k * n + j];
                }
            }
        }
    }
    (perm, sign)
}

fn inverse(ctx: &KernelContext<'_>, adjoint: bool) -> KResult<(Dims, Vec<f64>)> {
    let x = ctx.input(0);
    let (batch, n) = square(x.shape(), "input")?;
    let mut v = x.to_f64_vec();
    let mut out = alloc::<f64>(v.len())?;
    for b in 0..batch {
        let a = &mut v[b * n * n..(b + 1) * n * n];
        let (perm, _) = lu(a, n);
        if (0..n).any(|i| a[i * n + i] == 0.0 || a[i * n + i].is_nan()) {
            return Err(KernelError::invalid(format!(
                "Input is not invertible: matrix {b} of the batch (input shape {:?}) is singular",
                x.shape()
            )));
        }
        // Solve A X = I column by column: P A = L U.
        let mut inv = vec![0.0; n * n];
        for c in 0..n {
            let mut y: Vec<f64> = (0..n).map(|i| f64::from(u8::from(perm[i] == c))).collect();
            for i in 0..n {
                let s: f64 = (0..i).map(|j| a[i * n + j] * y[j]).sum();
                y[i] -= s;
            }
            for i in (0..n).rev() {
                let s: f64 = (i + 1..n).map(|j| a[i * n + j] * y[j]).sum();
                y[i] = (y[i] - s) / a[i * n + i];
            }
            for i in 0..n {
                // Row-major inverse; its adjoint (real: transpose) swaps the indices.
                if adjoint {
                    inv[c * n + i] = y[i];
                } else {
                    inv[i * n + c] = y[i];
                }
            }
        }
        out.extend_from_slice(&inv);
    }
    Ok((x.dims().clone(), out))
}

fn determinant(ctx: &KernelContext<'_>) -> KResult<(Dims, Vec<f64>)> {
    let x = ctx.input(0);
    let s = x.shape();
    let (batch, n) = square(s, "input")?;
    let mut v = x.to_f64_vec();
    let mut out = alloc::<f64>(batch)?;
    for b in 0..batch {
        let a = &mut v[b * n * n..(b + 1) * n * n];
        let (_, sign) = lu(a, n);
        out.push((0..n).fold(sign, |p, i| p * a[i * n + i]));
    }
    Ok((s[..s.len() - 2].into(), out))
}

fn cholesky(ctx: &KernelContext<'_>) -> KResult<(Dims, Vec<f64>)> {
    let x = ctx.input(0);
    let (batch, n) = square(x.shape(), "input")?;
    let v = x.to_f64_vec();
    let mut out = vec![0.0; v.len()];
    for b in 0..batch {
        let a = &v[b * n * n..(b + 1) * n * n];
        let l = &mut out[b * n * n..(b + 1) * n * n];
        for j in 0..n {
            let d = a[j * n + j] - (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum::<f64>();
            // Not positive, or NaN.
            if d.is_nan() || d <= 0.0 {
                return Err(KernelError::invalid(format!(
                    "Cholesky decomposition was not successful: matrix {b} of the batch (input \
                     shape {:?}) is not symmetric positive definite (pivot {j} is {d})",
                    x.shape()
                )));
            }
            let djj = d.sqrt();
            l[j * n + j] = djj;
            for i in j + 1..n {
                let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                l[i * n + j] = (a[i * n + j] - s) / djj;
            }
        }
    }
    Ok((x.dims().clone(), out))
}

fn triangular_solve(
    ctx: &KernelContext<'_>,
    lower: bool,
    adjoint: bool,
) -> KResult<(Dims, Vec<f64>)> {
    let (a, b) = (ctx.input(0), ctx.input(1));
    let (sa, sb) = (a.shape(), b.shape());
    let (_, m) = square(sa, "matrix")?;
    let (_, rows, k) = matrices(sb, "rhs")?;
    if rows != m {
        return Err(KernelError::invalid(format!(
            "matrix of shape {sa:?} and rhs of shape {sb:?} differ in their number of rows \
             ({m} and {rows})"
        )));
    }
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let batch = broadcast_shape(&[ba, bb]).map_err(|_| {
        KernelError::invalid(format!(
            "batch dims of matrix {sa:?} and rhs {sb:?} do not broadcast"
        ))
    })?;
    let mut out_dims = batch.clone();
    out_dims.extend([m, k]);
    let total = num_elements(&out_dims)?;
    let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
    let mut out = vec![0.0; total];
    let mut pairs = Vec::new();
    for_each_broadcast(&batch, [ba, bb], |o, [i, j]| pairs.push((o, i, j)));
    // The triangular matrix solved with: op(A), lower when `lower` xor `adjoint`.
    let eff_lower = lower != adjoint;
    for (o, i, j) in pairs {
        let am = &av[i * m * m..(i + 1) * m * m];
        let at = |r: usize, c: usize| {
            if adjoint {
                am[c * m + r]
            } else {
                am[r * m + c]
            }
        };
        let rhs = &bv[j * m * k..(j + 1) * m * k];
        let x = &mut out[o * m * k..(o + 1) * m * k];
        for c in 0..k {
            let order: Box<dyn Iterator<Item = usize>> = if eff_lower {
                Box::new(0..m)
            } else {
                Box::new((0..m).rev())
            };
            for r in order {
                let known: Box<dyn Iterator<Item = usize>> = if eff_lower {
                    Box::new(0..r)
                } else {
                    Box::new(r + 1..m)
                };
                let s: f64 = known.map(|q| at(r, q) * x[q * k + c]).sum();
                x[r * k + c] = (rhs[r * k + c] - s) / at(r, r);
            }
        }
    }
    Ok((out_dims, out))
}
