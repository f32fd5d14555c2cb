//! The runtime's GPU kernels: each [`OpKernel`] reads its inputs on the GPU (a host input, such
//! as an integer argument that stayed in host memory, is copied in), checks dtypes and shapes
//! on the host, calls an op of [`crate::ops`], [`crate::array_ops`] or [`crate::nn_ops`] and
//! returns tensors in GPU memory. [`gpu_ops`] is the one table of what is registered; it needs
//! no GPU to read (the fallback report plans with it).
//!
//! Small integer arguments (shapes, axes, permutations) are read on the host; when they live
//! in GPU memory that read waits for the stream (see ARCHITECTURE.md, "tfr-cuda").

use crate::gpu_kernels_nn::{compare_kernel, nn_ops_table};
use crate::runtime::{kernel_error, GpuDevice};
use crate::{array_ops, nn_ops, ops, select_ops, CudaTensor};
use std::sync::{Arc, Mutex};
use tfr_core::kernel::KernelFactory;
use tfr_core::{
    find_kernel, DeviceBackend, DeviceType, KernelContext, KernelError, KernelInit, OpKernel,
    Tensor,
};
use tfr_graph::DType;

/// One registered GPU kernel: the op, the dtypes it is selected for (input 0's dtype, or
/// output 0's for ops without inputs) and its factory.
#[derive(Clone, Copy)]
pub struct GpuOp {
    pub op: &'static str,
    pub dtypes: &'static [DType],
    pub factory: KernelFactory,
}

pub(crate) const F32: &[DType] = &[DType::F32];
/// Dtypes the data-movement kernels handle (any element width the GPU stores).
pub(crate) const MOVABLE: &[DType] = &[
    DType::F32,
    DType::F64,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::Bool,
];
pub(crate) const INDEX: &[DType] = &[DType::I32, DType::I64];
pub(crate) const RESOURCE: &[DType] = &[DType::Resource];

/// Every GPU kernel, in registration order (an op may appear once per dtype group).
pub fn gpu_ops() -> Vec<GpuOp> {
    let k = |op, dtypes, factory| GpuOp {
        op,
        dtypes,
        factory,
    };
    let mut v: Vec<GpuOp> = Vec::new();
    v.extend(ops::unary_ops().map(|op| k(op, F32, unary_kernel as KernelFactory)));
    v.extend(ops::binary_ops().map(|op| k(op, F32, binary_kernel as KernelFactory)));
    v.extend(nn_ops::grad_ops().map(|op| k(op, F32, grad_kernel as KernelFactory)));
    v.extend(ops::reduction_ops().map(|op| k(op, F32, reduce_kernel as KernelFactory)));
    v.extend(select_ops::compare_ops().map(|op| k(op, F32, compare_kernel as KernelFactory)));
    v.extend([
        k("Softmax", F32, softmax_kernel),
        k("LogSoftmax", F32, softmax_kernel),
        k("MatMul", F32, matmul_kernel),
        k("BatchMatMul", F32, batch_matmul_kernel),
        k("AddN", F32, add_n_kernel),
        k("Cast", MOVABLE, cast_kernel),
        k("Fill", INDEX, fill_kernel),
        k("ZerosLike", MOVABLE, zeros_like_kernel),
        k("OnesLike", MOVABLE, ones_like_kernel),
        k("Transpose", MOVABLE, transpose_kernel),
        k("Slice", MOVABLE, slice_kernel),
        k("Concat", MOVABLE, concat_kernel),
        k("Pad", MOVABLE, pad_kernel),
        k("PadV2", MOVABLE, pad_kernel),
        k("Tile", MOVABLE, tile_kernel),
        k("BroadcastTo", MOVABLE, broadcast_to_kernel),
        k("Gather", MOVABLE, gather_kernel),
        k("UnsortedSegmentSum", F32, segment_sum_kernel),
        k("Reshape", MOVABLE, reshape_kernel),
        k("ExpandDims", MOVABLE, reshape_kernel),
        k("Squeeze", MOVABLE, reshape_kernel),
        k("Identity", MOVABLE, identity_kernel),
        k("StopGradient", MOVABLE, identity_kernel),
        k("Shape", MOVABLE, shape_kernel),
        k("Const", MOVABLE, const_kernel),
        k("VarHandleOp", RESOURCE, host_metadata_kernel),
        k("ReadVariableOp", RESOURCE, host_metadata_kernel),
        k("AssignVariableOp", RESOURCE, host_metadata_kernel),
    ]);
    v.extend(nn_ops_table());
    v
}

/// The ops with a GPU kernel, sorted, each once (available without a GPU).
pub fn gpu_op_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = gpu_ops().iter().map(|k| k.op).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// What a GPU kernel computes: its outputs (tensors in GPU memory, or host metadata).
pub(crate) type GpuFn = Box<
    dyn Fn(&GpuDevice, &mut KernelContext<'_>) -> Result<Vec<Tensor>, KernelError> + Send + Sync,
>;

struct GpuKernel {
    device: Arc<dyn DeviceBackend>,
    f: GpuFn,
}

impl OpKernel for GpuKernel {
    fn compute(&self, ctx: &mut KernelContext<'_>) -> Result<(), KernelError> {
        let dev = self
            .device
            .as_any()
            .downcast_ref::<GpuDevice>()
            .ok_or_else(|| KernelError::internal("a GPU kernel on another device"))?;
        for t in (self.f)(dev, ctx)? {
            ctx.set_output(t);
        }
        Ok(())
    }
}

pub(crate) fn gpu_kernel(init: &KernelInit<'_>, f: GpuFn) -> Result<Box<dyn OpKernel>, String> {
    let device = init
        .device
        .cloned()
        .ok_or_else(|| format!("`{}` ({}) needs its GPU", init.node, init.op))?;
    Ok(Box::new(GpuKernel { device, f }))
}

/// One output in GPU memory.
pub(crate) fn one(d: &GpuDevice, r: crate::Result<CudaTensor>) -> Result<Vec<Tensor>, KernelError> {
    Ok(vec![d.wrap(r.map_err(kernel_error)?)?])
}

/// Axes in `[-rank, rank)` made non-negative; an error naming the op otherwise.
pub(crate) fn axes(op: &str, raw: &[i64], rank: usize) -> Result<Vec<usize>, KernelError> {
    raw.iter()
        .map(|&a| {
            let r = rank as i64;
            let v = if a < 0 { a + r } else { a };
            if (0..r.max(1)).contains(&v) {
                Ok(v as usize)
            } else {
                Err(KernelError::invalid(format!(
                    "{op}: axis {a} is out of range for rank {rank}"
                )))
            }
        })
        .collect()
}

/// Non-negative integers (sizes); an error naming the op otherwise.
pub(crate) fn sizes(op: &str, what: &str, raw: &[i64]) -> Result<Vec<usize>, KernelError> {
    raw.iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| KernelError::invalid(format!("{op}: {what} has a negative entry {v}")))
        })
        .collect()
}

fn unary_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| one(d, ops::unary(d.cuda(), &op, &d.input(ctx, 0)?))),
    )
}

fn binary_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            one(
                d,
                ops::binary(d.cuda(), &op, &d.input(ctx, 0)?, &d.input(ctx, 1)?),
            )
        }),
    )
}

fn grad_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            one(
                d,
                nn_ops::grad(d.cuda(), &op, &d.input(ctx, 0)?, &d.input(ctx, 1)?),
            )
        }),
    )
}

fn add_n_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let mut acc = d.input(ctx, 0)?;
            for i in 1..ctx.num_inputs() {
                let x = d.input(ctx, i)?;
                if x.shape() != acc.shape() {
                    return Err(KernelError::invalid(format!(
                        "AddN: input {i} has shape {:?}, input 0 {:?}",
                        x.shape(),
                        acc.shape()
                    )));
                }
                acc = ops::binary(d.cuda(), "Add", &acc, &x).map_err(kernel_error)?;
            }
            Ok(vec![d.wrap(acc)?])
        }),
    )
}

fn softmax_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let log = init.op == "LogSoftmax";
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let x = d.input(ctx, 0)?;
            one(
                d,
                if log {
                    ops::log_softmax(d.cuda(), &x)
                } else {
                    ops::softmax(d.cuda(), &x)
                },
            )
        }),
    )
}

fn matmul_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ta = init.attrs.bool_opt("transpose_a").copied().unwrap_or(false);
    let tb = init.attrs.bool_opt("transpose_b").copied().unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            one(
                d,
                ops::matmul(d.cuda(), &d.input(ctx, 0)?, &d.input(ctx, 1)?, ta, tb),
            )
        }),
    )
}

fn batch_matmul_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let ta = init.attrs.bool_opt("adj_x").copied().unwrap_or(false);
    let tb = init.attrs.bool_opt("adj_y").copied().unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let (a, b) = (d.input(ctx, 0)?, d.input(ctx, 1)?);
            one(
                d,
                ops::batch_matmul(d.cuda(), &a, &b, ta, tb, ops::Precision::Exact),
            )
        }),
    )
}

/// Reductions over the axes of input 1 (read on the host).
fn reduce_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    let keep = init.attrs.bool_opt("keep_dims").copied().unwrap_or(false);
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let x = d.input(ctx, 0)?;
            let mut ax = axes(&op, &d.host_ints(ctx, 1)?, x.rank())?;
            ax.sort_unstable();
            ax.dedup();
            one(d, array_ops::reduce_axes(d.cuda(), &op, &x, &ax, keep))
        }),
    )
}

fn cast_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let to = *init.attrs.dtype("DstT")?;
    gpu_kernel(
        init,
        Box::new(move |d, ctx| one(d, array_ops::cast(d.cuda(), &d.input(ctx, 0)?, to))),
    )
}

fn fill_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let dims = sizes("Fill", "dims", &d.host_ints(ctx, 0)?)?;
            one(d, array_ops::fill(d.cuda(), &dims, &d.input(ctx, 1)?))
        }),
    )
}

fn zeros_like_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let x = ctx.input(0);
            one(d, CudaTensor::zeros(d.cuda(), x.dtype(), x.shape()))
        }),
    )
}

fn ones_like_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| one(d, array_ops::ones_like(d.cuda(), &d.input(ctx, 0)?))),
    )
}

fn transpose_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let x = d.input(ctx, 0)?;
            let perm = axes("Transpose", &d.host_ints(ctx, 1)?, x.rank())?;
            one(d, array_ops::transpose(d.cuda(), &x, &perm))
        }),
    )
}

fn slice_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let x = d.input(ctx, 0)?;
            let begin = sizes("Slice", "begin", &d.host_ints(ctx, 1)?)?;
            let raw = d.host_ints(ctx, 2)?;
            if begin.len() != x.rank() || raw.len() != x.rank() {
                return Err(KernelError::invalid(format!(
                    "Slice: begin and size need {} entries, got {} and {}",
                    x.rank(),
                    begin.len(),
                    raw.len()
                )));
            }
            // A size of -1 takes everything from `begin` on.
            let size: Vec<i64> = raw
                .iter()
                .zip(&begin)
                .zip(x.shape())
                .map(|((&s, &b), &n)| if s == -1 { n as i64 - b as i64 } else { s })
                .collect();
            let size = sizes("Slice", "size", &size)?;
            one(d, array_ops::slice(d.cuda(), &x, &begin, &size))
        }),
    )
}

fn concat_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let n = ctx.num_inputs() - 1;
            let xs = (0..n)
                .map(|i| d.input(ctx, i))
                .collect::<Result<Vec<_>, _>>()?;
            let rank = xs.first().map_or(0, |x| x.rank());
            let axis = axes("Concat", &d.host_ints(ctx, n)?, rank)?;
            let [axis] = axis[..] else {
                return Err(KernelError::invalid("Concat: the axis must be a scalar"));
            };
            let refs: Vec<&CudaTensor> = xs.iter().collect();
            one(d, array_ops::concat(d.cuda(), &refs, axis))
        }),
    )
}

fn pad_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let x = d.input(ctx, 0)?;
            let p = sizes("Pad", "paddings", &d.host_ints(ctx, 1)?)?;
            if p.len() != 2 * x.rank() {
                return Err(KernelError::invalid(format!(
                    "Pad: paddings must be [{}, 2], got {} values",
                    x.rank(),
                    p.len()
                )));
            }
            let pairs: Vec<(usize, usize)> = p.chunks_exact(2).map(|c| (c[0], c[1])).collect();
            // PadV2's third input is the value to pad with.
            let value = match ctx.num_inputs() {
                3 => Some(d.input(ctx, 2)?),
                _ => None,
            };
            one(d, array_ops::pad(d.cuda(), &x, &pairs, value.as_ref()))
        }),
    )
}

fn tile_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let m = sizes("Tile", "multiples", &d.host_ints(ctx, 1)?)?;
            one(d, array_ops::tile(d.cuda(), &d.input(ctx, 0)?, &m))
        }),
    )
}

fn broadcast_to_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let shape = sizes("BroadcastTo", "shape", &d.host_ints(ctx, 1)?)?;
            one(
                d,
                array_ops::broadcast_to(d.cuda(), &d.input(ctx, 0)?, &shape),
            )
        }),
    )
}

fn gather_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let batch_dims = init.attrs.int_opt("batch_dims").copied().unwrap_or(0);
    if batch_dims != 0 {
        return Err(format!(
            "`{}` (Gather): batch_dims {batch_dims} has no GPU kernel yet",
            init.node
        ));
    }
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let params = d.input(ctx, 0)?;
            let axis = if ctx.num_inputs() > 2 {
                d.host_ints(ctx, 2)?
            } else {
                vec![0]
            };
            let [axis] = axes("Gather", &axis, params.rank())?[..] else {
                return Err(KernelError::invalid("Gather: the axis must be a scalar"));
            };
            one(
                d,
                array_ops::gather(d.cuda(), &params, &d.input(ctx, 1)?, axis),
            )
        }),
    )
}

fn segment_sum_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(
        init,
        Box::new(|d, ctx| {
            let n = sizes("UnsortedSegmentSum", "num_segments", &d.host_ints(ctx, 2)?)?;
            let [n] = n[..] else {
                return Err(KernelError::invalid(
                    "UnsortedSegmentSum: num_segments must be a scalar",
                ));
            };
            one(
                d,
                array_ops::unsorted_segment_sum(d.cuda(), &d.input(ctx, 0)?, &d.input(ctx, 1)?, n),
            )
        }),
    )
}

/// The output shape of Reshape (input 1, with at most one -1), ExpandDims (axis input 1) or
/// Squeeze (`squeeze_dims`, or every dim of size 1).
fn reshaped_dims(
    op: &str,
    d: &GpuDevice,
    ctx: &KernelContext<'_>,
    squeeze: &[i64],
) -> Result<Vec<usize>, KernelError> {
    let shape = ctx.input(0).shape().to_vec();
    match op {
        "Reshape" => {
            let raw = d.host_ints(ctx, 1)?;
            let known: i64 = raw.iter().filter(|&&v| v != -1).product();
            let n = shape.iter().product::<usize>() as i64;
            let free = raw.iter().filter(|&&v| v == -1).count();
            let fill = match free {
                0 => None,
                1 if known > 0 && n % known == 0 => Some(n / known),
                1 if n == 0 => Some(0),
                _ => {
                    return Err(KernelError::invalid(format!(
                        "Reshape: cannot reshape {shape:?} to {raw:?}"
                    )))
                }
            };
            sizes(
                op,
                "shape",
                &raw.iter()
                    .map(|&v| if v == -1 { fill.unwrap_or(v) } else { v })
                    .collect::<Vec<_>>(),
            )
        }
        "ExpandDims" => {
            let raw = d.host_ints(ctx, 1)?;
            let [a] = raw[..] else {
                return Err(KernelError::invalid(
                    "ExpandDims: the axis must be a scalar",
                ));
            };
            let [a] = axes(op, &[a], shape.len() + 1)?[..] else {
                unreachable!()
            };
            let mut out = shape;
            out.insert(a, 1);
            Ok(out)
        }
        _ => {
            let gone = axes(op, squeeze, shape.len())?;
            let drop = |i: usize, n: usize| {
                if gone.is_empty() {
                    n == 1
                } else {
                    gone.contains(&i)
                }
            };
            if let Some(i) = gone.iter().find(|&&i| shape[i] != 1) {
                return Err(KernelError::invalid(format!(
                    "Squeeze: dim {i} of {shape:?} is not 1"
                )));
            }
            Ok(shape
                .iter()
                .enumerate()
                .filter(|&(i, &n)| !drop(i, n))
                .map(|(_, &n)| n)
                .collect())
        }
    }
}

/// Reshape, ExpandDims and Squeeze: the same buffer under a new shape (no copy).
fn reshape_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    let squeeze = init
        .attrs
        .ints_opt("squeeze_dims")
        .cloned()
        .unwrap_or_default();
    gpu_kernel(
        init,
        Box::new(move |d, ctx| {
            let dims = reshaped_dims(&op, d, ctx, &squeeze)?;
            let x = ctx.take_input(0);
            Ok(vec![x.reshaped(&dims)?])
        }),
    )
}

fn identity_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    gpu_kernel(init, Box::new(|_, ctx| Ok(vec![ctx.take_input(0)])))
}

/// The shape of input 0, in host memory (as TF keeps it): it is known without reading the
/// GPU, and its consumers read it on the host.
fn shape_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let dtype = init.outputs.first().map_or(DType::I32, |t| t.dtype);
    gpu_kernel(
        init,
        Box::new(move |_, ctx| {
            let s = ctx.input(0).shape();
            let t = if dtype == DType::I64 {
                Tensor::new(&[s.len()], s.iter().map(|&v| v as i64).collect())?
            } else {
                Tensor::new(&[s.len()], s.iter().map(|&v| v as i32).collect())?
            };
            Ok(vec![t])
        }),
    )
}

/// A constant: float values are copied to the GPU on the first run and shared after that;
/// integer values stay in host memory (shapes and axes, read on the host).
fn const_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let value = Tensor::from_value(init.attrs.tensor("value")?);
    let on_device: Mutex<Option<Tensor>> = Mutex::new(None);
    gpu_kernel(
        init,
        Box::new(move |d, _| {
            if value.dtype().is_integer() {
                return Ok(vec![value.clone()]);
            }
            let mut slot = on_device.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(d.copy_from_host(value.clone())?);
            }
            Ok(slot.clone().into_iter().collect())
        }),
    )
}

/// Variable handles, reads and assignments move tensors without reading them, so the CPU
/// kernels run unchanged on the GPU: a variable assigned on the GPU holds GPU memory.
fn host_metadata_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let cpu = find_kernel(init.op, DeviceType::CPU, init.dtype()).ok_or_else(|| {
        format!(
            "`{}`: no CPU kernel of {} to run on the GPU",
            init.node, init.op
        )
    })?;
    cpu(&KernelInit {
        device: None,
        ..*init
    })
}
