//! Layers as functions over the graph: each makes its variables and returns its output.

use crate::initializers;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, GraphError, Output, Result};

/// Activation applied after a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    pub fn apply(self, g: &mut Graph, x: Output) -> Result<Output> {
        match self {
            Activation::Linear => Ok(x),
            Activation::Relu => g.relu(x),
            Activation::Tanh => g.tanh(x),
            Activation::Sigmoid => g.sigmoid(x),
        }
    }
}

/// A dense layer's output and variables.
pub struct Dense {
    pub output: Output,
    pub kernel: Variable,
    pub bias: Variable,
}

/// `activation(x @ kernel + bias)` with a Glorot-uniform kernel and zero bias, under scope `name`.
pub fn dense(g: &mut Graph, name: &str, x: Output, units: usize, activation: Activation, seed: Option<u64>) -> Result<Dense> {
    let fan_in = g.shape(x).dims().and_then(|d| d.last()).and_then(|d| d.known()).ok_or_else(|| GraphError::InvalidNode {
        node: name.into(),
        op: "MatMul".into(),
        message: format!("dense needs a known last dim of its input, got {}", g.shape(x)),
    })?;
    g.with_scope(name, |g| {
        let k0 = initializers::glorot_uniform(g, &[fan_in, units], seed)?;
        let kernel = g.variable("kernel", k0)?;
        let b0 = initializers::constant(g, &[units], 0.0)?;
        let bias = g.variable("bias", b0)?;
        let z = g.matmul(x, kernel.value)?;
        let z = g.bias_add(z, bias.value)?;
        let output = activation.apply(g, z)?;
        Ok(Dense { output, kernel, bias })
    })
}
