//! `while_loop(.., shape_invariants = (_, [_, 4]))`: the shapes a loop variable may take across
//! iterations (TensorFlow's `shape_invariants`), read into the `Shape`s of
//! `WhileOptions::shape_invariants`.
//!
//! One entry per loop variable, in order (a tuple when the loop variables are a tuple): `_`
//! keeps the shape the variable enters with; `[d, ..]` lists its dims, each a number or a
//! symbolic dim of the model (fixed), `_` (any size), or a size followed by `?` (`B?`, `1?`:
//! the size it enters with, which may change; checked against the entering value).

use crate::check::{expr_text, path_ident, type_string, Builder, R};
use crate::parse::nearest;
use syn::Expr;
use tfr_graph::ops::control_flow_ops::{relax_shapes, shape_fits};
use tfr_graph::{DType, Dim, Shape};

/// `e` without parentheses and invisible groups.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

/// How a shape is written in `shape_invariants`: unknown dims as `_`.
pub fn invariant_text(shape: &Shape) -> String {
    match shape.dims() {
        None => "_".into(),
        Some(d) => {
            let dims: Vec<String> = d
                .iter()
                .map(|d| match d {
                    Dim::Unknown => "_".into(),
                    d => d.to_string(),
                })
                .collect();
            format!("[{}]", dims.join(", "))
        }
    }
}

/// The `shape_invariants = ..` that lets loop variable `j` of `n` take both `entering` and
/// `returned`, when they have the same rank.
pub fn suggestion(j: usize, n: usize, tuple: bool, entering: &Shape, returned: &Shape) -> String {
    let relaxed = relax_shapes([entering, returned]);
    if relaxed.rank().is_none() {
        return String::new();
    }
    let entries: Vec<String> = (0..n)
        .map(|k| {
            if k == j {
                invariant_text(&relaxed)
            } else {
                "_".into()
            }
        })
        .collect();
    let value = if tuple {
        format!("({})", entries.join(", "))
    } else {
        entries[0].clone()
    };
    format!(" (to let it change, declare `shape_invariants = {value}`)")
}

impl Builder {
    /// The shape invariants of a loop whose variables (named `names`, entering with `types`)
    /// are a tuple when `tuple`: `None` for a variable that keeps its entering shape.
    pub(crate) fn shape_invariants(
        &mut self,
        e: &Expr,
        tuple: bool,
        names: &[String],
        types: &[(DType, Shape)],
    ) -> R<Vec<Option<Shape>>> {
        let n = types.len();
        let entries: Vec<&Expr> = match strip(e) {
            Expr::Tuple(t) if tuple || t.elems.len() == 1 => t.elems.iter().collect(),
            _ if !tuple => vec![e],
            other => vec![other],
        };
        if entries.len() != n {
            return Err(self.err_at(
                e,
                format!(
                    "shape_invariants gives {} shape{} for {n} loop variable{}: one per loop \
                     variable, in order, `_` for one that keeps its shape: `({})`",
                    entries.len(),
                    if entries.len() == 1 { "" } else { "s" },
                    if n == 1 { "" } else { "s" },
                    vec!["_"; n].join(", ")
                ),
            ));
        }
        let mut out = Vec::with_capacity(n);
        let mut failed = None;
        for (j, entry) in entries.into_iter().enumerate() {
            match self.invariant(entry, &names[j], &types[j]) {
                Ok(s) => out.push(s),
                Err(f) => failed = Some(f),
            }
        }
        match failed {
            Some(f) => Err(f),
            None => Ok(out),
        }
    }

    /// One variable's invariant: `_`, or a list of dims.
    fn invariant(
        &mut self,
        e: &Expr,
        var: &str,
        (dtype, entering): &(DType, Shape),
    ) -> R<Option<Shape>> {
        let elems = match strip(e) {
            Expr::Infer(_) => return Ok(None),
            Expr::Array(a) => &a.elems,
            _ => {
                return Err(self.err_at(
                    e,
                    format!(
                        "the shape invariant of loop variable `{var}` is `_` (its shape does not \
                         change) or a list of dims like `[_, 4]` (`_`: any size), got `{}`",
                        expr_text(e)
                    ),
                ))
            }
        };
        let entering_dims = entering.dims();
        let mut dims = Vec::with_capacity(elems.len());
        for (k, d) in elems.iter().enumerate() {
            match strip(d) {
                Expr::Infer(_) => dims.push(Dim::Unknown),
                Expr::Try(t) => {
                    // `B?`: the size it enters with, which may change.
                    let start = self.fixed_dim(&t.expr)?;
                    let enters = entering_dims.filter(|ds| ds.len() == elems.len());
                    if let Some(have) = enters.map(|ds| &ds[k]) {
                        if *have != Dim::Unknown && *have != start {
                            return Err(self.err_at(
                                &t.expr,
                                format!(
                                    "loop variable `{var}` enters the loop as {}: dim {k} is \
                                     {have}, not {start}",
                                    type_string(*dtype, entering)
                                ),
                            ));
                        }
                    }
                    dims.push(Dim::Unknown);
                }
                other => dims.push(self.fixed_dim(other)?),
            }
        }
        let shape = Shape::new(dims);
        if !shape_fits(&shape, entering) {
            return Err(self.err_at(
                e,
                format!(
                    "loop variable `{var}` enters the loop as {}, which its shape invariant \
                     `{}` does not allow",
                    type_string(*dtype, entering),
                    invariant_text(&shape)
                ),
            ));
        }
        Ok(Some(shape))
    }

    /// A dim of a shape invariant that does not change: a number or a symbolic dim.
    fn fixed_dim(&mut self, e: &Expr) -> R<Dim> {
        if let Some(id) = path_ident(e) {
            if self.is_dim(id) {
                return Ok(Dim::Sym(id.to_string()));
            }
            let declared: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
            let hint = match nearest(&id.to_string(), declared.iter().map(String::as_str)) {
                Some(d) => format!("; did you mean `{d}`?"),
                None => "; a dim is a number, a symbolic dim of the model, or `_` (any size)"
                    .to_string(),
            };
            return Err(self.err_at(e, format!("unknown dimension `{id}`{hint}")));
        }
        let v = self.int_arg(e)?;
        if v < 0 {
            return Err(self.err_at(
                e,
                "a dimension is a non-negative integer (`_` for any size)",
            ));
        }
        Ok(Dim::Known(v as usize))
    }
}
