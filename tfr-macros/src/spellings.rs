//! Familiar spellings from Rust, numpy and PyTorch that mean a language function: `x as f64`
//! (a `cast`), and the checks behind the hints for `x.max(y)` (an elementwise `maximum`).
//! The renamed methods (`x.dot(w)`, `w.t()`) are mapped where calls are looked up.

use crate::check::{expr_text, parse_dtype, Builder, Val, DTYPE_NAMES, R};
use crate::signatures::{usage, Args, Kind, Param};
use syn::{Expr, ExprCast, ExprLit, Lit, Type};

impl Builder {
    /// `x as f64`: `cast(x, f64)`.
    pub(crate) fn as_cast(&mut self, c: &ExprCast) -> R<Val> {
        let name = match &*c.ty {
            Type::Path(p) if p.qself.is_none() => p.path.get_ident().map(|i| i.to_string()),
            _ => None,
        };
        let Some(dtype) = name.as_deref().and_then(parse_dtype) else {
            return Err(self.err_at(
                &c.ty,
                format!(
                    "`as` converts to a dtype ({}), like `x as f64`",
                    DTYPE_NAMES.join(", ")
                ),
            ));
        };
        let x = self.tensor(&c.expr)?;
        let r = self.g.cast(x, dtype);
        self.result(r, c, "cast", &[expr_text(&c.expr)])
    }

    /// Whether `e` names or computes a tensor (not a literal axis list).
    pub(crate) fn is_tensor_expr(&self, e: &Expr) -> bool {
        match e {
            Expr::Lit(_) | Expr::Array(_) | Expr::Unary(_) => false,
            Expr::Paren(p) => self.is_tensor_expr(&p.expr),
            _ => true,
        }
    }

    /// A flag given positionally by mistake (`matmul(a, b, c)`): reported as an arity error
    /// naming the flags, not as "expected `true` or `false`". True when reported.
    pub(crate) fn positional_flag(
        &mut self,
        func: &str,
        params: &[Param],
        positional: &[&Expr],
    ) -> bool {
        let leading = params.iter().take_while(|p| p.1 != Kind::Bool).count();
        if params.get(leading).is_none_or(|p| p.1 != Kind::Bool) {
            return false;
        }
        let Some(extra) = positional
            .iter()
            .skip(leading)
            .find(|e| !is_bool_literal(e))
        else {
            return false;
        };
        let flags: Vec<String> = params[leading..]
            .iter()
            .filter(|p| p.1 == Kind::Bool)
            .map(|p| format!("`{} = ..`", p.0))
            .collect();
        self.err_at(
            *extra,
            format!(
                "wrong number of arguments: `{func}` takes {leading} argument{} (plus {}); \
                 usage: `{}`",
                if leading == 1 { "" } else { "s" },
                flags.join(", "),
                usage(func, params)
            ),
        );
        true
    }

    /// `x.max(y)` with a tensor `y`: a reduction's axis cannot be a tensor; the user meant the
    /// elementwise `maximum`.
    pub(crate) fn reduction_of_a_tensor(&mut self, f: &str, a: &Args) -> R<()> {
        let pair = match f {
            "max" | "reduce_max" => "maximum",
            "min" | "reduce_min" => "minimum",
            _ => return Ok(()),
        };
        let Some(e) = a.get("axis").filter(|e| self.is_tensor_expr(e)) else {
            return Ok(());
        };
        let x = a.get("x").map(expr_text).unwrap_or_default();
        let y = expr_text(e);
        Err(self.err_at(
            e,
            format!(
                "`{f}` reduces over axes, and `{y}` is a tensor, not an axis: for the \
                 elementwise {pair} of two tensors write `{x}.{pair}({y})` or `{pair}(x, y)`"
            ),
        ))
    }
}

fn is_bool_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Lit(ExprLit {
            lit: Lit::Bool(_),
            ..
        })
    )
}
