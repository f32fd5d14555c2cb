//! 8-bit matrix products with int32 accumulation: `c[i][j] = sum_p (a[i][p] - za) (b[p][j] - zb)`
//! for row-major `a` [m, k] and `b` [k, n] of uint8 codes and zero points `za`, `zb` (TF's
//! `QuantizedMatMul` offsets). Three implementations compute the same integers: a plain
//! reference, a portable one the compiler vectorizes, and one on AVX-512 VNNI's `vpdpbusd`
//! (u8 x i8 -> i32, 64 products per instruction), chosen at run time; where the CPU has
//! AMX-INT8, the fused ops' products run on its tiles (`tdpbusd`, `qgemm_amx.rs`) instead.
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

use std::mem::MaybeUninit;

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
    /// The rows as they lie in memory, where the VNNI kernel can read them without a copy.
    fn in_place(&self) -> Option<InPlace<'_>> {
        None
    }
}

/// Rows of `a` read where they lie: row `i` is `segments` runs of `seg_len` bytes (a multiple
/// of 4), `seg_step` apart, from [`InPlace::start`]`(i)` in `data`. Row `i` stands for output
/// pixel `(i / (oh * ow), i / ow % oh, i % ow)` of a convolution (a matrix: `out` [1, 1]).
pub struct InPlace<'a> {
    pub data: &'a [u8],
    /// Output rows and columns per image, [oh, ow].
    pub out: [usize; 2],
    /// Bytes from one image, output row and output column to the next.
    pub steps: [usize; 3],
    pub segments: usize,
    pub seg_len: usize,
    pub seg_step: usize,
}

impl InPlace<'_> {
    /// Where row `i` starts in `data`.
    pub fn start(&self, i: usize) -> usize {
        let [oh, ow] = self.out;
        let [image, row, col] = self.steps;
        i / (oh * ow) * image + i / ow % oh * row + i % ow * col
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
    fn in_place(&self) -> Option<InPlace<'_>> {
        (self.k > 0 && self.k.is_multiple_of(4)).then_some(InPlace {
            data: self.a,
            out: [1, 1],
            steps: [self.k, 0, 0],
            segments: 1,
            seg_len: self.k,
            seg_step: 0,
        })
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

/// [`qgemm_with`] followed by [`Requantize`] into the m x n codes of `out` (appended to what it
/// holds, which is kept), with the output stage applied in registers as each tile of sums is
/// done (no int32 results are stored, and `out` is not zeroed first). Only for a `b` packed
/// for VNNI: returns false, having done nothing, for any other `b`.
pub fn qgemm_codes<S: RowSource>(
    src: &S,
    m: usize,
    b: &PackedB,
    za: i32,
    zb: i32,
    rq: &Requantize<'_>,
    out: &mut Vec<u8>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let PackedData::Vnni(packed, shape) = &b.data {
        let len = m * b.n;
        assert!(rq.bias.len() >= b.n);
        out.reserve(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        codes_vnni(src, m, b, packed, *shape, za, zb, rq, spare);
        // SAFETY: `codes_vnni` stores each of the m x n codes of `spare`, which follow the
        // vector's initialized elements, exactly once.
        unsafe { out.set_len(out.len() + len) };
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
    out: &mut [MaybeUninit<u8>],
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
    let in_place = src.in_place();
    // Rows read in place cost nothing to revisit: each panel group then meets all of a task's
    // rows while it stays in L1.
    let groups_outer = by_columns || (in_place.is_some() && units >= 2);
    // Rows `i0..i0 + rows` (a multiple of mr, or the last rows) against columns `j0..j1`,
    // into `dst` (row r at `r * ldo`, column j at `j - j0`); by panel groups, then rows,
    // when `by_columns`.
    // AMX where the CPU has it and a run of `a`'s rows splits into products of at least 4
    // groups of 4 bytes (all of the models' layers), for tasks of enough rows to fill tiles.
    let (segments, seg_len) = in_place
        .as_ref()
        .map_or((1, k), |ip| (ip.segments, ip.seg_len));
    let amx = amx::usable() && amx::chunk_quads(seg_len.div_ceil(4)).is_some();
    let run = |i0: usize,
               rows: usize,
               (j0, j1): (usize, usize),
               dst: &mut [MaybeUninit<u8>],
               ldo: usize| {
        if amx && rows >= AMX_MIN_ROWS {
            return amx_rows(src, in_place.as_ref(), (i0, rows), (k, stride), |a| {
                // SAFETY: `amx` holds only where `amx::usable()` said so.
                unsafe {
                    amx::codes(
                        a,
                        rows,
                        packed,
                        segments * seg_len.div_ceil(4),
                        (j0, j1),
                        &p,
                        dst,
                        ldo,
                    )
                }
            });
        }
        let mut tiles = TaskRows::new(
            src,
            in_place.as_ref(),
            (i0, rows),
            mr,
            (k, stride),
            by_columns,
        );
        // Codes of rows `r0..r0 + tile_rows` (from i0) against columns `u0..u1`.
        let mut tile = |r0: usize, tile_rows: usize, (u0, u1): (usize, usize)| {
            let a = tiles.tile(r0, tile_rows);
            // SAFETY: `PackedData::Vnni` exists only where `best_path()` found avx512f/bw/vnni.
            unsafe {
                vnni::codes(
                    &a,
                    packed,
                    k,
                    shape,
                    tile_rows,
                    (u0, u1),
                    &p,
                    &mut dst[r0 * ldo + u0 - j0..],
                    ldo,
                )
            };
        };
        if groups_outer {
            for u0 in (j0..j1).step_by(unit) {
                for r0 in (0..rows).step_by(mr) {
                    tile(r0, (rows - r0).min(mr), (u0, (u0 + unit).min(j1)));
                }
            }
        } else {
            for r0 in (0..rows).step_by(mr) {
                tile(r0, (rows - r0).min(mr), (j0, j1));
            }
        }
    };
    if serial {
        run(0, m, (0, n), out, n);
    } else if !by_columns || units < 2 {
        // AMX tiles: tasks of whole pairs of tiles (of output rows, read in place).
        let align = match (amx, in_place.as_ref()) {
            (true, Some(ip)) if ip.out[1] <= 16 => 2 * ip.out[1],
            (true, Some(ip)) if ip.out != [1, 1] => ip.out[1],
            (true, _) => 32,
            (false, _) => mr,
        };
        let rows_per_task = m.div_ceil(threads * 4).div_ceil(align) * align;
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(t, chunk)| run(t * rows_per_task, chunk.len() / n, (0, n), chunk, n));
    } else {
        // Bands of columns, each task all the rows; the bands' codes are copied in after.
        let band = units.div_ceil(threads) * unit;
        let bands: Vec<(usize, usize)> =
            (0..n).step_by(band).map(|j| (j, n.min(j + band))).collect();
        let results: Vec<Vec<MaybeUninit<u8>>> = bands
            .par_iter()
            .map(|&(j0, j1)| {
                let mut codes = vec![MaybeUninit::uninit(); m * (j1 - j0)];
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

/// Fewer rows than this in a task take the VNNI kernel (a tile's product costs about the same
/// for 1 row as for 16).
#[cfg(target_arch = "x86_64")]
const AMX_MIN_ROWS: usize = 8;

/// Rows `i0..i0 + rows` of `src` as the AMX kernel reads them, handed to `f`: in place (one
/// stride along an output row), or gathered into a buffer of rows `stride` bytes apart.
#[cfg(target_arch = "x86_64")]
fn amx_rows<S: RowSource, R>(
    src: &S,
    in_place: Option<&InPlace<'_>>,
    (i0, rows): (usize, usize),
    (k, stride): (usize, usize),
    f: impl FnOnce(&amx::StridedRows<'_, &dyn Fn(usize) -> (usize, usize, usize)>) -> R,
) -> R {
    if let Some(ip) = in_place {
        let [_, ow] = ip.out;
        let place = |r: usize| {
            let i = i0 + r;
            if ip.out == [1, 1] {
                (ip.start(i), usize::MAX, ip.steps[0])
            } else {
                (ip.start(i), ow - i % ow, ip.steps[2])
            }
        };
        return f(&amx::StridedRows {
            data: ip.data,
            place: &place,
            segments: ip.segments,
            seg_len: ip.seg_len,
            seg_step: ip.seg_step,
        });
    }
    thread_local! {
        static GATHERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    GATHERED.with_borrow_mut(|buf| {
        // One spare row: `fill` may write past a row's k bytes. Reused between calls: a
        // fresh buffer costs its page faults every step.
        let len = (rows + 1) * stride;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        src.fill_rows(i0, rows, buf, stride);
        let place = |r: usize| (r * stride, usize::MAX, stride);
        f(&amx::StridedRows {
            data: &buf[..len],
            place: &place,
            segments: 1,
            seg_len: k,
            seg_step: 0,
        })
    })
}

/// One task's tiles of rows of `a` for the VNNI kernel: read in place, or gathered into a
/// buffer (all the task's rows at once where they are visited once per panel group, else one
/// tile at a time).
#[cfg(target_arch = "x86_64")]
struct TaskRows<'s, S> {
    src: &'s S,
    in_place: Option<&'s InPlace<'s>>,
    i0: usize,
    k: usize,
    stride: usize,
    buf: Vec<u8>,
    /// Whether `buf` holds all the task's rows.
    all: bool,
}

#[cfg(target_arch = "x86_64")]
impl<'s, S: RowSource> TaskRows<'s, S> {
    fn new(
        src: &'s S,
        in_place: Option<&'s InPlace<'s>>,
        (i0, rows): (usize, usize),
        mr: usize,
        (k, stride): (usize, usize),
        all: bool,
    ) -> Self {
        let all = all && in_place.is_none();
        let buf = match (in_place, all) {
            (Some(_), _) => Vec::new(),
            (None, true) => {
                let mut buf = vec![0u8; rows.div_ceil(mr) * mr * stride];
                src.fill_rows(i0, rows, &mut buf, stride);
                buf
            }
            (None, false) => vec![0u8; mr * stride],
        };
        TaskRows {
            src,
            in_place,
            i0,
            k,
            stride,
            buf,
            all,
        }
    }

    /// Rows `r0..r0 + rows` of the task (at most `MAX_MR`).
    fn tile(&mut self, r0: usize, rows: usize) -> vnni::TileA<'_> {
        let stride = self.stride;
        if let Some(ip) = self.in_place {
            let mut starts = [0usize; vnni::MAX_MR];
            for (r, s) in starts.iter_mut().enumerate().take(rows) {
                *s = ip.start(self.i0 + r0 + r);
            }
            return vnni::TileA::new(
                ip.data,
                &starts[..rows],
                ip.segments,
                ip.seg_len,
                ip.seg_step,
            );
        }
        let at = if self.all {
            r0 * stride
        } else {
            // Rows are filled in order: what `fill` writes past a row is rewritten next.
            self.src
                .fill_rows(self.i0 + r0, rows, &mut self.buf, stride);
            0
        };
        let mut starts = [0usize; vnni::MAX_MR];
        for (r, s) in starts.iter_mut().enumerate().take(rows) {
            *s = at + r * stride;
        }
        vnni::TileA::new(&self.buf, &starts[..rows], 1, self.k, 0)
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
                let mut starts = [0usize; vnni::MAX_MR];
                for (r, s) in starts.iter_mut().enumerate().take(rows) {
                    *s = r * self.stride;
                }
                let a = vnni::TileA::new(&self.a_tile, &starts[..rows], 1, k, 0);
                for u0 in (j0..j1).step_by(unit) {
                    // SAFETY: `PackedData::Vnni` exists only where `best_path()` found
                    // avx512f/bw/vnni.
                    unsafe { vnni::tile(&a, packed, k, u0 / 16, *shape, rows, &mut self.out) };
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
#[path = "qgemm_vnni.rs"]
mod vnni;

#[cfg(target_arch = "x86_64")]
#[path = "qgemm_amx.rs"]
mod amx;

/// Turns the AMX kernels (CPUs with AMX-INT8) on or off for this process; they give the same
/// bits as the VNNI ones, and are on by default where present (`TFR_AMX=0` turns them off).
pub fn set_amx_enabled(on: bool) {
    #[cfg(target_arch = "x86_64")]
    amx::set_enabled(on);
    let _ = on;
}

/// Whether the fused quantized products run on AMX.
pub fn amx_in_use() -> bool {
    #[cfg(target_arch = "x86_64")]
    return amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    false
}
