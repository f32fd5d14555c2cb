//! Familiar spellings from Rust, numpy and PyTorch that mean a language function: `x as f64`
//! (a `cast`), and the checks behind the hints for `x.max(y)` (an elementwise `maximum`).
//! The renamed methods (`x.dot(w)`, `w.t()`) are mapped where calls are looked up.

use crate::check::{expr_text, parse_dtype, Builder, Val, DTYPE_NAMES, R};
use syn::{Expr, ExprCast, Type};

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
}
