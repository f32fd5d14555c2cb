//! The syntax of control-flow blocks: a branch or loop body is a Rust block of `let`
//! statements ending with its value (`{ let h = tanh(x); (i + 1, h) }`), or a bare expression;
//! a loop's condition and body are closures (`|i, h| i < n`). Read from syn's expressions while
//! the model is built; every malformed piece is a spanned error.

use crate::model::Binder;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Pat, ReturnType, Stmt};

/// `{ let a = ..; let (b, c) = ..; value }`, or a bare expression (no statements).
pub struct Block<'e> {
    pub lets: Vec<(Binder, &'e Expr)>,
    pub result: &'e Expr,
}

impl<'e> Block<'e> {
    /// A block expression, or any other expression as a block without statements.
    pub fn of_expr(e: &'e Expr) -> syn::Result<Block<'e>> {
        match e {
            Expr::Block(b) if b.label.is_none() && b.attrs.is_empty() => Block::of_block(&b.block),
            Expr::Paren(p) => Block::of_expr(&p.expr),
            Expr::Group(g) => Block::of_expr(&g.expr),
            _ => Ok(Block {
                lets: Vec::new(),
                result: e,
            }),
        }
    }

    pub fn of_block(b: &'e syn::Block) -> syn::Result<Block<'e>> {
        let mut lets = Vec::new();
        let mut result = None;
        let n = b.stmts.len();
        for (k, s) in b.stmts.iter().enumerate() {
            match s {
                Stmt::Local(l) => {
                    if let Some(a) = l.attrs.first() {
                        return Err(syn::Error::new_spanned(
                            a,
                            "attributes are not supported on a `let` inside a block",
                        ));
                    }
                    if let Pat::Type(t) = &l.pat {
                        return Err(syn::Error::new_spanned(
                            &t.ty,
                            "`let` takes no type in graph!: shapes are inferred",
                        ));
                    }
                    let binder = Binder::from_pat(&l.pat)?;
                    let Some(init) = &l.init else {
                        return Err(syn::Error::new_spanned(
                            l,
                            "a `let` in graph! binds a value: `let h = tanh(x);`",
                        ));
                    };
                    if let Some((e, _)) = &init.diverge {
                        return Err(syn::Error::new_spanned(
                            e,
                            "`let .. else` is not supported in graph!",
                        ));
                    }
                    lets.push((binder, &*init.expr));
                }
                Stmt::Expr(e, None) if k + 1 == n => result = Some(e),
                Stmt::Expr(_, Some(semi)) if k + 1 == n => {
                    return Err(syn::Error::new_spanned(
                        semi,
                        "a block's value is its last expression, without `;`: remove this `;`",
                    ))
                }
                Stmt::Expr(e, _) => {
                    return Err(syn::Error::new_spanned(
                        e,
                        "inside a block, graph! takes `let` statements and then the block's \
                         value: `{ let h = tanh(x); h * 2.0 }`",
                    ))
                }
                Stmt::Item(i) => {
                    return Err(syn::Error::new_spanned(
                        i,
                        "items are not supported inside a graph! block: use `let` statements",
                    ))
                }
                Stmt::Macro(m) => {
                    return Err(syn::Error::new_spanned(
                        m,
                        "macros are not supported inside a graph! block",
                    ))
                }
            }
        }
        match result {
            Some(result) => Ok(Block { lets, result }),
            None => Err(syn::Error::new(
                b.brace_token.span.join(),
                "this block gives no value: end it with an expression (the value), without `;`",
            )),
        }
    }
}

/// `|a, b| body` (or `|(a, b)| body`): the condition or body of a loop, or a branch of `cond`.
pub struct Closure<'e> {
    pub params: Vec<Ident>,
    /// The first and last `|`, for errors about the parameters.
    pub params_span: (Span, Span),
    pub body: Block<'e>,
}

impl<'e> Closure<'e> {
    pub fn parse(e: &'e Expr) -> syn::Result<Closure<'e>> {
        let c = match e {
            Expr::Closure(c) => c,
            Expr::Paren(p) => return Closure::parse(&p.expr),
            Expr::Group(g) => return Closure::parse(&g.expr),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "expected a closure, like `|i, x| i < 10` or `|| value`",
                ))
            }
        };
        let params_span = (c.or1_token.span, c.or2_token.span);
        if let Some(m) = &c.movability {
            return Err(syn::Error::new_spanned(
                m,
                "graph! closures are plain `|..| ..`",
            ));
        }
        if let Some(a) = &c.asyncness {
            return Err(syn::Error::new_spanned(
                a,
                "graph! closures are plain `|..| ..`",
            ));
        }
        if let Some(m) = &c.capture {
            return Err(syn::Error::new_spanned(
                m,
                "graph! closures are plain `|..| ..`: remove `move`",
            ));
        }
        if let Some(l) = &c.lifetimes {
            return Err(syn::Error::new_spanned(
                l,
                "graph! closures are plain `|..| ..`",
            ));
        }
        if let ReturnType::Type(arrow, _) = &c.output {
            return Err(syn::Error::new(
                arrow.span(),
                "graph! closures take no return type: shapes are inferred",
            ));
        }
        let mut params = Vec::new();
        let inputs: Vec<&Pat> = match c.inputs.iter().collect::<Vec<_>>().as_slice() {
            [Pat::Tuple(t)] => t.elems.iter().collect(),
            all => all.to_vec(),
        };
        for p in inputs {
            match p {
                Pat::Ident(i) if i.by_ref.is_none() && i.subpat.is_none() => {
                    if let Some(m) = &i.mutability {
                        return Err(syn::Error::new_spanned(
                            m,
                            "graph! values are immutable: remove `mut`",
                        ));
                    }
                    params.push(i.ident.clone());
                }
                Pat::Wild(w) => params.push(Ident::new("_", w.span())),
                Pat::Type(t) => {
                    return Err(syn::Error::new_spanned(
                        &t.ty,
                        "closure parameters take no type in graph!: shapes are inferred",
                    ))
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "a closure parameter is a name (one per loop variable): `|i, h| ..`",
                    ))
                }
            }
        }
        Ok(Closure {
            params,
            params_span,
            body: Block::of_expr(&c.body)?,
        })
    }
}
