//! Fused batch normalization (FusedBatchNorm and its gradient) and local response
//! normalization (LRN, LRNGrad), in NHWC.

use super::cwise_ops::unsupported;
use super::spatial_common::{
    cast, check_same, dims4, for_rows, image_in, image_out, vector, ConvElem, PAR_WORK,
};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use rayon::prelude::*;
use tfr_graph::ops::nn_ops::{BatchNormParams, LrnParams};
use tfr_graph::DTypeSet;

// ---- batch normalization ---------------------------------------------------------------------

/// Sums over the rows of an `r x c` matrix into `acc_len` f64 accumulators, by
/// `f(row_index, row, acc)`; rows are split in a fixed number of parts, added in order, so
/// results do not depend on scheduling.
fn channel_sums<T: ConvElem>(
    data: &[T],
    c: usize,
    acc_len: usize,
    f: impl Fn(usize, &[T], &mut [f64]) + Send + Sync,
) -> Vec<f64> {
    let rows = data.len().checked_div(c).unwrap_or(0);
    let parts = if data.len() >= PAR_WORK && rayon::current_num_threads() > 1 {
        8.min(rows)
    } else {
        1
    };
    if parts <= 1 {
        let mut acc = vec![0.0; acc_len];
        for (i, row) in data.chunks_exact(c.max(1)).enumerate() {
            f(i, row, &mut acc);
        }
        return acc;
    }
    let per = rows.div_ceil(parts);
    let partials: Vec<Vec<f64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut acc = vec![0.0; acc_len];
            let r = p * per..((p + 1) * per).min(rows);
            for (i, row) in data[r.start * c..r.end * c].chunks_exact(c).enumerate() {
                f(r.start + i, row, &mut acc);
            }
            acc
        })
        .collect();
    let mut acc = vec![0.0; acc_len];
    for part in partials {
        acc.iter_mut().zip(part).for_each(|(a, v)| *a += v);
    }
    acc
}

/// Checks a per-channel vector input.
fn channel_input<'a, T: ConvElem>(
    ctx: &'a KernelContext<'_>,
    i: usize,
    what: &str,
    c: usize,
) -> KResult<&'a [T]> {
    let t = ctx.input(i);
    if t.shape() != [c] {
        return Err(KernelError::invalid(format!(
            "{what} must be a vector of {c} entries (one per channel of x), got shape {:?}",
            t.shape()
        )));
    }
    Ok(t.as_slice::<T>()?)
}

fn fused_batch_norm_kernel<T: ConvElem>(p: BatchNormParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let (x, xd) = image_in::<T>(ctx.input(0), "x", p.format)?;
        let c = xd[3];
        let rows = xd[0] * xd[1] * xd[2];
        let scale = channel_input::<T>(ctx, 1, "scale", c)?;
        let offset = channel_input::<T>(ctx, 2, "offset", c)?;
        let (mean, var): (Vec<f64>, Vec<f64>) = if p.is_training {
            for (i, what) in [(3, "mean"), (4, "variance")] {
                let s = ctx.input(i).shape();
                if s != [0] && s != [c] {
                    return Err(KernelError::invalid(format!(
                        "{what} must be empty or a vector of {c} entries in training mode, \
                         got shape {s:?}"
                    )));
                }
            }
            let n = rows as f64;
            let sums = channel_sums(&x, c, c, |_, row, acc| {
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v.to_f64());
            });
            let mean: Vec<f64> = sums.iter().map(|s| s / n).collect();
            let sq = channel_sums(&x, c, c, |_, row, acc| {
                for ((a, &v), m) in acc.iter_mut().zip(row).zip(&mean) {
                    let d = v.to_f64() - m;
                    *a += d * d;
                }
            });
            (mean, sq.iter().map(|s| s / n).collect())
        } else {
            let m = channel_input::<T>(ctx, 3, "mean", c)?;
            let v = channel_input::<T>(ctx, 4, "variance", c)?;
            let f = |s: &[T]| s.iter().map(|&v| Numeric::to_f64(v)).collect();
            (f(m), f(v))
        };
        // y = x * a + b per channel.
        let (mut a, mut b) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for j in 0..c {
            let inv = 1.0 / (var[j] + p.epsilon).sqrt();
            let s = scale[j].to_f64() * inv;
            a.push(cast::<T>(s));
            b.push(cast::<T>(offset[j].to_f64() - mean[j] * s));
        }
        let mut y = x.into_owned();
        let parallel = y.len() >= PAR_WORK && rayon::current_num_threads() > 1;
        for_rows(&mut y, c * 64, parallel, |_, chunk| {
            for row in chunk.chunks_exact_mut(c) {
                for ((v, &a), &b) in row.iter_mut().zip(&a).zip(&b) {
                    *v = *v * a + b;
                }
            }
        });
        ctx.set_output(image_out(y, xd, p.format));
        let to_t = |v: &[f64]| v.iter().map(|&x| cast::<T>(x)).collect::<Vec<T>>();
        if p.is_training {
            let bessel = if rows > 1 {
                rows as f64 / (rows - 1) as f64
            } else {
                1.0
            };
            let corrected: Vec<f64> = var.iter().map(|v| v * bessel).collect();
            ctx.set_output(vector(to_t(&mean)));
            ctx.set_output(vector(to_t(&corrected)));
        } else {
            ctx.set_output(vector(to_t(&mean)));
            ctx.set_output(vector(to_t(&var)));
        }
        ctx.set_output(vector(to_t(&mean)));
        ctx.set_output(vector(to_t(&var)));
        Ok(())
    })
}

fn fused_batch_norm_grad_kernel<T: ConvElem>(p: BatchNormParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        check_same(ctx.input(0), ctx.input(1), "y_backprop", "x")?;
        let (x, xd) = image_in::<T>(ctx.input(1), "x", p.format)?;
        let (dy, _) = image_in::<T>(ctx.input(0), "y_backprop", p.format)?;
        let c = xd[3];
        let rows = xd[0] * xd[1] * xd[2];
        let f64s = |s: &[T]| -> Vec<f64> { s.iter().map(|&v| Numeric::to_f64(v)).collect() };
        let scale = f64s(channel_input::<T>(ctx, 2, "scale", c)?);
        let mean = f64s(channel_input::<T>(ctx, 3, "reserve_space_1", c)?);
        let var = f64s(channel_input::<T>(ctx, 4, "reserve_space_2", c)?);
        let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + p.epsilon).sqrt()).collect();
        // both[j] = sum(dy), both[c + j] = sum(dy * (x - mean)) for channel j.
        let both = channel_sums(&dy, c, 2 * c, |i, row, acc| {
            let xr = &x[i * c..(i + 1) * c];
            let (s1, s2) = acc.split_at_mut(c);
            for j in 0..c {
                let d = row[j].to_f64();
                s1[j] += d;
                s2[j] += d * (xr[j].to_f64() - mean[j]);
            }
        });
        let (sum_dy, sum_dyc) = both.split_at(c);
        let dscale: Vec<f64> = (0..c).map(|j| sum_dyc[j] * inv[j]).collect();
        let doffset = sum_dy.to_vec();
        // dx = k1 * dy + k2 * x + k3 per channel.
        let n = rows.max(1) as f64;
        let (mut k1, mut k2, mut k3) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..c {
            let si = scale[j] * inv[j];
            if p.is_training {
                // scale * inv * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - m) * inv
                let q = dscale[j] / n * inv[j];
                k1.push(cast::<T>(si));
                k2.push(cast::<T>(-si * q));
                k3.push(cast::<T>(si * (q * mean[j] - sum_dy[j] / n)));
            } else {
                k1.push(cast::<T>(si));
                k2.push(T::zero());
                k3.push(T::zero());
            }
        }
        let mut dx = dy.into_owned();
        let parallel = dx.len() >= PAR_WORK && rayon::current_num_threads() > 1;
        for_rows(&mut dx, c * 64, parallel, |blk, chunk| {
            let x0 = blk * c * 64;
            for (r, row) in chunk.chunks_exact_mut(c).enumerate() {
                let xr = &x[x0 + r * c..x0 + (r + 1) * c];
                for j in 0..c {
                    row[j] = row[j] * k1[j] + xr[j] * k2[j] + k3[j];
                }
            }
        });
        ctx.set_output(image_out(dx, xd, p.format));
        let to_t = |v: &[f64]| v.iter().map(|&x| cast::<T>(x)).collect::<Vec<T>>();
        ctx.set_output(vector(to_t(&dscale)));
        ctx.set_output(vector(to_t(&doffset)));
        Ok(())
    })
}

// ---- local response normalization -----------------------------------------------------------

/// `bias + alpha * sum of squares of row[j - r ..= j + r]` for each channel j, in f64.
fn lrn_norms<T: ConvElem>(row: &[T], p: &LrnParams, norms: &mut [f64]) {
    let c = row.len();
    for (j, n) in norms.iter_mut().enumerate() {
        let lo = j.saturating_sub(p.depth_radius);
        let hi = (j + p.depth_radius + 1).min(c);
        let s: f64 = row[lo..hi]
            .iter()
            .map(|v| {
                let v = Numeric::to_f64(*v);
                v * v
            })
            .sum();
        *n = p.bias + p.alpha * s;
    }
}

fn lrn_kernel<T: ConvElem>(p: LrnParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let [_, _, _, c] = dims4(ctx.input(0), "input", "[batch, height, width, channels]")?;
        let x = ctx.input(0).as_slice::<T>()?;
        let mut y = vec![T::zero(); x.len()];
        let parallel = x.len() >= PAR_WORK / 4 && rayon::current_num_threads() > 1;
        for_rows(&mut y, c, parallel, |i, out| {
            let row = &x[i * c..(i + 1) * c];
            let mut norms = vec![0.0; c];
            lrn_norms(row, &p, &mut norms);
            for ((o, &v), &n) in out.iter_mut().zip(row).zip(&norms) {
                *o = cast::<T>(v.to_f64() * n.powf(-p.beta));
            }
        });
        let dims = Dims::from_slice(ctx.input(0).shape());
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(y)));
        Ok(())
    })
}

/// LRNGrad: dx_k = g_k N_k^-beta - 2 alpha beta x_k sum_{j: |j - k| <= r} g_j y_j / N_j.
fn lrn_grad_kernel<T: ConvElem>(p: LrnParams) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let [_, _, _, c] = dims4(
            ctx.input(1),
            "input_image",
            "[batch, height, width, channels]",
        )?;
        check_same(ctx.input(0), ctx.input(1), "input_grads", "input_image")?;
        check_same(ctx.input(2), ctx.input(1), "output_image", "input_image")?;
        let g = ctx.input(0).as_slice::<T>()?;
        let x = ctx.input(1).as_slice::<T>()?;
        let y = ctx.input(2).as_slice::<T>()?;
        let mut dx = vec![T::zero(); x.len()];
        let parallel = x.len() >= PAR_WORK / 4 && rayon::current_num_threads() > 1;
        for_rows(&mut dx, c, parallel, |i, out| {
            let r = i * c..(i + 1) * c;
            let (gr, xr, yr) = (&g[r.clone()], &x[r.clone()], &y[r]);
            let mut norms = vec![0.0; c];
            lrn_norms(xr, &p, &mut norms);
            let f = |v: T| v.to_f64();
            let t: Vec<f64> = (0..c).map(|j| f(gr[j]) * f(yr[j]) / norms[j]).collect();
            for (k, o) in out.iter_mut().enumerate() {
                let lo = k.saturating_sub(p.depth_radius);
                let hi = (k + p.depth_radius + 1).min(c);
                let s: f64 = t[lo..hi].iter().sum();
                let v = f(gr[k]) * norms[k].powf(-p.beta) - 2.0 * p.alpha * p.beta * f(xr[k]) * s;
                *o = cast::<T>(v);
            }
        });
        let dims = Dims::from_slice(ctx.input(1).shape());
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(dx)));
        Ok(())
    })
}

fn batch_norm_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let p = BatchNormParams::from_attrs(init.attrs)?;
    Ok(dispatch_float!(init.dtype(), T => match init.op {
        "FusedBatchNorm" => fused_batch_norm_kernel::<T>(p),
        _ => fused_batch_norm_grad_kernel::<T>(p),
    }, _ => return Err(unsupported(init))))
}

fn lrn_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let p = LrnParams::from_attrs(init.attrs)?;
    Ok(dispatch_float!(init.dtype(), T => match init.op {
        "LRN" => lrn_kernel::<T>(p),
        _ => lrn_grad_kernel::<T>(p),
    }, _ => return Err(unsupported(init))))
}
pub fn register(r: &mut KernelRegistry) {
    r.cpu("FusedBatchNorm", DTypeSet::FLOAT, batch_norm_factory);
    r.cpu("FusedBatchNormGrad", DTypeSet::FLOAT, batch_norm_factory);
    r.cpu("LRN", DTypeSet::FLOAT, lrn_factory);
    r.cpu("LRNGrad", DTypeSet::FLOAT, lrn_factory);
}
