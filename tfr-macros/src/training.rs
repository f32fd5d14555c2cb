//! `grad(y, wrt = ..)` and `minimize(loss, OPTIMIZER, wrt = ..)`: gradients derived by
//! `tfr_graph::gradients` while the macro expands, and `tfr-nn` optimizers' updates.

use crate::check::{expr_text, path_ident, type_string, Builder, Failed, LitKind, Val, R};
use crate::parse::nearest;
use crate::signatures::*;
use syn::Expr;
use tfr_graph::ops::control_flow_ops;
use tfr_graph::{registry, Graph, Output};
use tfr_nn::optimizers::{Adagrad, Adam, AdamW, LearningRate, Momentum, Optimizer, RmsProp, Sgd};

impl Builder {
    /// `grad(y, wrt = [a, b])` (a tuple) or `grad(y, wrt = a)` (one tensor).
    pub(crate) fn grad(&mut self, a: &Args, whole: &Expr) -> R<Val> {
        let ye = a.req("y");
        let ys: Vec<(Output, &Expr)> = match ye {
            Expr::Array(arr) => {
                let outs = self.tensor_list(ye)?;
                outs.into_iter().zip(arr.elems.iter()).collect()
            }
            e => vec![(self.tensor(e)?, e)],
        };
        let we = a.req("wrt");
        let (xs, single): (Vec<(Output, &Expr)>, bool) = match we {
            Expr::Array(arr) => {
                let mut xs = Vec::new();
                let mut failed = false;
                for x in &arr.elems {
                    match self.tensor(x) {
                        Ok(o) => xs.push((o, x)),
                        Err(Failed) => failed = true,
                    }
                }
                if failed {
                    return Err(Failed);
                }
                (xs, false)
            }
            e => (vec![(self.tensor(e)?, e)], true),
        };
        let mut ok = true;
        for (o, e) in ys.iter().chain(&xs) {
            let t = self.g.output_type(*o).clone();
            if !t.dtype.is_differentiable() {
                self.err_at(
                    *e,
                    format!(
                        "grad: `{}` is {}: only floating-point tensors carry gradients \
                         (an integer tensor has none; leave it out)",
                        expr_text(*e),
                        type_string(t.dtype, &t.shape),
                    ),
                );
                ok = false;
            }
        }
        if !ok {
            return Err(Failed);
        }
        let y_outs: Vec<Output> = ys.iter().map(|p| p.0).collect();
        let x_outs: Vec<Output> = xs.iter().map(|p| p.0).collect();
        let grads = tfr_graph::gradients(&mut self.g, &y_outs, &x_outs, None)
            .map_err(|e| self.graph_err(whole, "grad", &[], e))?;
        let mut out = Vec::new();
        for (g, (_, e)) in grads.into_iter().zip(&xs) {
            match g {
                Some(g) => out.push(Val::Tensor(g)),
                None => {
                    self.err_at(
                        *e,
                        format!(
                            "grad: `{}` does not depend on `{}` through differentiable ops, so \
                             it has no gradient",
                            expr_text(ye),
                            expr_text(*e)
                        ),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return Err(Failed);
        }
        Ok(if single {
            out.pop().expect("one gradient")
        } else {
            Val::Tuple(out)
        })
    }

    /// `minimize(loss, Adam(0.01), wrt = [w, b])`: gradients and the optimizer's update ops,
    /// built at expansion time; the value is the train target.
    pub(crate) fn minimize(&mut self, a: &Args, whole: &Expr) -> R<Val> {
        let le = a.req("loss");
        let loss = self.tensor(le)?;
        let lt = self.g.output_type(loss).clone();
        if !lt.dtype.is_differentiable() {
            return Err(self.err_at(
                le,
                format!(
                    "minimize: the loss `{}` is {}: only floating-point tensors carry gradients",
                    expr_text(le),
                    type_string(lt.dtype, &lt.shape)
                ),
            ));
        }
        if lt.shape.rank() != Some(0) {
            let text = expr_text(le);
            return Err(self.err_at(
                le,
                format!(
                    "minimize: the loss `{text}` is {}, not a scalar: say how to reduce it, \
                     `mean({text})` (the usual loss over a batch) or `sum({text})`",
                    type_string(lt.dtype, &lt.shape)
                ),
            ));
        }
        let vars = match a.get("wrt") {
            Some(e) => {
                let Expr::Array(arr) = e else {
                    return Err(self.err_at(e, "`wrt` is a list of variables: `wrt = [w1, b1]`"));
                };
                let mut vs = Vec::new();
                for x in &arr.elems {
                    let v = self.lookup_var(x)?;
                    if !v.dtype.is_differentiable() {
                        return Err(self.err_at(
                            x,
                            format!(
                                "minimize: variable `{}` is {}: only floating-point variables can be trained",
                                expr_text(x),
                                type_string(v.dtype, &v.shape)
                            ),
                        ));
                    }
                    vs.push((v, x));
                }
                vs
            }
            None => {
                let vs: Vec<(tfr_graph::ops::state_ops::Variable, &Expr)> =
                    self.trainable.iter().map(|v| (v.clone(), le)).collect();
                if vs.is_empty() {
                    return Err(
                        self.err_at(whole, "minimize: the model has no float variables to train")
                    );
                }
                vs
            }
        };
        // Every variable must reach the loss: say which does not, at its name.
        let xs: Vec<Output> = vars.iter().map(|v| v.0.value).collect();
        let reach = reaches(&self.g, loss);
        let grads: Vec<Option<()>> = xs.iter().map(|x| reach.contains(x).then_some(())).collect();
        let mut ok = true;
        for (g, (v, e)) in grads.iter().zip(&vars) {
            if g.is_none() {
                let at: &Expr = if a.get("wrt").is_some() { e } else { le };
                self.err_at(
                    at,
                    format!(
                        "minimize: the loss `{}` does not depend on variable `{}`; leave it out \
                         with `wrt = [..]`",
                        expr_text(le),
                        v.name
                    ),
                );
                ok = false;
            }
        }
        if !ok {
            return Err(Failed);
        }
        let mut opt = self.optimizer(a.req("optimizer"))?;
        let vs: Vec<_> = vars.into_iter().map(|v| v.0).collect();
        match opt.minimize(&mut self.g, loss, &vs, None) {
            Ok(n) => Ok(Val::Target(n)),
            Err(e) => Err(self.graph_err(whole, "minimize", &[], e)),
        }
    }

    pub(crate) fn optimizer(&mut self, e: &Expr) -> R<Box<dyn Optimizer>> {
        let (name, args) = match e {
            Expr::Call(c) => match path_ident(&c.func) {
                Some(n) => (n, &c.args),
                None => return Err(self.err_at(e, "expected an optimizer like `Adam(0.01)`")),
            },
            _ => {
                return Err(self.err_at(
                    e,
                    format!(
                        "expected an optimizer like `Adam(0.01)` (one of {})",
                        optimizer_names()
                    ),
                ))
            }
        };
        let opt = name.to_string();
        let Some((_, params)) = OPTIMIZERS.iter().find(|(n, _)| *n == opt) else {
            let hint = nearest(&opt, OPTIMIZERS.iter().map(|(n, _)| *n))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            return Err(self.err(
                name.span(),
                format!(
                    "unknown optimizer `{opt}`; {hint}(optimizers: {})",
                    optimizer_names()
                ),
            ));
        };
        let a = self.bind_args(name, &opt, params, None, args)?;
        let lr_e = a.req("lr");
        let lr = match self.static_lit(lr_e)? {
            Some(l) if l.shape.is_empty() && l.kind != LitKind::Bool => {
                LearningRate::Constant(l.data[0] as f32)
            }
            _ => LearningRate::Tensor(self.tensor(lr_e)?),
        };
        let float = |b: &mut Builder, n: &str| {
            a.get(n)
                .map(|e| b.float_arg(e).map(|v| v as f32))
                .transpose()
        };
        Ok(match opt.as_str() {
            "Sgd" | "SGD" => Box::new(Sgd::new(lr)),
            "Momentum" => {
                let m = float(self, "momentum")?.unwrap_or(0.9);
                let nesterov = a
                    .get("nesterov")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                Box::new(Momentum::new(lr, m, nesterov))
            }
            "Adam" | "AdamW" => {
                let mut adam = match opt.as_str() {
                    "AdamW" => {
                        let wd = float(self, "weight_decay")?.unwrap_or(0.0);
                        AdamW::new(lr, wd)
                    }
                    _ => Adam::new(lr),
                };
                let b1 = float(self, "beta1")?.unwrap_or(adam.beta1);
                let b2 = float(self, "beta2")?.unwrap_or(adam.beta2);
                adam = adam.with_betas(b1, b2);
                if let Some(eps) = float(self, "epsilon")? {
                    adam = adam.with_epsilon(eps);
                }
                Box::new(adam)
            }
            "RmsProp" | "RMSProp" => {
                let mut r = RmsProp::new(lr);
                if let Some(v) = float(self, "rho")? {
                    r.rho = v;
                }
                if let Some(v) = float(self, "momentum")? {
                    r.momentum = v;
                }
                if let Some(v) = float(self, "epsilon")? {
                    r.epsilon = v;
                }
                Box::new(r)
            }
            _ => {
                let mut r = Adagrad::new(lr);
                if let Some(v) = float(self, "initial_accumulator_value")? {
                    r.initial_accumulator_value = v;
                }
                Box::new(r)
            }
        })
    }
}

/// The outputs a gradient can flow back to from `y`: along floating-point edges, not through
/// `StopGradient` or ops declared not differentiable (as `tfr_graph::gradients` walks).
pub(crate) fn reaches(g: &Graph, y: Output) -> std::collections::HashSet<Output> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![y];
    while let Some(o) = stack.pop() {
        if !g.dtype(o).is_differentiable() || !seen.insert(o) {
            continue;
        }
        let node = g.node(o.node);
        // Control-flow ops have no gradient rule of their own: `gradients` differentiates
        // conds and loops structurally, through them.
        let structural = control_flow_ops::is_control_flow_op(&node.op)
            || control_flow_ops::is_tensor_array_op(&node.op);
        let stops = node.op == "StopGradient"
            || !structural
                && matches!(
                    registry().get(&node.op).map(|d| d.gradient),
                    Some(tfr_graph::Gradient::NotDifferentiable) | None
                );
        if !stops {
            stack.extend(node.inputs.iter().copied());
        }
    }
    seen
}

pub(crate) fn optimizer_names() -> String {
    let names: Vec<&str> = OPTIMIZERS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}
