//! The calls of the function table that are not plain unary, binary or reduction entries:
//! `lower_call` dispatches a checked call (`Args`, from `bind_args`) to its graph builder.

use crate::check::{expr_text, type_string, Builder, Val, R};
use crate::signatures::*;
use syn::{Expr, Ident};
use tfr_graph::{DType, Dim, NodeId, Output, Result as GResult};

impl Builder {
    pub(crate) fn lower_call(&mut self, name: &Ident, a: Args, whole: &Expr) -> R<Val> {
        let func = a.func.clone();
        let f = func.as_str();
        let texts = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter_map(|n| a.get(n))
                .map(expr_text)
                .collect()
        };
        if let Some((_, op)) = UNARY.iter().find(|(n, _)| *n == f) {
            let x = self.tensor_args(&a, &["x"])?;
            let r = op(&mut self.g, x[0]);
            return self.result(r, whole, f, &texts(&["x"]));
        }
        if let Some((_, op)) = BINARY.iter().find(|(n, _)| *n == f) {
            let x = self.tensor_args(&a, &["x", "y"])?;
            let r = op(&mut self.g, x[0], x[1]);
            return self.result(r, whole, f, &texts(&["x", "y"]));
        }
        if let Some((_, op)) = REDUCTIONS.iter().find(|(n, _)| *n == f) {
            self.reduction_of_a_tensor(f, &a)?;
            let x = self.tensor_args(&a, &["x"])?;
            let axes = a.get("axis").map(|e| self.ints_arg(e)).transpose()?;
            let keep = a
                .get("keep_dims")
                .map(|e| self.bool_arg(e))
                .transpose()?
                .unwrap_or(false);
            let r = op(&mut self.g, x[0], axes.as_deref(), keep);
            return self.result(r, whole, f, &texts(&["x"]));
        }
        if crate::layers::LAYERS.contains(&f) {
            return self.layer(f, &a, whole);
        }
        let ops = texts(&["x"]);
        let r = match f {
            "matmul" => {
                let x = self.tensor_args(&a, &["a", "b"])?;
                let ta = a
                    .get("transpose_a")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let tb = a
                    .get("transpose_b")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let r = self.g.matmul_t(x[0], x[1], ta, tb);
                return self.result(r, whole, f, &texts(&["a", "b"]));
            }
            "batch_matmul" => {
                let x = self.tensor_args(&a, &["x", "y"])?;
                let ax = a
                    .get("adj_x")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let ay = a
                    .get("adj_y")
                    .map(|e| self.bool_arg(e))
                    .transpose()?
                    .unwrap_or(false);
                let r = self.g.batch_matmul(x[0], x[1], ax, ay);
                return self.result(r, whole, f, &texts(&["x", "y"]));
            }
            "argmax" | "argmin" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axis = self.int_arg(a.req("axis"))?;
                if f == "argmax" {
                    self.g.argmax(x[0], axis)
                } else {
                    self.g.argmin(x[0], axis)
                }
            }
            "cast" => {
                let x = self.tensor_args(&a, &["x"])?;
                let t = self.dtype_arg(a.req("dtype"))?;
                self.g.cast(x[0], t)
            }
            "select" => {
                let c = self.tensor_args(&a, &["cond"])?;
                let x = self.tensor_args(&a, &["t", "e"])?;
                let r = self.g.select(c[0], x[0], x[1]);
                return self.result(r, whole, f, &texts(&["cond", "t", "e"]));
            }
            "clip" | "clip_by_value" => {
                let x = self.tensor_args(&a, &["x", "min", "max"])?;
                let r = self.g.clip_by_value(x[0], x[1], x[2]);
                return self.result(r, whole, f, &texts(&["x", "min", "max"]));
            }
            "add_n" => {
                let xs = self.tensor_list(a.req("values"))?;
                self.g.add_n(&xs)
            }
            "reshape" => {
                let x = self.tensor_args(&a, &["x"])?;
                self.reshape(x[0], a.req("x"), a.req("shape"), whole)?
            }
            "transpose" => {
                let x = self.tensor_args(&a, &["x"])?;
                let perm =
                    match a.get("perm") {
                        Some(e) => self.ints_arg(e)?,
                        None => match self.g.shape(x[0]).rank() {
                            Some(r) => (0..r as i64).rev().collect(),
                            None => return Err(self.err_at(
                                whole,
                                "transpose: the rank of the input is unknown; give `perm = [..]`",
                            )),
                        },
                    };
                self.g.transpose(x[0], &perm)
            }
            "expand_dims" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axis = self.int_arg(a.req("axis"))?;
                self.g.expand_dims(x[0], axis)
            }
            "squeeze" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axes = a
                    .get("axis")
                    .map(|e| self.ints_arg(e))
                    .transpose()?
                    .unwrap_or_default();
                self.g.squeeze(x[0], &axes)
            }
            "concat" => {
                let xs = self.tensor_list(a.req("values"))?;
                let axis = self.int_arg(a.req("axis"))?;
                self.g.concat(&xs, axis)
            }
            "stack" => {
                let xs = self.tensor_list(a.req("values"))?;
                let axis = a
                    .get("axis")
                    .map(|e| self.int_arg(e))
                    .transpose()?
                    .unwrap_or(0);
                self.g.stack(&xs, axis)
            }
            "split" | "unstack" => {
                let x = self.tensor_args(&a, &["x"])?;
                let num = self.int_arg(a.req("num"))?;
                let axis = a
                    .get("axis")
                    .map(|e| self.int_arg(e))
                    .transpose()?
                    .unwrap_or(0);
                if num < 1 {
                    return Err(self.err_at(a.req("num"), format!("{f}: `num` must be at least 1")));
                }
                let r = if f == "split" {
                    self.g.split(x[0], num as usize, axis)
                } else {
                    self.g.unstack(x[0], num as usize, axis)
                };
                return match r {
                    Ok(v) => Ok(Val::Tuple(v.into_iter().map(Val::Tensor).collect())),
                    Err(e) => Err(self.graph_err(whole, f, &ops, e)),
                };
            }
            "gather" => {
                let p = self.tensor_args(&a, &["params"])?;
                let i = self.tensor_args(&a, &["indices"])?;
                let axis = a
                    .get("axis")
                    .map(|e| self.int_arg(e))
                    .transpose()?
                    .unwrap_or(0);
                let r = self.g.gather(p[0], i[0], axis);
                return self.result(r, whole, f, &texts(&["params", "indices"]));
            }
            "one_hot" => {
                let i = self.tensor_args(&a, &["indices"])?;
                let depth = self.int_arg(a.req("depth"))?;
                let on = a
                    .get("on_value")
                    .map(|e| self.float_arg(e))
                    .transpose()?
                    .unwrap_or(1.0);
                let off = a
                    .get("off_value")
                    .map(|e| self.float_arg(e))
                    .transpose()?
                    .unwrap_or(0.0);
                let t = a
                    .get("dtype")
                    .map(|e| self.dtype_arg(e))
                    .transpose()?
                    .unwrap_or(DType::F32);
                if depth < 0 {
                    return Err(self.err_at(a.req("depth"), "one_hot: depth must be >= 0"));
                }
                let on = self.scalar(t, on, a.get("on_value").unwrap_or(whole))?;
                let off = self.scalar(t, off, a.get("off_value").unwrap_or(whole))?;
                self.g.one_hot(i[0], depth as usize, on, off)
            }
            "fill" => {
                let s = self.symbolic_dims_arg(a.req("shape"), false)?;
                let v = self.tensor_args(&a, &["value"])?;
                self.filled(&s, v[0], a.req("shape"))?
            }
            "zeros" | "ones" => {
                let (dims, declared) = match (a.get("shape"), self.var_type.is_some()) {
                    (Some(e), false) => (self.symbolic_dims_arg(e, false)?, None),
                    _ => {
                        let (d, t) = self.init_shape(&a, name)?;
                        (d.into_iter().map(Dim::Known).collect(), t)
                    }
                };
                let t = match a.get("dtype") {
                    Some(e) => self.dtype_arg(e)?,
                    None => declared.unwrap_or(DType::F32),
                };
                let v = self.scalar(t, if f == "ones" { 1.0 } else { 0.0 }, whole)?;
                self.filled(&dims, v, a.get("shape").unwrap_or(whole))?
            }
            "slice" => {
                let x = self.tensor_args(&a, &["x"])?;
                let b = self.ints_arg(a.req("begin"))?;
                let s = self.ints_arg(a.req("size"))?;
                self.g.slice(x[0], &b, &s)
            }
            "pad" => {
                let x = self.tensor_args(&a, &["x"])?;
                let p = self.pairs_arg(a.req("paddings"))?;
                let v = a
                    .get("value")
                    .map(|e| self.float_arg(e))
                    .transpose()?
                    .unwrap_or(0.0);
                self.g.pad(x[0], &p, v)
            }
            "tile" => {
                let x = self.tensor_args(&a, &["x"])?;
                let m = self.ints_arg(a.req("multiples"))?;
                self.g.tile(x[0], &m)
            }
            "broadcast_to" => {
                let x = self.tensor_args(&a, &["x"])?;
                let s = self.symbolic_dims_arg(a.req("shape"), false)?;
                self.broadcast_to(x[0], &s, a.req("shape"))?
            }
            "reverse" => {
                let x = self.tensor_args(&a, &["x"])?;
                let axes = self.ints_arg(a.req("axis"))?;
                self.g.reverse(x[0], &axes)
            }
            "range" => {
                let mut names = vec!["start", "limit"];
                if a.get("delta").is_some() {
                    names.push("delta");
                }
                let mut x = self.tensor_args(&a, &names)?;
                if x.len() == 2 {
                    let t = self.g.dtype(x[0]);
                    x.push(self.scalar(t, 1.0, whole)?);
                }
                self.g.range(x[0], x[1], x[2])
            }
            "random_uniform" | "random_normal" | "truncated_normal" => {
                let (dims, declared) = self.init_shape(&a, name)?;
                let t = match a.get("dtype") {
                    Some(e) => self.dtype_arg(e)?,
                    None => declared.unwrap_or(DType::F32),
                };
                let seed = self.seed_arg(&a)?;
                match f {
                    "random_uniform" => self.g.random_uniform(&dims, t, seed),
                    "random_normal" => self.g.random_normal(&dims, t, seed),
                    _ => self.g.truncated_normal(&dims, t, seed),
                }
            }
            "glorot_uniform" | "he_normal" | "uniform" => {
                let (dims, declared) = self.init_shape(&a, name)?;
                if declared.is_some_and(|t| t != DType::F32) {
                    return Err(self.err(
                        name.span(),
                        format!(
                            "`{f}` makes f32 values; the variable is declared with another dtype"
                        ),
                    ));
                }
                let seed = self.seed_arg(&a)?;
                match f {
                    "glorot_uniform" => {
                        tfr_nn::initializers::glorot_uniform(&mut self.g, &dims, seed)
                    }
                    "he_normal" => tfr_nn::initializers::he_normal(&mut self.g, &dims, seed),
                    _ => {
                        let limit = self.float_arg(a.req("limit"))?;
                        tfr_nn::initializers::uniform(&mut self.g, &dims, limit as f32, seed)
                    }
                }
            }
            "conv2d" => {
                let x = self.tensor_args(&a, &["x", "filter"])?;
                let strides = self.window_arg(a.get("strides"), 1)?;
                let padding = self.padding_arg(a.get("padding"), "SAME")?;
                let r = self.g.conv2d(x[0], x[1], &strides, &padding);
                return self.result(r, whole, f, &texts(&["x", "filter"]));
            }
            "max_pool" | "avg_pool" => {
                let x = self.tensor_args(&a, &["x"])?;
                let ksize = self.window_arg(a.get("ksize"), 1)?;
                let strides = match a.get("strides") {
                    Some(e) => self.window_arg(Some(e), 1)?,
                    None => ksize.clone(),
                };
                let padding = self.padding_arg(a.get("padding"), "VALID")?;
                if f == "max_pool" {
                    self.g.max_pool(x[0], &ksize, &strides, &padding, "NHWC")
                } else {
                    self.g.avg_pool(x[0], &ksize, &strides, &padding, "NHWC")
                }
            }
            "assign" | "assign_add" | "assign_sub" => {
                let var = self.lookup_var(a.req("var"))?;
                let v = self.eval(a.req("value"))?;
                let v = match v {
                    Val::Lit(l) => self.materialize(&l, var.dtype, a.req("value"))?,
                    other => self.tensors(vec![(other, a.req("value"))])?[0],
                };
                let vt = self.g.output_type(v).clone();
                if vt.dtype != var.dtype || vt.shape.merge(&var.shape).is_err() {
                    return Err(self.err_at(
                        a.req("value"),
                        format!(
                            "{f}: variable `{}` is {} but the value is {}",
                            expr_text(a.req("var")),
                            type_string(var.dtype, &var.shape),
                            type_string(vt.dtype, &vt.shape)
                        ),
                    ));
                }
                match f {
                    "assign" => self.g.assign(&var, v),
                    "assign_add" => self.g.assign_add(&var, v),
                    _ => self.g.assign_sub(&var, v),
                }
            }
            "grad" => return self.grad(&a, whole),
            "cond" => return self.cond_call(&a),
            "while_loop" => return self.while_loop(name, &a, whole),
            "minimize" => return self.minimize(&a, whole),
            "group" => {
                let de = a.req("deps");
                let mut nodes = Vec::new();
                match de {
                    Expr::Array(arr) => {
                        for x in &arr.elems {
                            let v = self.eval(x)?;
                            collect_nodes(&v, &mut nodes);
                        }
                    }
                    e => {
                        let v = self.eval(e)?;
                        collect_nodes(&v, &mut nodes);
                    }
                }
                return match self.g.group(&nodes) {
                    Ok(n) => Ok(Val::Target(n)),
                    Err(e) => Err(self.graph_err(whole, f, &[], e)),
                };
            }
            other => unreachable_function(other),
        };
        self.result(r, whole, f, &ops)
    }
}

/// Nodes of the values in `v` (for `group`).
fn collect_nodes(v: &Val, out: &mut Vec<NodeId>) {
    match v {
        Val::Tensor(o) => out.push(o.node),
        Val::Target(n) => out.push(*n),
        Val::Tuple(vs) => vs.iter().for_each(|v| collect_nodes(v, out)),
        Val::Lit(_) => {}
    }
}

/// Every name in `OTHERS` is handled by `lower_call`; this is reached only if the table and
/// the match disagree, which the unit test `every_function_lowers` rules out.
fn unreachable_function(name: &str) -> GResult<Output> {
    Err(tfr_graph::GraphError::InvalidNode {
        node: name.into(),
        op: name.into(),
        message: "this function is listed but not lowered (a bug in tfr-macros)".into(),
    })
}
