//! `tfr-nn`'s layers as functions of the language: `dense(x, 128, relu)`,
//! `conv2d_layer(x, 64, 3, activation = relu)`, `flatten(x)`, and `lstm(xs, 32)`. Each call
//! makes its own variables under a scope named after the layer (`dense`, `dense_1`, ...; inside
//! a model function, under the call's scope), with the initializers `tfr-nn` uses (Glorot
//! uniform for dense and LSTM kernels, He normal for convolution kernels, zero biases), and they
//! are trained by `minimize` like declared variables.

use crate::check::{expr_text, path_ident, Builder, Val, R};
use crate::signatures::Args;
use syn::Expr;
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::ops::nn_ops::Padding;
use tfr_graph::{DType, Dim, Graph, Output, Result as GResult};
use tfr_nn::initializers;
use tfr_nn::layers::{self, Activation, Conv2DOptions};

/// The activations a layer takes, by the name the user writes.
const ACTIVATIONS: &[(&str, Activation)] = &[
    ("linear", Activation::Linear),
    ("relu", Activation::Relu),
    ("relu6", Activation::Relu6),
    ("elu", Activation::Elu),
    ("tanh", Activation::Tanh),
    ("sigmoid", Activation::Sigmoid),
];

/// The layer functions, and the functions of one tensor with options lowered here (their
/// parameters are in `signatures.rs`).
pub const LAYERS: &[&str] = &[
    "dense",
    "conv2d_layer",
    "flatten",
    "lstm",
    "softmax",
    "log_softmax",
];

impl Builder {
    /// Lowers a call of a layer function.
    pub(crate) fn layer(&mut self, f: &str, a: &Args, whole: &Expr) -> R<Val> {
        let x = self.tensor_args(a, &[a.params[0].0])?[0];
        let text = expr_text(a.req(a.params[0].0));
        let r = match f {
            "dense" => {
                let units = self.count_arg(a.req("units"), "units")?;
                let act = self.activation_arg(a.get("activation"))?;
                self.float_input(x, f, &text, whole)?;
                layers::dense(&mut self.g, "dense", x, units, act, None).map(|d| {
                    self.trainable.extend([d.kernel, d.bias]);
                    d.output
                })
            }
            "conv2d_layer" => {
                let filters = self.count_arg(a.req("filters"), "filters")?;
                let kernel = self.window2(a.req("kernel_size"))?;
                let strides = match a.get("strides") {
                    Some(e) => self.window2(e)?,
                    None => [1, 1],
                };
                let padding = match self.padding_arg(a.get("padding"), "SAME")?.as_str() {
                    "VALID" => Padding::Valid,
                    _ => Padding::Same,
                };
                let act = self.activation_arg(a.get("activation"))?;
                self.float_input(x, f, &text, whole)?;
                let opts = Conv2DOptions {
                    strides,
                    padding,
                    activation: act,
                    ..Conv2DOptions::default()
                };
                layers::conv2d(&mut self.g, "conv2d", x, filters, kernel, opts).map(|c| {
                    self.trainable.push(c.kernel);
                    self.trainable.extend(c.bias);
                    c.output
                })
            }
            "flatten" => layers::flatten(&mut self.g, x),
            "softmax" | "log_softmax" => {
                let axis = a.get("axis").map(|e| self.int_arg(e)).transpose()?;
                softmax_over(&mut self.g, x, axis.unwrap_or(-1), f == "log_softmax")
            }
            "lstm" => {
                let units = self.count_arg(a.req("units"), "units")?;
                self.float_input(x, f, &text, whole)?;
                return self.lstm(x, units, &text, whole).map(Val::Tensor);
            }
            other => unreachable!("`{other}` is listed in LAYERS but not lowered"),
        };
        self.result(r, whole, f, &[text])
    }

    /// A layer's size argument: a positive integer.
    fn count_arg(&mut self, e: &Expr, what: &str) -> R<usize> {
        match self.int_arg(e)? {
            n if n >= 1 => Ok(n as usize),
            n => Err(self.err_at(e, format!("`{what}` must be at least 1, got {n}"))),
        }
    }

    /// A window or stride: one size, or `[height, width]`.
    fn window2(&mut self, e: &Expr) -> R<[usize; 2]> {
        let v = self.ints_arg(e)?;
        match v.as_slice() {
            [k] if *k >= 1 => Ok([*k as usize; 2]),
            [h, w] if *h >= 1 && *w >= 1 => Ok([*h as usize, *w as usize]),
            _ => Err(self.err_at(
                e,
                format!(
                    "expected a positive size or `[height, width]`, got `{}`",
                    expr_text(e)
                ),
            )),
        }
    }

    fn activation_arg(&mut self, e: Option<&Expr>) -> R<Activation> {
        let Some(e) = e else {
            return Ok(Activation::Linear);
        };
        let name = path_ident(e).map(|i| i.to_string()).unwrap_or_default();
        match ACTIVATIONS.iter().find(|(n, _)| *n == name) {
            Some((_, a)) => Ok(*a),
            None => {
                let names: Vec<&str> = ACTIVATIONS.iter().map(|(n, _)| *n).collect();
                let hint = crate::parse::nearest(&name, names.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                Err(self.err_at(
                    e,
                    format!(
                        "expected an activation, got `{}`; {hint}activations: {}",
                        expr_text(e),
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// Layers make f32 variables: their input must be f32.
    fn float_input(&mut self, x: Output, f: &str, text: &str, at: &Expr) -> R<()> {
        let t = self.g.output_type(x).clone();
        if t.dtype == DType::F32 {
            return Ok(());
        }
        Err(self.err_at(
            at,
            format!(
                "{f}: the layer's variables are f32, but `{text}` is {}; convert it with \
                 `cast({text}, f32)`",
                crate::check::type_string(t.dtype, &t.shape)
            ),
        ))
    }

    /// An LSTM over a time-major sequence `xs: [T, B, features]`: its last hidden state
    /// `[B, units]`. One kernel `[features + units, 4 * units]` (Glorot uniform) and a zero
    /// bias, gates in TensorFlow's `LSTMCell` order (input, cell, forget, output), with 1 added
    /// to the forget gate's bias as TensorFlow does; the steps are a `while_loop` over `T`, so
    /// the sequence length may change from step to step.
    fn lstm(&mut self, xs: Output, units: usize, text: &str, at: &Expr) -> R<Output> {
        let shape = self.g.shape(xs).clone();
        let dims = shape.dims().map(<[Dim]>::to_vec).unwrap_or_default();
        let (batch, features) = match dims.as_slice() {
            [_, b, Dim::Known(f)] if !matches!(b, Dim::Unknown) => (b.clone(), *f),
            _ => {
                return Err(self.err_at(
                    at,
                    format!(
                        "lstm: expected a time-major sequence `[T, B, features]` with a known \
                         or symbolic batch `B` and a known number of features, but `{text}` is \
                         {}",
                        crate::check::type_string(self.g.dtype(xs), &shape)
                    ),
                ))
            }
        };
        let zero = self.scalar(DType::F32, 0.0, at)?;
        let state = match self.filled(&[batch, Dim::Known(units)], zero, at)? {
            Ok(s) => s,
            Err(e) => return Err(self.graph_err(at, "lstm", &[], e)),
        };
        let mut g = std::mem::take(&mut self.g);
        let built = g.with_scope("lstm", |g| lstm_graph(g, xs, state, features, units));
        self.g = g;
        match built {
            Ok((h, kernel, bias)) => {
                self.trainable.extend([kernel, bias]);
                Ok(h)
            }
            Err(e) => Err(self.graph_err(at, "lstm", &[text.to_string()], e)),
        }
    }
}

type LstmParts = (
    Output,
    tfr_graph::ops::state_ops::Variable,
    tfr_graph::ops::state_ops::Variable,
);

/// The LSTM's variables and loop (see [`Builder::lstm`]); `state` is the zero `[B, units]`.
fn lstm_graph(
    g: &mut Graph,
    xs: Output,
    state: Output,
    features: usize,
    units: usize,
) -> GResult<LstmParts> {
    let k0 = initializers::glorot_uniform(g, &[features + units, 4 * units], None)?;
    let kernel = g.variable("kernel", k0)?;
    let b0 = initializers::zeros(g, &[4 * units])?;
    let bias = g.variable("bias", b0)?;
    let steps = {
        let s = g.shape_of(xs)?;
        let zero = g.constant_from(&[], vec![0i32])?;
        g.gather(s, zero, 0)?
    };
    let t0 = g.constant_from(&[], vec![0i32])?;
    let (k, b) = (kernel.value, bias.value);
    let out = g.while_loop(
        |g, v| g.less(v[0], steps),
        |g, v| {
            let (t, h, c) = (v[0], v[1], v[2]);
            let x = g.gather(xs, t, 0)?;
            let xh = g.concat(&[x, h], 1)?;
            let z = g.matmul(xh, k)?;
            let z = g.add(z, b)?;
            let gates = g.split(z, 4, 1)?;
            let one = g.scalar_like(gates[2], 1.0)?;
            let forget_in = g.add(gates[2], one)?;
            let i = g.sigmoid(gates[0])?;
            let cand = g.tanh(gates[1])?;
            let f = g.sigmoid(forget_in)?;
            let o = g.sigmoid(gates[3])?;
            let kept = g.mul(f, c)?;
            let added = g.mul(i, cand)?;
            let c = g.add(kept, added)?;
            let tc = g.tanh(c)?;
            let h = g.mul(o, tc)?;
            let one_i = g.constant_from(&[], vec![1i32])?;
            let t = g.add(t, one_i)?;
            Ok(vec![t, h, c])
        },
        &[t0, state, state],
        &WhileOptions {
            name: "while".into(),
            ..WhileOptions::default()
        },
    )?;
    let state_shape = g.shape(state).clone();
    g.refine_output_shape(out[1], state_shape);
    Ok((out[1], kernel, bias))
}

/// Softmax (or log-softmax) over `axis`, as TensorFlow computes it: the op works on the last
/// axis, so another axis is swapped to the end and back.
fn softmax_over(g: &mut Graph, x: Output, axis: i64, log: bool) -> GResult<Output> {
    let op = |g: &mut Graph, x| if log { g.log_softmax(x) } else { g.softmax(x) };
    let Some(rank) = g.shape(x).rank() else {
        return if axis == -1 {
            op(g, x)
        } else {
            Err(tfr_graph::GraphError::InvalidNode {
                node: "softmax".into(),
                op: "Softmax".into(),
                message: format!("axis {axis} needs an input of known rank"),
            })
        };
    };
    let rank = rank as i64;
    if axis < -rank || axis >= rank {
        return Err(tfr_graph::GraphError::InvalidNode {
            node: "softmax".into(),
            op: "Softmax".into(),
            message: format!("axis {axis} is out of range for a rank-{rank} input"),
        });
    }
    let axis = axis.rem_euclid(rank.max(1));
    if axis == rank - 1 {
        return op(g, x);
    }
    let mut perm: Vec<i64> = (0..rank).collect();
    perm.swap(axis as usize, rank as usize - 1);
    let swapped = g.transpose(x, &perm)?;
    let y = op(g, swapped)?;
    g.transpose(y, &perm)
}
