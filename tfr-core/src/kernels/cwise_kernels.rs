//! The shapes of elementwise kernels, each around an element function: unary maps, binary
//! ops with broadcasting (in place when an operand is uniquely held), and comparisons; each
//! with its scalar fast path and its compiled scalar form (see `crate::scalar_code`).

use super::broadcast::{
    apply_repeat, broadcast_shape, for_each_broadcast, repeat_pattern, update_repeat,
};
use crate::error::KResult;
use crate::kernel::{KernelContext, OpKernel};
use crate::scalar_code::{dtypes_are, Register, ScalarCode};
use crate::tensor::{Dims, Scalar, Tensor};
use std::marker::PhantomData;
use std::sync::Arc;
use tfr_graph::Element;

/// `y = f(x)` elementwise, in place when `x` is uniquely held.
pub fn map_kernel<T, F>(f: F) -> Box<dyn OpKernel>
where
    T: Element + Copy,
    F: Fn(T) -> T + Send + Sync + 'static,
{
    Box::new(MapKernel {
        f: Arc::new(f),
        _t: PhantomData::<fn(T)>,
    })
}

struct MapKernel<T, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> OpKernel for MapKernel<T, F>
where
    T: Element + Copy,
    F: Fn(T) -> T + Send + Sync + 'static,
{
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult {
        let f = &*self.f;
        let mut x = ctx.take_input(0);
        if let Some(s) = x.slice_mut::<T>() {
            s.iter_mut().for_each(|v| *v = f(*v));
            ctx.set_output(x);
            return Ok(());
        }
        let out: Vec<T> = x.as_slice::<T>()?.iter().map(|&v| f(v)).collect();
        ctx.set_output(Tensor::from_parts(x.dims().clone(), T::into_buffer(out)));
        Ok(())
    }
    fn has_scalar_path(&self) -> bool {
        true
    }
    #[inline]
    fn compute_scalar(&self, inputs: &[&Scalar], out: &mut Scalar) -> bool {
        let [a] = inputs else { return false };
        match a.get::<T>().and_then(|a| Scalar::of(&(self.f)(*a))) {
            Some(s) => {
                *out = s;
                true
            }
            None => false,
        }
    }
    fn compile_scalar(&self, inputs: &[Register], output: Register, code: &mut ScalarCode) -> bool {
        let [a] = *inputs else { return false };
        if !dtypes_are::<T, T>(inputs, output) {
            return false;
        }
        let f = self.f.clone();
        code.push_unary::<T, T>(move |x| f(x), a.index, output.index);
        true
    }
}

/// The compiled scalar path of a binary kernel: `r[out] = f(r[a], r[b])`.
fn compile_binary<T, U, F>(
    f: &Arc<F>,
    inputs: &[Register],
    output: Register,
    code: &mut ScalarCode,
) -> bool
where
    T: Element + Copy,
    U: Element,
    F: Fn(T, T) -> U + Send + Sync + 'static,
{
    let [a, b] = *inputs else { return false };
    if !dtypes_are::<T, U>(inputs, output) {
        return false;
    }
    let f = f.clone();
    code.push_binary::<T, U>(move |x, y| f(x, y), a.index, b.index, output.index);
    true
}

/// `f(x, y)` with numpy broadcasting into a new tensor.
pub fn binary_apply<A, B, U>(x: &Tensor, y: &Tensor, f: impl Fn(A, B) -> U) -> KResult<Tensor>
where
    A: Element + Copy,
    B: Element + Copy,
    U: Element,
{
    let (xs, ys) = (x.as_slice::<A>()?, y.as_slice::<B>()?);
    if let ([a], [b], 0, 0) = (xs, ys, x.rank(), y.rank()) {
        // Scalars (loop counters, predicates): held inline, no allocation.
        return Ok(Tensor::scalar(f(*a, *b)));
    }
    let (out_shape, out): (Dims, Vec<U>) = if x.same_shape(y) {
        (
            x.dims().clone(),
            xs.iter().zip(ys).map(|(&a, &b)| f(a, b)).collect(),
        )
    } else if ys.len() == 1 && broadcast_shape(&[x.shape(), y.shape()])?[..] == *x.shape() {
        let b = ys[0];
        (x.dims().clone(), xs.iter().map(|&a| f(a, b)).collect())
    } else if xs.len() == 1 && broadcast_shape(&[x.shape(), y.shape()])?[..] == *y.shape() {
        let a = xs[0];
        (y.dims().clone(), ys.iter().map(|&b| f(a, b)).collect())
    } else if let Some(r) = repeat_pattern(x.shape(), y.shape()) {
        (x.dims().clone(), apply_repeat(xs, ys, r, &f))
    } else if let Some(r) = repeat_pattern(y.shape(), x.shape()) {
        (y.dims().clone(), apply_repeat(ys, xs, r, |b, a| f(a, b)))
    } else {
        let shape = broadcast_shape(&[x.shape(), y.shape()])?;
        let mut out = Vec::with_capacity(shape.iter().product());
        for_each_broadcast(&shape, [x.shape(), y.shape()], |_, [i, j]| {
            out.push(f(xs[i], ys[j]))
        });
        (shape, out)
    };
    Ok(Tensor::from_parts(out_shape, U::into_buffer(out)))
}

/// `z = f(x, y)` of one element type, written into `x` or `y` when one of them is uniquely
/// held and already has the output's shape.
pub fn zip_kernel<T, F>(f: F) -> Box<dyn OpKernel>
where
    T: Element + Copy,
    F: Fn(T, T) -> T + Send + Sync + 'static,
{
    Box::new(ZipKernel {
        f: Arc::new(f),
        _t: PhantomData::<fn(T)>,
    })
}

struct ZipKernel<T, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> OpKernel for ZipKernel<T, F>
where
    T: Element + Copy,
    F: Fn(T, T) -> T + Send + Sync + 'static,
{
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult {
        let f = &*self.f;
        let mut y = ctx.take_input(1);
        let mut x = ctx.take_input(0);
        if x.same_shape(&y) || y.num_elements() == 1 && x.rank() >= y.rank() {
            let ys_len = y.num_elements();
            if let (Some(xs), Ok(ys)) = (x.slice_mut::<T>(), y.as_slice::<T>()) {
                if ys_len == 1 {
                    let b = ys[0];
                    xs.iter_mut().for_each(|a| *a = f(*a, b));
                } else {
                    xs.iter_mut().zip(ys).for_each(|(a, &b)| *a = f(*a, b));
                }
                ctx.set_output(x);
                return Ok(());
            }
        }
        if x.same_shape(&y) || x.num_elements() == 1 && y.rank() >= x.rank() {
            let xs_len = x.num_elements();
            if let (Ok(xs), Some(ys)) = (x.as_slice::<T>(), y.slice_mut::<T>()) {
                if xs_len == 1 {
                    let a = xs[0];
                    ys.iter_mut().for_each(|b| *b = f(a, *b));
                } else {
                    ys.iter_mut().zip(xs).for_each(|(b, &a)| *b = f(a, *b));
                }
                ctx.set_output(y);
                return Ok(());
            }
        }
        // A bias row or a column broadcast over a uniquely held operand: in place.
        if let Some(r) = repeat_pattern(x.shape(), y.shape()) {
            if let (Some(xs), Ok(ys)) = (x.slice_mut::<T>(), y.as_slice::<T>()) {
                update_repeat(xs, ys, r, f);
                ctx.set_output(x);
                return Ok(());
            }
        }
        if let Some(r) = repeat_pattern(y.shape(), x.shape()) {
            if let (Ok(xs), Some(ys)) = (x.as_slice::<T>(), y.slice_mut::<T>()) {
                update_repeat(ys, xs, r, |b, a| f(a, b));
                ctx.set_output(y);
                return Ok(());
            }
        }
        ctx.set_output(binary_apply::<T, T, T>(&x, &y, f)?);
        Ok(())
    }
    fn has_scalar_path(&self) -> bool {
        true
    }
    #[inline]
    fn compute_scalar(&self, inputs: &[&Scalar], out: &mut Scalar) -> bool {
        zip_scalar(&*self.f, inputs, out)
    }
    fn compile_scalar(&self, inputs: &[Register], output: Register, code: &mut ScalarCode) -> bool {
        compile_binary(&self.f, inputs, output, code)
    }
}

/// The scalar path of a binary kernel: `out = f(a, b)` for two scalars of type `T`; false
/// (declined) for other inputs or an output type a `Scalar` cannot hold.
#[inline]
fn zip_scalar<T: Element + Copy, U: Element>(
    f: &impl Fn(T, T) -> U,
    inputs: &[&Scalar],
    out: &mut Scalar,
) -> bool {
    let [a, b] = inputs else { return false };
    match (a.get::<T>(), b.get::<T>()) {
        (Some(&a), Some(&b)) => match Scalar::of(&f(a, b)) {
            Some(s) => {
                *out = s;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// `z = f(x, y)` with a different output type (comparisons).
pub fn zip_to_kernel<T, U, F>(f: F) -> Box<dyn OpKernel>
where
    T: Element + Copy,
    U: Element,
    F: Fn(T, T) -> U + Send + Sync + 'static,
{
    Box::new(ZipToKernel {
        f: Arc::new(f),
        _t: PhantomData::<fn(T) -> U>,
    })
}

struct ZipToKernel<T, U, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T) -> U>,
}

impl<T, U, F> OpKernel for ZipToKernel<T, U, F>
where
    T: Element + Copy,
    U: Element,
    F: Fn(T, T) -> U + Send + Sync + 'static,
{
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult {
        let out = binary_apply::<T, T, U>(ctx.input(0), ctx.input(1), &*self.f)?;
        ctx.set_output(out);
        Ok(())
    }
    fn has_scalar_path(&self) -> bool {
        true
    }
    #[inline]
    fn compute_scalar(&self, inputs: &[&Scalar], out: &mut Scalar) -> bool {
        zip_scalar(&*self.f, inputs, out)
    }
    fn compile_scalar(&self, inputs: &[Register], output: Register, code: &mut ScalarCode) -> bool {
        compile_binary(&self.f, inputs, output, code)
    }
}
