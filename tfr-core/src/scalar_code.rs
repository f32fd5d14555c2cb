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

    /// Every register's dtype, by index.
    pub fn dtypes(&self) -> &[DType] {
        &self.dtypes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &ScalarCode, words: &mut [u64]) {
        code.instructions().iter().for_each(|f| f(words));
    }

    #[test]
    fn words_round_trip_every_scalar_dtype() {
        let values = [
            Scalar::F32(-1.5),
            Scalar::F64(f64::MIN_POSITIVE),
            Scalar::I32(-7),
            Scalar::I64(i64::MIN),
            Scalar::U8(255),
            Scalar::Bool(true),
            Scalar::F16(tfr_graph::f16::from_f32(0.25)),
            Scalar::BF16(tfr_graph::bf16::from_f32(-3.0)),
        ];
        for v in values {
            assert_eq!(Scalar::from_word(v.dtype(), v.to_word()), Some(v));
        }
        assert_eq!(Scalar::from_word(DType::Resource, 0), None);
        assert_eq!(from_word::<i32>(to_word(&-7i32)), Some(-7));
    }

    #[test]
    fn instructions_compute_on_registers_and_temporaries() {
        // r2 = (r0 * r1) via a temporary, then r3 = r0 < r2.
        let mut code = ScalarCode::new(vec![DType::F32, DType::F32, DType::F32, DType::Bool]);
        let t = code.temp(DType::F32);
        code.push_binary::<f32, f32>(|a, b| a * b, 0, 1, t.index);
        code.push_unary::<f32, f32>(|x| x + 1.0, t.index, 2);
        code.push_binary::<f32, bool>(|a, b| a < b, 0, 2, 3);
        assert_eq!(code.num_registers(), 5);
        assert_eq!(code.len(), 3);
        let mut words = vec![0u64; code.num_registers()];
        words[0] = to_word(&2.0f32);
        words[1] = to_word(&3.0f32);
        run(&code, &mut words);
        assert_eq!(from_word::<f32>(words[2]), Some(7.0));
        assert_eq!(from_word::<bool>(words[3]), Some(true));
    }

    #[test]
    fn registers_out_of_the_file_are_not_written() {
        let mut code = ScalarCode::new(vec![DType::I32]);
        code.push_unary::<i32, i32>(|x| x + 1, 0, 9);
        let mut words = vec![5u64];
        run(&code, &mut words);
        assert_eq!(words, vec![5]);
        assert_eq!(code.register(9), None);
    }

    #[test]
    fn kernels_compile_only_for_their_dtypes() {
        let f32_reg = |index| Register {
            index,
            dtype: DType::F32,
        };
        let i32_reg = Register {
            index: 2,
            dtype: DType::I32,
        };
        assert!(dtypes_are::<f32, f32>(
            &[f32_reg(0), f32_reg(1)],
            f32_reg(2)
        ));
        assert!(!dtypes_are::<f32, f32>(&[f32_reg(0), i32_reg], f32_reg(3)));
        assert!(!dtypes_are::<f32, bool>(&[f32_reg(0)], f32_reg(1)));
    }
}
