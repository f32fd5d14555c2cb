//! `while_loop(|i, x| cond, |i, x| body, (i0, x0), options..)` in `graph!`, lowered to
//! [`Graph::while_loop`]: the closures are lowered inside the builder's functions (see
//! `control.rs`), the body's values are checked against each loop variable's dtype and shape
//! invariant first, so that errors name the user's variables.

use crate::check::{dtype_name, expr_text, type_string, Builder, Failed, Val, R};
use crate::control::{name_list, parts, reported};
use crate::invariants::{invariant_text, suggestion};
use crate::signatures::Args;
use std::cell::{Cell, RefCell};
use syn::{Expr, Ident};
use tfr_graph::ops::control_flow_ops::{shape_fits, WhileOptions};
use tfr_graph::Shape;

impl Builder {
    // ---- while_loop ------------------------------------------------------------------------

    /// `while_loop(|i, x| cond, |i, x| body, (i0, x0), maximum_iterations = ..,
    /// parallel_iterations = .., gradient_checkpoints = .., shape_invariants = ..)`.
    pub fn while_loop(&mut self, name: &Ident, a: &Args, whole: &Expr) -> R<Val> {
        let cond = self.closure_arg(a.req("cond"), None);
        let body = self.closure_arg(a.req("body"), None);
        let mut options = WhileOptions::default();
        if let Some(e) = a.get("maximum_iterations") {
            let n = self.int_arg(e)?;
            if n < 0 {
                return Err(self.err_at(e, "maximum_iterations is a non-negative integer"));
            }
            options = options.maximum_iterations(n as u64);
        }
        if let Some(e) = a.get("parallel_iterations") {
            let n = self.int_arg(e)?;
            if n < 1 {
                return Err(self.err_at(e, "parallel_iterations is a positive integer"));
            }
            options = options.parallel_iterations(n as usize);
        }
        if let Some(e) = a.get("gradient_checkpoints") {
            let k = self.int_arg(e)?;
            if k < 1 {
                return Err(self.err_at(e, "gradient_checkpoints is a positive integer"));
            }
            options = options.gradient_checkpoints(k as u64);
        }
        let init_expr = a.req("loop_vars");
        let init = self.eval(init_expr);
        let (cond, body, init) = (cond?, body?, init?);
        let (tuple, init_parts) = parts(init, init_expr);
        let mut inits = Vec::with_capacity(init_parts.len());
        for p in &init_parts {
            inits.push(self.part_tensor(p, None)?);
        }
        let n = inits.len();
        if n == 0 {
            return Err(self.err_at(init_expr, "a while_loop needs at least one loop variable"));
        }
        let vars_text = expr_text(init_expr);
        for (c, which) in [(&cond, "condition"), (&body, "body")] {
            if c.params.len() != n {
                return Err(self.err_between(
                    c.params_span,
                    format!(
                        "the {which} takes {} parameter{} for {n} loop variable{} (`{vars_text}`): \
                         one parameter per loop variable, in order",
                        c.params.len(),
                        if c.params.len() == 1 { "" } else { "s" },
                        if n == 1 { "" } else { "s" },
                    ),
                ));
            }
            for (k, p) in c.params.iter().enumerate() {
                if c.params[..k].contains(p) {
                    return Err(self.err(p.span(), format!("parameter `{p}` is given twice")));
                }
                if self.dims.iter().any(|d| d == p) {
                    return Err(self.err(
                        p.span(),
                        format!("`{p}` is a symbolic dimension of the model; pick another name"),
                    ));
                }
            }
        }
        let types: Vec<_> = inits
            .iter()
            .map(|&o| self.g.output_type(o).clone())
            .collect();
        // How messages name each loop variable: its body parameter, else its condition
        // parameter (when the body's is `_`), else its initial value.
        let labels: Vec<String> = (0..n)
            .map(|j| {
                [&body.params[j], &cond.params[j]]
                    .into_iter()
                    .find(|p| *p != "_")
                    .map(Ident::to_string)
                    .unwrap_or_else(|| expr_text(init_parts[j].expr))
            })
            .collect();
        let mut declared = vec![false; n];
        if let Some(e) = a.get("shape_invariants") {
            let entering: Vec<_> = types.iter().map(|t| (t.dtype, t.shape.clone())).collect();
            let invariants = self.shape_invariants(e, tuple, &labels, &entering)?;
            for (d, inv) in declared.iter_mut().zip(&invariants) {
                *d = inv.is_some();
            }
            options = options.shape_invariants(invariants);
        }
        // The shape each variable keeps: its invariant, else the shape it enters with.
        let keeps: Vec<Shape> = (0..n)
            .map(|j| match options.shape_invariants.get(j) {
                Some(Some(s)) => s.clone(),
                _ => types[j].shape.clone(),
            })
            .collect();
        let failed = Cell::new(false);
        let mut g = std::mem::take(&mut self.g);
        let me = RefCell::new(&mut *self);
        let r = g.while_loop(
            |g, vars| {
                let mut b = me.borrow_mut();
                b.on_graph(g, |b| {
                    let (_, mut p) = b.run_block(&cond.params, vars, &cond.body)?;
                    if p.len() != 1 {
                        return Err(b.err_at(
                            cond.body.result,
                            format!(
                                "the loop condition gives a tuple of {} values; it must be a \
                                 bool scalar",
                                p.len()
                            ),
                        ));
                    }
                    let p = p.remove(0);
                    b.predicate(p.val, p.expr, "the loop condition")
                })
                .map_err(|Failed| {
                    failed.set(true);
                    reported()
                })
            },
            |g, vars| {
                let mut b = me.borrow_mut();
                b.on_graph(g, |b| {
                    let (t, p) = b.run_block(&body.params, vars, &body.body)?;
                    let names = &body.params;
                    if p.len() != n || t != tuple {
                        let got = if t {
                            format!("a tuple of {} values", p.len())
                        } else {
                            "one value".to_string()
                        };
                        return Err(b.err_at(
                            body.body.result,
                            format!(
                                "the body returns {got} for {n} loop variable{}: it must return \
                                 the next value of each, in order: `{}`",
                                if n == 1 { "" } else { "s" },
                                name_list(names)
                            ),
                        ));
                    }
                    let mut outs = Vec::with_capacity(n);
                    for (j, part) in p.iter().enumerate() {
                        let want = &types[j];
                        let o = b.part_tensor(part, Some(want.dtype))?;
                        let got = b.g.output_type(o).clone();
                        let var = &labels[j];
                        if got.dtype != want.dtype {
                            return Err(b.err_at(
                                part.expr,
                                format!(
                                    "loop variable `{var}` changes dtype: it enters the loop as \
                                     {} and the body returns {} (`{}`); convert it with \
                                     `cast(.., {})`",
                                    dtype_name(want.dtype),
                                    dtype_name(got.dtype),
                                    expr_text(part.expr),
                                    dtype_name(want.dtype)
                                ),
                            ));
                        }
                        if declared[j] && !shape_fits(&keeps[j], &got.shape) {
                            return Err(b.err_at(
                                part.expr,
                                format!(
                                    "loop variable `{var}` does not fit its shape invariant: \
                                     the invariant is `{}` and the body returns {} (`{}`)",
                                    invariant_text(&keeps[j]),
                                    type_string(got.dtype, &got.shape),
                                    expr_text(part.expr)
                                ),
                            ));
                        }
                        if !shape_fits(&keeps[j], &got.shape) {
                            return Err(b.err_at(
                                part.expr,
                                format!(
                                    "loop variable `{var}` changes shape: it enters the loop as \
                                     {} and the body returns {} (`{}`); a loop variable keeps \
                                     its shape across iterations{}",
                                    type_string(want.dtype, &want.shape),
                                    type_string(got.dtype, &got.shape),
                                    expr_text(part.expr),
                                    suggestion(j, n, tuple, &want.shape, &got.shape)
                                ),
                            ));
                        }
                        outs.push(o);
                    }
                    Ok(outs)
                })
                .map_err(|Failed| {
                    failed.set(true);
                    reported()
                })
            },
            &inits,
            &options,
        );
        self.g = g;
        match r {
            Ok(outs) if tuple => Ok(Val::Tuple(outs.into_iter().map(Val::Tensor).collect())),
            Ok(outs) => Ok(Val::Tensor(outs[0])),
            Err(_) if failed.get() => Err(Failed),
            Err(e) => Err(self.graph_err(whole, &name.to_string(), &[], e)),
        }
    }
}
