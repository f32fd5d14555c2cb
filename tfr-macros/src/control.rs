//! Control flow in `graph!`: `if p { a } else { b }` and `cond(p, || a, || b)` lower to
//! [`Graph::cond`] (`while_loop` is in `loops.rs`); the helpers both share (blocks run with their
//! parameters bound, the parts of a value, predicates) are here.
//!
//! The branches and the loop's condition and body are the user's closures and blocks: they are
//! lowered inside the builder's functions (the builder's control-flow context open), with the
//! `Builder` swapped onto the graph the builder hands them, so outside values are captured by
//! the graph (Switch into a branch, Enter into a loop) and every statement is checked as usual.
//! The checks that the builder would report on its own nodes (a loop variable changing shape,
//! a predicate that is not a bool scalar, branches that disagree) are made here first, so that
//! each error names the user's variables and is spanned on the user's tokens.

use crate::body::{Block, Closure};
use crate::check::{describe, expr_text, type_string, Builder, Failed, Val, R};
use crate::signatures::Args;
use std::cell::{Cell, RefCell};
use syn::spanned::Spanned;
use syn::{Expr, Ident};
use tfr_graph::{DType, Dim, Graph, GraphError, Output, Shape};

/// The error a closure hands back to the graph builder once its failure is reported.
pub(crate) fn reported() -> GraphError {
    GraphError::Gradient("graph!: reported".into())
}

/// What the true branch of a cond gave: whether a tuple, and its values with their expressions.
type TrueBranch<'e> = Option<(bool, Vec<(Output, &'e Expr)>)>;

/// One value of a branch or loop body, with the expression that gives it (for spans).
pub(crate) struct Part<'e> {
    pub val: Val,
    pub expr: &'e Expr,
}

/// The parts of a value: a tuple's elements (with the tuple expression's elements when it is
/// written as a tuple), or the value itself.
pub(crate) fn parts(val: Val, expr: &Expr) -> (bool, Vec<Part<'_>>) {
    let expr = strip(expr);
    match val {
        Val::Tuple(vals) => {
            let exprs: Vec<&Expr> = match expr {
                Expr::Tuple(t) if t.elems.len() == vals.len() => t.elems.iter().collect(),
                _ => vec![expr; vals.len()],
            };
            let parts = vals
                .into_iter()
                .zip(exprs)
                .map(|(val, expr)| Part { val, expr })
                .collect();
            (true, parts)
        }
        val => (false, vec![Part { val, expr }]),
    }
}

/// `e` without parentheses and invisible groups.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

/// A message's `(a, b)` list of names.
pub(crate) fn name_list(names: &[Ident]) -> String {
    let names: Vec<String> = names.iter().map(Ident::to_string).collect();
    if names.len() == 1 {
        names[0].clone()
    } else {
        format!("({})", names.join(", "))
    }
}

/// Whether two static shapes can describe the same tensor: same rank, and no two dims that
/// are both given (numbers or symbolic names) and differ.
fn shapes_agree(a: &Shape, b: &Shape) -> bool {
    match (a.dims(), b.dims()) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| *p == Dim::Unknown || *q == Dim::Unknown || p == q)
        }
        _ => true,
    }
}

impl Builder {
    /// Runs `f` with `g` (a graph handed to a builder's closure) as the builder's graph.
    pub(crate) fn on_graph<T>(&mut self, g: &mut Graph, f: impl FnOnce(&mut Builder) -> T) -> T {
        std::mem::swap(&mut self.g, g);
        let r = f(self);
        std::mem::swap(&mut self.g, g);
        r
    }

    /// Lowers a block with `params` bound to `vals` in a nested scope (names bound inside are
    /// dropped after it); returns its value, split into parts.
    pub(crate) fn run_block<'e>(
        &mut self,
        params: &[Ident],
        vals: &[Output],
        block: &Block<'e>,
    ) -> R<(bool, Vec<Part<'e>>)> {
        self.nested_scope(|b| {
            for (name, &v) in params.iter().zip(vals) {
                b.bind_param(name, Val::Tensor(v));
            }
            for (binder, expr) in &block.lets {
                b.body_let(binder, expr);
            }
            let val = b.eval(block.result)?;
            let (tuple, parts) = parts(val, block.result);
            for p in &parts {
                if !matches!(p.val, Val::Tensor(_) | Val::Lit(_)) {
                    return Err(b.err_at(
                        p.expr,
                        format!(
                            "a block of control flow gives tensors (or a tuple of them), got {}",
                            describe(&p.val)
                        ),
                    ));
                }
            }
            Ok((tuple, parts))
        })
    }

    /// The dtype of each value `block` gives (`None` for a literal without a suffix, or when
    /// it fails), found by lowering it on a copy of the graph; the graph and the errors are
    /// left as they were.
    fn probe_dtypes(&mut self, block: &Block) -> Option<Vec<Option<DType>>> {
        let saved = self.g.clone();
        let errors = self.errors.len();
        let r = self.run_block(&[], &[], block).ok().map(|(_, parts)| {
            parts
                .iter()
                .map(|p| match &p.val {
                    Val::Tensor(o) => Some(self.g.output_type(*o).dtype),
                    Val::Lit(l) => l.fixed,
                    _ => None,
                })
                .collect()
        });
        self.g = saved;
        self.errors.truncate(errors);
        r
    }

    /// The tensor of a part: a literal takes `dtype` (or its own when `None`).
    pub(crate) fn part_tensor(&mut self, p: &Part, dtype: Option<DType>) -> R<Output> {
        match &p.val {
            Val::Tensor(o) => Ok(*o),
            Val::Lit(l) => {
                let t = dtype.unwrap_or_else(|| l.default_dtype());
                self.materialize(l, t, p.expr)
            }
            other => Err(self.err_at(
                p.expr,
                format!("expected a tensor, got {}", describe(other)),
            )),
        }
    }

    /// A predicate: a bool scalar (a rank not known statically is checked when the step runs).
    pub(crate) fn predicate(&mut self, val: Val, at: &Expr, what: &str) -> R<Output> {
        let o = self.part_tensor(&Part { val, expr: at }, Some(DType::Bool))?;
        let ty = self.g.output_type(o).clone();
        let scalar = matches!(ty.shape.rank(), None | Some(0));
        if ty.dtype != DType::Bool || !scalar {
            let hint = if ty.dtype == DType::Bool {
                "; reduce it with `all(..)` or `any(..)`"
            } else {
                "; compare it, e.g. `x < 10`, or convert it with `cast(x, bool)`"
            };
            return Err(self.err_at(
                at,
                format!(
                    "{what} must be a bool scalar, but `{}` is {}{hint}",
                    expr_text(at),
                    type_string(ty.dtype, &ty.shape)
                ),
            ));
        }
        Ok(o)
    }

    // ---- cond ------------------------------------------------------------------------------

    /// `if p { a } else { b }`.
    pub fn if_expr(&mut self, e: &syn::ExprIf) -> R<Val> {
        let Some((_, else_expr)) = &e.else_branch else {
            return Err(self.err_at(
                &e.then_branch,
                "an `if` in graph! is a value (a cond): it needs an `else` branch giving the \
                 same dtypes and shapes, e.g. `if p { a } else { b }`",
            ));
        };
        if let Expr::Let(l) = &*e.cond {
            return Err(self.err_at(
                l,
                "`if let` is not supported in graph!: the condition of `if` is a bool scalar \
                 tensor",
            ));
        }
        let then = match Block::of_block(&e.then_branch) {
            Ok(b) => b,
            Err(err) => return Err(self.push_error(err)),
        };
        let els = match Block::of_expr(else_expr) {
            Ok(b) => b,
            Err(err) => return Err(self.push_error(err)),
        };
        self.cond(&e.cond, &then, &els, "the condition of `if`")
    }

    /// `{ let t = x - 1.0; t * t }` as a value: its `let` statements, then its value; the
    /// names bound inside are local to it.
    pub fn block_expr(&mut self, e: &syn::ExprBlock) -> R<Val> {
        if let Some(l) = &e.label {
            return Err(self.err_at(l, "a block in graph! takes no label"));
        }
        if let Some(a) = e.attrs.first() {
            return Err(self.err_at(a, "attributes are not supported on a block expression"));
        }
        let block = Block::of_block(&e.block).map_err(|err| self.push_error(err))?;
        self.nested_scope(|b| {
            for (binder, expr) in &block.lets {
                b.body_let(binder, expr);
            }
            b.eval(block.result)
        })
    }

    /// `cond(pred, || a, || b)`.
    pub fn cond_call(&mut self, a: &Args) -> R<Val> {
        let t = self.closure_arg(a.req("true_fn"), Some(0));
        let f = self.closure_arg(a.req("false_fn"), Some(0));
        let (t, f) = (t?, f?);
        self.cond(a.req("pred"), &t.body, &f.body, "the predicate of `cond`")
    }

    pub(crate) fn closure_arg<'e>(&mut self, e: &'e Expr, arity: Option<usize>) -> R<Closure<'e>> {
        let c = Closure::parse(e).map_err(|err| self.push_error(err))?;
        if let Some(n) = arity {
            if c.params.len() != n {
                return Err(self.err_between(
                    c.params_span,
                    format!(
                        "a branch of `cond` takes no parameters: `|| value`, got {}",
                        c.params.len()
                    ),
                ));
            }
        }
        Ok(c)
    }

    fn cond(&mut self, pred_expr: &Expr, then: &Block, els: &Block, what: &str) -> R<Val> {
        let pred = match self
            .eval(pred_expr)
            .and_then(|p| self.predicate(p, pred_expr, what))
        {
            Ok(p) => p,
            Err(Failed) => {
                // The branches are still checked (on a copy of the graph), so that their
                // errors are reported with the predicate's.
                for block in [then, els] {
                    let saved = self.g.clone();
                    let _ = self.run_block(&[], &[], block);
                    self.g = saved;
                }
                return Err(Failed);
            }
        };
        let failed = Cell::new(false);
        // The true branch's results, for the false branch's checks and its literals.
        let first: RefCell<TrueBranch> = RefCell::new(None);
        let mut g = std::mem::take(&mut self.g);
        let me = RefCell::new(&mut *self);
        let r = g.cond(
            pred,
            |g| {
                let mut b = me.borrow_mut();
                let r = b.on_graph(g, |b| {
                    let (tuple, parts) = b.run_block(&[], &[], then)?;
                    // A literal without a suffix takes the false branch's dtype, read by
                    // lowering the false branch on a copy of the graph first.
                    let open = |p: &Part| matches!(&p.val, Val::Lit(l) if l.fixed.is_none());
                    let dtypes = if parts.iter().any(open) {
                        b.probe_dtypes(els)
                            .filter(|d| d.len() == parts.len())
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let mut outs = Vec::with_capacity(parts.len());
                    let mut seen = Vec::with_capacity(parts.len());
                    for (k, p) in parts.iter().enumerate() {
                        let dtype = dtypes.get(k).copied().flatten().filter(|_| open(p));
                        let o = b.part_tensor(p, dtype)?;
                        outs.push(o);
                        seen.push((o, p.expr));
                    }
                    *first.borrow_mut() = Some((tuple, seen));
                    Ok(outs)
                });
                // On an error the false branch is still lowered (with no outputs asked of
                // the true branch), so that its errors are reported too.
                r.or_else(|Failed| {
                    failed.set(true);
                    Ok(Vec::new())
                })
            },
            |g| {
                let mut b = me.borrow_mut();
                b.on_graph(g, |b| {
                    let (tuple, parts) = b.run_block(&[], &[], els)?;
                    let first = first.borrow();
                    let (t_tuple, t_outs) = first.as_ref().ok_or(Failed)?;
                    if parts.len() != t_outs.len() || tuple != *t_tuple {
                        let mut e = syn::Error::new_spanned(
                            els.result,
                            format!(
                                "the branches give different numbers of values: the true \
                                 branch {}, the false branch {}",
                                t_outs.len(),
                                parts.len()
                            ),
                        );
                        e.combine(syn::Error::new(
                            then.result.span(),
                            "the true branch's value",
                        ));
                        return Err(b.push_error(e));
                    }
                    let mut outs = Vec::with_capacity(parts.len());
                    for (k, (p, (t, t_expr))) in parts.iter().zip(t_outs).enumerate() {
                        let t_text = expr_text(*t_expr);
                        let tt = b.g.output_type(*t).clone();
                        let o = b.part_tensor(p, Some(tt.dtype))?;
                        let ft = b.g.output_type(o).clone();
                        let which = if *t_tuple {
                            format!("value {k} of ")
                        } else {
                            String::new()
                        };
                        let what = if ft.dtype != tt.dtype {
                            "dtypes"
                        } else if !shapes_agree(&ft.shape, &tt.shape) {
                            "shapes"
                        } else {
                            outs.push(o);
                            continue;
                        };
                        let mut e = syn::Error::new_spanned(
                            p.expr,
                            format!(
                                "the branches' {what} disagree for {which}the cond: the true \
                                 branch gives `{t_text}`: {}, the false branch `{}`: {}",
                                type_string(tt.dtype, &tt.shape),
                                expr_text(p.expr),
                                type_string(ft.dtype, &ft.shape)
                            ),
                        );
                        e.combine(syn::Error::new_spanned(
                            t_expr,
                            format!("the true branch's `{t_text}`"),
                        ));
                        return Err(b.push_error(e));
                    }
                    Ok(outs)
                })
                .map_err(|Failed| {
                    failed.set(true);
                    reported()
                })
            },
        );
        self.g = g;
        let tuple = first.borrow().as_ref().map(|(t, _)| *t).unwrap_or(false);
        match r {
            Ok(outs) if tuple => Ok(Val::Tuple(outs.into_iter().map(Val::Tensor).collect())),
            Ok(outs) => Ok(Val::Tensor(outs[0])),
            Err(_) if failed.get() => Err(Failed),
            Err(e) => Err(self.graph_err(pred_expr, "cond", &[], e)),
        }
    }
}
