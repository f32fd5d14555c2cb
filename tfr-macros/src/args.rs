//! Static arguments of `graph!` functions: integers, numbers, dtypes, shapes, windows,
//! paddings and tensor lists, read from the user's expressions.

use crate::check::{
    expr_text, parse_dtype, path_ident, Builder, Failed, Lit, LitKind, Val, DTYPE_NAMES, R,
};
use crate::parse::nearest;
use crate::signatures::*;
use syn::{Expr, ExprLit, Ident, Lit as SynLit};
use tfr_graph::{DType, Output};

impl Builder {
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

    pub(crate) fn float_arg(&mut self, e: &Expr) -> R<f64> {
        match self.static_lit(e)? {
            Some(l) if l.shape.is_empty() && l.kind != LitKind::Bool => Ok(l.data[0]),
            _ => Err(self.err_at(
                e,
                format!("expected a number literal, got `{}`", expr_text(e)),
            )),
        }
    }

    pub(crate) fn bool_arg(&mut self, e: &Expr) -> R<bool> {
        match self.static_lit(e)? {
            Some(l) if l.shape.is_empty() && l.kind == LitKind::Bool => Ok(l.data[0] != 0.0),
            _ => Err(self.err_at(
                e,
                format!("expected `true` or `false`, got `{}`", expr_text(e)),
            )),
        }
    }

    /// An integer or a list of integers.
    pub(crate) fn ints_arg(&mut self, e: &Expr) -> R<Vec<i64>> {
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
    pub(crate) fn static_lit(&mut self, e: &Expr) -> R<Option<Lit>> {
        if let Some(l) = self.static_number(e)? {
            return Ok(Some(l));
        }
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

    pub(crate) fn dtype_arg(&mut self, e: &Expr) -> R<DType> {
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
    pub(crate) fn dims_arg(&mut self, e: &Expr, allow_unknown: bool) -> R<Vec<i64>> {
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
    pub(crate) fn init_shape(&mut self, a: &Args, name: &Ident) -> R<(Vec<usize>, Option<DType>)> {
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

    pub(crate) fn tensor_list(&mut self, e: &Expr) -> R<Vec<Output>> {
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
    pub(crate) fn tensor_args(&mut self, a: &Args, names: &[&str]) -> R<Vec<Output>> {
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

    pub(crate) fn seed_arg(&mut self, a: &Args) -> R<Option<u64>> {
        match a.get("seed") {
            Some(e) => {
                let s = self.int_arg(e)?;
                Ok(Some(s as u64))
            }
            None => Ok(None),
        }
    }

    /// An NHWC window (strides, pool sizes): `2` or `[2, 2]` (height, width) or all four.
    pub(crate) fn window_arg(&mut self, e: Option<&Expr>, default: i64) -> R<Vec<i64>> {
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
    pub(crate) fn padding_arg(&mut self, e: Option<&Expr>, default: &str) -> R<String> {
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

    pub(crate) fn pairs_arg(&mut self, e: &Expr) -> R<Vec<(i64, i64)>> {
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
    pub(crate) fn scalar(&mut self, dtype: DType, v: f64, at: &Expr) -> R<Output> {
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
}
