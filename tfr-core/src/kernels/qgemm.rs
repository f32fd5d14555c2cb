//! 8-bit matrix products with int32 accumulation: `c[i][j] = sum_p (a[i][p] - za) (b[p][j] - zb)`
//! for row-major `a` [m, k] and `b` [k, n] of uint8 codes and zero points `za`, `zb` (TF's
//! `QuantizedMatMul` offsets). Three implementations compute the same integers: a plain
//! reference, a portable one the compiler vectorizes, and one on AVX-512 VNNI's `vpdpbusd`
//! (u8 x i8 -> i32, 64 products per instruction), chosen at run time.
//!
//! The product is split as `sum ab - zb * rowsum(a) - za * colsum(b) + k za zb`, so the inner
//! loops multiply raw codes only. VNNI multiplies unsigned by signed bytes: `b` is stored as
//! `b - 128` and `128 * rowsum(a)` added back.
//!
//! The rows of `a` come from a [`RowSource`]: a matrix ([`Rows`]) or a convolution's patches
//! gathered a few rows at a time (`quantized_spatial_ops`), so no im2col buffer is written.
//! Results reach the caller through an output stage, called on pieces of rows of int32 results
//! ([`qgemm_with`]): a copy for `QuantizedMatMul`, bias, ReLU and requantization to 8 bits for
//! the fused ops, while the rows are still in cache.

use rayon::prelude::*;

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QGemmPath {
    Reference,
    Portable,
    Vnni,
}

/// The fastest implementation this CPU runs.
pub fn best_path() -> QGemmPath {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return QGemmPath::Vnni;
        }
    }
    QGemmPath::Portable
}

/// Where the rows of `a` come from.
pub trait RowSource: Sync {
    /// Writes row `i` (k bytes) to `dst[..k]`; it may also write the bytes after them in `dst`
    /// (the kernel's padding or the next rows, filled after this one).
    fn fill(&self, i: usize, dst: &mut [u8]);
    /// Rows `i0..i0 + rows` into `dst`, one every `stride` bytes.
    fn fill_rows(&self, i0: usize, rows: usize, dst: &mut [u8], stride: usize) {
        for r in 0..rows {
            self.fill(i0 + r, &mut dst[r * stride..]);
        }
    }
}

/// The rows of a row-major matrix with `k` columns.
pub struct Rows<'a> {
    pub a: &'a [u8],
    pub k: usize,
}

impl RowSource for Rows<'_> {
    fn fill(&self, i: usize, dst: &mut [u8]) {
        dst[..self.k].copy_from_slice(&self.a[i * self.k..(i + 1) * self.k]);
    }
}

/// `b` prepared once for many products (a layer's weights): its column sums and, for VNNI, its
/// bytes in the instruction's operand layout.
pub struct PackedB {
    k: usize,
    n: usize,
    col_sums: Vec<i32>,
    data: PackedData,
}

enum PackedData {
    Raw(Vec<u8>),
    #[cfg(target_arch = "x86_64")]
    Vnni(Vec<i8>, vnni::Shape),
}

impl PackedB {
    /// Prepares `b` (k x n) for `path` (VNNI falls back to portable where the CPU lacks it).
    pub fn new(b: &[u8], k: usize, n: usize, path: QGemmPath) -> PackedB {
        assert!(b.len() >= k * n);
        let col_sums = col_sums(b, k, n);
        let data = match path {
            #[cfg(target_arch = "x86_64")]
            QGemmPath::Vnni if best_path() == QGemmPath::Vnni => {
                let shape = vnni::Shape::for_columns(n);
                PackedData::Vnni(vnni::pack_b(b, k, n, shape), shape)
            }
            _ => PackedData::Raw(b[..k * n].to_vec()),
        };
        PackedB {
            k,
            n,
            col_sums,
            data,
        }
    }
    /// (k, n).
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
    /// Rows of `a` computed together, and how many columns one unit of work covers.
    fn tile(&self) -> (usize, usize) {
        match &self.data {
            PackedData::Raw(_) => (1, 64),
            #[cfg(target_arch = "x86_64")]
            PackedData::Vnni(_, s) => (s.mr, s.np * 16),
        }
    }
    /// Bytes of one row of `a` as the kernel reads it (k, padded for VNNI).
    fn row_stride(&self) -> usize {
        match &self.data {
            PackedData::Raw(_) => self.k,
            #[cfg(target_arch = "x86_64")]
            PackedData::Vnni(..) => self.k.div_ceil(4) * 4,
        }
    }
}

/// `c` (m x n, overwritten) for `a` (m x k) and a prepared `b`.
pub fn qgemm_packed(a: &[u8], b: &PackedB, c: &mut [i32], m: usize, za: i32, zb: i32) {
    assert!(a.len() >= m * b.k && c.len() >= m * b.n);
    let src = Rows { a, k: b.k };
    qgemm_with(&src, m, b, za, zb, c, |_, _, v, o| o.copy_from_slice(v));
}

/// Products smaller than this many multiply-adds run on the calling thread.
const PARALLEL_MIN: usize = 1 << 20;

/// The product of the `m` rows of `src` and `b`, handed to `stage(i, j0, c, out)`: `c` holds
/// `c[i][j0..j0 + c.len()]` (zero points applied) and `out` is the same piece of row `i` of
/// `out` (m x n). Every element is staged exactly once. Large products run on rayon's threads,
/// over rows, or over columns when there are few rows.
pub fn qgemm_with<T, S, F>(
    src: &S,
    m: usize,
    b: &PackedB,
    za: i32,
    zb: i32,
    out: &mut [T],
    stage: F,
) where
    T: Send,
    S: RowSource,
    F: Fn(usize, usize, &[i32], &mut [T]) + Sync,
{
    let (k, n) = (b.k, b.n);
    assert!(out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let out = &mut out[..m * n];
    let z = ZeroTerms::new(b, za, zb);
    let (mr, cols) = b.tile();
    let threads = rayon::current_num_threads();
    let serial = threads == 1 || m * k * n < PARALLEL_MIN;
    if serial || m >= 2 * mr * threads {
        let rows_per_task = if serial {
            m
        } else {
            m.div_ceil(threads * 4).div_ceil(mr) * mr
        };
        let task = |t: usize, chunk: &mut [T]| {
            let i0 = t * rows_per_task;
            let mut w = Work::new(b, mr, n);
            for r0 in (0..chunk.len() / n).step_by(mr) {
                let rows = (chunk.len() / n - r0).min(mr);
                w.compute(src, b, (i0 + r0, rows), (0, n), &z, |r, j, v| {
                    let at = (r0 + r) * n + j;
                    stage(i0 + r0 + r, j, v, &mut chunk[at..at + v.len()]);
                });
            }
        };
        if serial {
            task(0, out);
        } else {
            out.par_chunks_mut(rows_per_task * n)
                .enumerate()
                .for_each(|(t, chunk)| task(t, chunk));
        }
        return;
    }
    // Few rows: each task computes every row for a band of columns.
    let units = n.div_ceil(cols);
    let band = units.div_ceil(threads) * cols;
    let bands: Vec<(usize, usize)> = (0..n).step_by(band).map(|j| (j, n.min(j + band))).collect();
    let results: Vec<Vec<i32>> = bands
        .par_iter()
        .map(|&(j0, j1)| {
            let w_cols = j1 - j0;
            let mut w = Work::new(b, mr, w_cols);
            let mut all = vec![0i32; m * w_cols];
            for r0 in (0..m).step_by(mr) {
                let rows = (m - r0).min(mr);
                w.compute(src, b, (r0, rows), (j0, j1), &z, |r, j, v| {
                    let at = (r0 + r) * w_cols + j - j0;
                    all[at..at + v.len()].copy_from_slice(v);
                });
            }
            all
        })
        .collect();
    for (&(j0, j1), c) in bands.iter().zip(&results) {
        let w_cols = j1 - j0;
        for i in 0..m {
            stage(
                i,
                j0,
                &c[i * w_cols..(i + 1) * w_cols],
                &mut out[i * n + j0..i * n + j1],
            );
        }
    }
}

/// The output stage of the fused quantized ops as parameters: the sum `acc` of column `j`
/// becomes `v = acc as f32 * scale + bias[j]`, `max(v, 0)` with ReLU, then the code
/// `clamp(round_ties_even(v * per_unit) + offset, 0, 255)` (a NaN gives 0).
#[derive(Clone, Copy)]
pub struct Requantize<'a> {
    pub scale: f32,
    pub bias: &'a [f32],
    pub relu: bool,
    pub per_unit: f32,
    pub offset: f32,
}

/// [`qgemm_with`] followed by [`Requantize`] into `out` (m x n codes), with the output stage
/// applied in registers as each tile of sums is done (no int32 results are stored). Only for a
/// `b` packed for VNNI: returns false, having done nothing, for any other `b`.
pub fn qgemm_codes<S: RowSource>(
    src: &S,
    m: usize,
    b: &PackedB,
    za: i32,
    zb: i32,
    rq: &Requantize<'_>,
    out: &mut [u8],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let PackedData::Vnni(packed, shape) = &b.data {
        assert!(rq.bias.len() >= b.n && out.len() >= m * b.n);
        codes_vnni(src, m, b, packed, *shape, za, zb, rq, &mut out[..m * b.n]);
        return true;
    }
    let _ = (src, m, za, zb, rq, out);
    false
}

/// Byte size above which a packed `b` is taken not to stay in a core's cache (L2) between
/// tiles of rows: then each task runs every tile of rows against one panel group at a time.
#[cfg(target_arch = "x86_64")]
const B_CACHED: usize = 1 << 20;

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn codes_vnni<S: RowSource>(
    src: &S,
    m: usize,
    b: &PackedB,
    packed: &[i8],
    shape: vnni::Shape,
    za: i32,
    zb: i32,
    rq: &Requantize<'_>,
    out: &mut [u8],
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    let z = ZeroTerms::new(b, za, zb);
    let unit = shape.np * 16;
    let units = n.div_ceil(unit);
    // Column terms and bias padded to whole tiles, so the kernel loads whole vectors.
    let mut col = z.col.clone();
    col.resize(units * unit, 0);
    let mut bias = rq.bias[..n].to_vec();
    bias.resize(units * unit, 0.0);
    let p = vnni::CodeParams {
        row_factor: z.row,
        col: &col,
        bias: &bias,
        scale: rq.scale,
        relu: rq.relu,
        per_unit: rq.per_unit,
        offset: rq.offset,
    };
    let stride = b.row_stride();
    let mr = shape.mr;
    let threads = rayon::current_num_threads();
    let serial = threads == 1 || m * k * n < PARALLEL_MIN;
    let few_rows = m < 2 * mr * threads;
    let by_columns = m.div_ceil(mr) * mr * stride <= B_CACHED
        && (packed.len() > B_CACHED || (few_rows && !serial && units >= 2));
    // Rows `i0..i0 + rows` (a multiple of mr, or the last rows) against columns `j0..j1`,
    // into `dst` (row r at `r * ldo`, column j at `j - j0`); by panel groups, then rows,
    // when `by_columns`.
    let run = |i0: usize, rows: usize, (j0, j1): (usize, usize), dst: &mut [u8], ldo: usize| {
        if by_columns {
            let mut a_all = vec![0u8; rows.div_ceil(mr) * mr * stride];
            src.fill_rows(i0, rows, &mut a_all, stride);
            for u0 in (j0..j1).step_by(unit) {
                for r0 in (0..rows).step_by(mr) {
                    let tile_rows = (rows - r0).min(mr);
                    // SAFETY: `PackedData::Vnni` exists only where `best_path()` found
                    // avx512f/bw/vnni; `a_all` holds whole tiles of `mr` rows of `stride`
                    // bytes (k rounded up to 4), `packed` and `p` whole units of columns, and
                    // `dst` `tile_rows` rows of `ldo >= j1 - j0` bytes from row `r0`.
                    unsafe {
                        vnni::codes(
                            &a_all[r0 * stride..],
                            packed,
                            k,
                            shape,
                            tile_rows,
                            (u0, (u0 + unit).min(j1)),
                            &p,
                            &mut dst[r0 * ldo + u0 - j0..],
                            ldo,
                        )
                    };
                }
            }
        } else {
            let mut a_tile = vec![0u8; mr * stride];
            for r0 in (0..rows).step_by(mr) {
                let tile_rows = (rows - r0).min(mr);
                // Rows are filled in order: what `fill` writes past a row is rewritten next.
                src.fill_rows(i0 + r0, tile_rows, &mut a_tile, stride);
                // SAFETY: as above, with `a_tile` one tile of `mr` rows.
                unsafe {
                    vnni::codes(
                        &a_tile,
                        packed,
                        k,
                        shape,
                        tile_rows,
                        (j0, j1),
                        &p,
                        &mut dst[r0 * ldo..],
                        ldo,
                    )
                };
            }
        }
    };
    if serial {
        run(0, m, (0, n), out, n);
    } else if !by_columns || units < 2 {
        let rows_per_task = m.div_ceil(threads * 4).div_ceil(mr) * mr;
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(t, chunk)| run(t * rows_per_task, chunk.len() / n, (0, n), chunk, n));
    } else {
        // Bands of columns, each task all the rows; the bands' codes are copied in after.
        let band = units.div_ceil(threads) * unit;
        let bands: Vec<(usize, usize)> =
            (0..n).step_by(band).map(|j| (j, n.min(j + band))).collect();
        let results: Vec<Vec<u8>> = bands
            .par_iter()
            .map(|&(j0, j1)| {
                let mut codes = vec![0u8; m * (j1 - j0)];
                run(0, m, (j0, j1), &mut codes, j1 - j0);
                codes
            })
            .collect();
        for (&(j0, j1), c) in bands.iter().zip(&results) {
            let w = j1 - j0;
            for (i, row) in c.chunks_exact(w).enumerate() {
                out[i * n + j0..i * n + j1].copy_from_slice(row);
            }
        }
    }
}

/// One task's buffers: a tile of rows of `a` and their results.
struct Work {
    a_tile: Vec<u8>,
    stride: usize,
    row_sums: Vec<i32>,
    /// One row's results (the portable path).
    c: Vec<i32>,
    #[cfg(target_arch = "x86_64")]
    out: Vec<i32>,
}

impl Work {
    fn new(b: &PackedB, mr: usize, cols: usize) -> Work {
        let stride = b.row_stride();
        #[cfg(target_arch = "x86_64")]
        let unit = b.tile().1;
        Work {
            a_tile: vec![0u8; mr * stride],
            stride,
            row_sums: vec![0; mr],
            c: vec![0; cols],
            #[cfg(target_arch = "x86_64")]
            out: vec![0; mr * unit],
        }
    }

    /// Rows `i0..i0 + rows` of the product, columns `j0..j1`, handed to `emit(r, j, c)` in
    /// pieces: `c` holds row `i0 + r`, columns `j..j + c.len()`; `z` holds the zero points' terms.
    fn compute<S: RowSource>(
        &mut self,
        src: &S,
        b: &PackedB,
        (i0, rows): (usize, usize),
        (j0, j1): (usize, usize),
        z: &ZeroTerms,
        mut emit: impl FnMut(usize, usize, &[i32]),
    ) {
        let k = b.k;
        // Rows are filled in order: what `fill` writes past a row is rewritten next.
        src.fill_rows(i0, rows, &mut self.a_tile, self.stride);
        for r in 0..rows {
            self.row_sums[r] = if z.row == 0 {
                0
            } else {
                let row = &self.a_tile[r * self.stride..r * self.stride + k];
                z.row.wrapping_mul(row_sum(row))
            };
        }
        match &b.data {
            PackedData::Raw(raw) => {
                let c_row = &mut self.c[..j1 - j0];
                for r in 0..rows {
                    let a_row = &self.a_tile[r * k..(r + 1) * k];
                    portable_row(a_row, raw, b.n, j0, c_row);
                    add_terms(c_row, self.row_sums[r], &z.col[j0..j1]);
                    emit(r, j0, c_row);
                }
            }
            #[cfg(target_arch = "x86_64")]
            PackedData::Vnni(packed, shape) => {
                let unit = shape.np * 16;
                debug_assert!(j0 % unit == 0);
                for u0 in (j0..j1).step_by(unit) {
                    // SAFETY: `PackedData::Vnni` exists only where `best_path()` found
                    // avx512f/bw/vnni; `a_tile` holds `mr` rows of `stride` (k rounded up to 4)
                    // bytes and `packed` whole units of panels of kq * 64 bytes, `out` one tile.
                    unsafe {
                        vnni::tile(
                            &self.a_tile,
                            packed,
                            k,
                            u0 / 16,
                            *shape,
                            rows,
                            &mut self.out,
                        )
                    };
                    let cols = (j1 - u0).min(unit);
                    for r in 0..rows {
                        let piece = &mut self.out[r * unit..r * unit + cols];
                        add_terms(piece, self.row_sums[r], &z.col[u0..u0 + cols]);
                        emit(r, u0, piece);
                    }
                }
            }
        }
    }
}

/// The zero points' share of each sum: `row * rowsum(a_i) + col[j]`.
struct ZeroTerms {
    /// `-zb`, or `128 - zb` where `b` is stored as `b - 128` (VNNI): 0 for weights whose zero
    /// point is 128 (symmetric ranges), which then need no row sums.
    row: i32,
    /// `k za zb - za colsum(b)_j`.
    col: Vec<i32>,
}

impl ZeroTerms {
    fn new(b: &PackedB, za: i32, zb: i32) -> ZeroTerms {
        let kzz = (b.k as i32).wrapping_mul(za).wrapping_mul(zb);
        let row = match &b.data {
            PackedData::Raw(_) => zb.wrapping_neg(),
            #[cfg(target_arch = "x86_64")]
            PackedData::Vnni(..) => 128i32.wrapping_sub(zb),
        };
        let col = b
            .col_sums
            .iter()
            .map(|&cs| kzz.wrapping_sub(za.wrapping_mul(cs)))
            .collect();
        ZeroTerms { row, col }
    }
}

fn row_sum(row: &[u8]) -> i32 {
    row.iter().map(|&v| v as i32).sum()
}

/// `c[j] += row + col[j]`.
fn add_terms(c: &mut [i32], row: i32, col: &[i32]) {
    for (v, &t) in c.iter_mut().zip(col) {
        *v = v.wrapping_add(row).wrapping_add(t);
    }
}

/// `c` (m x n, overwritten) for `a` (m x k) and `b` (k x n), preparing `b` on the way.
#[allow(clippy::too_many_arguments)]
pub fn qgemm_u8(
    a: &[u8],
    b: &[u8],
    c: &mut [i32],
    m: usize,
    k: usize,
    n: usize,
    za: i32,
    zb: i32,
    path: QGemmPath,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if path == QGemmPath::Reference {
        return reference(a, b, c, m, k, n, za, zb);
    }
    qgemm_packed(a, &PackedB::new(b, k, n, path), c, m, za, zb);
}

/// The definition, one product at a time (in i64, so it cannot overflow where the others could).
#[allow(clippy::too_many_arguments)]
fn reference(a: &[u8], b: &[u8], c: &mut [i32], m: usize, k: usize, n: usize, za: i32, zb: i32) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i64;
            for p in 0..k {
                s += (a[i * k + p] as i64 - za as i64) * (b[p * n + j] as i64 - zb as i64);
            }
            c[i * n + j] = s as i32;
        }
    }
}

fn col_sums(b: &[u8], k: usize, n: usize) -> Vec<i32> {
    let mut s = vec![0i32; n];
    for row in b[..k * n].chunks_exact(n.max(1)) {
        for (acc, &v) in s.iter_mut().zip(row) {
            *acc += v as i32;
        }
    }
    s
}

/// Raw sums of one row of `a` with columns `j0..j0 + c_row.len()` of `b` (k x n).
fn portable_row(a_row: &[u8], b: &[u8], n: usize, j0: usize, c_row: &mut [i32]) {
    c_row.fill(0);
    let cols = c_row.len();
    for (p, &av) in a_row.iter().enumerate() {
        if av == 0 {
            continue;
        }
        let av = av as i32;
        for (acc, &bv) in c_row.iter_mut().zip(&b[p * n + j0..p * n + j0 + cols]) {
            *acc += av * bv as i32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    /// A tile: `mr` rows of `a` by `np` 16-column panels of `b` (mr * np accumulators).
    #[derive(Clone, Copy, Debug)]
    pub struct Shape {
        pub mr: usize,
        pub np: usize,
    }

    impl Shape {
        /// Narrow tiles for few columns (a first convolution's 32 channels, a 10-way output),
        /// so that no accumulator works on padding; taller ones reuse each load of `b` more.
        pub fn for_columns(n: usize) -> Shape {
            match n.div_ceil(16) {
                1 => Shape { mr: 8, np: 1 },
                2 => Shape { mr: 8, np: 2 },
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

    /// One tile from panel `panel0`: `out[r * np * 16 + c] = sum_p a_tile[r][p] * (b[p][c] - 128)`
    /// for the first `rows` rows (a single row, a matrix-vector product, skips the others).
    ///
    /// # Safety
    /// The CPU runs avx512f/bw/vnni; `a_tile` holds `shape.mr` rows of `k` rounded up to 4
    /// bytes, `packed` the panels `panel0..panel0 + shape.np`, `out` `mr * np * 16` values.
    pub unsafe fn tile(
        a_tile: &[u8],
        packed: &[i8],
        k: usize,
        panel0: usize,
        shape: Shape,
        rows: usize,
        out: &mut [i32],
    ) {
        let kq = k.div_ceil(4);
        assert!(a_tile.len() >= shape.mr * kq * 4 && out.len() >= shape.mr * shape.np * 16);
        assert!(packed.len() >= (panel0 + shape.np) * kq * 64);
        // SAFETY: the caller's guarantees, checked above for the sizes.
        unsafe {
            match (shape.mr, shape.np, rows) {
                (_, 1, 1) => tile_n::<1, 1>(a_tile, packed, kq, panel0, out),
                (_, 2, 1) => tile_n::<1, 2>(a_tile, packed, kq, panel0, out),
                (_, _, 1) => tile_n::<1, 4>(a_tile, packed, kq, panel0, out),
                (8, 1, _) => tile_n::<8, 1>(a_tile, packed, kq, panel0, out),
                (8, 2, _) => tile_n::<8, 2>(a_tile, packed, kq, panel0, out),
                _ => tile_n::<6, 4>(a_tile, packed, kq, panel0, out),
            }
        }
    }

    /// One tile's int32 sums: MR rows of `a_tile` (k rounded up to 4, `kq` groups of 4 bytes
    /// each) against NP panels of `packed` from `panel0`. The caller checks that
    /// `a_tile.len() >= MR * kq * 4` and `packed.len() >= (panel0 + NP) * kq * 64`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn accumulate<const MR: usize, const NP: usize>(
        a_tile: &[u8],
        packed: &[i8],
        kq: usize,
        panel0: usize,
    ) -> [[__m512i; NP]; MR] {
        let k4 = kq * 4;
        let mut acc = [[_mm512_setzero_si512(); NP]; MR];
        let a = a_tile.as_ptr();
        let bp = packed.as_ptr();
        for q in 0..kq {
            let mut bv = [_mm512_setzero_si512(); NP];
            for (t, v) in bv.iter_mut().enumerate() {
                let off = ((panel0 + t) * kq + q) * 64;
                // SAFETY: `off + 64 <= packed.len()` (the caller's check).
                *v = unsafe { _mm512_loadu_si512(bp.add(off) as *const _) };
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: `r * k4 + q * 4 + 4 <= a_tile.len()` (MR rows of k4 bytes).
                let four = unsafe { std::ptr::read_unaligned(a.add(r * k4 + q * 4) as *const i32) };
                let av = _mm512_set1_epi32(four);
                for (t, acc_rt) in acc_r.iter_mut().enumerate() {
                    *acc_rt = _mm512_dpbusd_epi32(*acc_rt, av, bv[t]);
                }
            }
        }
        acc
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_n<const MR: usize, const NP: usize>(
        a_tile: &[u8],
        packed: &[i8],
        kq: usize,
        panel0: usize,
        out: &mut [i32],
    ) {
        // SAFETY: the caller (`tile`) checked the bounds `accumulate` states.
        let acc = unsafe { accumulate::<MR, NP>(a_tile, packed, kq, panel0) };
        for (r, acc_r) in acc.iter().enumerate() {
            for (t, v) in acc_r.iter().enumerate() {
                // SAFETY: `out` holds MR rows of NP * 16 i32s (checked by `tile`).
                unsafe {
                    _mm512_storeu_si512(out.as_mut_ptr().add((r * NP + t) * 16) as *mut _, *v)
                };
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

    /// Codes of the first `rows` rows of `a` (tiles of `shape.mr` rows of k rounded up to 4
    /// bytes) against columns `j0..j1` (j0 a multiple of the tile's width), written to
    /// `out[r * ldo + j - j0]`.
    ///
    /// # Safety
    /// The CPU runs avx512f/bw/vnni; `a` holds `shape.mr` rows, `packed` and `p.col`/`p.bias`
    /// whole tiles of columns past `j1`, `out` `rows - 1` rows of `ldo` bytes and then
    /// `j1 - j0`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn codes(
        a: &[u8],
        packed: &[i8],
        k: usize,
        shape: Shape,
        rows: usize,
        (j0, j1): (usize, usize),
        p: &CodeParams<'_>,
        out: &mut [u8],
        ldo: usize,
    ) {
        let kq = k.div_ceil(4);
        let unit = shape.np * 16;
        let whole = (j1 - j0).div_ceil(unit) * unit;
        assert!(rows >= 1 && rows <= shape.mr && shape.mr <= 8 && j0 % unit == 0);
        assert!(a.len() >= shape.mr * kq * 4 && packed.len() >= (j0 + whole) / 16 * kq * 64);
        assert!(p.col.len() >= j0 + whole && p.bias.len() >= j0 + whole);
        assert!(out.len() >= (rows - 1) * ldo + (j1 - j0) && ldo >= j1 - j0);
        let mut row_terms = [0i32; 8];
        if p.row_factor != 0 {
            for (r, t) in row_terms.iter_mut().enumerate().take(rows) {
                // SAFETY: the CPU runs avx512bw (the caller's guarantee); row r lies in `a`.
                *t = p
                    .row_factor
                    .wrapping_mul(unsafe { row_sum(&a[r * kq * 4..r * kq * 4 + k]) });
            }
        }
        let o = out.as_mut_ptr();
        for u0 in (j0..j1).step_by(unit) {
            let cols = (j1 - u0).min(unit);
            // SAFETY: the sizes are checked above; `o + u0 - j0` starts this tile's columns.
            unsafe {
                let o = o.add(u0 - j0);
                let panel0 = u0 / 16;
                match (shape.mr, shape.np, rows) {
                    (_, 1, 1) => {
                        codes_n::<1, 1>(a, packed, kq, panel0, 1, &row_terms, p, cols, o, ldo)
                    }
                    (_, 2, 1) => {
                        codes_n::<1, 2>(a, packed, kq, panel0, 1, &row_terms, p, cols, o, ldo)
                    }
                    (_, _, 1) => {
                        codes_n::<1, 4>(a, packed, kq, panel0, 1, &row_terms, p, cols, o, ldo)
                    }
                    (8, 1, _) => {
                        codes_n::<8, 1>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo)
                    }
                    (8, 2, _) => {
                        codes_n::<8, 2>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo)
                    }
                    _ => codes_n::<6, 4>(a, packed, kq, panel0, rows, &row_terms, p, cols, o, ldo),
                }
            }
        }
    }

    /// The sum of the bytes of `row`.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn row_sum(row: &[u8]) -> i32 {
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
        a_tile: &[u8],
        packed: &[i8],
        kq: usize,
        panel0: usize,
        rows: usize,
        row_terms: &[i32; 8],
        p: &CodeParams<'_>,
        cols: usize,
        out: *mut u8,
        ldo: usize,
    ) {
        // SAFETY: the caller (`codes`) checked the bounds `accumulate` states.
        let acc = unsafe { accumulate::<MR, NP>(a_tile, packed, kq, panel0) };
        let j0 = panel0 * 16;
        let scale = _mm512_set1_ps(p.scale);
        let per_unit = _mm512_set1_ps(p.per_unit);
        let offset = _mm512_set1_ps(p.offset);
        let zero = _mm512_setzero_ps();
        let top = _mm512_set1_ps(255.0);
        let mut col = [_mm512_setzero_si512(); NP];
        let mut bias = [_mm512_setzero_ps(); NP];
        let mut masks = [0u16; NP];
        for t in 0..NP {
            // SAFETY: `col` and `bias` hold whole tiles of columns from `j0` (checked by `codes`).
            unsafe {
                col[t] = _mm512_loadu_si512(p.col.as_ptr().add(j0 + t * 16) as *const _);
                bias[t] = _mm512_loadu_ps(p.bias.as_ptr().add(j0 + t * 16));
            }
            let valid = cols.saturating_sub(t * 16).min(16);
            masks[t] = ((1u32 << valid) - 1) as u16;
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            let rt = _mm512_set1_epi32(row_terms[r]);
            for t in 0..NP {
                if masks[t] == 0 {
                    continue;
                }
                // The scalar stage's operations in its order (products and sums rounded one
                // at a time, no fused multiply-add), so the codes are the same bits.
                let s = _mm512_add_epi32(_mm512_add_epi32(acc_r[t], rt), col[t]);
                let mut v = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), scale), bias[t]);
                if p.relu {
                    // A NaN gives the second operand, 0, as `f32::max` does.
                    v = _mm512_max_ps(v, zero);
                }
                let c = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(v, per_unit),
                );
                let c = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(c, offset), zero), top);
                let codes = _mm512_cvttps_epi32(c);
                // SAFETY: row r < rows and the mask's columns < cols lie in `out` (checked by
                // `codes`).
                unsafe {
                    _mm512_mask_cvtepi32_storeu_epi8(
                        out.add(r * ldo + t * 16) as *mut _,
                        masks[t],
                        codes,
                    )
                };
            }
        }
    }
}
