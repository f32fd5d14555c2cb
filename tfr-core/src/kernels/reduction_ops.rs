//! Reductions: Sum, Mean, Max, Min, Prod, All, Any, LogSumExp, ArgMax and ArgMin.
//!
//! Every reduction is planned on a 3-D view `[outer, mid, inner]` of its input, reducing `mid`:
//! size-1 dims are dropped and adjacent dims that are both reduced or both kept are merged, so
//! reductions over contiguous inner axes (`inner == 1`, rows) or outer axes (`outer == 1`,
//! columns) read memory in order. Other axis patterns first gather the input into
//! `[kept..., reduced...]` order. Large inputs split into fixed-size pieces on rayon; the split
//! depends only on the shapes, so results do not depend on the number of threads.

use super::cwise_ops::unsupported;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::{FloatElem, Numeric};
use crate::tensor::{Dims, Tensor};
use crate::{dispatch_float, dispatch_numeric};
use rayon::prelude::*;
use std::marker::PhantomData;
use tfr_graph::{DType, DTypeSet, Element};

/// Inputs with more elements than this are reduced in parallel.
const PAR_THRESHOLD: usize = 1 << 15;
/// Elements per parallel piece.
const GRAIN: usize = 1 << 14;

/// A reduction: a fold with an associative `merge` of partial results.
pub trait Reducer: Copy + Send + Sync + 'static {
    type In: Element + Copy;
    type Acc: Copy + Send + Sync;
    fn init(self) -> Self::Acc;
    fn step(self, acc: Self::Acc, x: Self::In) -> Self::Acc;
    fn merge(self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The result from the fold of `count` elements (`count` may be 0).
    fn finish(self, acc: Self::Acc, count: usize) -> Self::In;
}

macro_rules! reducer_struct {
    ($($name:ident),*) => {$(
        #[derive(Debug)]
        pub struct $name<T>(PhantomData<fn() -> T>);
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T> Copy for $name<T> {}
        impl<T> Default for $name<T> {
            fn default() -> Self {
                $name(PhantomData)
            }
        }
    )*};
}
reducer_struct!(SumR, ProdR, MaxR, MinR, FloatMeanR, IntMeanR, LogSumExpR);

#[inline(always)]
fn max_nan<T: Numeric>(a: T, b: T) -> T {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

#[inline(always)]
fn min_nan<T: Numeric>(a: T, b: T) -> T {
    if b < a || b.is_nan() {
        b
    } else {
        a
    }
}

impl<T: Numeric> Reducer for SumR<T> {
    type In = T;
    type Acc = T;
    fn init(self) -> T {
        T::ZERO
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        a.add(x)
    }
    #[inline(always)]
    fn merge(self, a: T, b: T) -> T {
        a.add(b)
    }
    fn finish(self, a: T, _: usize) -> T {
        a
    }
}

impl<T: Numeric> Reducer for ProdR<T> {
    type In = T;
    type Acc = T;
    fn init(self) -> T {
        T::ONE
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        a.mul(x)
    }
    #[inline(always)]
    fn merge(self, a: T, b: T) -> T {
        a.mul(b)
    }
    fn finish(self, a: T, _: usize) -> T {
        a
    }
}

/// Max; NaN propagates; the lowest value (-inf for floats) over no elements.
impl<T: Numeric> Reducer for MaxR<T> {
    type In = T;
    type Acc = T;
    fn init(self) -> T {
        T::min_value()
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        max_nan(a, x)
    }
    #[inline(always)]
    fn merge(self, a: T, b: T) -> T {
        max_nan(a, b)
    }
    fn finish(self, a: T, _: usize) -> T {
        a
    }
}

/// Min; NaN propagates; the highest value (+inf for floats) over no elements.
impl<T: Numeric> Reducer for MinR<T> {
    type In = T;
    type Acc = T;
    fn init(self) -> T {
        T::max_value()
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        min_nan(a, x)
    }
    #[inline(always)]
    fn merge(self, a: T, b: T) -> T {
        min_nan(a, b)
    }
    fn finish(self, a: T, _: usize) -> T {
        a
    }
}

/// Float mean: the sum over the count (NaN over no elements, as 0 / 0).
impl<T: FloatElem> Reducer for FloatMeanR<T> {
    type In = T;
    type Acc = T;
    fn init(self) -> T {
        <T as Numeric>::ZERO
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        a + x
    }
    #[inline(always)]
    fn merge(self, a: T, b: T) -> T {
        a + b
    }
    fn finish(self, a: T, count: usize) -> T {
        a / <T as Numeric>::from_f64(count as f64)
    }
}

/// Integer element types whose means accumulate in i64.
pub trait IntElem: Numeric + Into<i64> {
    /// `v as Self` (the caller knows `v` is in range).
    fn from_i64(v: i64) -> Self;
}
impl IntElem for i32 {
    fn from_i64(v: i64) -> Self {
        v as i32
    }
}
impl IntElem for i64 {
    fn from_i64(v: i64) -> Self {
        v
    }
}
impl IntElem for u8 {
    fn from_i64(v: i64) -> Self {
        v as u8
    }
}

/// Integer mean: the sum (accumulated in i64, so narrow types do not wrap) divided by the
/// count, truncated toward zero as in TensorFlow; 0 over no elements.
impl<T: IntElem> Reducer for IntMeanR<T> {
    type In = T;
    type Acc = i64;
    fn init(self) -> i64 {
        0
    }
    #[inline(always)]
    fn step(self, a: i64, x: T) -> i64 {
        a.wrapping_add(x.into())
    }
    #[inline(always)]
    fn merge(self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
    fn finish(self, a: i64, count: usize) -> T {
        match i64::try_from(count) {
            Ok(c) if c > 0 => T::from_i64(a.wrapping_div(c)),
            _ => T::ZERO,
        }
    }
}

/// log(sum(exp(x))) as a streaming fold of (running max m, sum of exp(x - m)): every exponent
/// is taken after subtracting the max seen so far, so large inputs do not overflow.
impl<T: FloatElem> Reducer for LogSumExpR<T> {
    type In = T;
    type Acc = (T, T);
    fn init(self) -> (T, T) {
        (T::neg_infinity(), <T as Numeric>::ZERO)
    }
    #[inline(always)]
    fn step(self, (m, s): (T, T), x: T) -> (T, T) {
        if x == T::neg_infinity() {
            // exp(-inf) adds nothing (and -inf - -inf would be NaN).
            (m, s)
        } else if x > m {
            // Also the first element: s is 0 then, and 0 * exp(-inf) is 0.
            (x, s * (m - x).exp() + <T as Numeric>::ONE)
        } else if x == m {
            // Equal maxima, including two +infs (whose difference would be NaN).
            (m, s + <T as Numeric>::ONE)
        } else {
            // NaN lands here and makes the sum NaN.
            (m, s + (x - m).exp())
        }
    }
    fn merge(self, a: (T, T), b: (T, T)) -> (T, T) {
        if b.1 == <T as Numeric>::ZERO {
            a
        } else if a.1 == <T as Numeric>::ZERO {
            b
        } else if a.0 == b.0 {
            (a.0, a.1 + b.1)
        } else if a.0 > b.0 {
            (a.0, a.1 + b.1 * (b.0 - a.0).exp())
        } else {
            (b.0, b.1 + a.1 * (a.0 - b.0).exp())
        }
    }
    fn finish(self, (m, s): (T, T), _: usize) -> T {
        if s == <T as Numeric>::ZERO {
            T::neg_infinity()
        } else {
            s.ln() + m
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct AllR;
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyR;

impl Reducer for AllR {
    type In = bool;
    type Acc = bool;
    fn init(self) -> bool {
        true
    }
    #[inline(always)]
    fn step(self, a: bool, x: bool) -> bool {
        a & x
    }
    #[inline(always)]
    fn merge(self, a: bool, b: bool) -> bool {
        a & b
    }
    fn finish(self, a: bool, _: usize) -> bool {
        a
    }
}

impl Reducer for AnyR {
    type In = bool;
    type Acc = bool;
    fn init(self) -> bool {
        false
    }
    #[inline(always)]
    fn step(self, a: bool, x: bool) -> bool {
        a | x
    }
    #[inline(always)]
    fn merge(self, a: bool, b: bool) -> bool {
        a | b
    }
    fn finish(self, a: bool, _: usize) -> bool {
        a
    }
}

// ---- planning -----------------------------------------------------------------------------------

/// The reduction axes named by an axis tensor (a scalar or vector of ints): normalized,
/// sorted and without repeats.
pub fn read_axes(ctx: &KernelContext<'_>, i: usize, rank: usize) -> KResult<Vec<usize>> {
    let t = ctx.input(i);
    if t.rank() > 1 {
        return Err(KernelError::invalid(format!(
            "axis must be a scalar or vector, got shape {:?}",
            t.shape()
        )));
    }
    let mut axes = ctx
        .input_ints(i)?
        .into_iter()
        .map(|a| normalize(a, rank))
        .collect::<KResult<Vec<_>>>()?;
    axes.sort_unstable();
    axes.dedup();
    Ok(axes)
}

fn normalize(axis: i64, rank: usize) -> KResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(KernelError::invalid(format!(
            "axis {axis} is out of range for an input of rank {rank} (expected an axis in [{}, {}))",
            -r, r
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// The output dims of reducing `dims` over `axes`.
pub fn reduced_dims(dims: &[usize], axes: &[usize], keep_dims: bool) -> Dims {
    dims.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// How to read an input as `[outer, mid, inner]` with `mid` reduced.
#[derive(Debug, PartialEq)]
struct Plan {
    outer: usize,
    mid: usize,
    inner: usize,
    /// When the reduced dims are not one contiguous block: the merged dims of the input and the
    /// order (kept dims first, then reduced dims) to gather them into first.
    gather: Option<(Vec<usize>, Vec<usize>)>,
}

fn plan(dims: &[usize], axes: &[usize]) -> Plan {
    // Merge adjacent dims of the same kind; size-1 dims belong to either.
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for (i, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let reduced = axes.contains(&i);
        match groups.last_mut() {
            Some((size, r)) if *r == reduced => *size *= d,
            _ => groups.push((d, reduced)),
        }
    }
    let size = |g: &[(usize, bool)], reduced: bool| -> usize {
        g.iter().filter(|x| x.1 == reduced).map(|x| x.0).product()
    };
    let contiguous = groups.iter().filter(|g| g.1).count() <= 1;
    if contiguous {
        let split = groups.iter().position(|g| g.1).unwrap_or(groups.len());
        let outer = groups[..split].iter().map(|g| g.0).product();
        let mid = groups.get(split).map_or(1, |g| g.0);
        let inner = groups
            .get(split + 1..)
            .map_or(1, |g| g.iter().map(|x| x.0).product());
        return Plan {
            outer,
            mid,
            inner,
            gather: None,
        };
    }
    let merged: Vec<usize> = groups.iter().map(|g| g.0).collect();
    let order: Vec<usize> = (0..groups.len())
        .filter(|&i| !groups[i].1)
        .chain((0..groups.len()).filter(|&i| groups[i].1))
        .collect();
    Plan {
        outer: size(&groups, false),
        mid: size(&groups, true),
        inner: 1,
        gather: Some((merged, order)),
    }
}

/// Copies `x` (row-major with `dims`) into the dim order `perm`.
pub fn permute<T: Copy>(x: &[T], dims: &[usize], perm: &[usize]) -> Vec<T> {
    let rank = dims.len();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let src_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    if rank == 0 {
        out.extend_from_slice(&x[..1]);
        return out;
    }
    let last = rank - 1;
    let mut idx = vec![0usize; rank];
    let mut base = 0usize;
    loop {
        let s = src_strides[last];
        out.extend((0..out_dims[last]).map(|j| x[base + j * s]));
        let mut d = last;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            base += src_strides[d];
            if idx[d] < out_dims[d] {
                break;
            }
            base -= src_strides[d] * out_dims[d];
            idx[d] = 0;
        }
    }
}

// ---- execution ----------------------------------------------------------------------------------

/// Folds a contiguous slice, with 8 independent accumulators for long slices (faster, and
/// shorter dependency chains also round less).
#[inline]
fn fold_slice<R: Reducer>(r: R, xs: &[R::In]) -> R::Acc {
    if xs.len() < 32 {
        return xs.iter().fold(r.init(), |a, &x| r.step(a, x));
    }
    let mut lanes = [r.init(); 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = r.step(*l, x);
        }
    }
    let mut acc = lanes[0];
    for &l in &lanes[1..] {
        acc = r.merge(acc, l);
    }
    rest.iter().fold(acc, |a, &x| r.step(a, x))
}

/// Folds rows `x[m * inner .. (m + 1) * inner]` for `m` in `0..rows` into `acc` (`inner`
/// accumulators, one per column).
#[inline]
fn fold_block<R: Reducer>(r: R, x: &[R::In], rows: usize, inner: usize, acc: &mut [R::Acc]) {
    if inner == 1 {
        acc[0] = r.merge(acc[0], fold_slice(r, &x[..rows]));
        return;
    }
    for row in x.chunks_exact(inner).take(rows) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = r.step(*a, v);
        }
    }
}

/// Reduces `x`, read as `[outer, mid, inner]`, over `mid`.
fn reduce3<R: Reducer>(r: R, x: &[R::In], outer: usize, mid: usize, inner: usize) -> Vec<R::In> {
    let n_out = outer * inner;
    if n_out == 0 {
        return Vec::new();
    }
    let mut acc = vec![r.init(); n_out];
    let slab = mid * inner;
    if x.len() <= PAR_THRESHOLD || slab == 0 {
        for (o, a) in acc.chunks_exact_mut(inner).enumerate() {
            fold_block(r, &x[o * slab..], mid, inner, a);
        }
    } else if outer > GRAIN.div_ceil(slab) {
        // Many slabs: each piece reduces whole slabs.
        let per = GRAIN.div_ceil(slab);
        acc.par_chunks_mut(per * inner)
            .enumerate()
            .for_each(|(p, a)| {
                for (k, a) in a.chunks_exact_mut(inner).enumerate() {
                    let o = p * per + k;
                    fold_block(r, &x[o * slab..], mid, inner, a);
                }
            });
    } else {
        // Few large slabs: split each along `mid` into at most 8 pieces (a fixed count: the
        // summation order does not depend on the threads; not a piece per long row, each
        // piece's partial row is merged serially) and merge the pieces in order.
        let rows_per = GRAIN.div_ceil(inner).max(mid.div_ceil(8)).max(1);
        for (o, a) in acc.chunks_exact_mut(inner).enumerate() {
            let slab_x = &x[o * slab..(o + 1) * slab];
            let parts: Vec<Vec<R::Acc>> = slab_x
                .par_chunks(rows_per * inner)
                .map(|piece| {
                    let mut part = vec![r.init(); inner];
                    fold_block(r, piece, piece.len() / inner, inner, &mut part);
                    part
                })
                .collect();
            for part in parts {
                for (a, p) in a.iter_mut().zip(part) {
                    *a = r.merge(*a, p);
                }
            }
        }
    }
    acc.into_iter().map(|a| r.finish(a, mid)).collect()
}

/// Reduces `x` over `axes` (sorted, unique, non-empty).
pub fn reduce<R: Reducer>(r: R, x: &[R::In], dims: &[usize], axes: &[usize]) -> Vec<R::In> {
    let p = plan(dims, axes);
    match &p.gather {
        None => reduce3(r, x, p.outer, p.mid, p.inner),
        Some((merged, order)) => {
            let g = permute(x, merged, order);
            reduce3(r, &g, p.outer, p.mid, p.inner)
        }
    }
}

fn reduce_kernel<R: Reducer>(r: R, keep_dims: bool) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let axes = read_axes(ctx, 1, ctx.input(0).rank())?;
        let x = ctx.take_input(0);
        if axes.is_empty() {
            ctx.set_output(x);
            return Ok(());
        }
        let out_dims = reduced_dims(x.shape(), &axes, keep_dims);
        let out = reduce(r, x.as_slice::<R::In>()?, x.shape(), &axes);
        ctx.set_output(Tensor::from_parts(out_dims, R::In::into_buffer(out)));
        Ok(())
    })
}

fn keep_dims(init: &KernelInit<'_>) -> Result<bool, String> {
    init.attrs.boolean("keep_dims").copied()
}

fn sum_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let k = keep_dims(init)?;
    Ok(
        dispatch_numeric!(init.dtype(), T => reduce_kernel(SumR::<T>::default(), k), _ => return Err(unsupported(init))),
    )
}

fn prod_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let k = keep_dims(init)?;
    Ok(
        dispatch_numeric!(init.dtype(), T => reduce_kernel(ProdR::<T>::default(), k), _ => return Err(unsupported(init))),
    )
}

fn max_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let k = keep_dims(init)?;
    Ok(
        dispatch_numeric!(init.dtype(), T => reduce_kernel(MaxR::<T>::default(), k), _ => return Err(unsupported(init))),
    )
}

fn min_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let k = keep_dims(init)?;
    Ok(
        dispatch_numeric!(init.dtype(), T => reduce_kernel(MinR::<T>::default(), k), _ => return Err(unsupported(init))),
    )
}

fn mean_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let k = keep_dims(init)?;
    Ok(match init.dtype() {
        DType::F32 => reduce_kernel(FloatMeanR::<f32>::default(), k),
        DType::F64 => reduce_kernel(FloatMeanR::<f64>::default(), k),
        DType::I32 => reduce_kernel(IntMeanR::<i32>::default(), k),
        DType::I64 => reduce_kernel(IntMeanR::<i64>::default(), k),
        DType::U8 => reduce_kernel(IntMeanR::<u8>::default(), k),
        _ => return Err(unsupported(init)),
    })
}

fn logsumexp_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let k = keep_dims(init)?;
    Ok(
        dispatch_float!(init.dtype(), T => reduce_kernel(LogSumExpR::<T>::default(), k), _ => return Err(unsupported(init))),
    )
}

// ---- ArgMax / ArgMin ----------------------------------------------------------------------------

/// True when `x` should replace `best`: strictly more extreme (so ties keep the first index),
/// or the first NaN (as numpy).
#[inline(always)]
fn beats<T: Numeric, const MAX: bool>(x: T, best: T) -> bool {
    if best.is_nan() {
        return false;
    }
    x.is_nan() || if MAX { x > best } else { x < best }
}

/// The index of the extreme value along `mid` of each `[mid, inner]` slab, written to `out`.
fn arg_slab<T: Numeric, const MAX: bool>(x: &[T], mid: usize, inner: usize, out: &mut [i64]) {
    if inner == 1 {
        let (mut bi, mut bv) = (0usize, x[0]);
        for (i, &v) in x[..mid].iter().enumerate().skip(1) {
            if beats::<T, MAX>(v, bv) {
                bi = i;
                bv = v;
            }
        }
        out[0] = bi as i64;
        return;
    }
    let mut best: Vec<T> = x[..inner].to_vec();
    out.fill(0);
    for (m, row) in x.chunks_exact(inner).enumerate().take(mid).skip(1) {
        for ((b, o), &v) in best.iter_mut().zip(out.iter_mut()).zip(row) {
            if beats::<T, MAX>(v, *b) {
                *b = v;
                *o = m as i64;
            }
        }
    }
}

fn arg_kernel<T: Numeric, const MAX: bool>(out_type: DType) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| {
        let x = ctx.input(0);
        let dims = x.shape();
        if dims.is_empty() {
            return Err(KernelError::invalid(
                "input must have rank >= 1, got a scalar",
            ));
        }
        let dim_t = ctx.input(1);
        let axis = match (dim_t.rank(), dim_t.num_elements()) {
            (0, _) | (1, 1) => ctx.input_ints(1)?[0],
            _ => {
                return Err(KernelError::invalid(format!(
                    "dimension must be a scalar, got shape {:?}",
                    dim_t.shape()
                )))
            }
        };
        let axis = normalize(axis, dims.len())?;
        let mid = dims[axis];
        if mid == 0 {
            return Err(KernelError::invalid(format!(
                "reduction axis {axis} is empty in shape {dims:?} (expected at least one element along it)"
            )));
        }
        if out_type == DType::I32 && mid > i32::MAX as usize {
            return Err(KernelError::invalid(format!(
                "axis {axis} has {mid} entries, more than an int32 index can hold"
            )));
        }
        let outer: usize = dims[..axis].iter().product();
        let inner: usize = dims[axis + 1..].iter().product();
        let out_dims: Dims = dims
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != axis)
            .map(|(_, &d)| d)
            .collect();
        let xs = x.as_slice::<T>()?;
        let mut idx = vec![0i64; outer * inner];
        let slab = mid * inner;
        if inner > 0 {
            if xs.len() > PAR_THRESHOLD && outer > 1 {
                idx.par_chunks_mut(inner)
                    .with_min_len((GRAIN / slab).max(1))
                    .enumerate()
                    .for_each(|(o, out)| arg_slab::<T, MAX>(&xs[o * slab..], mid, inner, out));
            } else {
                for (o, out) in idx.chunks_exact_mut(inner).enumerate() {
                    arg_slab::<T, MAX>(&xs[o * slab..], mid, inner, out);
                }
            }
        }
        let buf = match out_type {
            DType::I32 => i32::into_buffer(idx.into_iter().map(|i| i as i32).collect()),
            _ => i64::into_buffer(idx),
        };
        ctx.set_output(Tensor::from_parts(out_dims, buf));
        Ok(())
    })
}

fn arg_factory<const MAX: bool>(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let out_type = *init.attrs.dtype("output_type")?;
    if !DTypeSet::INDEX.contains(out_type) {
        return Err(format!(
            "output_type must be int32 or int64, got {out_type}"
        ));
    }
    Ok(
        dispatch_numeric!(init.dtype(), T => arg_kernel::<T, MAX>(out_type), _ => return Err(unsupported(init))),
    )
}

pub fn register(r: &mut KernelRegistry) {
    r.cpu("Sum", DTypeSet::NUMERIC, sum_kernel);
    r.cpu("Mean", DTypeSet::NUMERIC, mean_kernel);
    r.cpu("Max", DTypeSet::NUMERIC, max_kernel);
    r.cpu("Min", DTypeSet::NUMERIC, min_kernel);
    r.cpu("Prod", DTypeSet::NUMERIC, prod_kernel);
    r.cpu("All", DTypeSet::BOOL, |init| {
        Ok(reduce_kernel(AllR, keep_dims(init)?))
    });
    r.cpu("Any", DTypeSet::BOOL, |init| {
        Ok(reduce_kernel(AnyR, keep_dims(init)?))
    });
    r.cpu("LogSumExp", DTypeSet::FLOAT, logsumexp_kernel);
    r.cpu("ArgMax", DTypeSet::NUMERIC, arg_factory::<true>);
    r.cpu("ArgMin", DTypeSet::NUMERIC, arg_factory::<false>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_merge_adjacent_dims() {
        let p = plan(&[2, 3, 4], &[1, 2]);
        assert_eq!((p.outer, p.mid, p.inner, p.gather), (2, 12, 1, None));
        let p = plan(&[2, 3, 4], &[0]);
        assert_eq!((p.outer, p.mid, p.inner, p.gather), (1, 2, 12, None));
        let p = plan(&[2, 1, 3, 4], &[0, 2]);
        assert_eq!((p.outer, p.mid, p.inner, p.gather), (1, 6, 4, None));
        let p = plan(&[2, 3, 4], &[0, 2]);
        assert_eq!((p.outer, p.mid, p.inner), (3, 8, 1));
        assert_eq!(p.gather, Some((vec![2, 3, 4], vec![1, 0, 2])));
        let p = plan(&[1, 1], &[0]);
        assert_eq!((p.outer, p.mid, p.inner, p.gather), (1, 1, 1, None));
    }

    #[test]
    fn permute_gathers() {
        let x: Vec<i32> = (0..6).collect();
        assert_eq!(permute(&x, &[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(permute(&x, &[2, 3], &[0, 1]), x);
    }

    #[test]
    fn parallel_paths_match_sequential() {
        let x: Vec<f64> = (0..100_000).map(|i| ((i * 7919) % 1000) as f64).collect();
        let total: f64 = x.iter().sum();
        // Few large slabs (split along mid) and many slabs.
        let all = reduce3(SumR::<f64>::default(), &x, 1, 100_000, 1);
        assert_eq!(all, vec![total]);
        let cols = reduce3(SumR::<f64>::default(), &x, 1, 1000, 100);
        for (j, &c) in cols.iter().enumerate() {
            let want: f64 = (0..1000).map(|i| x[i * 100 + j]).sum();
            assert_eq!(c, want);
        }
        let rows = reduce3(MaxR::<f64>::default(), &x, 50_000, 2, 1);
        for (o, &v) in rows.iter().enumerate() {
            assert_eq!(v, x[2 * o].max(x[2 * o + 1]));
        }
    }

    #[test]
    fn logsumexp_fold_handles_infinities() {
        let r = LogSumExpR::<f64>::default();
        let f = |xs: &[f64]| r.finish(fold_slice(r, xs), xs.len());
        assert_eq!(f(&[]), f64::NEG_INFINITY);
        assert_eq!(
            f(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
            f64::NEG_INFINITY
        );
        assert_eq!(f(&[f64::INFINITY, f64::INFINITY, 1.0]), f64::INFINITY);
        assert!(f(&[1.0, f64::NAN]).is_nan());
        let xs: Vec<f64> = (0..100).map(|i| i as f64 * 0.5).collect();
        let want = xs.iter().map(|v| v.exp()).sum::<f64>().ln();
        assert!((f(&xs) - want).abs() < 1e-12);
    }
}
