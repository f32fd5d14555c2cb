//! Numpy broadcasting for elementwise kernels: shape checks and index iteration.

use crate::error::{KResult, KernelError};
use crate::tensor::Dims;
use smallvec::SmallVec;

/// The broadcast shape of several operand shapes, or an error naming them.
pub fn broadcast_shape(shapes: &[&[usize]]) -> KResult<Dims> {
    let mut out: Dims = shapes[0].into();
    for s in &shapes[1..] {
        out = tfr_graph::broadcast_shapes(&out, s)
            .ok_or_else(|| {
                KernelError::invalid(format!("shapes {:?} are not broadcast-compatible", shapes))
            })?
            .into();
    }
    Ok(out)
}

/// Strides of `shape` aligned to `out`'s rank, zero along broadcast dims.
fn aligned_strides(shape: &[usize], out: &[usize]) -> SmallVec<[usize; 6]> {
    let offset = out.len() - shape.len();
    let mut strides: SmallVec<[usize; 6]> = SmallVec::from_elem(0, out.len());
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[offset + i] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

/// Calls `f(out_index, [offset in each operand])` for every element of `out`, in row-major order.
pub fn for_each_broadcast<const N: usize>(
    out: &[usize],
    shapes: [&[usize]; N],
    mut f: impl FnMut(usize, [usize; N]),
) {
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    if out.is_empty() {
        f(0, [0; N]);
        return;
    }
    let strides: [SmallVec<[usize; 6]>; N] =
        std::array::from_fn(|k| aligned_strides(shapes[k], out));
    let rank = out.len();
    let inner = out[rank - 1];
    let inner_strides: [usize; N] = std::array::from_fn(|k| strides[k][rank - 1]);
    let mut idx: SmallVec<[usize; 6]> = SmallVec::from_elem(0, rank);
    let mut base = [0usize; N];
    let mut o = 0;
    loop {
        for j in 0..inner {
            f(o, std::array::from_fn(|k| base[k] + j * inner_strides[k]));
            o += 1;
        }
        // Advance the outer index (all dims but the last), carrying.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..N {
                base[k] += strides[k][d];
            }
            if idx[d] < out[d] {
                break;
            }
            for k in 0..N {
                base[k] -= strides[k][d] * out[d];
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_broadcast_offsets() {
        let mut seen = Vec::new();
        for_each_broadcast(&[2, 3], [&[2, 1], &[3]], |o, [a, b]| seen.push((o, a, b)));
        assert_eq!(
            seen,
            vec![
                (0, 0, 0),
                (1, 0, 1),
                (2, 0, 2),
                (3, 1, 0),
                (4, 1, 1),
                (5, 1, 2)
            ]
        );
        let mut n = 0;
        for_each_broadcast(&[], [&[], &[]], |_, _| n += 1);
        assert_eq!(n, 1);
        for_each_broadcast(&[0, 3], [&[0, 3], &[3]], |_, _| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn broadcast_shape_errors() {
        assert_eq!(&broadcast_shape(&[&[2, 1], &[1, 3]]).unwrap()[..], &[2, 3]);
        assert!(broadcast_shape(&[&[2], &[3]]).is_err());
    }
}
