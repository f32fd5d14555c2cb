//! Neural-network ops over f32 [`CudaTensor`]s: bias add and its gradient, fused backward
//! elementwise ops, softmax cross-entropy, the optimizers' updates, 2-D convolution (im2col
//! plus a cuBLAS product, NHWC input, HWIO filter) and its two gradients, max and average
//! pooling and their gradients. TensorFlow's window arithmetic (SAME/VALID) comes from
//! `tfr_graph::ops::nn_ops::window_geometry`, as in the CPU kernels.

use crate::array_ops::reduce_axes;
use crate::device::CudaDevice;
use crate::kernels_nn::{ConvGeom, GRAD_F32};
use crate::ops::{binary, check_f32, elementwise_config, matmul, row_config};
use crate::tensor::CudaTensor;
use crate::{CudaError, Result};
use cudarc::driver::PushKernelArg;
use tfr_graph::ops::nn_ops::{window_geometry, Padding};
use tfr_graph::DType;

/// The fused backward ops with a CUDA kernel ([`GRAD_F32`]).
pub fn grad_ops() -> impl Iterator<Item = &'static str> {
    GRAD_F32.iter().map(|(op, _)| *op)
}

/// A same-shape op of [`GRAD_F32`] (e.g. `ReluGrad(gradients, features)`).
pub fn grad(dev: &CudaDevice, op: &str, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
    if !grad_ops().any(|o| o == op) {
        return Err(CudaError(format!("no CUDA kernel for `{op}`")));
    }
    check_f32(op, a)?;
    check_f32(op, b)?;
    if a.shape() != b.shape() {
        return Err(CudaError(format!(
            "{op}: inputs must have one shape, got {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let z = CudaTensor::uninit(dev, DType::F32, a.shape())?;
    let n = z.num_elements() as u64;
    if n == 0 {
        return Ok(z);
    }
    let f = dev.kernels()?.get(&format!("binary_{op}_f32"))?;
    let (ap, bp, zp) = (a.ptr(), b.ptr(), z.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&ap).arg(&bp).arg(&zp).arg(&n);
    // SAFETY: `binary_<op>_f32(x, y, z, u64 n)` reads x, y and writes z at [0, n); all three
    // hold n f32s (shapes checked equal above).
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(z)
}

/// `value + bias` along the channel dim: the last (`nchw` false) or dim 1 of a 4-D NCHW value.
pub fn bias_add(
    dev: &CudaDevice,
    value: &CudaTensor,
    bias: &CudaTensor,
    nchw: bool,
) -> Result<CudaTensor> {
    let channel = if nchw {
        1
    } else {
        value.rank().saturating_sub(1)
    };
    let ok = bias.rank() == 1
        && value.rank() >= 2
        && (!nchw || value.rank() == 4)
        && value.shape()[channel] == bias.shape()[0];
    if !ok {
        return Err(CudaError(format!(
            "BiasAdd: bias of shape {:?} does not match the channels of {:?} ({})",
            bias.shape(),
            value.shape(),
            if nchw { "NCHW" } else { "NHWC" }
        )));
    }
    let bias = if nchw {
        bias.reshaped(&[bias.shape()[0], 1, 1])?
    } else {
        bias.clone()
    };
    binary(dev, "Add", value, &bias)
}

/// The gradient of [`bias_add`]: `out_backprop` summed over every dim but the channel dim.
pub fn bias_add_grad(
    dev: &CudaDevice,
    out_backprop: &CudaTensor,
    nchw: bool,
) -> Result<CudaTensor> {
    check_f32("BiasAddGrad", out_backprop)?;
    let r = out_backprop.rank();
    if r < 2 || (nchw && r != 4) {
        return Err(CudaError(format!(
            "BiasAddGrad: needs at least 2 dims (4 for NCHW), got {:?}",
            out_backprop.shape()
        )));
    }
    let channel = if nchw { 1 } else { r - 1 };
    let axes: Vec<usize> = (0..r).filter(|&d| d != channel).collect();
    reduce_axes(dev, "Sum", out_backprop, &axes, false)
}

fn rows_cols_2d(op: &str, x: &CudaTensor) -> Result<(u64, u64)> {
    if x.rank() != 2 {
        return Err(CudaError(format!(
            "{op}: logits must be [batch, classes], got {:?}",
            x.shape()
        )));
    }
    Ok((x.shape()[0] as u64, x.shape()[1] as u64))
}

/// Softmax cross-entropy with integer labels: (loss `[batch]`, backprop `[batch, classes]`).
/// A label out of range gives NaN in its row (TensorFlow's GPU behaviour; the CPU kernel
/// reports an error, which here would mean waiting for the GPU).
pub fn sparse_softmax_cross_entropy(
    dev: &CudaDevice,
    logits: &CudaTensor,
    labels: &CudaTensor,
) -> Result<(CudaTensor, CudaTensor)> {
    let op = "SparseSoftmaxCrossEntropyWithLogits";
    check_f32(op, logits)?;
    let (rows, cols) = rows_cols_2d(op, logits)?;
    let idx = match labels.dtype() {
        DType::I32 => "i32",
        DType::I64 => "i64",
        other => {
            return Err(CudaError(format!(
                "{op}: labels must be int32 or int64, got {other}"
            )))
        }
    };
    if labels.shape() != [rows as usize] {
        return Err(CudaError(format!(
            "{op}: labels must be [{rows}], got {:?}",
            labels.shape()
        )));
    }
    xent_launch(
        dev,
        &format!("sparse_xent_f32_{idx}"),
        logits,
        labels,
        rows,
        cols,
    )
}

/// Softmax cross-entropy with a distribution per row: (loss `[batch]`, backprop).
pub fn softmax_cross_entropy(
    dev: &CudaDevice,
    logits: &CudaTensor,
    labels: &CudaTensor,
) -> Result<(CudaTensor, CudaTensor)> {
    let op = "SoftmaxCrossEntropyWithLogits";
    check_f32(op, logits)?;
    check_f32(op, labels)?;
    let (rows, cols) = rows_cols_2d(op, logits)?;
    if labels.shape() != logits.shape() {
        return Err(CudaError(format!(
            "{op}: labels must have the logits' shape {:?}, got {:?}",
            logits.shape(),
            labels.shape()
        )));
    }
    xent_launch(dev, "xent_f32", logits, labels, rows, cols)
}

fn xent_launch(
    dev: &CudaDevice,
    name: &str,
    logits: &CudaTensor,
    labels: &CudaTensor,
    rows: u64,
    cols: u64,
) -> Result<(CudaTensor, CudaTensor)> {
    let loss = CudaTensor::uninit(dev, DType::F32, &[rows as usize])?;
    let back = CudaTensor::uninit(dev, DType::F32, logits.shape())?;
    if rows == 0 {
        return Ok((loss, back));
    }
    let f = dev.kernels()?.get(name)?;
    let (xp, lp, lossp, bp) = (logits.ptr(), labels.ptr(), loss.ptr(), back.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch
        .arg(&xp)
        .arg(&lp)
        .arg(&lossp)
        .arg(&bp)
        .arg(&rows)
        .arg(&cols);
    // SAFETY: one block per row r < rows: reads logits and writes backprop at
    // [r * cols, (r + 1) * cols), reads labels at r (sparse) or the same row range (dense),
    // writes loss[r]; each tensor was checked or allocated for those sizes. Block size is a
    // multiple of 32 as the warp reductions require.
    unsafe { launch.launch(row_config(rows)) }?;
    Ok((loss, back))
}

/// Checks that `t` is an f32 scalar hyperparameter (read on the GPU by the update kernels).
fn hyper(op: &str, what: &str, t: &CudaTensor) -> Result<()> {
    if t.dtype() != DType::F32 || t.num_elements() != 1 {
        return Err(CudaError(format!(
            "{op}: {what} must be an f32 scalar, got {} {:?}",
            t.dtype(),
            t.shape()
        )));
    }
    Ok(())
}

fn same_shape(op: &str, what: &str, t: &CudaTensor, like: &CudaTensor) -> Result<()> {
    check_f32(op, t)?;
    if t.shape() != like.shape() {
        return Err(CudaError(format!(
            "{op}: {what} has shape {:?}, the gradient has shape {:?}",
            t.shape(),
            like.shape()
        )));
    }
    Ok(())
}

/// Gradient descent: the new value `w - lr * g`.
pub fn apply_gradient_descent(
    dev: &CudaDevice,
    w: &CudaTensor,
    lr: &CudaTensor,
    g: &CudaTensor,
) -> Result<CudaTensor> {
    let op = "ApplyGradientDescent";
    same_shape(op, "the variable", w, g)?;
    hyper(op, "the learning rate", lr)?;
    let out = CudaTensor::uninit(dev, DType::F32, w.shape())?;
    let n = w.num_elements() as u64;
    if n == 0 {
        return Ok(out);
    }
    let f = dev.kernels()?.get("apply_gd_f32")?;
    let (wp, lp, gp, op_) = (w.ptr(), lr.ptr(), g.ptr(), out.ptr());
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&wp).arg(&lp).arg(&gp).arg(&op_).arg(&n);
    // SAFETY: reads lr[0] and w, g at [0, n), writes out at [0, n); all hold n f32s (shapes
    // checked above), lr one f32.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(out)
}

/// Momentum: the new (variable, accumulator).
pub fn apply_momentum(
    dev: &CudaDevice,
    w: &CudaTensor,
    acc: &CudaTensor,
    lr: &CudaTensor,
    g: &CudaTensor,
    momentum: &CudaTensor,
    nesterov: bool,
) -> Result<(CudaTensor, CudaTensor)> {
    let op = "ApplyMomentum";
    same_shape(op, "the variable", w, g)?;
    same_shape(op, "the accumulator", acc, g)?;
    hyper(op, "the learning rate", lr)?;
    hyper(op, "the momentum", momentum)?;
    let w_out = CudaTensor::uninit(dev, DType::F32, w.shape())?;
    let acc_out = CudaTensor::uninit(dev, DType::F32, w.shape())?;
    let n = w.num_elements() as u64;
    if n == 0 {
        return Ok((w_out, acc_out));
    }
    let f = dev.kernels()?.get("apply_momentum_f32")?;
    let ptrs = [
        w.ptr(),
        acc.ptr(),
        lr.ptr(),
        g.ptr(),
        momentum.ptr(),
        w_out.ptr(),
        acc_out.ptr(),
    ];
    let flag = nesterov as i32;
    let mut launch = dev.stream().launch_builder(f);
    for p in &ptrs {
        launch.arg(p);
    }
    launch.arg(&n).arg(&flag);
    // SAFETY: reads w, acc, g at [0, n), lr[0] and momentum[0]; writes w_out and acc_out at
    // [0, n); every tensor holds n f32s (checked above) or one (the hyperparameters).
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok((w_out, acc_out))
}

/// The scalar inputs of Adam, in the op's order.
pub struct AdamHyper<'a> {
    pub lr_t: &'a CudaTensor,
    pub beta1: &'a CudaTensor,
    pub beta2: &'a CudaTensor,
    pub epsilon: &'a CudaTensor,
    pub lr_wd: &'a CudaTensor,
}

/// Adam (with decoupled weight decay `lr_wd`, as tfr's `ResourceApplyAdam`): the new
/// (variable, m, v).
pub fn apply_adam(
    dev: &CudaDevice,
    w: &CudaTensor,
    m: &CudaTensor,
    v: &CudaTensor,
    h: &AdamHyper<'_>,
    g: &CudaTensor,
) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
    let op = "ApplyAdam";
    same_shape(op, "the variable", w, g)?;
    same_shape(op, "m", m, g)?;
    same_shape(op, "v", v, g)?;
    for (what, t) in [
        ("lr_t", h.lr_t),
        ("beta1", h.beta1),
        ("beta2", h.beta2),
        ("epsilon", h.epsilon),
        ("lr_wd", h.lr_wd),
    ] {
        hyper(op, what, t)?;
    }
    let outs = [
        CudaTensor::uninit(dev, DType::F32, w.shape())?,
        CudaTensor::uninit(dev, DType::F32, w.shape())?,
        CudaTensor::uninit(dev, DType::F32, w.shape())?,
    ];
    let n = w.num_elements() as u64;
    let [w_out, m_out, v_out] = outs;
    if n == 0 {
        return Ok((w_out, m_out, v_out));
    }
    let f = dev.kernels()?.get("apply_adam_f32")?;
    let ptrs = [
        w.ptr(),
        m.ptr(),
        v.ptr(),
        h.lr_t.ptr(),
        h.beta1.ptr(),
        h.beta2.ptr(),
        h.epsilon.ptr(),
        h.lr_wd.ptr(),
        g.ptr(),
        w_out.ptr(),
        m_out.ptr(),
        v_out.ptr(),
    ];
    let mut launch = dev.stream().launch_builder(f);
    for p in &ptrs {
        launch.arg(p);
    }
    launch.arg(&n);
    // SAFETY: reads w, m, v, g at [0, n) and one f32 of each hyperparameter; writes the three
    // outputs at [0, n); all shapes were checked above, the outputs allocated for n f32s.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok((w_out, m_out, v_out))
}

/// A convolution's or pooling's window: (height, width) of the window and of the strides, and
/// the padding rule. Dilations other than 1 and NCHW are not supported on the GPU yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub size: [usize; 2],
    pub strides: [usize; 2],
    pub padding: Padding,
}

impl Window {
    /// The geometry over an NHWC input of `shape` with `channels` per pixel.
    pub fn geometry(&self, op: &str, shape: &[usize]) -> Result<ConvGeom> {
        let [n, h, w, c] = <[usize; 4]>::try_from(shape)
            .map_err(|_| CudaError(format!("{op}: needs a 4-D NHWC input, got {shape:?}")))?;
        let along = |input, k: usize, s: usize| {
            window_geometry(input, k, s, 1, self.padding)
                .map_err(|e| CudaError(format!("{op}: {e}")))
        };
        let (oh, pt, _) = along(h, self.size[0], self.strides[0])?;
        let (ow, pl, _) = along(w, self.size[1], self.strides[1])?;
        let i = |v: usize| v as i64;
        Ok(ConvGeom {
            n: i(n),
            h: i(h),
            w: i(w),
            c: i(c),
            oh: i(oh),
            ow: i(ow),
            kh: i(self.size[0]),
            kw: i(self.size[1]),
            sh: i(self.strides[0]),
            sw: i(self.strides[1]),
            pt: i(pt),
            pl: i(pl),
        })
    }
}

/// Launches a geometry kernel `name(a, b, u64 n, TfrConv g)` over `n` elements.
fn geom_launch(dev: &CudaDevice, name: &str, a: u64, b: u64, n: u64, g: &ConvGeom) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let f = dev.kernels()?.get(name)?;
    let mut launch = dev.stream().launch_builder(f);
    launch.arg(&a).arg(&b).arg(&n).arg(g);
    // SAFETY: every caller passes buffers sized by the same geometry the kernel indexes with:
    // `im2col` reads n*h*w*c and writes n*oh*ow*kh*kw*c elements, `col2im` the reverse,
    // `avg_pool` n*h*w*c in and n*oh*ow*c out, `avg_pool_grad` the reverse; window coordinates
    // outside the input are skipped by the kernels. `ConvGeom` has `TfrConv`'s layout.
    unsafe { launch.launch(elementwise_config(n)) }?;
    Ok(())
}

fn check_filter(op: &str, filter: &[usize], channels: usize) -> Result<[usize; 4]> {
    let f = <[usize; 4]>::try_from(filter)
        .map_err(|_| CudaError(format!("{op}: the filter must be 4-D HWIO, got {filter:?}")))?;
    if f[2] != channels {
        return Err(CudaError(format!(
            "{op}: the filter {filter:?} takes {} channels, the input has {channels}",
            f[2]
        )));
    }
    Ok(f)
}

/// The im2col matrix `[n*oh*ow, kh*kw*c]` of `x` for geometry `g`.
fn im2col(dev: &CudaDevice, x: &CudaTensor, g: &ConvGeom) -> Result<CudaTensor> {
    let rows = (g.n * g.oh * g.ow) as usize;
    let cols = (g.kh * g.kw * g.c) as usize;
    let col = CudaTensor::uninit(dev, DType::F32, &[rows, cols])?;
    geom_launch(
        dev,
        "im2col_f32",
        x.ptr(),
        col.ptr(),
        (rows * cols) as u64,
        g,
    )?;
    Ok(col)
}

/// `Conv2D` of an NHWC f32 input with an HWIO filter.
pub fn conv2d(
    dev: &CudaDevice,
    x: &CudaTensor,
    filter: &CudaTensor,
    strides: [usize; 2],
    padding: Padding,
) -> Result<CudaTensor> {
    check_f32("Conv2D", x)?;
    check_f32("Conv2D", filter)?;
    let [kh, kw, c, o] = check_filter("Conv2D", filter.shape(), *x.shape().last().unwrap_or(&0))?;
    let g = Window {
        size: [kh, kw],
        strides,
        padding,
    }
    .geometry("Conv2D", x.shape())?;
    let col = im2col(dev, x, &g)?;
    let y = matmul(
        dev,
        &col,
        &filter.reshaped(&[kh * kw * c, o])?,
        false,
        false,
    )?;
    y.reshaped(&[g.n as usize, g.oh as usize, g.ow as usize, o])
}

/// `Conv2DBackpropFilter`: the HWIO filter gradient of [`conv2d`].
pub fn conv2d_backprop_filter(
    dev: &CudaDevice,
    x: &CudaTensor,
    filter_shape: &[usize],
    dy: &CudaTensor,
    strides: [usize; 2],
    padding: Padding,
) -> Result<CudaTensor> {
    let op = "Conv2DBackpropFilter";
    check_f32(op, x)?;
    check_f32(op, dy)?;
    let [kh, kw, _, o] = check_filter(op, filter_shape, *x.shape().last().unwrap_or(&0))?;
    let g = Window {
        size: [kh, kw],
        strides,
        padding,
    }
    .geometry(op, x.shape())?;
    let want = [g.n as usize, g.oh as usize, g.ow as usize, o];
    if dy.shape() != want {
        return Err(CudaError(format!(
            "{op}: out_backprop must be {want:?}, got {:?}",
            dy.shape()
        )));
    }
    let col = im2col(dev, x, &g)?;
    let rows = (g.n * g.oh * g.ow) as usize;
    let dw = matmul(dev, &col, &dy.reshaped(&[rows, o])?, true, false)?;
    dw.reshaped(filter_shape)
}

/// `Conv2DBackpropInput`: the NHWC input gradient of [`conv2d`].
pub fn conv2d_backprop_input(
    dev: &CudaDevice,
    input_shape: &[usize],
    filter: &CudaTensor,
    dy: &CudaTensor,
    strides: [usize; 2],
    padding: Padding,
) -> Result<CudaTensor> {
    let op = "Conv2DBackpropInput";
    check_f32(op, filter)?;
    check_f32(op, dy)?;
    let [kh, kw, c, o] = check_filter(op, filter.shape(), *input_shape.last().unwrap_or(&0))?;
    let g = Window {
        size: [kh, kw],
        strides,
        padding,
    }
    .geometry(op, input_shape)?;
    let want = [g.n as usize, g.oh as usize, g.ow as usize, o];
    if dy.shape() != want {
        return Err(CudaError(format!(
            "{op}: out_backprop must be {want:?}, got {:?}",
            dy.shape()
        )));
    }
    let rows = (g.n * g.oh * g.ow) as usize;
    let dcol = matmul(
        dev,
        &dy.reshaped(&[rows, o])?,
        &filter.reshaped(&[kh * kw * c, o])?,
        false,
        true,
    )?;
    let dx = CudaTensor::uninit(dev, DType::F32, input_shape)?;
    geom_launch(
        dev,
        "col2im_f32",
        dcol.ptr(),
        dx.ptr(),
        dx.num_elements() as u64,
        &g,
    )?;
    Ok(dx)
}

/// Max pooling; also returns the input element each output came from (for the gradient).
pub fn max_pool(
    dev: &CudaDevice,
    x: &CudaTensor,
    window: &Window,
) -> Result<(CudaTensor, CudaTensor)> {
    check_f32("MaxPool", x)?;
    let g = window.geometry("MaxPool", x.shape())?;
    let shape = [g.n as usize, g.oh as usize, g.ow as usize, g.c as usize];
    let y = CudaTensor::uninit(dev, DType::F32, &shape)?;
    let at = CudaTensor::uninit(dev, DType::I64, &shape)?;
    let n = y.num_elements() as u64;
    if n > 0 {
        let f = dev.kernels()?.get("max_pool_f32")?;
        let (xp, yp, ap) = (x.ptr(), y.ptr(), at.ptr());
        let mut launch = dev.stream().launch_builder(f);
        launch.arg(&xp).arg(&yp).arg(&ap).arg(&n).arg(&g);
        // SAFETY: writes y and argmax at [0, n) (n = n*oh*ow*c, both allocated for it) and
        // reads x only at in-bounds window elements of the geometry built from x's shape.
        unsafe { launch.launch(elementwise_config(n)) }?;
    }
    Ok((y, at))
}

/// `MaxPoolGrad(orig_input, orig_output, grad)`: each output's gradient goes to its window's
/// first maximum.
pub fn max_pool_grad(
    dev: &CudaDevice,
    x: &CudaTensor,
    dy: &CudaTensor,
    window: &Window,
) -> Result<CudaTensor> {
    let op = "MaxPoolGrad";
    check_f32(op, dy)?;
    let (y, at) = max_pool(dev, x, window)?;
    if dy.shape() != y.shape() {
        return Err(CudaError(format!(
            "{op}: grad must be {:?}, got {:?}",
            y.shape(),
            dy.shape()
        )));
    }
    let g = window.geometry(op, x.shape())?;
    let dx = CudaTensor::uninit(dev, DType::F32, x.shape())?;
    let n = dx.num_elements() as u64;
    if n > 0 {
        let f = dev.kernels()?.get("max_pool_grad_f32")?;
        let (dp, ap, xp) = (dy.ptr(), at.ptr(), dx.ptr());
        let mut launch = dev.stream().launch_builder(f);
        launch.arg(&dp).arg(&ap).arg(&xp).arg(&n).arg(&g);
        // SAFETY: writes dx at [0, n) (x's element count) and reads dy and argmax only at
        // outputs of windows covering each input, inside their n*oh*ow*c elements.
        unsafe { launch.launch(elementwise_config(n)) }?;
    }
    Ok(dx)
}

/// Average pooling (padding excluded from each window's count).
pub fn avg_pool(dev: &CudaDevice, x: &CudaTensor, window: &Window) -> Result<CudaTensor> {
    check_f32("AvgPool", x)?;
    let g = window.geometry("AvgPool", x.shape())?;
    let y = CudaTensor::uninit(
        dev,
        DType::F32,
        &[g.n as usize, g.oh as usize, g.ow as usize, g.c as usize],
    )?;
    geom_launch(
        dev,
        "avg_pool_f32",
        x.ptr(),
        y.ptr(),
        y.num_elements() as u64,
        &g,
    )?;
    Ok(y)
}

/// `AvgPoolGrad(orig_input_shape, grad)`.
pub fn avg_pool_grad(
    dev: &CudaDevice,
    input_shape: &[usize],
    dy: &CudaTensor,
    window: &Window,
) -> Result<CudaTensor> {
    let op = "AvgPoolGrad";
    check_f32(op, dy)?;
    let g = window.geometry(op, input_shape)?;
    let want = [g.n as usize, g.oh as usize, g.ow as usize, g.c as usize];
    if dy.shape() != want {
        return Err(CudaError(format!(
            "{op}: grad must be {want:?}, got {:?}",
            dy.shape()
        )));
    }
    let dx = CudaTensor::uninit(dev, DType::F32, input_shape)?;
    geom_launch(
        dev,
        "avg_pool_grad_f32",
        dy.ptr(),
        dx.ptr(),
        dx.num_elements() as u64,
        &g,
    )?;
    Ok(dx)
}
