//! The model's means of abstraction, all expanded while the macro runs: functions declared in
//! the model (`fn conv_block(x, c) { .. }`, expanded at each call under a name scope of their
//! own, so each call has its own variables: `conv_block/w`, `conv_block_1/w`), `for` loops
//! over ranges or lists of numbers (unrolled: `for i in 0..3 { .. }`), and `x = ..;`, which
//! gives a `let` binding a new value (the way a loop body threads a value through iterations).
//!
//! Each call and each iteration is checked on its own: shapes flow through the body with the
//! call's arguments, and an error inside a body is reported there and at the call.

use crate::check::{describe, expr_text, Builder, Failed, Lit, LitKind, Val, R};
use crate::model::{Binder, FnDef, Item};
use proc_macro2::Span;
use std::rc::Rc;
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, RangeLimits, Token};

impl Builder {
    /// Makes the functions declared among `items` callable (before any statement runs, so a
    /// function may be called above its declaration, and functions may call each other).
    pub(crate) fn register_functions(&mut self, items: &[Item]) {
        for item in items {
            let Item::Fn(f) = item else { continue };
            let key = f.name.to_string();
            if let Some(prev) = self.functions.get(&key) {
                if Rc::ptr_eq(prev, f) {
                    continue;
                }
                let mut e =
                    syn::Error::new(f.name.span(), format!("function `{key}` is defined twice"));
                e.combine(syn::Error::new(
                    prev.name.span(),
                    format!("`{key}` is first defined here"),
                ));
                self.errors.push(e);
                continue;
            }
            if crate::signatures::signature(&key).is_some() {
                self.err(
                    f.name.span(),
                    format!(
                        "`{key}` is a function of the graph! language; give your function \
                         another name"
                    ),
                );
                continue;
            }
            let mut seen: Vec<&Ident> = Vec::new();
            for p in &f.params {
                if seen.contains(&p) {
                    self.err(
                        p.span(),
                        format!("parameter `{p}` of `{key}` is declared twice"),
                    );
                }
                seen.push(p);
            }
            self.functions.insert(key, f.clone());
        }
    }

    /// A call of a function declared in the model: its arguments evaluated here, its body
    /// expanded with them under the scope `name` (made unique per call), its value returned.
    pub(crate) fn call_user_function(
        &mut self,
        f: Rc<FnDef>,
        receiver: Option<&Expr>,
        args: &Punctuated<Expr, Token![,]>,
        whole: &Expr,
    ) -> R<Val> {
        let key = f.name.to_string();
        if self.call_stack.contains(&key) {
            let chain = self.call_stack.join(" -> ");
            return Err(self.err_at(
                whole,
                format!(
                    "`{key}` calls itself ({chain} -> {key}): graph! functions are expanded at \
                     each call while the model is built, so a recursive call would never end; \
                     repeat with a `for` loop (`for i in 0..3 {{ x = {key}(x); }}`) or \
                     `while_loop(..)`"
                ),
            ));
        }
        let exprs: Vec<&Expr> = receiver.into_iter().chain(args.iter()).collect();
        if let Some(Expr::Assign(kv)) = exprs.iter().find(|e| matches!(e, Expr::Assign(_))) {
            return Err(self.err_at(
                &kv.left,
                format!(
                    "`{key}` takes its arguments by position: `{}`",
                    function_usage(&f)
                ),
            ));
        }
        if exprs.len() != f.params.len() {
            return Err(self.err_at(
                whole,
                format!(
                    "wrong number of arguments: `{key}` takes {} argument{}, got {}; usage: `{}`",
                    f.params.len(),
                    if f.params.len() == 1 { "" } else { "s" },
                    exprs.len(),
                    function_usage(&f)
                ),
            ));
        }
        let mut values = Vec::new();
        let mut failed = false;
        for e in &exprs {
            match self.eval(e) {
                Ok(v) => values.push(v),
                Err(Failed) => failed = true,
            }
        }
        if failed {
            return Err(Failed);
        }
        let errors_before = self.errors.len();
        // A function sees its parameters and nothing else of the caller's (like a Rust `fn`).
        let caller_env = std::mem::take(&mut self.env);
        self.call_stack.push(key.clone());
        self.nesting += 1;
        let result = self.in_scope(&key, |b| {
            for (p, v) in f.params.iter().zip(values) {
                b.bind_mutable(p, Some(v));
            }
            b.items(&f.items);
            b.eval(&f.result)
        });
        self.nesting -= 1;
        self.call_stack.pop();
        self.env = caller_env;
        if self.errors.len() > errors_before {
            // Point from each error in the body to the call that expanded it.
            let note = format!("in this call of `{key}`");
            for e in &mut self.errors[errors_before..] {
                e.combine(syn::Error::new_spanned(whole, &note));
            }
            return Err(Failed);
        }
        result
    }

    /// Runs `f` with the graph's name scope `name` open (made unique by the graph).
    pub(crate) fn in_scope<T>(&mut self, name: &str, f: impl FnOnce(&mut Builder) -> T) -> T {
        let mut g = std::mem::take(&mut self.g);
        let r = g.with_scope(name, |g| self.on_graph(g, f));
        self.g = g;
        r
    }

    /// `for i in 0..3 { .. }`: the body once per value, in order. Names bound in the body are
    /// local to one iteration; `x = ..;` on a name bound outside carries over.
    pub(crate) fn for_loop(&mut self, binder: &Binder, iter: &Expr, _span: Span, items: &[Item]) {
        let Ok(values) = self.loop_values(iter) else {
            return;
        };
        for value in values {
            let outer: Vec<String> = self.env.keys().cloned().collect();
            let saved = self.env.clone();
            self.nesting += 1;
            let ok = self.bind_loop_value(binder, value, iter);
            if ok {
                self.items(items);
            }
            self.nesting -= 1;
            // Keep the new values of outer names (their rebinding), drop the iteration's own.
            let mut env = saved;
            for k in outer {
                if let Some(b) = self.env.remove(&k) {
                    env.insert(k, b);
                }
            }
            self.env = env;
            if !ok {
                return;
            }
        }
    }

    fn bind_loop_value(&mut self, binder: &Binder, value: Val, iter: &Expr) -> bool {
        match (binder, value) {
            (Binder::Ignore, _) => true,
            (Binder::Name(n), v) => {
                if !self.declare(n) {
                    return false;
                }
                self.bind(n, Some(v), None);
                true
            }
            (Binder::Tuple(parts, _), Val::Tuple(vals)) if parts.len() == vals.len() => parts
                .iter()
                .zip(vals)
                .all(|(p, v)| self.bind_loop_value(p, v, iter)),
            (Binder::Tuple(parts, s), v) => {
                self.err(
                    *s,
                    format!(
                        "the pattern has {} names but a value of `{}` is {}",
                        parts.len(),
                        expr_text(iter),
                        describe(&v)
                    ),
                );
                false
            }
        }
    }

    /// The values a `for` loop runs over: the integers of a range with static bounds, or the
    /// elements of a list (numbers, or tuples of numbers).
    fn loop_values(&mut self, iter: &Expr) -> R<Vec<Val>> {
        match strip(iter) {
            Expr::Range(r) => {
                let (Some(start), Some(end)) = (&r.start, &r.end) else {
                    return Err(self.err_at(
                        iter,
                        "a `for` loop in graph! runs over a bounded range, like `0..3` or \
                         `1..=n`",
                    ));
                };
                let lo = self.int_arg(start)?;
                let hi = self.int_arg(end)?;
                let hi = match r.limits {
                    RangeLimits::HalfOpen(_) => hi,
                    RangeLimits::Closed(_) => hi + 1,
                };
                if hi - lo > MAX_UNROLL {
                    return Err(self.err_at(
                        iter,
                        format!(
                            "this loop would unroll {} times (at most {MAX_UNROLL}): a `for` \
                             loop copies its body once per value; use `while_loop(..)` for a \
                             loop run by the graph",
                            hi - lo
                        ),
                    ));
                }
                Ok((lo..hi.max(lo)).map(int_val).collect())
            }
            Expr::Array(a) => {
                let mut out = Vec::new();
                for e in &a.elems {
                    let v = self.eval(e)?;
                    if !is_static(&v) {
                        return Err(self.err_at(
                            e,
                            format!(
                                "a `for` loop runs over numbers known while the model is built \
                                 (it is unrolled), but this is {}",
                                describe(&v)
                            ),
                        ));
                    }
                    out.push(v);
                }
                Ok(out)
            }
            other => Err(self.err_at(
                other,
                "a `for` loop in graph! is unrolled while the model is built: it runs over a \
                 range (`0..3`) or a list (`[64, 128]`, `[(64, 2), (128, 2)]`); for a loop run \
                 by the graph use `while_loop(..)`",
            )),
        }
    }

    /// `name = value;`: a new value for a `let` binding or a function's parameter.
    pub(crate) fn assign(&mut self, name: &Ident, expr: &Expr) {
        let key = name.to_string();
        match self.env.get(&key) {
            None => {
                self.lookup(name).ok();
                return;
            }
            Some(b) if !b.mutable => {
                let what = if b.var.is_some() {
                    format!(
                        "`{key}` is a variable: update it with `assign({key}, value)` (an op run \
                         when a step asks for it)"
                    )
                } else {
                    format!(
                        "`{key}` cannot be given a new value: only `let` bindings and function \
                         parameters can (`let {key}2 = ..;` names a new value)"
                    )
                };
                self.err(name.span(), what);
                return;
            }
            Some(_) => {}
        }
        let val = self.eval(expr).ok();
        if let Some(b) = self.env.get_mut(&key) {
            b.val = val;
        }
    }

    /// `Some(lit)` when `e` is a number known while the model is built: a literal, a name bound
    /// to one (a `for` loop's variable, a function's parameter), or arithmetic on those.
    pub(crate) fn static_number(&mut self, e: &Expr) -> R<Option<Lit>> {
        match strip(e) {
            Expr::Path(_) => {
                let bound = crate::check::path_ident(e)
                    .and_then(|id| self.env.get(&id.to_string()))
                    .and_then(|b| b.val.clone());
                Ok(match bound {
                    Some(Val::Lit(l)) => Some(l),
                    _ => None,
                })
            }
            Expr::Binary(b) => {
                let (Some(l), Some(r)) =
                    (self.static_number(&b.left)?, self.static_number(&b.right)?)
                else {
                    return Ok(None);
                };
                if !l.shape.is_empty()
                    || !r.shape.is_empty()
                    || l.kind == LitKind::Bool
                    || r.kind == LitKind::Bool
                {
                    return Ok(None);
                }
                let float = l.kind == LitKind::Float || r.kind == LitKind::Float;
                let (x, y) = (l.data[0], r.data[0]);
                let v = match b.op {
                    syn::BinOp::Add(_) => x + y,
                    syn::BinOp::Sub(_) => x - y,
                    syn::BinOp::Mul(_) => x * y,
                    syn::BinOp::Div(_) | syn::BinOp::Rem(_) if y == 0.0 && !float => {
                        return Err(self.err_at(e, "division by zero"));
                    }
                    syn::BinOp::Div(_) if float => x / y,
                    syn::BinOp::Div(_) => (x / y).trunc(),
                    syn::BinOp::Rem(_) => x - y * (x / y).floor(),
                    _ => return Ok(None),
                };
                Ok(Some(Lit {
                    shape: Vec::new(),
                    data: vec![v],
                    kind: if float { LitKind::Float } else { LitKind::Int },
                    fixed: l.fixed.or(r.fixed),
                }))
            }
            _ => Ok(None),
        }
    }
}

/// At most this many copies of a `for` loop's body.
const MAX_UNROLL: i64 = 1024;

fn int_val(i: i64) -> Val {
    Val::Lit(Lit {
        shape: Vec::new(),
        data: vec![i as f64],
        kind: LitKind::Int,
        fixed: None,
    })
}

/// Whether a value is known while the model is built (numbers, tuples of them).
fn is_static(v: &Val) -> bool {
    match v {
        Val::Lit(_) => true,
        Val::Tuple(vs) => vs.iter().all(is_static),
        _ => false,
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

fn function_usage(f: &FnDef) -> String {
    let params: Vec<String> = f.params.iter().map(Ident::to_string).collect();
    format!("{}({})", f.name, params.join(", "))
}
