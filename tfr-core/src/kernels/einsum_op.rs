//! The `Einsum` kernel. Each operand is first gathered (one strided copy that takes the
//! diagonals of repeated labels, broadcasts `...` dims of size 1 and transposes) into the layout
//! [batch, free, contracted, summed] and its operand-only summed labels are added up; two
//! operands then meet in one matrix product per batch (the gemm of `matmul_op`), and the result
//! is scattered into the output (a transpose, or a diagonal embedding for repeated output
//! labels).

use super::matmul_op::{MatMulElem, MatRef};
use super::output_alloc::{alloc, num_elements};
use crate::dispatch_numeric;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use tfr_graph::ops::einsum::{self, Equation, Label};
use tfr_graph::DTypeSet;

pub fn register(r: &mut KernelRegistry) {
    r.cpu("Einsum", DTypeSet::NUMERIC, factory);
}

fn factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let equation = init.attrs.string("equation")?.clone();
    let e = einsum::parse(&equation, init.inputs.len())?;
    Ok(dispatch_numeric!(init.dtype(), T => {
        Box::new(move |ctx: &mut KernelContext<'_>| compute::<T>(ctx, &e, &equation))
    }, _ => return Err(format!("no CPU kernel for Einsum with dtype {}", init.dtype()))))
}

/// Label ids: a letter is its ASCII code, `...` dim t (right-aligned) is `ELL + t`.
const ELL: usize = 128;

/// An operand with its unique labels, their dims and (summed positional) strides.
struct Operand<'a, T> {
    data: &'a [T],
    labels: Vec<usize>,
    dims: Vec<usize>,
    strides: Vec<usize>,
}

impl<T: MatMulElem> Operand<'_, T> {
    /// The operand gathered into the label order `lead` (dims from `full`: a label of size 1
    /// here broadcasts) followed by its own labels not in `lead`, which are summed.
    fn arrange(&self, lead: &[usize], full: &[usize; ELL * 2]) -> KResult<Vec<T>> {
        let mut dims = Vec::new();
        let mut strides = Vec::new();
        for &l in lead {
            match self.labels.iter().position(|&m| m == l) {
                Some(i) if self.dims[i] == full[l] => {
                    dims.push(self.dims[i]);
                    strides.push(self.strides[i]);
                }
                // A broadcast `...` dim (or a label this operand lacks): stride 0.
                _ => {
                    dims.push(full[l]);
                    strides.push(0);
                }
            }
        }
        let mut inner = 1usize;
        for (i, l) in self.labels.iter().enumerate() {
            if !lead.contains(l) {
                dims.push(self.dims[i]);
                strides.push(self.strides[i]);
                inner = inner.saturating_mul(self.dims[i]);
            }
        }
        let outer = num_elements(&dims[..lead.len()])?;
        let all = gather(self.data, &dims, &strides)?;
        if inner == 1 {
            return Ok(all);
        }
        let mut out = alloc::<T>(outer)?;
        if inner == 0 {
            out.resize(outer, T::ZERO);
            return Ok(out);
        }
        out.extend(
            all.chunks_exact(inner)
                .map(|c| c.iter().fold(T::ZERO, |a, &b| a.add(b))),
        );
        Ok(out)
    }
}

/// The row-major copy of the strided view (`dims`, `strides`) of `src`.
fn gather<T: Copy>(src: &[T], dims: &[usize], strides: &[usize]) -> KResult<Vec<T>> {
    let total = num_elements(dims)?;
    let mut out = alloc::<T>(total)?;
    if total == 0 {
        return Ok(out);
    }
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    loop {
        out.push(src[off]);
        let mut a = dims.len();
        loop {
            if a == 0 {
                return Ok(out);
            }
            a -= 1;
            idx[a] += 1;
            off += strides[a];
            if idx[a] < dims[a] {
                break;
            }
            off -= strides[a] * dims[a];
            idx[a] = 0;
        }
    }
}

/// Writes the row-major `src` of shape `dims` into `dst` at offsets given by `strides`.
fn scatter<T: Copy>(src: &[T], dims: &[usize], strides: &[usize], dst: &mut [T]) {
    if src.is_empty() {
        return;
    }
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    for &v in src {
        dst[off] = v;
        let mut a = dims.len();
        while a > 0 {
            a -= 1;
            idx[a] += 1;
            off += strides[a];
            if idx[a] < dims[a] {
                break;
            }
            off -= strides[a] * dims[a];
            idx[a] = 0;
        }
    }
}

fn row_major_strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn compute<T: MatMulElem>(ctx: &mut KernelContext<'_>, e: &Equation, equation: &str) -> KResult {
    let n = ctx.num_inputs();
    let shapes: Vec<Vec<usize>> = (0..n).map(|i| ctx.input(i).shape().to_vec()).collect();
    let bad = |m: String| KernelError::invalid(format!("equation `{equation}`: {m}"));
    let mut ell_ranks = Vec::new();
    for (i, (subs, s)) in e.inputs.iter().zip(&shapes).enumerate() {
        let what = format!("input {i} (shape {s:?})");
        ell_ranks.push(einsum::ellipsis_rank(subs, s.len(), &what).map_err(bad)?);
    }
    let ell = ell_ranks.iter().copied().max().unwrap_or(0);
    if ell > ELL {
        return Err(bad(format!("`...` covers {ell} dims, more than {ELL}")));
    }
    // Every axis's label id, and each label's (broadcast) dim.
    let mut full = [0usize; ELL * 2];
    let mut seen = [false; ELL * 2];
    let mut ids: Vec<Vec<usize>> = Vec::new();
    for (i, subs) in e.inputs.iter().enumerate() {
        let mut v = Vec::new();
        for l in subs {
            match l {
                Label::Char(c) => v.push(*c as usize),
                Label::Ellipsis => v.extend((ell - ell_ranks[i]..ell).map(|t| ELL + t)),
            }
        }
        for (axis, (&l, &d)) in v.iter().zip(&shapes[i]).enumerate() {
            if !seen[l] {
                (seen[l], full[l]) = (true, d);
            } else if l < ELL && full[l] != d {
                return Err(bad(format!(
                    "label '{}' is {} elsewhere but {d} at axis {axis} of input {i} (shape {:?})",
                    l as u8 as char, full[l], shapes[i]
                )));
            } else if l >= ELL && full[l] != d {
                if full[l] == 1 {
                    full[l] = d;
                } else if d != 1 {
                    return Err(bad(format!(
                        "the `...` dims of the inputs (shapes {shapes:?}) do not broadcast"
                    )));
                }
            }
        }
        ids.push(v);
    }
    let mut out_ids = Vec::new();
    for l in &e.output {
        match l {
            Label::Char(c) => out_ids.push(*c as usize),
            Label::Ellipsis => out_ids.extend((0..ell).map(|t| ELL + t)),
        }
    }
    let out_dims: Vec<usize> = out_ids.iter().map(|&l| full[l]).collect();
    let mut out_unique: Vec<usize> = Vec::new();
    for &l in &out_ids {
        if !out_unique.contains(&l) {
            out_unique.push(l);
        }
    }
    let operands: Vec<Operand<'_, T>> = (0..n)
        .map(|i| -> KResult<_> {
            let t = ctx.input(i);
            let pos = row_major_strides(t.shape());
            let mut op = Operand {
                data: t.as_slice::<T>()?,
                labels: Vec::new(),
                dims: Vec::new(),
                strides: Vec::new(),
            };
            for (axis, &l) in ids[i].iter().enumerate() {
                match op.labels.iter().position(|&m| m == l) {
                    Some(k) => op.strides[k] += pos[axis],
                    None => {
                        op.labels.push(l);
                        op.dims.push(t.shape()[axis]);
                        op.strides.push(pos[axis]);
                    }
                }
            }
            Ok(op)
        })
        .collect::<KResult<_>>()?;
    // The result over unique labels `res_labels` (row-major), then scattered into the output.
    let (res, res_labels) = if n == 1 {
        (operands[0].arrange(&out_unique, &full)?, out_unique.clone())
    } else {
        let (x, y) = (&operands[0], &operands[1]);
        let in_x = |l: &usize| x.labels.contains(l);
        let in_y = |l: &usize| y.labels.contains(l);
        let batch: Vec<usize> = out_unique
            .iter()
            .copied()
            .filter(|l| in_x(l) && in_y(l))
            .collect();
        let fx: Vec<usize> = x
            .labels
            .iter()
            .copied()
            .filter(|l| !in_y(l) && out_unique.contains(l))
            .collect();
        let fy: Vec<usize> = y
            .labels
            .iter()
            .copied()
            .filter(|l| !in_x(l) && out_unique.contains(l))
            .collect();
        let contracted: Vec<usize> = x
            .labels
            .iter()
            .copied()
            .filter(|l| in_y(l) && !out_unique.contains(l))
            .collect();
        let size = |ls: &[usize]| num_elements(&ls.iter().map(|&l| full[l]).collect::<Vec<_>>());
        // A contracted `...` dim of size 1 in both operands keeps size 1 (full[l] covers it).
        let (nb, m, k, nn) = (size(&batch)?, size(&fx)?, size(&contracted)?, size(&fy)?);
        let xl: Vec<usize> = batch
            .iter()
            .chain(&fx)
            .chain(&contracted)
            .copied()
            .collect();
        let yl: Vec<usize> = batch
            .iter()
            .chain(&contracted)
            .chain(&fy)
            .copied()
            .collect();
        let xa = x.arrange(&xl, &full)?;
        let ya = y.arrange(&yl, &full)?;
        let total = nb
            .checked_mul(m)
            .and_then(|v| v.checked_mul(nn))
            .ok_or_else(|| bad("the output has too many elements".into()))?;
        let mut res = alloc::<T>(total)?;
        res.resize(total, T::ZERO);
        if total > 0 {
            let parallel = m.saturating_mul(nn).saturating_mul(k) >= 64 * 64 * 64;
            for (b, dst) in res.chunks_exact_mut(m * nn).enumerate() {
                let a = MatRef {
                    data: &xa[b * m * k..(b + 1) * m * k],
                    rs: k,
                    cs: 1,
                };
                let c = MatRef {
                    data: &ya[b * k * nn..(b + 1) * k * nn],
                    rs: nn,
                    cs: 1,
                };
                T::matmul(m, nn, k, a, c, dst, parallel)?;
            }
        }
        let labels = batch.into_iter().chain(fx).chain(fy).collect();
        (res, labels)
    };
    let total = num_elements(&out_dims)?;
    let mut out = alloc::<T>(total)?;
    out.resize(total, T::ZERO);
    let pos = row_major_strides(&out_dims);
    let res_dims: Vec<usize> = res_labels.iter().map(|&l| full[l]).collect();
    let res_strides: Vec<usize> = res_labels
        .iter()
        .map(|&l| {
            out_ids
                .iter()
                .zip(&pos)
                .filter(|(m, _)| **m == l)
                .map(|(_, s)| s)
                .sum()
        })
        .collect();
    scatter(&res, &res_dims, &res_strides, &mut out);
    ctx.set_output(Tensor::from_parts(
        out_dims.as_slice().into(),
        T::into_buffer(out),
    ));
    Ok(())
}
