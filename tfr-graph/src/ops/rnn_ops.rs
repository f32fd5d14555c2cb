//! Fused recurrent ops: TensorFlow's `BlockLSTM` (the whole sequence of an LSTM layer in one
//! op) and `BlockLSTMGrad`, with V1's semantics and gate order `i, ci, f, o` (input, cell input,
//! forget, output). Per time step `t < seq_len_max`, from `xh = [x[t], h_prev]`:
//!
//! ```text
//! icfo = xh @ w + b
//! i  = sigmoid(icfo_i + cs_prev * wci)            (peephole terms only with use_peephole)
//! f  = sigmoid(icfo_f + forget_bias + cs_prev * wcf)
//! ci = tanh(icfo_c)
//! cs = clip(ci * i + cs_prev * f, cell_clip)      (no clipping when cell_clip <= 0)
//! o  = sigmoid(icfo_o + cs * wco)
//! co = tanh(cs)
//! h  = co * o
//! ```
//!
//! and `(cs_prev, h_prev)` become `(cs, h)`. Steps at and after `seq_len_max` output zeros. As
//! in TensorFlow the gradient flows only from `cs` and `h` (the gate outputs are saved
//! activations for `BlockLSTMGrad`), and the cell clip is ignored by the gradient.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::grad::GradCtx;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

/// The inputs shared by BlockLSTM and BlockLSTMGrad, in TensorFlow's order.
const INPUTS: [&str; 9] = [
    "seq_len_max",
    "x",
    "cs_prev",
    "h_prev",
    "w",
    "wci",
    "wcf",
    "wco",
    "b",
];

/// The activations BlockLSTM outputs (and BlockLSTMGrad reads back).
const ACTIVATIONS: [&str; 7] = ["i", "cs", "f", "o", "ci", "co", "h"];

pub fn op_defs() -> Vec<OpDef> {
    let mut fwd = OpDef::new("BlockLSTM", infer_block_lstm).doc(
        "an LSTM layer over a time-major sequence [time, batch, input] in one op (TensorFlow's \
         BlockLSTM, gates i, ci, f, o); outputs every step's gates, cell state and h",
    );
    let mut bwd = OpDef::new("BlockLSTMGrad", infer_block_lstm_grad).doc(
        "gradients of BlockLSTM for x, cs_prev, h_prev, w, wci, wcf, wco and b from the \
         gradients of its cs and h outputs",
    );
    for (k, name) in INPUTS.into_iter().enumerate() {
        let dtypes = if k == 0 {
            DTypeSet::of(&[DType::I64])
        } else {
            DTypeSet::FLOAT
        };
        fwd = fwd.input(name, dtypes);
        bwd = bwd.input(name, dtypes);
    }
    for name in ACTIVATIONS {
        fwd = fwd.output(name);
        bwd = bwd.input(name, DTypeSet::FLOAT);
    }
    bwd = bwd
        .input("cs_grad", DTypeSet::FLOAT)
        .input("h_grad", DTypeSet::FLOAT);
    for name in [
        "x_grad",
        "cs_prev_grad",
        "h_prev_grad",
        "w_grad",
        "wci_grad",
        "wcf_grad",
        "wco_grad",
        "b_grad",
    ] {
        bwd = bwd.output(name);
    }
    vec![
        fwd.attr_default("forget_bias", AttrKind::Float, 1.0)
            .attr_default("cell_clip", AttrKind::Float, 3.0)
            .attr_default("use_peephole", AttrKind::Bool, false)
            .gradient(block_lstm_grad),
        bwd.attr_default("use_peephole", AttrKind::Bool, false)
            .no_gradient(),
    ]
}

/// `(time, batch, input, cell)` from BlockLSTM's inputs, checked against each other.
fn lstm_dims(ctx: &InferCtx<'_>) -> std::result::Result<(DType, [Dim; 4]), String> {
    let dtype = ctx.same_dtype(&[1, 2, 3, 4, 5, 6, 7, 8])?;
    let rank = |i: usize, r: usize| -> std::result::Result<Vec<Dim>, String> {
        let s = &ctx.input(i).shape;
        match s.dims() {
            None => Ok(vec![Dim::Unknown; r]),
            Some(d) if d.len() == r => Ok(d.to_vec()),
            Some(_) => Err(format!("{} must be {r}-D, got shape {s}", INPUTS[i])),
        }
    };
    let seq = &ctx.input(0).shape;
    if seq.rank().is_some_and(|r| r != 0) {
        return Err(format!("seq_len_max must be a scalar, got shape {seq}"));
    }
    let x = rank(1, 3)?;
    let merge = |a: &Dim, b: &Dim, what: String| -> std::result::Result<Dim, String> {
        a.merge(b)
            .ok_or_else(|| format!("{what}: {a} does not match {b}"))
    };
    let (t, mut batch, input) = (x[0].clone(), x[1].clone(), x[2].clone());
    let mut cell = Dim::Unknown;
    for i in [2, 3] {
        let s = rank(i, 2)?;
        batch = merge(&batch, &s[0], format!("{}'s batch dim", INPUTS[i]))?;
        cell = merge(&cell, &s[1], format!("{}'s cell dim", INPUTS[i]))?;
    }
    for i in [5, 6, 7] {
        let s = rank(i, 1)?;
        cell = merge(&cell, &s[0], format!("{}'s size", INPUTS[i]))?;
    }
    let w = rank(4, 2)?;
    let b = rank(8, 1)?;
    let four_cell = cell.mul(&Dim::Known(4));
    merge(&w[1], &four_cell, "w's dim 1 must be 4 * cell".into())?;
    merge(&b[0], &four_cell, "b's size must be 4 * cell".into())?;
    if let (Some(wi), Some(ii), Some(c)) = (w[0].known(), input.known(), cell.known()) {
        if wi != ii + c {
            return Err(format!(
                "w's dim 0 must be input + cell = {ii} + {c}, got {wi}"
            ));
        }
    }
    if let (Some(w1), Dim::Unknown) = (w[1].known(), &cell) {
        if w1 % 4 != 0 {
            return Err(format!("w's dim 1 must be 4 * cell, got {w1}"));
        }
        cell = Dim::Known(w1 / 4);
    }
    Ok((dtype, [t, batch, input, cell]))
}

fn infer_block_lstm(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let (dtype, [t, batch, _, cell]) = lstm_dims(ctx)?;
    let out = TensorType {
        dtype,
        shape: Shape::new(vec![t, batch, cell]),
    };
    Ok(vec![out; ACTIVATIONS.len()])
}

fn infer_block_lstm_grad(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let (dtype, [t, batch, _, cell]) = lstm_dims(ctx)?;
    let seq = Shape::new(vec![t, batch.clone(), cell.clone()]);
    for k in 9..18 {
        ctx.same_dtype(&[1, k])?;
        let name =
            ACTIVATIONS
                .get(k - 9)
                .copied()
                .unwrap_or(if k == 16 { "cs_grad" } else { "h_grad" });
        seq.merge(&ctx.input(k).shape)
            .map_err(|e| format!("{name} must have the shape of BlockLSTM's outputs: {e}"))?;
    }
    let ty = |dims: Vec<Dim>| TensorType {
        dtype,
        shape: Shape::new(dims),
    };
    let x = ctx.input(1).shape.clone();
    let vec_of = |i: usize| ctx.input(i).shape.clone();
    Ok(vec![
        TensorType { dtype, shape: x },
        ty(vec![batch.clone(), cell.clone()]),
        ty(vec![batch, cell.clone()]),
        TensorType {
            dtype,
            shape: vec_of(4),
        },
        ty(vec![cell.clone()]),
        ty(vec![cell.clone()]),
        ty(vec![cell.clone()]),
        ty(vec![cell.mul(&Dim::Known(4))]),
    ])
}

/// BlockLSTM's gradient: one BlockLSTMGrad node from the gradients of `cs` and `h` (zeros for
/// a missing one). Gradients reaching the gate outputs are an error, as TensorFlow ignores
/// them silently.
fn block_lstm_grad(ctx: &mut GradCtx<'_>) -> Result<Vec<Option<Output>>> {
    for (k, name) in ACTIVATIONS.iter().enumerate() {
        if !matches!(*name, "cs" | "h") && ctx.grad(k).is_some() {
            return Err(ctx.error(format!(
                "a gradient reaches output `{name}`; BlockLSTM is differentiable only through \
                 `cs` and `h` (as in TensorFlow)"
            )));
        }
    }
    let inputs: Vec<Output> = (0..INPUTS.len())
        .map(|i| ctx.input(i))
        .collect::<Result<_>>()?;
    let outs: Vec<Output> = (0..ACTIVATIONS.len()).map(|k| ctx.output(k)).collect();
    let (dcs, dh) = (ctx.grad(1), ctx.grad(6));
    let peephole = ctx
        .attrs()
        .boolean("use_peephole")
        .copied()
        .unwrap_or(false);
    let g = &mut *ctx.graph;
    let dcs = match dcs {
        Some(d) => d,
        None => g.zeros_like(outs[1])?,
    };
    let dh = match dh {
        Some(d) => d,
        None => g.zeros_like(outs[6])?,
    };
    let id = g
        .build("BlockLSTMGrad")
        .inputs(inputs.iter().chain(&outs).copied().chain([dcs, dh]))
        .attr("use_peephole", peephole)
        .finish()?;
    let mut grads = vec![None];
    grads.extend((0..8).map(|k| Some(Output::new(id, k))));
    Ok(grads)
}

/// The outputs of [`Graph::block_lstm`], each `[time, batch, cell]`.
#[derive(Clone, Copy, Debug)]
pub struct BlockLstm {
    pub i: Output,
    pub cs: Output,
    pub f: Output,
    pub o: Output,
    pub ci: Output,
    pub co: Output,
    pub h: Output,
}

/// BlockLSTM's attributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockLstmAttrs {
    pub forget_bias: f32,
    /// No clipping when at most zero (TensorFlow's op default is 3.0; its Python layers pass
    /// -1, no clipping).
    pub cell_clip: f32,
    pub use_peephole: bool,
}

impl Default for BlockLstmAttrs {
    fn default() -> Self {
        BlockLstmAttrs {
            forget_bias: 1.0,
            cell_clip: -1.0,
            use_peephole: false,
        }
    }
}

impl Graph {
    /// `BlockLSTM`: inputs in TensorFlow's order (`seq_len_max` int64 scalar, `x`
    /// `[time, batch, input]`, `cs_prev`/`h_prev` `[batch, cell]`, `w`
    /// `[input + cell, 4 * cell]`, peephole weights `wci`/`wcf`/`wco` `[cell]`, `b`
    /// `[4 * cell]`).
    pub fn block_lstm(&mut self, inputs: [Output; 9], attrs: BlockLstmAttrs) -> Result<BlockLstm> {
        let id = self
            .build("BlockLSTM")
            .inputs(inputs)
            .attr("forget_bias", f64::from(attrs.forget_bias))
            .attr("cell_clip", f64::from(attrs.cell_clip))
            .attr("use_peephole", attrs.use_peephole)
            .finish()?;
        let o = |k| Output::new(id, k);
        Ok(BlockLstm {
            i: o(0),
            cs: o(1),
            f: o(2),
            o: o(3),
            ci: o(4),
            co: o(5),
            h: o(6),
        })
    }
}
