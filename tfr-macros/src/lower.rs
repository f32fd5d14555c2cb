//! Lowering expressions to `Graph` builder calls: operators, literals, tuples, and the
//! function table (every function and method of the language, and any registry op called by
//! its own name).

use crate::check::{
    describe, dtype_name, expr_text, is_rust_loop, parse_dtype, path_ident, rust_loop_message,
    type_string, Builder, Failed, Lit, LitKind, Val, DTYPE_NAMES, R,
};
use crate::parse::nearest;
use syn::punctuated::Punctuated;
use syn::{BinOp, Expr, ExprLit, Ident, Lit as SynLit, Token, UnOp};
use tfr_graph::ops::control_flow_ops;
use tfr_graph::{
    registry, AttrKind, AttrValue, DType, Dim, Graph, NodeId, Output, Result as GResult, Shape,
};
use tfr_nn::optimizers::{Adagrad, Adam, AdamW, LearningRate, Momentum, Optimizer, RmsProp, Sgd};

/// The kind of one parameter of a language function.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A tensor expression (literals adapt to the other tensor operands).
    Tensor,
    /// `[a, b, c]`: a list of tensor expressions.
    Tensors,
    /// An integer literal.
    Int,
    /// An integer or a list of integers (`axis = 1`, `axis = [0, 1]`).
    Ints,
    /// A number literal.
    Float,
    Bool,
    /// A dtype name (`f32`).
    DType,
    /// A string literal.
    Str,
    /// A shape: `[784, 10]` (symbolic names of the model allowed where noted).
    Dims,
    /// `[[1, 1], [2, 2]]`: (before, after) pairs.
    Pairs,
    /// An optimizer: `Adam(0.01)`.
    Optimizer,
    /// `[w1, b1]`: variable names.
    Vars,
    /// Any value (tensors, or a tuple for `grad`'s list of tensors).
    Any,
    /// A closure: `|i, x| i < n` (a loop's condition or body, a branch of `cond`).
    Closure,
}

/// One parameter: name, kind, required.
pub type Param = (&'static str, Kind, bool);

use Kind::*;

const X: &[Param] = &[("x", Tensor, true)];
const XY: &[Param] = &[("x", Tensor, true), ("y", Tensor, true)];
const REDUCE: &[Param] = &[
    ("x", Tensor, true),
    ("axis", Ints, false),
    ("keep_dims", Bool, false),
];
const RANDOM: &[Param] = &[
    ("shape", Dims, false),
    ("dtype", DType, false),
    ("seed", Int, false),
];
const FILLED: &[Param] = &[("shape", Dims, false), ("dtype", DType, false)];
const POOL: &[Param] = &[
    ("x", Tensor, true),
    ("ksize", Ints, true),
    ("strides", Ints, false),
    ("padding", Str, false),
];
const INIT: &[Param] = &[("shape", Dims, false), ("seed", Int, false)];

/// Unary elementwise functions and the builder method each lowers to.
type Unary = fn(&mut Graph, Output) -> GResult<Output>;
pub const UNARY: &[(&str, Unary)] = &[
    ("neg", Graph::neg),
    ("abs", Graph::abs),
    ("sign", Graph::sign),
    ("square", Graph::square),
    ("sqrt", Graph::sqrt),
    ("rsqrt", Graph::rsqrt),
    ("exp", Graph::exp),
    ("expm1", Graph::expm1),
    ("log", Graph::log),
    ("log1p", Graph::log1p),
    ("sin", Graph::sin),
    ("cos", Graph::cos),
    ("tanh", Graph::tanh),
    ("sigmoid", Graph::sigmoid),
    ("erf", Graph::erf),
    ("floor", Graph::floor),
    ("ceil", Graph::ceil),
    ("round", Graph::round),
    ("reciprocal", Graph::reciprocal),
    ("logical_not", Graph::logical_not),
    ("relu", Graph::relu),
    ("relu6", Graph::relu6),
    ("elu", Graph::elu),
    ("selu", Graph::selu),
    ("softplus", Graph::softplus),
    ("softmax", Graph::softmax),
    ("log_softmax", Graph::log_softmax),
    ("identity", Graph::identity),
    ("stop_gradient", Graph::stop_gradient),
    ("zeros_like", Graph::zeros_like),
    ("ones_like", Graph::ones_like),
    ("shape", Graph::shape_of),
    ("size", Graph::size),
    ("rank", Graph::rank),
];

/// Binary functions (numpy broadcasting where the op broadcasts).
type Binary = fn(&mut Graph, Output, Output) -> GResult<Output>;
pub const BINARY: &[(&str, Binary)] = &[
    ("add", Graph::add),
    ("sub", Graph::sub),
    ("mul", Graph::mul),
    ("div", Graph::div),
    ("floor_div", Graph::floor_div),
    ("floor_mod", Graph::floor_mod),
    ("pow", Graph::pow),
    ("maximum", Graph::maximum),
    ("minimum", Graph::minimum),
    ("equal", Graph::equal),
    ("not_equal", Graph::not_equal),
    ("less", Graph::less),
    ("less_equal", Graph::less_equal),
    ("greater", Graph::greater),
    ("greater_equal", Graph::greater_equal),
    ("logical_and", Graph::logical_and),
    ("logical_or", Graph::logical_or),
    ("bias_add", Graph::bias_add),
    (
        "softmax_cross_entropy_with_logits",
        Graph::softmax_cross_entropy_with_logits,
    ),
    (
        "sparse_softmax_cross_entropy_with_logits",
        Graph::sparse_softmax_cross_entropy_with_logits,
    ),
    (
        "sparse_softmax_cross_entropy",
        tfr_nn::losses::sparse_softmax_cross_entropy,
    ),
    (
        "softmax_cross_entropy",
        tfr_nn::losses::softmax_cross_entropy,
    ),
    ("mean_squared_error", tfr_nn::losses::mean_squared_error),
];

/// Reductions: (name, builder).
type Reduce = fn(&mut Graph, Output, Option<&[i64]>, bool) -> GResult<Output>;
pub const REDUCTIONS: &[(&str, Reduce)] = &[
    ("sum", Graph::reduce_sum),
    ("mean", Graph::reduce_mean),
    ("max", Graph::reduce_max),
    ("min", Graph::reduce_min),
    ("prod", Graph::reduce_prod),
    ("all", Graph::reduce_all),
    ("any", Graph::reduce_any),
    ("logsumexp", Graph::reduce_logsumexp),
    ("reduce_sum", Graph::reduce_sum),
    ("reduce_mean", Graph::reduce_mean),
    ("reduce_max", Graph::reduce_max),
    ("reduce_min", Graph::reduce_min),
    ("reduce_prod", Graph::reduce_prod),
    ("reduce_all", Graph::reduce_all),
    ("reduce_any", Graph::reduce_any),
    ("reduce_logsumexp", Graph::reduce_logsumexp),
];

/// The other functions: (name, parameters).
pub const OTHERS: &[(&str, &[Param])] = &[
    (
        "matmul",
        &[
            ("a", Tensor, true),
            ("b", Tensor, true),
            ("transpose_a", Bool, false),
            ("transpose_b", Bool, false),
        ],
    ),
    (
        "batch_matmul",
        &[
            ("x", Tensor, true),
            ("y", Tensor, true),
            ("adj_x", Bool, false),
            ("adj_y", Bool, false),
        ],
    ),
    ("argmax", &[("x", Tensor, true), ("axis", Int, true)]),
    ("argmin", &[("x", Tensor, true), ("axis", Int, true)]),
    ("cast", &[("x", Tensor, true), ("dtype", DType, true)]),
    (
        "select",
        &[
            ("cond", Tensor, true),
            ("t", Tensor, true),
            ("e", Tensor, true),
        ],
    ),
    (
        "clip",
        &[
            ("x", Tensor, true),
            ("min", Tensor, true),
            ("max", Tensor, true),
        ],
    ),
    (
        "clip_by_value",
        &[
            ("x", Tensor, true),
            ("min", Tensor, true),
            ("max", Tensor, true),
        ],
    ),
    ("add_n", &[("values", Tensors, true)]),
    ("reshape", &[("x", Tensor, true), ("shape", Dims, true)]),
    ("transpose", &[("x", Tensor, true), ("perm", Ints, false)]),
    ("expand_dims", &[("x", Tensor, true), ("axis", Int, true)]),
    ("squeeze", &[("x", Tensor, true), ("axis", Ints, false)]),
    ("concat", &[("values", Tensors, true), ("axis", Int, true)]),
    (
        "split",
        &[
            ("x", Tensor, true),
            ("num", Int, true),
            ("axis", Int, false),
        ],
    ),
    ("stack", &[("values", Tensors, true), ("axis", Int, false)]),
    (
        "unstack",
        &[
            ("x", Tensor, true),
            ("num", Int, true),
            ("axis", Int, false),
        ],
    ),
    (
        "gather",
        &[
            ("params", Tensor, true),
            ("indices", Tensor, true),
            ("axis", Int, false),
        ],
    ),
    (
        "one_hot",
        &[
            ("indices", Tensor, true),
            ("depth", Int, true),
            ("on_value", Float, false),
            ("off_value", Float, false),
            ("dtype", DType, false),
        ],
    ),
    ("fill", &[("shape", Dims, true), ("value", Tensor, true)]),
    ("zeros", FILLED),
    ("ones", FILLED),
    (
        "slice",
        &[
            ("x", Tensor, true),
            ("begin", Ints, true),
            ("size", Ints, true),
        ],
    ),
    (
        "pad",
        &[
            ("x", Tensor, true),
            ("paddings", Pairs, true),
            ("value", Float, false),
        ],
    ),
    ("tile", &[("x", Tensor, true), ("multiples", Ints, true)]),
    (
        "broadcast_to",
        &[("x", Tensor, true), ("shape", Dims, true)],
    ),
    ("reverse", &[("x", Tensor, true), ("axis", Ints, true)]),
    (
        "range",
        &[
            ("start", Tensor, true),
            ("limit", Tensor, true),
            ("delta", Tensor, false),
        ],
    ),
    ("random_uniform", RANDOM),
    ("random_normal", RANDOM),
    ("truncated_normal", RANDOM),
    ("glorot_uniform", INIT),
    ("he_normal", INIT),
    (
        "uniform",
        &[
            ("shape", Dims, false),
            ("limit", Float, true),
            ("seed", Int, false),
        ],
    ),
    (
        "conv2d",
        &[
            ("x", Tensor, true),
            ("filter", Tensor, true),
            ("strides", Ints, false),
            ("padding", Str, false),
        ],
    ),
    ("max_pool", POOL),
    ("avg_pool", POOL),
    ("assign", &[("var", Vars, true), ("value", Tensor, true)]),
    (
        "assign_add",
        &[("var", Vars, true), ("value", Tensor, true)],
    ),
    (
        "assign_sub",
        &[("var", Vars, true), ("value", Tensor, true)],
    ),
    ("grad", &[("y", Any, true), ("wrt", Any, true)]),
    (
        "minimize",
        &[
            ("loss", Tensor, true),
            ("optimizer", Optimizer, true),
            ("wrt", Vars, false),
        ],
    ),
    ("group", &[("deps", Any, true)]),
    (
        "cond",
        &[
            ("pred", Tensor, true),
            ("true_fn", Closure, true),
            ("false_fn", Closure, true),
        ],
    ),
    (
        "while_loop",
        &[
            ("cond", Closure, true),
            ("body", Closure, true),
            ("loop_vars", Any, true),
            ("maximum_iterations", Int, false),
            ("parallel_iterations", Int, false),
            ("gradient_checkpoints", Int, false),
            ("shape_invariants", Any, false),
        ],
    ),
];

/// Optimizers, usable as the second argument of `minimize`.
pub const OPTIMIZERS: &[(&str, &[Param])] = &[
    ("Sgd", &[("lr", Any, true)]),
    ("SGD", &[("lr", Any, true)]),
    (
        "Momentum",
        &[
            ("lr", Any, true),
            ("momentum", Float, true),
            ("nesterov", Bool, false),
        ],
    ),
    (
        "Adam",
        &[
            ("lr", Any, true),
            ("beta1", Float, false),
            ("beta2", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "AdamW",
        &[
            ("lr", Any, true),
            ("weight_decay", Float, true),
            ("beta1", Float, false),
            ("beta2", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "RmsProp",
        &[
            ("lr", Any, true),
            ("rho", Float, false),
            ("momentum", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "RMSProp",
        &[
            ("lr", Any, true),
            ("rho", Float, false),
            ("momentum", Float, false),
            ("epsilon", Float, false),
        ],
    ),
    (
        "Adagrad",
        &[
            ("lr", Any, true),
            ("initial_accumulator_value", Float, false),
        ],
    ),
];

/// The parameters of a language function.
pub fn signature(name: &str) -> Option<&'static [Param]> {
    if UNARY.iter().any(|(n, _)| *n == name) {
        return Some(X);
    }
    if BINARY.iter().any(|(n, _)| *n == name) {
        return Some(XY);
    }
    if REDUCTIONS.iter().any(|(n, _)| *n == name) {
        return Some(REDUCE);
    }
    OTHERS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// Every function name of the language (for suggestions and docs).
pub fn function_names() -> impl Iterator<Item = &'static str> {
    UNARY
        .iter()
        .map(|(n, _)| *n)
        .chain(BINARY.iter().map(|(n, _)| *n))
        .chain(REDUCTIONS.iter().map(|(n, _)| *n))
        .chain(OTHERS.iter().map(|(n, _)| *n))
}

/// The arguments of one call, bound to the parameters of its signature.
pub struct Args<'e> {
    pub func: String,
    params: &'static [Param],
    values: Vec<Option<&'e Expr>>,
}

impl<'e> Args<'e> {
    pub fn get(&self, name: &str) -> Option<&'e Expr> {
        let i = self.params.iter().position(|p| p.0 == name)?;
        self.values[i]
    }
    pub fn req(&self, name: &str) -> &'e Expr {
        self.get(name)
            .expect("required parameters are checked when binding")
    }
}

fn usage(func: &str, params: &[Param]) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|(n, _, req)| {
            if *req {
                n.to_string()
            } else {
                format!("{n} = ..")
            }
        })
        .collect();
    format!("{func}({})", parts.join(", "))
}

impl Builder {
    // ---- expressions ---------------------------------------------------------------------

    pub fn eval(&mut self, e: &Expr) -> R<Val> {
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
        let func = name.to_string();
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
    fn bind_args<'e>(
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

    // ---- static arguments ----------------------------------------------------------------

    pub fn int_arg(&mut self, e: &Expr) -> R<i64> {
        match self.static_lit(e)? {
            Some(l) if l.shape.is_empty() && l.kind == LitKind::Int => Ok(l.data[0] as i64),
            _ => Err(self.err_at(
                e,
                format!("expected an integer literal, got `{}`", expr_text(e)),
            )),
        }
    }

    fn float_arg(&mut self, e: &Expr) -> R<f64> {
        match self.static_lit(e)? {
            Some(l) if l.shape.is_empty() && l.kind != LitKind::Bool => Ok(l.data[0]),
            _ => Err(self.err_at(
                e,
                format!("expected a number literal, got `{}`", expr_text(e)),
            )),
        }
    }

    fn bool_arg(&mut self, e: &Expr) -> R<bool> {
        match self.static_lit(e)? {
            Some(l) if l.shape.is_empty() && l.kind == LitKind::Bool => Ok(l.data[0] != 0.0),
            _ => Err(self.err_at(
                e,
                format!("expected `true` or `false`, got `{}`", expr_text(e)),
            )),
        }
    }

    /// An integer or a list of integers.
    fn ints_arg(&mut self, e: &Expr) -> R<Vec<i64>> {
        match self.static_lit(e)? {
            Some(l) if l.kind == LitKind::Int && l.shape.len() <= 1 => {
                Ok(l.data.iter().map(|&v| v as i64).collect())
            }
            _ => Err(self.err_at(
                e,
                format!(
                    "expected an integer or a list of integers like `[0, 1]`, got `{}`",
                    expr_text(e)
                ),
            )),
        }
    }

    /// A literal when the expression is one; `None` (no error) for other expressions.
    fn static_lit(&mut self, e: &Expr) -> R<Option<Lit>> {
        match e {
            Expr::Lit(_) | Expr::Array(_) | Expr::Unary(_) | Expr::Paren(_) | Expr::Group(_) => {
                match self.eval(e)? {
                    Val::Lit(l) => Ok(Some(l)),
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    fn dtype_arg(&mut self, e: &Expr) -> R<DType> {
        let name = path_ident(e).map(|i| i.to_string()).unwrap_or_default();
        match parse_dtype(&name) {
            Some(t) => Ok(t),
            None => {
                let hint = nearest(&name, DTYPE_NAMES.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(self.err_at(
                    e,
                    format!(
                        "expected a dtype ({}), got `{}`{hint}",
                        DTYPE_NAMES.join(", "),
                        expr_text(e)
                    ),
                ))
            }
        }
    }

    /// A shape list: numbers, `-1`, or symbolic dims of the model (which become `-1`, so
    /// at most one may appear). Returns the values and whether any was symbolic.
    fn dims_arg(&mut self, e: &Expr, allow_unknown: bool) -> R<Vec<i64>> {
        let Expr::Array(a) = e else {
            return Err(self.err_at(
                e,
                format!("expected a shape like `[784, 10]`, got `{}`", expr_text(e)),
            ));
        };
        let mut out = Vec::new();
        for x in &a.elems {
            if let Some(id) = path_ident(x) {
                if self.is_dim(id) {
                    if !allow_unknown {
                        return Err(self.err_at(
                            x,
                            format!(
                                "`{id}` is a symbolic dimension: this shape must be made of \
                                 numbers (a variable or a random draw has a fixed shape)"
                            ),
                        ));
                    }
                    out.push(-1);
                    continue;
                }
            }
            let v = self.int_arg(x)?;
            if v < 0 && !(allow_unknown && v == -1) {
                return Err(self.err_at(x, "a dimension is a non-negative integer"));
            }
            out.push(v);
        }
        if out.iter().filter(|&&d| d == -1).count() > 1 {
            return Err(self.err_at(
                e,
                "at most one dimension may be inferred (`-1` or a symbolic dim)",
            ));
        }
        Ok(out)
    }

    pub(crate) fn is_dim(&self, id: &Ident) -> bool {
        self.dims.iter().any(|d| d == id)
    }

    /// The shape of an initializer: its `shape` argument, or the declared type of the
    /// variable it initializes.
    fn init_shape(&mut self, a: &Args, name: &Ident) -> R<(Vec<usize>, Option<DType>)> {
        match a.get("shape") {
            Some(e) => {
                let d = self.dims_arg(e, false)?;
                Ok((d.iter().map(|&v| v as usize).collect(), None))
            }
            None => match &self.var_type {
                Some((t, dims)) => Ok((dims.clone(), Some(*t))),
                None => Err(self.err(
                    name.span(),
                    format!(
                        "`{}` needs a shape: `{}([784, 10])`, or declare the variable's type \
                         (`var w: f32[784, 10] = {}();`)",
                        a.func, a.func, a.func
                    ),
                )),
            },
        }
    }

    fn tensor_list(&mut self, e: &Expr) -> R<Vec<Output>> {
        let Expr::Array(a) = e else {
            return Err(self.err_at(
                e,
                format!(
                    "expected a list of tensors like `[a, b]`, got `{}`",
                    expr_text(e)
                ),
            ));
        };
        let mut vals = Vec::new();
        let mut failed = false;
        for x in &a.elems {
            match self.eval(x) {
                Ok(v) => vals.push((v, x)),
                Err(Failed) => failed = true,
            }
        }
        if failed {
            return Err(Failed);
        }
        if vals.is_empty() {
            return Err(self.err_at(e, "the list is empty"));
        }
        self.tensors(vals)
    }

    /// Evaluates the tensor arguments `names` together (literals adapt to the tensors).
    fn tensor_args(&mut self, a: &Args, names: &[&str]) -> R<Vec<Output>> {
        let mut vals = Vec::new();
        let mut failed = false;
        for n in names {
            if let Some(e) = a.get(n) {
                match self.eval(e) {
                    Ok(v) => vals.push((v, e)),
                    Err(Failed) => failed = true,
                }
            }
        }
        if failed {
            return Err(Failed);
        }
        self.tensors(vals)
    }

    // ---- the functions -------------------------------------------------------------------

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
                let s = self.dims_arg(a.req("shape"), true)?;
                let r = self.g.reshape(x[0], &s);
                // A symbolic dim stands for the inferred one: keep its name on the result.
                if let (Ok(o), Expr::Array(arr)) = (&r, a.req("shape")) {
                    let named: Vec<Dim> = arr
                        .elems
                        .iter()
                        .map(|e| match path_ident(e) {
                            Some(id) if self.is_dim(id) => Dim::Sym(id.to_string()),
                            _ => Dim::Unknown,
                        })
                        .collect();
                    if named.iter().any(|d| *d != Dim::Unknown) {
                        self.g.refine_output_shape(*o, Shape::new(named));
                    }
                }
                r
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
                let on = self.scalar(t, on, whole)?;
                let off = self.scalar(t, off, whole)?;
                self.g.one_hot(i[0], depth as usize, on, off)
            }
            "fill" => {
                let s = self.dims_arg(a.req("shape"), false)?;
                let v = self.tensor_args(&a, &["value"])?;
                self.g.fill(&s, v[0])
            }
            "zeros" | "ones" => {
                let (dims, declared) = self.init_shape(&a, name)?;
                let t = match a.get("dtype") {
                    Some(e) => self.dtype_arg(e)?,
                    None => declared.unwrap_or(DType::F32),
                };
                let v = self.scalar(t, if f == "ones" { 1.0 } else { 0.0 }, whole)?;
                let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                self.g.fill(&d, v)
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
                let s = self.dims_arg(a.req("shape"), false)?;
                self.g.broadcast_to(x[0], &s)
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

    fn seed_arg(&mut self, a: &Args) -> R<Option<u64>> {
        match a.get("seed") {
            Some(e) => {
                let s = self.int_arg(e)?;
                Ok(Some(s as u64))
            }
            None => Ok(None),
        }
    }

    /// An NHWC window (strides, pool sizes): `2` or `[2, 2]` (height, width) or all four.
    fn window_arg(&mut self, e: Option<&Expr>, default: i64) -> R<Vec<i64>> {
        let Some(e) = e else {
            return Ok(vec![1, default, default, 1]);
        };
        let v = self.ints_arg(e)?;
        match v.as_slice() {
            [s] => Ok(vec![1, *s, *s, 1]),
            [h, w] => Ok(vec![1, *h, *w, 1]),
            [_, _, _, _] => Ok(v),
            _ => Err(self.err_at(
                e,
                "a window is one size (`2`), [height, width] or four NHWC sizes",
            )),
        }
    }

    /// `"SAME"` or `"VALID"`.
    fn padding_arg(&mut self, e: Option<&Expr>, default: &str) -> R<String> {
        let Some(e) = e else {
            return Ok(default.to_string());
        };
        match e {
            Expr::Lit(ExprLit {
                lit: SynLit::Str(s),
                ..
            }) if matches!(s.value().as_str(), "SAME" | "VALID") => Ok(s.value()),
            _ => Err(self.err_at(
                e,
                format!("padding is \"SAME\" or \"VALID\", got `{}`", expr_text(e)),
            )),
        }
    }

    fn pairs_arg(&mut self, e: &Expr) -> R<Vec<(i64, i64)>> {
        match self.static_lit(e)? {
            Some(l) if l.kind == LitKind::Int && l.shape.len() == 2 && l.shape[1] == 2 => Ok(l
                .data
                .chunks(2)
                .map(|p| (p[0] as i64, p[1] as i64))
                .collect()),
            _ => Err(self.err_at(
                e,
                format!(
                    "expected (before, after) pairs like `[[1, 1], [2, 2]]`, got `{}`",
                    expr_text(e)
                ),
            )),
        }
    }

    /// A scalar constant of `dtype`.
    fn scalar(&mut self, dtype: DType, v: f64, at: &Expr) -> R<Output> {
        let l = Lit {
            shape: Vec::new(),
            data: vec![v],
            kind: if dtype.is_float() {
                LitKind::Float
            } else if dtype == DType::Bool {
                LitKind::Bool
            } else {
                LitKind::Int
            },
            fixed: None,
        };
        self.materialize(&l, dtype, at)
    }

    /// `grad(y, wrt = [a, b])` (a tuple) or `grad(y, wrt = a)` (one tensor).
    fn grad(&mut self, a: &Args, whole: &Expr) -> R<Val> {
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
    fn minimize(&mut self, a: &Args, whole: &Expr) -> R<Val> {
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

    fn optimizer(&mut self, e: &Expr) -> R<Box<dyn Optimizer>> {
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

    /// A registry op called by its own name: tensors positional, attributes as keywords.
    fn registry_op(
        &mut self,
        name: &Ident,
        def: &'static tfr_graph::OpDef,
        receiver: Option<&Expr>,
        args: &Punctuated<Expr, Token![,]>,
        whole: &Expr,
    ) -> R<Val> {
        let mut inputs = Vec::new();
        let mut attrs: Vec<(String, AttrValue)> = Vec::new();
        let mut failed = false;
        let positional: Vec<&Expr> = receiver
            .into_iter()
            .chain(args.iter().filter(|a| !matches!(a, Expr::Assign(_))))
            .collect();
        for e in &positional {
            match self.eval(e) {
                Ok(v) => inputs.push((v, *e)),
                Err(Failed) => failed = true,
            }
        }
        for a in args {
            let Expr::Assign(kv) = a else { continue };
            let Some(key) = path_ident(&kv.left) else {
                self.err_at(&kv.left, "an attribute is `name = value`");
                failed = true;
                continue;
            };
            let k = key.to_string();
            let Some(ad) = def.attrs.iter().find(|d| d.name == k) else {
                let hint = nearest(&k, def.attrs.iter().map(|d| d.name))
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                let names: Vec<&str> = def.attrs.iter().map(|d| d.name).collect();
                self.err(
                    key.span(),
                    format!(
                        "op `{}` has no attribute `{k}`; {hint}(attributes: {})",
                        def.name,
                        names.join(", ")
                    ),
                );
                failed = true;
                continue;
            };
            match self.attr_value(ad.kind, &kv.right) {
                Ok(v) => attrs.push((k, v)),
                Err(Failed) => failed = true,
            }
        }
        if failed {
            return Err(Failed);
        }
        let texts: Vec<String> = positional.iter().map(|e| expr_text(*e)).collect();
        let ins = self.tensors(inputs)?;
        let mut b = self.g.build(def.name).inputs(ins);
        for (k, v) in attrs {
            b = b.attr(&k, v);
        }
        let what = def.name.to_string();
        match b.finish() {
            Ok(id) => {
                let n = self.g.node(id).outputs.len();
                Ok(match n {
                    0 => Val::Target(id),
                    1 => Val::Tensor(Output::new(id, 0)),
                    n => Val::Tuple((0..n).map(|i| Val::Tensor(Output::new(id, i))).collect()),
                })
            }
            Err(e) => {
                let _ = name;
                Err(self.graph_err(whole, &what, &texts, e))
            }
        }
    }

    fn attr_value(&mut self, kind: AttrKind, e: &Expr) -> R<AttrValue> {
        Ok(match kind {
            AttrKind::Int => AttrValue::Int(self.int_arg(e)?),
            AttrKind::Float => AttrValue::Float(self.float_arg(e)?),
            AttrKind::Bool => AttrValue::Bool(self.bool_arg(e)?),
            AttrKind::Str => match e {
                Expr::Lit(ExprLit {
                    lit: SynLit::Str(s),
                    ..
                }) => AttrValue::Str(s.value()),
                _ => return Err(self.err_at(e, "expected a string literal")),
            },
            AttrKind::DType => AttrValue::DType(self.dtype_arg(e)?),
            AttrKind::Ints => AttrValue::Ints(self.ints_arg(e)?),
            AttrKind::Floats => match self.static_lit(e)? {
                Some(l) if l.shape.len() == 1 && l.kind != LitKind::Bool => {
                    AttrValue::Floats(l.data)
                }
                _ => return Err(self.err_at(e, "expected a list of numbers")),
            },
            AttrKind::Shape => {
                let Expr::Array(a) = e else {
                    return Err(self.err_at(e, "expected a shape like `[B, 3]`"));
                };
                let mut dims = Vec::new();
                for x in &a.elems {
                    match path_ident(x) {
                        Some(id) if self.is_dim(id) => dims.push(Dim::Sym(id.to_string())),
                        _ => dims.push(Dim::Known(self.int_arg(x)? as usize)),
                    }
                }
                AttrValue::Shape(Shape::new(dims))
            }
            AttrKind::DTypes => {
                let Expr::Array(a) = e else {
                    return Err(self.err_at(e, "expected a list of dtypes like `[f32, i32]`"));
                };
                let mut ts = Vec::new();
                for x in &a.elems {
                    ts.push(self.dtype_arg(x)?);
                }
                AttrValue::DTypes(ts)
            }
            AttrKind::Tensor => match self.static_lit(e)? {
                Some(l) => AttrValue::Tensor(crate::check::lit_value(&l, l.default_dtype())),
                None => return Err(self.err_at(e, "expected a literal tensor")),
            },
        })
    }
}

/// The outputs a gradient can flow back to from `y`: along floating-point edges, not through
/// `StopGradient` or ops declared not differentiable (as `tfr_graph::gradients` walks).
fn reaches(g: &Graph, y: Output) -> std::collections::HashSet<Output> {
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

/// Nodes of the values in `v` (for `group`).
fn collect_nodes(v: &Val, out: &mut Vec<NodeId>) {
    match v {
        Val::Tensor(o) => out.push(o.node),
        Val::Target(n) => out.push(*n),
        Val::Tuple(vs) => vs.iter().for_each(|v| collect_nodes(v, out)),
        Val::Lit(_) => {}
    }
}

fn optimizer_names() -> String {
    let names: Vec<&str> = OPTIMIZERS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
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
