//! Neural-network kernels: activations, softmax and log-softmax over the last axis, bias
//! addition and the fused softmax cross-entropy losses. Softmax-like kernels subtract each row's
//! max before exponentiating, so large logits do not overflow.

use super::cwise_ops::{map_kernel, unsupported};
use super::simd::simd_fn;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::{FloatElem, Numeric};
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_float, dispatch_numeric};
use rayon::prelude::*;
use tfr_graph::{DTypeSet, Element};

/// Row-wise kernels with more elements than this run their rows in parallel.
const PAR_THRESHOLD: usize = 1 << 15;
/// Elements per parallel piece.
const GRAIN: usize = 1 << 13;

/// SELU's constants, as in TensorFlow.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_284_817_042_991_671_7;
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_493_419_334_985_294_6;
/// `SELU_SCALE * SELU_ALPHA`, TensorFlow's precomputed product.
const SELU_SCALE_ALPHA: f64 = 1.758_099_340_847_376_859_940_217_520_812_3;

// ---- activations --------------------------------------------------------------------------------

#[inline(always)]
pub(crate) fn relu<T: FloatElem>(x: T) -> T {
    // NaN passes through.
    if x < T::zero() {
        T::zero()
    } else {
        x
    }
}

#[inline(always)]
fn relu6<T: FloatElem>(x: T, six: T) -> T {
    if x > six {
        six
    } else {
        relu(x)
    }
}

#[inline(always)]
fn elu<T: FloatElem>(x: T) -> T {
    if x > T::zero() {
        x
    } else {
        x.exp_m1()
    }
}

/// log(1 + e^x) as max(x, 0) + log1p(e^-|x|): never overflows, and is x for large x.
#[inline(always)]
fn softplus<T: FloatElem>(x: T) -> T {
    relu(x) + (-x.abs()).exp().ln_1p()
}

/// Registers a float activation given as `|x| expr`; `T` and any `let` bindings before the
/// closure are in scope.
macro_rules! activation {
    ($r:ident, $op:literal, $(let $v:ident = $e:expr;)* |$x:ident| $body:expr) => {
        $r.cpu($op, DTypeSet::FLOAT, |init| {
            Ok(dispatch_float!(init.dtype(), T => {
                $(let $v: T = <T as Numeric>::from_f64($e);)*
                map_kernel::<T, _>(move |$x: T| $body)
            }, _ => return Err(unsupported(init))))
        });
    };
}

// ---- row helpers ----------------------------------------------------------------------------

/// Runs `f(row_index, row)` on each `cols`-long row of `data` (`rows` of them), in parallel for
/// large inputs, and collects what it returns.
fn map_rows<T, R, F>(data: &mut [T], rows: usize, cols: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, &mut [T]) -> R + Send + Sync,
{
    if cols == 0 {
        return (0..rows).map(|i| f(i, &mut [])).collect();
    }
    if data.len() > PAR_THRESHOLD && rows > 1 {
        data.par_chunks_mut(cols)
            .with_min_len(GRAIN.div_ceil(cols))
            .enumerate()
            .map(|(i, r)| f(i, r))
            .collect()
    } else {
        data.chunks_exact_mut(cols)
            .enumerate()
            .map(|(i, r)| f(i, r))
            .collect()
    }
}

/// The max of a row (NaN if any is NaN; -inf for an empty row).
#[inline(always)]
fn row_max<T: FloatElem>(row: &[T]) -> T {
    // Eight running maxima and a NaN flag: branch-free, so the loop vectorizes.
    let mut lanes = [T::neg_infinity(); 8];
    let mut nan = false;
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            nan |= Numeric::is_nan(v);
            *l = if v > *l { v } else { *l };
        }
    }
    for &v in rest {
        nan |= Numeric::is_nan(v);
        lanes[0] = if v > lanes[0] { v } else { lanes[0] };
    }
    if nan {
        return T::nan();
    }
    lanes
        .iter()
        .fold(T::neg_infinity(), |m, &v| if v > m { v } else { m })
}

simd_fn! {
    /// Softmax of a row, in place: exp(x - max) / sum.
    fn softmax_row<T: FloatElem, FMA>(row: &mut [T]) {
        let m = row_max(row);
        let sum = T::exp_shifted_sum(row, m);
        let inv = sum.recip();
        row.iter_mut().for_each(|v| *v = *v * inv);
    }
}

simd_fn! {
    /// Log-softmax of a row, in place: x - max - log(sum(exp(x - max))).
    fn log_softmax_row<T: FloatElem, FMA>(row: &mut [T]) {
        let m = row_max(row);
        let sum = row.iter().fold(T::zero(), |s, &v| s + (v - m).exp());
        // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) to the
        // precision of max.
        let log_sum = sum.ln();
        row.iter_mut().for_each(|v| *v = (*v - m) - log_sum);
    }
}

/// The input's elements in a buffer this kernel owns: moved when uniquely held, else copied.
fn owned<T: Element>(x: Tensor) -> KResult<(Dims, Vec<T>)> {
    let dims = x.dims().clone();
    Ok((dims, x.into_vec::<T>()?))
}

/// Softmax or log-softmax over the last axis, in place when the input is uniquely held.
fn softmax_kernel<T: FloatElem>(log: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.take_input(0);
        let Some(&cols) = x.shape().last() else {
            return Err(KernelError::invalid(
                "logits must have rank >= 1, got a scalar",
            ));
        };
        let rows = x.shape()[..x.rank() - 1].iter().product();
        let (dims, mut data) = owned::<T>(x)?;
        map_rows(&mut data, rows, cols, |_, row| {
            if log {
                log_softmax_row(row)
            } else {
                softmax_row(row)
            }
        });
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(data)));
        Ok(())
    })
}

// ---- BiasAdd --------------------------------------------------------------------------------

fn bias_add_kernel<T: Numeric>(nchw: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let bias = ctx.take_input(1);
        let value = ctx.take_input(0);
        let (vs, bs) = (value.shape(), bias.shape());
        let min_rank = if nchw { 3 } else { 2 };
        if bs.len() != 1 {
            return Err(KernelError::invalid(format!(
                "bias must be 1-D, got shape {bs:?}"
            )));
        }
        if vs.len() < min_rank {
            return Err(KernelError::invalid(format!(
                "value must have rank >= {min_rank}, got shape {vs:?}"
            )));
        }
        let c = if nchw { 1 } else { vs.len() - 1 };
        if vs[c] != bs[0] {
            return Err(KernelError::invalid(format!(
                "bias has {} entries but value's channel dim {c} is {} (value {vs:?}, data_format {})",
                bs[0],
                vs[c],
                if nchw { "NCHW" } else { "NHWC" }
            )));
        }
        // Each run of `inner` elements shares one bias entry; runs cycle through the channels.
        let inner: usize = vs[c + 1..].iter().product();
        let b = bias.as_slice::<T>()?;
        let (dims, mut data) = owned::<T>(value)?;
        if inner == 1 && !b.is_empty() {
            for row in data.chunks_exact_mut(b.len()) {
                row.iter_mut().zip(b).for_each(|(v, &bv)| *v = v.add(bv));
            }
        } else if inner > 0 && !b.is_empty() {
            for image in data.chunks_exact_mut(b.len() * inner) {
                for (run, &bv) in image.chunks_exact_mut(inner).zip(b) {
                    run.iter_mut().for_each(|v| *v = v.add(bv));
                }
            }
        }
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(data)));
        Ok(())
    })
}

fn bias_add_factory(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let nchw = match init.attrs.string("data_format")?.as_str() {
        "NHWC" => false,
        "NCHW" => true,
        other => return Err(format!("data_format must be NHWC or NCHW, got {other}")),
    };
    Ok(
        dispatch_numeric!(init.dtype(), T => bias_add_kernel::<T>(nchw), _ => return Err(unsupported(init))),
    )
}

// ---- cross-entropy --------------------------------------------------------------------------

/// The shape `[batch, classes]` of a features input.
fn features_dims(t: &Tensor) -> KResult<(usize, usize)> {
    match t.shape() {
        &[b, c] => Ok((b, c)),
        s => Err(KernelError::invalid(format!(
            "features must be a matrix [batch, classes], got shape {s:?}"
        ))),
    }
}

/// Returns the loss `-sum(labels * log softmax(row))` of a row of logits and turns the row into
/// the gradient `softmax - labels`, where `label(j)` gives the label weight of class `j`.
/// One exponential per element: `log softmax = (x - max) - log(sum)`, `softmax = e / sum`.
#[inline]
fn xent_row<T: FloatElem>(row: &mut [T], label: impl Fn(usize) -> T) -> T {
    let m = row_max(row);
    // sum(labels * (x - max)) and sum(labels), read before the row is overwritten.
    let (mut lx, mut ls) = (T::zero(), T::zero());
    for (j, &v) in row.iter().enumerate() {
        let l = label(j);
        if l != T::zero() {
            lx = lx + l * (v - m);
            ls = ls + l;
        }
    }
    let sum = T::exp_shifted_sum(row, m);
    let inv = sum.recip();
    for (j, v) in row.iter_mut().enumerate() {
        *v = *v * inv - label(j);
    }
    // Without label weight (an empty row among them) the log-sum term is absent: 0 * ln(0)
    // would be NaN.
    if ls == T::zero() {
        T::zero() - lx
    } else {
        ls * sum.ln() - lx
    }
}

simd_fn! {
    /// [`xent_row`] for a one-hot label (class `target`).
    fn sparse_xent_row<T: FloatElem, FMA>(row: &mut [T], target: usize) -> T {
        let m = row_max(row);
        let lx = row[target] - m;
        let sum = T::exp_shifted_sum(row, m);
        let inv = sum.recip();
        row.iter_mut().for_each(|v| *v = *v * inv);
        row[target] = row[target] - T::one();
        sum.ln() - lx
    }
}

fn softmax_xent_kernel<T: FloatElem>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let labels = ctx.take_input(1);
        let features = ctx.take_input(0);
        let (b, c) = features_dims(&features)?;
        if labels.shape() != features.shape() {
            return Err(KernelError::invalid(format!(
                "features and labels must have the same shape, got {:?} and {:?}",
                features.shape(),
                labels.shape()
            )));
        }
        let ls = labels.as_slice::<T>()?;
        let (dims, mut back) = owned::<T>(features)?;
        let loss = map_rows(&mut back, b, c, |i, row| {
            let lrow = &ls[i * c..(i + 1) * c];
            xent_row(row, |j| lrow[j])
        });
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&[b]),
            T::into_buffer(loss),
        ));
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(back)));
        Ok(())
    })
}

fn sparse_xent_kernel<T: FloatElem>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let (b, c) = features_dims(ctx.input(0))?;
        let ls = ctx.input(1).shape();
        if ls != [b] {
            return Err(KernelError::invalid(format!(
                "labels must be a vector of {b} class ids (features are {:?}), got shape {ls:?}",
                ctx.input(0).shape()
            )));
        }
        let labels = ctx.input_ints(1)?;
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l < 0 || l >= c as i64)
        {
            return Err(KernelError::invalid(format!(
                "received a label value of {l} at index {i}, outside the valid range of [0, {c})"
            )));
        }
        let (dims, mut back) = owned::<T>(ctx.take_input(0))?;
        let loss = map_rows(&mut back, b, c, |i, row| {
            sparse_xent_row(row, labels[i] as usize)
        });
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&[b]),
            T::into_buffer(loss),
        ));
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(back)));
        Ok(())
    })
}

pub fn register(r: &mut KernelRegistry) {
    activation!(r, "Relu", |x| relu(x));
    activation!(r, "Relu6", let six = 6.0; |x| relu6(x, six));
    activation!(r, "Elu", |x| elu(x));
    activation!(r, "Selu", let scale = SELU_SCALE; let scale_alpha = SELU_SCALE_ALPHA; |x| {
        if x > <T as Numeric>::ZERO {
            scale * x
        } else {
            scale_alpha * x.exp_m1()
        }
    });
    activation!(r, "Softplus", |x| softplus(x));

    r.cpu("Softmax", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => softmax_kernel::<T>(false), _ => return Err(unsupported(init))))
    });
    r.cpu("LogSoftmax", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => softmax_kernel::<T>(true), _ => return Err(unsupported(init))))
    });
    r.cpu("BiasAdd", DTypeSet::NUMERIC, bias_add_factory);
    r.cpu("SoftmaxCrossEntropyWithLogits", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => softmax_xent_kernel::<T>(), _ => return Err(unsupported(init))))
    });
    r.cpu("SparseSoftmaxCrossEntropyWithLogits", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => sparse_xent_kernel::<T>(), _ => return Err(unsupported(init))))
    });
}
