//! Kernels of the quantized spatial ops (NHWC): `QuantizedConv2D` as im2col of 8-bit patches
//! into the int8 GEMM of [`super::qgemm`] (padding with the input's code of 0.0, so that padded
//! taps contribute nothing), `QuantizedMaxPool` and `QuantizedAvgPool` on codes (TF's average
//! sums codes in int32 and truncates).

use super::output_alloc::alloc;
use super::qgemm::{best_path, qgemm_u8};
use super::quantization_ops::codes::{self, QUINT8};
use super::quantization_ops::{scalar_range, set_quantized};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelRegistry};
use crate::tensor::Tensor;
use tfr_graph::ops::nn_ops::{ConvParams, PoolParams};
use tfr_graph::{DType, DTypeSet};

pub fn register(r: &mut KernelRegistry) {
    r.cpu("QuantizedConv2D", DTypeSet::of(&[DType::U8]), |init| {
        let p = ConvParams::from_attrs(init.attrs)?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_conv2d(ctx, &p)
        }))
    });
    r.cpu("QuantizedMaxPool", DTypeSet::of(&[DType::U8]), |init| {
        let p = PoolParams::from_attrs(init.attrs)?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_pool(ctx, &p, true)
        }))
    });
    r.cpu("QuantizedAvgPool", DTypeSet::of(&[DType::U8]), |init| {
        let p = PoolParams::from_attrs(init.attrs)?;
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            quantized_pool(ctx, &p, false)
        }))
    });
}

fn dims4(t: &Tensor, what: &str) -> KResult<[usize; 4]> {
    t.shape()
        .try_into()
        .map_err(|_| KernelError::invalid(format!("{what} must be 4-D, got shape {:?}", t.shape())))
}

fn quantized_conv2d(ctx: &mut KernelContext<'_>, p: &ConvParams) -> KResult {
    let (min_x, max_x) = scalar_range(ctx, 2, 3)?;
    let (min_f, max_f) = scalar_range(ctx, 4, 5)?;
    let [n, h, w, c] = dims4(ctx.input(0), "input")?;
    let [fh, fw, fc, oc] = dims4(ctx.input(1), "filter")?;
    if fc != c {
        return Err(KernelError::invalid(format!(
            "the filter takes {fc} input channels, the input has {c}"
        )));
    }
    let [(oh, ph), (ow, pw)] = p.geometry([h, w], [fh, fw]).map_err(KernelError::invalid)?;
    let zx = codes::float_to_code_unclamped(0.0, min_x, max_x, QUINT8.0, QUINT8.1);
    let zf = codes::float_to_code_unclamped(0.0, min_f, max_f, QUINT8.0, QUINT8.1);
    let pad_code = u8::try_from(zx).map_err(|_| {
        KernelError::invalid(format!(
            "the input range [{min_x}, {max_x}] does not hold 0.0, so padding has no code"
        ))
    })?;
    let x = ctx.input(0).as_slice::<u8>()?;
    let f = ctx.input(1).as_slice::<u8>()?;
    let k = fh * fw * c;
    let rows = n * oh * ow;
    let mut patches: Vec<u8> = alloc(rows * k)?;
    patches.resize(rows * k, pad_code);
    let [sh, sw] = p.strides;
    let [dh, dw] = p.dilations;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let row = ((b * oh + oy) * ow + ox) * k;
                for i in 0..fh {
                    let y = (oy * sh + i * dh) as isize - ph as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    for j in 0..fw {
                        let xx = (ox * sw + j * dw) as isize - pw as isize;
                        if xx < 0 || xx >= w as isize {
                            continue;
                        }
                        let src = ((b * h + y as usize) * w + xx as usize) * c;
                        let dst = row + (i * fw + j) * c;
                        patches[dst..dst + c].copy_from_slice(&x[src..src + c]);
                    }
                }
            }
        }
    }
    let mut out: Vec<i32> = alloc(rows * oc)?;
    out.resize(rows * oc, 0);
    qgemm_u8(
        &patches,
        f,
        &mut out,
        rows,
        k,
        oc,
        zx as i32,
        zf as i32,
        best_path(),
    );
    let (lo, hi) = codes::product_range(min_x, max_x, min_f, max_f);
    set_quantized(ctx, Tensor::new(&[n, oh, ow, oc], out)?, lo, hi);
    Ok(())
}

fn quantized_pool(ctx: &mut KernelContext<'_>, p: &PoolParams, max: bool) -> KResult {
    let (lo, hi) = scalar_range(ctx, 1, 2)?;
    let [n, h, w, c] = dims4(ctx.input(0), "input")?;
    let [(oh, ph), (ow, pw)] = p.geometry([h, w]).map_err(KernelError::invalid)?;
    let x = ctx.input(0).as_slice::<u8>()?;
    let [kh, kw] = p.ksize;
    let [sh, sw] = p.strides;
    let mut out: Vec<u8> = alloc(n * oh * ow * c)?;
    let mut acc = vec![0u32; c];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                acc.fill(0);
                let mut count = 0u32;
                for i in 0..kh {
                    let y = (oy * sh + i) as isize - ph as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    for j in 0..kw {
                        let xx = (ox * sw + j) as isize - pw as isize;
                        if xx < 0 || xx >= w as isize {
                            continue;
                        }
                        count += 1;
                        let src = ((b * h + y as usize) * w + xx as usize) * c;
                        for (a, &v) in acc.iter_mut().zip(&x[src..src + c]) {
                            *a = if max {
                                (*a).max(v as u32)
                            } else {
                                *a + v as u32
                            };
                        }
                    }
                }
                let count = count.max(1);
                out.extend(
                    acc.iter()
                        .map(|&a| if max { a as u8 } else { (a / count) as u8 }),
                );
            }
        }
    }
    set_quantized(ctx, Tensor::new(&[n, oh, ow, c], out)?, lo, hi);
    Ok(())
}
