//! The CUDA C source of every kernel, generated from the op tables below, compiled to PTX with
//! NVRTC once per process and loaded once per device.
//!
//! Elementwise expressions are written over `a` (and `b` for binary ops) as CUDA C `float`
//! expressions. Each unary op `Op` becomes `unary_Op_f32`; each binary op becomes
//! `binary_Op_f32` (operands of the output's shape) and `bcast_Op_f32` (numpy broadcasting
//! through per-operand strides, 0 along broadcast dims). Each reduction becomes
//! `reduce_Op_f32` over the last axis, one block per row; softmax is `softmax_f32`. The
//! data-movement kernels ([`crate::kernels_array`]) and the neural-network kernels
//! ([`crate::kernels_nn`]) follow in the same module.

use crate::{CudaError, Result};
use cudarc::driver::{CudaContext, CudaFunction, DeviceRepr};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Unary float ops: (op name, CUDA C expression over `a`). Semantics follow the CPU kernels
/// (NaN passes through `Relu`, `Round` is half-to-even, `Sign(0) = 0`).
pub const UNARY_F32: &[(&str, &str)] = &[
    ("Neg", "-a"),
    ("Abs", "fabsf(a)"),
    ("Sign", "a > 0.0f ? 1.0f : (a < 0.0f ? -1.0f : a)"),
    ("Square", "a * a"),
    ("Sqrt", "sqrtf(a)"),
    ("Rsqrt", "1.0f / sqrtf(a)"),
    ("Exp", "expf(a)"),
    ("Expm1", "expm1f(a)"),
    ("Log", "logf(a)"),
    ("Log1p", "log1pf(a)"),
    ("Sin", "sinf(a)"),
    ("Cos", "cosf(a)"),
    ("Tanh", "tanhf(a)"),
    (
        "Sigmoid",
        "a >= 0.0f ? 1.0f / (1.0f + expf(-a)) : expf(a) / (1.0f + expf(a))",
    ),
    ("Erf", "erff(a)"),
    ("Floor", "floorf(a)"),
    ("Ceil", "ceilf(a)"),
    ("Round", "rintf(a)"),
    ("Reciprocal", "1.0f / a"),
    ("Relu", "a < 0.0f ? 0.0f : a"),
    ("Relu6", "a > 6.0f ? 6.0f : (a < 0.0f ? 0.0f : a)"),
    ("Elu", "a > 0.0f ? a : expm1f(a)"),
    (
        "Selu",
        "a > 0.0f ? 1.0507009873554805f * a : 1.7580993408473769f * expm1f(a)",
    ),
    (
        "Softplus",
        "(a < 0.0f ? 0.0f : a) + log1pf(expf(-fabsf(a)))",
    ),
];

/// Binary float ops with broadcasting: (op name, CUDA C expression over `a` and `b`).
/// `FloorDiv` divides in double, as the CPU kernel does, so both floor the same quotient.
pub const BINARY_F32: &[(&str, &str)] = &[
    ("Add", "a + b"),
    ("Sub", "a - b"),
    ("Mul", "a * b"),
    ("Div", "a / b"),
    ("FloorDiv", "(float)floor((double)a / (double)b)"),
    ("FloorMod", "tfr_floor_mod(a, b)"),
    ("TruncateDiv", "truncf(a / b)"),
    ("TruncateMod", "fmodf(a, b)"),
    ("SquaredDifference", "(a - b) * (a - b)"),
    ("Pow", "powf(a, b)"),
    ("Maximum", "(a > b || a != a) ? a : b"),
    ("Minimum", "(a < b || a != a) ? a : b"),
];

/// Reductions over the last axis: (op name, identity, combine over `a` and `b`, result from
/// the combined value `v` and the row length `cols`).
pub const REDUCTIONS_F32: &[(&str, &str, &str, &str)] = &[
    ("Sum", "0.0f", "a + b", "v"),
    ("Mean", "0.0f", "a + b", "v / (float)cols"),
    ("Max", "TFR_NEG_INF", "(a > b || a != a) ? a : b", "v"),
    ("Min", "TFR_POS_INF", "(a < b || a != a) ? a : b", "v"),
    ("Prod", "1.0f", "a * b", "v"),
];

/// Most dims a broadcasting binary op handles (after the host merges none: shapes as given).
pub const MAX_RANK: usize = 8;

/// Threads per block of the row kernels (reductions, softmax): a multiple of 32.
pub const ROW_THREADS: u32 = 256;

/// The by-value argument of the `bcast_*` kernels; the layout matches `struct TfrBcast`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bcast {
    pub rank: i32,
    pub pad: i32,
    pub dims: [i64; MAX_RANK],
    pub sa: [i64; MAX_RANK],
    pub sb: [i64; MAX_RANK],
}

// SAFETY: `Bcast` is `repr(C)` plain data (integers only, explicit padding) with the same
// layout as the kernels' `struct TfrBcast` (int, int, then three arrays of 8 long longs).
unsafe impl DeviceRepr for Bcast {}

const PRELUDE: &str = r#"
typedef unsigned long long u64;
typedef long long i64;
#define TFR_POS_INF __int_as_float(0x7f800000)
#define TFR_NEG_INF __int_as_float(0xff800000)
#define TFR_MAX_RANK 8
struct TfrBcast { int rank; int pad; i64 dims[TFR_MAX_RANK]; i64 sa[TFR_MAX_RANK]; i64 sb[TFR_MAX_RANK]; };
__device__ __forceinline__ float tfr_floor_mod(float a, float b) {
    float r = fmodf(a, b);
    return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
}
#define TFR_GRID_LOOP(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)blockDim.x * gridDim.x)
"#;

fn unary_kernel(op: &str, expr: &str) -> String {
    format!(
        r#"
extern "C" __global__ void unary_{op}_f32(const float* x, float* y, u64 n) {{
    TFR_GRID_LOOP(i, n) {{ float a = x[i]; y[i] = ({expr}); }}
}}
"#
    )
}

fn binary_kernels(op: &str, expr: &str) -> String {
    format!(
        r#"
extern "C" __global__ void binary_{op}_f32(const float* x, const float* y, float* z, u64 n) {{
    TFR_GRID_LOOP(i, n) {{ float a = x[i]; float b = y[i]; z[i] = ({expr}); }}
}}
extern "C" __global__ void bcast_{op}_f32(const float* x, const float* y, float* z, u64 n, TfrBcast s) {{
    TFR_GRID_LOOP(i, n) {{
        u64 rem = i; i64 ia = 0, ib = 0;
        for (int d = s.rank - 1; d >= 0; --d) {{
            i64 c = (i64)(rem % (u64)s.dims[d]);
            rem /= (u64)s.dims[d];
            ia += c * s.sa[d];
            ib += c * s.sb[d];
        }}
        float a = x[ia]; float b = y[ib]; z[i] = ({expr});
    }}
}}
"#
    )
}

/// `block_Op(v, sh)`: the combination of `v` over the block, returned to every thread. `sh`
/// has 33 floats; all threads of the block must call it.
fn block_reduce(op: &str, init: &str, combine: &str) -> String {
    format!(
        r#"
__device__ __forceinline__ float red_{op}(float a, float b) {{ return ({combine}); }}
__device__ float block_{op}(float v, float* sh) {{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = red_{op}(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {{
        int nw = (blockDim.x + 31) >> 5;
        v = lane < nw ? sh[lane] : ({init});
        for (int o = 16; o > 0; o >>= 1) v = red_{op}(v, __shfl_down_sync(0xffffffffu, v, o));
        if (lane == 0) sh[32] = v;
    }}
    __syncthreads();
    return sh[32];
}}
"#
    )
}

fn reduce_kernel(op: &str, init: &str, result: &str) -> String {
    format!(
        r#"
extern "C" __global__ void reduce_{op}_f32(const float* x, float* y, u64 rows, u64 cols) {{
    __shared__ float sh[33];
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {{
        const float* row = x + r * cols;
        float v = ({init});
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) v = red_{op}(v, row[c]);
        v = block_{op}(v, sh);
        if (threadIdx.x == 0) y[r] = ({result});
    }}
}}
"#
    )
}

const SOFTMAX: &str = r#"
extern "C" __global__ void softmax_f32(const float* x, float* y, u64 rows, u64 cols, int take_log) {
    __shared__ float sh[33];
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* row = x + r * cols;
        float* out = y + r * cols;
        float m = TFR_NEG_INF;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) m = red_Max(m, row[c]);
        m = block_Max(m, sh);
        float s = 0.0f;
        for (u64 c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
        s = block_Sum(s, sh);
        if (take_log) {
            float ls = logf(s);
            for (u64 c = threadIdx.x; c < cols; c += blockDim.x) out[c] = row[c] - m - ls;
        } else {
            for (u64 c = threadIdx.x; c < cols; c += blockDim.x) out[c] = expf(row[c] - m) / s;
        }
    }
}
"#;

/// The complete CUDA C source of every kernel.
pub fn source() -> String {
    let mut s = String::from(PRELUDE);
    for (op, expr) in UNARY_F32 {
        s += &unary_kernel(op, expr);
    }
    for (op, expr) in BINARY_F32 {
        s += &binary_kernels(op, expr);
    }
    for (op, init, combine, result) in REDUCTIONS_F32 {
        s += &block_reduce(op, init, combine);
        s += &reduce_kernel(op, init, result);
    }
    s += SOFTMAX;
    s += &crate::kernels_array::source();
    s += &crate::kernels_nn::source();
    s
}

/// Every kernel name in [`source`].
pub fn kernel_names() -> Vec<String> {
    let mut names: Vec<String> = UNARY_F32
        .iter()
        .map(|(op, _)| format!("unary_{op}_f32"))
        .collect();
    for (op, _) in BINARY_F32 {
        names.push(format!("binary_{op}_f32"));
        names.push(format!("bcast_{op}_f32"));
    }
    names.extend(
        REDUCTIONS_F32
            .iter()
            .map(|(op, ..)| format!("reduce_{op}_f32")),
    );
    names.push("softmax_f32".into());
    names.extend(crate::kernels_array::kernel_names());
    names.extend(crate::kernels_nn::kernel_names());
    names
}

/// Compiles [`source`] with NVRTC. Needs only the NVRTC library, no GPU.
pub fn compile() -> Result<Ptx> {
    if !crate::nvrtc_library_present() {
        return Err(CudaError("NVRTC (libnvrtc.so) was not found".into()));
    }
    let opts = cudarc::nvrtc::CompileOptions {
        name: Some("tfr_kernels.cu".into()),
        ..Default::default()
    };
    crate::guarded("NVRTC", || {
        cudarc::nvrtc::compile_ptx_with_opts(source(), opts)
            .map_err(|e| CudaError(format!("compiling the kernels with NVRTC: {e}")))
    })
}

/// The PTX of every kernel, compiled on first use and kept for the process.
fn ptx() -> Result<Ptx> {
    static PTX: OnceLock<std::result::Result<Ptx, String>> = OnceLock::new();
    PTX.get_or_init(|| compile().map_err(|e| e.0))
        .clone()
        .map_err(CudaError)
}

/// The kernels of one device, by name.
pub struct Kernels {
    functions: HashMap<String, CudaFunction>,
}

impl Kernels {
    pub(crate) fn load(ctx: &Arc<CudaContext>) -> Result<Kernels> {
        let module = ctx.load_module(ptx()?)?;
        let mut functions = HashMap::new();
        for name in kernel_names() {
            let f = module
                .load_function(&name)
                .map_err(|e| CudaError(format!("loading kernel `{name}`: {e}")))?;
            functions.insert(name, f);
        }
        Ok(Kernels { functions })
    }

    pub(crate) fn get(&self, name: &str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| CudaError(format!("no CUDA kernel `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_name_is_defined_once_in_the_source() {
        let src = source();
        for name in kernel_names() {
            let decl = format!("void {name}(");
            assert_eq!(src.matches(&decl).count(), 1, "{name}");
        }
    }

    #[test]
    fn bcast_matches_the_c_struct_layout() {
        // int, int, then 3 x 8 long longs, no padding.
        assert_eq!(std::mem::size_of::<Bcast>(), 8 + 3 * 8 * MAX_RANK);
        assert_eq!(std::mem::align_of::<Bcast>(), 8);
    }
}
