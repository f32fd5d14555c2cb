//! `let h: f32[B, 4] = ..;`: a type on a `let` is an assertion checked while the macro expands.
//! The value must provably have it: each declared dim must be the inferred one (a `?` proves
//! nothing, so it does not pass as `B`). A literal takes the declared dtype and shape.
//! `#[fetch] let h = ..;` exposes the value as a fetch handle of the model.

use crate::check::{describe, type_string, Builder, Failed, Stub, TensorOut, Val, R};
use crate::model::TypeSpec;
use crate::parse::error_between;
use syn::{Expr, Ident};
use tfr_graph::{Dim, Shape};

impl Builder {
    /// The value of `let name: ty = expr`, checked against `ty`.
    pub(crate) fn check_declared(
        &mut self,
        name: &Ident,
        ty: &TypeSpec,
        val: Val,
        expr: &Expr,
    ) -> R<Val> {
        let (dtype, dims) = self.parse_type(ty)?;
        let declared = Shape::new(dims.clone());
        let out = match val {
            Val::Tensor(o) => o,
            Val::Lit(l) => {
                let c = self.materialize(&l, dtype, expr)?;
                if l.shape.is_empty() && !dims.is_empty() {
                    let d = self.filled(&dims, c, expr)?;
                    d.map_err(|e| self.graph_err(expr, "fill", &[], e))?
                } else {
                    c
                }
            }
            other => {
                return Err(self.err_at(
                    expr,
                    format!(
                        "`{name}` is declared {} but its value is {}",
                        type_string(dtype, &declared),
                        crate::check::describe(&other)
                    ),
                ))
            }
        };
        let t = self.g.output_type(out).clone();
        let proven = t.dtype == dtype
            && t.shape.dims().is_some_and(|have| {
                have.len() == dims.len()
                    && have
                        .iter()
                        .zip(&dims)
                        .all(|(h, d)| h == d && *h != Dim::Unknown)
            });
        if !proven {
            let unproven = t.dtype == dtype && t.shape.merge(&declared).is_ok();
            let why = if unproven {
                ": the inferred shape does not prove it (a `?` is not known to be the declared dim)"
            } else {
                ""
            };
            let mut e = syn::Error::new_spanned(
                expr,
                format!(
                    "`{name}` is declared {} but its value is {}{why}",
                    type_string(dtype, &declared),
                    type_string(t.dtype, &t.shape)
                ),
            );
            e.combine(error_between(ty.span.0, ty.span.1, "declared here"));
            self.errors.push(e);
            return Err(Failed);
        }
        Ok(Val::Tensor(out))
    }

    /// `#[fetch] let h = ..;`: `h` is also a fetch handle of the generated struct.
    pub(crate) fn fetch_let(&mut self, name: &Ident, val: Option<Val>, docs: &[syn::Attribute]) {
        if self.nesting > 0 {
            self.err(
                name.span(),
                "`#[fetch]` exposes a value of the model's top level, not one inside a function \
                 or a `for` loop (return it and fetch it there)",
            );
            return;
        }
        match val {
            Some(Val::Tensor(output)) => {
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
            Some(other) => {
                self.err(
                    name.span(),
                    format!(
                        "`#[fetch]` exposes a tensor, but `{name}` is {}",
                        describe(&other)
                    ),
                );
            }
            None => self.stub(name, docs, Stub::Tensor),
        }
    }
}
