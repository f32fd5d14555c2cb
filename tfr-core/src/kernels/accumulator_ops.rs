//! Conditional accumulator kernels (see `tfr_graph::ops::accumulator_ops`). An accumulator is
//! an [`Accumulator`] in the task's (or session's) [`ResourceMgr`](crate::resource::ResourceMgr)
//! under `accumulator:<shared name>`, made by the first run of its `ConditionalAccumulator`
//! node; steps of every client that names it share it. A take waits on a condition variable
//! until enough gradients arrived, bounded by its `timeout_ms`, so a chief whose workers died
//! gets an error instead of waiting forever.

use crate::error::{Code, KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tfr_graph::{DType, DTypeSet};

struct AccumulatorState {
    /// Sum of the accepted gradients since the last take (f64 whatever the dtype, so the mean
    /// of a few f32 gradients is the correctly rounded one).
    sum: Vec<f64>,
    count: usize,
    global_step: i64,
    /// Gradients dropped because they were computed for an older step (for diagnostics).
    dropped: u64,
    /// Incremented by every `set_global_step`: a take that began under another epoch fails.
    epoch: u64,
}

/// Gradients of one dtype and shape, summed until a take.
pub struct Accumulator {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    state: Mutex<AccumulatorState>,
    /// Signalled when a gradient is accepted.
    changed: Condvar,
}

impl Accumulator {
    pub fn new(name: &str, dtype: DType, shape: Vec<usize>) -> Accumulator {
        let n = shape.iter().product();
        Accumulator {
            name: name.to_string(),
            dtype,
            shape,
            state: Mutex::new(AccumulatorState {
                sum: vec![0.0; n],
                count: 0,
                global_step: 0,
                dropped: 0,
                epoch: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> KResult<MutexGuard<'_, AccumulatorState>> {
        self.state.lock().map_err(|_| {
            KernelError::internal(format!("accumulator `{}`: lock poisoned", self.name))
        })
    }

    /// Adds `gradient` computed at `local_step`; returns false (and changes nothing) when
    /// `local_step` is older than the accumulator's global step.
    pub fn apply(&self, local_step: i64, gradient: &Tensor) -> KResult<bool> {
        if gradient.dtype() != self.dtype || gradient.shape() != self.shape.as_slice() {
            return Err(KernelError::invalid(format!(
                "accumulator `{}` holds {}{:?} gradients, got {}{:?}",
                self.name,
                self.dtype,
                self.shape,
                gradient.dtype(),
                gradient.shape()
            )));
        }
        let mut st = self.lock()?;
        if local_step < st.global_step {
            st.dropped += 1;
            return Ok(false);
        }
        for (s, v) in st.sum.iter_mut().zip(gradient.to_f64_vec()) {
            *s += v;
        }
        st.count += 1;
        self.changed.notify_all();
        Ok(true)
    }

    /// Waits until `num_required` gradients were accepted (at most `timeout` when given), then
    /// returns their mean and resets the sum.
    pub fn take(&self, num_required: usize, timeout: Option<Duration>) -> KResult<Tensor> {
        if num_required == 0 {
            return Err(KernelError::invalid(format!(
                "accumulator `{}`: num_required must be >= 1",
                self.name
            )));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock()?;
        let epoch = st.epoch;
        loop {
            if st.epoch != epoch {
                // A take orphaned by an aborted step (its step cannot be cancelled from
                // outside) must not steal the gradients meant for the next update.
                return Err(KernelError {
                    code: Code::Cancelled,
                    message: format!(
                        "accumulator `{}`: its global step was set (to {}) while this take \
                         waited for gradients (a chief re-initialized after a restore?)",
                        self.name, st.global_step
                    ),
                });
            }
            if st.count >= num_required {
                break;
            }
            st = match deadline {
                None => self.changed.wait(st).map_err(|_| self.poisoned())?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(KernelError {
                            code: Code::Cancelled,
                            message: format!(
                                "accumulator `{}`: {} of the {num_required} gradients needed \
                                 arrived within {:?}",
                                self.name,
                                st.count,
                                timeout.unwrap_or_default()
                            ),
                        });
                    }
                    self.changed
                        .wait_timeout(st, left)
                        .map_err(|_| self.poisoned())?
                        .0
                }
            };
        }
        let count = st.count as f64;
        let mean: Vec<f64> = st.sum.iter().map(|s| s / count).collect();
        st.sum.iter_mut().for_each(|s| *s = 0.0);
        st.count = 0;
        drop(st);
        match self.dtype {
            DType::F32 => Ok(Tensor::new(
                &self.shape,
                mean.into_iter().map(|v| v as f32).collect::<Vec<f32>>(),
            )?),
            DType::F64 => Ok(Tensor::new(&self.shape, mean)?),
            d => Err(KernelError::invalid(format!(
                "accumulator `{}` cannot hold {d}",
                self.name
            ))),
        }
    }

    /// Sets the global step to `step`. As in TensorFlow, it may move backwards: a chief that
    /// restored a checkpoint resets its accumulators to the restored step, or the gradients
    /// of every worker (computed for that step) would be dropped as stale forever. A change
    /// also drops what is held: those gradients were computed for another step (late ones that
    /// arrived after the last take, or ones from before a restore) and must not count towards
    /// the next. A take waiting meanwhile fails (cancelled): it was left waiting by a step
    /// that failed elsewhere (e.g. a chief update whose other task died), and would otherwise
    /// take the gradients of the restarted training. (The chief's own update never waits
    /// across a set: its sets follow its takes.)
    pub fn set_global_step(&self, step: i64) -> KResult {
        let mut st = self.lock()?;
        st.epoch = st.epoch.wrapping_add(1);
        self.changed.notify_all();
        if step != st.global_step {
            st.global_step = step;
            st.dropped += st.count as u64;
            st.count = 0;
            st.sum.iter_mut().for_each(|s| *s = 0.0);
        }
        Ok(())
    }

    pub fn global_step(&self) -> i64 {
        self.state.lock().map(|s| s.global_step).unwrap_or(0)
    }

    pub fn num_accumulated(&self) -> usize {
        self.state.lock().map(|s| s.count).unwrap_or(0)
    }

    /// Gradients dropped as stale since the accumulator was made.
    pub fn num_dropped(&self) -> u64 {
        self.state.lock().map(|s| s.dropped).unwrap_or(0)
    }

    fn poisoned(&self) -> KernelError {
        KernelError::internal(format!("accumulator `{}`: lock poisoned", self.name))
    }
}

/// The resource key of the accumulator with shared name `name`.
pub fn accumulator_key(name: &str) -> String {
    format!("accumulator:{name}")
}

/// The accumulator a handle input names.
fn accumulator(ctx: &KernelContext<'_>) -> KResult<Arc<Accumulator>> {
    let name = ctx
        .input(0)
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::invalid("empty accumulator handle"))?;
    ctx.resources
        .find_state::<Accumulator>(&accumulator_key(&name))?
        .ok_or_else(|| KernelError {
            code: Code::NotFound,
            message: format!("no accumulator named `{name}` exists here"),
        })
}

/// A scalar integer input, named `what` in errors.
fn scalar_int(ctx: &KernelContext<'_>, i: usize, what: &str) -> KResult<i64> {
    match ctx.input_ints(i)?.as_slice() {
        &[v] => Ok(v),
        v => Err(KernelError::invalid(format!(
            "{what} must be one integer, got {v:?}"
        ))),
    }
}

fn handle_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = *init.attrs.dtype("dtype")?;
    let shape = init
        .attrs
        .shape("shape")?
        .to_known()
        .ok_or("an accumulator needs a fully known shape")?;
    let name = match init.attrs.string("shared_name")?.as_str() {
        "" => init.node.to_string(),
        s => s.to_string(),
    };
    let key = accumulator_key(&name);
    let handle = Tensor::scalar(name.clone());
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let acc = ctx
            .resources
            .state(&key, || Accumulator::new(&name, dtype, shape.clone()))?;
        if acc.dtype != dtype || acc.shape != shape {
            return Err(KernelError::invalid(format!(
                "accumulator `{name}` exists for {}{:?} but this handle asks for {dtype}{shape:?}",
                acc.dtype, acc.shape
            )));
        }
        ctx.set_output(handle.clone());
        Ok(())
    }))
}

fn apply_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let acc = accumulator(ctx)?;
        let step = scalar_int(ctx, 1, "local_step")?;
        acc.apply(step, ctx.input(2))?;
        Ok(())
    }))
}

fn take_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = *init.attrs.dtype("dtype")?;
    let timeout = match *init.attrs.int("timeout_ms")? {
        -1 => None,
        ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
        ms => return Err(format!("timeout_ms must be -1 or >= 0, got {ms}")),
    };
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let acc = accumulator(ctx)?;
        if acc.dtype != dtype {
            return Err(KernelError::invalid(format!(
                "accumulator `{}` holds {}, the take expects {dtype}",
                acc.name, acc.dtype
            )));
        }
        let n = scalar_int(ctx, 1, "num_required")?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| KernelError::invalid(format!("num_required must be >= 1, got {n}")))?;
        let mean = acc.take(n, timeout)?;
        ctx.set_output(mean);
        Ok(())
    }))
}

fn set_step_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let acc = accumulator(ctx)?;
        acc.set_global_step(scalar_int(ctx, 1, "new_global_step")?)
    }))
}

fn num_accumulated_kernel(_: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    Ok(Box::new(|ctx: &mut KernelContext<'_>| {
        let n = accumulator(ctx)?.num_accumulated();
        let n = i32::try_from(n)
            .map_err(|_| KernelError::out_of_range("gradient count overflows int32"))?;
        ctx.set_output(Tensor::scalar(n));
        Ok(())
    }))
}

pub fn register(r: &mut KernelRegistry) {
    let res = DTypeSet::RESOURCE;
    r.cpu("ConditionalAccumulator", res, handle_kernel);
    r.cpu("AccumulatorApplyGradient", res, apply_kernel);
    r.cpu("AccumulatorTakeGradient", res, take_kernel);
    r.cpu("AccumulatorSetGlobalStep", res, set_step_kernel);
    r.cpu("AccumulatorNumAccumulated", res, num_accumulated_kernel);
}
