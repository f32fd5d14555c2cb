//! Names and values while a model is built: looking names up, literals made into tensors.

use crate::check::*;
use crate::parse::nearest;
use syn::{Expr, Ident};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Output};

impl Builder {
    /// The value of a name; an undefined name is reported with the nearest defined one.
    pub fn lookup(&mut self, name: &Ident) -> R<Val> {
        let key = name.to_string();
        match self.env.get(&key) {
            Some(b) => b.val.clone().ok_or(Failed),
            None => {
                if self.dims.iter().any(|d| *d == key) {
                    return Err(self.err(
                        name.span(),
                        format!(
                            "`{key}` is a symbolic dimension, not a tensor: its value is known \
                             only when a step runs (use `shape(x)` to read it)"
                        ),
                    ));
                }
                let hint = nearest(&key, self.env.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(self.err(
                    name.span(),
                    format!("undefined name `{key}`{hint} (names are defined by `input`, `var`, `let` and `output = `, before their use)"),
                ))
            }
        }
    }

    /// The variable a name refers to, for `assign` and `minimize(.., wrt = [..])`.
    pub fn lookup_var(&mut self, e: &Expr) -> R<Variable> {
        let Some(name) = path_ident(e) else {
            return Err(self.err_at(e, "expected the name of a variable declared with `var`"));
        };
        self.lookup(name)?;
        match self.env.get(&name.to_string()).and_then(|b| b.var.clone()) {
            Some(v) => Ok(v),
            None => Err(self.err_at(
                e,
                format!("`{name}` is not a variable: only names declared with `var` hold state"),
            )),
        }
    }

    /// A constant from a literal with the given dtype; reports literals that do not fit it.
    pub fn materialize(&mut self, l: &Lit, dtype: DType, at: &impl quote::ToTokens) -> R<Output> {
        self.materialize_with(l, dtype, at, None)
    }

    /// Like [`Builder::materialize`]; `partner` is the source text of the tensor the literal
    /// meets (for messages).
    pub fn materialize_with(
        &mut self,
        l: &Lit,
        dtype: DType,
        at: &impl quote::ToTokens,
        partner: Option<&str>,
    ) -> R<Output> {
        let fits = match l.kind {
            LitKind::Bool => dtype == DType::Bool,
            LitKind::Int => dtype.is_numeric() || dtype.is_float(),
            LitKind::Float => dtype.is_float(),
        };
        let lit = expr_text(at);
        let other = match partner {
            Some(p) => format!("{} is {}", operand_name(p), dtype_name(dtype)),
            None => format!("the value must be {}", dtype_name(dtype)),
        };
        if let Some(f) = l.fixed {
            if f != dtype {
                return Err(self.err_at(
                    at,
                    format!(
                        "dtype mismatch: `{lit}` is {} but {other}; drop the suffix or use `{}`",
                        dtype_name(f),
                        dtype_name(dtype)
                    ),
                ));
            }
        }
        if !fits {
            let what = match l.kind {
                LitKind::Bool => "a bool literal",
                LitKind::Int => "an integer literal",
                LitKind::Float => "a float literal",
            };
            let fix = match (l.kind, partner) {
                (LitKind::Float, Some(p)) if dtype.is_integer() => {
                    format!("; write an integer literal, or convert with `cast({p}, f32)`")
                }
                (LitKind::Float, None) if dtype.is_integer() => {
                    "; write an integer literal".to_string()
                }
                _ => String::new(),
            };
            return Err(self.err_at(
                at,
                format!("dtype mismatch: `{lit}` is {what} but {other}{fix}"),
            ));
        }
        let value = lit_value(l, dtype);
        self.g
            .constant(value)
            .map_err(|e| self.graph_err(at, "constant", &[], e))
    }

    /// Turns values into tensors: literals take the dtype of the first tensor among them (or
    /// their default dtype when there is none). Constants are made after every operand is.
    pub fn tensors(&mut self, vals: Vec<(Val, &Expr)>) -> R<Vec<Output>> {
        let like = vals.iter().find_map(|(v, e)| match v {
            Val::Tensor(o) => Some((self.g.dtype(*o), expr_text(*e))),
            _ => None,
        });
        let mut out = Vec::with_capacity(vals.len());
        for (v, e) in vals {
            out.push(match v {
                Val::Tensor(o) => o,
                Val::Lit(l) => match &like {
                    Some((t, text)) => self.materialize_with(&l, *t, e, Some(text))?,
                    None => {
                        let t = l.default_dtype();
                        self.materialize(&l, t, e)?
                    }
                },
                other => {
                    return Err(
                        self.err_at(e, format!("expected a tensor, got {}", describe(&other)))
                    )
                }
            });
        }
        Ok(out)
    }

    /// Evaluates an expression that must be one tensor.
    pub fn tensor(&mut self, e: &Expr) -> R<Output> {
        let v = self.eval(e)?;
        Ok(self.tensors(vec![(v, e)])?[0])
    }
}
