//! Kernels of `tfr_graph::ops::debug_ops`: CheckNumerics, Assert, Print. Their errors are
//! InvalidArgument; the executor adds the node's name and op.

use super::cwise_ops::unsupported;
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicI64, Ordering};
use tfr_graph::{DType, DTypeSet};

pub fn register(r: &mut KernelRegistry) {
    r.cpu("CheckNumerics", DTypeSet::FLOAT, |init| {
        let message = init.attrs.string("message")?.clone();
        Ok(dispatch_float!(init.dtype(), T => check_numerics::<T>(message), _ => return Err(unsupported(init))))
    });
    r.cpu("Assert", DTypeSet::BOOL, |init| {
        let summarize = *init.attrs.int("summarize")?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
            let c = ctx.input(0);
            if c.rank() != 0 {
                return Err(KernelError::invalid(format!(
                    "condition should be a scalar, got shape {:?}",
                    c.shape()
                )));
            }
            if c.get_i64(0) != 0 {
                return Ok(());
            }
            let data: Vec<String> = (1..ctx.num_inputs())
                .map(|i| summarize_tensor(ctx.input(i), summarize))
                .collect();
            Err(KernelError::invalid(format!(
                "assertion failed: {}",
                data.join(" ")
            )))
        }))
    });
    r.cpu("Print", DTypeSet::ANY, |init| {
        let message = init.attrs.string("message")?.clone();
        let first_n = *init.attrs.int("first_n")?;
        let summarize = *init.attrs.int("summarize")?;
        let printed = AtomicI64::new(0);
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
            if first_n < 0 || printed.fetch_add(1, Ordering::Relaxed) < first_n {
                let data: Vec<String> = (1..ctx.num_inputs())
                    .map(|i| summarize_tensor(ctx.input(i), summarize))
                    .collect();
                eprintln!("{message}{}", data.join(""));
            }
            let x = ctx.take_input(0);
            ctx.set_output(x);
            Ok(())
        }))
    });
}

fn check_numerics<T: Numeric>(message: String) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
        let x = ctx.take_input(0);
        let (mut nan, mut inf) = (false, false);
        for &v in x.as_slice::<T>()? {
            let v = v.to_f64();
            nan |= v.is_nan();
            inf |= v.is_infinite();
        }
        if nan || inf {
            // TensorFlow's wording (check_numerics_op.cc).
            let what = match (inf, nan) {
                (true, true) => "Inf and NaN",
                (true, false) => "Inf",
                _ => "NaN",
            };
            return Err(KernelError::invalid(format!(
                "{message} : Tensor had {what} values"
            )));
        }
        ctx.set_output(x);
        Ok(())
    })
}

/// `[v0 v1 v2...]`: the first `n` elements (all when `n` < 0), "..." when some are left out.
pub fn summarize_tensor(t: &Tensor, n: i64) -> String {
    let total = t.num_elements();
    let shown = if n < 0 { total } else { total.min(n as usize) };
    let parts: Vec<String> = (0..shown)
        .map(|i| match t.dtype() {
            DType::Bool => (t.get_i64(i) != 0).to_string(),
            d if d.is_integer() => t.get_i64(i).to_string(),
            DType::Resource => "<resource>".to_string(),
            DType::String => t.as_strings().map_or_else(
                |_| "<string>".to_string(),
                |v| crate::tensor::quote_bytes(&v[i]),
            ),
            _ => t.get_f64(i).to_string(),
        })
        .collect();
    let more = if shown < total { "..." } else { "" };
    format!("[{}{more}]", parts.join(" "))
}
