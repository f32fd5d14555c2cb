//! `FusedElementwise`: a region of elementwise ops (see `tfr_graph::fusion::ElementwiseProgram`)
//! evaluated block by block. Each instruction runs over a block of at most [`BLOCK`] elements
//! into a scratch slot, so a region's intermediate values never leave the cache; the last one
//! writes the output. Slots are reused once their value is dead. Every op computes its
//! elements with the same function as its own kernel, so fusing never changes a value.

use super::cwise_ops::{maximum, minimum, neg, numeric_abs, sigmoid, square, squared_difference};
use super::nn_ops::relu;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelRegistry, OpKernel};
use crate::num::FloatElem;
use crate::scalar_code::{dtypes_are, Register, ScalarCode};
use crate::tensor::{Dims, Scalar, Tensor};
use crate::{dispatch_float, kernels::broadcast::broadcast_shape};
use rayon::prelude::*;
use std::marker::PhantomData;
use tfr_graph::fusion::{ElementwiseOp, ElementwiseProgram, Operand};
use tfr_graph::DTypeSet;

/// Elements per block: a few slots of this size stay in L1.
const BLOCK: usize = 1024;
/// Outputs from this size are split over the thread pool, in pieces of this many blocks.
const PARALLEL_MIN: usize = 64 * 1024;
const PIECE_BLOCKS: usize = 16;

pub fn register(r: &mut KernelRegistry) {
    r.cpu("FusedElementwise", DTypeSet::FLOAT, |init| {
        let codes = init.attrs.ints("program")?;
        let program = ElementwiseProgram::from_attr(init.inputs.len(), codes)?;
        Ok(dispatch_float!(init.dtype(), T => Box::new(FusedKernel::<T>::new(&program)), _ => return Err(super::cwise_ops::unsupported(init))))
    });
}

/// Where an instruction reads an operand or writes its result.
#[derive(Clone, Copy, Debug)]
enum Place {
    Input(usize),
    Slot(usize),
    Output,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    op: ElementwiseOp,
    args: [Place; 2],
    dst: Place,
}

struct FusedKernel<T> {
    steps: Vec<Step>,
    slots: usize,
    _t: PhantomData<fn(T)>,
}

impl<T: FloatElem> FusedKernel<T> {
    /// Assigns each intermediate value a slot, reusing the slot of a value after its last
    /// use (a result never shares a slot with its own operands).
    fn new(program: &ElementwiseProgram) -> Self {
        let n = program.steps.len();
        let mut last_use = vec![0usize; n];
        for (k, s) in program.steps.iter().enumerate() {
            for a in s.args {
                if let Operand::Step(j) = a {
                    last_use[j] = k;
                }
            }
        }
        let mut place_of = vec![Place::Output; n];
        let mut free: Vec<usize> = Vec::new();
        let mut slots = 0;
        let mut steps = Vec::with_capacity(n);
        for (k, s) in program.steps.iter().enumerate() {
            let arg = |a: Operand| match a {
                Operand::Input(i) => Place::Input(i),
                Operand::Step(j) => place_of[j],
            };
            let args = [arg(s.args[0]), arg(s.args[1])];
            let dst = if k + 1 == n {
                Place::Output
            } else {
                Place::Slot(free.pop().unwrap_or_else(|| {
                    slots += 1;
                    slots - 1
                }))
            };
            place_of[k] = dst;
            steps.push(Step {
                op: s.op,
                args,
                dst,
            });
            // Operands whose last use this was free their slots for later results.
            for a in s.args {
                if let Operand::Step(j) = a {
                    if last_use[j] == k {
                        if let Place::Slot(slot) = place_of[j] {
                            if !free.contains(&slot) {
                                free.push(slot);
                            }
                        }
                    }
                }
            }
        }
        FusedKernel {
            steps,
            slots,
            _t: PhantomData,
        }
    }

    /// Evaluates elements `[lo, lo + out.len())` of the region into `out`.
    fn run_range(&self, inputs: &[Arg<'_, T>], lo: usize, out: &mut [T]) {
        let width = out.len().min(BLOCK);
        let mut slots: Vec<Vec<T>> = vec![vec![T::zero(); width]; self.slots];
        for (b, out_block) in out.chunks_mut(BLOCK).enumerate() {
            let start = lo + b * BLOCK;
            let len = out_block.len();
            for step in &self.steps {
                let read = |p: Place, slots| read_block(p, inputs, slots, start, len);
                match step.dst {
                    Place::Slot(d) => {
                        let mut dst = std::mem::take(&mut slots[d]);
                        let (a, b) = (read(step.args[0], &slots), read(step.args[1], &slots));
                        apply(step.op, a, b, &mut dst[..len]);
                        slots[d] = dst;
                    }
                    _ => {
                        let (a, b) = (read(step.args[0], &slots), read(step.args[1], &slots));
                        apply(step.op, a, b, out_block);
                    }
                }
            }
        }
    }
}

/// The elements `[start, start + len)` of an operand.
fn read_block<'s, T: FloatElem>(
    p: Place,
    inputs: &[Arg<'s, T>],
    slots: &'s [Vec<T>],
    start: usize,
    len: usize,
) -> Arg<'s, T> {
    match p {
        Place::Input(i) => inputs[i].range(start, len),
        Place::Slot(s) => Arg::Slice(&slots[s][..len]),
        // No instruction reads the output.
        Place::Output => Arg::Scalar(T::zero()),
    }
}

/// An operand: a run of elements, or one element every position reads.
#[derive(Clone, Copy)]
enum Arg<'a, T> {
    Slice(&'a [T]),
    Scalar(T),
}

impl<'a, T: Copy> Arg<'a, T> {
    fn range(&self, start: usize, len: usize) -> Arg<'a, T> {
        match *self {
            Arg::Slice(s) => Arg::Slice(&s[start..start + len]),
            scalar => scalar,
        }
    }
}

#[inline(always)]
fn unary<T: Copy>(a: Arg<'_, T>, dst: &mut [T], f: impl Fn(T) -> T) {
    match a {
        Arg::Slice(x) => dst.iter_mut().zip(x).for_each(|(d, &x)| *d = f(x)),
        Arg::Scalar(x) => dst.fill(f(x)),
    }
}

#[inline(always)]
fn binary<T: Copy>(a: Arg<'_, T>, b: Arg<'_, T>, dst: &mut [T], f: impl Fn(T, T) -> T) {
    match (a, b) {
        (Arg::Slice(x), Arg::Slice(y)) => dst
            .iter_mut()
            .zip(x.iter().zip(y))
            .for_each(|(d, (&x, &y))| *d = f(x, y)),
        (Arg::Slice(x), Arg::Scalar(y)) => dst.iter_mut().zip(x).for_each(|(d, &x)| *d = f(x, y)),
        (Arg::Scalar(x), Arg::Slice(y)) => dst.iter_mut().zip(y).for_each(|(d, &y)| *d = f(x, y)),
        (Arg::Scalar(x), Arg::Scalar(y)) => dst.fill(f(x, y)),
    }
}

/// The one table from op to element function: binds `$f` to the op's element function (the
/// one its own kernel uses) and evaluates `$unary` or `$binary` with it.
macro_rules! with_element_fn {
    ($op:expr, $T:ty, $f:ident => unary: $unary:expr, binary: $binary:expr) => {{
        use ElementwiseOp::*;
        match $op {
            Add => {
                let $f = |x: $T, y: $T| x + y;
                $binary
            }
            Sub => {
                let $f = |x: $T, y: $T| x - y;
                $binary
            }
            Mul => {
                let $f = |x: $T, y: $T| x * y;
                $binary
            }
            Div => {
                let $f = |x: $T, y: $T| x / y;
                $binary
            }
            Maximum => {
                let $f = maximum::<$T>;
                $binary
            }
            Minimum => {
                let $f = minimum::<$T>;
                $binary
            }
            SquaredDifference => {
                let $f = squared_difference::<$T>;
                $binary
            }
            Neg => {
                let $f = neg::<$T>;
                $unary
            }
            Abs => {
                let $f = numeric_abs::<$T>;
                $unary
            }
            Square => {
                let $f = square::<$T>;
                $unary
            }
            Sqrt => {
                let $f = |x: $T| x.sqrt();
                $unary
            }
            Rsqrt => {
                let $f = |x: $T| x.sqrt().recip();
                $unary
            }
            Exp => {
                let $f = |x: $T| x.exp();
                $unary
            }
            Log => {
                let $f = |x: $T| x.ln();
                $unary
            }
            Tanh => {
                let $f = |x: $T| x.tanh();
                $unary
            }
            Sigmoid => {
                let $f = sigmoid::<$T>;
                $unary
            }
            Reciprocal => {
                let $f = |x: $T| x.recip();
                $unary
            }
            Relu => {
                let $f = relu::<$T>;
                $unary
            }
        }
    }};
}

/// `dst = op(a, b)` elementwise (`b` unused by unary ops).
fn apply<T: FloatElem>(op: ElementwiseOp, a: Arg<'_, T>, b: Arg<'_, T>, dst: &mut [T]) {
    with_element_fn!(op, T, f => unary: unary(a, dst, f), binary: binary(a, b, dst, f))
}

/// `op(a, b)` on one element (`b` unused by unary ops).
#[inline]
fn apply_scalar<T: FloatElem>(op: ElementwiseOp, a: T, b: T) -> T {
    with_element_fn!(op, T, f => unary: f(a), binary: f(a, b))
}

impl<T: FloatElem> OpKernel for FusedKernel<T> {
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult {
        let count = ctx.num_inputs();
        let shapes: Vec<&[usize]> = (0..count).map(|i| ctx.input(i).shape()).collect();
        let dims: Dims = broadcast_shape(&shapes)?;
        let n: usize = dims.iter().product();
        let mut inputs = Vec::with_capacity(count);
        for i in 0..count {
            let x = ctx.input(i).as_slice::<T>()?;
            inputs.push(match x {
                [v] => Arg::Scalar(*v),
                s if s.len() == n => Arg::Slice(s),
                s => {
                    return Err(KernelError::invalid(format!(
                        "input {i} has {} elements; a fused region reads {n} or one",
                        s.len()
                    )))
                }
            });
        }
        let mut out = vec![T::zero(); n];
        if n >= PARALLEL_MIN {
            let piece = PIECE_BLOCKS * BLOCK;
            out.par_chunks_mut(piece)
                .enumerate()
                .for_each(|(p, o)| self.run_range(&inputs, p * piece, o));
        } else {
            self.run_range(&inputs, 0, &mut out);
        }
        ctx.set_output(Tensor::from_parts(dims, T::into_buffer(out)));
        Ok(())
    }

    fn has_scalar_path(&self) -> bool {
        true
    }

    /// Scalar regions (a loop body's `x * a + b`) in registers: no block, no allocation.
    fn compute_scalar(&self, inputs: &[&Scalar], out: &mut Scalar) -> bool {
        let read = |i: usize| inputs.get(i).and_then(|s| s.get::<T>()).copied();
        match self.eval_scalar(read).and_then(|v| Scalar::of(&v)) {
            Some(s) => {
                *out = s;
                true
            }
            None => false,
        }
    }

    /// One instruction per region op, its intermediate values in registers of their own.
    fn compile_scalar(&self, inputs: &[Register], output: Register, code: &mut ScalarCode) -> bool {
        if !dtypes_are::<T, T>(inputs, output) {
            return false;
        }
        let temps: Vec<usize> = (0..self.slots).map(|_| code.temp(T::DTYPE).index).collect();
        let reg = |p: Place| match p {
            Place::Input(i) => inputs.get(i).map(|r| r.index),
            Place::Slot(s) => temps.get(s).copied(),
            Place::Output => Some(output.index),
        };
        for step in &self.steps {
            let (Some(a), Some(b), Some(out)) =
                (reg(step.args[0]), reg(step.args[1]), reg(step.dst))
            else {
                return false;
            };
            with_element_fn!(step.op, T, f => unary: code.push_unary::<T, T>(f, a, out), binary: code.push_binary::<T, T>(f, a, b, out));
        }
        true
    }
}

/// The most intermediate values a scalar region keeps in registers.
const MAX_SCALAR_SLOTS: usize = 16;

impl<T: FloatElem> FusedKernel<T> {
    /// The region on one element per input (`input(i)`); `None` when an input is missing.
    #[inline(always)]
    fn eval_scalar(&self, input: impl Fn(usize) -> Option<T>) -> Option<T> {
        if self.slots > MAX_SCALAR_SLOTS {
            return None;
        }
        let mut slots = [T::zero(); MAX_SCALAR_SLOTS];
        let mut result = T::zero();
        for step in &self.steps {
            let read = |p: Place| match p {
                Place::Input(i) => input(i),
                Place::Slot(s) => Some(slots[s]),
                Place::Output => None,
            };
            let v = apply_scalar(step.op, read(step.args[0])?, read(step.args[1])?);
            match step.dst {
                Place::Slot(d) => slots[d] = v,
                _ => result = v,
            }
        }
        Some(result)
    }
}
