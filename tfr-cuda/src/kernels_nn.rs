//! CUDA C of the neural-network kernels: fused backward elementwise ops, softmax
//! cross-entropy, the optimizers' updates, convolution through im2col/col2im (the products run
//! in cuBLAS) and pooling, all f32, NHWC.
//!
//! Gradients that sum over several terms (col2im, pooling gradients) gather them per input
//! element instead of scattering with atomics, so their results do not depend on scheduling.
//! Optimizer updates write new buffers (the variable then holds the new one) rather than
//! updating in place, so a value read from a variable earlier in the step never changes.

use cudarc::driver::DeviceRepr;

/// Same-shape binary float ops that gradient rules emit: (op, CUDA C expression over `a`
/// (input 0) and `b` (input 1)), with the CPU kernels' input order and semantics.
pub const GRAD_F32: &[(&str, &str)] = &[
    // ReluGrad(gradients, features): the gradient where the feature is positive.
    ("ReluGrad", "b > 0.0f ? a : 0.0f"),
];

/// Comparisons of f32 operands with a bool (byte) result, with broadcasting: (op, CUDA C
/// expression over `a` and `b`). NaN compares unequal to everything, as on the CPU.
pub const COMPARE_F32: &[(&str, &str)] = &[
    ("Less", "a < b"),
    ("LessEqual", "a <= b"),
    ("Greater", "a > b"),
    ("GreaterEqual", "a >= b"),
    ("Equal", "a == b"),
    ("NotEqual", "a != b"),
];

/// The by-value geometry of the convolution and pooling kernels (NHWC, window `kh x kw`,
/// strides, padding before in each spatial dim); the layout matches `struct TfrConv`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: i64,
    pub h: i64,
    pub w: i64,
    pub c: i64,
    pub oh: i64,
    pub ow: i64,
    pub kh: i64,
    pub kw: i64,
    pub sh: i64,
    pub sw: i64,
    pub pt: i64,
    pub pl: i64,
}

// SAFETY: `ConvGeom` is `repr(C)` plain data, twelve i64s, the layout of `struct TfrConv`.
unsafe impl DeviceRepr for ConvGeom {}

const XENT: &str = r#"
template <typename L>
__device__ void tfr_sparse_xent(const float* x, const L* labels, float* loss, float* back, u64 rows, u64 cols, float* sh) {
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* row = x + r * cols;
        float* out = back + r * cols;
        float m = TFR_NEG_INF;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) m = red_Max(m, row[c]);
        m = block_Max(m, sh);
        float s = 0.0f;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
        s = block_Sum(s, sh);
        i64 lab = (i64)labels[r];
        bool valid = lab >= 0 && (u64)lab < cols;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x)
            out[c] = valid ? expf(row[c] - m) / s - ((i64)c == lab ? 1.0f : 0.0f) : __int_as_float(0x7fc00000);
        if (threadIdx.x == 0) loss[r] = valid ? logf(s) - (row[lab] - m) : __int_as_float(0x7fc00000);
    }
}
extern "C" __global__ void sparse_xent_f32_i32(const float* x, const int* labels, float* loss, float* back, u64 rows, u64 cols) {
    __shared__ float sh[33];
    tfr_sparse_xent(x, labels, loss, back, rows, cols, sh);
}
extern "C" __global__ void sparse_xent_f32_i64(const float* x, const i64* labels, float* loss, float* back, u64 rows, u64 cols) {
    __shared__ float sh[33];
    tfr_sparse_xent(x, labels, loss, back, rows, cols, sh);
}
extern "C" __global__ void xent_f32(const float* x, const float* labels, float* loss, float* back, u64 rows, u64 cols) {
    __shared__ float sh[33];
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* row = x + r * cols;
        const float* lab = labels + r * cols;
        float* out = back + r * cols;
        float m = TFR_NEG_INF;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) m = red_Max(m, row[c]);
        m = block_Max(m, sh);
        float s = 0.0f;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
        s = block_Sum(s, sh);
        float ls = logf(s);
        float l = 0.0f;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) {
            out[c] = expf(row[c] - m) / s - lab[c];
            l += lab[c] * (ls - (row[c] - m));
        }
        l = block_Sum(l, sh);
        if (threadIdx.x == 0) loss[r] = l;
    }
}
"#;

/// The updates read their scalar hyperparameters from device memory (one element each), so a
/// step never waits for the GPU to learn a learning rate.
const APPLY: &str = r#"
extern "C" __global__ void apply_gd_f32(const float* w, const float* lr, const float* g, float* w_out, u64 n) {
    float alpha = lr[0];
    TFR_GRID_LOOP(i, n) { w_out[i] = w[i] - alpha * g[i]; }
}
extern "C" __global__ void apply_momentum_f32(const float* w, const float* acc, const float* lr, const float* g, const float* mom,
                                              float* w_out, float* acc_out, u64 n, int nesterov) {
    float alpha = lr[0], mu = mom[0];
    TFR_GRID_LOOP(i, n) {
        float a = mu * acc[i] + g[i];
        acc_out[i] = a;
        w_out[i] = w[i] - (nesterov ? alpha * (g[i] + mu * a) : alpha * a);
    }
}
extern "C" __global__ void apply_adam_f32(const float* w, const float* m, const float* v, const float* lr_t, const float* beta1,
                                          const float* beta2, const float* epsilon, const float* lr_wd, const float* g,
                                          float* w_out, float* m_out, float* v_out, u64 n) {
    float lr = lr_t[0], b1 = beta1[0], b2 = beta2[0], eps = epsilon[0], wd = lr_wd[0];
    TFR_GRID_LOOP(i, n) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m_out[i] = mi;
        v_out[i] = vi;
        w_out[i] = w[i] - (lr * mi / (sqrtf(vi) + eps) + wd * w[i]);
    }
}
"#;

const CONV: &str = r#"
struct TfrConv { i64 n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl; };
extern "C" __global__ void im2col_f32(const float* x, float* col, u64 n, TfrConv g) {
    TFR_GRID_LOOP(i, n) {
        i64 c = (i64)(i % (u64)g.c); u64 r = i / (u64)g.c;
        i64 kw = (i64)(r % (u64)g.kw); r /= (u64)g.kw;
        i64 kh = (i64)(r % (u64)g.kh); r /= (u64)g.kh;
        i64 ow = (i64)(r % (u64)g.ow); r /= (u64)g.ow;
        i64 oh = (i64)(r % (u64)g.oh); i64 b = (i64)(r / (u64)g.oh);
        i64 ih = oh * g.sh - g.pt + kh, iw = ow * g.sw - g.pl + kw;
        col[i] = (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) ? x[((b * g.h + ih) * g.w + iw) * g.c + c] : 0.0f;
    }
}
extern "C" __global__ void col2im_f32(const float* col, float* x, u64 n, TfrConv g) {
    TFR_GRID_LOOP(i, n) {
        i64 c = (i64)(i % (u64)g.c); u64 r = i / (u64)g.c;
        i64 iw = (i64)(r % (u64)g.w); r /= (u64)g.w;
        i64 ih = (i64)(r % (u64)g.h); i64 b = (i64)(r / (u64)g.h);
        float acc = 0.0f;
        for (i64 kh = 0; kh < g.kh; ++kh) {
            i64 ty = ih + g.pt - kh;
            if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
            i64 oh = ty / g.sh;
            for (i64 kw = 0; kw < g.kw; ++kw) {
                i64 tx = iw + g.pl - kw;
                if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
                i64 ow = tx / g.sw;
                acc += col[((((b * g.oh + oh) * g.ow + ow) * g.kh + kh) * g.kw + kw) * g.c + c];
            }
        }
        x[i] = acc;
    }
}
"#;

const POOL: &str = r#"
/// The input element of the first maximum of window (b, oh, ow) in channel c (strictly greater
/// values replace it, scanning rows then columns, as the CPU kernel does); -1 for an empty window.
__device__ i64 tfr_window_argmax(const float* x, const TfrConv& g, i64 b, i64 oh, i64 ow, i64 c) {
    i64 at = -1; float best = 0.0f;
    for (i64 kh = 0; kh < g.kh; ++kh) {
        i64 ih = oh * g.sh - g.pt + kh;
        if (ih < 0 || ih >= g.h) continue;
        for (i64 kw = 0; kw < g.kw; ++kw) {
            i64 iw = ow * g.sw - g.pl + kw;
            if (iw < 0 || iw >= g.w) continue;
            i64 k = ((b * g.h + ih) * g.w + iw) * g.c + c;
            float v = x[k];
            if (at < 0 || v > best) { best = v; at = k; }
        }
    }
    return at;
}
/// The number of input elements in window (oh, ow): padding does not count.
__device__ __forceinline__ i64 tfr_window_count(const TfrConv& g, i64 oh, i64 ow) {
    i64 y0 = oh * g.sh - g.pt, x0 = ow * g.sw - g.pl;
    i64 y1 = min(y0 + g.kh, g.h), x1 = min(x0 + g.kw, g.w);
    return (y1 - max(y0, (i64)0)) * (x1 - max(x0, (i64)0));
}
#define TFR_SPLIT_OUT(i, g) \
    i64 c = (i64)(i % (u64)g.c); u64 r_ = i / (u64)g.c; \
    i64 ow = (i64)(r_ % (u64)g.ow); r_ /= (u64)g.ow; \
    i64 oh = (i64)(r_ % (u64)g.oh); i64 b = (i64)(r_ / (u64)g.oh);
#define TFR_SPLIT_IN(i, g) \
    i64 c = (i64)(i % (u64)g.c); u64 r_ = i / (u64)g.c; \
    i64 iw = (i64)(r_ % (u64)g.w); r_ /= (u64)g.w; \
    i64 ih = (i64)(r_ % (u64)g.h); i64 b = (i64)(r_ / (u64)g.h);
/// Visits every window (oh, ow) that covers input (ih, iw).
#define TFR_FOR_COVERING_WINDOWS(g, ih, iw, body) \
    for (i64 kh = 0; kh < g.kh; ++kh) { \
        i64 ty = ih + g.pt - kh; \
        if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue; \
        i64 oh = ty / g.sh; \
        for (i64 kw = 0; kw < g.kw; ++kw) { \
            i64 tx = iw + g.pl - kw; \
            if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue; \
            i64 ow = tx / g.sw; \
            body \
        } \
    }
extern "C" __global__ void max_pool_f32(const float* x, float* y, i64* argmax, u64 n, TfrConv g) {
    TFR_GRID_LOOP(i, n) {
        TFR_SPLIT_OUT(i, g)
        i64 at = tfr_window_argmax(x, g, b, oh, ow, c);
        y[i] = at < 0 ? 0.0f : x[at];
        argmax[i] = at;
    }
}
extern "C" __global__ void max_pool_grad_f32(const float* dy, const i64* argmax, float* dx, u64 n, TfrConv g) {
    TFR_GRID_LOOP(i, n) {
        TFR_SPLIT_IN(i, g)
        float acc = 0.0f;
        TFR_FOR_COVERING_WINDOWS(g, ih, iw, {
            i64 o = ((b * g.oh + oh) * g.ow + ow) * g.c + c;
            if (argmax[o] == (i64)i) acc += dy[o];
        })
        dx[i] = acc;
    }
}
extern "C" __global__ void avg_pool_f32(const float* x, float* y, u64 n, TfrConv g) {
    TFR_GRID_LOOP(i, n) {
        TFR_SPLIT_OUT(i, g)
        float s = 0.0f;
        for (i64 kh = 0; kh < g.kh; ++kh) {
            i64 ih = oh * g.sh - g.pt + kh;
            if (ih < 0 || ih >= g.h) continue;
            for (i64 kw = 0; kw < g.kw; ++kw) {
                i64 iw = ow * g.sw - g.pl + kw;
                if (iw < 0 || iw >= g.w) continue;
                s += x[((b * g.h + ih) * g.w + iw) * g.c + c];
            }
        }
        i64 count = tfr_window_count(g, oh, ow);
        y[i] = count > 0 ? s / (float)count : 0.0f;
    }
}
extern "C" __global__ void avg_pool_grad_f32(const float* dy, float* dx, u64 n, TfrConv g) {
    TFR_GRID_LOOP(i, n) {
        TFR_SPLIT_IN(i, g)
        float acc = 0.0f;
        TFR_FOR_COVERING_WINDOWS(g, ih, iw, {
            acc += dy[((b * g.oh + oh) * g.ow + ow) * g.c + c] / (float)tfr_window_count(g, oh, ow);
        })
        dx[i] = acc;
    }
}
"#;

/// `SelectV2` over operands of one shape (the host broadcasts them first) and `RandomUniform`
/// from TensorFlow's Philox4x32-10 stream exactly as the CPU kernel draws it: element `i` is
/// word `i % 4` of block `pos0 + i / 4`, keeping its top 24 bits.
const SELECT_RANDOM: &str = r#"
extern "C" __global__ void select_f32(const unsigned char* c, const float* t, const float* e, float* y, u64 n) {
    TFR_GRID_LOOP(i, n) { y[i] = c[i] ? t[i] : e[i]; }
}
extern "C" __global__ void random_uniform_f32(float* y, u64 n, u64 pos0, unsigned int k0, unsigned int k1,
                                              unsigned int h0, unsigned int h1) {
    TFR_GRID_LOOP(i, n) {
        u64 pos = pos0 + i / 4;
        unsigned int c0 = (unsigned int)pos, c1 = (unsigned int)(pos >> 32), c2 = h0, c3 = h1;
        unsigned int a = k0, b = k1;
        for (int r = 0; r < 10; ++r) {
            unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
            unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
            c0 = hi1 ^ c1 ^ a; c1 = lo1; c2 = hi0 ^ c3 ^ b; c3 = lo0;
            a += 0x9E3779B9u; b += 0xBB67AE85u;
        }
        unsigned int w = (i % 4 == 0) ? c0 : (i % 4 == 1) ? c1 : (i % 4 == 2) ? c2 : c3;
        y[i] = (float)(w >> 8) * (1.0f / 16777216.0f);
    }
}
"#;

fn compare_kernels(op: &str, expr: &str) -> String {
    format!(
        r#"
extern "C" __global__ void cmp_{op}_f32(const float* x, const float* y, unsigned char* z, u64 n) {{
    TFR_GRID_LOOP(i, n) {{ float a = x[i]; float b = y[i]; z[i] = ({expr}) ? 1 : 0; }}
}}
extern "C" __global__ void bcast_cmp_{op}_f32(const float* x, const float* y, unsigned char* z, u64 n, TfrBcast s) {{
    TFR_GRID_LOOP(i, n) {{
        u64 rem = i; i64 ia = 0, ib = 0;
        for (int d = s.rank - 1; d >= 0; --d) {{
            i64 c = (i64)(rem % (u64)s.dims[d]);
            rem /= (u64)s.dims[d];
            ia += c * s.sa[d];
            ib += c * s.sb[d];
        }}
        float a = x[ia]; float b = y[ib]; z[i] = ({expr}) ? 1 : 0;
    }}
}}
"#
    )
}

fn grad_kernel(op: &str, expr: &str) -> String {
    format!(
        r#"
extern "C" __global__ void binary_{op}_f32(const float* x, const float* y, float* z, u64 n) {{
    TFR_GRID_LOOP(i, n) {{ float a = x[i]; float b = y[i]; z[i] = ({expr}); }}
}}
"#
    )
}

/// The CUDA C of this module's kernels (after the common prelude and the block reductions).
pub fn source() -> String {
    let mut s = String::new();
    for (op, expr) in GRAD_F32 {
        s += &grad_kernel(op, expr);
    }
    for (op, expr) in COMPARE_F32 {
        s += &compare_kernels(op, expr);
    }
    s += SELECT_RANDOM;
    s += XENT;
    s += APPLY;
    s += CONV;
    s += POOL;
    s
}

/// Every kernel name in [`source`].
pub fn kernel_names() -> Vec<String> {
    let mut names: Vec<String> = GRAD_F32
        .iter()
        .map(|(op, _)| format!("binary_{op}_f32"))
        .collect();
    for (op, _) in COMPARE_F32 {
        names.push(format!("cmp_{op}_f32"));
        names.push(format!("bcast_cmp_{op}_f32"));
    }
    names.extend(
        [
            "select_f32",
            "random_uniform_f32",
            "sparse_xent_f32_i32",
            "sparse_xent_f32_i64",
            "xent_f32",
            "apply_gd_f32",
            "apply_momentum_f32",
            "apply_adam_f32",
            "im2col_f32",
            "col2im_f32",
            "max_pool_f32",
            "max_pool_grad_f32",
            "avg_pool_f32",
            "avg_pool_grad_f32",
        ]
        .map(String::from),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_geom_matches_the_c_struct_layout() {
        assert_eq!(std::mem::size_of::<ConvGeom>(), 12 * 8);
    }
}
