//! StridedSlice's masks and their resolution against a concrete input shape, shared by the
//! shape function (`array_ops`), the gradient (`array_grad`) and the CPU kernel so that all
//! agree on every mask.

use crate::error::Result;

/// A strided slice resolved against a concrete input shape; shared by shape inference and the
/// CPU kernel so both agree on every mask.
#[derive(Clone, Debug, PartialEq)]
pub struct StridedSliceSpec {
    /// Per input dim: (start, step, count) of the elements taken.
    pub dims: Vec<(i64, i64, usize)>,
    /// Output shape after new axes are added and shrunk axes removed.
    pub output_shape: Vec<usize>,
}

/// Masks of a strided slice, as in TensorFlow.
#[derive(Clone, Copy, Debug, Default)]
pub struct StridedSliceMasks {
    pub begin: i64,
    pub end: i64,
    pub ellipsis: i64,
    pub new_axis: i64,
    pub shrink_axis: i64,
}

impl StridedSliceSpec {
    pub fn resolve(
        input: &[usize],
        begin: &[i64],
        end: &[i64],
        strides: &[i64],
        m: StridedSliceMasks,
    ) -> Result<StridedSliceSpec, String> {
        if begin.len() != end.len() || begin.len() != strides.len() {
            return Err(format!(
                "begin {begin:?}, end {end:?} and strides {strides:?} must have equal lengths"
            ));
        }
        let bit = |mask: i64, i: usize| mask >> i & 1 == 1;
        // Expand the sparse spec (with ellipsis and new axes) into one entry per input dim.
        let n_real = (0..begin.len())
            .filter(|&i| !bit(m.new_axis, i) && !bit(m.ellipsis, i))
            .count();
        let mut dims = Vec::with_capacity(input.len());
        let mut output_shape = Vec::new();
        let mut d = 0usize;
        let mut seen_ellipsis = false;
        for i in 0..begin.len() {
            if bit(m.ellipsis, i) {
                if seen_ellipsis {
                    return Err("only one ellipsis is allowed".into());
                }
                seen_ellipsis = true;
                let covered = input
                    .len()
                    .checked_sub(n_real)
                    .ok_or("too many indices for the input's rank")?;
                for _ in 0..covered {
                    dims.push((0, 1, input[d]));
                    output_shape.push(input[d]);
                    d += 1;
                }
                continue;
            }
            if bit(m.new_axis, i) {
                output_shape.push(1);
                continue;
            }
            let Some(&n) = input.get(d) else {
                return Err(format!(
                    "index {i} is beyond the input's rank {}",
                    input.len()
                ));
            };
            let n = n as i64;
            let stride = strides[i];
            if stride == 0 {
                return Err(format!("strides[{i}] must not be 0"));
            }
            if bit(m.shrink_axis, i) {
                if stride < 0 {
                    return Err(format!(
                        "strides[{i}] = {stride}: only stride 1 is allowed on an index that \
                         shrinks an axis"
                    ));
                }
                let b = if begin[i] < 0 { begin[i] + n } else { begin[i] };
                if b < 0 || b >= n {
                    return Err(format!(
                        "index {} is out of range for dim {d} of size {n}",
                        begin[i]
                    ));
                }
                dims.push((b, 1, 1));
                d += 1;
                continue;
            }
            let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
            let (lo, hi) = if stride > 0 { (0, n) } else { (-1, n - 1) };
            let norm = |v: i64| if v < 0 { v + n } else { v };
            let b = if bit(m.begin, i) {
                if stride > 0 {
                    lo
                } else {
                    hi
                }
            } else {
                clamp(norm(begin[i]), lo, hi)
            };
            let e = if bit(m.end, i) {
                if stride > 0 {
                    hi
                } else {
                    lo
                }
            } else {
                clamp(norm(end[i]), lo, hi)
            };
            // b and e lie in [-1, n]; a stride of any size (even i64::MIN) cannot overflow.
            let len = (if stride > 0 { e - b } else { b - e }).max(0) as u64;
            let count = len.div_ceil(stride.unsigned_abs());
            dims.push((b, stride, count as usize));
            output_shape.push(count as usize);
            d += 1;
        }
        while d < input.len() {
            dims.push((0, 1, input[d]));
            output_shape.push(input[d]);
            d += 1;
        }
        Ok(StridedSliceSpec { dims, output_shape })
    }
}

pub fn strided_slice_masks(ctx: &crate::attr::Attrs) -> Result<StridedSliceMasks, String> {
    Ok(StridedSliceMasks {
        begin: *ctx.int("begin_mask")?,
        end: *ctx.int("end_mask")?,
        ellipsis: *ctx.int("ellipsis_mask")?,
        new_axis: *ctx.int("new_axis_mask")?,
        shrink_axis: *ctx.int("shrink_axis_mask")?,
    })
}
