//! Fused optimizer updates (TensorFlow's `ResourceApply*`): one kernel per parameter update, in
//! place under the variables' locks. Each equals the composition of primitive ops the
//! optimizers in `tfr-nn` otherwise emit (tested there).

use crate::attr::AttrKind;
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};

pub fn op_defs() -> Vec<OpDef> {
    let r = DTypeSet::RESOURCE;
    let f = DTypeSet::FLOAT;
    vec![
        OpDef::new("ResourceApplyGradientDescent", infer_last)
            .doc("var -= alpha * delta; outputs the new value")
            .input("var", r).input("alpha", f).input("delta", f).output("out")
            .stateful().no_gradient(),
        OpDef::new("ResourceApplyGradientDescentMatMul", infer_gradient_descent_matmul)
            .doc(
                "var -= alpha * MatMul(a, b): ResourceApplyGradientDescent of a matrix-product \
                 gradient in one pass (the product is accumulated into the variable, never \
                 stored); made by the fusion pass, outputs the new value",
            )
            .input("var", r).input("alpha", f).input("a", f).input("b", f).output("out")
            .attr_default("transpose_a", AttrKind::Bool, false)
            .attr_default("transpose_b", AttrKind::Bool, false)
            .stateful().no_gradient(),
        OpDef::new("ResourceApplyMomentum", infer_last)
            .doc("accum = momentum * accum + grad; var -= lr * accum (Nesterov: lr * (grad + momentum * accum))")
            .input("var", r).input("accum", r).input("lr", f).input("grad", f).input("momentum", f)
            .output("out").attr_default("use_nesterov", AttrKind::Bool, false)
            .stateful().no_gradient(),
        OpDef::new("ResourceApplyAdam", infer_last)
            .doc("m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; var -= lr_t m / (sqrt(v) + eps) + lr_wd var")
            .input("var", r).input("m", r).input("v", r).input("lr_t", f).input("beta1", f)
            .input("beta2", f).input("epsilon", f).input("lr_wd", f).input("grad", f).output("out")
            .stateful().no_gradient(),
    ]
}

/// The output is the updated variable, typed like the product `a @ b`.
fn infer_gradient_descent_matmul(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let product = super::math_ops::matmul_type(ctx, 2, 3)?;
    let alpha = &ctx.input(1);
    if alpha.dtype != product.dtype {
        return Err(format!(
            "alpha has dtype {}, the product has {}",
            alpha.dtype, product.dtype
        ));
    }
    Ok(vec![product])
}

/// The output is the updated variable, typed like the gradient (the last input).
fn infer_last(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    let grad = ctx.inputs.last().ok_or("missing inputs")?;
    for (i, t) in ctx.inputs.iter().enumerate() {
        if t.dtype.is_float() && t.dtype != grad.dtype {
            return Err(format!(
                "input {i} has dtype {}, the gradient has {}",
                t.dtype, grad.dtype
            ));
        }
    }
    Ok(vec![grad.clone()])
}

impl Graph {
    pub fn resource_apply_gradient_descent(
        &mut self,
        var: Output,
        alpha: Output,
        delta: Output,
    ) -> Result<Output> {
        self.build("ResourceApplyGradientDescent")
            .input(var)
            .input(alpha)
            .input(delta)
            .finish1()
    }

    pub fn resource_apply_momentum(
        &mut self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
        momentum: Output,
        nesterov: bool,
    ) -> Result<Output> {
        self.build("ResourceApplyMomentum")
            .input(var)
            .input(accum)
            .input(lr)
            .input(grad)
            .input(momentum)
            .attr("use_nesterov", nesterov)
            .finish1()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn resource_apply_adam(
        &mut self,
        var: Output,
        m: Output,
        v: Output,
        lr_t: Output,
        beta1: Output,
        beta2: Output,
        epsilon: Output,
        lr_wd: Output,
        grad: Output,
    ) -> Result<Output> {
        self.build("ResourceApplyAdam")
            .inputs([var, m, v, lr_t, beta1, beta2, epsilon, lr_wd, grad])
            .finish1()
    }
}
