//! The parsed definition of a model: what the user wrote, with spans, before any checking.

use proc_macro2::Span;
use std::rc::Rc;
use syn::{Attribute, Expr, Ident, LitInt, LitStr, Pat, Visibility};

/// One `model Name<B, ...> { ... }` definition.
pub struct Model {
    /// Outer attributes (doc comments, `#[derive]` is not allowed, docs are kept).
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    /// Symbolic dimension names declared as generics (`<B, T>`).
    pub dims: Vec<Ident>,
    pub items: Vec<Item>,
}

/// A dimension in a declared shape.
#[derive(Clone)]
pub enum DimSpec {
    Known(usize),
    Sym(Ident),
}

/// A declared tensor type, `f32[B, 784]`.
#[derive(Clone)]
pub struct TypeSpec {
    pub dtype: Ident,
    pub dims: Vec<DimSpec>,
    /// First and last spans of the type, for errors about it.
    pub span: (Span, Span),
}

/// What a `let` binds: a name, `_`, or a tuple of those.
pub enum Binder {
    Name(Ident),
    Ignore,
    Tuple(Vec<Binder>, Span),
}

impl Binder {
    /// Every name bound.
    pub fn names(&self) -> Vec<&Ident> {
        match self {
            Binder::Name(i) => vec![i],
            Binder::Ignore => Vec::new(),
            Binder::Tuple(v, _) => v.iter().flat_map(Binder::names).collect(),
        }
    }

    pub fn from_pat(pat: &Pat) -> syn::Result<Binder> {
        match pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                if let Some(m) = &p.mutability {
                    return Err(syn::Error::new_spanned(
                        m,
                        "graph! bindings are immutable tensors: remove `mut`",
                    ));
                }
                Ok(Binder::Name(p.ident.clone()))
            }
            Pat::Wild(_) => Ok(Binder::Ignore),
            Pat::Tuple(t) => Ok(Binder::Tuple(
                t.elems
                    .iter()
                    .map(Binder::from_pat)
                    .collect::<syn::Result<_>>()?,
                syn::spanned::Spanned::span(t),
            )),
            Pat::Paren(p) => Binder::from_pat(&p.pat),
            other => Err(syn::Error::new_spanned(
                other,
                "graph! `let` binds a name, `_` or a tuple of names, e.g. `let (a, b) = ...;`",
            )),
        }
    }
}

/// One statement of a model body.
pub enum Item {
    /// `seed = 42;`: the graph-level random seed.
    Seed(LitInt),
    /// `input x: f32[B, 784];`
    Input {
        name: Ident,
        ty: TypeSpec,
        docs: Vec<Attribute>,
    },
    /// `var w: f32[784, 10] = glorot_uniform([784, 10]);` (the type is optional).
    Var {
        name: Ident,
        ty: Option<TypeSpec>,
        init: Expr,
        docs: Vec<Attribute>,
    },
    /// `let h = relu(x.matmul(w) + b);` (`#[fetch] let h = ..;` also exposes it as a fetch)
    Let {
        fetch: bool,
        binder: Binder,
        /// `let h: f32[B, 4] = ..;`: the type the value must provably have.
        ty: Option<TypeSpec>,
        expr: Expr,
        docs: Vec<Attribute>,
    },
    /// `output logits;` or `output probs = softmax(logits);`
    Output {
        name: Ident,
        expr: Option<Expr>,
        docs: Vec<Attribute>,
    },
    /// `fn conv_block(x, c) { .. value }`: a function of the model, expanded at each call.
    Fn(Rc<FnDef>),
    /// `for i in 0..3 { .. }` / `for (c, n) in [(64, 2), (128, 2)] { .. }`: unrolled while the
    /// macro expands.
    For {
        binder: Binder,
        iter: Expr,
        /// The `for` keyword, for errors about the loop.
        span: Span,
        items: Vec<Item>,
    },
    /// `x = block(x, 64);`: a new value for a `let` binding (or a function's parameter).
    Assign { name: Ident, expr: Expr },
    /// `scope "layer1" { ... }`, `#[device("/device:GPU:0")] { ... }`, or any statement with
    /// `#[scope("..")]` / `#[device("..")]` attributes.
    Block {
        scope: Option<LitStr>,
        device: Option<LitStr>,
        items: Vec<Item>,
    },
}

/// `fn name(a, b) { statements; value }` declared in a model.
pub struct FnDef {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub items: Vec<Item>,
    /// The function's value: its last expression, without `;`.
    pub result: Expr,
}
