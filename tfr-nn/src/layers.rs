//! Layers as functions over the graph: each makes its variables (under a name scope) and
//! returns its output with them. Images are NHWC unless a layer's options say NCHW.
//!
//! Layers that act differently in training and inference (dropout, batch norm) take a
//! [`Training`]: fixed when the graph is built, or a bool scalar fed at each step (then both
//! behaviours are in the graph and a `Select` picks one, so one graph trains and evaluates).

use crate::initializers::{self, Initializer};
use tfr_graph::grad::shape_of;
use tfr_graph::ops::nn_ops::{DataFormat, Padding};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Dim, Graph, GraphError, NodeId, Output, Result, Shape};

/// Activation applied after a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Relu6,
    Elu,
    Tanh,
    Sigmoid,
}

impl Activation {
    pub fn apply(self, g: &mut Graph, x: Output) -> Result<Output> {
        match self {
            Activation::Linear => Ok(x),
            Activation::Relu => g.relu(x),
            Activation::Relu6 => g.relu6(x),
            Activation::Elu => g.elu(x),
            Activation::Tanh => g.tanh(x),
            Activation::Sigmoid => g.sigmoid(x),
        }
    }
}

/// Whether a layer runs in training mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Training {
    /// Training behaviour, fixed in the graph.
    Yes,
    /// Inference behaviour, fixed in the graph.
    No,
    /// A bool scalar (usually a placeholder) chooses at each step.
    Fed(Output),
}

impl From<bool> for Training {
    fn from(b: bool) -> Training {
        if b {
            Training::Yes
        } else {
            Training::No
        }
    }
}

impl From<Output> for Training {
    fn from(o: Output) -> Training {
        Training::Fed(o)
    }
}

/// An error about a layer's input or options, naming the layer.
fn layer_error(name: &str, op: &str, message: impl Into<String>) -> GraphError {
    GraphError::InvalidNode {
        node: name.into(),
        op: op.into(),
        message: message.into(),
    }
}

/// The known size of dim `axis` (negative counts from the end) of `x`'s static shape.
fn known_dim(g: &Graph, x: Output, axis: isize, name: &str, op: &str) -> Result<usize> {
    let s = g.shape(x);
    let d = s.dims().and_then(|d| {
        let i = if axis < 0 {
            d.len().checked_sub(axis.unsigned_abs())?
        } else {
            axis as usize
        };
        d.get(i)?.known()
    });
    d.ok_or_else(|| {
        layer_error(
            name,
            op,
            format!("needs a known size in dim {axis} of its input, got shape {s}"),
        )
    })
}

// ---- dense ------------------------------------------------------------------------------------

/// A dense layer's output and variables.
pub struct Dense {
    pub output: Output,
    pub kernel: Variable,
    pub bias: Variable,
}

/// `activation(x @ kernel + bias)` with a Glorot-uniform kernel and zero bias, under scope `name`.
pub fn dense(
    g: &mut Graph,
    name: &str,
    x: Output,
    units: usize,
    activation: Activation,
    seed: Option<u64>,
) -> Result<Dense> {
    dense_with(
        g,
        name,
        x,
        units,
        activation,
        Initializer::GlorotUniform,
        seed,
    )
}

/// [`dense`] with a chosen kernel initializer.
pub fn dense_with(
    g: &mut Graph,
    name: &str,
    x: Output,
    units: usize,
    activation: Activation,
    init: Initializer,
    seed: Option<u64>,
) -> Result<Dense> {
    let fan_in = known_dim(g, x, -1, name, "MatMul")?;
    g.with_scope(name, |g| {
        let k0 = init.build(g, &[fan_in, units], seed)?;
        let kernel = g.variable("kernel", k0)?;
        let b0 = initializers::zeros(g, &[units])?;
        let bias = g.variable("bias", b0)?;
        let z = g.matmul(x, kernel.value)?;
        let z = g.bias_add(z, bias.value)?;
        let output = activation.apply(g, z)?;
        Ok(Dense {
            output,
            kernel,
            bias,
        })
    })
}

// ---- convolution and pooling ------------------------------------------------------------------

/// Options of [`conv2d`]; `Conv2DOptions::default()` is stride 1, SAME, NHWC, ReLU, a bias,
/// He-normal kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2DOptions {
    pub strides: [usize; 2],
    pub padding: Padding,
    pub dilations: [usize; 2],
    pub data_format: DataFormat,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_init: Initializer,
    pub bias_init: f32,
    pub seed: Option<u64>,
}

impl Default for Conv2DOptions {
    fn default() -> Self {
        Conv2DOptions {
            strides: [1, 1],
            padding: Padding::Same,
            dilations: [1, 1],
            data_format: DataFormat::Nhwc,
            activation: Activation::Relu,
            use_bias: true,
            kernel_init: Initializer::HeNormal,
            bias_init: 0.0,
            seed: None,
        }
    }
}

impl Conv2DOptions {
    pub fn strides(mut self, s: usize) -> Self {
        self.strides = [s, s];
        self
    }
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    pub fn valid(self) -> Self {
        self.padding(Padding::Valid)
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilations = [d, d];
        self
    }
    pub fn format(mut self, f: DataFormat) -> Self {
        self.data_format = f;
        self
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    pub fn linear(self) -> Self {
        self.activation(Activation::Linear)
    }
    pub fn no_bias(mut self) -> Self {
        self.use_bias = false;
        self
    }
    pub fn kernel_init(mut self, i: Initializer) -> Self {
        self.kernel_init = i;
        self
    }
    pub fn bias_init(mut self, v: f32) -> Self {
        self.bias_init = v;
        self
    }
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = Some(s);
        self
    }
}

/// A 4-entry attribute (`strides`, `ksize`, `dilations`) in `format` order from (h, w).
fn spatial4(v: [usize; 2], format: DataFormat) -> Vec<i64> {
    format.from_nhwc([1, v[0] as i64, v[1] as i64, 1]).to_vec()
}

fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Same => "SAME",
        Padding::Valid => "VALID",
    }
}

/// A convolution layer's output and variables.
pub struct Conv2D {
    pub output: Output,
    pub kernel: Variable,
    pub bias: Option<Variable>,
}

/// `activation(conv2d(x, kernel) + bias)` with `filters` output channels and a
/// `kernel_size` window, under scope `name`. With a bias and a linear, ReLU or ReLU6
/// activation this is one `FusedConv2D` node.
pub fn conv2d(
    g: &mut Graph,
    name: &str,
    x: Output,
    filters: usize,
    kernel_size: [usize; 2],
    opts: Conv2DOptions,
) -> Result<Conv2D> {
    let c_axis = match opts.data_format {
        DataFormat::Nhwc => 3,
        DataFormat::Nchw => 1,
    };
    if g.shape(x).rank().is_some_and(|r| r != 4) {
        return Err(layer_error(
            name,
            "Conv2D",
            format!("needs a 4-D input, got shape {}", g.shape(x)),
        ));
    }
    let c_in = known_dim(g, x, c_axis, name, "Conv2D")?;
    g.with_scope(name, |g| {
        let shape = [kernel_size[0], kernel_size[1], c_in, filters];
        let k0 = opts.kernel_init.build(g, &shape, opts.seed)?;
        let kernel = g.variable("kernel", k0)?;
        let format = opts.data_format.name();
        let strides = spatial4(opts.strides, opts.data_format);
        let dilations = spatial4(opts.dilations, opts.data_format);
        let padding = padding_name(opts.padding);
        let fused = match opts.activation {
            Activation::Linear => Some("Linear"),
            Activation::Relu => Some("Relu"),
            Activation::Relu6 => Some("Relu6"),
            _ => None,
        };
        let (output, bias) = match (opts.use_bias, fused) {
            // Convolution, bias and activation in one pass (TensorFlow's _FusedConv2D).
            (true, Some(act)) => {
                let b0 = initializers::constant(g, &[filters], opts.bias_init)?;
                let b = g.variable("bias", b0)?;
                let y = g.fused_conv2d(
                    x,
                    kernel.value,
                    b.value,
                    &strides,
                    padding,
                    format,
                    &dilations,
                    act,
                )?;
                (y, Some(b))
            }
            _ => {
                let mut y =
                    g.conv2d_full(x, kernel.value, &strides, padding, format, &dilations)?;
                let bias = if opts.use_bias {
                    let b0 = initializers::constant(g, &[filters], opts.bias_init)?;
                    let b = g.variable("bias", b0)?;
                    y = g
                        .build("BiasAdd")
                        .input(y)
                        .input(b.value)
                        .attr("data_format", format)
                        .finish1()?;
                    Some(b)
                } else {
                    None
                };
                (opts.activation.apply(g, y)?, bias)
            }
        };
        Ok(Conv2D {
            output,
            kernel,
            bias,
        })
    })
}

/// Max pooling with a `window` and `strides` (height, width).
pub fn max_pool(
    g: &mut Graph,
    x: Output,
    window: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
    format: DataFormat,
) -> Result<Output> {
    g.max_pool(
        x,
        &spatial4(window, format),
        &spatial4(strides, format),
        padding_name(padding),
        format.name(),
    )
}

/// Average pooling with a `window` and `strides` (height, width); with SAME padding each
/// window averages only the elements inside the input, as in TensorFlow.
pub fn avg_pool(
    g: &mut Graph,
    x: Output,
    window: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
    format: DataFormat,
) -> Result<Output> {
    g.avg_pool(
        x,
        &spatial4(window, format),
        &spatial4(strides, format),
        padding_name(padding),
        format.name(),
    )
}

/// The mean over all spatial positions: `[n, c]` from an image batch.
pub fn global_avg_pool(g: &mut Graph, x: Output, format: DataFormat) -> Result<Output> {
    let axes: [i64; 2] = match format {
        DataFormat::Nhwc => [1, 2],
        DataFormat::Nchw => [2, 3],
    };
    g.reduce_mean(x, Some(&axes), false)
}

/// Local response normalization across channels (NHWC), TensorFlow's parameters.
pub fn lrn(
    g: &mut Graph,
    x: Output,
    depth_radius: usize,
    bias: f64,
    alpha: f64,
    beta: f64,
) -> Result<Output> {
    g.lrn(x, depth_radius as i64, bias, alpha, beta)
}

/// `[batch, rest]`: every dim after the first merged into one.
pub fn flatten(g: &mut Graph, x: Output) -> Result<Output> {
    let s = g.shape(x).clone();
    let Some(dims) = s.dims() else {
        return Err(layer_error(
            "flatten",
            "Reshape",
            "needs an input of known rank",
        ));
    };
    let batch = dims.first().cloned().unwrap_or(Dim::Known(1));
    let rest: Option<usize> = dims.iter().skip(1).map(Dim::known).product();
    let out = match (rest, batch.known()) {
        (Some(r), Some(b)) => g.reshape(x, &[b as i64, r as i64])?,
        (Some(r), None) => g.reshape(x, &[-1, r as i64])?,
        (None, _) => {
            // Runtime sizes: [shape[0], -1].
            let sh = g.shape_of(x)?;
            let b = g.slice(sh, &[0], &[1])?;
            let m1 = g.constant_from(&[1], vec![-1i32])?;
            let target = g.concat(&[b, m1], 0)?;
            g.reshape_to(x, target)?
        }
    };
    g.refine_output_shape(
        out,
        Shape::new(vec![batch, rest.map_or(Dim::Unknown, Dim::Known)]),
    );
    Ok(out)
}

// ---- normalization and regularization ----------------------------------------------------------

/// Options of [`batch_norm`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Moving averages: `moving = moving * momentum + batch * (1 - momentum)`.
    pub momentum: f32,
    pub epsilon: f32,
    pub data_format: DataFormat,
    /// Learn a scale (gamma) and an offset (beta); without, they are constants 1 and 0.
    pub scale: bool,
    pub center: bool,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            momentum: 0.99,
            epsilon: 1e-3,
            data_format: DataFormat::Nhwc,
            scale: true,
            center: true,
        }
    }
}

/// A batch normalization layer's output, variables and moving-average updates.
pub struct BatchNorm {
    pub output: Output,
    pub gamma: Option<Variable>,
    pub beta: Option<Variable>,
    pub moving_mean: Variable,
    pub moving_variance: Variable,
    /// Assigns the moving averages (in training mode; with a fed mode they keep their values
    /// when the mode is false); run it with the training step. `None` in inference mode.
    pub update: Option<NodeId>,
}

/// Batch normalization over every dim but the channels (a 4-D image batch, or `[batch, c]`).
/// Training mode normalizes with the batch's statistics and updates the moving averages (by
/// `update`, which the training step must run); inference mode uses the moving averages.
pub fn batch_norm(
    g: &mut Graph,
    name: &str,
    x: Output,
    training: impl Into<Training>,
    opts: BatchNormOptions,
) -> Result<BatchNorm> {
    let training = training.into();
    let rank = g.shape(x).rank();
    let (x4, format) = match rank {
        Some(4) => (x, opts.data_format),
        // [batch, c] as [batch, 1, 1, c].
        Some(2) => {
            let e = g.expand_dims(x, 1)?;
            (g.expand_dims(e, 1)?, DataFormat::Nhwc)
        }
        _ => {
            return Err(layer_error(
                name,
                "FusedBatchNorm",
                format!("needs a 4-D or 2-D input, got shape {}", g.shape(x)),
            ))
        }
    };
    let c_axis = match format {
        DataFormat::Nhwc => 3,
        DataFormat::Nchw => 1,
    };
    let c = known_dim(g, x4, c_axis, name, "FusedBatchNorm")?;
    g.with_scope(name, |g| {
        let param =
            |g: &mut Graph, n: &str, v: f32, learn: bool| -> Result<(Output, Option<Variable>)> {
                let init = initializers::constant(g, &[c], v)?;
                if learn {
                    let var = g.variable(n, init)?;
                    Ok((var.value, Some(var)))
                } else {
                    Ok((init, None))
                }
            };
        let (gamma_v, gamma) = param(g, "gamma", 1.0, opts.scale)?;
        let (beta_v, beta) = param(g, "beta", 0.0, opts.center)?;
        let mm0 = initializers::zeros(g, &[c])?;
        let moving_mean = g.variable("moving_mean", mm0)?;
        let mv0 = initializers::ones(g, &[c])?;
        let moving_variance = g.variable("moving_variance", mv0)?;
        let eps = opts.epsilon as f64;
        let fmt = format.name();
        let infer = |g: &mut Graph| {
            g.fused_batch_norm(
                x4,
                gamma_v,
                beta_v,
                moving_mean.value,
                moving_variance.value,
                eps,
                fmt,
                false,
            )
        };
        let (y, update) = match training {
            Training::No => (infer(g)?.y, None),
            Training::Yes | Training::Fed(_) => {
                let empty = g.constant_from(&[0], Vec::<f32>::new())?;
                let bn = g.fused_batch_norm(x4, gamma_v, beta_v, empty, empty, eps, fmt, true)?;
                let mut new_mean =
                    moving_average(g, moving_mean.value, bn.batch_mean, opts.momentum)?;
                let mut new_var =
                    moving_average(g, moving_variance.value, bn.batch_variance, opts.momentum)?;
                let mut y = bn.y;
                if let Training::Fed(flag) = training {
                    let inf = infer(g)?.y;
                    y = g.select(flag, bn.y, inf)?;
                    new_mean = g.select(flag, new_mean, moving_mean.value)?;
                    new_var = g.select(flag, new_var, moving_variance.value)?;
                }
                let a = g.assign(&moving_mean, new_mean)?;
                let b = g.assign(&moving_variance, new_var)?;
                let update = g.group(&[a.node, b.node])?;
                (y, Some(update))
            }
        };
        let output = if rank == Some(2) {
            g.squeeze(y, &[1, 2])?
        } else {
            y
        };
        Ok(BatchNorm {
            output,
            gamma,
            beta,
            moving_mean,
            moving_variance,
            update,
        })
    })
}

/// `moving * momentum + value * (1 - momentum)`.
fn moving_average(g: &mut Graph, moving: Output, value: Output, momentum: f32) -> Result<Output> {
    let m = g.scalar(momentum)?;
    let one_minus = g.scalar(1.0 - momentum)?;
    let a = g.mul(moving, m)?;
    let b = g.mul(value, one_minus)?;
    g.add(a, b)
}

/// Inverted dropout: in training, each element is kept with probability `1 - rate` and scaled
/// by `1 / (1 - rate)`, else zeroed; in inference the input passes unchanged.
pub fn dropout(
    g: &mut Graph,
    x: Output,
    rate: f32,
    training: impl Into<Training>,
    seed: Option<u64>,
) -> Result<Output> {
    if !(0.0..1.0).contains(&rate) {
        return Err(layer_error(
            "dropout",
            "RandomUniform",
            format!("rate must be in [0, 1), got {rate}"),
        ));
    }
    let training = training.into();
    if training == Training::No || rate == 0.0 {
        return Ok(x);
    }
    let shape = shape_of(g, x, DType::I32)?;
    let (s1, s2) = g.random_seeds(seed);
    let dtype = g.dtype(x);
    let u = g
        .build("RandomUniform")
        .input(shape)
        .attr("dtype", dtype)
        .attr("seed", s1)
        .attr("seed2", s2)
        .finish1()?;
    let xs = g.shape(x).clone();
    g.refine_output_shape(u, xs);
    let r = g.scalar_like(x, rate as f64)?;
    let keep = g.greater_equal(u, r)?;
    let scale = g.scalar_like(x, 1.0 / (1.0 - rate as f64))?;
    let scaled = g.mul(x, scale)?;
    let zeros = g.zeros_like(x)?;
    let dropped = g.select(keep, scaled, zeros)?;
    match training {
        Training::Fed(flag) => g.select(flag, dropped, x),
        _ => Ok(dropped),
    }
}

// ---- embeddings -------------------------------------------------------------------------------

/// An embedding table and the looked-up vectors.
pub struct Embedding {
    pub output: Output,
    pub table: Variable,
}

/// Looks up integer `ids` (any shape) in a `[vocab, dim]` table: the output has `ids`' shape
/// plus `dim`. The table starts uniform in [-0.05, 0.05) (Keras' default).
pub fn embedding(
    g: &mut Graph,
    name: &str,
    ids: Output,
    vocab: usize,
    dim: usize,
    seed: Option<u64>,
) -> Result<Embedding> {
    if !g.dtype(ids).is_integer() {
        return Err(layer_error(
            name,
            "Gather",
            format!("ids must be integers, got {}", g.dtype(ids)),
        ));
    }
    g.with_scope(name, |g| {
        let t0 = initializers::uniform(g, &[vocab, dim], 0.05, seed)?;
        let table = g.variable("embeddings", t0)?;
        let output = g.gather(table.value, ids, 0)?;
        Ok(Embedding { output, table })
    })
}
