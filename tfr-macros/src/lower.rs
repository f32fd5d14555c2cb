//! Lowering expressions to `Graph` builder calls: operators, literals, tuples, and the calls
//! of the function table (every function and method of the language, and any registry op
//! called by its own name). The table itself is `signatures.rs`, static arguments `args.rs`,
//! `grad`/`minimize` `training.rs`, control flow `control.rs` and `loops.rs`.

use crate::check::{
    describe, dtype_name, expr_text, is_rust_loop, parse_dtype, path_ident, rust_loop_message,
    type_string, Builder, Failed, Lit, LitKind, Val, DTYPE_NAMES, R,
};
use crate::parse::nearest;
use crate::signatures::*;
use syn::punctuated::Punctuated;
use syn::{BinOp, Expr, ExprLit, Ident, Lit as SynLit, Token, UnOp};
use tfr_graph::{registry, DType, Dim, Graph, NodeId, Output, Result as GResult};

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

    fn lower_call(&mut self, name: &Ident, a: Args, whole: &Expr) -> R<Val> {
        let func = a.func.clone();
        let f = func.as_str();
        let texts = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter_map(|n| a.get(n))
                .map(expr_text)
                .collect()
        };
        if let Some((_, op)) = UNARY.iter().find(|(n, _)| *n == f) {
            let x = self.tensor_args(&a, &["x"])?;
            let r = op(&mut self.g, x[0]);
            return self.result(r, whole, f, &texts(&["x"]));
        }
        if let Some((_, op)) = BINARY.iter().find(|(n, _)| *n == f) {
            let x = self.tensor_args(&a, &["x", "y"])?;
            let r = op(&mut self.g, x[0], x[1]);
            return self.result(r, whole, f, &texts(&["x", "y"]));
        }
        if let Some((_, op)) = REDUCTIONS.iter().find(|(n, _)| *n == f) {
            self.reduction_of_a_tensor(f, &a)?;
            let x = self.tensor_args(&a, &["x"])?;
            let axes = a.get("axis").map(|e| self.ints_arg(e)).transpose()?;
            let keep = a
                .get("keep_dims")
                .map(|e| self.bool_arg(e))
                .transpose()?
                .unwrap_or(false);
            let r = op(&mut self.g, x[0], axes.as_deref(), keep);
            return self.result(r, whole, f, &texts(&["x"]));
        }
        if crate::layers::LAYERS.contains(&f) {
            return self.layer(f, &a, whole);
        }
        let ops = texts(&["x"]);
        let r = match f {
            "matmul" => {
                let x = self.tensor_args(&a, &["a", "b"])?;
                let ta = a
                    .get("transpose_a")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let tb = a
                    .get("transpose_b")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let r = self.g.matmul_t(x[0], x[1], ta, tb);
                return self.result(r, whole, f, &texts(&["a", "b"]));
            }
            "batch_matmul" => {
                let x = self.tensor_args(&a, &["x", "y"])?;
                let ax = a
                    .get("adj_x")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let ay = a
                    .get("adj_y")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let r = self.g.batch_matmul(x[0], x[1], ax, ay);
                return self.result(r, whole, f, &texts(&["x", "y"]));
            }
            "argmax" | "argmin" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axis = self.int_arg(a.req("axis"))?;
                if f == "argmax" {
                    self.g.argmax(x[0], axis)
                } else {
                    self.g.argmin(x[0], axis)
                }
            }
            "cast" => {
                let x = self.tensor_args(&a, &["x"])?;
                let t = self.dtype_arg(a.req("dtype"))?;
                self.g.cast(x[0], t)
            }
            "select" => {
                let c = self.tensor_args(&a, &["cond"])?;
                let x = self.tensor_args(&a, &["t", "e"])?;
                let r = self.g.select(c[0], x[0], x[1]);
                return self.result(r, whole, f, &texts(&["cond", "t", "e"]));
            }
            "clip" | "clip_by_value" => {
                let x = self.tensor_args(&a, &["x", "min", "max"])?;
                let r = self.g.clip_by_value(x[0], x[1], x[2]);
                return self.result(r, whole, f, &texts(&["x", "min", "max"]));
            }
            "add_n" => {
                let xs = self.tensor_list(a.req("values"))?;
                self.g.add_n(&xs)
            }
            "reshape" => {
                let x = self.tensor_args(&a, &["x"])?;
                self.reshape(x[0], a.req("x"), a.req("shape"), whole)?
            }
            "transpose" => {
                let x = self.tensor_args(&a, &["x"])?;
                let perm =
                    match a.get("perm") {
                        Some(e) => self.ints_arg(e)?,
                        None => match self.g.shape(x[0]).rank() {
                            Some(r) => (0..r as i64).rev().collect(),
                            None => return Err(self.err_at(
                                whole,
                                "transpose: the rank of the input is unknown; give `perm = [..]`",
                            )),
                        },
                    };
                self.g.transpose(x[0], &perm)
            }
            "expand_dims" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axis = self.int_arg(a.req("axis"))?;
                self.g.expand_dims(x[0], axis)
            }
            "squeeze" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axes = a
                    .get("axis")
                    .map(|e| self.ints_arg(e))
                    .transpose()?
                    .unwrap_or_default();
                self.g.squeeze(x[0], &axes)
            }
            "concat" => {
                let xs = self.tensor_list(a.req("values"))?;
                let axis = self.int_arg(a.req("axis"))?;
                self.g.concat(&xs, axis)
            }
            "stack" => {
                let xs = self.tensor_list(a.req("values"))?;
                let axis = a
                    .get("axis")
                    .map(|e| self.int_arg(e))
                    .transpose()?
                    .unwrap_or(0);
                self.g.stack(&xs, axis)
            }
            "split" | "unstack" => {
                let x = self.tensor_args(&a, &["x"])?;
                let num = self.int_arg(a.req("num"))?;
                let axis = a
                    .get("axis")
                    .map(|e| self.int_arg(e))
                    .transpose()?
                    .unwrap_or(0);
                if num < 1 {
                    return Err(self.err_at(a.req("num"), format!("{f}: `num` must be at least 1")));
                }
                let r = if f == "split" {
                    self.g.split(x[0], num as usize, axis)
                } else {
                    self.g.unstack(x[0], num as usize, axis)
                };
                return match r {
                    Ok(v) => Ok(Val::Tuple(v.into_iter().map(Val::Tensor).collect())),
                    Err(e) => Err(self.graph_err(whole, f, &ops, e)),
                };
            }
            "gather" => {
                let p = self.tensor_args(&a, &["params"])?;
                let i = self.tensor_args(&a, &["indices"])?;
                let axis = a
                    .get("axis")
                    .map(|e| self.int_arg(e))
                    .transpose()?
                    .unwrap_or(0);
                let r = self.g.gather(p[0], i[0], axis);
                return self.result(r, whole, f, &texts(&["params", "indices"]));
            }
            "one_hot" => {
                let i = self.tensor_args(&a, &["indices"])?;
                let depth = self.int_arg(a.req("depth"))?;
                let on = a
                    .get("on_value")
                    .map(|e| self.float_arg(e))
                    .transpose()?
                    .unwrap_or(1.0);
                let off = a
                    .get("off_value")
                    .map(|e| self.float_arg(e))
                    .transpose()?
                    .unwrap_or(0.0);
                let t = a
                    .get("dtype")
                    .map(|e| self.dtype_arg(e))
                    .transpose()?
                    .unwrap_or(DType::F32);
                if depth < 0 {
                    return Err(self.err_at(a.req("depth"), "one_hot: depth must be >= 0"));
                }
                let on = self.scalar(t, on, a.get("on_value").unwrap_or(whole))?;
                let off = self.scalar(t, off, a.get("off_value").unwrap_or(whole))?;
                self.g.one_hot(i[0], depth as usize, on, off)
            }
            "fill" => {
                let s = self.symbolic_dims_arg(a.req("shape"), false)?;
                let v = self.tensor_args(&a, &["value"])?;
                self.filled(&s, v[0], a.req("shape"))?
            }
            "zeros" | "ones" => {
                let (dims, declared) = match (a.get("shape"), self.var_type.is_some()) {
                    (Some(e), false) => (self.symbolic_dims_arg(e, false)?, None),
                    _ => {
                        let (d, t) = self.init_shape(&a, name)?;
                        (d.into_iter().map(Dim::Known).collect(), t)
                    }
                };
                let t = match a.get("dtype") {
                    Some(e) => self.dtype_arg(e)?,
                    None => declared.unwrap_or(DType::F32),
                };
                let v = self.scalar(t, if f == "ones" { 1.0 } else { 0.0 }, whole)?;
                self.filled(&dims, v, a.get("shape").unwrap_or(whole))?
            }
            "slice" => {
                let x = self.tensor_args(&a, &["x"])?;
                let b = self.ints_arg(a.req("begin"))?;
                let s = self.ints_arg(a.req("size"))?;
                self.g.slice(x[0], &b, &s)
            }
            "pad" => {
                let x = self.tensor_args(&a, &["x"])?;
                let p = self.pairs_arg(a.req("paddings"))?;
                let v = a
                    .get("value")
                    .map(|e| self.float_arg(e))
                    .transpose()?
                    .unwrap_or(0.0);
                self.g.pad(x[0], &p, v)
            }
            "tile" => {
                let x = self.tensor_args(&a, &["x"])?;
                let m = self.ints_arg(a.req("multiples"))?;
                self.g.tile(x[0], &m)
            }
            "broadcast_to" => {
                let x = self.tensor_args(&a, &["x"])?;
                let s = self.symbolic_dims_arg(a.req("shape"), false)?;
                self.broadcast_to(x[0], &s, a.req("shape"))?
            }
            "reverse" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axes = self.ints_arg(a.req("axis"))?;
                self.g.reverse(x[0], &axes)
            }
            "range" => {
                let mut names = vec!["start", "limit"];
                if a.get("delta").is_some() {
                    names.push("delta");
                }
                let mut x = self.tensor_args(&a, &names)?;
                if x.len() == 2 {
                    let t = self.g.dtype(x[0]);
                    x.push(self.scalar(t, 1.0, whole)?);
                }
                self.g.range(x[0], x[1], x[2])
            }
            "random_uniform" | "random_normal" | "truncated_normal" => {
                let (dims, declared) = self.init_shape(&a, name)?;
                let t = match a.get("dtype") {
                    Some(e) => self.dtype_arg(e)?,
                    None => declared.unwrap_or(DType::F32),
                };
                let seed = self.seed_arg(&a)?;
                match f {
                    "random_uniform" => self.g.random_uniform(&dims, t, seed),
                    "random_normal" => self.g.random_normal(&dims, t, seed),
                    _ => self.g.truncated_normal(&dims, t, seed),
                }
            }
            "glorot_uniform" | "he_normal" | "uniform" => {
                let (dims, declared) = self.init_shape(&a, name)?;
                if declared.is_some_and(|t| t != DType::F32) {
                    return Err(self.err(
                        name.span(),
                        format!(
                            "`{f}` makes f32 values; the variable is declared with another dtype"
                        ),
                    ));
                }
                let seed = self.seed_arg(&a)?;
                match f {
                    "glorot_uniform" => {
                        tfr_nn::initializers::glorot_uniform(&mut self.g, &dims, seed)
                    }
                    "he_normal" => tfr_nn::initializers::he_normal(&mut self.g, &dims, seed),
                    _ => {
                        let limit = self.float_arg(a.req("limit"))?;
                        tfr_nn::initializers::uniform(&mut self.g, &dims, limit as f32, seed)
                    }
                }
            }
            "conv2d" => {
                let x = self.tensor_args(&a, &["x", "filter"])?;
                let strides = self.window_arg(a.get("strides"), 1)?;
                let padding = self.padding_arg(a.get("padding"), "SAME")?;
                let r = self.g.conv2d(x[0], x[1], &strides, &padding);
                return self.result(r, whole, f, &texts(&["x", "filter"]));
            }
            "max_pool" | "avg_pool" => {
                let x = self.tensor_args(&a, &["x"])?;
                let ksize = self.window_arg(a.get("ksize"), 1)?;
                let strides = match a.get("strides") {
                    Some(e) => self.window_arg(Some(e), 1)?,
                    None => ksize.clone(),
                };
                let padding = self.padding_arg(a.get("padding"), "VALID")?;
                if f == "max_pool" {
                    self.g.max_pool(x[0], &ksize, &strides, &padding, "NHWC")
                } else {
                    self.g.avg_pool(x[0], &ksize, &strides, &padding, "NHWC")
                }
            }
            "assign" | "assign_add" | "assign_sub" => {
                let var = self.lookup_var(a.req("var"))?;
                let v = self.eval(a.req("value"))?;
                let v = match v {
                    Val::Lit(l) => self.materialize(&l, var.dtype, a.req("value"))?,
                    other => self.tensors(vec![(other, a.req("value"))])?[0],
                };
                let vt = self.g.output_type(v).clone();
                if vt.dtype != var.dtype || vt.shape.merge(&var.shape).is_err() {
                    return Err(self.err_at(
                        a.req("value"),
                        format!(
                            "{f}: variable `{}` is {} but the value is {}",
                            expr_text(a.req("var")),
                            type_string(var.dtype, &var.shape),
                            type_string(vt.dtype, &vt.shape)
                        ),
                    ));
                }
                match f {
                    "assign" => self.g.assign(&var, v),
                    "assign_add" => self.g.assign_add(&var, v),
                    _ => self.g.assign_sub(&var, v),
                }
            }
            "grad" => return self.grad(&a, whole),
            "cond" => return self.cond_call(&a),
            "while_loop" => return self.while_loop(name, &a, whole),
            "minimize" => return self.minimize(&a, whole),
            "group" => {
                let de = a.req("deps");
                let mut nodes = Vec::new();
                match de {
                    Expr::Array(arr) => {
                        for x in &arr.elems {
                            let v = self.eval(x)?;
                            collect_nodes(&v, &mut nodes);
                        }
                    }
                    e => {
                        let v = self.eval(e)?;
                        collect_nodes(&v, &mut nodes);
                    }
                }
                return match self.g.group(&nodes) {
                    Ok(n) => Ok(Val::Target(n)),
                    Err(e) => Err(self.graph_err(whole, f, &[], e)),
                };
            }
            other => unreachable_function(other),
        };
        self.result(r, whole, f, &ops)
    }
}

/// Nodes of the values in `v` (for `group`).
fn collect_nodes(v: &Val, out: &mut Vec<NodeId>) {
    match v {
        Val::Tensor(o) => out.push(o.node),
        Val::Target(n) => out.push(*n),
        Val::Tuple(vs) => vs.iter().for_each(|v| collect_nodes(v, out)),
        Val::Lit(_) => {}
    }
}

/// Every name in `OTHERS` is handled by `lower_call`; this is reached only if the table and
/// the match disagree, which the unit test `every_function_lowers` rules out.
fn unreachable_function(name: &str) -> GResult<Output> {
    Err(tfr_graph::GraphError::InvalidNode {
        node: name.into(),
        op: name.into(),
        message: "this function is listed but not lowered (a bug in tfr-macros)".into(),
    })
}
