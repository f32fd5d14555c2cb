//! All-scalar loops compiled to machine code with Cranelift. A compiled loop (see
//! `scalar_loop.rs`) becomes one function that keeps every register in a machine register or
//! spill slot of its own, runs the predicate and the body with each op's IR from the emitter
//! table (`jit_ops.rs`), and calls the op's interpreted instructions for an op without an
//! emitter (storing that op's inputs to the register file first and loading its output after).
//! So the machine code computes exactly what the interpreter computes, op by op, and any op
//! the interpreter compiles can sit in a compiled loop. Built once per loop plan, on its first
//! run with machine code on; `None` when the host has no Cranelift backend or a register's
//! dtype is not one machine code holds (the interpreter then runs the loop).

use super::jit_ops::{emitter, ir_type, region_emitter, Emitter};
use crate::scalar_code::{Register, ScalarInstruction};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, SigRef, Type, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use tfr_graph::fusion::{ElementwiseProgram, Operand};
use tfr_graph::DType;

/// One kernel of a compiled loop, as machine code sees it.
pub(super) struct StepCode {
    /// The graph op, which picks the emitter.
    pub op: String,
    /// A `FusedElementwise` node's region: emitted op by op.
    pub region: Option<ElementwiseProgram>,
    pub inputs: Vec<Register>,
    pub output: Register,
    /// The kernel's interpreted instructions, called when it has no emitter.
    pub instructions: Range<usize>,
}

/// What a loop is: its registers' dtypes, its kernels before the predicate (`pre`) and after
/// (`body`), the predicate's register, and the (variable, register) copies that end an
/// iteration (applied all at once).
pub(super) struct LoopCode<'a> {
    pub dtypes: &'a [DType],
    pub num_vars: usize,
    pub pre: &'a [StepCode],
    pub body: &'a [StepCode],
    pub pred: usize,
    pub copies: &'a [(usize, usize)],
}

/// Why a compiled loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The predicate failed: the loop variables are in the first registers.
    Done,
    /// The predicate still held after `max` iterations.
    TooManyIterations,
}

/// `(registers, instructions, max_iterations, iterations) -> 0 (done) | 1 (too many)`.
type LoopFn = unsafe extern "C" fn(*mut u64, *const ScalarInstruction, u64, *mut u64) -> u32;

/// A loop as machine code; its memory is freed with it.
pub(super) struct JitLoop {
    entry: LoopFn,
    /// Owns the code's memory. Only touched on drop (the mutex makes the loop shareable
    /// between steps; the module itself is not `Sync`).
    module: Mutex<Option<JITModule>>,
    num_registers: usize,
    /// How many kernels call their interpreted instructions (have no emitted IR; for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    calls: usize,
}

impl Drop for JitLoop {
    fn drop(&mut self) {
        let module = self.module.get_mut().map_or(None, Option::take);
        if let Some(m) = module {
            // SAFETY: `entry` points into this module's memory and is dropped with it; no
            // call can run (a call borrows `self`).
            unsafe { m.free_memory() };
        }
    }
}

impl JitLoop {
    /// How many kernels run their interpreted instructions (the others are emitted IR).
    #[cfg(test)]
    fn calls(&self) -> usize {
        self.calls
    }

    /// Runs the loop on `words` (the register file the interpreter would use, with the loop
    /// variables and invariants in place) counting iterations in `iter`; `instructions` are
    /// the interpreted ones of the code this loop was compiled from. `None`, with nothing
    /// run, when `words` is too small for the code.
    pub(super) fn run(
        &self,
        words: &mut [u64],
        instructions: &[ScalarInstruction],
        max: u64,
        iter: &mut u64,
    ) -> Option<Stop> {
        if words.len() < self.num_registers {
            return None;
        }
        // SAFETY: the function reads and writes registers below `num_registers` of `words`
        // (checked above), reads `*iter` and writes it, and passes `instructions` only to
        // `run_instructions` with the ranges of the code it was compiled from, which is the
        // code `instructions` belongs to (the caller holds both in one `CompiledLoop`).
        let stop = unsafe { (self.entry)(words.as_mut_ptr(), instructions.as_ptr(), max, iter) };
        Some(if stop == 0 {
            Stop::Done
        } else {
            Stop::TooManyIterations
        })
    }
}

/// Runs interpreted instructions `lo..hi` on the register file of `len` words: the call
/// compiled code makes for an op without an emitter.
///
/// # Safety
/// `instructions` holds at least `hi` instructions and `regs` `len` words, none borrowed
/// elsewhere during the call.
unsafe extern "C" fn run_instructions(
    instructions: *const ScalarInstruction,
    lo: usize,
    hi: usize,
    regs: *mut u64,
    len: usize,
) {
    // SAFETY: the caller's contract (compiled code passes the ranges recorded when it was
    // built, and the register file `JitLoop::run` checked).
    let (code, words) = unsafe {
        (
            std::slice::from_raw_parts(instructions.add(lo), hi - lo),
            std::slice::from_raw_parts_mut(regs, len),
        )
    };
    code.iter().for_each(|f| f(words));
}

/// Machine code on (`TFR_JIT` unset or not `0`), off, or not yet read.
static MACHINE_CODE: AtomicU8 = AtomicU8::new(UNREAD);
const UNREAD: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// Whether all-scalar loops run as machine code (the default; `TFR_JIT=0` in the environment
/// turns it off, [`set_loop_machine_code`] at run time). Off, they run on the interpreter.
pub fn loop_machine_code() -> bool {
    match MACHINE_CODE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = on_by_env(std::env::var("TFR_JIT").ok().as_deref());
            MACHINE_CODE.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// `TFR_JIT`'s value: machine code is on unless it is `0`.
fn on_by_env(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim() != "0")
}

/// Turns machine code for all-scalar loops on or off for the whole process, from the next
/// loop run on (for comparing it with the interpreter; the results are the same bits).
pub fn set_loop_machine_code(on: bool) {
    MACHINE_CODE.store(if on { ON } else { OFF }, Ordering::Relaxed);
}

/// `code` as machine code; `None` when it cannot be built here.
pub(super) fn compile(code: &LoopCode<'_>) -> Option<JitLoop> {
    if !cfg!(target_endian = "little") {
        // Registers are loaded from the low bytes of their words.
        return None;
    }
    let types: Vec<Type> = code
        .dtypes
        .iter()
        .map(|&d| ir_type(d))
        .collect::<Option<_>>()?;
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").ok()?;
    flags.set("use_colocated_libcalls", "false").ok()?;
    flags.set("is_pic", "false").ok()?;
    let isa = cranelift_native::builder()
        .ok()?
        .finish(settings::Flags::new(flags))
        .ok()?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    sig.params
        .extend([ptr, ptr, types::I64, ptr].map(AbiParam::new));
    sig.returns.push(AbiParam::new(types::I32));
    let mut callee_sig = module.make_signature();
    callee_sig
        .params
        .extend([ptr, ptr, ptr, ptr, ptr].map(AbiParam::new));
    let id = module
        .declare_function("scalar_loop", Linkage::Local, &sig)
        .ok()?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    let mut fctx = FunctionBuilderContext::new();
    let calls;
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let callee = b.import_signature(callee_sig);
        let mut e = Emit {
            b,
            ptr,
            types,
            vars: Vec::new(),
            callee,
            regs: None,
            instructions: None,
            calls: 0,
        };
        e.function(code)?;
        calls = e.calls;
        e.b.finalize(module.target_config());
    }
    module.define_function(id, &mut ctx).ok()?;
    module.clear_context(&mut ctx);
    module.finalize_definitions().ok()?;
    let f = module.get_finalized_function(id);
    // SAFETY: `f` is the function just defined with the signature `LoopFn` describes, in the
    // host's default calling convention (which `extern "C"` is), and lives as long as
    // `module`, which the `JitLoop` owns.
    let entry = unsafe { std::mem::transmute::<*const u8, LoopFn>(f) };
    Some(JitLoop {
        entry,
        module: Mutex::new(Some(module)),
        num_registers: code.dtypes.len(),
        calls,
    })
}

/// The function being built.
struct Emit<'a> {
    b: FunctionBuilder<'a>,
    ptr: Type,
    /// Each register's IR type, and its variable.
    types: Vec<Type>,
    vars: Vec<Variable>,
    /// The signature of `run_instructions`.
    callee: SigRef,
    /// The register file and the instructions (the function's first parameters).
    regs: Option<Value>,
    instructions: Option<Value>,
    calls: usize,
}

impl Emit<'_> {
    /// Loads the registers, loops (pre, predicate, iteration limit, body, copies) and stores
    /// the loop variables and the iteration count.
    fn function(&mut self, code: &LoopCode<'_>) -> Option<()> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let &[regs, instructions, max, iter_at] = self.b.block_params(entry) else {
            return None;
        };
        self.regs = Some(regs);
        self.instructions = Some(instructions);
        for r in 0..self.types.len() {
            let ty = self.types[r];
            let var = self.b.declare_var(ty);
            self.vars.push(var);
            let v = self
                .b
                .ins()
                .load(ty, MemFlagsData::trusted(), regs, word_offset(r));
            self.b.def_var(var, v);
        }
        let iter = self.b.declare_var(types::I64);
        let start = self
            .b
            .ins()
            .load(types::I64, MemFlagsData::trusted(), iter_at, 0);
        self.b.def_var(iter, start);

        let [header, check, body, done, too_many] = [(); 5].map(|_| self.b.create_block());
        self.b.ins().jump(header, &[]);

        self.b.switch_to_block(header);
        code.pre.iter().for_each(|s| self.step(s));
        let holds = self.b.use_var(self.vars[code.pred]);
        self.b.ins().brif(holds, check, &[], done, &[]);

        self.b.switch_to_block(check);
        let n = self.b.use_var(iter);
        let over = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, n, max);
        self.b.ins().brif(over, too_many, &[], body, &[]);

        self.b.switch_to_block(body);
        code.body.iter().for_each(|s| self.step(s));
        let next: Vec<Value> = code
            .copies
            .iter()
            .map(|&(_, r)| self.b.use_var(self.vars[r]))
            .collect();
        for (&(j, _), v) in code.copies.iter().zip(next) {
            self.b.def_var(self.vars[j], v);
        }
        let n = self.b.use_var(iter);
        let n = self.b.ins().iadd_imm_s(n, 1);
        self.b.def_var(iter, n);
        self.b.ins().jump(header, &[]);

        self.b.switch_to_block(done);
        for j in 0..code.num_vars {
            self.store(j);
        }
        let n = self.b.use_var(iter);
        self.b.ins().store(MemFlagsData::trusted(), n, iter_at, 0);
        let zero = self.b.ins().iconst(types::I32, 0);
        self.b.ins().return_(&[zero]);

        self.b.switch_to_block(too_many);
        let n = self.b.use_var(iter);
        self.b.ins().store(MemFlagsData::trusted(), n, iter_at, 0);
        let one = self.b.ins().iconst(types::I32, 1);
        self.b.ins().return_(&[one]);
        self.b.seal_all_blocks();
        Some(())
    }

    /// One kernel: its emitted IR, or a call to its interpreted instructions.
    fn step(&mut self, step: &StepCode) {
        let args: Vec<Value> = step
            .inputs
            .iter()
            .map(|r| self.b.use_var(self.vars[r.index]))
            .collect();
        let dtype = step.inputs.first().unwrap_or(&step.output).dtype;
        let emitted = match &step.region {
            Some(region) => self.region(region, dtype, &args),
            None => emitter(&step.op).and_then(|e| e(&mut self.b, dtype, &args)),
        };
        let out_type = self.types[step.output.index];
        match emitted {
            Some(v) if self.b.func.dfg.value_type(v) == out_type => {
                self.b.def_var(self.vars[step.output.index], v)
            }
            _ => self.call_instructions(step),
        }
    }

    /// A fused region, op by op in its order; `None` when an op has no emitter.
    fn region(
        &mut self,
        region: &ElementwiseProgram,
        dtype: DType,
        args: &[Value],
    ) -> Option<Value> {
        let mut values: Vec<Value> = Vec::with_capacity(region.steps.len());
        for s in &region.steps {
            let operand = |o: Operand| match o {
                Operand::Input(i) => args.get(i).copied(),
                Operand::Step(j) => values.get(j).copied(),
            };
            let ops: Vec<Value> = s.args[..s.op.arity()]
                .iter()
                .map(|&o| operand(o))
                .collect::<Option<_>>()?;
            let emit: Emitter = region_emitter(s.op)?;
            values.push(emit(&mut self.b, dtype, &ops)?);
        }
        values.last().copied()
    }

    /// Stores the kernel's inputs to the register file, runs its interpreted instructions
    /// and loads its output.
    fn call_instructions(&mut self, step: &StepCode) {
        let (Some(regs), Some(instructions)) = (self.regs, self.instructions) else {
            return;
        };
        self.calls += 1;
        for r in &step.inputs {
            self.store(r.index);
        }
        let consts = [
            step.instructions.start,
            step.instructions.end,
            self.types.len(),
        ]
        .map(|c| self.b.ins().iconst(self.ptr, c as i64));
        let f = run_instructions as unsafe extern "C" fn(_, _, _, _, _) as usize;
        let f = self.b.ins().iconst(self.ptr, f as i64);
        let args = [instructions, consts[0], consts[1], regs, consts[2]];
        self.b.ins().call_indirect(self.callee, f, &args);
        let r = step.output.index;
        let v = self
            .b
            .ins()
            .load(self.types[r], MemFlagsData::trusted(), regs, word_offset(r));
        self.b.def_var(self.vars[r], v);
    }

    /// Writes register `r` to its word as `Scalar::to_word` does (zero-extended bits).
    fn store(&mut self, r: usize) {
        let Some(regs) = self.regs else { return };
        let v = self.b.use_var(self.vars[r]);
        let word = match self.types[r] {
            types::F32 => {
                let bits = self.b.ins().bitcast(types::I32, MemFlagsData::new(), v);
                self.b.ins().uextend(types::I64, bits)
            }
            types::F64 => self.b.ins().bitcast(types::I64, MemFlagsData::new(), v),
            types::I64 => v,
            _ => self.b.ins().uextend(types::I64, v),
        };
        self.b
            .ins()
            .store(MemFlagsData::trusted(), word, regs, word_offset(r));
    }
}

fn word_offset(r: usize) -> i32 {
    (r * std::mem::size_of::<u64>()) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar_code::{from_word, to_word, ScalarCode};

    /// A loop of one body kernel `op(r1, r2)` (or `op(r1)`) into r3, run once: r0 is the
    /// predicate, made false by the copy from r4; r0 to r3 are its variables (stored at exit).
    fn one_op(op: &str, dtype: DType, out: DType, unary: bool, code: &ScalarCode) -> JitLoop {
        let reg = |index, dtype| Register { index, dtype };
        let inputs = if unary {
            vec![reg(1, dtype)]
        } else {
            vec![reg(1, dtype), reg(2, dtype)]
        };
        let body = [StepCode {
            op: op.to_string(),
            region: None,
            inputs,
            output: reg(3, out),
            instructions: 0..code.len(),
        }];
        let dtypes = [DType::Bool, dtype, dtype, out, DType::Bool];
        compile(&LoopCode {
            dtypes: &dtypes,
            num_vars: 4,
            pre: &[],
            body: &body,
            pred: 0,
            copies: &[(0, 4)],
        })
        .expect("machine code on this host")
    }

    #[test]
    fn every_op_of_the_table_is_emitted_for_its_dtypes() {
        let none = ScalarCode::new(Vec::new());
        let (f, d, i, l) = (DType::F32, DType::F64, DType::I32, DType::I64);
        let b = DType::Bool;
        let mut cases: Vec<(&str, DType, DType, bool)> = Vec::new();
        for t in [f, d, i, l] {
            for op in [
                "Add",
                "AddV2",
                "Sub",
                "Mul",
                "Maximum",
                "Minimum",
                "SquaredDifference",
            ] {
                cases.push((op, t, t, false));
            }
            for op in [
                "Less",
                "LessEqual",
                "Greater",
                "GreaterEqual",
                "Equal",
                "NotEqual",
            ] {
                cases.push((op, t, b, false));
            }
            for op in ["Neg", "Abs", "Square"] {
                cases.push((op, t, t, true));
            }
        }
        for t in [f, d] {
            cases.push(("RealDiv", t, t, false));
            for op in ["Relu", "Sqrt", "Reciprocal", "Rsqrt"] {
                cases.push((op, t, t, true));
            }
        }
        for op in ["LogicalAnd", "LogicalOr", "Equal", "NotEqual"] {
            cases.push((op, b, b, false));
        }
        cases.push(("LogicalNot", b, b, true));
        for (op, t, out, unary) in cases {
            assert_eq!(one_op(op, t, out, unary, &none).calls(), 0, "{op} {t}");
        }
    }

    #[test]
    fn ops_without_an_emitter_call_their_instructions() {
        // Tanh has no emitter; integer RealDiv declines.
        let mut code = ScalarCode::new(vec![DType::Bool, DType::F32, DType::F32, DType::F32]);
        code.push_unary::<f32, f32>(f32::tanh, 1, 3);
        let m = one_op("Tanh", DType::F32, DType::F32, true, &code);
        assert_eq!(m.calls(), 1);
        let mut words = vec![1, to_word(&0.5f32), 0, 0, 0];
        let mut iter = 0;
        let stop = m.run(&mut words, code.instructions(), 10, &mut iter);
        assert_eq!(stop, Some(Stop::Done));
        assert_eq!((iter, words[0]), (1, 0));
        assert_eq!(
            from_word::<f32>(words[3]).map(f32::to_bits),
            Some(0.5f32.tanh().to_bits())
        );
        let none = ScalarCode::new(Vec::new());
        assert_eq!(
            one_op("RealDiv", DType::I32, DType::I32, false, &none).calls(),
            1
        );
    }

    #[test]
    fn a_loop_past_its_limit_stops_with_the_count() {
        let none = ScalarCode::new(Vec::new());
        let m = one_op("Add", DType::I64, DType::I64, false, &none);
        let mut words = vec![1, to_word(&2i64), to_word(&-5i64), 0, 0];
        let mut iter = 0;
        let stop = m.run(&mut words, none.instructions(), 0, &mut iter);
        assert_eq!((stop, iter), (Some(Stop::TooManyIterations), 0));
        let stop = m.run(&mut words, none.instructions(), 1, &mut iter);
        assert_eq!((stop, iter), (Some(Stop::Done), 1));
        assert_eq!(from_word::<i64>(words[3]), Some(-3));
        // A register file too small for the code runs nothing.
        assert_eq!(m.run(&mut [1, 0], none.instructions(), 1, &mut iter), None);
        assert_eq!(iter, 1);
    }

    #[test]
    fn only_tfr_jit_0_turns_machine_code_off() {
        assert!(on_by_env(None));
        assert!(on_by_env(Some("1")));
        assert!(on_by_env(Some("")));
        assert!(!on_by_env(Some("0")));
        assert!(!on_by_env(Some(" 0\n")));
    }
}
