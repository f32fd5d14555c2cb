//! The model's declarations: `input` (a placeholder of a declared type), `var` (a variable
//! from its initializer, checked against a declared type) and `output` (a named result), and
//! the type syntax they share (`parse_type`: dtype and dims, symbolic dims declared first).

use crate::check::{describe, error_between_push, Builder, Failed, Stub, TensorOut, Val, R};
use crate::messages::*;
use crate::model::{DimSpec, TypeSpec};
use crate::parse::{error_between, nearest};
use syn::{Expr, Ident};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Dim, Output, Shape};

impl Builder {
    pub(crate) fn parse_type(&mut self, ty: &TypeSpec) -> R<(DType, Vec<Dim>)> {
        let dname = ty.dtype.to_string();
        let dtype = match parse_dtype(&dname) {
            Some(t) => t,
            None => {
                let hint = nearest(&dname, DTYPE_NAMES.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| format!(" (dtypes: {})", DTYPE_NAMES.join(", ")));
                return Err(self.err(ty.dtype.span(), format!("unknown dtype `{dname}`{hint}")));
            }
        };
        let mut dims = Vec::new();
        for d in &ty.dims {
            match d {
                DimSpec::Known(n) => dims.push(Dim::Known(*n)),
                DimSpec::Sym(s) => {
                    if self.dims.iter().any(|d| d == s) {
                        dims.push(Dim::Sym(s.to_string()));
                    } else {
                        let declared: Vec<String> =
                            self.dims.iter().map(|d| d.to_string()).collect();
                        let hint =
                            match nearest(&s.to_string(), declared.iter().map(String::as_str)) {
                                Some(n) => format!("; did you mean `{n}`?"),
                                None => unknown_dim_hint(&s.to_string()),
                            };
                        return Err(self.err(s.span(), format!("unknown dimension `{s}`{hint}")));
                    }
                }
            }
        }
        Ok((dtype, dims))
    }

    pub(crate) fn input(&mut self, name: &Ident, ty: &TypeSpec) -> R<(DType, Vec<Dim>, Output)> {
        let (dtype, dims) = self.parse_type(ty)?;
        if dtype == DType::Resource {
            return Err(self.err(ty.dtype.span(), "an input cannot be a resource"));
        }
        match self
            .g
            .placeholder(&name.to_string(), dtype, Shape::new(dims.clone()))
        {
            Ok(o) => Ok((dtype, dims, o)),
            Err(e) => Err(self.graph_err(name, "input", &[], e)),
        }
    }

    pub(crate) fn var(&mut self, name: &Ident, ty: Option<&TypeSpec>, init: &Expr) -> R<Variable> {
        let declared = match ty {
            Some(t) => {
                let (dtype, dims) = self.parse_type(t)?;
                let known: Option<Vec<usize>> = dims.iter().map(Dim::known).collect();
                match known {
                    Some(k) => Some((dtype, k, t)),
                    None => {
                        return Err(error_between_push(
                            self,
                            t.span,
                            format!(
                                "variable `{name}` needs a fully known shape, got {}: a variable \
                                 keeps its shape across steps (symbolic dims are for inputs)",
                                type_string(dtype, &Shape::new(dims))
                            ),
                        ))
                    }
                }
            }
            None => None,
        };
        self.var_type = declared.as_ref().map(|(d, k, _)| (*d, k.clone()));
        let val = self.eval(init);
        self.var_type = None;
        let val = val?;
        let initial = match (val, &declared) {
            (Val::Tensor(o), _) => o,
            (Val::Lit(l), Some((dtype, dims, _))) => {
                let scalar = self.materialize(&l, *dtype, init)?;
                if l.shape.is_empty() && !dims.is_empty() {
                    let d: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                    self.g
                        .fill(&d, scalar)
                        .map_err(|e| self.graph_err(init, "fill", &[], e))?
                } else {
                    scalar
                }
            }
            (Val::Lit(l), None) => {
                let t = l.default_dtype();
                self.materialize(&l, t, init)?
            }
            (other, _) => {
                return Err(self.err_at(
                    init,
                    format!(
                        "a variable's initial value must be a tensor, got {}",
                        describe(&other)
                    ),
                ))
            }
        };
        if let Some((dtype, dims, t)) = &declared {
            let ty = self.g.output_type(initial).clone();
            let want = Shape::known(dims);
            if ty.dtype != *dtype || ty.shape.merge(&want).is_err() {
                let mut e = syn::Error::new_spanned(
                    init,
                    format!(
                        "variable `{name}` is declared {} but its initial value is {}",
                        type_string(*dtype, &want),
                        type_string(ty.dtype, &ty.shape)
                    ),
                );
                e.combine(error_between(t.span.0, t.span.1, "declared here"));
                self.errors.push(e);
                return Err(Failed);
            }
        }
        let shape = self.g.shape(initial).clone();
        if !shape.is_fully_known() {
            return Err(self.err_at(
                init,
                format!(
                    "variable `{name}` needs a fully known shape, but its initial value is {}: \
                     give the initializer a shape of numbers (symbolic dims are for inputs)",
                    type_string(self.g.dtype(initial), &shape)
                ),
            ));
        }
        self.g
            .variable(&name.to_string(), initial)
            .map_err(|e| self.graph_err(name, "var", &[], e))
    }

    pub(crate) fn output(&mut self, name: &Ident, expr: Option<&Expr>, docs: &[syn::Attribute]) {
        let val = match expr {
            Some(e) => {
                if !self.declare(name) {
                    return;
                }
                let v = self.eval(e).ok();
                self.bind(name, v.clone(), None);
                v
            }
            None => {
                if self.outputs.iter().any(|o| o.name == *name) {
                    self.err(name.span(), format!("`{name}` is already an output"));
                    return;
                }
                self.lookup(name).ok()
            }
        };
        let Some(val) = val else {
            self.stub(name, docs, Stub::Tensor);
            return;
        };
        let at: &dyn quote::ToTokens = match expr {
            Some(e) => e,
            None => name,
        };
        let output = match val {
            Val::Tensor(o) => o,
            Val::Lit(l) => {
                let t = l.default_dtype();
                match self.materialize(&l, t, &at.to_token_stream()) {
                    Ok(o) => o,
                    Err(Failed) => return,
                }
            }
            Val::Target(_) => {
                self.err_at(
                    &at.to_token_stream(),
                    format!(
                        "`{name}` is a target (an op run for its effect), not a tensor: bind it \
                         with `let {name} = ...;` and it is exposed as a target"
                    ),
                );
                return;
            }
            Val::Tuple(v) => {
                self.err_at(
                    &at.to_token_stream(),
                    format!(
                        "`{name}` is a tuple of {} values: an output is one tensor; destructure \
                         it with `let (a, b) = ...;` and output the parts",
                        v.len()
                    ),
                );
                return;
            }
        };
        let ty = self.g.output_type(output).clone();
        self.outputs.push(TensorOut {
            name: name.clone(),
            docs: docs.to_vec(),
            dtype: ty.dtype,
            shape: ty.shape,
            output,
            var: None,
        });
    }
}
