//! The runtime's GPU kernels of neural-network ops: bias add and its gradient, softmax
//! cross-entropy, the optimizers' resource updates, convolution and pooling (NHWC, SAME or
//! VALID, no dilation). Attributes are checked when the kernel is built, so an unsupported
//! layout is an error naming the node before any step runs.

use crate::gpu_kernels::{gpu_kernel, one, sizes, GpuOp, F32, INDEX, RESOURCE};
use crate::nn_ops::{self, AdamHyper, Window};
use crate::runtime::{kernel_error, GpuDevice};
use crate::select_ops::{self, PhiloxStart};
use crate::{ops, CudaTensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLockWriteGuard};
use tfr_core::kernel::KernelFactory;
use tfr_core::resource::Var;
use tfr_core::{KernelContext, KernelError, KernelInit, OpKernel, Tensor};
use tfr_graph::ops::nn_ops::{spatial_attr, DataFormat, Padding};
use tfr_graph::DType;

/// The neural-network rows of [`crate::gpu_kernels::gpu_ops`].
pub(crate) fn nn_ops_table() -> Vec<GpuOp> {
    let k = |op, dtypes, factory: KernelFactory| GpuOp {
        op,
        dtypes,
        factory,
    };
    vec![
        k("BiasAdd", F32, bias_add_kernel),
        k("BiasAddGrad", F32, bias_add_grad_kernel),
        k("SparseSoftmaxCrossEntropyWithLogits", F32, xent_kernel),
        k("SoftmaxCrossEntropyWithLogits", F32, xent_kernel),
        k("ResourceApplyGradientDescent", RESOURCE, apply_gd_kernel),
        k(
            "ResourceApplyGradientDescentMatMul",
            RESOURCE,
            apply_gd_matmul_kernel,
        ),
        k("ResourceApplyMomentum", RESOURCE, apply_momentum_kernel),
        k("ResourceApplyAdam", RESOURCE, apply_adam_kernel),
        k("Conv2D", F32, conv_kernel),
        k("Conv2DBackpropInput", INDEX, conv_kernel),
        k("Conv2DBackpropFilter", F32, conv_kernel),
        k("MaxPool", F32, pool_kernel),
        k("MaxPoolGrad", F32, pool_kernel),
        k("AvgPool", F32, pool_kernel),
        k("AvgPoolGrad", INDEX, pool_kernel),
        k("MatMulBiasAdd", F32, matmul_bias_add_kernel),
        k("FusedConv2D", F32, conv_kernel),
        k("Conv2DBackpropFilterBias", F32, conv_kernel),
        k("SelectV2", &[DType::Bool], select_kernel),
        k("RandomUniform", INDEX, random_uniform_kernel),
        k("AssignAddVariableOp", RESOURCE, assign_update_kernel),
        k("AssignSubVariableOp", RESOURCE, assign_update_kernel),
    ]
}

fn is_nchw(init: &KernelInit<'_>) -> Result<bool, String> {
    let f = init
        .attrs
        .string_opt("data_format")
        .map_or("NHWC", |s| s.as_str());
    Ok(DataFormat::parse(f)? == DataFormat::Nchw)
}

fn bias_add_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let nchw = is_nchw(init)?;
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            one(
                d,
                nn_ops::bias_add(d.cuda(), &d.input(ctx, 0)?, &d.input(ctx, 1)?, nchw),
            )
        }),
    )
}

fn bias_add_grad_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let nchw = is_nchw(init)?;
    gpu_kernel(
        init,
        Box::new(move |d, ctx| one(d, nn_ops::bias_add_grad(d.cuda(), &d.input(ctx, 0)?, nchw))),
    )
}

fn xent_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let sparse = init.op == "SparseSoftmaxCrossEntropyWithLogits";
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let (x, labels) = (d.input(ctx, 0)?, d.input(ctx, 1)?);
            let (loss, back) = if sparse {
                nn_ops::sparse_softmax_cross_entropy(d.cuda(), &x, &labels)
            } else {
                nn_ops::softmax_cross_entropy(d.cuda(), &x, &labels)
            }
            .map_err(kernel_error)?;
            Ok(vec![d.wrap(loss)?, d.wrap(back)?])
        }),
    )
}

/// The variable named by resource input `i`.
fn var_at(ctx: &KernelContext<'_>, i: usize) -> Result<Arc<Var>, KernelError> {
    let name = ctx
        .input(i)
        .as_slice::<String>()?
        .first()
        .cloned()
        .ok_or_else(|| KernelError::invalid(format!("input {i}: empty resource handle")))?;
    ctx.resources.lookup(&name)
}

fn lock(var: &Var) -> Result<RwLockWriteGuard<'_, Option<Tensor>>, KernelError> {
    var.value
        .write()
        .map_err(|_| KernelError::internal("variable lock poisoned"))
}

/// The f32 value a variable holds, on the GPU (a value assigned on the host is copied in).
fn value_of(d: &GpuDevice, var: &Var, slot: &Option<Tensor>) -> Result<CudaTensor, KernelError> {
    let t = slot.as_ref().ok_or_else(|| {
        KernelError::precondition(format!(
            "variable `{}` is not initialized; run its initializer first",
            var.name
        ))
    })?;
    if t.dtype() != DType::F32 {
        return Err(KernelError::invalid(format!(
            "variable `{}` holds {}; the GPU updates f32 variables",
            var.name,
            t.dtype()
        )));
    }
    if t.is_host() {
        return CudaTensor::from_host(d.cuda(), t).map_err(kernel_error);
    }
    d.unwrap(0, t)
}

/// Stores `new` as the variable's value and returns it (the op's output).
fn store(d: &GpuDevice, slot: &mut Option<Tensor>, new: CudaTensor) -> Result<Tensor, KernelError> {
    let t = d.wrap(new)?;
    *slot = Some(t.clone());
    Ok(t)
}

fn apply_gd_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let var = var_at(ctx, 0)?;
            let (lr, g) = (d.input(ctx, 1)?, d.input(ctx, 2)?);
            let mut slot = lock(&var)?;
            let w = value_of(d, &var, &slot)?;
            let new =
                nn_ops::apply_gradient_descent(d.cuda(), &w, &lr, &g).map_err(kernel_error)?;
            Ok(vec![store(d, &mut slot, new)?])
        }),
    )
}

/// `var -= alpha * op(a) @ op(b)` (the fused form the optimizer pass makes): the product, then
/// the update.
fn apply_gd_matmul_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ta = *init.attrs.boolean("transpose_a")?;
    let tb = *init.attrs.boolean("transpose_b")?;
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let var = var_at(ctx, 0)?;
            let lr = d.input(ctx, 1)?;
            let g = ops::matmul(d.cuda(), &d.input(ctx, 2)?, &d.input(ctx, 3)?, ta, tb)
                .map_err(kernel_error)?;
            let mut slot = lock(&var)?;
            let w = value_of(d, &var, &slot)?;
            let new =
                nn_ops::apply_gradient_descent(d.cuda(), &w, &lr, &g).map_err(kernel_error)?;
            Ok(vec![store(d, &mut slot, new)?])
        }),
    )
}

fn apply_momentum_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let nesterov = init
        .attrs
        .bool_opt("use_nesterov")
        .copied()
        .unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let (var, accum) = (var_at(ctx, 0)?, var_at(ctx, 1)?);
            let (lr, g, mu) = (d.input(ctx, 2)?, d.input(ctx, 3)?, d.input(ctx, 4)?);
            // Locks in input order, as the CPU kernel takes them.
            let mut vs = lock(&var)?;
            let mut acs = lock(&accum)?;
            let (w, a) = (value_of(d, &var, &vs)?, value_of(d, &accum, &acs)?);
            let (w, a) = nn_ops::apply_momentum(d.cuda(), &w, &a, &lr, &g, &mu, nesterov)
                .map_err(kernel_error)?;
            store(d, &mut acs, a)?;
            Ok(vec![store(d, &mut vs, w)?])
        }),
    )
}

fn apply_adam_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let (var, m, v) = (var_at(ctx, 0)?, var_at(ctx, 1)?, var_at(ctx, 2)?);
            let h = (3..8)
                .map(|i| d.input(ctx, i))
                .collect::<Result<Vec<_>, _>>()?;
            let g = d.input(ctx, 8)?;
            let hyper = AdamHyper {
                lr_t: &h[0],
                beta1: &h[1],
                beta2: &h[2],
                epsilon: &h[3],
                lr_wd: &h[4],
            };
            let mut vs = lock(&var)?;
            let mut ms = lock(&m)?;
            let mut vvs = lock(&v)?;
            let (wt, mt, vt) = (
                value_of(d, &var, &vs)?,
                value_of(d, &m, &ms)?,
                value_of(d, &v, &vvs)?,
            );
            let (w2, m2, v2) =
                nn_ops::apply_adam(d.cuda(), &wt, &mt, &vt, &hyper, &g).map_err(kernel_error)?;
            store(d, &mut ms, m2)?;
            store(d, &mut vvs, v2)?;
            Ok(vec![store(d, &mut vs, w2)?])
        }),
    )
}

/// The window of a convolution (`filter` gives its size at run time) or pooling (`ksize`):
/// NHWC only, dilations 1, SAME or VALID.
fn window_attrs(init: &KernelInit<'_>, ksize: bool) -> Result<Window, String> {
    let at = |e: String| format!("`{}` ({}): {e}", init.node, init.op);
    if is_nchw(init).map_err(at)? {
        return Err(at("NCHW has no GPU kernel yet; use NHWC".into()));
    }
    if let Some(d) = init.attrs.ints_opt("dilations") {
        if d.iter().any(|&v| v != 1) {
            return Err(at(format!("dilations {d:?} have no GPU kernel yet")));
        }
    }
    let padding = Padding::parse(init.attrs.string("padding").map_err(at)?).map_err(at)?;
    let strides = spatial_attr(init.attrs, "strides", DataFormat::Nhwc).map_err(at)?;
    let size = if ksize {
        spatial_attr(init.attrs, "ksize", DataFormat::Nhwc).map_err(at)?
    } else {
        [0, 0]
    };
    Ok(Window {
        size,
        strides,
        padding,
    })
}

/// FusedConv2D's activation after the bias: Relu, Relu6 or none (the CPU kernel's set).
fn fused_activation(init: &KernelInit<'_>) -> Result<Option<&'static str>, String> {
    match init.attrs.string_opt("activation").map(String::as_str) {
        None | Some("Linear") => Ok(None),
        Some("Relu") => Ok(Some("Relu")),
        Some("Relu6") => Ok(Some("Relu6")),
        Some(other) => Err(format!(
            "`{}` (FusedConv2D): activation {other:?} has no GPU kernel",
            init.node
        )),
    }
}

fn conv_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let w = window_attrs(init, false)?;
    let activation = fused_activation(init)?;
    let (s, p) = (w.strides, w.padding);
    let f: crate::gpu_kernels::GpuFn = match init.op {
        "Conv2D" => Box::new(move |d, ctx| {
            one(
                d,
                nn_ops::conv2d(d.cuda(), &d.input(ctx, 0)?, &d.input(ctx, 1)?, s, p),
            )
        }),
        "FusedConv2D" => Box::new(move |d, ctx| {
            let (x, f, bias) = (d.input(ctx, 0)?, d.input(ctx, 1)?, d.input(ctx, 2)?);
            let y = nn_ops::conv2d(d.cuda(), &x, &f, s, p)
                .and_then(|y| nn_ops::bias_add(d.cuda(), &y, &bias, false));
            match (activation, y) {
                (Some(a), Ok(y)) => one(d, ops::unary(d.cuda(), a, &y)),
                (_, y) => one(d, y),
            }
        }),
        "Conv2DBackpropInput" => Box::new(move |d, ctx| {
            let shape = sizes("Conv2DBackpropInput", "input_sizes", &d.host_ints(ctx, 0)?)?;
            let (f, dy) = (d.input(ctx, 1)?, d.input(ctx, 2)?);
            one(
                d,
                nn_ops::conv2d_backprop_input(d.cuda(), &shape, &f, &dy, s, p),
            )
        }),
        "Conv2DBackpropFilter" => Box::new(move |d, ctx| {
            let shape = sizes(
                "Conv2DBackpropFilter",
                "filter_sizes",
                &d.host_ints(ctx, 1)?,
            )?;
            let (x, dy) = (d.input(ctx, 0)?, d.input(ctx, 2)?);
            one(
                d,
                nn_ops::conv2d_backprop_filter(d.cuda(), &x, &shape, &dy, s, p),
            )
        }),
        "Conv2DBackpropFilterBias" => Box::new(move |d, ctx| {
            let op = "Conv2DBackpropFilterBias";
            let shape = sizes(op, "filter_sizes", &d.host_ints(ctx, 1)?)?;
            let (x, dy) = (d.input(ctx, 0)?, d.input(ctx, 2)?);
            let dw = nn_ops::conv2d_backprop_filter(d.cuda(), &x, &shape, &dy, s, p);
            let db = nn_ops::bias_add_grad(d.cuda(), &dy, false);
            Ok(vec![
                d.wrap(dw.map_err(kernel_error)?)?,
                d.wrap(db.map_err(kernel_error)?)?,
            ])
        }),
        other => return Err(format!("`{}`: {other} is not a convolution", init.node)),
    };
    gpu_kernel(init, f)
}

fn pool_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let w = window_attrs(init, true)?;
    let op = init.op.to_string();
    if !["MaxPool", "MaxPoolGrad", "AvgPool", "AvgPoolGrad"].contains(&init.op) {
        return Err(format!("`{}`: {op} is not a pooling op", init.node));
    }
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let r = match op.as_str() {
                "MaxPool" => nn_ops::max_pool(d.cuda(), &d.input(ctx, 0)?, &w).map(|(y, _)| y),
                // MaxPoolGrad(orig_input, orig_output, grad): the argmax is recomputed from
                // the input, so orig_output is not read.
                "MaxPoolGrad" => {
                    nn_ops::max_pool_grad(d.cuda(), &d.input(ctx, 0)?, &d.input(ctx, 2)?, &w)
                }
                "AvgPool" => nn_ops::avg_pool(d.cuda(), &d.input(ctx, 0)?, &w),
                // AvgPoolGrad (checked when built).
                _ => {
                    let shape = sizes(&op, "orig_input_shape", &d.host_ints(ctx, 0)?)?;
                    nn_ops::avg_pool_grad(d.cuda(), &shape, &d.input(ctx, 1)?, &w)
                }
            };
            one(d, r)
        }),
    )
}

fn matmul_bias_add_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ta = init.attrs.bool_opt("transpose_a").copied().unwrap_or(false);
    let tb = init.attrs.bool_opt("transpose_b").copied().unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let (a, b, bias) = (d.input(ctx, 0)?, d.input(ctx, 1)?, d.input(ctx, 2)?);
            let y = ops::matmul(d.cuda(), &a, &b, ta, tb).map_err(kernel_error)?;
            one(d, nn_ops::bias_add(d.cuda(), &y, &bias, false))
        }),
    )
}

/// Comparisons of f32 operands (registered from [`select_ops::compare_ops`]).
pub(crate) fn compare_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            one(
                d,
                select_ops::compare(d.cuda(), &op, &d.input(ctx, 0)?, &d.input(ctx, 1)?),
            )
        }),
    )
}

fn select_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let (c, t, e) = (d.input(ctx, 0)?, d.input(ctx, 1)?, d.input(ctx, 2)?);
            one(d, select_ops::select(d.cuda(), &c, &t, &e))
        }),
    )
}

/// A node's position in its Philox stream (kept in the session's state, as the CPU kernel
/// keeps its own: a node draws new numbers on every run).
struct GpuPhilox {
    key: [u32; 2],
    high: [u32; 2],
    next: AtomicU64,
}

impl GpuPhilox {
    /// TensorFlow's seeding: the key is `seed`, the counter's high word `seed2`; both 0 seeds
    /// from the clock and the process's random hash keys.
    fn new(seed: i64, seed2: i64) -> GpuPhilox {
        let (s, s2) = if seed == 0 && seed2 == 0 {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |t| t.as_nanos()),
            );
            let a = h.finish();
            h.write_u64(a);
            (a, h.finish())
        } else {
            (seed as u64, seed2 as u64)
        };
        GpuPhilox {
            key: [s as u32, (s >> 32) as u32],
            high: [s2 as u32, (s2 >> 32) as u32],
            next: AtomicU64::new(0),
        }
    }
}

/// `RandomUniform` in f32: the same numbers as the CPU kernel for the same seeds and run.
fn random_uniform_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = *init.attrs.dtype("dtype")?;
    if dtype != DType::F32 {
        return Err(format!(
            "`{}` (RandomUniform): {dtype} has no GPU kernel; float32 has",
            init.node
        ));
    }
    let (seed, seed2) = (*init.attrs.int("seed")?, *init.attrs.int("seed2")?);
    let key = format!("gpu_random_stream:{}", init.node);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let shape = sizes("RandomUniform", "shape", &d.host_ints(ctx, 0)?)?;
            let stream = ctx.resources.state(&key, || GpuPhilox::new(seed, seed2))?;
            let n = shape.iter().product::<usize>() as u64;
            let block = stream.next.fetch_add(n.div_ceil(4), Ordering::Relaxed);
            let at = PhiloxStart {
                key: stream.key,
                high: stream.high,
                block,
            };
            one(d, select_ops::random_uniform(d.cuda(), &shape, at))
        }),
    )
}

/// `AssignAddVariableOp` / `AssignSubVariableOp` on an f32 variable: the new value (a new
/// buffer, as the optimizer updates make) becomes the variable's.
fn assign_update_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = if init.op == "AssignAddVariableOp" {
        "Add"
    } else {
        "Sub"
    };
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let var = var_at(ctx, 0)?;
            let delta = d.input(ctx, 1)?;
            let mut slot = lock(&var)?;
            let old = value_of(d, &var, &slot)?;
            if old.shape() != delta.shape() {
                return Err(KernelError::invalid(format!(
                    "variable `{}` has shape {:?}, the update has shape {:?}",
                    var.name,
                    old.shape(),
                    delta.shape()
                )));
            }
            let new = ops::binary(d.cuda(), op, &old, &delta).map_err(kernel_error)?;
            Ok(vec![store(d, &mut slot, new)?])
        }),
    )
}
