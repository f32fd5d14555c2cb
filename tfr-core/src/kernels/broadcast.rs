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

/// How a smaller operand repeats along a larger one in the two common broadcasts, which then
/// run as contiguous passes instead of index arithmetic per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// The small operand has the large one's trailing dims (a bias `[n]` over `[m, n]`):
    /// element `i` pairs with `small[i % len]`.
    Rows(usize),
    /// The small operand has the large one's leading dims followed by ones (`[m, 1]` over
    /// `[m, n]`): element `i` pairs with `small[i / inner]`.
    Cols(usize),
}

/// The [`Repeat`] of `small` broadcast against `big` when the broadcast's result has `big`'s
/// shape and follows one of the two patterns (neither operand empty).
pub fn repeat_pattern(big: &[usize], small: &[usize]) -> Option<Repeat> {
    if small.len() > big.len() {
        return None;
    }
    let total: usize = big.iter().product();
    let len: usize = small.iter().product();
    if total == 0 || len == 0 {
        return None;
    }
    let pad = big.len() - small.len();
    let s = |i: usize| if i < pad { 1 } else { small[i - pad] };
    let rank = big.len();
    let first = (0..rank).find(|&i| s(i) != 1).unwrap_or(rank);
    if (first..rank).all(|i| s(i) == big[i]) {
        return Some(Repeat::Rows(len));
    }
    let end = (0..rank).rev().find(|&i| s(i) != 1).map_or(0, |i| i + 1);
    if (0..end).all(|i| s(i) == big[i]) {
        return Some(Repeat::Cols(big[end..].iter().product()));
    }
    None
}

/// `f(big[i], small[..])` for every element of `big`, paired as `r` says, into a new vector.
pub fn apply_repeat<A: Copy, B: Copy, U>(
    big: &[A],
    small: &[B],
    r: Repeat,
    f: impl Fn(A, B) -> U,
) -> Vec<U> {
    let mut out = Vec::with_capacity(big.len());
    match r {
        Repeat::Rows(len) => {
            for chunk in big.chunks_exact(len) {
                out.extend(chunk.iter().zip(small).map(|(&a, &b)| f(a, b)));
            }
        }
        Repeat::Cols(inner) => {
            for (chunk, &b) in big.chunks_exact(inner).zip(small) {
                out.extend(chunk.iter().map(|&a| f(a, b)));
            }
        }
    }
    out
}

/// `big[i] = f(big[i], small[..])` in place, paired as `r` says.
pub fn update_repeat<A: Copy, B: Copy>(
    big: &mut [A],
    small: &[B],
    r: Repeat,
    f: impl Fn(A, B) -> A,
) {
    match r {
        Repeat::Rows(len) => {
            for chunk in big.chunks_exact_mut(len) {
                chunk
                    .iter_mut()
                    .zip(small)
                    .for_each(|(a, &b)| *a = f(*a, b));
            }
        }
        Repeat::Cols(inner) => {
            for (chunk, &b) in big.chunks_exact_mut(inner).zip(small) {
                chunk.iter_mut().for_each(|a| *a = f(*a, b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_patterns() {
        assert_eq!(repeat_pattern(&[4, 3], &[3]), Some(Repeat::Rows(3)));
        assert_eq!(repeat_pattern(&[4, 3], &[1, 3]), Some(Repeat::Rows(3)));
        assert_eq!(repeat_pattern(&[2, 4, 3], &[4, 3]), Some(Repeat::Rows(12)));
        assert_eq!(repeat_pattern(&[4, 3], &[4, 1]), Some(Repeat::Cols(3)));
        assert_eq!(
            repeat_pattern(&[2, 4, 3], &[2, 1, 1]),
            Some(Repeat::Cols(12))
        );
        assert_eq!(
            repeat_pattern(&[2, 4, 3], &[2, 4, 1]),
            Some(Repeat::Cols(3))
        );
        assert_eq!(repeat_pattern(&[2, 4, 3], &[2, 1, 3]), None);
        assert_eq!(repeat_pattern(&[4, 1], &[3]), None);
        assert_eq!(repeat_pattern(&[3], &[4, 3]), None);
        assert_eq!(repeat_pattern(&[0, 3], &[3]), None);
        let (big, small) = ([1, 2, 3, 4, 5, 6], [10, 20]);
        assert_eq!(
            apply_repeat(&big, &small, Repeat::Rows(2), |a, b| a + b),
            [11, 22, 13, 24, 15, 26]
        );
        assert_eq!(
            apply_repeat(&big, &small, Repeat::Cols(3), |a, b| a + b),
            [11, 12, 13, 24, 25, 26]
        );
        let mut m = big;
        update_repeat(&mut m, &small, Repeat::Cols(3), |a, b| a * b);
        assert_eq!(m, [10, 20, 30, 80, 100, 120]);
    }

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
