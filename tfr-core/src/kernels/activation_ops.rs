//! Kernels of `tfr_graph::ops::activation_ops`: LeakyRelu, Softsign, L2Loss.

use super::cwise_ops::{map_kernel, unsupported};
use crate::dispatch_float;
use crate::error::KResult;
use crate::kernel::{KernelContext, KernelRegistry, OpKernel};
use crate::num::Numeric;
use crate::tensor::Tensor;
use tfr_graph::DTypeSet;

pub fn register(r: &mut KernelRegistry) {
    r.cpu("LeakyRelu", DTypeSet::FLOAT, |init| {
        let alpha = init.attrs.float_opt("alpha").copied().unwrap_or(0.2);
        // As TensorFlow: x > 0 ? x : x * alpha, with alpha in the input's type.
        Ok(dispatch_float!(init.dtype(), T => {
            let a = T::from_f64(alpha);
            map_kernel::<T, _>(move |x: T| if x > T::ZERO { x } else { x.mul(a) })
        }, _ => return Err(unsupported(init))))
    });
    r.cpu("Softsign", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => map_kernel::<T, _>(|x: T| x / (T::ONE + x.abs())), _ => return Err(unsupported(init))))
    });
    r.cpu("L2Loss", DTypeSet::FLOAT, |init| {
        Ok(dispatch_float!(init.dtype(), T => l2_loss::<T>(), _ => return Err(unsupported(init))))
    });
}

fn l2_loss<T: Numeric>() -> Box<dyn OpKernel> {
    Box::new(|ctx: &mut KernelContext<'_>| -> KResult {
        // Accumulated in f64, then halved.
        let s: f64 = ctx
            .input(0)
            .as_slice::<T>()?
            .iter()
            .map(|&v| {
                let v = v.to_f64();
                v * v
            })
            .sum();
        ctx.set_output(Tensor::scalar(T::from_f64(s / 2.0)));
        Ok(())
    })
}
