//! BlockLSTM and BlockLSTMGrad (TensorFlow's fused LSTM layer; semantics in
//! `tfr_graph::ops::rnn_ops`). The forward pass does the input half of every step's product in
//! one gemm over the whole sequence (`x @ w[..input]`), then per step only
//! `h_prev @ w[input..]` and one pass over the gates. The backward pass runs the recurrence
//! (per step one `dicfo @ w[input..]^T` product for `h_prev`'s gradient) and then forms the
//! weight gradient, the bias gradient and `x`'s gradient with one gemm (or one pass) over all
//! steps at once instead of one per step.

use super::cwise_ops::unsupported;
use super::matmul_op::{gemm_product, MatMulElem, MatRef};
use crate::dispatch_float;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::num::{exp_nonpositive_f32, FloatElem};
use crate::tensor::{Dims, Tensor};
use tfr_graph::{DType, DTypeSet};

pub fn register(r: &mut KernelRegistry) {
    // Kernels are selected by input 0's dtype, here `seq_len_max` (int64); the float type
    // is that of `x`.
    r.cpu("BlockLSTM", DTypeSet::of(&[DType::I64]), |init| {
        let a = Attrs::read(init)?;
        Ok(dispatch_float!(float_type(init), T => block_lstm::<T>(a), _ => return Err(unsupported(init))))
    });
    r.cpu("BlockLSTMGrad", DTypeSet::of(&[DType::I64]), |init| {
        let a = Attrs::read(init)?;
        Ok(dispatch_float!(float_type(init), T => block_lstm_grad::<T>(a), _ => return Err(unsupported(init))))
    });
}

fn float_type(init: &KernelInit<'_>) -> DType {
    init.inputs.get(1).map_or(DType::F32, |t| t.dtype)
}

#[derive(Clone, Copy)]
struct Attrs {
    forget_bias: f64,
    cell_clip: f64,
    use_peephole: bool,
}

impl Attrs {
    fn read(init: &KernelInit<'_>) -> Result<Attrs, String> {
        Ok(Attrs {
            forget_bias: init.attrs.float_opt("forget_bias").copied().unwrap_or(1.0),
            cell_clip: init.attrs.float_opt("cell_clip").copied().unwrap_or(3.0),
            use_peephole: init
                .attrs
                .bool_opt("use_peephole")
                .copied()
                .unwrap_or(false),
        })
    }
}

/// The element types of the LSTM kernels: gemm, and the two activations.
pub trait LstmElem: FloatElem + MatMulElem + 'static {
    fn sigmoid(x: Self) -> Self;
    fn tanh_act(x: Self) -> Self;
}

impl LstmElem for f32 {
    /// Branch-free (so the gate loops vectorize): with `e = exp(-|x|)`, `1 / (1 + e)` for
    /// `x >= 0` and `e / (1 + e)` below.
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        let e = exp_nonpositive_f32(-x.abs());
        let r = 1.0 / (1.0 + e);
        if x >= 0.0 {
            r
        } else {
            e * r
        }
    }
    /// `sign(x) (1 - e) / (1 + e)` with `e = exp(-2|x|)`; below `|x| = 1/8`, where that
    /// difference cancels, its odd Taylor polynomial to x^7 (error under 2e-10 relative).
    #[inline(always)]
    fn tanh_act(x: f32) -> f32 {
        let a = x.abs();
        let e = exp_nonpositive_f32(-2.0 * a);
        let big = ((1.0 - e) / (1.0 + e)).copysign(x);
        let x2 = x * x;
        let small = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
        if a < 0.125 {
            small
        } else {
            big
        }
    }
}

impl LstmElem for f64 {
    fn sigmoid(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }
    fn tanh_act(x: f64) -> f64 {
        x.tanh()
    }
}

/// The sizes of one call, checked against every input.
#[derive(Clone, Copy)]
struct Dims4 {
    time: usize,
    batch: usize,
    input: usize,
    cell: usize,
    /// Steps computed: `seq_len_max`.
    steps: usize,
}

fn check_dims(ctx: &KernelContext<'_>, grad: bool) -> KResult<Dims4> {
    let seq = ctx.input(0);
    if seq.num_elements() != 1 {
        return Err(KernelError::invalid(format!(
            "seq_len_max must be a scalar, got shape {:?}",
            seq.shape()
        )));
    }
    let x = ctx.input(1).shape();
    let [time, batch, input] = x[..] else {
        return Err(KernelError::invalid(format!(
            "x must be 3-D [time, batch, input], got shape {x:?}"
        )));
    };
    let w = ctx.input(4).shape();
    let cell = match w {
        [_, n] if n % 4 == 0 => n / 4,
        _ => {
            return Err(KernelError::invalid(format!(
                "w must be [input + cell, 4 * cell], got shape {w:?}"
            )))
        }
    };
    let want: [(usize, &str, Vec<usize>); 7] = [
        (2, "cs_prev", vec![batch, cell]),
        (3, "h_prev", vec![batch, cell]),
        (4, "w", vec![input + cell, 4 * cell]),
        (5, "wci", vec![cell]),
        (6, "wcf", vec![cell]),
        (7, "wco", vec![cell]),
        (8, "b", vec![4 * cell]),
    ];
    for (i, name, dims) in want {
        if ctx.input(i).shape() != dims.as_slice() {
            return Err(KernelError::invalid(format!(
                "{name} must have shape {dims:?} (x is {x:?}, w is {w:?}), got {:?}",
                ctx.input(i).shape()
            )));
        }
    }
    if grad {
        let names = ["i", "cs", "f", "o", "ci", "co", "h", "cs_grad", "h_grad"];
        for (k, name) in names.iter().enumerate() {
            let s = ctx.input(9 + k).shape();
            if s != [time, batch, cell] {
                return Err(KernelError::invalid(format!(
                    "{name} must have shape [{time}, {batch}, {cell}], got {s:?}"
                )));
            }
        }
    }
    let s = seq.get_i64(0);
    if s < 0 || s as u64 > time as u64 {
        return Err(KernelError::invalid(format!(
            "seq_len_max must be in [0, {time}] (x's time dim), got {s}"
        )));
    }
    Ok(Dims4 {
        time,
        batch,
        input,
        cell,
        steps: s as usize,
    })
}

fn output<T: LstmElem>(dims: &[usize], data: Vec<T>) -> Tensor {
    Tensor::from_parts(Dims::from_slice(dims), T::into_buffer(data))
}

fn block_lstm<T: LstmElem>(a: Attrs) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
        let d = check_dims(ctx, false)?;
        let (tb, c, h4) = (d.batch, d.cell, 4 * d.cell);
        let x = ctx.input(1).as_slice::<T>()?;
        let cs0 = ctx.input(2).as_slice::<T>()?;
        let h0 = ctx.input(3).as_slice::<T>()?;
        let w = ctx.input(4).as_slice::<T>()?;
        let (wci, wcf, wco) = (
            ctx.input(5).as_slice::<T>()?,
            ctx.input(6).as_slice::<T>()?,
            ctx.input(7).as_slice::<T>()?,
        );
        let b = ctx.input(8).as_slice::<T>()?;
        let n = d.time * tb * c;
        let mut outs: [Vec<T>; 7] = std::array::from_fn(|_| vec![T::zero(); n]);
        let rows = d.steps * tb;
        // The input half of every step's pre-activations at once: x @ w[..input].
        let mut icfo = vec![T::zero(); rows * h4];
        if rows > 0 {
            let xm = MatRef {
                data: &x[..rows * d.input],
                rs: d.input,
                cs: 1,
            };
            let wx = MatRef {
                data: &w[..d.input * h4],
                rs: h4,
                cs: 1,
            };
            let par = super::matmul_op::parallel_work(rows, h4, d.input);
            gemm_product(
                rows,
                h4,
                d.input,
                xm,
                wx,
                &mut icfo,
                false,
                T::zero(),
                T::one(),
                par,
            )?;
        }
        let wh = MatRef {
            data: &w[d.input * h4..],
            rs: h4,
            cs: 1,
        };
        let fb = T::from_f64(a.forget_bias);
        let clip = (a.cell_clip > 0.0).then(|| T::from_f64(a.cell_clip));
        let [oi, ocs, of, oo, oci, oco, oh] = &mut outs;
        for t in 0..d.steps {
            let z = &mut icfo[t * tb * h4..(t + 1) * tb * h4];
            let span = t * tb * c..(t + 1) * tb * c;
            let (h_prev, cs_prev): (&[T], &[T]) = if t == 0 {
                (h0, cs0)
            } else {
                let p = (t - 1) * tb * c..t * tb * c;
                (&oh[p.clone()], &ocs[p])
            };
            let hm = MatRef {
                data: h_prev,
                rs: c,
                cs: 1,
            };
            let par = super::matmul_op::parallel_work(tb, h4, c);
            gemm_product(tb, h4, c, hm, wh, z, true, T::one(), T::one(), par)?;
            let cs_prev = cs_prev.to_vec();
            let (i_t, cs_t, f_t, o_t) = (
                &mut oi[span.clone()],
                &mut ocs[span.clone()],
                &mut of[span.clone()],
                &mut oo[span.clone()],
            );
            let (ci_t, co_t, h_t) = (
                &mut oci[span.clone()],
                &mut oco[span.clone()],
                &mut oh[span],
            );
            for r in 0..tb {
                let zr = &z[r * h4..(r + 1) * h4];
                let o = r * c;
                for j in 0..c {
                    let csp = cs_prev[o + j];
                    let (mut zi, zc, mut zf, mut zo) = (
                        zr[j] + b[j],
                        zr[c + j] + b[c + j],
                        zr[2 * c + j] + b[2 * c + j],
                        zr[3 * c + j] + b[3 * c + j],
                    );
                    if a.use_peephole {
                        zi = zi + csp * wci[j];
                        zf = zf + csp * wcf[j];
                    }
                    let i = T::sigmoid(zi);
                    let f = T::sigmoid(zf + fb);
                    let ci = T::tanh_act(zc);
                    let mut cs = ci * i + csp * f;
                    if let Some(cl) = clip {
                        if cs > cl {
                            cs = cl;
                        } else if cs < -cl {
                            cs = -cl;
                        }
                    }
                    if a.use_peephole {
                        zo = zo + cs * wco[j];
                    }
                    let og = T::sigmoid(zo);
                    let co = T::tanh_act(cs);
                    i_t[o + j] = i;
                    cs_t[o + j] = cs;
                    f_t[o + j] = f;
                    o_t[o + j] = og;
                    ci_t[o + j] = ci;
                    co_t[o + j] = co;
                    h_t[o + j] = co * og;
                }
            }
        }
        let dims = [d.time, d.batch, d.cell];
        for v in outs {
            ctx.set_output(output(&dims, v));
        }
        Ok(())
    })
}

fn block_lstm_grad<T: LstmElem>(a: Attrs) -> Box<dyn OpKernel> {
    Box::new(move |ctx: &mut KernelContext<'_>| -> KResult {
        let d = check_dims(ctx, true)?;
        let (tb, c, h4, ni) = (d.batch, d.cell, 4 * d.cell, d.input);
        let sl = |k: usize| ctx.input(k).as_slice::<T>();
        let (x, cs0, h0, w) = (sl(1)?, sl(2)?, sl(3)?, sl(4)?);
        let (wci, wcf, wco) = (sl(5)?, sl(6)?, sl(7)?);
        let (ai, acs, af, ao, aci, aco, ah) =
            (sl(9)?, sl(10)?, sl(11)?, sl(12)?, sl(13)?, sl(14)?, sl(15)?);
        let (gcs, gh) = (sl(16)?, sl(17)?);
        let rows = d.steps * tb;
        // Every step's gate gradients, [steps * batch, 4 * cell], in the forward's gate order.
        let mut dicfo = vec![T::zero(); rows * h4];
        // The gradients carried to the previous step's cs and h.
        let mut dcs_next = vec![T::zero(); tb * c];
        let mut dh_next = vec![T::zero(); tb * c];
        let (mut dwci, mut dwcf, mut dwco) =
            (vec![T::zero(); c], vec![T::zero(); c], vec![T::zero(); c]);
        // w[input..]^T as a [4 * cell, cell] operand (strides only).
        let wh_t = MatRef {
            data: &w[ni * h4..],
            rs: 1,
            cs: h4,
        };
        for t in (0..d.steps).rev() {
            let span = t * tb * c..(t + 1) * tb * c;
            let cs_prev: &[T] = if t == 0 {
                cs0
            } else {
                &acs[(t - 1) * tb * c..t * tb * c]
            };
            let dz = &mut dicfo[t * tb * h4..(t + 1) * tb * h4];
            let (i, cs, f, o, ci, co) = (
                &ai[span.clone()],
                &acs[span.clone()],
                &af[span.clone()],
                &ao[span.clone()],
                &aci[span.clone()],
                &aco[span.clone()],
            );
            let (gcs_t, gh_t) = (&gcs[span.clone()], &gh[span]);
            for r in 0..tb {
                let o_ = r * c;
                let dzr = &mut dz[r * h4..(r + 1) * h4];
                for j in 0..c {
                    let k = o_ + j;
                    let dh = gh_t[k] + dh_next[k];
                    let one = T::one();
                    let d_o = o[k] * (one - o[k]) * dh * co[k];
                    let mut dcs = dh * o[k] * (one - co[k] * co[k]) + gcs_t[k] + dcs_next[k];
                    if a.use_peephole {
                        dcs = dcs + d_o * wco[j];
                    }
                    let dci = dcs * i[k] * (one - ci[k] * ci[k]);
                    let df = dcs * cs_prev[k] * f[k] * (one - f[k]);
                    let di = dcs * ci[k] * i[k] * (one - i[k]);
                    dzr[j] = di;
                    dzr[c + j] = dci;
                    dzr[2 * c + j] = df;
                    dzr[3 * c + j] = d_o;
                    let mut dcsp = dcs * f[k];
                    if a.use_peephole {
                        dcsp = dcsp + di * wci[j] + df * wcf[j];
                        dwci[j] = dwci[j] + di * cs_prev[k];
                        dwcf[j] = dwcf[j] + df * cs_prev[k];
                        dwco[j] = dwco[j] + d_o * cs[k];
                    }
                    dcs_next[k] = dcsp;
                }
            }
            // h_prev's gradient: dicfo_t @ w[input..]^T.
            let dzm = MatRef {
                data: &dicfo[t * tb * h4..(t + 1) * tb * h4],
                rs: h4,
                cs: 1,
            };
            let par = super::matmul_op::parallel_work(tb, c, h4);
            gemm_product(
                tb,
                c,
                h4,
                dzm,
                wh_t,
                &mut dh_next,
                false,
                T::zero(),
                T::one(),
                par,
            )?;
        }
        // Over all steps at once: x_grad = dicfo @ w[..input]^T, w_grad = [x, h_prev]^T @ dicfo,
        // b_grad = column sums of dicfo.
        let mut x_grad = vec![T::zero(); d.time * tb * ni];
        let mut w_grad = vec![T::zero(); (ni + c) * h4];
        let mut b_grad = vec![T::zero(); h4];
        if rows > 0 {
            let dz_all = MatRef {
                data: &dicfo,
                rs: h4,
                cs: 1,
            };
            let wx_t = MatRef {
                data: &w[..ni * h4],
                rs: 1,
                cs: h4,
            };
            let par = super::matmul_op::parallel_work(rows, ni, h4);
            gemm_product(
                rows,
                ni,
                h4,
                dz_all,
                wx_t,
                &mut x_grad[..rows * ni],
                false,
                T::zero(),
                T::one(),
                par,
            )?;
            // x^T as an [input, rows] operand.
            let x_t = MatRef {
                data: &x[..rows * ni],
                rs: 1,
                cs: ni,
            };
            let par = super::matmul_op::parallel_work(ni, h4, rows);
            gemm_product(
                ni,
                h4,
                rows,
                x_t,
                dz_all,
                &mut w_grad[..ni * h4],
                false,
                T::zero(),
                T::one(),
                par,
            )?;
            // h_prev over all steps: h0, then h[0..steps - 1].
            let hp: Vec<T> = h0
                .iter()
                .chain(&ah[..(d.steps - 1) * tb * c])
                .copied()
                .collect();
            let hp_t = MatRef {
                data: &hp,
                rs: 1,
                cs: c,
            };
            let par = super::matmul_op::parallel_work(c, h4, rows);
            gemm_product(
                c,
                h4,
                rows,
                hp_t,
                dz_all,
                &mut w_grad[ni * h4..],
                false,
                T::zero(),
                T::one(),
                par,
            )?;
            for row in dicfo.chunks_exact(h4.max(1)) {
                for (s, &v) in b_grad.iter_mut().zip(row) {
                    *s = *s + v;
                }
            }
        }
        let outs: [(Vec<usize>, Vec<T>); 8] = [
            (vec![d.time, tb, ni], x_grad),
            (vec![tb, c], dcs_next),
            (vec![tb, c], dh_next),
            (vec![ni + c, h4], w_grad),
            (vec![c], dwci),
            (vec![c], dwcf),
            (vec![c], dwco),
            (vec![h4], b_grad),
        ];
        for (dims, v) in outs {
            ctx.set_output(output(&dims, v));
        }
        Ok(())
    })
}
