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
        if let Some(bad) = l.data.iter().copied().find(|&v| !fits_dtype(v, dtype)) {
            let fix = match (wider(dtype), partner) {
                (Some(w), Some(p)) => format!(
                    "; write a value in range, or convert {} first with `cast({p}, {w})`",
                    operand_name(p)
                ),
                _ => "; write a value in range".to_string(),
            };
            let whose = match partner {
                Some(p) => format!("the dtype of {}", operand_name(p)),
                None => "the dtype it must have".to_string(),
            };
            return Err(self.err_at(
                at,
                format!(
                    "literal out of range: {} does not fit {} ({}), {whose}{fix}",
                    number_text(bad),
                    dtype_name(dtype),
                    range_text(dtype)
                ),
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

/// Whether `v` is representable in `dtype` without saturating (a float may round, but must
/// stay finite; an integer must be in range).
fn fits_dtype(v: f64, dtype: DType) -> bool {
    // 2^63: `i64::MAX as f64` rounds up to it, so the bound is exclusive.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    match dtype {
        DType::U8 => (0.0..=255.0).contains(&v),
        DType::I32 => (i32::MIN as f64..=i32::MAX as f64).contains(&v),
        DType::I64 => (-TWO_63..TWO_63).contains(&v),
        DType::F32 => v.is_finite() && v.abs() <= f32::MAX as f64,
        DType::F16 => v.is_finite() && v.abs() <= tfr_graph::f16::MAX.to_f64(),
        DType::BF16 => v.is_finite() && v.abs() <= tfr_graph::bf16::MAX.to_f64(),
        DType::F64 => v.is_finite(),
        DType::Bool | DType::Resource => true,
        // Never reached: a number literal does not fit a string (`materialize_with`).
        DType::String => false,
    }
}

fn range_text(dtype: DType) -> String {
    match dtype {
        DType::U8 => "0 to 255".into(),
        DType::I32 => format!("{} to {}", i32::MIN, i32::MAX),
        DType::I64 => format!("{} to {}", i64::MIN, i64::MAX),
        DType::F32 => format!("at most {:e} in magnitude", f32::MAX),
        DType::F16 => "at most 65504 in magnitude".into(),
        DType::BF16 => format!("at most {:e} in magnitude", tfr_graph::bf16::MAX.to_f64()),
        _ => "finite".into(),
    }
}

/// The dtype to convert to when a literal does not fit `dtype`.
fn wider(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::U8 => Some("i32"),
        DType::I32 => Some("i64"),
        DType::F16 | DType::BF16 | DType::F32 => Some("f64"),
        _ => None,
    }
}

/// A literal's value as written: integers without a fraction.
fn number_text(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
        format!("`{}`", v as i64)
    } else {
        format!("`{v:e}`")
    }
}
