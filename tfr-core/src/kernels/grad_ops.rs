//! CPU kernels of the ops that gradient rules emit: shape arithmetic for shapes known only when
//! a step runs (`BroadcastGradientArgs`, `ReducedShape`, `InvertPermutation`, `ConcatOffset`),
//! scatters (`StridedSliceGrad`, `UnsortedSegmentSum`) and fused backward ops (`ReluGrad`,
//! `BiasAddGrad`).

use super::cwise_ops::unsupported;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_any, dispatch_float, dispatch_numeric};
use rayon::prelude::*;
use tfr_graph::ops::strided_slice::{strided_slice_masks, StridedSliceMasks, StridedSliceSpec};
use tfr_graph::{Buffer, DType, DTypeSet, Element};

pub fn register(r: &mut KernelRegistry) {
    r.cpu(
        "BroadcastGradientArgs",
        DTypeSet::INDEX,
        broadcast_gradient_args,
    );
    r.cpu("ReducedShape", DTypeSet::INDEX, reduced_shape);
    r.cpu("InvertPermutation", DTypeSet::INDEX, invert_permutation);
    r.cpu("ConcatOffset", DTypeSet::INDEX, concat_offset);
    r.cpu("StridedSliceGrad", DTypeSet::INDEX, strided_slice_grad);
    r.cpu(
        "UnsortedSegmentSum",
        DTypeSet::NUMERIC,
        unsorted_segment_sum,
    );
    r.cpu("ReluGrad", DTypeSet::FLOAT, relu_grad);
    r.cpu("BiasAddGrad", DTypeSet::NUMERIC, bias_add_grad);
}

/// A 1-D integer tensor of `dtype` (int64, else int32).
fn int_vector(values: &[i64], dtype: DType) -> Tensor {
    let buf = if dtype == DType::I64 {
        Buffer::I64(values.to_vec())
    } else {
        Buffer::I32(values.iter().map(|&v| v as i32).collect())
    };
    Tensor::from_parts(Dims::from_slice(&[values.len()]), buf)
}

/// Input `i` as a shape: non-negative integers.
fn input_shape(ctx: &KernelContext<'_>, i: usize) -> KResult<Vec<usize>> {
    ctx.input_ints(i)?
        .into_iter()
        .map(|d| {
            usize::try_from(d).map_err(|_| {
                KernelError::invalid(format!("input {i}: negative dim {d} in a shape"))
            })
        })
        .collect()
}

fn output_dtype(init: &KernelInit<'_>) -> DType {
    init.outputs.first().map_or(DType::I32, |t| t.dtype)
}

/// The axes to sum a broadcast of `s0` and `s1` over to get back to each (leading axes that one
/// of them lacks, and axes where it has size 1 and the broadcast does not); `None` when the
/// shapes do not broadcast.
pub fn broadcast_reduction_axes(s0: &[usize], s1: &[usize]) -> Option<(Vec<i64>, Vec<i64>)> {
    let rank = s0.len().max(s1.len());
    let (mut r0, mut r1) = (Vec::new(), Vec::new());
    let at = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map(|j| s[j]);
    for i in 0..rank {
        let (a, b) = (at(s0, i), at(s1, i));
        let (da, db) = (a.unwrap_or(1), b.unwrap_or(1));
        let out = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
        if a.is_none() || (da == 1 && out != 1) {
            r0.push(i as i64);
        }
        if b.is_none() || (db == 1 && out != 1) {
            r1.push(i as i64);
        }
    }
    Some((r0, r1))
}

fn broadcast_gradient_args(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = output_dtype(init);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let (s0, s1) = (input_shape(ctx, 0)?, input_shape(ctx, 1)?);
        let (r0, r1) = broadcast_reduction_axes(&s0, &s1).ok_or_else(|| {
            KernelError::invalid(format!("shapes {s0:?} and {s1:?} do not broadcast"))
        })?;
        ctx.set_output(int_vector(&r0, dtype));
        ctx.set_output(int_vector(&r1, dtype));
        Ok(())
    }))
}

/// Normalizes a possibly negative axis against `rank`.
fn axis_in(axis: i64, rank: usize) -> KResult<usize> {
    tfr_graph::op_def::normalize_axis(axis, rank).map_err(KernelError::invalid)
}

fn reduced_shape(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = output_dtype(init);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let mut shape = ctx.input_ints(0)?;
        let rank = shape.len();
        for a in ctx.input_ints(1)? {
            shape[axis_in(a, rank)?] = 1;
        }
        ctx.set_output(int_vector(&shape, dtype));
        Ok(())
    }))
}

fn invert_permutation(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = output_dtype(init);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let perm = ctx.input_ints(0)?;
        let n = perm.len();
        let mut inv = vec![-1i64; n];
        for (i, &p) in perm.iter().enumerate() {
            let slot = usize::try_from(p)
                .ok()
                .filter(|&p| p < n)
                .and_then(|p| inv.get_mut(p))
                .filter(|s| **s < 0)
                .ok_or_else(|| KernelError::invalid(format!("{perm:?} is not a permutation")))?;
            *slot = i as i64;
        }
        ctx.set_output(int_vector(&inv, dtype));
        Ok(())
    }))
}

fn concat_offset(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = output_dtype(init);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let axis = match ctx.input_ints(0)?.as_slice() {
            [a] => *a,
            other => {
                return Err(KernelError::invalid(format!(
                    "concat_dim must be one value, got {other:?}"
                )))
            }
        };
        let first = ctx.input_ints(1)?;
        let axis = axis_in(axis, first.len())?;
        let mut offset = 0i64;
        for i in 1..ctx.num_inputs() {
            let s = ctx.input_ints(i)?;
            let agrees = s.len() == first.len()
                && s.iter()
                    .zip(&first)
                    .enumerate()
                    .all(|(d, (a, b))| d == axis || a == b);
            if !agrees {
                return Err(KernelError::invalid(format!(
                    "shape {s:?} does not concatenate with {first:?} along axis {axis}"
                )));
            }
            let mut out = vec![0i64; s.len()];
            out[axis] = offset;
            offset += s[axis];
            ctx.set_output(int_vector(&out, dtype));
        }
        Ok(())
    }))
}

fn strided_slice_grad(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let masks = strided_slice_masks(init.attrs)?;
    let dtype = init
        .inputs
        .get(4)
        .map(|t| t.dtype)
        .ok_or("StridedSliceGrad needs 5 inputs")?;
    Ok(
        dispatch_any!(dtype, T => strided_slice_grad_typed::<T>(masks), _ => return Err(unsupported(init))),
    )
}

fn strided_slice_grad_typed<T: Element>(masks: StridedSliceMasks) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let shape = input_shape(ctx, 0)?;
        let (begin, end, strides) = (ctx.input_ints(1)?, ctx.input_ints(2)?, ctx.input_ints(3)?);
        let spec = StridedSliceSpec::resolve(&shape, &begin, &end, &strides, masks)
            .map_err(KernelError::invalid)?;
        let dy = ctx.input(4);
        let count: usize = spec.dims.iter().map(|d| d.2).product();
        if dy.num_elements() != count {
            return Err(KernelError::invalid(format!(
                "dy has shape {:?} but the slice of {shape:?} has {count} elements",
                dy.shape()
            )));
        }
        let mut buf = super::output_alloc::zeros(T::DTYPE, &shape)?;
        let out =
            T::vec_mut(&mut buf).ok_or_else(|| KernelError::internal("buffer dtype mismatch"))?;
        let src = dy.as_slice::<T>()?;
        let rank = shape.len();
        let mut stride = vec![1i64; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1] as i64;
        }
        let mut idx = vec![0usize; rank];
        for v in src.iter().take(count) {
            let offset: i64 = (0..rank)
                .map(|d| {
                    let (start, step, _) = spec.dims[d];
                    (start + idx[d] as i64 * step) * stride[d]
                })
                .sum();
            let slot = usize::try_from(offset)
                .ok()
                .and_then(|o| out.get_mut(o))
                .ok_or_else(|| KernelError::internal("strided slice offset out of range"))?;
            *slot = v.clone();
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < spec.dims[d].2 {
                    break;
                }
                idx[d] = 0;
            }
        }
        ctx.set_output(Tensor::from_parts(Dims::from_slice(&shape), buf));
        Ok(())
    })
}

fn unsorted_segment_sum(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(
        dispatch_numeric!(init.dtype(), T => unsorted_segment_sum_typed::<T>(), _ => return Err(unsupported(init))),
    )
}

fn unsorted_segment_sum_typed<T: Numeric>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let num = match ctx.input_ints(2)?.as_slice() {
            [n] if *n >= 0 => *n as usize,
            other => {
                return Err(KernelError::invalid(format!(
                    "num_segments must be one value >= 0, got {other:?}"
                )))
            }
        };
        let ids = ctx.input_ints(1)?;
        let (data, id_shape) = (ctx.input(0), ctx.input(1).shape());
        if !data.shape().starts_with(id_shape) {
            return Err(KernelError::invalid(format!(
                "segment_ids shape {id_shape:?} is not a prefix of data shape {:?}",
                data.shape()
            )));
        }
        let tail = &data.shape()[id_shape.len()..];
        let inner: usize = tail.iter().product();
        let src = data.as_slice::<T>()?;
        let mut out = vec![T::ZERO; num * inner];
        for (j, &id) in ids.iter().enumerate() {
            // A negative id drops its slice, as in TensorFlow.
            if id < 0 {
                continue;
            }
            let row = usize::try_from(id)
                .ok()
                .filter(|&r| r < num)
                .ok_or_else(|| {
                    KernelError::invalid(format!(
                        "segment id {id} at {j} is out of range [0, {num})"
                    ))
                })?;
            let dst = &mut out[row * inner..(row + 1) * inner];
            let s = &src[j * inner..(j + 1) * inner];
            dst.iter_mut().zip(s).for_each(|(a, &b)| *a = a.add(b));
        }
        let mut shape = Dims::from_slice(&[num]);
        shape.extend_from_slice(tail);
        ctx.set_output(Tensor::from_parts(shape, T::into_buffer(out)));
        Ok(())
    })
}

fn relu_grad(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(
        dispatch_float!(init.dtype(), T => relu_grad_typed::<T>(), _ => return Err(unsupported(init))),
    )
}

/// ReluGrad of at least this many elements runs in parallel, in chunks of `RELU_GRAD_CHUNK`.
const PAR_RELU_GRAD: usize = 1 << 18;
const RELU_GRAD_CHUNK: usize = 1 << 15;

fn relu_grad_typed<T: Numeric>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| {
        let f = ctx.take_input(1);
        let mut g = ctx.take_input(0);
        if g.shape() != f.shape() {
            return Err(KernelError::invalid(format!(
                "gradients {:?} and features {:?} differ in shape",
                g.shape(),
                f.shape()
            )));
        }
        let fs = f.as_slice::<T>()?;
        // A select, not a branch: the signs of the features are as good as random, and a
        // branch per element mispredicts half the time (and does not vectorize).
        let keep = |x: T| x > T::ZERO;
        if let Some(gs) = g.slice_mut::<T>() {
            let mask = |(gc, fc): (&mut [T], &[T])| {
                gc.iter_mut()
                    .zip(fc)
                    .for_each(|(a, &x)| *a = if keep(x) { *a } else { T::ZERO })
            };
            // A large gradient (a convolution's) is split over the threads: this pass is
            // memory-bound, and alone it would leave the other cores idle.
            if gs.len() >= PAR_RELU_GRAD && rayon::current_num_threads() > 1 {
                gs.par_chunks_mut(RELU_GRAD_CHUNK)
                    .zip(fs.par_chunks(RELU_GRAD_CHUNK))
                    .for_each(mask);
            } else {
                mask((gs, fs));
            }
            ctx.set_output(g);
            return Ok(());
        }
        let out: Vec<T> = g
            .as_slice::<T>()?
            .iter()
            .zip(fs)
            .map(|(&a, &x)| if keep(x) { a } else { T::ZERO })
            .collect();
        ctx.set_output(Tensor::from_parts(g.dims().clone(), T::into_buffer(out)));
        Ok(())
    })
}

fn bias_add_grad(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let nchw = match init.attrs.string("data_format")?.as_str() {
        "NHWC" => false,
        "NCHW" => true,
        other => return Err(format!("data_format must be NHWC or NCHW, got {other}")),
    };
    Ok(
        dispatch_numeric!(init.dtype(), T => bias_add_grad_typed::<T>(nchw), _ => return Err(unsupported(init))),
    )
}

fn bias_add_grad_typed<T: Numeric>(nchw: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let g = ctx.input(0);
        let s = g.shape();
        let min_rank = if nchw { 3 } else { 2 };
        if s.len() < min_rank {
            return Err(KernelError::invalid(format!(
                "out_backprop must have rank >= {min_rank}, got shape {s:?}"
            )));
        }
        let c_axis = if nchw { 1 } else { s.len() - 1 };
        let c = s[c_axis];
        // Viewed as [outer, c, inner].
        let outer: usize = s[..c_axis].iter().product();
        let inner: usize = s[c_axis + 1..].iter().product();
        let src = g.as_slice::<T>()?;
        let mut out = vec![T::ZERO; c];
        if inner == 1 && c > 0 {
            // NHWC: channels are contiguous, so whole rows add at once (vectorized).
            for row in src.chunks_exact(c) {
                out.iter_mut()
                    .zip(row)
                    .for_each(|(acc, &v)| *acc = acc.add(v));
            }
            ctx.set_output(Tensor::from_parts(
                Dims::from_slice(&[c]),
                T::into_buffer(out),
            ));
            return Ok(());
        }
        for o in 0..outer {
            for (k, acc) in out.iter_mut().enumerate() {
                let base = (o * c + k) * inner;
                for &v in &src[base..base + inner] {
                    *acc = acc.add(v);
                }
            }
        }
        ctx.set_output(Tensor::from_parts(
            Dims::from_slice(&[c]),
            T::into_buffer(out),
        ));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_reduction_axes_like_tensorflow() {
        assert_eq!(
            broadcast_reduction_axes(&[2, 3], &[3]),
            Some((vec![], vec![0]))
        );
        assert_eq!(
            broadcast_reduction_axes(&[2, 1], &[1, 3]),
            Some((vec![1], vec![0]))
        );
        assert_eq!(
            broadcast_reduction_axes(&[], &[2, 3]),
            Some((vec![0, 1], vec![]))
        );
        assert_eq!(
            broadcast_reduction_axes(&[1, 1], &[1]),
            Some((vec![], vec![0]))
        );
        assert_eq!(
            broadcast_reduction_axes(&[0, 1], &[1, 3]),
            Some((vec![1], vec![0]))
        );
        assert_eq!(broadcast_reduction_axes(&[2], &[3]), None);
    }
}
