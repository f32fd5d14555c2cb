//! Kernels of `tfr_graph::ops::sampling_ops`: Multinomial (drawing from the Philox stream of
//! `random_ops`, one stream per node and session, seeded the same way), Bincount and
//! DenseBincount.

use super::output_alloc::{alloc, num_elements};
use super::random_ops::PhiloxStream;
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::Tensor;
use tfr_graph::{DType, DTypeSet, Element};

type Factory = Result<Box<dyn OpKernel>, String>;

pub fn register(r: &mut KernelRegistry) {
    r.cpu("Multinomial", DTypeSet::FLOAT, multinomial_factory);
    r.cpu("Bincount", DTypeSet::of(&[DType::I32]), |init| {
        bincount_factory(init, false)
    });
    r.cpu("DenseBincount", DTypeSet::INDEX, |init| {
        bincount_factory(init, true)
    });
}

// ---- Multinomial ------------------------------------------------------------------------------

fn multinomial_factory(init: &KernelInit<'_>) -> Factory {
    let seed = *init.attrs.int("seed")?;
    let seed2 = *init.attrs.int("seed2")?;
    let out_dtype = init
        .attrs
        .dtype_opt("output_dtype")
        .copied()
        .unwrap_or(DType::I64);
    // The key of `random_ops`' streams: one per node and session.
    let key = format!("random_stream:{}", init.node);
    dispatch_float!(init.dtype(), T => {
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
            let logits = ctx.input(0);
            let [batch, classes] = *logits.shape() else {
                return Err(KernelError::invalid(format!(
                    "logits must be 2-D [batch, classes], got shape {:?}",
                    logits.shape()
                )));
            };
            let ns = ctx.input(1);
            if ns.rank() != 0 {
                return Err(KernelError::invalid(format!(
                    "num_samples must be a scalar, got shape {:?}",
                    ns.shape()
                )));
            }
            let samples = ns.get_i64(0);
            let samples = usize::try_from(samples).map_err(|_| {
                KernelError::invalid(format!("num_samples must be non-negative, got {samples}"))
            })?;
            if classes == 0 && batch > 0 {
                return Err(KernelError::invalid(
                    "num_classes should be positive, got 0 (logits of shape [batch, 0])",
                ));
            }
            let total = num_elements(&[batch, samples])?;
            let stream = ctx.resources.state(&key, || PhiloxStream::new(seed, seed2))?;
            let mut draws = stream.reserve((total as u64).div_ceil(2));
            let src = logits.as_slice::<T>()?;
            let mut picks = alloc::<i64>(total)?;
            let mut cdf = vec![0.0f64; classes];
            for b in 0..batch {
                let row = &src[b * classes..(b + 1) * classes];
                let max = row
                    .iter()
                    .map(|v| v.to_f64())
                    .filter(|v| v.is_finite())
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut run = 0.0;
                for (c, v) in cdf.iter_mut().zip(row) {
                    let v = v.to_f64();
                    if v.is_finite() {
                        run += (v - max).exp();
                    }
                    *c = run;
                }
                for _ in 0..samples {
                    let u = (draws.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
                    let target = u * run;
                    let i = cdf.partition_point(|&c| c <= target);
                    picks.push(i.min(classes - 1) as i64);
                }
            }
            let dims = [batch, samples][..].into();
            let out = if out_dtype == DType::I32 {
                Tensor::from_parts(dims, i32::into_buffer(picks.into_iter().map(|v| v as i32).collect()))
            } else {
                Tensor::from_parts(dims, i64::into_buffer(picks))
            };
            ctx.set_output(out);
            Ok(())
        }))
    }, _ => Err(format!("no CPU kernel for Multinomial with dtype {}", init.dtype())))
}

// ---- Bincount / DenseBincount -----------------------------------------------------------------

fn bincount_factory(init: &KernelInit<'_>, dense: bool) -> Factory {
    let binary = init
        .attrs
        .bool_opt("binary_output")
        .copied()
        .unwrap_or(false);
    let wdt = init.inputs.get(2).map_or(DType::F32, |t| t.dtype);
    Ok(match wdt {
        DType::I32 => bincount::<i32>(dense, binary),
        DType::I64 => bincount::<i64>(dense, binary),
        DType::F32 => bincount::<f32>(dense, binary),
        DType::F64 => bincount::<f64>(dense, binary),
        d => {
            return Err(format!(
                "no CPU kernel for {} with weights of dtype {d}",
                init.op
            ))
        }
    })
}

fn bincount<T: Numeric>(dense: bool, binary: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
        let (arr, size_t, w) = (ctx.input(0), ctx.input(1), ctx.input(2));
        if size_t.rank() != 0 {
            return Err(KernelError::invalid(format!(
                "size must be a scalar, got shape {:?}",
                size_t.shape()
            )));
        }
        let size = size_t.get_i64(0);
        let size = usize::try_from(size)
            .map_err(|_| KernelError::invalid(format!("size ({size}) must be non-negative")))?;
        let shape = arr.shape();
        let (rows, out_dims): (usize, Vec<usize>) = match (dense, shape.len()) {
            (false, _) | (true, 1) => (1, vec![size]),
            (true, 2) => (shape[0], vec![shape[0], size]),
            _ => {
                return Err(KernelError::invalid(format!(
                    "input must be 1-D or 2-D, got shape {shape:?}"
                )))
            }
        };
        let weighted = w.num_elements() > 0;
        if weighted && w.shape() != shape {
            return Err(KernelError::invalid(format!(
                "weights must have the shape of arr {shape:?} or no elements, got shape {:?}",
                w.shape()
            )));
        }
        let weights = if weighted { w.as_slice::<T>()? } else { &[] };
        let total = num_elements(&out_dims)?;
        let mut out = alloc::<T>(total)?;
        out.resize(total, T::ZERO);
        let n = arr.num_elements();
        let per_row = n.checked_div(rows).unwrap_or(0);
        for i in 0..n {
            let v = arr.get_i64(i);
            if v < 0 {
                return Err(KernelError::invalid(format!(
                    "Input arr must be non-negative: element {i} is {v}"
                )));
            }
            if v as u64 >= size as u64 {
                continue;
            }
            let at = (i / per_row.max(1)) * size + v as usize;
            out[at] = if binary {
                T::ONE
            } else if let Some(&w) = weights.get(i) {
                out[at].add(w)
            } else {
                out[at].add(T::ONE)
            };
        }
        ctx.set_output(Tensor::from_parts(
            out_dims.as_slice().into(),
            T::into_buffer(out),
        ));
        Ok(())
    })
}
