//! Compiled scalar code: what an all-scalar loop becomes on its first run. Every value lives
//! in a register, a 64-bit word holding one element of a dtype fixed when the code is built
//! (an `f32` as its bits, a `bool` as 0 or 1), and every kernel contributes instructions that
//! read and write registers with their dtypes known, so running the code checks nothing.
//! Kernels build their instructions around their own element functions
//! ([`crate::OpKernel::compile_scalar`]), so compiled code computes what `compute` does.

use crate::tensor::Scalar;
use tfr_graph::{DType, Element};

/// One instruction: reads and writes registers of the register file.
pub type ScalarInstruction = Box<dyn Fn(&mut [u64]) + Send + Sync>;

/// A register of compiled scalar code: its index in the register file and its dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register {
    pub index: usize,
    pub dtype: DType,
}

/// Compiled scalar code being built: the instructions so far and every register's dtype.
pub struct ScalarCode {
    instructions: Vec<ScalarInstruction>,
    dtypes: Vec<DType>,
}

impl ScalarCode {
    /// Code over registers of these dtypes (more can be added with [`ScalarCode::temp`]).
    pub fn new(dtypes: Vec<DType>) -> Self {
        ScalarCode {
            instructions: Vec::new(),
            dtypes,
        }
    }

    /// Register `index`, if there is one.
    pub fn register(&self, index: usize) -> Option<Register> {
        let dtype = *self.dtypes.get(index)?;
        Some(Register { index, dtype })
    }

    /// A new register for an intermediate value.
    pub fn temp(&mut self, dtype: DType) -> Register {
        self.dtypes.push(dtype);
        Register {
            index: self.dtypes.len() - 1,
            dtype,
        }
    }

    pub fn push(&mut self, instruction: impl Fn(&mut [u64]) + Send + Sync + 'static) {
        self.instructions.push(Box::new(instruction));
    }

    /// How many instructions there are so far (to split the code into parts).
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    pub fn instructions(&self) -> &[ScalarInstruction] {
        &self.instructions
    }

    /// The number of registers: the size of the register file the code runs on.
    pub fn num_registers(&self) -> usize {
        self.dtypes.len()
    }
}

/// An element as a register word.
#[inline(always)]
pub fn to_word<T: Element>(v: &T) -> u64 {
    Scalar::of(v).map_or(0, Scalar::to_word)
}

/// The element a register word holds: `Some` for every scalar dtype (the register's dtype is
/// `T`'s, fixed when the code is built, so after inlining the check folds away).
#[inline(always)]
pub fn from_word<T: Element + Copy>(w: u64) -> Option<T> {
    Scalar::from_word(T::DTYPE, w)?.get::<T>().copied()
}

/// Registers `inputs` are of dtype `T` and `output` of dtype `U`: the check a kernel makes
/// before it compiles itself.
pub fn dtypes_are<T: Element, U: Element>(inputs: &[Register], output: Register) -> bool {
    inputs.iter().all(|r| r.dtype == T::DTYPE) && output.dtype == U::DTYPE
}

impl ScalarCode {
    /// Pushes `r[out] = f(r[a])` for registers of dtypes `T` and `U`.
    pub fn push_unary<T, U>(
        &mut self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
        a: usize,
        out: usize,
    ) where
        T: Element + Copy,
        U: Element,
    {
        self.push(move |r: &mut [u64]| {
            if let Some(x) = r.get(a).and_then(|&w| from_word::<T>(w)) {
                if let Some(o) = r.get_mut(out) {
                    *o = to_word(&f(x));
                }
            }
        });
    }

    /// Pushes `r[out] = f(r[a], r[b])` for registers of dtypes `T`, `T` and `U`.
    pub fn push_binary<T, U>(
        &mut self,
        f: impl Fn(T, T) -> U + Send + Sync + 'static,
        a: usize,
        b: usize,
        out: usize,
    ) where
        T: Element + Copy,
        U: Element,
    {
        self.push(move |r: &mut [u64]| {
            let x = r.get(a).and_then(|&w| from_word::<T>(w));
            let y = r.get(b).and_then(|&w| from_word::<T>(w));
            if let (Some(x), Some(y), Some(o)) = (x, y, r.get_mut(out)) {
                *o = to_word(&f(x, y));
            }
        });
    }
}
