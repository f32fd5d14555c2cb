//! The AVX-512 VNNI kernels of [`super`]: tiles of `vpdpbusd` sums and their output stage.

use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// The most rows of a tile.
pub const MAX_MR: usize = 12;

/// A tile: `mr` rows of `a` by `np` 16-column panels of `b` (mr * np accumulators).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub mr: usize,
    pub np: usize,
}

impl Shape {
    /// Narrow tiles for few columns (a first convolution's 32 channels, a 10-way output),
    /// so that no accumulator works on padding; taller ones reuse each load of `b` more.
    /// 64 columns (LeNet's second convolution) take 12 x 2 tiles: each pair of panels stays
    /// in L1 while a task's rows pass over it (1-3% faster than 6 x 4 in session 16).
    pub fn for_columns(n: usize) -> Shape {
        match n.div_ceil(16) {
            1 => Shape { mr: 8, np: 1 },
            2 => Shape { mr: 8, np: 2 },
            4 => Shape { mr: 12, np: 2 },
            _ => Shape { mr: 6, np: 4 },
        }
    }
}

/// 16-column panels of `b`, rounded up to whole tiles.
fn panels(n: usize, shape: Shape) -> usize {
    n.div_ceil(16).div_ceil(shape.np) * shape.np
}

/// `b` as `b - 128` in panels of 16 columns, 4 rows interleaved per column (the operand
/// layout of `vpdpbusd`), padded with zeros to whole tiles and 4-row groups.
pub fn pack_b(b: &[u8], k: usize, n: usize, shape: Shape) -> Vec<i8> {
    let kq = k.div_ceil(4);
    let mut packed = vec![0i8; panels(n, shape) * kq * 64];
    for p in 0..k {
        let (q, r) = (p / 4, p % 4);
        for j in 0..n {
            let (panel, col) = (j / 16, j % 16);
            packed[(panel * kq + q) * 64 + col * 4 + r] = (b[p * n + j] as i32 - 128) as i8;
        }
    }
    packed
}

/// A tile's rows of `a` as the kernel reads them: row r is `segments` runs of `seg_len`
/// bytes, `seg_step` apart, from `rows[r]`, each run readable up to `seg_len` rounded up to 4
/// (bytes past `seg_len` meet the zero rows of the packed `b`). A gathered tile is one run per
/// row; a convolution read in place has one run per window row.
#[derive(Clone, Copy)]
pub struct TileA<'a> {
    rows: [*const u8; MAX_MR],
    segments: usize,
    seg_len: usize,
    seg_step: usize,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> TileA<'a> {
    /// The rows at `starts` in `data` (1 to [`MAX_MR`] of them; the kernel's unused rows repeat
    /// the first). Panics where a row would reach past `data`.
    pub fn new(
        data: &'a [u8],
        starts: &[usize],
        segments: usize,
        seg_len: usize,
        seg_step: usize,
    ) -> TileA<'a> {
        assert!((1..=MAX_MR).contains(&starts.len()) && segments >= 1);
        let reach = (segments - 1) * seg_step + seg_len.div_ceil(4) * 4;
        let mut rows = [data.as_ptr(); MAX_MR];
        for (r, &s) in starts.iter().enumerate() {
            assert!(
                s + reach <= data.len(),
                "row {r} of a tile reaches past its data"
            );
            rows[r] = data[s..].as_ptr();
        }
        for r in starts.len()..MAX_MR {
            rows[r] = rows[0];
        }
        TileA {
            rows,
            segments,
            seg_len,
            seg_step,
            _data: PhantomData,
        }
    }

    /// Groups of 4 bytes per row (the packed `b`'s kq).
    fn quads(&self) -> usize {
        self.segments * self.seg_len.div_ceil(4)
    }

    /// The sum of the bytes of row `r`.
    ///
    /// # Safety
    /// The CPU runs avx512f/bw.
    unsafe fn row_sum(&self, r: usize) -> i32 {
        (0..self.segments)
            .map(|s| {
                // SAFETY: `new` checked that each run of row r lies in the borrowed data.
                let run = unsafe {
                    std::slice::from_raw_parts(self.rows[r].add(s * self.seg_step), self.seg_len)
                };
                // SAFETY: the caller's guarantee.
                unsafe { row_sum(run) }
            })
            .fold(0i32, i32::wrapping_add)
    }
}

/// One tile from panel `panel0`: `out[r * np * 16 + c] = sum_p a[r][p] * (b[p][c] - 128)`
/// for the first `rows` rows (a single row, a matrix-vector product, skips the others).
///
/// # Safety
/// The CPU runs avx512f/bw/vnni.
pub unsafe fn tile(
    a: &TileA<'_>,
    packed: &[i8],
    k: usize,
    panel0: usize,
    shape: Shape,
    rows: usize,
    out: &mut [i32],
) {
    let kq = k.div_ceil(4);
    assert!(a.quads() == kq && out.len() >= shape.mr * shape.np * 16);
    assert!(packed.len() >= (panel0 + shape.np) * kq * 64);
    // SAFETY: the caller's guarantees, checked above for the sizes.
    unsafe {
        match (shape.mr, shape.np, rows) {
            (_, 1, 1) => tile_n::<1, 1>(a, packed, kq, panel0, out),
            (_, 2, 1) => tile_n::<1, 2>(a, packed, kq, panel0, out),
            (_, _, 1) => tile_n::<1, 4>(a, packed, kq, panel0, out),
            (8, 1, _) => tile_n::<8, 1>(a, packed, kq, panel0, out),
            (8, 2, _) => tile_n::<8, 2>(a, packed, kq, panel0, out),
            (12, 2, _) => tile_n::<12, 2>(a, packed, kq, panel0, out),
            _ => tile_n::<6, 4>(a, packed, kq, panel0, out),
        }
    }
}

/// One tile's int32 sums added to `acc`: MR rows of `a` against NP panels of `packed` from
/// `panel0`. The caller checks that `a.quads() == kq` and
/// `packed.len() >= (panel0 + NP) * kq * 64`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn accumulate<const MR: usize, const NP: usize>(
    a: &TileA<'_>,
    packed: &[i8],
    kq: usize,
    panel0: usize,
    acc: &mut [[__m512i; NP]; MR],
) {
    let seg_quads = a.seg_len.div_ceil(4);
    let panel_bytes = kq * 64;
    let mut bq = packed[panel0 * panel_bytes..].as_ptr();
    for s in 0..a.segments {
        let mut rows = [std::ptr::null::<u8>(); MR];
        for (r, p) in rows.iter_mut().enumerate() {
            // SAFETY: run s of row r lies in the tile's data (`TileA::new`).
            *p = unsafe { a.rows[r].add(s * a.seg_step) };
        }
        for q in 0..seg_quads {
            let mut bv = [_mm512_setzero_si512(); NP];
            for (t, v) in bv.iter_mut().enumerate() {
                // SAFETY: quad `s * seg_quads + q < kq` of panel `panel0 + t` lies in
                // `packed` (the caller's check).
                *v = unsafe { _mm512_loadu_si512(bq.add(t * panel_bytes) as *const _) };
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: bytes `4q..4q + 4` of a run are readable (`TileA::new`).
                let four = unsafe { std::ptr::read_unaligned(rows[r].add(q * 4) as *const i32) };
                let av = _mm512_set1_epi32(four);
                for (t, acc_rt) in acc_r.iter_mut().enumerate() {
                    *acc_rt = _mm512_dpbusd_epi32(*acc_rt, av, bv[t]);
                }
            }
            // SAFETY: stays within (or one past) panel `panel0`'s kq quads.
            bq = unsafe { bq.add(64) };
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_n<const MR: usize, const NP: usize>(
    a: &TileA<'_>,
    packed: &[i8],
    kq: usize,
    panel0: usize,
    out: &mut [i32],
) {
    let mut acc = [[_mm512_setzero_si512(); NP]; MR];
    // SAFETY: the caller (`tile`) checked the bounds `accumulate` states.
    unsafe { accumulate::<MR, NP>(a, packed, kq, panel0, &mut acc) };
    for (r, acc_r) in acc.iter().enumerate() {
        for (t, v) in acc_r.iter().enumerate() {
            // SAFETY: `out` holds MR rows of NP * 16 i32s (checked by `tile`).
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add((r * NP + t) * 16) as *mut _, *v) };
        }
    }
}

/// The output stage's parameters as the kernel reads them: `col` (the zero points'
/// column terms) and `bias` padded to whole tiles; `row_factor` times a row's byte sum is
/// its row term.
pub struct CodeParams<'a> {
    pub row_factor: i32,
    pub col: &'a [i32],
    pub bias: &'a [f32],
    pub scale: f32,
    pub relu: bool,
    pub per_unit: f32,
    pub offset: f32,
}

/// Codes of the first `rows` rows of `a` against columns `j0..j1` (j0 a multiple of the
/// tile's width), written to `out[r * ldo + j - j0]`.
///
/// # Safety
/// The CPU runs avx512f/bw/vnni.
#[allow(clippy::too_many_arguments)]
pub unsafe fn codes(
    a: &TileA<'_>,
    packed: &[i8],
    k: usize,
    shape: Shape,
    rows: usize,
    (j0, j1): (usize, usize),
    p: &CodeParams<'_>,
    out: &mut [MaybeUninit<u8>],
    ldo: usize,
) {
    let kq = k.div_ceil(4);
    let unit = shape.np * 16;
    let whole = (j1 - j0).div_ceil(unit) * unit;
    assert!(rows >= 1 && rows <= shape.mr && shape.mr <= MAX_MR && j0 % unit == 0);
    assert!(a.quads() == kq && packed.len() >= (j0 + whole) / 16 * kq * 64);
    assert!(p.col.len() >= j0 + whole && p.bias.len() >= j0 + whole);
    assert!(out.len() >= (rows - 1) * ldo + (j1 - j0) && ldo >= j1 - j0);
    let mut row_terms = [0i32; MAX_MR];
    if p.row_factor != 0 {
        for (r, t) in row_terms.iter_mut().enumerate().take(rows) {
            // SAFETY: the CPU runs avx512bw (the caller's guarantee).
            *t = p.row_factor.wrapping_mul(unsafe { a.row_sum(r) });
        }
    }
    let o = out.as_mut_ptr() as *mut u8;
    for u0 in (j0..j1).step_by(unit) {
        let cols = (j1 - u0).min(unit);
        // SAFETY: the sizes are checked above; `o + u0 - j0` starts this tile's columns.
        unsafe {
            let o = o.add(u0 - j0);
            let panel0 = u0 / 16;
            match (shape.mr, shape.np, rows) {
                (_, 1, 1) => codes_n::<1, 1>(a, packed, kq, panel0, 1, &row_terms, p, cols, o, ldo),
                (_, 2, 1) => codes_n::<1, 2>(a, packed, kq, panel0, 1, &row_terms, p, cols, o, ldo),
                (_, _, 1) => codes_n::<1, 4>(a, packed, kq, panel0, 1, &row_terms, p, cols, o, ldo),
                (8, 1, _) => {
                    codes_n::<8, 1>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo)
                }
                (8, 2, _) => {
                    codes_n::<8, 2>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo)
                }
                (12, 2, _) => {
                    codes_n::<12, 2>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo)
                }
                _ => codes_n::<6, 4>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo),
            }
        }
    }
}

/// The sum of the bytes of `row`.
///
/// # Safety
/// The CPU runs avx512f/bw.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn row_sum(row: &[u8]) -> i32 {
    let mut acc = _mm512_setzero_si512();
    let zero = _mm512_setzero_si512();
    let mut chunks = row.chunks_exact(64);
    for c in &mut chunks {
        // SAFETY: `c` holds 64 bytes.
        let v = unsafe { _mm512_loadu_si512(c.as_ptr() as *const _) };
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(v, zero));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mask = (1u64 << rest.len()) - 1;
        // SAFETY: the mask reads only the `rest.len()` bytes of `rest`.
        let v = unsafe { _mm512_maskz_loadu_epi8(mask, rest.as_ptr() as *const i8) };
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(v, zero));
    }
    _mm512_reduce_add_epi64(acc) as i32
}

/// One tile's sums, as `tile_n`, through the output stage into codes at `out` (row r at
/// `r * ldo`), the first `rows` rows and `cols` columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn codes_n<const MR: usize, const NP: usize>(
    a: &TileA<'_>,
    packed: &[i8],
    kq: usize,
    panel0: usize,
    rows: usize,
    row_terms: &[i32; MAX_MR],
    p: &CodeParams<'_>,
    cols: usize,
    out: *mut u8,
    ldo: usize,
) {
    // SAFETY: `codes` checked that `col` and `bias` hold whole tiles of columns from panel0.
    let stage = unsafe { RowStage::<NP>::new(p, panel0, cols) };
    // The sums start from the zero points' terms (wrapping adds in any order are the same).
    let mut acc = [[_mm512_setzero_si512(); NP]; MR];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        *acc_r = stage.terms(row_terms[r]);
    }
    // SAFETY: the caller (`codes`) checked the bounds `accumulate` states.
    unsafe { accumulate::<MR, NP>(a, packed, kq, panel0, &mut acc) };
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        // SAFETY: row r < rows and its `cols` columns lie in `out` (checked by `codes`).
        unsafe { stage.store(acc_r, out.add(r * ldo)) };
    }
}

/// The output stage of one row of NP 16-column panels from `panel0`: the zero points' column
/// terms, then bias, ReLU and requantization to codes, with the scalar stage's operations in
/// its order (products and sums rounded one at a time, no fused multiply-add), so the codes
/// are the same bits.
pub struct RowStage<const NP: usize> {
    col: [__m512i; NP],
    bias: [__m512; NP],
    masks: [u16; NP],
    /// Whether all NP * 16 columns are stored.
    whole: bool,
    relu: bool,
    scale: __m512,
    per_unit: __m512,
    offset: __m512,
}

impl<const NP: usize> RowStage<NP> {
    /// The stage of columns `panel0 * 16..panel0 * 16 + cols`.
    ///
    /// # Safety
    /// The CPU runs avx512f/bw; `p.col` and `p.bias` hold NP * 16 columns from `panel0 * 16`.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub unsafe fn new(p: &CodeParams<'_>, panel0: usize, cols: usize) -> Self {
        let j0 = panel0 * 16;
        let mut col = [_mm512_setzero_si512(); NP];
        let mut bias = [_mm512_setzero_ps(); NP];
        let mut masks = [0u16; NP];
        for t in 0..NP {
            // SAFETY: the caller's guarantee on `col` and `bias`.
            unsafe {
                col[t] = _mm512_loadu_si512(p.col.as_ptr().add(j0 + t * 16) as *const _);
                bias[t] = _mm512_loadu_ps(p.bias.as_ptr().add(j0 + t * 16));
            }
            let valid = cols.saturating_sub(t * 16).min(16);
            masks[t] = ((1u32 << valid) - 1) as u16;
        }
        RowStage {
            col,
            bias,
            masks,
            whole: cols == NP * 16,
            relu: p.relu,
            scale: _mm512_set1_ps(p.scale),
            per_unit: _mm512_set1_ps(p.per_unit),
            offset: _mm512_set1_ps(p.offset),
        }
    }

    /// The zero points' terms of a row whose row term is `row_term`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn terms(&self, row_term: i32) -> [__m512i; NP] {
        let rt = _mm512_set1_epi32(row_term);
        self.col.map(|c| _mm512_add_epi32(rt, c))
    }

    /// The codes of one row's sums `acc` (terms included) stored at `o`.
    ///
    /// # Safety
    /// The CPU runs avx512f/bw; `o` is writable for the stage's columns (NP * 16 when whole).
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub unsafe fn store(&self, acc: &[__m512i; NP], o: *mut u8) {
        let zero = _mm512_setzero_ps();
        let top = _mm512_set1_ps(255.0);
        let mut codes = [_mm512_setzero_si512(); NP];
        for t in 0..NP {
            let mut v = _mm512_add_ps(
                _mm512_mul_ps(_mm512_cvtepi32_ps(acc[t]), self.scale),
                self.bias[t],
            );
            if self.relu {
                // A NaN gives the second operand, 0, as `f32::max` does.
                v = _mm512_max_ps(v, zero);
            }
            let c = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(v, self.per_unit),
            );
            let c = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(c, self.offset), zero), top);
            codes[t] = _mm512_cvttps_epi32(c);
        }
        if self.whole && NP >= 2 {
            // Whole rows of 2 or 4 panels: packed to bytes in registers, one store.
            let lo = _mm512_packus_epi32(codes[0], codes[1]);
            let hi = if NP == 4 {
                _mm512_packus_epi32(codes[2], codes[3])
            } else {
                lo
            };
            // Each 128-bit lane L now holds dwords [c0 L, c1 L, c2 L, c3 L] (4 codes each):
            // back in column order.
            let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            let bytes = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(lo, hi));
            // SAFETY: a whole row's NP * 16 bytes at `o` are writable (the caller's guarantee).
            unsafe {
                if NP == 4 {
                    _mm512_storeu_si512(o as *mut _, bytes);
                } else {
                    _mm256_storeu_si256(o as *mut _, _mm512_castsi512_si256(bytes));
                }
            }
        } else {
            for (t, (&mask, &c)) in self.masks.iter().zip(&codes).enumerate() {
                if mask != 0 {
                    // SAFETY: the mask stores only the stage's columns (the caller's guarantee).
                    unsafe { _mm512_mask_cvtepi32_storeu_epi8(o.add(t * 16) as *mut _, mask, c) };
                }
            }
        }
    }
}
