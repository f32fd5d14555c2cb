//! LSTM layers (TensorFlow's `BasicLSTMCell` / `LSTMCell` without peepholes or projection).
//!
//! One cell has a kernel `[input_depth + num_units, 4 * num_units]` and a bias
//! `[4 * num_units]`; with `z = [x, h] @ kernel + bias` split into the gates `i, j, f, o` (TF's
//! order), `c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)` and
//! `h' = tanh(c') * sigmoid(o)`. The state is TF's `LSTMStateTuple` `(c, h)`.
//!
//! [`lstm`] runs a stack of cells over a `[batch, time, features]` sequence layer by layer: the
//! input part of every step's matmul is done for the whole sequence at once (one
//! `[time * batch, depth] @ [depth, 4 * units]` gemm), and only `h @ kernel[depth..]` remains
//! per step. Each layer is one fused `BlockLSTM` op ([`LstmImpl::Block`], the default and the
//! fastest on CPU, see `benches/RESULTS.md`; TensorFlow's `LSTMBlockFusedCell`: the kernel runs
//! the whole sequence, and its gradient `BlockLSTMGrad` forms the weight gradient with one
//! product over all steps), or the steps are unrolled into graph ops ([`LstmImpl::Unrolled`])
//! or run by a `scan` loop ([`LstmImpl::Loop`], one body whatever the sequence length;
//! gradients go through the loop).

use crate::initializers;
use tfr_graph::ops::rnn_ops::BlockLstmAttrs;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, GraphError, Output, Result};

fn rnn_error(builder: &str, arg: &str, message: String) -> GraphError {
    GraphError::InvalidArgument {
        builder: builder.into(),
        arg: arg.into(),
        message,
    }
}

/// One LSTM cell's variables.
#[derive(Clone, Debug)]
pub struct LstmCell {
    pub kernel: Variable,
    pub bias: Variable,
    pub input_depth: usize,
    pub num_units: usize,
    pub forget_bias: f32,
}

impl LstmCell {
    /// Makes `name/kernel` (Glorot-uniform, TF's default) and `name/bias` (zeros) of `dtype`
    /// (float32 or float64).
    pub fn new(
        g: &mut Graph,
        name: &str,
        input_depth: usize,
        num_units: usize,
        forget_bias: f32,
        dtype: DType,
        seed: Option<u64>,
    ) -> Result<LstmCell> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(rnn_error(
                "LstmCell::new",
                "dtype",
                format!("expected float32 or float64, got {dtype}"),
            ));
        }
        if input_depth == 0 || num_units == 0 {
            return Err(rnn_error(
                "LstmCell::new",
                "num_units",
                format!(
                    "input_depth and num_units must be at least 1, got {input_depth} and \
                     {num_units}"
                ),
            ));
        }
        g.with_scope(name, |g| {
            let k0 =
                initializers::glorot_uniform(g, &[input_depth + num_units, 4 * num_units], seed)?;
            let k0 = if dtype == DType::F32 {
                k0
            } else {
                g.cast(k0, dtype)?
            };
            let kernel = g.variable("kernel", k0)?;
            let b0 = initializers::zeros(g, &[4 * num_units])?;
            let b0 = if dtype == DType::F32 {
                b0
            } else {
                g.cast(b0, dtype)?
            };
            let bias = g.variable("bias", b0)?;
            Ok(LstmCell {
                kernel,
                bias,
                input_depth,
                num_units,
                forget_bias,
            })
        })
    }

    /// The variables (kernel, bias).
    pub fn variables(&self) -> Vec<Variable> {
        vec![self.kernel.clone(), self.bias.clone()]
    }

    /// One step: `x` `[batch, input_depth]`, state `(c, h)` `[batch, num_units]` each; returns
    /// the new `(c, h)` (the output is `h`).
    pub fn step(
        &self,
        g: &mut Graph,
        x: Output,
        state: (Output, Output),
    ) -> Result<(Output, Output)> {
        let s = g.shape(x).clone();
        if s.rank() != Some(2) || s.dim(1).known().is_some_and(|d| d != self.input_depth) {
            return Err(rnn_error(
                "LstmCell::step",
                "x",
                format!("expected [batch, {}], got {s}", self.input_depth),
            ));
        }
        let xh = g.concat(&[x, state.1], 1)?;
        let z = g.matmul(xh, self.kernel.value)?;
        let z = g.add(z, self.bias.value)?;
        self.gates(g, z, state.0)
    }

    /// The state update from the gate pre-activations `z` (`[batch, 4 * units]`).
    fn gates(&self, g: &mut Graph, z: Output, c: Output) -> Result<(Output, Output)> {
        let parts = g.split(z, 4, 1)?;
        let (i, j, f, o) = (parts[0], parts[1], parts[2], parts[3]);
        let fb = g.scalar_like(f, f64::from(self.forget_bias))?;
        let f = g.add(f, fb)?;
        let f = g.sigmoid(f)?;
        let kept = g.mul(c, f)?;
        let i = g.sigmoid(i)?;
        let j = g.tanh(j)?;
        let new = g.mul(i, j)?;
        let c = g.add(kept, new)?;
        let o = g.sigmoid(o)?;
        let tc = g.tanh(c)?;
        let h = g.mul(tc, o)?;
        Ok((c, h))
    }

    /// `kernel[..input_depth]` and `kernel[input_depth..]`: the input and recurrent weights.
    fn split_kernel(&self, g: &mut Graph) -> Result<(Output, Output)> {
        let (d, u) = (self.input_depth as i64, self.num_units as i64);
        let wx = g.slice(self.kernel.value, &[0, 0], &[d, 4 * u])?;
        let wh = g.slice(self.kernel.value, &[d, 0], &[u, 4 * u])?;
        Ok((wx, wh))
    }

    /// The cell over a time-major sequence `xs` (`[time, batch, input_depth]`, static time and
    /// batch): the outputs `[time, batch, units]` and the final `(c, h)`.
    fn run(
        &self,
        g: &mut Graph,
        xs: Output,
        dims: (usize, usize),
        state: (Output, Output),
        imp: LstmImpl,
    ) -> Result<(Output, (Output, Output))> {
        let (t, b) = dims;
        let (d, u) = (self.input_depth as i64, self.num_units as i64);
        let last = |g: &mut Graph, s: Output| -> Result<Output> {
            let l = g.slice(s, &[t as i64 - 1, 0, 0], &[1, b as i64, u])?;
            g.reshape(l, &[b as i64, u])
        };
        if imp == LstmImpl::Block {
            let seq_len = g.scalar(t as i64)?;
            let z = initializers::zeros(g, &[self.num_units])?;
            let z = if g.dtype(xs) == DType::F32 {
                z
            } else {
                g.cast(z, g.dtype(xs))?
            };
            let attrs = BlockLstmAttrs {
                forget_bias: self.forget_bias,
                cell_clip: -1.0,
                use_peephole: false,
            };
            let r = g.block_lstm(
                [
                    seq_len,
                    xs,
                    state.0,
                    state.1,
                    self.kernel.value,
                    z,
                    z,
                    z,
                    self.bias.value,
                ],
                attrs,
            )?;
            let c = last(g, r.cs)?;
            let h = last(g, r.h)?;
            return Ok((r.h, (c, h)));
        }
        let (wx, wh) = self.split_kernel(g)?;
        let flat = g.reshape(xs, &[-1, d])?;
        let xp = g.matmul(flat, wx)?;
        let xp = g.add(xp, self.bias.value)?;
        let xp = g.reshape(xp, &[t as i64, b as i64, 4 * u])?;
        match imp {
            LstmImpl::Unrolled => {
                let steps = g.unstack(xp, t, 0)?;
                let (mut c, mut h) = state;
                let mut hs = Vec::with_capacity(t);
                for xt in steps {
                    let r = g.matmul(h, wh)?;
                    let z = g.add(xt, r)?;
                    (c, h) = self.gates(g, z, c)?;
                    hs.push(h);
                }
                let out = g.stack(&hs, 0)?;
                Ok((out, (c, h)))
            }
            LstmImpl::Loop | LstmImpl::Block => {
                let cell = self.clone();
                let res = g.scan(
                    move |g, acc, x| {
                        let r = g.matmul(acc[1], wh)?;
                        let z = g.add(x[0], r)?;
                        let (c, h) = cell.gates(g, z, acc[0])?;
                        Ok(vec![c, h])
                    },
                    &[xp],
                    &[state.0, state.1],
                    false,
                )?;
                let (cs, hs) = (res[0], res[1]);
                let c = last(g, cs)?;
                let h = last(g, hs)?;
                Ok((hs, (c, h)))
            }
        }
    }
}

/// How [`lstm`] runs the time steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LstmImpl {
    /// One copy of the step per time step.
    Unrolled,
    /// A `scan` (`while_loop`) over time.
    Loop,
    /// One fused `BlockLSTM` op per layer (TensorFlow's `LSTMBlockFusedCell`), whose gradient
    /// is one `BlockLSTMGrad`. The default: the fastest on CPU (`benches/RESULTS.md`).
    #[default]
    Block,
}

/// Options of [`lstm`].
#[derive(Clone, Debug)]
pub struct LstmOptions {
    /// Added to the forget gate's pre-activation (TF's default 1.0).
    pub forget_bias: f32,
    pub implementation: LstmImpl,
    /// Per layer `(c, h)`; zeros when `None`.
    pub initial_state: Option<Vec<(Output, Output)>>,
    pub seed: Option<u64>,
}

impl Default for LstmOptions {
    fn default() -> Self {
        LstmOptions {
            forget_bias: 1.0,
            implementation: LstmImpl::Unrolled,
            initial_state: None,
            seed: None,
        }
    }
}

/// A multi-layer LSTM over a sequence.
#[derive(Clone, Debug)]
pub struct Lstm {
    /// The last layer's `h` at every step: `[batch, time, units]`.
    pub outputs: Output,
    /// Per layer, the final `(c, h)`.
    pub final_state: Vec<(Output, Output)>,
    pub cells: Vec<LstmCell>,
}

impl Lstm {
    /// Every cell's variables.
    pub fn variables(&self) -> Vec<Variable> {
        self.cells.iter().flat_map(LstmCell::variables).collect()
    }
}

/// `num_layers` LSTM layers of `num_units` over `x` (`[batch, time, features]`, all static);
/// variables `name/cell_<k>/{kernel,bias}`.
pub fn lstm(
    g: &mut Graph,
    name: &str,
    x: Output,
    num_units: usize,
    num_layers: usize,
    opts: &LstmOptions,
) -> Result<Lstm> {
    let err = |arg: &str, m: String| Err(rnn_error("lstm", arg, m));
    let s = g.shape(x).clone();
    let Some(dims) = s
        .to_known()
        .filter(|d| d.len() == 3 && d.iter().all(|&v| v > 0))
    else {
        return err(
            "x",
            format!("expected [batch, time, features] with known non-zero sizes, got {s}"),
        );
    };
    let dtype = g.dtype(x);
    if !matches!(dtype, DType::F32 | DType::F64) {
        return err("x", format!("expected float32 or float64, got {dtype}"));
    }
    if num_layers == 0 || num_units == 0 {
        return err(
            "num_layers",
            format!(
                "num_layers and num_units must be at least 1, got {num_layers} and {num_units}"
            ),
        );
    }
    let (b, t, f) = (dims[0], dims[1], dims[2]);
    if let Some(st) = &opts.initial_state {
        if st.len() != num_layers {
            return err(
                "initial_state",
                format!("expected {num_layers} (c, h) pairs, got {}", st.len()),
            );
        }
        for (k, (c, h)) in st.iter().enumerate() {
            for (which, o) in [("c", *c), ("h", *h)] {
                if g.shape(o).to_known() != Some(vec![b, num_units]) {
                    return err(
                        "initial_state",
                        format!(
                            "layer {k} {which} must be [{b}, {num_units}], got {}",
                            g.shape(o)
                        ),
                    );
                }
            }
        }
    }
    g.with_scope(name, |g| {
        let mut seq = g.transpose(x, &[1, 0, 2])?;
        let mut cells = Vec::with_capacity(num_layers);
        let mut finals = Vec::with_capacity(num_layers);
        for k in 0..num_layers {
            let depth = if k == 0 { f } else { num_units };
            let seed = opts.seed.map(|s| s.wrapping_add(k as u64));
            let cell = LstmCell::new(
                g,
                &format!("cell_{k}"),
                depth,
                num_units,
                opts.forget_bias,
                dtype,
                seed,
            )?;
            let state = match &opts.initial_state {
                Some(st) => st[k],
                None => {
                    let z = initializers::zeros(g, &[b, num_units])?;
                    let z = if dtype == DType::F32 {
                        z
                    } else {
                        g.cast(z, dtype)?
                    };
                    (z, z)
                }
            };
            let (out, fin) = cell.run(g, seq, (t, b), state, opts.implementation)?;
            seq = out;
            finals.push(fin);
            cells.push(cell);
        }
        let outputs = g.transpose(seq, &[1, 0, 2])?;
        Ok(Lstm {
            outputs,
            final_state: finals,
            cells,
        })
    })
}
