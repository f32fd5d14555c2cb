//! CUDA C of the data-movement kernels, by element width rather than dtype (a copy does not
//! care what the bits mean): strided gather and scatter (transpose, slice, tile, broadcast,
//! concat, pad), fills, gathers by index; plus the dtype conversions of `Cast` and the f32
//! segment sum that the gradient of a gather emits.
//!
//! `strided_gather_bN(x, y, n, s)` writes `y[i] = x[offset(i)]` and `strided_scatter_bN`
//! writes `y[offset(i)] = x[i]`, where `offset(i)` splits `i` into coordinates over `s.dims`
//! (row-major) and returns `s.offset + sum(coord[d] * s.strides[d])`.

use crate::kernels::MAX_RANK;
use cudarc::driver::DeviceRepr;

/// Element widths in bytes, with the CUDA C type that moves one element.
pub const WIDTHS: &[(usize, &str)] = &[
    (1, "unsigned char"),
    (2, "unsigned short"),
    (4, "unsigned int"),
    (8, "unsigned long long"),
];

/// Dtypes `Cast` converts between: (name in kernel names, CUDA C type, kind).
pub const CAST_TYPES: &[(&str, &str, CastKind)] = &[
    ("f32", "float", CastKind::Float),
    ("f64", "double", CastKind::Float),
    ("i32", "int", CastKind::Int(-2147483648.0, 2147483647.0)),
    (
        "i64",
        "long long",
        CastKind::Int(-9223372036854775808.0, 9223372036854775807.0),
    ),
    ("u8", "unsigned char", CastKind::Int(0.0, 255.0)),
    ("bool", "unsigned char", CastKind::Bool),
];

/// How a value is converted to a dtype of [`CAST_TYPES`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CastKind {
    Float,
    /// An integer type with its (min, max): floats convert as Rust's `as` does (truncated
    /// toward zero, saturated at the bounds, NaN to 0); integers wrap.
    Int(f64, f64),
    /// Nonzero (NaN included) is true, stored as the byte 1.
    Bool,
}

/// The by-value argument of the strided kernels; the layout matches `struct TfrStrided`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strided {
    pub rank: i32,
    pub pad: i32,
    pub offset: i64,
    pub dims: [i64; MAX_RANK],
    pub strides: [i64; MAX_RANK],
}

// SAFETY: `Strided` is `repr(C)` plain data (integers only, explicit padding) with the layout of
// the kernels' `struct TfrStrided` (int, int, long long, then two arrays of 8 long longs).
unsafe impl DeviceRepr for Strided {}

const STRIDED_PRELUDE: &str = r#"
struct TfrStrided { int rank; int pad; i64 offset; i64 dims[TFR_MAX_RANK]; i64 strides[TFR_MAX_RANK]; };
__device__ __forceinline__ i64 tfr_strided_offset(u64 i, const TfrStrided& s) {
    u64 rem = i; i64 off = s.offset;
    for (int d = s.rank - 1; d >= 0; --d) {
        off += (i64)(rem % (u64)s.dims[d]) * s.strides[d];
        rem /= (u64)s.dims[d];
    }
    return off;
}
"#;

fn width_kernels(bytes: usize, ty: &str) -> String {
    let b = format!("b{bytes}");
    format!(
        r#"
extern "C" __global__ void strided_gather_{b}(const {ty}* x, {ty}* y, u64 n, TfrStrided s) {{
    TFR_GRID_LOOP(i, n) {{ y[i] = x[tfr_strided_offset(i, s)]; }}
}}
extern "C" __global__ void strided_scatter_{b}(const {ty}* x, {ty}* y, u64 n, TfrStrided s) {{
    TFR_GRID_LOOP(i, n) {{ y[tfr_strided_offset(i, s)] = x[i]; }}
}}
extern "C" __global__ void fill_value_{b}(const {ty}* v, {ty}* y, u64 n) {{
    {ty} value = v[0];
    TFR_GRID_LOOP(i, n) {{ y[i] = value; }}
}}
extern "C" __global__ void fill_const_{b}({ty}* y, u64 n, {ty} value) {{
    TFR_GRID_LOOP(i, n) {{ y[i] = value; }}
}}
extern "C" __global__ void gather_{b}_i32(const {ty}* p, const int* idx, {ty}* y, u64 n, u64 nidx, u64 axis_dim, u64 inner) {{
    TFR_GRID_LOOP(i, n) {{ y[i] = tfr_gather_at(p, (i64)idx[(i / inner) % nidx], i, nidx, axis_dim, inner); }}
}}
extern "C" __global__ void gather_{b}_i64(const {ty}* p, const i64* idx, {ty}* y, u64 n, u64 nidx, u64 axis_dim, u64 inner) {{
    TFR_GRID_LOOP(i, n) {{ y[i] = tfr_gather_at(p, idx[(i / inner) % nidx], i, nidx, axis_dim, inner); }}
}}
"#
    )
}

/// Output `i` of a gather reads params at `(outer, index, k)`; an index out of range gives 0
/// (as TensorFlow's GPU kernel does; the CPU kernel reports an error instead).
const GATHER_PRELUDE: &str = r#"
template <typename T>
__device__ __forceinline__ T tfr_gather_at(const T* p, i64 ix, u64 i, u64 nidx, u64 axis_dim, u64 inner) {
    u64 k = i % inner;
    u64 o = i / (inner * nidx);
    if (ix < 0 || (u64)ix >= axis_dim) return (T)0;
    return p[(o * axis_dim + (u64)ix) * inner + k];
}
"#;

/// The CUDA C expression converting `a` (of `from`) to `to`.
fn cast_expr(from: (&str, CastKind), to: (&str, CastKind)) -> String {
    let (to_ty, to_kind) = to;
    match (from.1, to_kind) {
        (_, CastKind::Bool) => "(unsigned char)(a != 0 ? 1 : 0)".into(),
        (CastKind::Float, CastKind::Int(lo, hi)) => format!(
            "(a != a) ? ({to_ty})0 : ((double)a >= {hi:?} ? ({to_ty}){hi_int} : \
             ((double)a <= {lo:?} ? ({to_ty}){lo_int} : ({to_ty})a))",
            hi_int = int_literal(hi),
            lo_int = int_literal(lo),
        ),
        // Integer to integer wraps (two's complement truncation), as Rust's `as` does.
        _ => format!("({to_ty})a"),
    }
}

/// A CUDA C integer literal for a bound of [`CastKind::Int`] (the i64 minimum has no literal).
fn int_literal(v: f64) -> String {
    if v == -9223372036854775808.0 {
        "(-9223372036854775807LL - 1)".into()
    } else if v == 9223372036854775807.0 {
        "9223372036854775807LL".into()
    } else if v == -2147483648.0 {
        "(-2147483647 - 1)".into()
    } else {
        format!("{}", v as i64)
    }
}

/// The name of the `Cast` kernel from `from` to `to` (names of [`CAST_TYPES`]).
pub fn cast_kernel_name(from: &str, to: &str) -> String {
    format!("cast_{from}_to_{to}")
}

const SEGMENT_SUM: &str = r#"
extern "C" __global__ void segment_sum_f32_i32(const float* x, const int* ids, float* y, u64 n, u64 inner, u64 segments) {
    TFR_GRID_LOOP(i, n) {
        i64 s = (i64)ids[i / inner];
        if (s >= 0 && (u64)s < segments) atomicAdd(&y[(u64)s * inner + i % inner], x[i]);
    }
}
extern "C" __global__ void segment_sum_f32_i64(const float* x, const i64* ids, float* y, u64 n, u64 inner, u64 segments) {
    TFR_GRID_LOOP(i, n) {
        i64 s = ids[i / inner];
        if (s >= 0 && (u64)s < segments) atomicAdd(&y[(u64)s * inner + i % inner], x[i]);
    }
}
"#;

/// The CUDA C of this module's kernels (after the common prelude).
pub fn source() -> String {
    let mut s = String::from(STRIDED_PRELUDE);
    s += GATHER_PRELUDE;
    for &(bytes, ty) in WIDTHS {
        s += &width_kernels(bytes, ty);
    }
    for &(from, from_ty, from_kind) in CAST_TYPES {
        for &(to, to_ty, to_kind) in CAST_TYPES {
            let expr = cast_expr((from, from_kind), (to_ty, to_kind));
            s += &format!(
                "\nextern \"C\" __global__ void {name}(const {from_ty}* x, {to_ty}* y, u64 n) {{\n    TFR_GRID_LOOP(i, n) {{ {from_ty} a = x[i]; y[i] = ({expr}); }}\n}}\n",
                name = cast_kernel_name(from, to),
            );
        }
    }
    s += SEGMENT_SUM;
    s
}

/// Every kernel name in [`source`].
pub fn kernel_names() -> Vec<String> {
    let mut names = Vec::new();
    for &(bytes, _) in WIDTHS {
        for k in [
            "strided_gather",
            "strided_scatter",
            "fill_value",
            "fill_const",
        ] {
            names.push(format!("{k}_b{bytes}"));
        }
        names.push(format!("gather_b{bytes}_i32"));
        names.push(format!("gather_b{bytes}_i64"));
    }
    for &(from, ..) in CAST_TYPES {
        for &(to, ..) in CAST_TYPES {
            names.push(cast_kernel_name(from, to));
        }
    }
    names.push("segment_sum_f32_i32".into());
    names.push("segment_sum_f32_i64".into());
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_matches_the_c_struct_layout() {
        // int, int, long long, then 2 x 8 long longs, no padding.
        assert_eq!(std::mem::size_of::<Strided>(), 16 + 2 * 8 * MAX_RANK);
        assert_eq!(std::mem::align_of::<Strided>(), 8);
    }

    #[test]
    fn float_to_int_casts_saturate_like_rust() {
        let e = cast_expr(
            ("f32", CastKind::Float),
            ("int", CastKind::Int(-2147483648.0, 2147483647.0)),
        );
        assert!(e.contains("(a != a) ? (int)0"), "{e}");
        assert!(e.contains("2147483647.0 ? (int)2147483647"), "{e}");
        assert!(e.contains("(int)(-2147483647 - 1)"), "{e}");
        let b = cast_expr(("f32", CastKind::Float), ("unsigned char", CastKind::Bool));
        assert_eq!(b, "(unsigned char)(a != 0 ? 1 : 0)");
    }
}
