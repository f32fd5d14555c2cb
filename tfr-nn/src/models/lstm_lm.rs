//! The TensorFlow paper's LSTM language model (§6.4; Zaremba et al.'s "small" PTB model): an
//! embedding, a stack of LSTM layers over `steps` time steps, and a softmax over the
//! vocabulary, full or sampled ([`crate::sampled_losses::sampled_softmax_loss`]), trained with
//! SGD. The embedding and, with sampled softmax, the output classes get sparse gradients, so a
//! sampled step costs about the same whatever the vocabulary's size.

use crate::initializers;
use crate::optimizers::{
    clip_gradient_values_by_global_norm, compute_gradient_values, Optimizer, Sgd,
};
use crate::rnn::{lstm, LstmImpl, LstmOptions};
use crate::sampled_losses::{sampled_softmax_loss, SampledLossOptions};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, GraphError, NodeId, Output, Result, Shape};

/// The output layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Softmax {
    /// Logits for every class (`[hidden, vocab]` weights).
    Full,
    /// Sampled softmax with this many log-uniform samples (`[vocab, hidden]` weights, TF's
    /// layout for `sampled_softmax_loss`).
    Sampled(usize),
}

/// Sizes and training settings. [`LstmLmConfig::paper`] is the peers' workload.
#[derive(Clone, Debug)]
pub struct LstmLmConfig {
    pub vocab: usize,
    pub embedding: usize,
    pub hidden: usize,
    pub layers: usize,
    pub steps: usize,
    pub batch: usize,
    pub softmax: Softmax,
    pub learning_rate: f32,
    pub implementation: LstmImpl,
    pub seed: Option<u64>,
    /// Each layer's initial `(c, h)` is fed ([`LstmLm::initial_state`]) instead of zeros, so a
    /// batch can start from the state the previous batch ended in (truncated backpropagation
    /// through time, as the paper's and Zaremba's models train).
    pub state_inputs: bool,
    /// Scale the gradients so that their global norm is at most this before the SGD step
    /// (Zaremba's small model: 5).
    pub clip_norm: Option<f32>,
}

impl LstmLmConfig {
    /// Embedding 200, 2 x 200 LSTM, 20 steps, batch 20 (`../shared/PEERS.md`).
    pub fn paper(vocab: usize, softmax: Softmax) -> LstmLmConfig {
        LstmLmConfig {
            vocab,
            embedding: 200,
            hidden: 200,
            layers: 2,
            steps: 20,
            batch: 20,
            softmax,
            learning_rate: 0.1,
            implementation: LstmImpl::Block,
            seed: Some(0),
            state_inputs: false,
            clip_norm: None,
        }
    }
}

/// The built model.
#[derive(Clone, Debug)]
pub struct LstmLm {
    /// int32 `[batch, steps]` input word ids.
    pub ids: Output,
    /// int32 `[batch, steps]` next-word ids.
    pub targets: Output,
    /// The training loss (mean over the batch and steps; sampled with sampled softmax).
    pub loss: Output,
    /// The full-softmax mean cross-entropy (the same as `loss` with a full softmax); its `exp`
    /// is the perplexity.
    pub eval_loss: Output,
    /// Logits of every word after the last step: `[batch, vocab]` (for generation).
    pub last_logits: Output,
    /// One SGD step.
    pub train: NodeId,
    /// With [`LstmLmConfig::state_inputs`], per layer, the float32 `[batch, hidden]`
    /// placeholders `(c, h)` of the initial state (every run must feed them; zeros start a
    /// sequence); empty otherwise.
    pub initial_state: Vec<(Output, Output)>,
    /// Per layer, the `(c, h)` after the last step: fed back as the next batch's
    /// `initial_state` to carry the state across batches.
    pub final_state: Vec<(Output, Output)>,
    pub variables: Vec<Variable>,
}

/// Builds the model under the `lstm_lm` scope.
pub fn lstm_lm(g: &mut Graph, c: &LstmLmConfig) -> Result<LstmLm> {
    if [c.vocab, c.embedding, c.hidden, c.layers, c.steps, c.batch].contains(&0) {
        return Err(GraphError::InvalidArgument {
            builder: "lstm_lm".into(),
            arg: "config".into(),
            message: format!("every size must be at least 1, got {c:?}"),
        });
    }
    g.with_scope("lstm_lm", |g| {
        let (b, t, h, v) = (c.batch, c.steps, c.hidden, c.vocab);
        let ids = g.placeholder("ids", DType::I32, Shape::known(&[b, t]))?;
        let targets = g.placeholder("targets", DType::I32, Shape::known(&[b, t]))?;
        let seed = |k: u64| c.seed.map(|s| s.wrapping_mul(31).wrapping_add(k));
        let e0 = initializers::uniform(g, &[v, c.embedding], 0.1, seed(1))?;
        let emb = g.variable("embedding", e0)?;
        let x = g.gather(emb.value, ids, 0)?;
        let mut initial_state = Vec::new();
        if c.state_inputs {
            for k in 0..c.layers {
                let shape = Shape::known(&[b, h]);
                let ic = g.placeholder(&format!("initial_c_{k}"), DType::F32, shape.clone())?;
                let ih = g.placeholder(&format!("initial_h_{k}"), DType::F32, shape)?;
                initial_state.push((ic, ih));
            }
        }
        let opts = LstmOptions {
            implementation: c.implementation,
            seed: seed(2),
            initial_state: c.state_inputs.then(|| initial_state.clone()),
            ..Default::default()
        };
        let rnn = lstm(g, "lstm", x, h, c.layers, &opts)?;
        let out = g.reshape(rnn.outputs, &[-1, h as i64])?;
        let flat_targets = g.reshape(targets, &[-1])?;
        let mut variables = vec![emb];
        variables.extend(rnn.variables());
        let last_h = rnn.final_state[c.layers - 1].1;
        let (loss, eval_loss, last_logits) = match c.softmax {
            Softmax::Full => {
                let w0 = initializers::glorot_uniform(g, &[h, v], seed(3))?;
                let w = g.variable("softmax_w", w0)?;
                let b0 = initializers::zeros(g, &[v])?;
                let bias = g.variable("softmax_b", b0)?;
                let logits = g.matmul(out, w.value)?;
                let logits = g.add(logits, bias.value)?;
                let per = g.sparse_softmax_cross_entropy_with_logits(logits, flat_targets)?;
                let loss = g.reduce_mean(per, None, false)?;
                let last = g.matmul(last_h, w.value)?;
                let last = g.add(last, bias.value)?;
                variables.extend([w, bias]);
                (loss, loss, last)
            }
            Softmax::Sampled(n) => {
                let w0 = initializers::glorot_uniform(g, &[v, h], seed(3))?;
                let w = g.variable("softmax_w", w0)?;
                let b0 = initializers::zeros(g, &[v])?;
                let bias = g.variable("softmax_b", b0)?;
                let labels = g.reshape(targets, &[-1, 1])?;
                let opts = SampledLossOptions {
                    seed: seed(4),
                    ..Default::default()
                };
                let per = sampled_softmax_loss(g, &w, &bias, labels, out, n, v, &opts)?;
                let loss = g.reduce_mean(per, None, false)?;
                let full = g.matmul_t(out, w.value, false, true)?;
                let full = g.add(full, bias.value)?;
                let per = g.sparse_softmax_cross_entropy_with_logits(full, flat_targets)?;
                let eval = g.reduce_mean(per, None, false)?;
                let last = g.matmul_t(last_h, w.value, false, true)?;
                let last = g.add(last, bias.value)?;
                variables.extend([w, bias]);
                (loss, eval, last)
            }
        };
        let train = match c.clip_norm {
            None => Sgd::new(c.learning_rate).minimize(g, loss, &variables, None)?,
            Some(norm) => {
                let pairs = compute_gradient_values(g, loss, &variables)?;
                let grads: Vec<_> = pairs.iter().map(|(gr, _)| *gr).collect();
                let (clipped, _) = clip_gradient_values_by_global_norm(g, &grads, norm)?;
                let pairs: Vec<_> = clipped.into_iter().zip(variables.iter().cloned()).collect();
                Sgd::new(c.learning_rate).apply_gradient_values(g, &pairs, None)?
            }
        };
        Ok(LstmLm {
            ids,
            targets,
            loss,
            eval_loss,
            last_logits,
            train,
            initial_state,
            final_state: rnn.final_state,
            variables,
        })
    })
}
