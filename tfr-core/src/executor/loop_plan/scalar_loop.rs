//! All-scalar loops as compiled code (see [`crate::scalar_code`]): on its first run a loop plan
//! whose kernels all compile becomes instructions on a register file of words (the loop
//! variables, then the invariants, then one register per kernel output, then the kernels'
//! own temporaries), so an iteration is one indirect call per instruction and a few word
//! moves. A loop with a kernel that does not compile runs the general way. With machine code
//! on (see `jit.rs`), the compiled loop is also built into machine code on its first run, and
//! that runs instead of the instructions.

use super::jit::{self, JitLoop, LoopCode, StepCode, Stop};
use super::*;
use crate::executor::cf_stats::StepCounts;
use crate::scalar_code::{Register, ScalarCode};
use std::sync::OnceLock;
use tfr_graph::DType;

/// A loop plan compiled for the dtypes of its loop variables and invariants.
pub(in crate::executor) struct CompiledLoop {
    entry_dtypes: Vec<DType>,
    code: ScalarCode,
    /// The instructions before the predicate; the body's follow.
    pre_len: usize,
    pred: usize,
    /// (loop variable, register of its next value) for the variables whose next value is
    /// not computed in place.
    copies: Vec<(usize, usize)>,
    /// Each kernel's registers and instructions, for machine code: `pre`'s then `body`'s.
    steps: Vec<StepCode>,
    pre_steps: usize,
    /// The loop as machine code, built on the first run with machine code on (`None`
    /// inside when it cannot be built here).
    machine_code: OnceLock<Option<JitLoop>>,
}

impl CompiledLoop {
    /// `plan` compiled for registers entering with `entry_dtypes`; `None` when a kernel
    /// does not compile for its dtypes.
    fn compile(plan: &LoopPlan, exec: &[ExecNode], entry_dtypes: Vec<DType>) -> Option<Self> {
        let nv = plan.var_enters.len();
        let base = nv + plan.num_invs;
        let reg = |r: ValRef| match r {
            ValRef::Var(j) => j as usize,
            ValRef::Inv(k) => nv + k as usize,
            ValRef::Val(i) => base + i as usize,
        };
        let mut dtypes = entry_dtypes.clone();
        dtypes.resize(base + plan.num_vals, DType::Bool);
        for step in plan.pre.iter().chain(&plan.body) {
            *dtypes.get_mut(step.out_reg as usize)? = step.out_dtype;
        }
        let next: Vec<usize> = plan.next.iter().map(|&(r, _)| reg(r)).collect();
        let pred = reg(plan.pred);
        let next_fits = next
            .iter()
            .enumerate()
            .all(|(j, &r)| dtypes.get(r).is_some() && dtypes.get(r) == dtypes.get(j));
        if dtypes.get(pred) != Some(&DType::Bool) || !next_fits {
            return None;
        }
        let rename = writes_in_place(plan, &next, base);
        let mut code = ScalarCode::new(dtypes);
        let mut step_codes = Vec::with_capacity(plan.pre.len() + plan.body.len());
        let mut compile = |steps: &[PlanStep], code: &mut ScalarCode| -> Option<()> {
            for step in steps {
                let register = |r: u32| code.register(rename[r as usize]);
                let inputs: Option<Vec<Register>> =
                    step.in_regs.iter().map(|&r| register(r)).collect();
                let (inputs, output) = (inputs?, register(step.out_reg)?);
                let node = exec.get(step.node as usize)?;
                let start = code.len();
                if !node.kernel.compile_scalar(&inputs, output, code) {
                    return None;
                }
                step_codes.push(StepCode {
                    op: node.op.clone(),
                    region: step.region.clone(),
                    inputs,
                    output,
                    instructions: start..code.len(),
                });
            }
            Some(())
        };
        compile(&plan.pre, &mut code)?;
        let pre_len = code.len();
        compile(&plan.body, &mut code)?;
        let copies = next
            .iter()
            .enumerate()
            .map(|(j, &r)| (j, rename[r]))
            .filter(|&(j, r)| j != r)
            .collect();
        Some(CompiledLoop {
            entry_dtypes,
            code,
            pre_len,
            pred,
            copies,
            steps: step_codes,
            pre_steps: plan.pre.len(),
            machine_code: OnceLock::new(),
        })
    }

    /// The loop as machine code, built on first use; `None` when it cannot be built here.
    fn machine_code(&self, num_vars: usize) -> Option<&JitLoop> {
        self.machine_code
            .get_or_init(|| {
                let (pre, body) = self.steps.split_at(self.pre_steps);
                jit::compile(&LoopCode {
                    dtypes: self.code.dtypes(),
                    num_vars,
                    pre,
                    body,
                    pred: self.pred,
                    copies: &self.copies,
                })
            })
            .as_ref()
    }
}

/// Register renaming: the kernel output that is loop variable `j`'s next value is written
/// into `j`'s register itself when nothing after it in the body reads `j` (and no other
/// variable takes that output or `j`'s value as its next), which saves a copy per
/// iteration and a store-to-load delay on the loop's critical path. Maps every register to
/// the one it is written to and read from.
fn writes_in_place(plan: &LoopPlan, next: &[usize], base: usize) -> Vec<usize> {
    let mut rename: Vec<usize> = (0..base + plan.num_vals).collect();
    for (j, &r) in next.iter().enumerate() {
        let Some(s) = plan.body.iter().position(|st| st.out_reg as usize == r) else {
            continue;
        };
        let read_later = plan.body[s + 1..]
            .iter()
            .any(|st| st.in_regs.iter().any(|&i| i as usize == j));
        let shared = next
            .iter()
            .enumerate()
            .any(|(k, &q)| k != j && (q == r || q == j));
        if r >= base && !read_later && !shared {
            rename[r] = j;
        }
    }
    rename
}

/// Runs an all-scalar loop plan on `regs` (the loop variables and invariants), as machine code
/// when it is on, adding its iterations to `counts`. `Ok(true)` when the predicate fails, with
/// the variables' final values in the first registers; `Ok(false)`, with nothing run, when the
/// loop does not compile.
pub(in crate::executor) fn scalar_loop(
    fast: &FastCtx<'_>,
    prog: &CfProgram,
    plan: &LoopPlan,
    t: &FrameTemplate,
    regs: &mut [Scalar],
    counts: &mut StepCounts,
) -> Result<bool> {
    let entry_dtypes = || regs.iter().map(Scalar::dtype);
    let compiled = plan
        .compiled
        .get_or_init(|| CompiledLoop::compile(plan, &fast.exec.nodes, entry_dtypes().collect()))
        .as_ref()
        .filter(|c| c.entry_dtypes.iter().copied().eq(entry_dtypes()));
    let Some(c) = compiled else {
        return Ok(false);
    };
    let mut words = vec![0u64; c.code.num_registers()];
    for (w, s) in words.iter_mut().zip(regs.iter()) {
        *w = s.to_word();
    }
    let max = t.maximum_iterations.unwrap_or(u64::MAX);
    let nv = plan.var_enters.len();
    let mut iter = 0u64;
    let machine_code = jit::loop_machine_code()
        .then(|| c.machine_code(nv))
        .flatten();
    let ran = machine_code.and_then(|m| m.run(&mut words, c.code.instructions(), max, &mut iter));
    let stop = match ran {
        Some(stop) => {
            counts.machine_code_iterations += iter;
            stop
        }
        None => interpret(c, &mut words, nv, max, &mut iter),
    };
    counts.iterations += iter;
    if stop == Stop::TooManyIterations {
        return Err(too_many_iterations(prog, plan, t, max));
    }
    for ((s, &w), &dtype) in regs.iter_mut().zip(&words).zip(&c.entry_dtypes) {
        if let Some(v) = Scalar::from_word(dtype, w) {
            *s = v;
        }
    }
    Ok(true)
}

/// The compiled loop on the interpreter: each instruction an indirect call.
fn interpret(c: &CompiledLoop, words: &mut [u64], nv: usize, max: u64, iter: &mut u64) -> Stop {
    let (pre, body) = c.code.instructions().split_at(c.pre_len);
    // Copies from other variables' registers go through a buffer: all read, then all written.
    let direct = c.copies.iter().all(|&(_, r)| r >= nv);
    let mut tmp: SmallVec<[u64; 4]> = SmallVec::new();
    loop {
        pre.iter().for_each(|f| f(words));
        if words.get(c.pred) == Some(&0) {
            return Stop::Done;
        }
        if *iter >= max {
            return Stop::TooManyIterations;
        }
        body.iter().for_each(|f| f(words));
        if direct {
            for &(j, r) in &c.copies {
                words[j] = words[r];
            }
        } else {
            tmp.clear();
            tmp.extend(c.copies.iter().map(|&(_, r)| words[r]));
            for (&(j, _), &w) in c.copies.iter().zip(&tmp) {
                words[j] = w;
            }
        }
        *iter += 1;
    }
}
