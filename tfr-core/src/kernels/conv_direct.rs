//! The direct convolution loops: for filters with few products per output (`DIRECT_K`, e.g. a
//! first layer on one channel) the patch matrix would be too thin for gemm to pay off, so the
//! forward pass and the filter backprop run over a zero-padded copy of the input,
//! accumulating register tiles of output pixels by blocks of output channels.

use super::conv_ops::ConvGeom;
use super::simd::{madd, simd_fn};
use super::spatial_common::ConvElem;

/// Lanes of one accumulator vector of the direct convolution (a 512-bit register of f32).
const LANES: usize = 16;

/// The input of a direct convolution, zero-padded so every tap of every output pixel lies
/// inside, with the offset of each filter row (tap and input channel) from a pixel's base.
pub(super) struct Padded<T> {
    data: Vec<T>,
    hp: usize,
    wp: usize,
    offsets: Vec<usize>,
    /// The largest of `offsets` (0 when there are none).
    max_off: usize,
}

impl ConvGeom {
    pub(super) fn padded<T: ConvElem>(&self, x: &[T]) -> Padded<T> {
        let c = self.c;
        let hp =
            ((self.oh.max(1) - 1) * self.sh + (self.fh - 1) * self.dh + 1).max(self.h + self.pad_t);
        let wp =
            ((self.ow.max(1) - 1) * self.sw + (self.fw - 1) * self.dw + 1).max(self.w + self.pad_l);
        let mut data = vec![T::zero(); self.n * hp * wp * c];
        for img in 0..self.n {
            for y in 0..self.h {
                let src =
                    &x[((img * self.h + y) * self.w) * c..((img * self.h + y + 1) * self.w) * c];
                let at = ((img * hp + y + self.pad_t) * wp + self.pad_l) * c;
                data[at..at + self.w * c].copy_from_slice(src);
            }
        }
        let mut offsets = Vec::with_capacity(self.k());
        for kh in 0..self.fh {
            for kw in 0..self.fw {
                for ci in 0..c {
                    offsets.push((kh * self.dh * wp + kw * self.dw) * c + ci);
                }
            }
        }
        let max_off = offsets.iter().copied().max().unwrap_or(0);
        Padded {
            data,
            hp,
            wp,
            offsets,
            max_off,
        }
    }
    /// The offset in the padded input of output row `r`'s window corner.
    #[inline(always)]
    fn base(&self, p: &Padded<impl Copy>, r: usize) -> usize {
        let per_image = self.oh * self.ow;
        let (img, rem) = (r / per_image, r % per_image);
        let (oy, ox) = (rem / self.ow, rem % self.ow);
        ((img * p.hp + oy * self.sh) * p.wp + ox * self.sw) * self.c
    }
    /// The window corners of the output rows `r0 .. r0 + rows`, or None when some tap of
    /// one of them would fall outside the padded input (never, for a `Padded` of this
    /// geometry: the direct loops read it without bounds checks after this test).
    pub(super) fn bases<T: Copy>(
        &self,
        p: &Padded<T>,
        r0: usize,
        rows: usize,
    ) -> Option<Vec<usize>> {
        let bases: Vec<usize> = (r0..r0 + rows).map(|r| self.base(p, r)).collect();
        let fits = |&b: &usize| b.checked_add(p.max_off).is_some_and(|e| e < p.data.len());
        bases.iter().all(fits).then_some(bases)
    }
}

/// One tile of the direct forward convolution: `P` output pixels (window corners `bases`) by
/// `CB` blocks of `LANES` output channels from `c0`, accumulated in registers over every
/// filter row (`offsets`, the rows of `f`, each `o` long). Requires `c0 + CB * LANES <= o`.
///
/// # Safety
/// `bases[p] + offsets[t]` must be an index of `xd` for every `p` and `t`.
#[inline(always)]
unsafe fn forward_tile<T: ConvElem, const FMA: bool, const P: usize, const CB: usize>(
    xd: &[T],
    bases: &[usize; P],
    offsets: &[usize],
    f: &[T],
    o: usize,
    c0: usize,
) -> [[[T; LANES]; CB]; P] {
    let mut acc = [[[T::zero(); LANES]; CB]; P];
    for (t, &off) in offsets.iter().enumerate() {
        let row = &f[t * o + c0..t * o + c0 + CB * LANES];
        let mut w = [[T::zero(); LANES]; CB];
        for (b, wb) in w.iter_mut().enumerate() {
            wb.copy_from_slice(&row[b * LANES..(b + 1) * LANES]);
        }
        for p in 0..P {
            // SAFETY: the caller guarantees `bases[p] + off` is inside `xd`.
            let xv = unsafe { *xd.get_unchecked(bases[p] + off) };
            for b in 0..CB {
                for j in 0..LANES {
                    acc[p][b][j] = madd::<T, FMA>(xv, w[b][j], acc[p][b][j]);
                }
            }
        }
    }
    acc
}

/// The direct forward convolution of the rows with window corners `bases` into `out` (whole
/// rows of `o`), for the `CB` channel blocks from `c0`, in tiles of `P` pixels (the last tile
/// padded with copies of the last pixel, whose results are dropped).
///
/// # Safety
/// Every `bases[r] + offsets[t]` must be an index of `xd`; `bases` is not empty.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_blocks<T: ConvElem, const FMA: bool, const P: usize, const CB: usize>(
    xd: &[T],
    bases: &[usize],
    offsets: &[usize],
    f: &[T],
    o: usize,
    c0: usize,
    out: &mut [T],
) {
    let rows = bases.len();
    let mut g0 = 0;
    while g0 < rows {
        let np = P.min(rows - g0);
        let mut bs = [bases[rows - 1]; P];
        bs[..np].copy_from_slice(&bases[g0..g0 + np]);
        // SAFETY: every entry of `bs` is one of `bases`, which the caller vouches for.
        let acc = unsafe { forward_tile::<T, FMA, P, CB>(xd, &bs, offsets, f, o, c0) };
        for (p, ap) in acc.iter().enumerate().take(np) {
            for (b, ab) in ap.iter().enumerate() {
                let at = (g0 + p) * o + c0 + b * LANES;
                out[at..at + LANES].copy_from_slice(ab);
            }
        }
        g0 += np;
    }
}

simd_fn! {
    /// Direct convolution of the output rows starting at global row `r0` (`out` holds whole
    /// rows of `o`): tiles of pixels by one or two blocks of `LANES` output channels
    /// accumulate in registers over every filter row; channels past the last full block are
    /// computed row by row.
    pub(super) fn direct_forward_rows<T: ConvElem, FMA>(g: &ConvGeom, xp: &Padded<T>, f: &[T], r0: usize, out: &mut [T]) {
        let o = g.o;
        let k = xp.offsets.len();
        let rows = out.len() / o.max(1);
        if rows == 0 || f.len() < k * o {
            return;
        }
        let bases = match g.bases(xp, r0, rows) {
            Some(b) => b,
            None => return,
        };
        let (xd, offs) = (&xp.data[..], &xp.offsets[..]);
        let blocks = o / LANES;
        let mut cb = 0;
        while cb < blocks {
            // SAFETY: `g.bases` checked every base plus the largest offset against `xd`.
            if blocks - cb >= 2 {
                unsafe { forward_blocks::<T, FMA, 12, 2>(xd, &bases, offs, f, o, cb * LANES, out) };
                cb += 2;
            } else {
                unsafe { forward_blocks::<T, FMA, 24, 1>(xd, &bases, offs, f, o, cb * LANES, out) };
                cb += 1;
            }
        }
        if blocks * LANES < o {
            for (p, &b) in bases.iter().enumerate() {
                let dst = &mut out[p * o + blocks * LANES..(p + 1) * o];
                dst.fill(T::zero());
                for (t, &off) in offs.iter().enumerate() {
                    let xv = xd[b + off];
                    let wr = &f[t * o + blocks * LANES..(t + 1) * o];
                    for (d, &wv) in dst.iter_mut().zip(wr) {
                        *d = madd::<T, FMA>(xv, wv, *d);
                    }
                }
            }
        }
    }
}

/// One pass of the direct filter backprop: `NT` filter rows (`offs`, the first `n` real, the
/// others copies whose sums are dropped) by `CB` blocks of `LANES` channels from `c0`,
/// accumulated in registers over the rows (window corners `bases`, gradients the rows of
/// `dy`, each `o` long), then added into rows `t0 ..` of `acc` (k x o).
///
/// # Safety
/// Every `bases[r] + offs[q]` must be an index of `xd`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn filter_pass<T: ConvElem, const FMA: bool, const NT: usize, const CB: usize>(
    xd: &[T],
    bases: &[usize],
    offs: &[usize],
    dy: &[T],
    o: usize,
    c0: usize,
    t0: usize,
    acc: &mut [T],
) {
    let n = offs.len().min(NT);
    if n == 0 {
        return;
    }
    let mut os = [offs[0]; NT];
    os[..n].copy_from_slice(&offs[..n]);
    let mut s = [[[T::zero(); LANES]; CB]; NT];
    for (r, &b) in bases.iter().enumerate() {
        let row = &dy[r * o + c0..r * o + c0 + CB * LANES];
        let mut d = [[T::zero(); LANES]; CB];
        for (bb, db) in d.iter_mut().enumerate() {
            db.copy_from_slice(&row[bb * LANES..(bb + 1) * LANES]);
        }
        for q in 0..NT {
            // SAFETY: `os[q]` is one of `offs`, and the caller guarantees `b + offs[_]` is
            // inside `xd`.
            let xv = unsafe { *xd.get_unchecked(b + os[q]) };
            for bb in 0..CB {
                for j in 0..LANES {
                    s[q][bb][j] = madd::<T, FMA>(xv, d[bb][j], s[q][bb][j]);
                }
            }
        }
    }
    for (q, sq) in s.iter().enumerate().take(n) {
        for (bb, sb) in sq.iter().enumerate() {
            let at = (t0 + q) * o + c0 + bb * LANES;
            for (a, &v) in acc[at..at + LANES].iter_mut().zip(sb) {
                *a = *a + v;
            }
        }
    }
}

simd_fn! {
    /// Adds the filter gradient of the output rows starting at `r0` (their gradients `dy`,
    /// whole rows of `o`) into `acc` (k x o): passes of up to 12 (24) filter rows by two
    /// (one) blocks of `LANES` channels accumulate in registers over the rows; channels past
    /// the last full block are summed tap by tap.
    pub(super) fn direct_filter_rows<T: ConvElem, FMA>(g: &ConvGeom, xp: &Padded<T>, dy: &[T], r0: usize, acc: &mut [T]) {
        let o = g.o;
        let k = xp.offsets.len();
        let rows = dy.len() / o.max(1);
        if rows == 0 || k == 0 || acc.len() < k * o {
            return;
        }
        let bases = match g.bases(xp, r0, rows) {
            Some(b) => b,
            None => return,
        };
        let (xd, offs) = (&xp.data[..], &xp.offsets[..]);
        let blocks = o / LANES;
        // Runs the passes over all filter rows with `CB` channel blocks, passes of at most
        // `$big` rows split evenly, each rounded up to one of the three sizes.
        macro_rules! passes {
            ($cb:literal, $small:literal, $mid:literal, $big:literal, $c0:expr) => {{
                let per = k.div_ceil(k.div_ceil($big));
                let mut t0 = 0;
                while t0 < k {
                    let n = per.min(k - t0);
                    let of = &offs[t0..t0 + n];
                    // SAFETY: `g.bases` checked every base plus the largest offset against
                    // `xd`.
                    unsafe {
                        if n <= $small {
                            filter_pass::<T, FMA, $small, $cb>(xd, &bases, of, dy, o, $c0, t0, acc)
                        } else if n <= $mid {
                            filter_pass::<T, FMA, $mid, $cb>(xd, &bases, of, dy, o, $c0, t0, acc)
                        } else {
                            filter_pass::<T, FMA, $big, $cb>(xd, &bases, of, dy, o, $c0, t0, acc)
                        }
                    }
                    t0 += n;
                }
            }};
        }
        let mut cb = 0;
        while cb < blocks {
            if blocks - cb >= 2 {
                passes!(2, 6, 9, 12, cb * LANES);
                cb += 2;
            } else {
                passes!(1, 8, 16, 24, cb * LANES);
                cb += 1;
            }
        }
        if blocks * LANES < o {
            for (t, &off) in offs.iter().enumerate() {
                let ar = &mut acc[t * o + blocks * LANES..(t + 1) * o];
                for (r, &b) in bases.iter().enumerate() {
                    let xv = xd[b + off];
                    let d = &dy[r * o + blocks * LANES..(r + 1) * o];
                    for (a, &dv) in ar.iter_mut().zip(d) {
                        *a = madd::<T, FMA>(xv, dv, *a);
                    }
                }
            }
        }
    }
}
