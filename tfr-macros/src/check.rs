//! Checking a model by building it: every statement is lowered to `tfr_graph::Graph` builder
//! calls, so shapes and dtypes are checked by the registry's shape functions (the one source
//! of truth) while the macro expands, and gradients come from `tfr_graph::gradients`.
//!
//! Errors are collected, each spanned on the user's tokens. A statement that fails poisons the
//! names it binds; statements using a poisoned name fail silently, so one mistake gives one
//! error instead of a cascade.

pub use crate::messages::*;
use crate::model::{Binder, FnDef, Item, Model};
use crate::parse::error_between;
use proc_macro2::Span;
use std::collections::HashMap;
use std::rc::Rc;
use syn::{Expr, Ident};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Dim, Graph, GraphError, NodeId, Output, Shape, TensorValue};

/// A failure already recorded in the error list.
#[derive(Debug)]
pub struct Failed;

pub type R<T> = Result<T, Failed>;

/// A literal not yet given a dtype: it takes the dtype of the tensor it meets.
#[derive(Clone, Debug)]
pub struct Lit {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    pub kind: LitKind,
    /// Set by a suffix (`2.0f64`, `3i64`).
    pub fixed: Option<DType>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LitKind {
    Int,
    Float,
    Bool,
}

impl Lit {
    pub fn default_dtype(&self) -> DType {
        self.fixed.unwrap_or(match self.kind {
            LitKind::Int => DType::I32,
            LitKind::Float => DType::F32,
            LitKind::Bool => DType::Bool,
        })
    }
}

/// The value of an expression.
#[derive(Clone, Debug)]
pub enum Val {
    Tensor(Output),
    Lit(Lit),
    Tuple(Vec<Val>),
    /// An op without outputs (a train step, a group).
    Target(NodeId),
}

/// What a name is bound to.
#[derive(Clone)]
pub(crate) struct Binding {
    /// `None` when the statement that binds it failed.
    pub(crate) val: Option<Val>,
    pub(crate) span: Span,
    /// The variable, for names declared with `var`.
    pub(crate) var: Option<Variable>,
    /// Whether `name = ..;` may give it a new value (`let` bindings and function parameters).
    pub(crate) mutable: bool,
}

/// A typed input handle to emit.
pub struct InputOut {
    pub name: Ident,
    pub docs: Vec<syn::Attribute>,
    pub dtype: DType,
    pub dims: Vec<Dim>,
    pub output: Output,
}

/// A fetchable tensor handle to emit (outputs and variables).
pub struct TensorOut {
    pub name: Ident,
    pub docs: Vec<syn::Attribute>,
    pub dtype: DType,
    pub shape: Shape,
    pub output: Output,
    /// Set for variables.
    pub var: Option<Variable>,
}

/// A target (an op run for its effect) to emit.
pub struct TargetOut {
    pub name: Ident,
    pub docs: Vec<syn::Attribute>,
    pub node: NodeId,
}

/// What a failed statement's name still gets in the emitted struct (so that code using it does
/// not add errors to the one reported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stub {
    Input,
    Var,
    Tensor,
    Target,
}

pub struct StubOut {
    pub name: Ident,
    pub docs: Vec<syn::Attribute>,
    pub kind: Stub,
}

/// The built model.
pub struct Built {
    pub graph: Graph,
    pub inputs: Vec<InputOut>,
    pub vars: Vec<TensorOut>,
    pub outputs: Vec<TensorOut>,
    pub targets: Vec<TargetOut>,
    pub init: Option<NodeId>,
    pub stubs: Vec<StubOut>,
    pub errors: Vec<syn::Error>,
    /// Per node id: the index in `sources` of the expression that made it.
    pub node_sources: Vec<Option<usize>>,
    /// (line, source text) of the expressions that made nodes.
    pub sources: Vec<(usize, String)>,
}

pub struct Builder {
    pub g: Graph,
    pub(crate) env: HashMap<String, Binding>,
    pub(crate) dims: Vec<Ident>,
    pub errors: Vec<syn::Error>,
    pub(crate) inputs: Vec<InputOut>,
    vars: Vec<TensorOut>,
    pub(crate) outputs: Vec<TensorOut>,
    targets: Vec<TargetOut>,
    stubs: Vec<StubOut>,
    /// Every float variable, in declaration order (the default `wrt` of `minimize`).
    pub trainable: Vec<Variable>,
    /// The declared type of the variable whose initializer is being evaluated.
    pub var_type: Option<(DType, Vec<usize>)>,
    statements: usize,
    /// The model's functions (`fn block(x, c) { .. }`), by name.
    pub(crate) functions: HashMap<String, Rc<FnDef>>,
    /// The functions being expanded, outermost first (recursion is refused).
    pub(crate) call_stack: Vec<String>,
    /// How many function calls and `for` iterations enclose the current statement: names
    /// bound there are not fields of the generated struct.
    pub(crate) nesting: usize,
    /// Per node id: the index in `sources` of the innermost expression that made it.
    pub(crate) node_sources: Vec<Option<usize>>,
    pub(crate) sources: Vec<(usize, String)>,
    pub(crate) source_index: HashMap<(usize, String), usize>,
}

/// Builds `model`'s graph, collecting errors.
pub fn build(model: &Model) -> Built {
    let mut b = Builder {
        g: Graph::new(),
        env: HashMap::new(),
        dims: Vec::new(),
        errors: Vec::new(),
        inputs: Vec::new(),
        vars: Vec::new(),
        outputs: Vec::new(),
        targets: Vec::new(),
        stubs: Vec::new(),
        trainable: Vec::new(),
        var_type: None,
        statements: 0,
        functions: HashMap::new(),
        call_stack: Vec::new(),
        nesting: 0,
        node_sources: Vec::new(),
        sources: Vec::new(),
        source_index: HashMap::new(),
    };
    for (i, d) in model.dims.iter().enumerate() {
        if model.dims[..i].iter().any(|e| e == d) {
            b.err(d.span(), format!("dimension `{d}` is declared twice"));
        } else {
            b.dims.push(d.clone());
        }
    }
    b.items(&model.items);
    let init = if b.errors.is_empty() {
        match b.g.global_variables_initializer() {
            Ok(n) => Some(n),
            Err(e) => {
                let m = format!("could not make the variables' initializer: {e}");
                b.err(model.name.span(), m);
                None
            }
        }
    } else {
        None
    };
    crate::messages::dedupe_errors(&mut b.errors);
    Built {
        graph: b.g,
        inputs: b.inputs,
        vars: b.vars,
        outputs: b.outputs,
        targets: b.targets,
        init,
        stubs: b.stubs,
        errors: b.errors,
        node_sources: b.node_sources,
        sources: b.sources,
    }
}

impl Builder {
    pub fn err(&mut self, span: Span, message: impl std::fmt::Display) -> Failed {
        self.errors.push(syn::Error::new(span, message));
        Failed
    }

    /// Records an error made elsewhere.
    pub fn push_error(&mut self, e: syn::Error) -> Failed {
        self.errors.push(e);
        Failed
    }

    /// An error covering the source from one span to another.
    pub fn err_between(&mut self, span: (Span, Span), message: impl std::fmt::Display) -> Failed {
        self.push_error(error_between(span.0, span.1, message))
    }

    /// Runs `f` in a nested scope of names: the names bound inside are dropped after it (a
    /// loop's body or a branch of a cond), and may shadow outer ones only as parameters.
    pub(crate) fn nested_scope<T>(&mut self, f: impl FnOnce(&mut Builder) -> T) -> T {
        let saved = self.env.clone();
        let r = f(self);
        self.env = saved;
        r
    }

    /// Binds a closure parameter (it may shadow an outer name).
    pub(crate) fn bind_param(&mut self, name: &Ident, val: Val) {
        self.bind(name, Some(val), None);
    }

    /// A `let` inside a control-flow block: like a model's `let`, but not a target (an op run
    /// for its effect has no place in a branch or an iteration).
    pub(crate) fn body_let(&mut self, binder: &Binder, expr: &Expr) {
        let mut ok = true;
        for n in binder.names() {
            ok &= self.declare(n);
        }
        if !ok {
            return;
        }
        let mut val = self.eval(expr).ok();
        if val.as_ref().is_some_and(has_target) {
            self.err_at(
                expr,
                "an op run for its effect (a target such as `minimize` or `group`) cannot be \
                 bound inside a block (a loop body, a branch, `{ .. }`); declare it outside",
            );
            val = None;
        }
        self.bind_pattern(binder, val, expr, &[]);
    }

    pub fn err_at(
        &mut self,
        tokens: &impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) -> Failed {
        self.errors.push(syn::Error::new_spanned(tokens, message));
        Failed
    }

    /// Reports a builder error for the call `what` at `at`, naming the operands instead of the
    /// op's argument names (`a is [B, 784]` becomes `x is [B, 784]`).
    pub fn graph_err(
        &mut self,
        at: &impl quote::ToTokens,
        what: &str,
        operands: &[String],
        e: GraphError,
    ) -> Failed {
        let message = match e {
            GraphError::InvalidNode { op, message, .. } => {
                let mut m = message;
                if let Some(def) = tfr_graph::registry().get(&op) {
                    for (arg, text) in def.inputs.iter().zip(operands) {
                        let name = operand_name(text);
                        m = m.replace(&format!("`{}`", arg.name), &format!("`{text}`"));
                        for verb in ["is", "must", "has", "and"] {
                            m = replace_phrase(
                                &m,
                                &format!("{} {verb} ", arg.name),
                                &format!("{name} {verb} "),
                            );
                        }
                        m = replace_phrase(&m, &format!("{}'s ", arg.name), &format!("{name}'s "));
                        m = m.replace(&format!("({} ", arg.name), &format!("({name} "));
                    }
                }
                m
            }
            GraphError::Gradient(m) => m,
            other => other.to_string(),
        };
        let message = rust_dtype_names(&message);
        self.err_at(at, format!("{what}: {message}"))
    }

    // ---- statements ----------------------------------------------------------------------

    pub(crate) fn items(&mut self, items: &[Item]) {
        self.register_functions(items);
        for item in items {
            self.item(item);
            self.statements += 1;
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Seed(v) => {
                if self.statements > 0 || !self.g.is_empty() {
                    self.err(
                        v.span(),
                        "`seed = ..;` must be the first statement, before any random op",
                    );
                    return;
                }
                match v.base10_parse::<u64>() {
                    Ok(s) => self.g.seed = Some(s),
                    Err(_) => {
                        self.err(v.span(), "a seed is a non-negative integer");
                    }
                }
            }
            Item::Input { name, ty, docs } => {
                if self.nesting > 0 {
                    self.err(
                        name.span(),
                        "an `input` is declared at the top of the model, not in a function or \
                         a `for` loop (pass it to the function as an argument)",
                    );
                    return;
                }
                if !self.declare(name) {
                    return;
                }
                let r = self.input(name, ty);
                match r {
                    Ok((dtype, dims, output)) => {
                        self.bind(name, Some(Val::Tensor(output)), None);
                        self.inputs.push(InputOut {
                            name: name.clone(),
                            docs: docs.clone(),
                            dtype,
                            dims,
                            output,
                        });
                    }
                    Err(Failed) => {
                        self.stub(name, docs, Stub::Input);
                        self.bind(name, None, None)
                    }
                }
            }
            Item::Var {
                name,
                ty,
                init,
                docs,
            } => {
                if !self.declare(name) {
                    return;
                }
                match self.var(name, ty.as_ref(), init) {
                    Ok(v) => {
                        self.bind(name, Some(Val::Tensor(v.value)), Some(v.clone()));
                        if v.dtype.is_differentiable() {
                            self.trainable.push(v.clone());
                        }
                        if self.nesting > 0 {
                            // One per call or iteration: in the graph (and trained), named by
                            // its scope (`conv_block_1/w`), but not a field.
                            return;
                        }
                        self.vars.push(TensorOut {
                            name: name.clone(),
                            docs: docs.clone(),
                            dtype: v.dtype,
                            shape: v.shape.clone(),
                            output: v.value,
                            var: Some(v),
                        });
                    }
                    Err(Failed) => {
                        self.stub(name, docs, Stub::Var);
                        self.bind(name, None, None)
                    }
                }
            }
            Item::Let {
                fetch,
                binder,
                ty,
                expr,
                docs,
            } => {
                let names = binder.names();
                let mut ok = true;
                for n in &names {
                    ok &= self.declare(n);
                }
                if !ok {
                    return;
                }
                let mut val = self.eval(expr).ok();
                if let (Some(v), Some(ty), Binder::Name(n)) = (&val, ty, binder) {
                    val = self.check_declared(n, ty, v.clone(), expr).ok();
                }
                if let (None, Binder::Name(n)) = (&val, binder) {
                    if is_target_call(expr) {
                        self.stub(n, docs, Stub::Target);
                    }
                }
                self.bind_pattern(binder, val.clone(), expr, docs);
                if let (true, Binder::Name(n)) = (fetch, binder) {
                    self.fetch_let(n, val, docs);
                }
            }
            Item::Output { name, expr, docs } => {
                if self.nesting > 0 {
                    self.err(
                        name.span(),
                        "an `output` is declared at the top of the model, not in a function or \
                         a `for` loop (return the value from the function and output it)",
                    );
                    return;
                }
                self.output(name, expr.as_ref(), docs)
            }
            Item::Fn(_) => {}
            Item::For {
                binder,
                iter,
                span,
                items,
            } => self.for_loop(binder, iter, *span, items),
            Item::Assign { name, expr } => self.assign(name, expr),
            Item::Block {
                scope,
                device,
                items,
            } => self.block(scope.as_ref(), device.as_ref(), items),
        }
    }

    fn block(&mut self, scope: Option<&syn::LitStr>, device: Option<&syn::LitStr>, items: &[Item]) {
        // `with_scope`/`with_device` keep their stacks in the graph: run the statements on the
        // graph they hand us, swapped into `self` for the duration.
        let mut g = std::mem::take(&mut self.g);
        match (scope, device) {
            (Some(s), d) => {
                let name = s.value();
                if name.is_empty() || name.contains(['/', ':']) {
                    self.err(
                        s.span(),
                        "a scope name is a non-empty string without `/` or `:`",
                    );
                    self.g = g;
                    return;
                }
                g.with_scope(&name, |g| match d {
                    Some(d) => g.with_device(&d.value(), |g| self.with_graph(g, items)),
                    None => self.with_graph(g, items),
                });
            }
            (None, Some(d)) => {
                g.with_device(&d.value(), |g| self.with_graph(g, items));
            }
            (None, None) => self.with_graph(&mut g, items),
        }
        self.g = g;
    }

    fn with_graph(&mut self, g: &mut Graph, items: &[Item]) {
        std::mem::swap(&mut self.g, g);
        self.items(items);
        std::mem::swap(&mut self.g, g);
    }

    pub(crate) fn stub(&mut self, name: &Ident, docs: &[syn::Attribute], kind: Stub) {
        self.stubs.push(StubOut {
            name: name.clone(),
            docs: docs.to_vec(),
            kind,
        });
    }

    /// Reserves a name; reports a reuse (pointing at the first definition).
    pub(crate) fn declare(&mut self, name: &Ident) -> bool {
        let key = name.to_string();
        if let Some(prev) = self.env.get(&key) {
            let first = prev.span;
            let mut e = syn::Error::new(
                name.span(),
                format!(
                    "`{key}` is already defined: graph! names are single-assignment \
                     (tensors are immutable); pick another name"
                ),
            );
            e.combine(syn::Error::new(
                first,
                format!("`{key}` is first defined here"),
            ));
            self.errors.push(e);
            return false;
        }
        if self.dims.iter().any(|d| *d == key) {
            self.err(
                name.span(),
                format!("`{key}` is a symbolic dimension of the model; pick another name"),
            );
            return false;
        }
        true
    }

    pub(crate) fn bind(&mut self, name: &Ident, val: Option<Val>, var: Option<Variable>) {
        self.env.insert(
            name.to_string(),
            Binding {
                val,
                span: name.span(),
                var,
                mutable: false,
            },
        );
    }

    /// Binds a name that `name = ..;` may rebind (a `let`, a function's parameter).
    pub(crate) fn bind_mutable(&mut self, name: &Ident, val: Option<Val>) {
        self.bind(name, val, None);
        if let Some(b) = self.env.get_mut(&name.to_string()) {
            b.mutable = true;
        }
    }

    fn bind_pattern(
        &mut self,
        binder: &Binder,
        val: Option<Val>,
        expr: &Expr,
        docs: &[syn::Attribute],
    ) {
        match binder {
            Binder::Ignore => {}
            Binder::Name(n) => {
                if let (Some(Val::Target(node)), 0) = (&val, self.nesting) {
                    self.targets.push(TargetOut {
                        name: n.clone(),
                        docs: docs.to_vec(),
                        node: *node,
                    });
                }
                self.bind_mutable(n, val);
            }
            Binder::Tuple(parts, span) => {
                let vals = match val {
                    Some(Val::Tuple(v)) if v.len() == parts.len() => {
                        v.into_iter().map(Some).collect()
                    }
                    Some(Val::Tuple(v)) => {
                        self.err(
                            *span,
                            format!(
                                "`{}` gives {} values but the pattern has {} names",
                                expr_text(expr),
                                v.len(),
                                parts.len()
                            ),
                        );
                        vec![None; parts.len()]
                    }
                    Some(_) => {
                        self.err(
                            *span,
                            format!("`{}` is one value, not a tuple", expr_text(expr)),
                        );
                        vec![None; parts.len()]
                    }
                    None => vec![None; parts.len()],
                };
                for (p, v) in parts.iter().zip(vals) {
                    self.bind_pattern(p, v, expr, docs);
                }
            }
        }
    }
}

pub(crate) fn error_between_push(b: &mut Builder, span: (Span, Span), m: String) -> Failed {
    b.errors.push(error_between(span.0, span.1, m));
    Failed
}

/// Whether a value is or holds a target.
fn has_target(v: &Val) -> bool {
    match v {
        Val::Target(_) => true,
        Val::Tuple(v) => v.iter().any(has_target),
        _ => false,
    }
}

/// Whether an expression is a call whose value is a target (`minimize`, `group`).
fn is_target_call(e: &Expr) -> bool {
    let name = match e {
        Expr::Call(c) => path_ident(&c.func).map(|i| i.to_string()),
        Expr::MethodCall(m) => Some(m.method.to_string()),
        _ => None,
    };
    matches!(name.as_deref(), Some("minimize" | "group"))
}

/// The identifier of a one-segment path expression.
pub fn path_ident(e: &Expr) -> Option<&Ident> {
    match e {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident(),
        Expr::Paren(p) => path_ident(&p.expr),
        Expr::Group(g) => path_ident(&g.expr),
        _ => None,
    }
}

/// What kind of value this is, for messages.
pub fn describe(v: &Val) -> String {
    match v {
        Val::Tensor(_) => "a tensor".into(),
        Val::Lit(_) => "a literal".into(),
        Val::Tuple(t) => format!("a tuple of {} values", t.len()),
        Val::Target(_) => "a target (an op without outputs)".into(),
    }
}

/// The constant holding a literal's data as `dtype`.
pub fn lit_value(l: &Lit, dtype: DType) -> TensorValue {
    let shape = &l.shape;
    let d = &l.data;
    let v = match dtype {
        DType::F32 => TensorValue::new(shape, d.iter().map(|&x| x as f32).collect()),
        DType::F64 => TensorValue::new(shape, d.clone()),
        DType::I32 => TensorValue::new(shape, d.iter().map(|&x| x as i32).collect()),
        DType::I64 => TensorValue::new(shape, d.iter().map(|&x| x as i64).collect()),
        DType::U8 => TensorValue::new(shape, d.iter().map(|&x| x as u8).collect()),
        DType::Bool => TensorValue::new(shape, d.iter().map(|&x| x != 0.0).collect()),
        DType::F16 => TensorValue::new(
            shape,
            d.iter().map(|&x| tfr_graph::f16::from_f64(x)).collect(),
        ),
        DType::BF16 => TensorValue::new(
            shape,
            d.iter().map(|&x| tfr_graph::bf16::from_f64(x)).collect(),
        ),
        DType::Resource | DType::String => None,
    };
    v.expect("a literal's data fills its shape")
}

/// Replaces `from` where it starts a word.
fn replace_phrase(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        out.push_str(&rest[..i]);
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '`') {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}
