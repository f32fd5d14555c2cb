//! Lowering expressions to `Graph` builder calls: operators, literals, tuples, and the calls
//! of the function table (every function and method of the language, and any registry op
//! called by its own name). The table itself is `signatures.rs`, the calls beyond its unary, binary and reduction
//! entries `calls.rs`, static arguments `args.rs`,
//! `grad`/`minimize` `training.rs`, control flow `control.rs` and `loops.rs`.

use crate::check::{
    describe, dtype_name, expr_text, is_rust_loop, parse_dtype, path_ident, rust_loop_message,
    type_string, Builder, Failed, Lit, LitKind, Val, DTYPE_NAMES, R,
};
use crate::parse::nearest;
use crate::signatures::*;
use syn::punctuated::Punctuated;
use syn::{BinOp, Expr, ExprLit, Ident, Lit as SynLit, Token, UnOp};
use tfr_graph::{registry, DType, Graph, Output, Result as GResult};

impl Builder {
    // ---- expressions ---------------------------------------------------------------------

    /// Lowers one expression (`eval` records where its nodes come from).
    pub(crate) fn eval_expr(&mut self, e: &Expr) -> R<Val> {
        match e {
            Expr::Path(_) => match path_ident(e) {
                Some(id) => self.lookup(id),
                None => Err(self.err_at(
                    e,
                    "graph! names are plain identifiers (no paths): define values with `let`",
                )),
            },
            Expr::Lit(l) => self.literal(l),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Group(g) => self.eval(&g.expr),
            Expr::Unary(u) => self.unary(u),
            Expr::Binary(b) => self.binary(b),
            Expr::Array(a) => self.array(a),
            Expr::Tuple(t) => {
                let mut vals = Vec::new();
                let mut failed = false;
                for x in &t.elems {
                    match self.eval(x) {
                        Ok(v) => vals.push(v),
                        Err(Failed) => failed = true,
                    }
                }
                if failed {
                    Err(Failed)
                } else {
                    Ok(Val::Tuple(vals))
                }
            }
            Expr::Field(f) => {
                let v = self.eval(&f.base)?;
                match (&f.member, v) {
                    (syn::Member::Unnamed(i), Val::Tuple(vals)) => {
                        let i = i.index as usize;
                        match vals.get(i) {
                            Some(v) => Ok(v.clone()),
                            None => Err(self.err_at(
                                &f.member,
                                format!("a tuple of {} values has no field {i}", vals.len()),
                            )),
                        }
                    }
                    (m, v) => Err(self.err_at(
                        m,
                        format!(
                            "`{}` is {}: only tuples have fields (`t.0`); call a function as a \
                             method with parentheses, e.g. `x.relu()`",
                            expr_text(&f.base),
                            describe(&v)
                        ),
                    )),
                }
            }
            Expr::Call(c) => {
                let Some(name) = path_ident(&c.func) else {
                    return Err(self.err_at(
                        &c.func,
                        "expected a function name, like `relu(x)` or a registry op `MatMul(a, b)`",
                    ));
                };
                self.call(name, None, &c.args, e)
            }
            Expr::MethodCall(m) => {
                if let Some(t) = &m.turbofish {
                    return Err(self.err_at(t, "graph! functions take no type arguments"));
                }
                self.call(&m.method, Some(&m.receiver), &m.args, e)
            }
            Expr::Cast(c) => self.as_cast(c),
            Expr::If(i) => self.if_expr(i),
            Expr::Block(b) => self.block_expr(b),
            Expr::While(w) => Err(self.err_at(&w.while_token, rust_loop_message("while"))),
            Expr::ForLoop(f) => Err(self.err_at(&f.for_token, rust_loop_message("for"))),
            Expr::Loop(l) => Err(self.err_at(&l.loop_token, rust_loop_message("loop"))),
            Expr::Closure(c) => Err(self.err_at(
                c,
                "a closure is the condition or body of `while_loop(..)` or a branch of \
                 `cond(..)`, not a value",
            )),
            Expr::Index(_) => Err(self.err_at(
                e,
                "indexing is not supported in graph!: use `slice(x, begin, size)`, \
                 `gather(params, indices)` or `unstack(x, num)`",
            )),
            Expr::Assign(a) => Err(self.err_at(
                e,
                format!(
                    "`=` only names a keyword argument inside a call, like `sum(x, axis = 1)`; \
                     graph! tensors are immutable: bind a new name with `let {} = ...;`",
                    expr_text(&a.left)
                ),
            )),
            other => Err(self.err_at(
                other,
                "this expression is not supported in graph!: use names, literals, arrays, \
                 tuples, operators (+ - * / % comparisons && || ! unary -), and function or \
                 method calls",
            )),
        }
    }

    fn literal(&mut self, l: &ExprLit) -> R<Val> {
        let suffix = |s: &str| -> R<Option<DType>> {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_dtype(s).map(Some).ok_or(Failed)
            }
        };
        let bad_suffix = |b: &mut Builder, s: &str| {
            b.err_at(
                l,
                format!(
                    "unknown literal suffix `{s}` (use one of {})",
                    DTYPE_NAMES.join(", ")
                ),
            )
        };
        match &l.lit {
            SynLit::Int(i) => {
                let fixed = suffix(i.suffix()).map_err(|_| bad_suffix(self, i.suffix()))?;
                let v: f64 = i.base10_parse::<u64>().map_err(|e| self.err_at(l, e))? as f64;
                let kind = if fixed.is_some_and(DType::is_float) {
                    LitKind::Float
                } else {
                    LitKind::Int
                };
                Ok(Val::Lit(Lit {
                    shape: Vec::new(),
                    data: vec![v],
                    kind,
                    fixed,
                }))
            }
            SynLit::Float(f) => {
                let fixed = suffix(f.suffix()).map_err(|_| bad_suffix(self, f.suffix()))?;
                let v: f64 = f.base10_parse::<f64>().map_err(|e| self.err_at(l, e))?;
                Ok(Val::Lit(Lit {
                    shape: Vec::new(),
                    data: vec![v],
                    kind: LitKind::Float,
                    fixed,
                }))
            }
            SynLit::Bool(b) => Ok(Val::Lit(Lit {
                shape: Vec::new(),
                data: vec![if b.value { 1.0 } else { 0.0 }],
                kind: LitKind::Bool,
                fixed: None,
            })),
            _ => Err(self.err_at(l, "only number and bool literals are tensors")),
        }
    }

    fn array(&mut self, a: &syn::ExprArray) -> R<Val> {
        if a.elems.is_empty() {
            return Err(self.err_at(a, "an empty array literal has no dtype or shape"));
        }
        let mut lits = Vec::new();
        for x in &a.elems {
            match self.eval(x)? {
                Val::Lit(l) => lits.push(l),
                other => {
                    return Err(self.err_at(
                        x,
                        format!(
                            "an array literal holds numbers, but this is {}: join tensors with \
                             `stack([a, b])` or `concat([a, b], axis = 0)`",
                            describe(&other)
                        ),
                    ))
                }
            }
        }
        let first = lits[0].shape.clone();
        if let Some((i, l)) = lits.iter().enumerate().find(|(_, l)| l.shape != first) {
            return Err(self.err_at(
                &a.elems[i],
                format!(
                    "ragged array literal: element 0 has shape {:?} but element {i} has shape {:?}",
                    first, l.shape
                ),
            ));
        }
        let kind = if lits.iter().any(|l| l.kind == LitKind::Float) {
            LitKind::Float
        } else {
            lits[0].kind
        };
        let fixed = lits.iter().find_map(|l| l.fixed);
        let mut shape = vec![lits.len()];
        shape.extend(first);
        Ok(Val::Lit(Lit {
            shape,
            data: lits.iter().flat_map(|l| l.data.iter().copied()).collect(),
            kind,
            fixed,
        }))
    }

    fn unary(&mut self, u: &syn::ExprUnary) -> R<Val> {
        let v = self.eval(&u.expr)?;
        match (&u.op, v) {
            (UnOp::Neg(_), Val::Lit(mut l)) if l.kind != LitKind::Bool => {
                for x in &mut l.data {
                    *x = -*x;
                }
                Ok(Val::Lit(l))
            }
            (UnOp::Neg(_), v) => {
                let x = self.tensors(vec![(v, &u.expr)])?[0];
                let r = self.g.neg(x);
                self.result(r, u, "`-`", &[expr_text(&u.expr)])
            }
            (UnOp::Not(_), v) => {
                let x = self.tensors(vec![(v, &u.expr)])?[0];
                let r = self.g.logical_not(x);
                self.result(r, u, "`!`", &[expr_text(&u.expr)])
            }
            _ => Err(self.err_at(u, "only `-x` and `!x` are unary operators in graph!")),
        }
    }

    pub fn result(
        &mut self,
        r: GResult<Output>,
        at: &impl quote::ToTokens,
        what: &str,
        operands: &[String],
    ) -> R<Val> {
        match r {
            Ok(o) => Ok(Val::Tensor(o)),
            Err(e) => Err(self.graph_err(at, what, operands, e)),
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> R<Val> {
        let (name, f): (&str, Binary) = match b.op {
            BinOp::Add(_) => ("+", Graph::add),
            BinOp::Sub(_) => ("-", Graph::sub),
            BinOp::Mul(_) => ("*", Graph::mul),
            BinOp::Div(_) => ("/", Graph::div),
            BinOp::Rem(_) => ("%", Graph::floor_mod),
            BinOp::Lt(_) => ("<", Graph::less),
            BinOp::Le(_) => ("<=", Graph::less_equal),
            BinOp::Gt(_) => (">", Graph::greater),
            BinOp::Ge(_) => (">=", Graph::greater_equal),
            BinOp::Eq(_) => ("==", Graph::equal),
            BinOp::Ne(_) => ("!=", Graph::not_equal),
            BinOp::And(_) => ("&&", Graph::logical_and),
            BinOp::Or(_) => ("||", Graph::logical_or),
            BinOp::AddAssign(_)
            | BinOp::SubAssign(_)
            | BinOp::MulAssign(_)
            | BinOp::DivAssign(_) => {
                return Err(self.err_at(
                    &b.op,
                    "graph! tensors are immutable: bind a new name (`let y = x + 1.0;`), or \
                     update a variable with `assign_add(v, delta)`",
                ))
            }
            _ => {
                return Err(self.err_at(
                    &b.op,
                    "unsupported operator in graph! (use + - * / % < <= > >= == != && ||)",
                ))
            }
        };
        let l = self.eval(&b.left);
        let r = self.eval(&b.right);
        let (l, r) = (l?, r?);
        let op = format!("`{name}`");
        // Two tensors of different dtypes: say so with both types and a fix.
        if let (Val::Tensor(x), Val::Tensor(y)) = (&l, &r) {
            let (tx, ty) = (
                self.g.output_type(*x).clone(),
                self.g.output_type(*y).clone(),
            );
            if tx.dtype != ty.dtype {
                let (lt, rt) = (expr_text(&b.left), expr_text(&b.right));
                return Err(self.err_at(
                    b,
                    format!(
                        "{op}: dtype mismatch: {} is {} but {} is {}; convert one with `cast({rt}, {})`",
                        crate::check::operand_name(&lt),
                        type_string(tx.dtype, &tx.shape),
                        crate::check::operand_name(&rt),
                        type_string(ty.dtype, &ty.shape),
                        dtype_name(tx.dtype)
                    ),
                ));
            }
        }
        let xs = self.tensors(vec![(l, &*b.left), (r, &*b.right)])?;
        let (tx, ty) = (
            self.g.output_type(xs[0]).clone(),
            self.g.output_type(xs[1]).clone(),
        );
        match f(&mut self.g, xs[0], xs[1]) {
            Ok(o) => Ok(Val::Tensor(o)),
            Err(tfr_graph::GraphError::InvalidNode { message, .. }) => {
                let (lt, rt) = (expr_text(&b.left), expr_text(&b.right));
                Err(self.err_at(
                    b,
                    format!(
                        "{op}: {} ({} is {}, {} is {})",
                        crate::check::rust_dtype_names(&message),
                        crate::check::operand_name(&lt),
                        type_string(tx.dtype, &tx.shape),
                        crate::check::operand_name(&rt),
                        type_string(ty.dtype, &ty.shape),
                    ),
                ))
            }
            Err(e) => Err(self.graph_err(b, &op, &[], e)),
        }
    }

    // ---- calls ---------------------------------------------------------------------------

    fn call<'e>(
        &mut self,
        name: &Ident,
        receiver: Option<&'e Expr>,
        args: &'e Punctuated<Expr, Token![,]>,
        whole: &'e Expr,
    ) -> R<Val> {
        let func = match (name.to_string().as_str(), receiver) {
            // Familiar spellings (numpy, PyTorch): the same ops under their names here.
            ("dot", _) => "matmul".to_string(),
            ("t", Some(_)) => "transpose".to_string(),
            (other, _) => other.to_string(),
        };
        if let Some(f) = self.functions.get(&func).cloned() {
            return self.call_user_function(f, receiver, args, whole);
        }
        if is_rust_loop(&func) {
            return Err(self.err(name.span(), rust_loop_message(&func)));
        }
        if OPTIMIZERS.iter().any(|(n, _)| *n == func) {
            return Err(self.err(
                name.span(),
                format!(
                    "`{func}` is an optimizer, not a tensor function: use it as \
                     `minimize(loss, {func}(0.01))`"
                ),
            ));
        }
        let params = match signature(&func) {
            Some(p) => p,
            None => {
                if func.starts_with(|c: char| c.is_ascii_uppercase()) {
                    if let Some(def) = registry().get(&func) {
                        return self.registry_op(name, def, receiver, args, whole);
                    }
                }
                return Err(self.unknown_function(name, receiver.is_some()));
            }
        };
        let bound = self.bind_args(name, &func, params, receiver, args)?;
        self.lower_call(name, bound, whole)
    }

    fn unknown_function(&mut self, name: &Ident, method: bool) -> Failed {
        let func = name.to_string();
        let what = if method {
            "method"
        } else if func.starts_with(|c: char| c.is_ascii_uppercase()) {
            "op"
        } else {
            "function"
        };
        let hint = if func.starts_with(|c: char| c.is_ascii_uppercase()) {
            registry()
                .suggest(&func)
                .or_else(|| nearest(&func, OPTIMIZERS.iter().map(|(n, _)| *n)))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    "; registry ops are called by their exact name, e.g. `MatMul(a, b)`".into()
                })
        } else {
            nearest(&func, function_names())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default()
        };
        self.err(name.span(), format!("unknown {what} `{func}`{hint}"))
    }

    /// Binds positional and keyword arguments to parameters; reports the arity and keyword
    /// errors (all of them).
    pub(crate) fn bind_args<'e>(
        &mut self,
        name: &Ident,
        func: &str,
        params: &'static [Param],
        receiver: Option<&'e Expr>,
        args: &'e Punctuated<Expr, Token![,]>,
    ) -> R<Args<'e>> {
        let mut values: Vec<Option<&'e Expr>> = vec![None; params.len()];
        let mut positional: Vec<&'e Expr> = receiver.into_iter().collect();
        let mut ok = true;
        let mut keyword_seen = false;
        for a in args {
            match a {
                Expr::Assign(kv) => {
                    keyword_seen = true;
                    let Some(key) = path_ident(&kv.left) else {
                        self.err_at(&kv.left, "a keyword argument is `name = value`");
                        ok = false;
                        continue;
                    };
                    let k = key.to_string();
                    match params.iter().position(|p| p.0 == k) {
                        Some(i) if values[i].is_some() => {
                            self.err(key.span(), format!("`{k}` is given twice"));
                            ok = false;
                        }
                        Some(i) => values[i] = Some(&kv.right),
                        None => {
                            let hint = nearest(&k, params.iter().map(|p| p.0))
                                .map(|s| format!("did you mean `{s}`? "))
                                .unwrap_or_default();
                            self.err(
                                key.span(),
                                format!(
                                    "`{func}` has no parameter `{k}`; {hint}usage: `{}`",
                                    usage(func, params)
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                other => {
                    if keyword_seen {
                        self.err_at(other, "positional arguments come before keyword arguments");
                        ok = false;
                    }
                    positional.push(other)
                }
            }
        }
        if positional.len() > params.len() {
            let extra = positional[params.len()];
            self.err_at(
                extra,
                format!(
                    "wrong number of arguments: `{func}` takes {} argument{}, got {}; usage: `{}`",
                    params.len(),
                    if params.len() == 1 { "" } else { "s" },
                    positional.len(),
                    usage(func, params)
                ),
            );
            return Err(Failed);
        }
        if self.positional_flag(func, params, &positional) {
            return Err(Failed);
        }
        for (i, e) in positional.into_iter().enumerate() {
            if values[i].is_some() {
                self.err_at(e, format!("`{}` is given twice", params[i].0));
                ok = false;
            }
            values[i] = Some(e);
        }
        for (i, (p, _, req)) in params.iter().enumerate() {
            if *req && values[i].is_none() {
                self.err(
                    name.span(),
                    format!(
                        "wrong number of arguments: `{func}` is missing `{p}`; usage: `{}`",
                        usage(func, params)
                    ),
                );
                ok = false;
            }
        }
        if !ok {
            return Err(Failed);
        }
        Ok(Args {
            func: func.to_string(),
            params,
            values,
        })
    }
}
