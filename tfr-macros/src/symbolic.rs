//! Symbolic dims (`B`, `T`) in shape arguments: reading them, the run-time value of each (read
//! from the shape of an input that has it), and reshape's proof that a symbol is kept.
//!
//! A static shape names a symbol only where that is provable: a reshape keeps `B` when the
//! element counts are equal whatever `B` is, is refused when they differ for every `B`, and
//! otherwise reshapes to a shape computed when the step runs (the Reshape kernel then checks the
//! count, so a wrong count fails the step at the node named after the model's line).

use crate::check::{expr_text, path_ident, type_string, Builder, R};
use proc_macro2::Span;
use syn::Expr;
use tfr_graph::{Dim, ElementCount, Output, Result as GResult, Shape, TensorValue};

impl Builder {
    /// A shape list of numbers and symbolic dims of the model, and `-1` (as `Dim::Unknown`)
    /// where `allow_infer`; at most one `-1`.
    pub(crate) fn symbolic_dims_arg(&mut self, e: &Expr, allow_infer: bool) -> R<Vec<Dim>> {
        let Expr::Array(a) = e else {
            return Err(self.err_at(
                e,
                format!("expected a shape like `[B, 784]`, got `{}`", expr_text(e)),
            ));
        };
        let mut out = Vec::new();
        for x in &a.elems {
            if let Some(id) = path_ident(x) {
                if self.is_dim(id) {
                    out.push(Dim::Sym(id.to_string()));
                    continue;
                }
            }
            let v = self.int_arg(x)?;
            match v {
                -1 if allow_infer => out.push(Dim::Unknown),
                v if v < 0 => {
                    let also = if allow_infer {
                        " (or `-1`, inferred)"
                    } else {
                        ""
                    };
                    return Err(self.err_at(
                        x,
                        format!("a dimension is a non-negative integer or a symbolic dim{also}"),
                    ));
                }
                v => out.push(Dim::Known(v as usize)),
            }
        }
        if out.iter().filter(|d| **d == Dim::Unknown).count() > 1 {
            return Err(self.err_at(e, "at most one dimension may be `-1` (inferred)"));
        }
        Ok(out)
    }

    /// The value of symbolic dim `name` when a step runs, as an i32 scalar (`Shape` then
    /// `Gather`): a dim of `from` when its static shape has the symbol (a reshaped tensor), else
    /// of the first input declared with it.
    fn symbol_value(&mut self, name: &str, at: &Expr, from: Option<Output>) -> R<Output> {
        let sym = Dim::Sym(name.into());
        let position = |g: &tfr_graph::Graph, o: Output| {
            g.shape(o)
                .dims()
                .and_then(|d| d.iter().position(|d| *d == sym))
        };
        let source = from
            .and_then(|o| Some((o, position(&self.g, o)?)))
            .or_else(|| {
                self.inputs.iter().find_map(|input| {
                    let i = input.dims.iter().position(|d| *d == sym)?;
                    Some((input.output, i))
                })
            });
        let Some((input, i)) = source else {
            return Err(self.err_at(
                at,
                format!(
                    "`{name}` is the size of no input declared before this line, so its value \
                     is not known when a step runs: declare an input with `{name}` in its shape \
                     first (`input x: f32[{name}, ..];`)"
                ),
            ));
        };
        let r = (|| {
            let shape = self.g.shape_of(input)?;
            let index = self.g.scalar(i as i32)?;
            self.g.gather(shape, index, 0)
        })();
        r.map_err(|e| self.graph_err(at, "shape", &[], e))
    }

    /// A shape as an i32 vector: a constant when it holds no symbols, else built when the step
    /// runs from each symbol's value (`Pack` of scalars). `Dim::Unknown` stays `-1`.
    pub(crate) fn shape_tensor(
        &mut self,
        dims: &[Dim],
        at: &Expr,
        from: Option<Output>,
    ) -> R<Output> {
        let as_int = |d: &Dim| match d {
            Dim::Known(n) => Some(*n as i32),
            Dim::Unknown => Some(-1),
            Dim::Sym(_) => None,
        };
        if let Some(ints) = dims.iter().map(as_int).collect::<Option<Vec<i32>>>() {
            let v = TensorValue::new(&[ints.len()], ints).expect("a vector fills its shape");
            return self
                .g
                .constant(v)
                .map_err(|e| self.graph_err(at, "shape", &[], e));
        }
        let mut parts = Vec::with_capacity(dims.len());
        for d in dims {
            parts.push(match (d, as_int(d)) {
                (Dim::Sym(s), _) => self.symbol_value(s, at, from)?,
                (_, Some(n)) => {
                    let r = self.g.scalar(n);
                    r.map_err(|e| self.graph_err(at, "shape", &[], e))?
                }
                (_, None) => unreachable!("only symbols have no integer"),
            });
        }
        let r = self.g.stack(&parts, 0);
        r.map_err(|e| self.graph_err(at, "shape", &[], e))
    }

    /// `reshape(x, shape)`: the static shape keeps a symbol only where the element counts prove
    /// it; counts that differ for every value of the symbols are an error.
    pub(crate) fn reshape(
        &mut self,
        x: Output,
        x_expr: &Expr,
        shape_e: &Expr,
        whole: &Expr,
    ) -> R<GResult<Output>> {
        let dims = self.symbolic_dims_arg(shape_e, true)?;
        if let Some(ints) = known_ints(&dims) {
            // Numbers and `-1`: the registry's shape function solves `-1` symbolically.
            return Ok(self.g.reshape(x, &ints));
        }
        let xt = self.g.output_type(x).clone();
        let infer = dims.iter().position(|d| *d == Dim::Unknown);
        let fixed: Vec<Dim> = dims
            .iter()
            .filter(|d| **d != Dim::Unknown)
            .cloned()
            .collect();
        let total = xt.shape.dims().and_then(ElementCount::of);
        let wanted = ElementCount::of(&fixed);
        let target = expr_text(shape_e);
        let x_type = format!(
            "`{}` is {} ({} elements)",
            expr_text(x_expr),
            type_string(xt.dtype, &xt.shape),
            total.as_ref().map_or("?".into(), |t| t.to_string())
        );
        let symbols = symbols_text(&dims);
        let mismatch = |b: &mut Builder, why: String| {
            b.err_at(
                whole,
                format!(
                    "reshape: {x_type} but {why} for every value of {symbols}; write dims whose \
                     product is the same, or `-1` for the one to infer"
                ),
            )
        };
        let mut out_dims = dims.clone();
        let mut provably_equal = false;
        if let (Some(total), Some(wanted)) = (&total, &wanted) {
            match infer {
                None => match total.equals(wanted) {
                    Some(false) => {
                        return Err(mismatch(self, format!("{target} holds {wanted} elements")))
                    }
                    Some(true) => provably_equal = true,
                    None => {}
                },
                Some(i) => match total.quotient(wanted) {
                    Some(d) => out_dims[i] = d,
                    None => {
                        return Err(mismatch(
                            self,
                            format!("in {target} no whole `-1` times {wanted} makes {total}"),
                        ))
                    }
                },
            }
        }
        let symbol_count = dims.iter().filter(|d| matches!(d, Dim::Sym(_))).count();
        if provably_equal && symbol_count == 1 {
            // The counts match whatever the symbol is: `-1` solves to it at run time.
            let ints: Vec<i64> = dims
                .iter()
                .map(|d| d.known().map_or(-1, |n| n as i64))
                .collect();
            let r = self.g.reshape(x, &ints);
            return Ok(self.refined(r, &out_dims));
        }
        // The symbols' values come from the fed inputs; the kernel checks the count.
        let shape = self.shape_tensor(&dims, shape_e, Some(x))?;
        let name = self.free_name(&format!("reshape_line{}", line_of(whole)));
        let r = self
            .g
            .build("Reshape")
            .name(&name)
            .input(x)
            .input(shape)
            .finish1();
        Ok(self.refined(r, &out_dims))
    }
}

impl Builder {
    /// `fill(shape, value)`: with a constant shape when it holds no symbols (as before), else
    /// with the shape built when the step runs; the static shape is `dims` either way.
    pub(crate) fn filled(&mut self, dims: &[Dim], value: Output, at: &Expr) -> R<GResult<Output>> {
        if let Some(ints) = known_ints(dims) {
            return Ok(self.g.fill(&ints, value));
        }
        let shape = self.shape_tensor(dims, at, None)?;
        let r = self.g.build("Fill").input(shape).input(value).finish1();
        Ok(self.refined(r, dims))
    }

    /// `broadcast_to(x, shape)`, symbols allowed like [`Builder::filled`].
    pub(crate) fn broadcast_to(
        &mut self,
        x: Output,
        dims: &[Dim],
        at: &Expr,
    ) -> R<GResult<Output>> {
        if let Some(ints) = known_ints(dims) {
            return Ok(self.g.broadcast_to(x, &ints));
        }
        let shape = self.shape_tensor(dims, at, Some(x))?;
        let r = self.g.build("BroadcastTo").input(x).input(shape).finish1();
        Ok(self.refined(r, dims))
    }

    /// `r` with its static shape narrowed to `dims` (which the op makes exactly).
    fn refined(&mut self, r: GResult<Output>, dims: &[Dim]) -> GResult<Output> {
        if let Ok(o) = &r {
            self.g.refine_output_shape(*o, Shape::new(dims.to_vec()));
        }
        r
    }

    /// `base`, or `base_N` for the first N free under the current scope.
    fn free_name(&self, base: &str) -> String {
        let taken = |n: &str| self.g.find(&self.g.scoped_name(n)).is_some();
        if !taken(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !taken(n))
            .expect("some suffix is free")
    }
}

/// The dims as numbers when none is symbolic (`-1` for an inferred one).
fn known_ints(dims: &[Dim]) -> Option<Vec<i64>> {
    dims.iter()
        .map(|d| match d {
            Dim::Known(n) => Some(*n as i64),
            Dim::Unknown => Some(-1),
            Dim::Sym(_) => None,
        })
        .collect()
}

/// The symbols of a shape, for messages: "`B`" or "`B` and `T`".
fn symbols_text(dims: &[Dim]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for d in dims {
        if let Dim::Sym(s) = d {
            if !names.contains(&s.as_str()) {
                names.push(s);
            }
        }
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(" and ")
}

/// The source line an expression starts on (names nodes whose failure a user must trace).
fn line_of(e: &Expr) -> usize {
    let span: Span = syn::spanned::Spanned::span(e);
    span.start().line
}
