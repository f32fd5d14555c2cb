//! A registry op called by its own name in `graph!` (`MatMul(a, b, transpose_b = true)`):
//! tensors positional, attributes as keywords, read by the kind the op's definition gives.

use crate::check::{expr_text, path_ident, Builder, Failed, LitKind, Val, R};
use crate::parse::nearest;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit as SynLit, Token};
use tfr_graph::{AttrKind, AttrValue, Dim, Output, Shape};

impl Builder {
    /// A registry op called by its own name: tensors positional, attributes as keywords.
    pub(crate) fn registry_op(
        &mut self,
        name: &Ident,
        def: &'static tfr_graph::OpDef,
        receiver: Option<&Expr>,
        args: &Punctuated<Expr, Token![,]>,
        whole: &Expr,
    ) -> R<Val> {
        let mut inputs = Vec::new();
        let mut attrs: Vec<(String, AttrValue)> = Vec::new();
        let mut failed = false;
        let positional: Vec<&Expr> = receiver
            .into_iter()
            .chain(args.iter().filter(|a| !matches!(a, Expr::Assign(_))))
            .collect();
        for e in &positional {
            match self.eval(e) {
                Ok(v) => inputs.push((v, *e)),
                Err(Failed) => failed = true,
            }
        }
        for a in args {
            let Expr::Assign(kv) = a else { continue };
            let Some(key) = path_ident(&kv.left) else {
                self.err_at(&kv.left, "an attribute is `name = value`");
                failed = true;
                continue;
            };
            let k = key.to_string();
            let Some(ad) = def.attrs.iter().find(|d| d.name == k) else {
                let hint = nearest(&k, def.attrs.iter().map(|d| d.name))
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                let names: Vec<&str> = def.attrs.iter().map(|d| d.name).collect();
                self.err(
                    key.span(),
                    format!(
                        "op `{}` has no attribute `{k}`; {hint}(attributes: {})",
                        def.name,
                        names.join(", ")
                    ),
                );
                failed = true;
                continue;
            };
            match self.attr_value(ad.kind, &kv.right) {
                Ok(v) => attrs.push((k, v)),
                Err(Failed) => failed = true,
            }
        }
        if failed {
            return Err(Failed);
        }
        let texts: Vec<String> = positional.iter().map(|e| expr_text(*e)).collect();
        let ins = self.tensors(inputs)?;
        let mut b = self.g.build(def.name).inputs(ins);
        for (k, v) in attrs {
            b = b.attr(&k, v);
        }
        let what = def.name.to_string();
        match b.finish() {
            Ok(id) => {
                let n = self.g.node(id).outputs.len();
                Ok(match n {
                    0 => Val::Target(id),
                    1 => Val::Tensor(Output::new(id, 0)),
                    n => Val::Tuple((0..n).map(|i| Val::Tensor(Output::new(id, i))).collect()),
                })
            }
            Err(e) => {
                let _ = name;
                Err(self.graph_err(whole, &what, &texts, e))
            }
        }
    }

    pub(crate) fn attr_value(&mut self, kind: AttrKind, e: &Expr) -> R<AttrValue> {
        Ok(match kind {
            AttrKind::Int => AttrValue::Int(self.int_arg(e)?),
            AttrKind::Float => AttrValue::Float(self.float_arg(e)?),
            AttrKind::Bool => AttrValue::Bool(self.bool_arg(e)?),
            AttrKind::Str => match e {
                Expr::Lit(ExprLit {
                    lit: SynLit::Str(s),
                    ..
                }) => AttrValue::Str(s.value()),
                _ => return Err(self.err_at(e, "expected a string literal")),
            },
            AttrKind::DType => AttrValue::DType(self.dtype_arg(e)?),
            AttrKind::Ints => AttrValue::Ints(self.ints_arg(e)?),
            AttrKind::Floats => match self.static_lit(e)? {
                Some(l) if l.shape.len() == 1 && l.kind != LitKind::Bool => {
                    AttrValue::Floats(l.data)
                }
                _ => return Err(self.err_at(e, "expected a list of numbers")),
            },
            AttrKind::Shape => {
                let Expr::Array(a) = e else {
                    return Err(self.err_at(e, "expected a shape like `[B, 3]`"));
                };
                let mut dims = Vec::new();
                for x in &a.elems {
                    match path_ident(x) {
                        Some(id) if self.is_dim(id) => dims.push(Dim::Sym(id.to_string())),
                        _ => dims.push(Dim::Known(self.int_arg(x)? as usize)),
                    }
                }
                AttrValue::Shape(Shape::new(dims))
            }
            AttrKind::DTypes => {
                let Expr::Array(a) = e else {
                    return Err(self.err_at(e, "expected a list of dtypes like `[f32, i32]`"));
                };
                let mut ts = Vec::new();
                for x in &a.elems {
                    ts.push(self.dtype_arg(x)?);
                }
                AttrValue::DTypes(ts)
            }
            AttrKind::Tensor => match self.static_lit(e)? {
                Some(l) => AttrValue::Tensor(crate::check::lit_value(&l, l.default_dtype())),
                None => return Err(self.err_at(e, "expected a literal tensor")),
            },
        })
    }
}
