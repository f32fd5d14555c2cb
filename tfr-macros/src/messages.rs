//! How messages name things: dtypes as the user writes them, expressions as source text,
//! Rust loops and statements graph! replaces.

use tfr_graph::{DType, Shape};

/// Whether a word is a Rust loop (`while`, `for`, `loop`), which graph! replaces by `while_loop`.
pub fn is_rust_loop(name: &str) -> bool {
    matches!(name, "while" | "for" | "loop")
}

pub fn rust_loop_message(name: &str) -> String {
    if name == "for" {
        return "a `for` loop is a statement, unrolled while the macro expands (`for i in 0..3 \
                { h = dense(h, 64, relu); }`), not a value; a loop run by the graph is a value: \
                `let (i, x) = while_loop(|i, x| i < n, |i, x| (i + 1, x * 2.0), (0, x0));`"
            .to_string();
    }
    format!(
        "`{name}` loops are not graph! syntax (tensors are immutable): write a loop as a value, \
         `let (i, x) = while_loop(|i, x| i < n, |i, x| (i + 1, x * 2.0), (0, x0));`"
    )
}

/// Whether a word starts a control-flow value (`if`, `cond(..)`, `while_loop(..)`).
pub fn is_control_value(name: &str) -> bool {
    matches!(name, "if" | "cond" | "while_loop")
}

pub fn control_statement_message(name: &str) -> String {
    let example = match name {
        "if" => "let y = if p { a } else { b };",
        "cond" => "let y = cond(p, || a, || b);",
        _ => "let (i, x) = while_loop(|i, x| i < n, |i, x| (i + 1, x * 2.0), (0, x0));",
    };
    format!("`{name}` gives a value: bind it with `let`, e.g. `{example}`")
}

/// The Rust name of a dtype, as the user writes it.
pub fn dtype_name(t: DType) -> &'static str {
    match t {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::U8 => "u8",
        DType::Bool => "bool",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::Resource => "resource",
        DType::String => "string",
    }
}

pub const DTYPE_NAMES: &[&str] = &["f32", "f64", "i32", "i64", "u8", "bool", "f16", "bf16"];

pub fn parse_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "f32" => DType::F32,
        "f64" => DType::F64,
        "i32" => DType::I32,
        "i64" => DType::I64,
        "u8" => DType::U8,
        "bool" => DType::Bool,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        _ => return None,
    })
}

/// `f32[B, 784]`.
pub fn type_string(dtype: DType, shape: &Shape) -> String {
    format!("{}{}", dtype_name(dtype), shape)
}

/// Replaces the registry's dtype names (`float32`) with the Rust names the user writes.
pub fn rust_dtype_names(message: &str) -> String {
    let mut out = message.to_string();
    for (from, to) in [
        ("bfloat16", "bf16"),
        ("float16", "f16"),
        ("float32", "f32"),
        ("float64", "f64"),
        ("uint8", "u8"),
        ("int32", "i32"),
        ("int64", "i64"),
    ] {
        out = replace_word(&out, from, to);
    }
    out
}

/// Replaces `from` where it stands as a whole word.
pub fn replace_word(s: &str, from: &str, to: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_word) || after.is_some_and(is_word) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Short source text of an expression, for messages.
pub fn expr_text(e: &impl quote::ToTokens) -> String {
    let tokens = e.to_token_stream();
    let text = source_text(tokens.clone()).unwrap_or_else(|| tokens.to_string());
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 32 {
        let short: String = text.chars().take(28).collect();
        format!("{short}...")
    } else {
        text
    }
}

/// The source text of a token stream, piece by piece (a span covering several tokens has no
/// source text on a stable compiler, but each token tree has its own, a group's covering it
/// whole), joined with the spacing Rust is usually written with.
pub(crate) fn source_text(tokens: proc_macro2::TokenStream) -> Option<String> {
    use proc_macro2::{Delimiter, TokenTree};
    let mut out = String::new();
    let mut prev: Option<TokenTree> = None;
    let mut prev_unary = false;
    for tt in tokens {
        let text = tt.span().source_text()?;
        let tight = match (&prev, &tt) {
            (None, _) => true,
            (Some(TokenTree::Ident(_) | TokenTree::Group(_)), TokenTree::Group(g)) => {
                matches!(g.delimiter(), Delimiter::Parenthesis | Delimiter::Bracket)
            }
            (_, TokenTree::Punct(p)) if matches!(p.as_char(), '.' | ',' | ';') => true,
            (Some(TokenTree::Punct(p)), _) => {
                p.as_char() == '.' || p.spacing() == proc_macro2::Spacing::Joint || prev_unary
            }
            _ => false,
        };
        // A `-` or `!` at the start or after another operator is unary.
        prev_unary = matches!(&tt, TokenTree::Punct(p) if matches!(p.as_char(), '-' | '!'))
            && matches!(&prev, None | Some(TokenTree::Punct(_)));
        if !tight {
            out.push(' ');
        }
        out.push_str(&text);
        prev = Some(tt);
    }
    Some(out)
}

/// Whether `text` is a plain identifier (written bare in messages, others in backticks).
pub(crate) fn is_plain(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// How an operand is named in a message.
pub fn operand_name(text: &str) -> String {
    if is_plain(text) {
        text.to_string()
    } else {
        format!("`{text}`")
    }
}

/// The hint for an undeclared dim: a Rust `const` (which graph! cannot read: it runs before
/// name resolution) is written as its number; another name may be a new symbolic dim.
pub fn unknown_dim_hint(name: &str) -> String {
    let const_like = name.len() > 1
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if const_like {
        format!(
            "; graph! cannot read Rust items such as `const {name}` (it expands before they \
             are resolved): write the number itself, e.g. `f32[784, 128]`; a generic of the \
             model (`model M<{name}>`) is a size fed when a step runs, for inputs only"
        )
    } else {
        format!(
            "; for a size fed when a step runs, declare it as a generic of the model: \
             `model M<{name}>` (inputs only); for a fixed size write the number"
        )
    }
}

/// Drops repeats of an error (same spans and messages): a mistake in a `for` loop's body is
/// made once per iteration but reported once.
pub(crate) fn dedupe_errors(errors: &mut Vec<syn::Error>) {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| {
        let key: Vec<String> = e
            .clone()
            .into_iter()
            .map(|part| format!("{:?} {part}", part.span()))
            .collect();
        seen.insert(key)
    });
}
