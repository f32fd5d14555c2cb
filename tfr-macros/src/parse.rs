//! Parsing `graph! { ... }` input into [`Model`]s. A malformed statement is reported and
//! skipped up to its `;` so that the statements after it are still parsed and checked.

use crate::model::{Binder, DimSpec, FnDef, Item, Model, TypeSpec};
use proc_macro2::{Span, TokenTree};
use std::rc::Rc;
use syn::parse::{Parse, ParseStream};
use syn::{braced, bracketed, Attribute, Expr, Ident, LitInt, LitStr, Token, Visibility};

mod kw {
    syn::custom_keyword!(model);
    syn::custom_keyword!(input);
    syn::custom_keyword!(var);
    syn::custom_keyword!(output);
    syn::custom_keyword!(scope);
    syn::custom_keyword!(seed);
}

/// The words a model statement may start with.
const STATEMENT_WORDS: &[&str] = &[
    "input", "var", "let", "output", "scope", "seed", "fn", "for",
];

/// Everything in one macro invocation: the models, and the parse errors found on the way.
pub struct Input {
    pub models: Vec<Model>,
    pub errors: Vec<syn::Error>,
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut models = Vec::new();
        let mut errors = Vec::new();
        while !input.is_empty() {
            let (model, errs) = parse_model(input)?;
            models.push(model);
            errors.extend(errs);
        }
        if models.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "graph! expects a model: `graph! { pub model Name<B> { input x: f32[B, 3]; ... } }`",
            ));
        }
        Ok(Input { models, errors })
    }
}

fn parse_model(input: ParseStream) -> syn::Result<(Model, Vec<syn::Error>)> {
    let attrs = input.call(Attribute::parse_outer)?;
    for a in &attrs {
        if !a.path().is_ident("doc") {
            return Err(syn::Error::new_spanned(
                a,
                "only doc comments are allowed on a graph! model (the generated type derives \
                 what it needs)",
            ));
        }
    }
    let vis: Visibility = input.parse()?;
    if input.peek(Token![struct]) {
        let t: Token![struct] = input.parse()?;
        return Err(syn::Error::new(
            t.span,
            "a graph! definition starts with `model`, not `struct`: `model Name<B> { ... }`",
        ));
    }
    input.parse::<kw::model>().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected `model Name { ... }` (optionally `pub`, with symbolic dims as generics: \
             `model Mlp<B> { ... }`)",
        )
    })?;
    let name: Ident = input.parse()?;
    let mut dims = Vec::new();
    if input.peek(Token![<]) {
        input.parse::<Token![<]>()?;
        while !input.peek(Token![>]) {
            let d: Ident = input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "a model's generics are symbolic dimension names, like `<B, T>`",
                )
            })?;
            dims.push(d);
            if !input.peek(Token![>]) {
                input.parse::<Token![,]>()?;
            }
        }
        input.parse::<Token![>]>()?;
    }
    let body;
    braced!(body in input);
    let mut errors = Vec::new();
    let items = parse_items(&body, &mut errors);
    Ok((
        Model {
            attrs,
            vis,
            name,
            dims,
            items,
        },
        errors,
    ))
}

/// Parses statements until the stream ends, skipping (and reporting) malformed ones.
fn parse_items(input: ParseStream, errors: &mut Vec<syn::Error>) -> Vec<Item> {
    let mut items = Vec::new();
    while !input.is_empty() {
        match parse_item(input, errors) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(e) => {
                errors.push(e);
                skip_statement(input);
            }
        }
    }
    items
}

/// Skips tokens up to and including the next `;` (or a brace group ending a block statement).
fn skip_statement(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            rest = next;
            match tt {
                TokenTree::Punct(p) if p.as_char() == ';' => break,
                TokenTree::Group(g) if g.delimiter() == proc_macro2::Delimiter::Brace => {
                    break;
                }
                _ => {}
            }
        }
        Ok(((), rest))
    });
}

fn parse_item(input: ParseStream, errors: &mut Vec<syn::Error>) -> syn::Result<Option<Item>> {
    let attrs = input.call(Attribute::parse_outer)?;
    let mut docs = Vec::new();
    let mut scope = None;
    let mut device = None;
    let mut fetch = None;
    for a in attrs {
        if a.path().is_ident("doc") {
            docs.push(a);
        } else if a.path().is_ident("fetch") {
            a.meta.require_path_only()?;
            fetch = Some(a);
        } else if a.path().is_ident("device") {
            device = Some(string_attr(&a, "device", "/device:GPU:0")?);
        } else if a.path().is_ident("scope") {
            scope = Some(string_attr(&a, "scope", "layer1")?);
        } else {
            return Err(syn::Error::new_spanned(
                a.path(),
                "unknown attribute in graph!: the statement attributes are \
                 `#[device(\"/device:GPU:0\")]`, `#[scope(\"name\")]` and `#[fetch]` (on a \
                 `let`)",
            ));
        }
    }
    let mut item = parse_bare_item(input, docs, errors)?;
    if let Some(a) = fetch {
        match &mut item {
            Some(Item::Let {
                fetch,
                binder: Binder::Name(_),
                ..
            }) => *fetch = true,
            _ => {
                return Err(syn::Error::new_spanned(
                    a,
                    "`#[fetch]` goes on a `let` of one name: `#[fetch] let h = relu(x);` \
                     exposes `h` as a fetch handle",
                ))
            }
        }
    }
    Ok(match (scope, device) {
        (None, None) => item,
        (scope, device) => match item {
            Some(Item::Block {
                scope: inner_scope,
                device: inner_device,
                items,
            }) if scope.is_none() || inner_scope.is_none() => Some(Item::Block {
                scope: scope.or(inner_scope),
                device: device.or(inner_device),
                items,
            }),
            Some(item) => Some(Item::Block {
                scope,
                device,
                items: vec![item],
            }),
            None => None,
        },
    })
}

fn string_attr(a: &Attribute, what: &str, example: &str) -> syn::Result<LitStr> {
    a.parse_args::<LitStr>().map_err(|_| {
        syn::Error::new_spanned(
            a,
            format!("`#[{what}]` takes one string: `#[{what}(\"{example}\")]`"),
        )
    })
}

fn parse_bare_item(
    input: ParseStream,
    docs: Vec<syn::Attribute>,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<Option<Item>> {
    let look = input.lookahead1();
    if look.peek(kw::seed) {
        input.parse::<kw::seed>()?;
        input.parse::<Token![=]>()?;
        let v: LitInt = input.parse()?;
        input.parse::<Token![;]>()?;
        return Ok(Some(Item::Seed(v)));
    }
    if look.peek(kw::input) {
        input.parse::<kw::input>()?;
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("an input needs a type: `input {name}: f32[B, 784];`"),
            )
        })?;
        let ty = parse_type(input)?;
        input.parse::<Token![;]>()?;
        return Ok(Some(Item::Input { name, ty, docs }));
    }
    if look.peek(kw::var) {
        input.parse::<kw::var>()?;
        let name: Ident = input.parse()?;
        let ty = if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            Some(parse_type(input)?)
        } else {
            None
        };
        input.parse::<Token![=]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("a variable needs an initial value: `var {name} = zeros([10]);`"),
            )
        })?;
        let init: Expr = input.parse()?;
        input.parse::<Token![;]>()?;
        return Ok(Some(Item::Var {
            name,
            ty,
            init,
            docs,
        }));
    }
    if look.peek(Token![let]) {
        input.parse::<Token![let]>()?;
        let pat = syn::Pat::parse_single(input)?;
        let binder = Binder::from_pat(&pat)?;
        let ty = if input.peek(Token![:]) {
            let c: Token![:] = input.parse()?;
            if !matches!(binder, Binder::Name(_)) {
                return Err(syn::Error::new(
                    c.span,
                    "a type on `let` asserts one tensor's type: `let h: f32[B, 4] = ..;` (give \
                     the parts of a tuple their own `let`)",
                ));
            }
            Some(parse_type(input)?)
        } else {
            None
        };
        input.parse::<Token![=]>()?;
        let expr: Expr = input.parse()?;
        input.parse::<Token![;]>()?;
        return Ok(Some(Item::Let {
            fetch: false,
            binder,
            ty,
            expr,
            docs,
        }));
    }
    if look.peek(kw::output) {
        input.parse::<kw::output>()?;
        let mut outs = Vec::new();
        loop {
            let name: Ident = input.parse()?;
            let expr = if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                Some(input.parse::<Expr>()?)
            } else {
                None
            };
            outs.push(Item::Output {
                name,
                expr,
                docs: docs.clone(),
            });
            if input.peek(Token![;]) {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        input.parse::<Token![;]>()?;
        return Ok(Some(if outs.len() == 1 {
            outs.pop().expect("one output")
        } else {
            Item::Block {
                scope: None,
                device: None,
                items: outs,
            }
        }));
    }
    if look.peek(kw::scope) {
        input.parse::<kw::scope>()?;
        let name: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "a scope is named by a string: `scope \"layer1\" { ... }`",
            )
        })?;
        let body;
        braced!(body in input);
        let items = parse_items(&body, errors);
        return Ok(Some(Item::Block {
            scope: Some(name),
            device: None,
            items,
        }));
    }
    if look.peek(Token![fn]) {
        return parse_fn(input, errors).map(Some);
    }
    if look.peek(Token![for]) {
        let for_token: Token![for] = input.parse()?;
        let pat = syn::Pat::parse_single(input)?;
        let binder = Binder::from_pat(&pat)?;
        input.parse::<Token![in]>()?;
        let iter = Expr::parse_without_eager_brace(input)?;
        let body;
        braced!(body in input);
        let items = parse_items(&body, errors);
        return Ok(Some(Item::For {
            binder,
            iter,
            span: for_token.span,
            items,
        }));
    }
    if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
        let name: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let expr: Expr = input.parse()?;
        input.parse::<Token![;]>()?;
        return Ok(Some(Item::Assign { name, expr }));
    }
    if look.peek(syn::token::Brace) {
        let body;
        braced!(body in input);
        let items = parse_items(&body, errors);
        return Ok(Some(Item::Block {
            scope: None,
            device: None,
            items,
        }));
    }
    // Not a statement: explain what is, with the nearest statement word when it is a typo.
    let fork = input.fork();
    if let Ok(word) = fork.call(<Ident as syn::ext::IdentExt>::parse_any) {
        let w = word.to_string();
        if crate::check::is_rust_loop(&w) {
            return Err(syn::Error::new(
                word.span(),
                crate::check::rust_loop_message(&w),
            ));
        }
        if crate::check::is_control_value(&w) {
            return Err(syn::Error::new(
                word.span(),
                crate::check::control_statement_message(&w),
            ));
        }
        if let Some(s) = nearest(&w, STATEMENT_WORDS.iter().copied()) {
            return Err(syn::Error::new(
                word.span(),
                format!("unknown statement `{w}`; did you mean `{s}`?"),
            ));
        }
    }
    Err(look.error())
}

/// Whether the next tokens start a statement (rather than a function's value).
fn starts_statement(input: ParseStream) -> bool {
    input.peek(Token![#])
        || input.peek(Token![let])
        || input.peek(Token![fn])
        || input.peek(Token![for])
        || input.peek(kw::input)
        || input.peek(kw::var)
        || input.peek(kw::output)
        || input.peek(kw::scope) && input.peek2(LitStr)
        || input.peek(syn::token::Brace)
        || (input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]))
}

/// `fn name(a, b) { statements; value }`.
fn parse_fn(input: ParseStream, errors: &mut Vec<syn::Error>) -> syn::Result<Item> {
    input.parse::<Token![fn]>()?;
    let name: Ident = input.parse()?;
    let params_input;
    syn::parenthesized!(params_input in input);
    let mut params = Vec::new();
    while !params_input.is_empty() {
        let p: Ident = params_input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "a graph! function's parameters are names, without types (shapes are inferred \
                 at each call): `fn block(x, channels) { .. }`",
            )
        })?;
        if params_input.peek(Token![:]) {
            return Err(syn::Error::new(
                params_input.span(),
                "a graph! function's parameters take no type: shapes and dtypes are checked at \
                 each call",
            ));
        }
        params.push(p);
        if !params_input.is_empty() {
            params_input.parse::<Token![,]>()?;
        }
    }
    if input.peek(Token![->]) {
        let arrow: Token![->] = input.parse()?;
        return Err(syn::Error::new(
            arrow.spans[0],
            "a graph! function takes no return type: its value's shape is inferred at each call",
        ));
    }
    let body;
    let braces = braced!(body in input);
    let mut items = Vec::new();
    let mut result = None;
    while !body.is_empty() {
        if starts_statement(&body) {
            match parse_item(&body, errors) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {}
                Err(e) => {
                    errors.push(e);
                    skip_statement(&body);
                }
            }
            continue;
        }
        let e: Expr = match body.parse() {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                skip_statement(&body);
                continue;
            }
        };
        if body.is_empty() {
            result = Some(e);
        } else if body.peek(Token![;]) {
            let semi: Token![;] = body.parse()?;
            if body.is_empty() {
                errors.push(syn::Error::new(
                    semi.span,
                    "a function's value is its last expression, without `;`: remove this `;`",
                ));
            } else {
                errors.push(syn::Error::new_spanned(
                    &e,
                    "a graph! function holds statements (`let`, `var`, `for`, `x = ..;`) and \
                     then its value: `fn block(x) { let h = relu(x); h * 2.0 }`",
                ));
            }
        } else {
            return Err(body.error("expected `;` or the end of the function"));
        }
    }
    let Some(result) = result else {
        return Err(syn::Error::new(
            braces.span.join(),
            format!(
                "function `{name}` gives no value: end its body with an expression (its value), \
                 without `;`"
            ),
        ));
    };
    Ok(Item::Fn(Rc::new(FnDef {
        name,
        params,
        items,
        result,
    })))
}

fn parse_type(input: ParseStream) -> syn::Result<TypeSpec> {
    let dtype: Ident = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a tensor type like `f32[B, 784]` (dtypes: f32, f64, i32, i64, u8, bool)",
        )
    })?;
    let mut dims = Vec::new();
    let mut last = dtype.span();
    if input.peek(syn::token::Bracket) {
        let inner;
        let b = bracketed!(inner in input);
        last = b.span.close();
        while !inner.is_empty() {
            if inner.peek(LitInt) {
                let l: LitInt = inner.parse()?;
                let n = l.base10_parse::<usize>().map_err(|_| {
                    syn::Error::new(l.span(), "a dimension is a non-negative integer")
                })?;
                dims.push(DimSpec::Known(n));
            } else if inner.peek(Ident) {
                dims.push(DimSpec::Sym(inner.parse()?));
            } else {
                let tt: TokenTree = inner.parse()?;
                return Err(syn::Error::new(
                    tt.span(),
                    "a dimension is an integer or a symbolic name declared as a generic of \
                     the model (`model M<B> { input x: f32[B, 3]; }`)",
                ));
            }
            if !inner.is_empty() {
                inner.parse::<Token![,]>()?;
            }
        }
    }
    Ok(TypeSpec {
        span: (dtype.span(), last),
        dtype,
        dims,
    })
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            (
                tfr_graph::op_def::edit_distance(&lower, &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len().max(word.len()))
        .min()
        .map(|(_, c)| c)
}

/// An error covering the source from `first` to `last` (the start of one token to the end of
/// another), as `syn::Error::new_spanned` does for a token stream.
pub fn error_between(first: Span, last: Span, message: impl std::fmt::Display) -> syn::Error {
    let mut a = proc_macro2::Punct::new('#', proc_macro2::Spacing::Alone);
    a.set_span(first);
    let mut b = proc_macro2::Punct::new('#', proc_macro2::Spacing::Alone);
    b.set_span(last);
    let tokens: proc_macro2::TokenStream = [TokenTree::Punct(a), TokenTree::Punct(b)]
        .into_iter()
        .collect();
    syn::Error::new_spanned(tokens, message)
}
